"""Bars count exactly on every execution mode, are scoped to one call, and
leave nothing running behind them."""

import multiprocessing
import os
import re
import signal
import threading
from typing import ClassVar

import joblib
import numpy as np
import pytest
from estimators_for_tests import SleepyRegressor, WhereAmIClassifier
from numpy.testing import assert_array_equal
from sklearn.frozen import FrozenEstimator

from skbatch import BatchedPredictor, _progress_channel, _schedule


def _listeners():
    return [t for t in threading.enumerate() if t.name == "skbatch-progress"]


def _children():
    return {p.pid for p in multiprocessing.active_children()}


def _assert_exact(bars, n_rows, *, caller_works=True):
    overall, *workers = bars
    assert overall.total == overall.n == n_rows
    assert not any(bar.overshot for bar in bars)
    assert all(bar.closed for bar in bars)
    used = [bar for bar in workers if bar.n]
    assert used, "no worker bar moved"
    for bar in used:
        assert bar.n == bar.total, (bar.desc, bar.n, bar.total)
    if caller_works:
        assert sum(bar.n for bar in used) == n_rows


@pytest.fixture
def processes_take_rows(monkeypatch):
    # The calling thread would do every row of a short test input before a
    # worker process starts: leave the rows to the worker processes.
    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)


def _sleepy(n_rows=3000):
    X = np.arange(float(n_rows)).reshape(-1, 1)
    return X, SleepyRegressor(seconds_per_row=1e-4).fit(X)


@pytest.mark.parametrize(
    "params",
    [
        {"n_jobs": 1},
        {"n_jobs": 2},
        {"n_jobs": 3, "backend": "threading", "batch_size": 200},
        {"n_jobs": 2, "backend": "sequential"},
    ],
    ids=["n_jobs=1", "auto", "threading", "sequential"],
)
def test_in_process_and_thread_bars_are_exact(bars, params):
    X, model = _sleepy()
    batched = BatchedPredictor(FrozenEstimator(model), progress="workers", **params)
    assert_array_equal(batched.predict(X), X[:, 0])
    [overall, *workers] = bars
    assert overall.n == overall.total == len(X) and overall.closed
    if batched.last_call_.n_workers > 1 and params.get("backend") != "sequential":
        _assert_exact(bars, len(X))
        named = {bar.desc.strip(): bar.n for bar in workers if bar.n}
        assert named == batched.last_call_.rows_by_worker
    assert not _listeners()


def test_small_input_bar_is_exact(bars):
    X, model = _sleepy(100)
    BatchedPredictor(FrozenEstimator(model), n_jobs=2, progress="workers").predict(X)
    [overall] = bars
    assert overall.n == overall.total == 100 and overall.closed


def test_worker_process_bars_are_exact(bars, processes_take_rows):
    X, model = _sleepy()
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, backend="loky", progress="workers"
    )
    assert_array_equal(batched.predict(X), X[:, 0])
    _assert_exact(bars, len(X))
    assert any(bar.desc.strip().startswith("process-") for bar in bars[1:] if bar.n)
    assert not _listeners()


def test_multiprocessing_backend_bars_are_exact(bars):
    X, model = _sleepy()
    before = _children()
    batched = BatchedPredictor(
        FrozenEstimator(model),
        n_jobs=2,
        backend="multiprocessing",
        batch_size=500,
        progress="workers",
    )
    assert_array_equal(batched.predict(X), X[:, 0])
    # The calling thread's first rows count in the overall bar only.
    _assert_exact(bars, len(X), caller_works=False)
    assert sum(bar.n for bar in bars[1:]) == len(X) - 64
    assert _children() - before == set()  # no manager left
    assert not _listeners()


def test_dask_backend_on_a_local_cluster_bars_are_exact(bars):
    distributed = pytest.importorskip("distributed")
    X, model = _sleepy()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        batched = BatchedPredictor(
            FrozenEstimator(model),
            n_jobs=2,
            backend="dask",
            batch_size=500,
            progress="workers",
        )
        assert_array_equal(batched.predict(X), X[:, 0])
    _assert_exact(bars, len(X), caller_works=False)
    assert not _listeners()


