"""BatchedPredictor / BatchedTransformer give what the wrapped estimator gives."""

import warnings

import numpy as np
import pytest
from conftest import CONTAINERS, as_container
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from skbatch import BatchedPredictor, BatchedTransformer

# Small batches force the parallel path even on tiny inputs.
PARALLEL = {"n_jobs": 2, "batch_size": 53}
N_JOBS = [{"n_jobs": 1}, PARALLEL]


def assert_same_output(batched, serial):
    if isinstance(serial, (list, tuple)):
        assert type(batched) is type(serial) and len(batched) == len(serial)
        for b, s in zip(batched, serial, strict=True):
            assert_same_output(b, s)
        return
    assert type(batched) is type(serial)
    if hasattr(serial, "toarray"):
        assert batched.format == serial.format
        assert batched.dtype == serial.dtype
        assert_allclose(batched.toarray(), serial.toarray())
    elif type(serial).__module__.startswith("pandas"):
        import pandas.testing as pdt

        if serial.ndim == 2:
            pdt.assert_frame_equal(batched, serial)
        else:
            pdt.assert_series_equal(batched, serial)
    elif type(serial).__module__.startswith("polars"):
        from polars.testing import assert_frame_equal

        assert_frame_equal(batched, serial)
    else:
        assert batched.dtype == serial.dtype
        assert batched.shape == serial.shape
        if np.issubdtype(serial.dtype, np.floating):
            assert_allclose(batched, serial, rtol=1e-12, atol=1e-12)
        else:
            assert_array_equal(batched, serial)


CLASSIFIER_METHODS = ["predict", "predict_proba", "predict_log_proba"]


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("params", N_JOBS, ids=["n_jobs=1", "n_jobs=2"])
def test_classifier_pipeline_parity(iris, container, params, tmp_path):
    X, y = iris
    scaler = StandardScaler(with_mean=container != "sparse")
    pipe = make_pipeline(scaler, LogisticRegression(max_iter=500))
    X_in = as_container(X, container, tmp_path)
    batched = BatchedPredictor(pipe, **params).fit(X_in, y)
    serial = clone(pipe).fit(X_in, y)
    for method in [*CLASSIFIER_METHODS, "decision_function"]:
        assert_same_output(
            getattr(batched, method)(X_in), getattr(serial, method)(X_in)
        )
    assert batched.score(X_in, y) == serial.score(X_in, y)


@pytest.mark.parametrize("params", N_JOBS, ids=["n_jobs=1", "n_jobs=2"])
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_knn_pipeline_parity(iris, params, backend):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), KNeighborsClassifier())
    batched = BatchedPredictor(pipe, backend=backend, **params).fit(X, y)
    serial = clone(pipe).fit(X, y)
    for method in ["predict", "predict_proba"]:
        assert_same_output(getattr(batched, method)(X), getattr(serial, method)(X))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("params", N_JOBS, ids=["n_jobs=1", "n_jobs=2"])
def test_transformer_parity(iris, container, params, tmp_path):
    X, _ = iris
    X_in = as_container(X, container, tmp_path)
    scaler = StandardScaler(with_mean=container != "sparse")
    batched = BatchedTransformer(scaler, **params)
    serial = clone(scaler)
    assert_same_output(batched.fit_transform(X_in), serial.fit_transform(X_in))
    Xt = serial.transform(X_in)
    assert_same_output(batched.inverse_transform(Xt), serial.inverse_transform(Xt))
    assert_array_equal(batched.get_feature_names_out(), serial.get_feature_names_out())


@pytest.mark.parametrize("output", ["pandas", "polars"])
@pytest.mark.parametrize("container", ["numpy", "pandas"])
def test_set_output_container_and_index(iris, output, container):
    if output == "polars":
        pytest.importorskip("polars")
    X, _ = iris
    X_in = as_container(X, container)
    batched = BatchedTransformer(StandardScaler(), **PARALLEL).set_output(
        transform=output
    )
    serial = StandardScaler().set_output(transform=output)
    assert_same_output(
        batched.fit(X_in).transform(X_in), serial.fit(X_in).transform(X_in)
    )


