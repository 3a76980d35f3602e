"""How calls execute: where rows run, how often the model is serialized."""

import os

import joblib
import numpy as np
import pytest
from estimators_for_tests import (
    InPlaceScaler,
    PickleCountingClassifier,
    WhereAmIClassifier,
)
from numpy.testing import assert_array_equal
from sklearn.frozen import FrozenEstimator

from skbatch import BatchedPredictor, BatchedTransformer, _engine


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
        FrozenEstimator(counting_model), n_jobs=2, batch_size=batch_size
    )
    # Force the parallel path for the default plan too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
        for expected_calls in (1, 2):
            batched.predict_proba(X)
            # At most once per worker per call; in fact once per call.
            assert PickleCountingClassifier.n_pickles == expected_calls


@pytest.mark.parametrize(
    "params", [{"n_jobs": 1}, {"n_jobs": 2, "batch_size": 7, "backend": "threading"}]
)
def test_model_never_serialized_in_process_or_on_threads(iris, counting_model, params):
    X, _ = iris
    BatchedPredictor(FrozenEstimator(counting_model), **params).predict(X)
    assert PickleCountingClassifier.n_pickles == 0


def _where(batched, X):
    out = batched.predict(X)
    return set(out[:, 0].tolist()), set(out[:, 1].tolist())


def test_n_jobs_1_runs_in_process(iris):
    X, _ = iris
    pids, _ = _where(BatchedPredictor(WhereAmIClassifier(), n_jobs=1).fit(X), X)
    assert pids == {os.getpid()}


def test_input_too_cheap_to_parallelise_stays_in_process(iris, monkeypatch):
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(), n_jobs=2).fit(X)
    # The decision compares the first rows' timing, extrapolated to the rest,
    # with MIN_PARALLEL_SECONDS; move the bound instead of relying on a clock.
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", float("inf"))
    assert _where(batched, X)[0] == {os.getpid()}
    monkeypatch.setattr(_engine, "MIN_PARALLEL_SECONDS", 0.0)
    assert len(_where(batched, X)[0] - {os.getpid()}) >= 1


def test_slow_python_predict_goes_to_workers_with_the_default_threshold(iris):
    X, _ = iris
    # 150,000 Python steps per row: 600 rows take well over a second serially,
    # far above the 0.2 s threshold on any machine this suite runs on.
    model = BatchedPredictor(WhereAmIClassifier(work=150_000), n_jobs=2).fit(X)
    assert len(_where(model, X)[0] - {os.getpid()}) >= 1


def test_explicit_batch_size_uses_workers(iris):
    X, _ = iris
    pids, _ = _where(
        BatchedPredictor(WhereAmIClassifier(), n_jobs=2, batch_size=50).fit(X), X
    )
    assert len(pids - {os.getpid()}) >= 1


def test_parallel_config_is_honoured(iris):
    X, _ = iris
    batched = BatchedPredictor(WhereAmIClassifier(), batch_size=50).fit(X)
    with joblib.parallel_config(backend="threading", n_jobs=2):
        pids, threads = _where(batched, X)
    assert pids == {os.getpid()}
    assert len(threads) >= 2
    # Outside the context, n_jobs=None means one worker: in-process.
    assert _where(batched, X)[0] == {os.getpid()}


def test_explicit_backend_wins_over_context(iris):
    X, _ = iris
    batched = BatchedPredictor(
        WhereAmIClassifier(), n_jobs=2, batch_size=50, backend="threading"
    ).fit(X)
    with joblib.parallel_config(backend="loky"):
        pids, _ = _where(batched, X)
    assert pids == {os.getpid()}


def test_writing_transformer_gets_writeable_rows_in_workers():
    # joblib memory-maps inputs over 1 MB read-only in worker processes; a
    # transformer that writes into its input must still work as it does serially.
    X = np.random.default_rng(0).normal(size=(200_000, 8))  # 3.2 MB per batch
    expected = InPlaceScaler().transform(X.copy())
    batched = BatchedTransformer(InPlaceScaler(), n_jobs=2, batch_size=50_000)
    out = batched.fit(X).transform(X.copy())
    assert_array_equal(out, expected)


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
    BatchedPredictor(WhereAmIClassifier(), n_jobs=2, batch_size=100, verbose=1).fit(
        X
    ).predict(X)
    out = capsys.readouterr().out
    assert "600 rows" in out and "batches" in out


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
        {"n_jobs": 2, "batch_size": 50},
        {"n_jobs": 2, "batch_size": 50, "backend": "threading"},
    ],
    ids=["in-process", "loky", "threading"],
)
def test_warnings_are_not_multiplied_by_batches(iris, params, bars):
    pd = pytest.importorskip("pandas")
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)  # fitted without names
    X_named = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    serial = _shown_warnings(lambda: model.predict(X_named))
    batched = BatchedPredictor(FrozenEstimator(model), **params)
    assert len(serial) == 1
    shown = _shown_warnings(lambda: batched.predict(X_named))
    assert set(shown) == set(serial)
    # Worker processes send their warnings back once per call, not once per
    # sub-chunk (12 batches x several chunks here). Calls made in the calling
    # process (the first rows, the row-wise check) follow Python's filters,
    # under which scikit-learn shows this warning on every call.
    if params.get("n_jobs") == 2 and "backend" not in params:
        assert len(shown) <= 3


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
