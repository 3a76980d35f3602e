"""BatchedPredictor / BatchedTransformer give what the wrapped estimator gives."""

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


def test_aggregated_error_message_matches_serial():
    # OneHotEncoder lists every unknown category of the whole input; a batch
    # alone would list only its own.
    train = np.array([["a"], ["b"]] * 50, dtype=object)
    X = np.array([["a"]] * 300, dtype=object)
    X[100, 0], X[250, 0] = "zz", "yy"
    encoder = OneHotEncoder().fit(train)
    with pytest.raises(ValueError) as serial:
        encoder.transform(X)
    batched = BatchedTransformer(FrozenEstimator(encoder), n_jobs=2, batch_size=60)
    with pytest.raises(ValueError) as got:
        batched.transform(X)
    assert str(got.value) == str(serial.value)


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
    assert got.value.row == 500


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