def test_two_calls_in_a_row_never_share_counts(bars):
    X, model = _sleepy()
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, progress=True)
    batched.predict(X)
    batched.predict(X[:1000])
    assert [(bar.n, bar.total) for bar in bars] == [(3000, 3000), (1000, 1000)]


def test_calls_nested_in_a_joblib_job_count_only_their_rows(bars):
    X, model = _sleepy()
    sizes = [3000, 1500, 800, 2200]

    def one(n):
        batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, progress=True)
        return len(batched.predict(X[:n]))

    with joblib.parallel_config(backend="threading", n_jobs=2):
        done = joblib.Parallel()(joblib.delayed(one)(n) for n in sizes)
    assert done == sizes
    assert sorted((bar.n, bar.total) for bar in bars) == sorted((n, n) for n in sizes)
    assert not any(bar.overshot for bar in bars)


class _ThreadsSeen(WhereAmIClassifier):
    """Records the names of the threads alive while it predicts."""

    seen: ClassVar[set] = set()

    def predict(self, X):
        _ThreadsSeen.seen |= {t.name for t in threading.enumerate()}
        return super().predict(X)


@pytest.mark.parametrize("backend", [None, "threading", "multiprocessing"])
def test_progress_false_starts_no_listener_queue_or_manager(
    iris, bars, monkeypatch, backend
):
    def no_manager():
        raise AssertionError("a manager was started without progress")

    monkeypatch.setattr(_progress_channel, "manager_queue", no_manager)
    X, _ = iris
    _ThreadsSeen.seen = set()
    batched = BatchedPredictor(
        _ThreadsSeen(), n_jobs=2, batch_size=100, backend=backend
    ).fit(X)
    batched.predict(X)
    assert "skbatch-progress" not in _ThreadsSeen.seen
    assert bars == []


def test_disabled_bars_start_nothing(bars, monkeypatch):
    X, model = _sleepy()
    before = threading.active_count()
    batched = BatchedPredictor(
        FrozenEstimator(model),
        n_jobs=1,
        progress="workers",
        progress_bar_kwargs={"disable": True},
    )
    batched.predict(X)
    assert bars == []
    assert threading.active_count() == before


class _Suicidal(SleepyRegressor):
    """Kills its own process on the row whose value is ``trigger``, when it
    runs in a worker process (as the out-of-memory killer would)."""

    def __init__(self, seconds_per_row=1e-4, trigger=2000.0, parent=None):
        super().__init__(seconds_per_row)
        self.trigger = trigger
        self.parent = parent

    def predict(self, X):
        if os.getpid() != self.parent and (np.asarray(X)[:, 0] == self.trigger).any():
            os._exit(1)
        return super().predict(X)


def test_killed_worker_process_closes_bars_and_the_next_call_works(
    bars, processes_take_rows
):
    X, _ = _sleepy()
    model = _Suicidal(parent=os.getpid()).fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, backend="loky", progress="workers"
    )
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from skbatch import WorkerDiedError

    with pytest.raises(WorkerDiedError) as info:
        batched.predict(X)
    assert isinstance(info.value, TerminatedWorkerError)  # old handlers work
    message = str(info.value)
    assert re.search(
        r"process \d+ died running batch \d+ \(rows \[\d+, \d+\)\)", message
    )
    assert "exit codes: {EXIT(1)}" in message and "os._exit" in message
    assert bars and all(bar.closed for bar in bars)
    assert bars[0].n < len(X)
    assert not _listeners()
    # The pool is replaced: the next call computes every row.
    del bars[:]
    model.trigger = -1.0
    assert_array_equal(batched.predict(X), X[:, 0])
    assert bars[0].n == len(X)


