"""How calls execute: where rows run, how often the model is serialized."""

import os
import threading
import warnings
from typing import ClassVar

import joblib
import numpy as np
import pytest
from estimators_for_tests import (
    CenteringTransformer,
    InPlaceScaler,
    PickleCountingClassifier,
    WhereAmIClassifier,
)
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.frozen import FrozenEstimator

import skbatch
from skbatch import BatchedPredictor, BatchedTransformer, _engine, _schedule


@pytest.fixture
def workers_take_every_row(monkeypatch):
    """Worker processes take every row after calibration: the calling thread
    would otherwise finish small inputs before they have started."""
    from skbatch import _schedule

    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)


@pytest.fixture
def outputs_differ_by_process(monkeypatch):
    """For models that report their process id: worker processes' outputs
    differ from the caller's by design, so are not compared."""
    from skbatch import _schedule

    monkeypatch.setattr(_schedule, "CHECK_WORKER_OUTPUTS", False)


@pytest.fixture
def counting_model(iris):
    X, y = iris
    model = PickleCountingClassifier(max_iter=500).fit(X, y)
    PickleCountingClassifier.n_pickles = 0
    return model


@pytest.mark.parametrize("batch_size", [None, 7, 40])
def test_model_serialized_once_per_call_however_many_batches(
    iris, counting_model, batch_size
):
    X, _ = iris
    batched = BatchedPredictor(
        FrozenEstimator(counting_model),
        n_jobs=2,
        batch_size=batch_size,
        backend="loky",
    )
    # Force worker processes for the default chunking too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
        for expected_calls in (1, 2):
            batched.predict_proba(X)
            assert batched.last_call_.path == "processes"
            # Once per call, however many chunks the workers ran.
            assert PickleCountingClassifier.n_pickles == expected_calls
            assert batched.last_call_.model_pickles == 1


def test_unchanged_model_is_not_sent_again_and_a_changed_one_is(
    iris, workers_take_every_row
):
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=50, backend="loky"
    )
    batched.predict_proba(X)
    assert batched.last_call_.model_loads <= 1  # one worker process
    batched.predict_proba(X)
    # The worker kept the model: neither sent nor loaded again.
    assert batched.last_call_.model_loads == 0
    assert any(k.startswith("process-") for k in batched.last_call_.rows_by_worker)
    # Edited in place: the workers must not keep predicting with the old one.
    model.coef_[:] = -model.coef_
    got = batched.predict_proba(X)
    assert batched.last_call_.model_loads == 1
    assert_array_equal(got, model.predict_proba(X))


@pytest.mark.parametrize(
    "params", [{"n_jobs": 1}, {"n_jobs": 2, "batch_size": 7, "backend": "threading"}]
)
def test_model_never_serialized_in_process_or_on_threads(iris, counting_model, params):
    X, _ = iris
    batched = BatchedPredictor(FrozenEstimator(counting_model), **params)
    batched.predict(X)
    assert PickleCountingClassifier.n_pickles == 0
    assert batched.last_call_.model_pickles == 0


def _where(batched, X):
    out = batched.predict(X)
    return set(out[:, 0].tolist()), set(out[:, 1].tolist())


def test_n_jobs_1_runs_in_process(iris):
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(), n_jobs=1).fit(X)
    pids, threads = _where(batched, X)
    assert pids == {os.getpid()}
    assert len(threads) == 1
    assert batched.last_call_.path == "direct"


def test_tiny_input_is_one_direct_call(iris):
    from estimators_for_tests import CallCountingRegressor

    X, _ = iris
    model = CallCountingRegressor().fit(X)
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2)
    batched.predict(X[:100])
    assert model.n_calls_ == 1
    assert batched.last_call_.path == "direct"
    assert batched.last_call_.model_pickles == 0


class _FakeWatch:
    """A GIL watcher that saw ``share`` at once (None: saw nothing yet)."""

    share = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def gil_share(self):
        return self.share


def _watch_sees(monkeypatch, share):
    monkeypatch.setattr(_FakeWatch, "share", share)
    monkeypatch.setattr(_engine, "GilWatch", _FakeWatch)


