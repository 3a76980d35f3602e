"""Progress bars count completed rows and are always torn down."""

import threading

import numpy as np
import pytest
from estimators_for_tests import InterruptingClassifier, WhereAmIClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skbatch import BatchedPredictor, _engine
from skbatch._progress import ProgressMonitor, ProgressReporter


def _listeners():
    return [t for t in threading.enumerate() if t.name == "skbatch-progress"]


@pytest.mark.parametrize(
    "params",
    [
        {"n_jobs": 1},
        {"n_jobs": 2, "batch_size": 37},
        {"n_jobs": 2, "batch_size": 37, "backend": "threading"},
        {"n_jobs": 2},
    ],
    ids=["serial", "loky", "threading", "default-plan"],
)
def test_overall_bar_counts_rows_and_ends_at_n_samples(iris, bars, params):
    X, y = iris
    batched = BatchedPredictor(
        LogisticRegression(max_iter=500), progress=True, **params
    )
    batched.fit(X, y).predict(X)
    [bar] = bars
    assert bar.total == len(X)
    assert bar.n == len(X)
    assert len(bar.updates) >= 2  # moves in steps, not once at the end
    assert bar.closed
    assert not _listeners()


def test_worker_bars(iris, bars):
    X, y = iris
    batched = BatchedPredictor(
        LogisticRegression(max_iter=500), progress="workers", n_jobs=2, batch_size=50
    )
    batched.fit(X, y).predict(X)
    overall, *workers = bars
    # A bar per worker that did rows, made when it first reported.
    assert 1 <= len(workers) <= 2
    assert all(bar.n for bar in workers)
    assert overall.n == len(X)
    # The calling thread is a worker too: every row is on a worker's bar,
    # named as in last_call_.
    by_worker = batched.last_call_.rows_by_worker
    assert sum(w.n for w in workers) == len(X)
    assert {w.desc.strip(): w.n for w in workers if w.n} == by_worker
    assert all(bar.closed for bar in bars)


def test_waiting_for_workers_is_shown_then_cleared(iris, bars):
    X, y = iris
    # Only joblib's own backends leave the calling thread waiting; skbatch's
    # threads and processes have it work meanwhile.
    batched = BatchedPredictor(
        LogisticRegression(max_iter=500),
        progress=True,
        n_jobs=2,
        batch_size=50,
        backend="multiprocessing",
    )
    batched.fit(X, y).predict(X)
    assert bars[0].postfixes[0] == "waiting for workers"
    assert bars[0].postfix == ""  # cleared by the first worker report
    assert bars[0].n == len(X)


def test_no_bar_without_progress(iris, bars):
    X, y = iris
    BatchedPredictor(LogisticRegression(), n_jobs=2, batch_size=50).fit(X, y).predict(X)
    assert bars == []


@pytest.mark.parametrize(
    "error, params",
    [
        (KeyboardInterrupt, {"n_jobs": 1}),
        (ValueError, {"n_jobs": 1}),
        (ValueError, {"n_jobs": 2, "batch_size": 50}),
        (ValueError, {"n_jobs": 2, "batch_size": 50, "backend": "threading"}),
    ],
    ids=["interrupt-serial", "error-serial", "error-loky", "error-threading"],
)
def test_torn_down_on_error_and_interrupt(iris, bars, error, params):
    X, _ = iris
    X = X.copy()
    X[400, 0] = -1.0
    batched = BatchedPredictor(
        InterruptingClassifier(error=error), progress=True, **params
    ).fit(X)
    with pytest.raises(error):
        batched.predict(X)
    assert bars and all(bar.closed for bar in bars)
    assert bars[0].n < len(X)
    assert not _listeners()


