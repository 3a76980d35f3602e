"""Failure reporting in one process: notes, the lowest failure, retries,
timeouts, exceptions that cannot travel, and bad failure options.

The same behaviour across real worker processes, dead workers and interrupts
is in ``test_faults.py``.
"""

import pickle
import threading
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.frozen import FrozenEstimator

from skbatch import (
    BatchedPredictor,
    BatchedTransformer,
    BatchTimeoutError,
    WorkerError,
    batch_process,
)
from skbatch._failures import BatchNumbers, lowest, note_batch
from skbatch._timeouts import BatchOverran, run_within
from skbatch._worker import _travelling

X = np.repeat(np.arange(3000, dtype=float), 2).reshape(-1, 2)


def _faulty(**params):
    from estimators_for_tests import FaultyTransformer

    return FaultyTransformer(**params).fit(X)


def test_batches_are_numbered_in_row_order_whatever_order_they_start():
    numbers = BatchNumbers()
    for start in (0, 500, 64, 300, 64):
        numbers.started(start)
    assert [numbers.index(s) for s in (0, 64, 300, 500)] == [0, 1, 2, 3]
    assert pickle.loads(pickle.dumps(numbers)).index(500) == 3


def test_a_note_is_added_once():
    error = ValueError("bad")
    note_batch(error, "M.predict", 3, 10, 20, 100)
    note_batch(error, "M.predict", 4, 20, 30, 100)
    assert error.__notes__ == [
        "skbatch: raised by M.predict on batch 3, rows [10, 20) of 100"
    ]


def test_lowest_is_the_failure_serial_code_meets_first():
    from skbatch._failures import BatchFailed

    failures = [BatchFailed(900, 1000, KeyError()), BatchFailed(64, 100, OSError())]
    assert isinstance(lowest(failures).error, OSError)
    assert lowest([]) is None


def test_run_within_returns_raises_or_overruns():
    assert run_within(None, lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):
        run_within(5.0, lambda: 1 / 0)
    stop = threading.Event()
    with pytest.raises(BatchOverran):
        run_within(0.05, stop.wait)
    stop.set()


def test_run_within_keeps_the_scikit_learn_config():
    from sklearn import config_context, get_config

    with config_context(assume_finite=True):
        assert run_within(5.0, lambda: get_config()["assume_finite"]) is True


class _NeedsTwo(Exception):
    def __init__(self, row, why):
        super().__init__(f"row {row}: {why}")
        self.row = row


def test_exceptions_that_cannot_be_rebuilt_travel_as_their_own_class():
    error = _NeedsTwo(7, "negative")
    error.add_note("skbatch: a note")
    travelling = _travelling(error)
    back = pickle.loads(pickle.dumps(travelling))
    assert type(back) is _NeedsTwo and str(back) == "row 7: negative"
    assert back.row == 7 and back.__notes__ == ["skbatch: a note"]
    if travelling is not error:  # rebuilt (unless a reducer for exceptions
        # registered by another library made plain pickle work)
        assert "_NeedsTwo" in str(back.__cause__)  # the worker's traceback


def test_exceptions_that_cannot_be_pickled_become_a_worker_error():
    class Locked(Exception):
        pass

    try:
        error = Locked("held")
        error.lock = threading.Lock()
        raise error
    except Locked as caught:
        travelled = _travelling(caught)
    back = pickle.loads(pickle.dumps(travelled))
    assert isinstance(back, WorkerError)
    assert back.type_name.endswith("Locked") and back.message == "held"
    assert "raise error" in back.traceback_text
    assert str(back).startswith(back.type_name + ": held")


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_a_failure_is_the_estimators_error_with_the_batch(backend):
    model = _faulty(fault="raise", rows=[1650])
    batched = BatchedTransformer(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend=backend
    )
    with pytest.raises(ValueError) as got:
        batched.transform(X)
    assert str(got.value) == "bad row 1650"
    [note] = got.value.__notes__
    lo, hi = (int(part) for part in note.split("rows [")[1].split(")")[0].split(", "))
    assert lo <= 1650 < hi and hi - lo == 100 and note.endswith("of 3000")