def test_input_too_cheap_to_parallelise_stays_in_process(iris, monkeypatch):
    X, _ = iris
    _watch_sees(monkeypatch, 0.0)
    batched = BatchedPredictor(WhereAmIClassifier(), n_jobs=2).fit(X)
    # The decision compares the measured cost of the rest of the rows with
    # MIN_PARALLEL_SECONDS; move the bound instead of relying on a clock.
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", float("inf"))
    assert _where(batched, X) == ({os.getpid()}, {threading.get_ident() % 2**31})
    assert batched.last_call_.path == "in-process"
    assert "too little to share" in batched.last_call_.reasons[-1]


def test_gil_bound_predict_goes_to_worker_processes(
    iris, monkeypatch, outputs_differ_by_process
):
    X, _ = iris
    # Pure-Python steps per row hold the GIL. Whether the work left pays for
    # worker processes depends on the clock; move the bounds instead.
    monkeypatch.setattr(_engine, "MIN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "expected_start_seconds", lambda: 0.0)
    # Whether other programs keep the other core busy is not this test's.
    monkeypatch.setattr(_engine, "idle_cpu_seconds", lambda: None)
    # The probe must last long enough for the watcher to see the GIL (five
    # switch intervals): about 60 ms here.
    batched = BatchedPredictor(WhereAmIClassifier(work=50_000), n_jobs=2).fit(X)
    pids, _ = _where(batched, X)
    report = batched.last_call_
    assert report.path == "processes", report.reasons
    assert "the model holds it" in report.reasons[0]
    assert report.gil_share >= 0.5
    # The calling thread worked too.
    assert report.rows_by_worker["caller"] > 0
    assert sum(report.rows_by_worker.values()) == len(X)
    assert os.getpid() in pids


def test_gil_releasing_predict_goes_to_threads():
    from estimators_for_tests import SleepyRegressor

    X = np.arange(6000.0).reshape(-1, 1)  # 1.2 s of waiting serially
    batched = BatchedPredictor(SleepyRegressor(), n_jobs=2).fit(X)
    assert_array_equal(batched.predict(X), X[:, 0])
    report = batched.last_call_
    assert report.path == "threads", report.reasons
    assert report.gil_share < 0.5
    assert "releases it" in report.reasons[0]
    assert report.rows_by_worker.get("thread-1", 0) > 0


def test_later_calls_recall_the_measurements_and_start_at_once():
    from estimators_for_tests import SleepyRegressor

    X = np.arange(3000.0).reshape(-1, 1)
    model = SleepyRegressor().fit(X)
    first = BatchedPredictor(FrozenEstimator(model), n_jobs=2)
    first.predict(X)
    assert first.last_call_.measured == "this call"
    assert "calibration" in first.last_call_.phase_seconds
    # A new wrapper around the same fitted model: the costs belong to the model.
    again = BatchedPredictor(FrozenEstimator(model), n_jobs=2)
    assert_array_equal(again.predict(X), X[:, 0])
    report = again.last_call_
    assert report.measured == "recalled"
    assert report.path == "threads"
    assert "calibration" not in report.phase_seconds
    assert "(measured earlier)" in report.reasons[0]
    assert sum(report.rows_by_worker.values()) == len(X)
    # Another model object, even an equal one, is measured afresh.
    other = BatchedPredictor(FrozenEstimator(SleepyRegressor().fit(X)), n_jobs=2)
    other.predict(X)
    assert other.last_call_.measured == "this call"


def test_recalled_gil_bound_model_starts_processes_before_its_probe(
    iris, monkeypatch, outputs_differ_by_process
):
    X, _ = iris
    monkeypatch.setattr(_engine, "MIN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "expected_start_seconds", lambda: 0.0)
    X = np.tile(X, (2, 1))
    batched = BatchedPredictor(WhereAmIClassifier(work=20_000), n_jobs=2).fit(X)
    batched.predict(X)
    assert batched.last_call_.path == "processes"
    out = batched.predict(X)
    report = batched.last_call_
    assert report.measured == "recalled"
    assert report.path == "processes"
    assert report.model_pickles == 1
    assert sum(report.rows_by_worker.values()) == len(X)
    # Every row has exactly one answer, from the caller or a worker process.
    assert set(out[:, 0].tolist()) <= {os.getpid()} | {
        int(k.split("-")[1]) for k in report.rows_by_worker if k != "caller"
    }


def test_a_recalled_profile_still_checks_rows_are_row_wise(iris):
    from skbatch import SerialFallbackWarning

    X, _ = iris
    X = np.tile(X, (20, 1))
    model = CenteringTransformer(center=False).fit(X)
    batched = BatchedTransformer(FrozenEstimator(model), n_jobs=2, batch_size=500)
    assert_array_equal(batched.transform(X), X)
    # The model changes in place and stops being row-wise: the next call,
    # which recalls the first one's measurements, must still notice.
    model.center = True
    with pytest.warns(SerialFallbackWarning, match="depends on the other rows"):
        out = batched.transform(X)
    assert batched.last_call_.path == "whole-input fallback"
    assert_array_equal(out, X - X.mean(axis=0))


def test_explicit_batch_size_sets_the_chunks(iris):
    X, _ = iris
    batched = BatchedPredictor(
        WhereAmIClassifier(work=20_000), n_jobs=2, batch_size=50, backend="threading"
    ).fit(X)
    pids, threads = _where(batched, X)
    assert pids == {os.getpid()}
    assert len(threads) == 2
    assert batched.last_call_.chunk_rows == 50


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_workers_never_oversubscribe_the_cores(
    iris, backend, workers_take_every_row, outputs_differ_by_process
):
    from estimators_for_tests import ThreadBudgetClassifier

    from skbatch._threadlimits import available_cores, native_threads_now

    X, _ = iris
    before = native_threads_now()
    batched = BatchedPredictor(
        ThreadBudgetClassifier(), n_jobs=2, batch_size=50, backend=backend
    ).fit(X)
    seen = batched.predict(X)
    budget = max(1, available_cores() // 2)
    assert (
        batched.last_call_.path
        == {"threading": "threads", "loky": "processes"}[backend]
    )
    assert batched.last_call_.inner_threads == budget
    # Rows computed after the probe ran under the budget, in every worker.
    # Calibration runs the caller with its own settings; every worker thread
    # and process ran its rows under the budget.
    by_worker = (seen[:, 1] != os.getpid()) | (
        seen[:, 2] != threading.get_ident() % 2**31
    )
    assert by_worker.any()
    assert seen[by_worker, 0].max() <= budget
    # And the caller's own settings are back afterwards.
    assert native_threads_now() == before


def test_rows_reach_threads_as_views_not_copies(iris):
    from estimators_for_tests import RowSourceRegressor

    X, _ = iris
    batched = BatchedPredictor(
        RowSourceRegressor(), n_jobs=2, batch_size=50, backend="threading"
    ).fit(X)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
        codes = batched.predict(X)
    # The probe's rows are copies (they run twice); every other row is a
    # read-only view of the user's array.
    assert (codes[_engine.PROBE_ROWS :] == 1).all()


def test_memmapped_input_reaches_processes_without_a_copy(
    iris, tmp_path, workers_take_every_row
):
    from estimators_for_tests import RowSourceRegressor

    X, _ = iris
    path = tmp_path / "rows.dat"
    mapped = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mapped[:] = X
    mapped.flush()
    rows = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)[10:]
    batched = BatchedPredictor(
        RowSourceRegressor(mapped_file=str(path)),
        n_jobs=2,
        batch_size=50,
        backend="loky",
    ).fit(X)
    codes = batched.predict(rows)
    report = batched.last_call_
    assert report.rows_transfer == "memmap"
    done_by_processes = sum(
        v for k, v in report.rows_by_worker.items() if k.startswith("process-")
    )
    # Every row after the probe (whose rows run twice, so are copies) came
    # straight from the file, in worker processes and in the calling thread.
    assert (codes[_engine.PROBE_ROWS :] == 2).all()
    assert done_by_processes > 0


def test_parallel_config_is_honoured(iris):
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(work=20_000), batch_size=50).fit(X)
    with joblib.parallel_config(backend="threading", n_jobs=2):
        pids, threads = _where(batched, X)
    assert pids == {os.getpid()}
    assert len(threads) >= 2
    assert batched.last_call_.path == "threads"
    # A context setting only n_jobs leaves the choice to skbatch.
    with joblib.parallel_config(n_jobs=1):
        assert _where(batched, X) == ({os.getpid()}, {threading.get_ident() % 2**31})


def test_explicit_backend_wins_over_context(iris):
    X, _ = iris
    batched = BatchedPredictor(
        WhereAmIClassifier(), n_jobs=2, batch_size=50, backend="threading"
    ).fit(X)
    with joblib.parallel_config(backend="loky"):
        pids, _ = _where(batched, X)
    assert pids == {os.getpid()}


@pytest.mark.parametrize("backend", [None, "threading", "loky", "multiprocessing"])
def test_transformer_writing_into_its_input_gives_the_serial_result(backend):
    # Rows reach the method read-only (views, memmaps): a transformer that
    # writes into its input fails on them, and the whole input then goes
    # through one plain call, which changes it once, as serially.
    from skbatch import SerialFallbackWarning

    X = np.random.default_rng(0).normal(size=(200_000, 8))  # 3.2 MB per batch
    expected = InPlaceScaler().transform(X.copy())
    batched = BatchedTransformer(
        InPlaceScaler(), n_jobs=2, batch_size=50_000, backend=backend
    )
    given = X.copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = batched.fit(X).transform(given)
    assert_array_equal(out, expected)
    if batched.last_call_.path == "whole-input fallback":
        assert_array_equal(given, expected)  # changed once, as serially
        assert any(issubclass(w.category, SerialFallbackWarning) for w in caught)
    else:  # joblib's workers write into copies of their own
        assert_array_equal(given, X)


def test_non_row_wise_method_falls_back_to_one_call(iris):
    from sklearn.base import BaseEstimator, TransformerMixin

    class Summary(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.asarray(X).mean(axis=0)  # one row for all rows

    from skbatch import SerialFallbackWarning

    X, _ = iris
    batched = BatchedTransformer(Summary(), n_jobs=2, batch_size=50).fit(X)
    with pytest.warns(SerialFallbackWarning, match="not one entry per input row"):
        out = batched.transform(X)
    assert_array_equal(out, X.mean(axis=0))


def test_verbose_reports_the_decision(iris, capsys):
    X, _ = iris
    batched = BatchedPredictor(
        WhereAmIClassifier(), n_jobs=2, batch_size=100, verbose=1, backend="threading"
    ).fit(X)
    batched.predict(X)
    out = capsys.readouterr().out
    assert out == batched.last_call_.summary() + "\n"
    assert "600 rows, threads" in out and "backend asked for: threads" in out


def _shown_warnings(func):
    """Messages Python's default filter would show while ``func`` runs."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        func()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "params",
    [
        {"n_jobs": 1, "progress": True},
        {"n_jobs": 2, "batch_size": 50, "backend": "loky"},
        {"n_jobs": 2, "batch_size": 50, "backend": "threading"},
    ],
    ids=["in-process", "loky", "threading"],
)
def test_warnings_are_not_multiplied_by_batches(iris, params, bars, monkeypatch):
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)  # fitted without names
    X_named = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    serial = _shown_warnings(lambda: model.predict(X_named))
    from skbatch import _schedule

    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)
    batched = BatchedPredictor(FrozenEstimator(model), **params)
    assert len(serial) == 1
    shown = _shown_warnings(lambda: batched.predict(X_named))
    assert set(shown) == set(serial)
    # Worker processes send their warnings back once per call, not once per
    # chunk (11 chunks here). Calls made in the calling thread (the first
    # rows, the row-wise check, calibration) follow Python's filters, under
    # which scikit-learn shows this warning on every call.
    if params.get("backend") == "loky":
        assert len(shown) <= 2 + len(batched.last_call_.rows_by_worker) + 3


def test_warning_with_a_demanding_constructor_is_relayed(iris):
    from estimators_for_tests import DriftWarning, WarningClassifier

    X, _ = iris
    model = WarningClassifier().fit(X)
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, batch_size=50)
    with pytest.warns(DriftWarning, match="drift in column a") as caught:
        out = batched.predict(X)
    assert all(w.category is DriftWarning for w in caught)
    with pytest.warns(DriftWarning):
        assert_array_equal(out, model.predict(X))


class _WarnsOnRow100(TransformerMixin, BaseEstimator):
    """Slow on the first rows (the calling thread's probe and check run while
    worker threads work); warns about row 100 (column 0: the row's index)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        import time

        rows = np.asarray(X)[:, 0]
        if (rows < 64).any():
            time.sleep(0.3)
        if 100 in rows:
            time.sleep(0.5)
            warnings.warn("row 100 looks suspicious", UserWarning, stacklevel=2)
        return np.asarray(X, dtype=float)


def test_a_worker_threads_warning_is_never_swallowed_by_the_callers_check():
    # A recalled plan starts worker threads while the calling thread runs its
    # row-wise check: silencing the check's warnings (catch_warnings is
    # process-wide) dropped what the threads warned meanwhile, "error"
    # filters included; resetting the filters showed "default" warnings twice.
    X = np.repeat(np.arange(3000, dtype=float), 2).reshape(-1, 2)
    batched = BatchedTransformer(
        _WarnsOnRow100(), backend="threading", n_jobs=2, batch_size=500
    ).fit(X)
    with pytest.warns(UserWarning, match="row 100"):
        batched.transform(X)  # measured: later calls recall the plan
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(UserWarning, match="row 100 looks suspicious"):
                batched.transform(X)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        batched.transform(X)
    assert [str(w.message) for w in caught] == ["row 100 looks suspicious"]


def test_concurrent_calls_leave_warnings_working(iris):
    import threading
    import warnings

    from sklearn.linear_model import LogisticRegression

    X, y = iris
    batched = BatchedPredictor(LogisticRegression(max_iter=500), n_jobs=2).fit(X, y)
    threads = [
        threading.Thread(target=lambda: [batched.predict(X) for _ in range(20)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.warns(UserWarning, match="still shown"):
        warnings.warn("still shown", UserWarning, stacklevel=1)
    assert warnings.showwarning is warnings._showwarning_orig


def test_warning_filters_still_apply_in_workers(iris):
    pd = pytest.importorskip("pandas")
    import warnings

    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    X_named = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, batch_size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="feature names"):
            batched.predict(X_named)


def test_small_input_is_exactly_one_call(iris, monkeypatch):
    X, _ = iris
    calls = []
    model = WhereAmIClassifier().fit(X)
    original = model.predict
    monkeypatch.setattr(
        model, "predict", lambda rows: calls.append(len(rows)) or original(rows)
    )
    batched = BatchedPredictor(FrozenEstimator(model), n_jobs=2, batch_size=10)
    batched.predict(X[:100])
    assert calls == [100]  # no probe, no row-wise check, no copy


def test_any_other_joblib_backend_is_used_as_asked(iris):
    from joblib.parallel import ThreadingBackend, register_parallel_backend

    submitted = []

    class SpyBackend(ThreadingBackend):
        def submit(self, func, callback=None):
            submitted.append(func)
            return super().submit(func, callback)

    register_parallel_backend("skbatch-test-spy", SpyBackend)
    X, _ = iris
    batched = BatchedPredictor(
        WhereAmIClassifier(), n_jobs=2, batch_size=100, backend="skbatch-test-spy"
    ).fit(X)
    batched.predict(X)
    assert submitted
    assert batched.last_call_.path == "joblib"
    assert "SpyBackend" in batched.last_call_.reasons[-1]
    submitted.clear()
    with joblib.parallel_config(backend="skbatch-test-spy"):
        BatchedPredictor(WhereAmIClassifier(), n_jobs=2, batch_size=100).fit(X).predict(
            X
        )
    assert submitted


def test_a_multiprocessing_child_using_worker_processes_exits():
    import multiprocessing

    from estimators_for_tests import predict_in_worker_processes_then_exit

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=predict_in_worker_processes_then_exit, args=(queue,))
    child.start()
    path, folder = queue.get(timeout=120)
    child.join(60)
    if child.exitcode is None:
        child.terminate()
    assert path == "processes"
    assert child.exitcode == 0  # not left waiting for its idle workers
    assert not os.path.exists(folder)  # its model files are gone


def test_worker_processes_that_disagree_with_the_caller_are_not_trusted(
    monkeypatch, workers_take_every_row
):
    import estimators_for_tests

    monkeypatch.setattr(estimators_for_tests, "OFFSET", 1000.0)
    X = np.arange(2400.0).reshape(-1, 4)
    model = estimators_for_tests.ModuleStateRegressor().fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=50, backend="loky"
    )
    got = batched.predict(X)
    assert_array_equal(got, X[:, 0] + 1000.0)
    report = batched.last_call_
    assert not any(k.startswith("process-") for k in report.rows_by_worker)
    assert "computed other outputs" in " ".join(report.reasons)


def test_memmap_replaced_on_disk_is_not_read_by_workers(
    iris, tmp_path, workers_take_every_row
):
    from estimators_for_tests import RowSourceRegressor

    X, _ = iris
    path = tmp_path / "rows.dat"
    np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)[:] = X
    rows = np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    fresh = tmp_path / "fresh.dat"
    np.memmap(fresh, dtype=X.dtype, mode="w+", shape=X.shape)[:] = -X
    os.replace(fresh, path)  # the caller's mapping still holds X
    batched = BatchedPredictor(
        RowSourceRegressor(mapped_file=str(path)),
        n_jobs=2,
        batch_size=50,
        backend="loky",
    ).fit(X)
    batched.predict(rows)
    assert batched.last_call_.rows_transfer == "pickled"


def test_concurrent_calls_restore_the_native_thread_settings(iris):
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.linear_model import LogisticRegression

    from skbatch._threadlimits import native_threads_now

    X, y = iris
    X = np.tile(X, (20, 1))
    y = np.tile(y, 20)
    before = native_threads_now()
    batched = BatchedPredictor(
        FrozenEstimator(LogisticRegression(max_iter=500).fit(X, y)),
        n_jobs=2,
        batch_size=500,
        backend="threading",
    )
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            list(pool.map(lambda _: batched.predict_proba(X), range(6)))
    assert native_threads_now() == before


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_jobs": "2"}, TypeError),
        ({"n_jobs": True}, TypeError),
        ({"n_jobs": 0}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "10"}, ValueError),
    ],
)
def test_start_workers_rejects_bad_arguments(kwargs, error):
    import skbatch

    with pytest.raises(error):
        skbatch.start_workers(**kwargs)


