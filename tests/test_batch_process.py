"""batch_process: a plain function over items, in input order, each item once."""

import collections
import functools
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from skbatch import _schedule, batch_process


def _work(x, scale=1, offset=0):
    total = 0
    for i in range(200):  # pure Python: holds the GIL
        total += i
    return x * scale + offset


@pytest.fixture
def processes_take_rows(monkeypatch):
    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)


@pytest.mark.parametrize(
    "params",
    [
        {"n_jobs": 1},
        {"n_jobs": 2},
        {"n_jobs": 2, "backend": "threading", "batch_size": 7},
        {"n_jobs": 2, "backend": "loky", "batch_size": 300},
        {"n_jobs": 2, "backend": "multiprocessing", "batch_size": 300},
    ],
    ids=["n_jobs=1", "auto", "threading", "loky", "multiprocessing"],
)
def test_results_in_input_order_with_args_and_kwargs(params):
    items = list(range(2000))
    out = batch_process(items, _work, 3, progress=False, offset=1, **params)
    assert out == [3 * x + 1 for x in items]
    assert isinstance(out, list)


def test_lambdas_and_closures_reach_worker_processes(processes_take_rows):
    k = 5
    out = batch_process(
        list(range(1000)), lambda x: x * k, n_jobs=2, backend="loky", progress=False
    )
    assert out == [x * 5 for x in range(1000)]


def test_numpy_rows_and_elements():
    X = np.arange(600).reshape(300, 2)
    assert batch_process(X, np.sum, progress=False) == list(X.sum(axis=1))
    assert batch_process(np.arange(5.0), float, progress=False) == [0, 1, 2, 3, 4]


def test_dataframe_items_are_rows_not_column_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": range(300), "b": range(300)}, index=range(100, 400))
    rows = batch_process(
        df, lambda row: (row.name, row["a"] + row["b"]), progress=False
    )
    assert rows == [(i + 100, 2 * i) for i in range(300)]
    series = batch_process(df["a"], lambda v: v + 1, progress=False)
    assert series == list(range(1, 301))


def test_polars_rows_are_dicts():
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": list(range(200)), "b": list(range(200))})
    assert (
        batch_process(df, lambda row: row["a"] - row["b"], progress=False) == [0] * 200
    )


def test_sparse_rows():
    X = sp.csr_matrix(np.eye(300))
    out = batch_process(X, lambda row: (row.shape, row.sum()), progress=False)
    assert out == [((1, 300), 1.0)] * 300


@pytest.mark.parametrize(
    "items",
    [tuple(range(300)), range(300), collections.deque(range(300))],
    ids=["tuple", "range", "deque"],
)
def test_any_iterable_with_a_length(items):
    assert batch_process(items, _work, progress=False) == list(range(300))


def test_empty_input_returns_an_empty_list_without_calling():
    calls = []
    assert batch_process([], calls.append) == []
    assert batch_process(np.empty((0, 3)), calls.append, progress=False) == []
    assert calls == []


@pytest.mark.parametrize(
    "items, match",
    [
        (iter(range(3)), "must have a length"),
        ((x for x in range(3)), "must have a length"),
        ({"a": 1}, "list\\(d.items\\(\\)\\)"),
        ("abc", "got str"),
        (None, "got None"),
        (np.float64(3.0), "at least one dimension"),
    ],
    ids=["iterator", "generator", "dict", "str", "None", "scalar"],
)
def test_items_without_rows_are_refused_clearly(items, match):
    with pytest.raises(TypeError, match=match):
        batch_process(items, _work)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"progress": "yes"}, ValueError, "progress must be"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"batch_size": 2.5}, ValueError, "batch_size must be a positive int"),
        ({"progress_bar_kwargs": {"total": 3}}, ValueError, "may not set 'total'"),
        ({"progress_bar_kwargs": [1]}, TypeError, "must be a dict"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
    ],
)
def test_bad_options_say_what_to_do(kwargs, error, match):
    with pytest.raises(error, match=match):
        batch_process(list(range(300)), _work, **kwargs)


def test_function_must_be_callable():
    with pytest.raises(TypeError, match="function must be callable"):
        batch_process([1, 2], "len")