def test_global_transform_output_config_reaches_workers(iris):
    import sklearn

    X, _ = iris
    with sklearn.config_context(transform_output="pandas"):
        batched = BatchedTransformer(StandardScaler(), **PARALLEL).fit(X)
        out = batched.transform(X)
        expected = StandardScaler().fit(X).transform(X)
    assert_same_output(out, expected)


def test_sparse_output_kept(iris):
    X, _ = iris
    X_cat = np.floor(X).astype(int)
    batched = BatchedTransformer(OneHotEncoder(handle_unknown="ignore"), **PARALLEL)
    serial = OneHotEncoder(handle_unknown="ignore")
    assert_same_output(batched.fit_transform(X_cat), serial.fit_transform(X_cat))


def test_other_methods_and_estimator_kinds(iris):
    X, y = iris
    forest = IsolationForest(n_estimators=20, random_state=0).fit(X)
    batched = BatchedPredictor(FrozenEstimator(forest), **PARALLEL)
    for method in ["predict", "score_samples", "decision_function"]:
        assert_same_output(getattr(batched, method)(X), getattr(forest, method)(X))

    # Multi-output predict_proba returns a list of arrays, one per output.
    Y = np.column_stack([y, y % 2])
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y)
    assert_same_output(
        BatchedPredictor(FrozenEstimator(rf), **PARALLEL).predict_proba(X),
        rf.predict_proba(X),
    )


def test_string_labels_keep_dtype(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    batched = BatchedPredictor(LogisticRegression(max_iter=500), **PARALLEL)
    serial = LogisticRegression(max_iter=500).fit(X, labels)
    assert_same_output(batched.fit(X, labels).predict(X), serial.predict(X))


def test_pandas_no_feature_name_warnings(iris, recwarn):
    X, y = iris
    X_df = as_container(X, "pandas")
    BatchedPredictor(LogisticRegression(max_iter=500), **PARALLEL).fit(X_df, y).predict(
        X_df
    )
    assert not [w for w in recwarn if "feature names" in str(w.message)]


@pytest.mark.parametrize(
    "n_rows, params",
    [
        (1, PARALLEL),
        (3, {"n_jobs": 8, "batch_size": 1}),  # fewer rows than workers
        (5, {"n_jobs": 8}),
        (107, {"n_jobs": 2, "batch_size": 53}),  # too small: one call
        (200, {"n_jobs": 2, "batch_size": 53}),  # a last partial batch
        (600, {"n_jobs": -1}),
    ],
)
def test_edge_sizes(iris, n_rows, params):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X, y)
    batched = BatchedPredictor(FrozenEstimator(pipe), **params)
    assert_same_output(
        batched.predict_proba(X[:n_rows]), pipe.predict_proba(X[:n_rows])
    )


# ----------------------------------------------------------------- bad input
def _bad_inputs(X):
    X_nan = X.copy()
    X_nan[450, 2] = np.nan  # far from the first rows: found before dispatch
    X_inf = X.copy()
    X_inf[599, 0] = np.inf
    strings = X.astype(str).tolist()
    strings[0][0] = "not a number"
    return {
        "wrong_n_features": X[:, :3],
        "nan": X_nan,
        "inf": X_inf,
        "strings": strings,
        "one_dimensional": X[:, 0],
        "empty": X[:0],
        "none": None,
        "scalar": 3.0,
        "three_dimensional": X.reshape(600, 2, 2),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(np.zeros((600, 4))).keys()))