def test_start_workers_accepts_what_n_jobs_accepts():
    import skbatch

    assert skbatch.start_workers(None) >= 0
    assert skbatch.start_workers(np.int64(2)) == 1


def test_forget_measurements_makes_the_next_call_measure_afresh():
    from estimators_for_tests import SleepyRegressor

    X = np.arange(3000.0).reshape(-1, 1)
    batched = BatchedPredictor(FrozenEstimator(SleepyRegressor().fit(X)), n_jobs=2)
    batched.predict(X)
    batched.predict(X)
    assert batched.last_call_.measured == "recalled"
    skbatch.forget_measurements()
    batched.predict(X)
    assert batched.last_call_.measured == "this call"


@pytest.mark.parametrize("backend", [None, "threading", "sequential", "loky"])
def test_no_chunk_after_the_probe_gets_more_than_batch_size_rows(backend):
    from estimators_for_tests import SleepyRegressor

    class SizeRecorder(SleepyRegressor):
        sizes: ClassVar[list] = []

        def predict(self, X):
            SizeRecorder.sizes.append(len(X))
            return super().predict(X)

    SizeRecorder.sizes = []
    X = np.arange(3000.0).reshape(-1, 1)
    batched = BatchedPredictor(
        SizeRecorder(seconds_per_row=1e-5), n_jobs=2, batch_size=50, backend=backend
    ).fit(X)
    assert_array_equal(batched.predict(X), X[:, 0])
    # Sizes seen in this process (worker processes have their own list): the
    # first 64 rows, then the row-wise check (the probe's last 31 rows and the
    # input's last 31) whatever the batch size, then chunks of at most
    # batch_size rows.
    probe, tail, *chunks = SizeRecorder.sizes
    assert (probe, tail) == (64, 62)
    assert all(size <= 50 for size in chunks)