def test_interrupt_in_calling_thread_during_parallel_call(iris, bars, monkeypatch):
    # Ctrl-C arrives in the parent while joblib runs: simulate it at dispatch.
    X, _ = iris

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_engine.Parallel, "__call__", interrupted)
    batched = BatchedPredictor(
        WhereAmIClassifier(),
        n_jobs=2,
        batch_size=50,
        progress=True,
        backend="multiprocessing",
    ).fit(X)
    with pytest.raises(KeyboardInterrupt):
        batched.predict(X)
    assert all(bar.closed for bar in bars)
    assert not _listeners()


def test_reporter_never_raises():
    class Broken:
        def put(self, item):
            raise OSError("manager gone")

    reporter = ProgressReporter(Broken())
    reporter(10)  # swallowed
    reporter(10)


def test_reporter_survives_an_unreachable_channel():
    import pickle

    reporter = ProgressReporter(object())  # picklable, but not a queue
    clone = pickle.loads(pickle.dumps(reporter))
    clone(5)  # no exception: progress is best effort


def test_cross_process_monitor(bars):
    with ProgressMonitor(10, mode="overall", cross_process=True, desc="x") as monitor:
        pickled = __import__("pickle").dumps(monitor.reporter)
        remote = __import__("pickle").loads(pickled)
        remote(4)
        remote(6)
    assert bars[0].n == 10 and bars[0].closed
    assert not monitor.listening


def test_counts_with_empty_and_tiny_inputs(bars):
    X = np.zeros((1, 4))
    y = np.array([0])
    BatchedPredictor(WhereAmIClassifier(), n_jobs=2, progress=True).fit(X, y).predict(X)
    assert bars[0].n == 1 and bars[0].closed


def _children():
    import multiprocessing

    return {p.pid for p in multiprocessing.active_children()}


def test_manager_lives_exactly_as_long_as_its_call(bars):
    before = _children()
    with ProgressMonitor(5, mode="overall", cross_process=True) as monitor:
        assert _children() - before  # the queue's server
        monitor.reporter(5)
    assert _children() - before == set()
    with pytest.raises(KeyboardInterrupt):
        with ProgressMonitor(5, mode="overall", cross_process=True) as monitor:
            raise KeyboardInterrupt
    assert _children() - before == set()
    assert not monitor.listening
    assert all(bar.closed for bar in bars)


def test_cross_process_backend_counts_every_call_and_leaves_no_manager(iris, bars):
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    batched = BatchedPredictor(
        FrozenEstimator(model),
        n_jobs=2,
        batch_size=100,
        backend="multiprocessing",
        progress="workers",
    )
    before = _children()
    for _ in range(3):
        batched.predict(X)
    assert _children() - before == set()
    overall = [bar for bar in bars if bar.total == len(X)]
    assert len(overall) == 3 and all(bar.n == len(X) for bar in overall)


def test_late_messages_from_an_earlier_call_are_ignored(bars):
    with ProgressMonitor(10, mode="overall", cross_process=True) as first:
        first.reporter(10)
    with ProgressMonitor(10, mode="overall", cross_process=True) as second:
        reporter = second.reporter
        # An old reporter on the same queue: its rows are not ours.
        ProgressReporter(reporter._channel, token="earlier-call")(7)
        reporter(10)
    assert bars[1].n == 10


def test_tiny_input_with_progress_is_one_call_and_starts_no_thread(iris, bars):
    from estimators_for_tests import CallCountingRegressor

    X, _ = iris
    model = CallCountingRegressor().fit(X)
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, progress=True)
    threads_before = threading.active_count()
    batched.predict(X[:100])
    assert model.n_calls_ == 1
    assert batched.last_call_.path == "direct"
    assert [(bar.n, bar.total, bar.closed) for bar in bars] == [(100, 100, True)]
    assert threading.active_count() == threads_before


def test_tiny_input_bar_is_closed_at_zero_when_the_call_fails(iris, bars):
    X, y = iris
    batched = BatchedPredictor(LogisticRegression(), progress=True).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        batched.predict(X[:10, :3])
    assert [(bar.n, bar.closed) for bar in bars] == [(0, True)]