@pytest.mark.parametrize("params", N_JOBS, ids=["n_jobs=1", "n_jobs=2"])
def test_bad_input_gives_the_estimators_own_error(iris, case, params):
    from estimators_for_tests import PickleCountingClassifier

    X, y = iris
    model = PickleCountingClassifier(max_iter=500).fit(X, y)
    X_bad = _bad_inputs(X)[case]
    with pytest.raises(Exception) as serial:
        model.predict(X_bad)
    batched = BatchedPredictor(FrozenEstimator(model), **params)
    PickleCountingClassifier.n_pickles = 0
    with pytest.raises(type(serial.value)) as got:
        batched.predict(X_bad)
    assert str(got.value) == str(serial.value)
    # Raised before any worker started: the model was never shipped.
    assert PickleCountingClassifier.n_pickles == 0


@pytest.mark.parametrize("backend", ["loky", "threading", "multiprocessing"])
def test_error_in_a_worker_is_the_estimators_own(iris, backend):
    from estimators_for_tests import InterruptingClassifier

    X, _ = iris
    X = X.copy()
    X[500, 0] = -1.0
    model = InterruptingClassifier(error=ValueError).fit(X)
    with pytest.raises(ValueError) as serial:
        model.predict(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=53, backend=backend
    )
    with pytest.raises(ValueError) as got:
        batched.predict(X)
    assert str(got.value) == str(serial.value)


def test_aggregated_error_message_in_the_first_rows_matches_serial():
    # OneHotEncoder lists every unknown category of the whole input. When the
    # first rows (the probe) fail, one call on the whole input raises exactly
    # the serial error.
    train = np.array([["a"], ["b"]] * 50, dtype=object)
    X = np.array([["a"]] * 300, dtype=object)
    X[10, 0], X[250, 0] = "zz", "yy"
    encoder = OneHotEncoder().fit(train)
    with pytest.raises(ValueError) as serial:
        encoder.transform(X)
    batched = BatchedTransformer(FrozenEstimator(encoder), n_jobs=2, batch_size=60)
    with pytest.raises(ValueError) as got:
        batched.transform(X)
    assert str(got.value) == str(serial.value)
    assert "whole input" in " ".join(got.value.__notes__)


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_later_failure_is_the_first_failing_batchs_own_error(backend):
    # Past the first rows, the call stops at the first failing batch: its
    # error names that batch's unknown categories, and a note says where.
    train = np.array([["a"], ["b"]] * 50, dtype=object)
    X = np.array([["a"]] * 300, dtype=object)
    X[100, 0], X[250, 0] = "zz", "yy"
    encoder = OneHotEncoder().fit(train)
    with pytest.raises(ValueError) as serial:
        encoder.transform(X[64:124])
    batched = BatchedTransformer(
        FrozenEstimator(encoder), n_jobs=2, batch_size=60, backend=backend
    )
    with pytest.raises(ValueError) as got:
        batched.transform(X)
    assert str(got.value) == str(serial.value)
    assert got.value.__notes__ == [
        "skbatch: raised by OneHotEncoder.transform on batch 1, rows [64, 124) of 300"
    ]


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_exception_that_cannot_be_pickled_does_not_hang(iris, backend):
    from estimators_for_tests import RowError, RowErrorClassifier

    X, _ = iris
    X = X.copy()
    X[500, 0] = -1.0
    model = RowErrorClassifier().fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=53, backend=backend
    )
    with pytest.raises(RowError) as got:
        batched.predict(X)
    # The batch's own error (its row 12), with a note saying where it starts.
    assert got.value.row == 12
    assert "rows [488, 541) of 600" in got.value.__notes__[0]