def test_batched_mode_passes_chunks_and_joins_their_results():
    seen = []

    def double(batch):
        seen.append(len(batch))
        return 2 * batch

    X = np.arange(1000.0)
    out = batch_process(
        X, double, batched=True, batch_size=128, n_jobs=2, backend="threading",
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(out, 2 * X)
    assert isinstance(out, np.ndarray)
    assert max(seen) <= 128 and sum(seen) == 1000
    as_list = batch_process(
        list(range(500)), lambda b: [x + 1 for x in b], batched=True, progress=False
    )
    assert as_list == list(range(1, 501))


def test_batched_mode_refuses_a_result_of_the_wrong_length():
    with pytest.raises(ValueError, match="one result per item"):
        batch_process(list(range(500)), lambda b: b[:-1], batched=True, progress=False)


def test_per_item_results_as_long_as_the_chunk_stay_per_item():
    # A result array as long as its chunk must not be read as one output per
    # array entry when chunks are joined.
    out = batch_process(
        list(range(20)), lambda x: np.array([x, x]), batch_size=2, n_jobs=2,
        backend="threading", progress=False,
    )  # fmt: skip
    assert len(out) == 20
    assert all((a == [i, i]).all() for i, a in enumerate(out))


def test_no_item_is_processed_twice_and_errors_are_raised_as_is():
    seen = collections.Counter()
    lock = threading.Lock()

    def record(x):
        with lock:
            seen[x] += 1
        if x == 1500:
            raise KeyError("item 1500 is bad")
        return x

    with pytest.raises(KeyError, match="item 1500 is bad") as info:
        batch_process(
            list(range(3000)), record, n_jobs=2, backend="threading",
            batch_size=100, progress=False,
        )  # fmt: skip
    assert max(seen.values()) == 1  # no retry, no re-run check
    assert "1500:1600" in " ".join(getattr(info.value, "__notes__", [])) or (
        "1500" in str(info.value)
    )
    seen.clear()
    batch_process(list(range(3000)), record_ok := functools.partial(_count, seen))
    assert set(seen.values()) == {1} and len(seen) == 3000
    del record_ok


def _count(seen, x):
    seen[x] += 1
    return x


def test_worker_process_error_is_raised_once_with_its_rows(
    tmp_path, processes_take_rows
):
    log = tmp_path / "seen.txt"

    def record(x, path=str(log)):
        with open(path, "a") as f:
            f.write(f"{x}\n")
        if x == 700:
            raise ArithmeticError("bad item 700")
        return x

    with pytest.raises(ArithmeticError, match="bad item 700"):
        batch_process(
            list(range(1000)), record, n_jobs=2, backend="loky", batch_size=100,
            progress=False,
        )  # fmt: skip
    seen = collections.Counter(log.read_text().split())
    assert max(seen.values()) == 1


def test_worker_bars_count_items(bars):
    out = batch_process(
        list(range(3000)), _work, n_jobs=2, backend="threading", progress="workers",
        progress_bar_kwargs={"desc": "items"},
    )  # fmt: skip
    assert out == list(range(3000))
    overall, *workers = bars
    assert overall.desc == "items"
    assert overall.n == overall.total == 3000
    assert overall.kwargs["unit"] == "items"
    assert sum(bar.n for bar in workers) == 3000
    assert all(bar.n == bar.total for bar in workers if bar.n)
    assert all(bar.closed for bar in bars)


def test_n_jobs_zero_says_what_to_pass():
    with pytest.raises(ValueError, match="n_jobs=0 means no worker at all"):
        batch_process([1, 2, 3], _work, n_jobs=0)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_batch_size_bounds_every_batch_of_a_small_input_too(n_jobs):
    seen = []

    def total(batch):
        seen.append(len(batch))
        return [sum(batch)] * len(batch)

    out = batch_process(
        list(range(100)), total, batched=True, batch_size=10, n_jobs=n_jobs,
        progress=False,
    )  # fmt: skip
    assert len(out) == 100
    assert seen and max(seen) <= 10 and sum(seen) == 100


def test_stop_iteration_from_the_function_reaches_the_caller_as_itself():
    def stop(x):
        raise StopIteration("stop here")

    with pytest.raises(StopIteration, match="stop here"):
        batch_process(list(range(300)), stop, progress=False)


@pytest.mark.parametrize("n", [100, 300])
def test_batched_results_are_the_same_kind_whatever_the_size(n):
    assert batch_process(
        list(range(n)), lambda b: tuple(b), batched=True, progress=False
    ) == list(range(n))
    with pytest.raises(ValueError, match="returned a dict"):
        batch_process(
            list(range(n)), lambda b: dict(enumerate(b)), batched=True,
            progress=False,
        )  # fmt: skip


@pytest.mark.parametrize("fmt", ["coo", "dia", "bsr", "dok", "lil", "csc"])
@pytest.mark.parametrize("n", [50, 300])
def test_sparse_rows_of_every_format(fmt, n):
    if fmt == "dia":
        X = sp.dia_matrix(np.eye(n, 5))  # few diagonals, as DIA is for
    else:
        X = sp.random(n, 5, density=0.5, format="csr", random_state=0).asformat(fmt)
    out = batch_process(X, lambda row: row.sum(), progress=False)
    np.testing.assert_allclose(out, np.asarray(X.sum(axis=1)).ravel())


def test_numpy_scalars_for_options():
    out = batch_process(
        list(range(300)), _work, progress=np.False_, batch_size=np.int64(50)
    )
    assert out == list(range(300))


class _Mine(Exception):
    pass


def _raises_mine(x):
    if x == 1500:
        raise _Mine("bad item")
    return x


@pytest.mark.parametrize("backend", ["multiprocessing", "loky"])
def test_errors_of_classes_sent_by_value_arrive_as_themselves(
    backend, processes_take_rows
):
    # A class cloudpickle ships by value (as from a script or notebook), which
    # plain pickle (the multiprocessing pool's) cannot find by name.
    import cloudpickle

    cloudpickle.register_pickle_by_value(__import__(__name__))
    try:
        with pytest.raises(_Mine, match="bad item"):
            batch_process(
                list(range(3000)), _raises_mine, n_jobs=2, backend=backend,
                batch_size=200, progress=False,
            )  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(__import__(__name__))


def test_no_chunk_starts_in_a_worker_process_after_an_error(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "job.py"
    log = tmp_path / "chunks.log"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, time
            import skbatch
            from skbatch import batch_process
            PARENT = os.getpid()
            def work(batch):
                with open({str(log)!r}, "a") as f:
                    f.write(f"{{time.time()}}\\n")
                for x in batch:
                    sum(range(20000))
                    if os.getpid() == PARENT and x > 1000:
                        raise RuntimeError("boom")
                return list(batch)
            if __name__ == "__main__":
                skbatch.start_workers(2)
                try:
                    batch_process(list(range(20000)), work, n_jobs=2,
                                  backend="loky", batched=True, progress=False)
                except RuntimeError:
                    print(time.time())
                time.sleep(2)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    raised_at = float(done.stdout.split()[-1])
    started = [float(t) for t in log.read_text().split()]
    # A chunk that checked for the stop just before it was set may still be
    # starting as the error reaches the caller; none starts later.
    assert not [t for t in started if t > raised_at + 0.2]