def test_error_in_a_worker_process_closes_bars_at_the_last_true_count(
    bars, processes_take_rows
):
    from estimators_for_tests import InterruptingClassifier

    X = np.arange(3000.0).reshape(-1, 1)
    batched = BatchedPredictor(
        InterruptingClassifier(trigger=2500.0, error=ValueError),
        n_jobs=2,
        backend="loky",
        progress=True,
    ).fit(X)
    with pytest.raises(ValueError, match="interrupted by the test"):
        batched.predict(X)
    assert all(bar.closed for bar in bars)
    assert not any(bar.overshot for bar in bars)
    assert not _listeners()


def test_bar_options_reach_tqdm_with_worker_bars_below_the_position(bars):
    X, model = _sleepy()
    batched = BatchedPredictor(
        FrozenEstimator(model),
        n_jobs=2,
        backend="threading",
        progress="workers",
        progress_bar_kwargs={"desc": "scoring", "position": 2, "colour": "green"},
    )
    batched.predict(X)
    overall, *workers = bars
    assert overall.desc == "scoring"
    assert overall.kwargs["position"] == 2
    assert [bar.kwargs["position"] for bar in workers] == [3, 4]
    assert all(bar.kwargs["colour"] == "green" for bar in bars)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ("fast", TypeError, "progress_bar_kwargs.* must be an instance of .dict"),
        ({"total": 5}, ValueError, "may not set 'total'"),
        ({"initial": 5}, ValueError, "may not set 'initial'"),
        ({"colour_": "red"}, ValueError, "unknown tqdm option 'colour_'"),
        ({"position": -1}, ValueError, "non-negative int"),
    ],
)
def test_bad_bar_options_say_what_to_do(options, error, match):
    X, model = _sleepy(10)
    batched = BatchedPredictor(
        FrozenEstimator(model), progress=True, progress_bar_kwargs=options
    )
    with pytest.raises(error, match=match):
        batched.predict(X)


def test_notebook_bars_are_widgets_left_in_place(monkeypatch):
    from skbatch import _progress_display

    class NotebookBar:
        __module__ = "tqdm.notebook"
        made: ClassVar[list] = []

        def __init__(self, total=None, desc=None, leave=True, **kwargs):
            self.total, self.desc, self.leave, self.n = total, desc, leave, 0
            self.closed = False
            NotebookBar.made.append(self)

        def update(self, n):
            self.n += n

        def set_postfix_str(self, *args, **kwargs):
            pass

        def set_description(self, desc, refresh=True):
            self.desc = desc

        def refresh(self):
            pass

        def close(self):
            self.closed = True

    assert _progress_display.output_kind(NotebookBar, None) == "notebook"
    written = []

    class File:
        def write(self, text):
            written.append(text)

        def flush(self):
            pass

    bars = _progress_display.BarSet(
        NotebookBar, 10, desc="x", per_worker=True, n_workers=2,
        options={"file": File()},
    )  # fmt: skip
    bars.add("caller", 6, 6)
    bars.add("thread-1", 4, 4)
    bars.close()
    assert all(bar.leave and bar.closed for bar in NotebookBar.made)
    assert [bar.n for bar in NotebookBar.made] == [10, 6, 4]
    assert written == []  # widgets stay; no text lines are added


class _KilledForMemory(_Suicidal):
    """Sends itself SIGKILL, as the out-of-memory killer would."""

    def predict(self, X):
        if os.getpid() != self.parent and (np.asarray(X)[:, 0] == self.trigger).any():
            os.kill(os.getpid(), signal.SIGKILL)
        return SleepyRegressor.predict(self, X)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="no SIGKILL here")
def test_a_worker_killed_by_sigkill_gets_the_memory_hint(processes_take_rows):
    from skbatch import WorkerDiedError

    X, _ = _sleepy()
    model = _KilledForMemory(parent=os.getpid()).fit(X)
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, backend="loky")
    with pytest.raises(WorkerDiedError, match=r"SIGKILL.*memory.*batch_size or n_jobs"):
        batched.predict(X)
    model.trigger = -1.0
    assert_array_equal(batched.predict(X), X[:, 0])  # fresh workers