def test_methods_that_are_not_row_wise_run_as_one_call(iris):
    from sklearn.decomposition import NMF
    from sklearn.gaussian_process import GaussianProcessRegressor

    from skbatch import SerialFallbackWarning

    X, y = iris
    # Known to scikit-learn: NMF's transform depends on all rows given to it.
    X_pos = np.abs(np.random.default_rng(0).normal(size=(600, 20)))
    X_pos[300:] *= 10
    nmf = NMF(n_components=5, solver="mu", random_state=0).fit(X_pos)
    batched = BatchedTransformer(FrozenEstimator(nmf), n_jobs=2, batch_size=100)
    with pytest.warns(SerialFallbackWarning, match="NMF.transform"):
        out = batched.transform(X_pos)
    assert_same_output(out, nmf.transform(X_pos))
    in_pipeline = BatchedPredictor(
        make_pipeline(NMF(n_components=2, max_iter=500), LogisticRegression()),
        n_jobs=2,
        batch_size=100,
    ).fit(X, y)
    with pytest.warns(SerialFallbackWarning, match="NMF"):
        in_pipeline.predict(X)

    # Found by the row-wise check: a transform using statistics of its input.
    from sklearn.preprocessing import FunctionTransformer

    centering = FunctionTransformer(lambda X: X - X.mean(axis=0))
    batched = BatchedTransformer(centering, n_jobs=2, batch_size=100)
    with pytest.warns(SerialFallbackWarning, match="depends on the other rows"):
        out = batched.fit_transform(X)
    assert_same_output(out, X - X.mean(axis=0))

    gpr = GaussianProcessRegressor().fit(X[:100], y[:100])
    batched = BatchedPredictor(FrozenEstimator(gpr), n_jobs=2, batch_size=100)
    with pytest.warns(SerialFallbackWarning):
        _, cov = batched.predict(X[:200], return_cov=True)
    _, expected_cov = gpr.predict(X[:200], return_cov=True)
    assert cov.shape == (200, 200)
    assert_allclose(cov, expected_cov)
    # return_std is row-wise: batched, no warning.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SerialFallbackWarning)
        assert_same_output(
            batched.predict(X[:200], return_std=True),
            gpr.predict(X[:200], return_std=True),
        )


def test_fresh_pandas_index_from_a_method_on_pandas_input(iris):
    pd = pytest.importorskip("pandas")
    from sklearn.preprocessing import FunctionTransformer

    X, _ = iris
    X_df = pd.DataFrame(X, columns=list("abcd"))
    make_new = FunctionTransformer(
        lambda X: pd.DataFrame({"s": np.asarray(X).sum(axis=1)})
    )
    batched = BatchedTransformer(make_new, n_jobs=2, batch_size=50)
    assert_same_output(batched.fit_transform(X_df), make_new.fit_transform(X_df))


def test_no_one_row_remainders_with_the_default_plan():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import FunctionTransformer

    docs = np.array([[f"word{i % 7} other{i % 3}"] for i in range(65)], dtype=object)
    labels = np.arange(65) % 2
    pipe = make_pipeline(
        FunctionTransformer(lambda X: X.squeeze()),
        TfidfVectorizer(),
        LogisticRegression(),
    ).fit(docs, labels)
    batched = BatchedPredictor(FrozenEstimator(pipe), n_jobs=2)
    assert_same_output(batched.predict(docs), pipe.predict(docs))


# ------------------------------------------------------------ sklearn face
def test_hasattr_tells_the_truth():
    assert not hasattr(BatchedPredictor(SVC()), "predict_proba")
    assert hasattr(BatchedPredictor(SVC(probability=True)), "predict_proba")
    assert hasattr(BatchedPredictor(SVC()), "decision_function")
    assert not hasattr(BatchedPredictor(StandardScaler()), "predict")
    assert hasattr(BatchedPredictor(StandardScaler()), "transform")
    assert not hasattr(BatchedPredictor(LinearRegression()), "predict_proba")
    assert not hasattr(BatchedTransformer(StandardScaler()), "predict")
    assert hasattr(BatchedTransformer(PCA()), "inverse_transform")
    assert not hasattr(BatchedTransformer(OneHotEncoder()), "score")
    assert hasattr(BatchedPredictor(KMeans()), "score")


def test_tags_follow_the_wrapped_estimator():
    assert is_classifier(BatchedPredictor(make_pipeline(StandardScaler(), SVC())))
    assert is_regressor(BatchedPredictor(LinearRegression()))
    assert not is_classifier(BatchedTransformer(StandardScaler()))