def test_a_model_seen_holding_the_gil_on_its_probe_starts_processes_at_once(
    iris, monkeypatch, outputs_differ_by_process
):
    monkeypatch.setattr(_engine, "MIN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "expected_start_seconds", lambda: 0.0)
    _watch_sees(monkeypatch, 1.0)
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(work=2000), n_jobs=2).fit(X)
    batched.predict(X)
    report = batched.last_call_
    assert report.path == "processes", report.reasons
    # Decided on the probe's evidence: no calibration chunks.
    assert "calibration" not in report.phase_seconds


def test_a_call_too_short_to_see_the_gil_stays_in_the_calling_thread(iris, monkeypatch):
    _watch_sees(monkeypatch, None)
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(), n_jobs=2).fit(X)
    assert _where(batched, X) == ({os.getpid()}, {threading.get_ident() % 2**31})
    report = batched.last_call_
    assert report.path == "in-process"
    assert "too short to see whether the model holds the GIL" in report.reasons[-1]
    # Nothing was learned: the next call measures again.
    batched.predict(X)
    assert batched.last_call_.measured == "this call"


@pytest.fixture
def pool_shut_down_after():
    """The test grows the worker pool; later tests get one of their size."""
    from skbatch import _pool

    yield
    _pool._shutdown_pool()