def test_no_batch_starts_after_a_failure_in_the_calling_thread(tmp_path):
    log = tmp_path / "log"
    model = _faulty(fault="raise", rows=[200], log=str(log))
    batched = BatchedTransformer(FrozenEstimator(model), n_jobs=1, batch_size=100)
    with pytest.raises(ValueError, match="bad row 200"):
        batched.transform(X)
    firsts = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert max(firsts) < 200  # nothing after the failing batch


def test_max_retries_reruns_a_failed_batch_and_counts_its_rows_once(tmp_path):
    model = _faulty(fault="raise", rows=[1650], once_file=str(tmp_path / "once"))
    batched = BatchedTransformer(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend="threading",
        max_retries=1,
    )  # fmt: skip
    assert_array_equal(batched.transform(X), X)
    assert batched.last_call_.retries == 1
    assert sum(batched.last_call_.rows_by_worker.values()) == len(X)


def test_retries_that_run_out_say_how_many_attempts():
    model = _faulty(fault="raise", rows=[1650])
    batched = BatchedTransformer(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend="threading",
        max_retries=2,
    )  # fmt: skip
    with pytest.raises(ValueError) as got:
        batched.transform(X)
    assert got.value.__notes__[0].endswith("after 3 attempts")
    assert batched.last_call_.retries == 2


def test_a_stuck_batch_in_a_thread_times_out_naming_it():
    model = _faulty(fault="sleep", rows=[1650])
    batched = BatchedTransformer(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend="threading",
        timeout=0.5,
    )  # fmt: skip
    with pytest.raises(BatchTimeoutError, match=r"timeout=0.5 s in .*thread") as got:
        batched.transform(X)
    assert isinstance(got.value, TimeoutError)
    assert "of 3000" in str(got.value)


def test_a_timeout_leaves_fast_batches_alone():
    model = _faulty(seconds_per_call=0.001)
    for n_jobs in (1, 2):
        batched = BatchedTransformer(
            FrozenEstimator(model), n_jobs=n_jobs, batch_size=100, timeout=30
        )
        assert_array_equal(batched.transform(X), X)
        assert_array_equal(batched.transform(X[:50]), X[:50])  # one plain call


def test_batch_process_reports_the_lowest_failing_items():
    def check(x):
        if x in (700, 2900):
            time.sleep(0.01 if x == 700 else 0)  # the higher one fails first
            raise LookupError(f"item {x}")
        return x

    with pytest.raises(LookupError, match="item 700") as got:
        batch_process(
            list(range(3000)), check, n_jobs=2, backend="threading", batch_size=100,
            progress=False,
        )  # fmt: skip
    assert "rows [" in got.value.__notes__[0]


def test_batch_process_timeout_and_retries():
    with pytest.raises(BatchTimeoutError):
        batch_process([1, 2, 3], time.sleep, timeout=0.1, progress=False)
    assert batch_process([1, 2], str, timeout=5, max_retries=1, progress=False) == [
        "1",
        "2",
    ]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
    ],
)
def test_bad_failure_options_are_rejected(params, match):
    from sklearn.linear_model import LinearRegression

    with pytest.raises((ValueError, TypeError), match=match):
        BatchedPredictor(LinearRegression(), **params).fit(X, X[:, 0])
    with pytest.raises(ValueError, match=match):
        batch_process([1], str, **params)


@pytest.mark.parametrize("no_limit", [float("inf"), 1e10])
def test_a_timeout_too_long_to_wait_for_means_no_limit(no_limit):
    # threading waits at most TIMEOUT_MAX (about 292 years): past it (inf
    # included), a timeout is no limit rather than an OverflowError.
    from sklearn.linear_model import LinearRegression

    y = X[:, 0]
    batched = BatchedPredictor(
        LinearRegression(), n_jobs=2, backend="threading", batch_size=50,
        timeout=no_limit,
    ).fit(X, y)  # fmt: skip
    assert_allclose(batched.predict(X), batched.estimator_.predict(X))
    assert batch_process(list(range(300)), str, timeout=no_limit, n_jobs=2,
                         backend="threading", batch_size=50, progress=False
                         ) == [str(i) for i in range(300)]  # fmt: skip