def test_grid_search_and_clone(iris):
    X, y = iris
    search = GridSearchCV(
        BatchedPredictor(LogisticRegression(max_iter=500), n_jobs=2, batch_size=40),
        {"estimator__C": [0.01, 1.0]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"estimator__C": 1.0}
    cloned = clone(search.best_estimator_)
    assert cloned.get_params()["estimator__C"] == 1.0
    assert not hasattr(cloned, "estimator_")


def test_frozen_estimator_needs_no_fit(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X, y)
    batched = BatchedPredictor(FrozenEstimator(pipe), **PARALLEL)
    assert_same_output(batched.predict(X), pipe.predict(X))
    assert_array_equal(batched.classes_, pipe.classes_)
    # fit is a no-op and keeps the very same model.
    assert batched.fit(X[:10], y[:10]).estimator_.estimator is pipe


def test_not_fitted_error_points_to_frozen_estimator(iris):
    X, y = iris
    model = LogisticRegression().fit(X, y)
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        BatchedPredictor(model).predict(X)
    with pytest.raises(NotFittedError):
        BatchedPredictor(FrozenEstimator(LogisticRegression())).predict(X)


def test_score_matches_serial(iris):
    X, y = iris
    weights = np.linspace(0.1, 2.0, len(y))
    # Accuracy, R² and a custom score (KMeans: serial fallback).
    clf = LogisticRegression(max_iter=500).fit(X, y)
    reg = LinearRegression().fit(X, X[:, 0] * 2 + y)
    km = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    for model, target in [(clf, y), (reg, X[:, 0] * 2 + y), (km, None)]:
        batched = BatchedPredictor(FrozenEstimator(model), **PARALLEL)
        assert batched.score(X, target) == model.score(X, target)
        assert batched.score(X, target, sample_weight=weights) == model.score(
            X, target, sample_weight=weights
        )


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_jobs": "two"}, "n_jobs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"progress": "bars"}, "progress"),
        ({"backend": "no-such-backend"}, "no-such-backend"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"n_jobs": True}, "n_jobs"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": np.True_}, "batch_size"),
    ],
)
def test_bad_parameters_raise_in_fit(iris, params, match):
    X, y = iris
    with pytest.raises((ValueError, TypeError), match=match):
        BatchedPredictor(LogisticRegression(), **params).fit(X, y)


def test_fit_transform_uses_the_estimators_own_when_it_has_one(iris):
    X, _ = iris
    pca = PCA(n_components=2, random_state=0)
    batched = BatchedTransformer(pca, **PARALLEL)
    assert_same_output(batched.fit_transform(X), clone(pca).fit_transform(X))


def test_as_a_pipeline_step(iris):
    X, y = iris
    pipe = make_pipeline(
        BatchedTransformer(StandardScaler(), **PARALLEL), LogisticRegression()
    ).set_output(transform="pandas")
    serial = make_pipeline(StandardScaler(), LogisticRegression()).set_output(
        transform="pandas"
    )
    assert_same_output(
        pipe.fit(X, y).predict_proba(X), serial.fit(X, y).predict_proba(X)
    )


def test_numpy_bool_progress_draws_a_bar(iris, bars):
    X, y = iris
    BatchedPredictor(LogisticRegression(), n_jobs=1, progress=np.True_).fit(
        X, y
    ).predict(X)
    assert len(bars) == 1 and bars[0].n == len(X)


def test_backend_instances_are_refused_with_a_pointer(iris):
    from joblib._parallel_backends import ThreadingBackend

    X, y = iris
    with pytest.raises(ValueError, match="backend"):
        BatchedPredictor(LogisticRegression(), backend=ThreadingBackend()).fit(X, y)


def test_polars_lazyframe_gets_the_estimators_own_error(iris):
    pl = pytest.importorskip("polars")
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    lazy = pl.DataFrame(X[:, :4], schema=list("abcd")).lazy()
    with pytest.raises(Exception) as serial:
        model.predict(lazy)
    with pytest.raises(type(serial.value)) as got:
        BatchedPredictor(FrozenEstimator(model), **PARALLEL).predict(lazy)
    assert str(got.value) == str(serial.value)