def test_a_larger_pool_never_runs_more_processes_than_n_jobs_allows(
    monkeypatch, outputs_differ_by_process, pool_shut_down_after
):
    from estimators_for_tests import IntervalRegressor

    skbatch.start_workers(n_jobs=4)  # a pool of 3 processes
    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)
    # Outputs carry times and process ids: not row-wise, on purpose.
    monkeypatch.setattr(_engine, "TAIL_ROWS", 1)
    X = np.zeros((3000, 1))
    batched = BatchedPredictor(
        IntervalRegressor(), n_jobs=2, backend="loky", batch_size=100
    ).fit(X)
    out = batched.predict(X)
    assert batched.last_call_.path == "processes"
    calls = {
        (pid, start, stop) for pid, start, stop in out.tolist() if pid != os.getpid()
    }
    assert calls
    # n_jobs=2: the calling thread and one worker process, never two
    # processes computing at once.
    for pid, start, stop in calls:
        overlapping = {
            other for other, s, e in calls if other != pid and s < stop and e > start
        }
        assert not overlapping, (pid, overlapping)


def test_workers_too_slow_to_start_for_this_call_start_for_the_next(
    iris, monkeypatch, pool_shut_down_after
):
    import time

    from skbatch import _pool

    _pool._shutdown_pool()
    _watch_sees(monkeypatch, 1.0)  # GIL-bound
    monkeypatch.setattr(_engine, "MIN_PROCESS_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_engine, "expected_start_seconds", lambda: 1e9)
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(), n_jobs=2).fit(X)
    pids, _ = _where(batched, X)
    assert pids == {os.getpid()}
    assert batched.last_call_.path == "in-process"
    assert (
        "start in the background for the next calls" in batched.last_call_.reasons[-1]
    )
    deadline = time.monotonic() + 60
    while _pool.workers_alive() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pool.workers_alive() >= 1