def test_fitted_attributes_are_delegated(iris):
    X, y = iris
    batched = BatchedPredictor(LogisticRegression(max_iter=500)).fit(X, y)
    assert_array_equal(batched.coef_, batched.estimator_.coef_)
    assert not hasattr(BatchedPredictor(LogisticRegression()), "coef_")
    with pytest.raises(AttributeError, match="no attribute 'nonsense_'"):
        batched.nonsense_  # noqa: B018


def test_writing_transformer_never_changes_rows_twice(iris):
    from sklearn.gaussian_process import GaussianProcessRegressor

    from skbatch import SerialFallbackWarning

    X, y = iris
    X_serial, X_user = X.copy(), X.copy()
    pipe = make_pipeline(StandardScaler(copy=False), GaussianProcessRegressor())
    pipe.fit(X[:100].copy(), y[:100])
    expected = pipe.predict(X_serial, return_cov=True)
    batched = BatchedPredictor(FrozenEstimator(pipe), n_jobs=2, batch_size=100)
    with pytest.warns(SerialFallbackWarning):
        got = batched.predict(X_user, return_cov=True)
    assert_same_output(got, expected)
    # The one whole-input call changed the rows once, as the serial call did.
    assert_allclose(X_user, X_serial)


def test_batched_calls_do_not_write_into_the_users_rows(iris):
    X, y = iris
    X_user = X.copy()
    pipe = make_pipeline(StandardScaler(copy=False), LogisticRegression()).fit(
        X.copy(), y
    )
    expected = pipe.predict_proba(X.copy())
    for params in [
        {"n_jobs": 1, "progress": True},
        {**PARALLEL, "backend": "threading"},
    ]:
        got = BatchedPredictor(FrozenEstimator(pipe), **params).predict_proba(X_user)
        assert_same_output(got, expected)
        assert_array_equal(X_user, X)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_row_wise_check_runs_whatever_the_batch_size(iris, batch_size):
    from sklearn.gaussian_process import GaussianProcessRegressor

    from skbatch import SerialFallbackWarning

    X, y = iris
    gpr = GaussianProcessRegressor().fit(X[:100], y[:100])
    batched = BatchedPredictor(FrozenEstimator(gpr), n_jobs=2, batch_size=batch_size)
    with pytest.warns(SerialFallbackWarning):
        _, cov = batched.predict(X[:300], return_cov=True)
    assert cov.shape == (300, 300)


def test_reseeded_random_predictions_are_not_stitched(iris):
    from sklearn.dummy import DummyClassifier

    from skbatch import SerialFallbackWarning

    X, y = iris
    dummy = DummyClassifier(strategy="stratified", random_state=0).fit(X, y)
    batched = BatchedPredictor(FrozenEstimator(dummy), n_jobs=2, batch_size=100)
    with pytest.warns(SerialFallbackWarning, match="depends on the other rows"):
        got = batched.predict(X)
    assert_array_equal(got, dummy.predict(X))


def test_known_non_row_wise_steps_are_found_inside_meta_estimators(iris):
    from sklearn.decomposition import NMF
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    from sklearn.model_selection import GridSearchCV

    from skbatch import SerialFallbackWarning

    X, y = iris
    search = GridSearchCV(
        make_pipeline(IterativeImputer(sample_posterior=True), LogisticRegression()),
        {"logisticregression__C": [1.0]},
        cv=2,
    )
    batched = BatchedPredictor(search, n_jobs=2, batch_size=100).fit(X, y)
    with pytest.warns(SerialFallbackWarning, match="sample_posterior"):
        batched.predict(X)
    # NMF's inverse_transform is row-wise: batched, no warning.
    nmf = NMF(n_components=2, max_iter=500).fit(X)
    W = nmf.transform(X)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SerialFallbackWarning)
        got = BatchedTransformer(FrozenEstimator(nmf), **PARALLEL).inverse_transform(W)
    assert_same_output(got, nmf.inverse_transform(W))


def test_outputs_with_missing_values_are_batched(iris):
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer

    from skbatch import SerialFallbackWarning

    X, _ = iris
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame["name"] = ["x", None, "z"] * 200
    frame.loc[frame.index % 7 == 0, "a"] = np.nan
    columns = ColumnTransformer(
        [("keep", "passthrough", ["a", "name"])], remainder="drop"
    ).fit(frame)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SerialFallbackWarning)
        got = BatchedTransformer(FrozenEstimator(columns), **PARALLEL).transform(frame)
    expected = columns.transform(frame)
    assert got.shape == expected.shape
    assert pd.DataFrame(got).equals(pd.DataFrame(expected))


def test_categories_built_per_batch_are_unified():
    pd = pytest.importorskip("pandas")
    from sklearn.preprocessing import FunctionTransformer

    frame = pd.DataFrame({"kind": np.array(["a", "b", "c", "d"])[np.arange(600) % 4]})
    frame.loc[450:, "kind"] = "z"  # a category only the last batches see
    to_category = FunctionTransformer(lambda X: X.astype("category"))
    batched = BatchedTransformer(to_category, **PARALLEL)
    assert_same_output(batched.fit_transform(frame), to_category.fit_transform(frame))


def test_model_that_cannot_load_in_worker_processes_runs_in_the_caller(
    iris, monkeypatch
):
    from skbatch import _schedule

    monkeypatch.setattr(_schedule, "CALLER_TAKES_ROWS", False)
    from estimators_for_tests import ParentOnlyClassifier

    X, _ = iris
    model = ParentOnlyClassifier().fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend="loky"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: no fallback
        got = batched.predict(X)
    assert_array_equal(got, model.predict(X))
    report = batched.last_call_
    assert report.rows_by_worker == {"caller": len(X)}
    assert "only loads in the process that made it" in " ".join(report.reasons)


def test_model_that_cannot_load_in_joblib_workers_falls_back(iris):
    from estimators_for_tests import ParentOnlyClassifier

    from skbatch import SerialFallbackWarning

    X, _ = iris
    model = ParentOnlyClassifier().fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs=2, batch_size=100, backend="multiprocessing"
    )
    with pytest.warns(SerialFallbackWarning, match="could not be loaded"):
        got = batched.predict(X)
    assert_array_equal(got, model.predict(X))


def test_warnings_from_a_script_defined_estimator_reach_the_caller(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import warnings\n"
        "import numpy as np\n"
        "from sklearn.base import BaseEstimator, TransformerMixin\n"
        "from skbatch import BatchedTransformer\n"
        "class Loud(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n"
        "        return self\n"
        "    def transform(self, X):\n"
        "        if (np.asarray(X)[:, 0] >= 3000).any():\n"
        "            warnings.warn('late rows seen')\n"
        "        return np.asarray(X) * 1.0\n"
        "if __name__ == '__main__':\n"
        "    import skbatch._schedule\n"
        "    skbatch._schedule.CALLER_TAKES_ROWS = False  # warnings from workers\n"
        "    X = np.arange(4000.0).reshape(-1, 1)\n"
        "    BatchedTransformer(Loud(), n_jobs=2, batch_size=100, backend='loky')"
        ".fit(X).transform(X)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("UserWarning: late rows seen") == 1


def test_parameters_changed_after_a_call_are_validated_again(iris):
    X, y = iris
    batched = BatchedPredictor(LogisticRegression(max_iter=500), n_jobs=2).fit(X, y)
    batched.predict(X[:10])
    batched.set_params(n_jobs=True)  # equal to 1, but a bool
    with pytest.raises(TypeError, match="n_jobs must be an int"):
        batched.predict(X[:10])
    batched.set_params(n_jobs=2, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        batched.predict(X[:10])
    batched.set_params(batch_size=None, backend="no-such-backend")
    with pytest.raises(ValueError):
        batched.predict(X[:10])
