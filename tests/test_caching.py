"""CachedEstimator and make_cached_pipeline, by counting real fits."""

import os
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skbatch import (
    BatchedPredictor,
    BatchedTransformer,
    CachedEstimator,
    CacheWarning,
    FitCache,
    make_cached_pipeline,
)
from tests.estimators_for_tests import (
    FIT_COUNTS,
    FitCountingRegressor,
    FitCountingScaler,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _count_fits(tmp_path_factory, monkeypatch):
    log = tmp_path_factory.mktemp("counts") / "fits.log"
    monkeypatch.setenv("SKBATCH_FIT_LOG", str(log))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    return X, X @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(size=200) * 0.1


def entries(folder):
    return sorted((folder / "skbatch").glob("*.skbc"))


def test_a_refit_comes_from_the_cache_and_predicts_the_same(tmp_path, data):
    X, y = data
    first = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    second = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    assert FIT_COUNTS["regressor"] == 1
    assert (first.cache_hit_, second.cache_hit_) == (False, True)
    assert first.cache_key_ == second.cache_key_
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    np.testing.assert_array_equal(second.coef_, first.estimator_.coef_)
    assert second.estimator_ is not first.estimator_
    assert len(entries(tmp_path)) == 1


def test_no_memory_means_no_cache(tmp_path, data):
    X, y = data
    for memory in (None, joblib.Memory(None, verbose=0)):
        model = CachedEstimator(FitCountingRegressor(), memory=memory)
        model.fit(X, y).fit(X, y)
        assert model.cache_hit_ is False and model.cache_key_ is None
    assert FIT_COUNTS["regressor"] == 4


@pytest.mark.parametrize(
    "memory",
    [
        lambda p: str(p),
        lambda p: p,
        lambda p: joblib.Memory(p, verbose=0),
        lambda p: FitCache(p),
    ],
    ids=["str", "Path", "joblib.Memory", "FitCache"],
)
def test_every_kind_of_memory_names_the_same_folder(tmp_path, data, memory):
    X, y = data
    CachedEstimator(FitCountingRegressor(), memory=str(tmp_path)).fit(X, y)
    model = CachedEstimator(FitCountingRegressor(), memory=memory(tmp_path)).fit(X, y)
    assert model.cache_hit_ and FIT_COUNTS["regressor"] == 1


def test_the_final_step_of_a_pipeline_is_cached(tmp_path, data):
    X, y = data
    for _ in range(3):
        pipe = Pipeline(
            [
                ("scale", StandardScaler()),
                ("model", CachedEstimator(FitCountingRegressor(), memory=tmp_path)),
            ]
        ).fit(X, y)
    assert FIT_COUNTS["regressor"] == 1
    assert pipe[-1].cache_hit_


def test_a_single_step_pipeline_is_cached(tmp_path, data):
    X, y = data
    for _ in range(3):
        make_cached_pipeline(FitCountingRegressor(), memory=tmp_path).fit(X, y)
        CachedEstimator(make_pipeline(FitCountingRegressor()), memory=tmp_path).fit(
            X, y
        )
    assert FIT_COUNTS["regressor"] == 2  # one per key: bare and in a pipeline


def test_a_cached_pipeline_caches_every_step_and_the_steps_output(tmp_path, data):
    X, y = data
    pipe = make_cached_pipeline(
        FitCountingScaler(), FitCountingRegressor(), memory=tmp_path
    )
    expected = pipe.fit(X, y).predict(X)
    assert (FIT_COUNTS["scaler"], FIT_COUNTS["scaler transforms"]) == (1, 2)
    again = clone(pipe).fit(X, y)
    # The hit returns the stored fit_transform output: no transform of X.
    assert (FIT_COUNTS["scaler"], FIT_COUNTS["scaler transforms"]) == (1, 2)
    assert FIT_COUNTS["regressor"] == 1
    np.testing.assert_array_equal(again.predict(X), expected)
    assert [step.cache_hit_ for _, step in again.steps] == [True, True]


def test_only_the_changed_step_refits(tmp_path, data):
    X, y = data
    pipe = make_cached_pipeline(
        FitCountingScaler(), FitCountingRegressor(), memory=tmp_path
    )
    pipe.fit(X, y)
    pipe.set_params(fitcountingregressor__estimator__alpha=1.0).fit(X, y)
    assert (FIT_COUNTS["scaler"], FIT_COUNTS["regressor"]) == (1, 2)


def test_run_only_parameters_keep_the_cache(tmp_path, data):
    X, y = data
    CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    for change in ({"n_jobs": 4}, {"verbose": 2}):
        model = CachedEstimator(FitCountingRegressor(**change), memory=tmp_path)
        assert model.fit(X, y).cache_hit_
    assert (
        CachedEstimator(FitCountingRegressor(), memory=tmp_path, verbose=1)
        .fit(X, y)
        .cache_hit_
    )
    assert FIT_COUNTS["regressor"] == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda X, y, w: (X, y, {"sample_weight": w * 2}),
        lambda X, y, w: (X, y + 1, {"sample_weight": w}),
        lambda X, y, w: (X[::-1].copy(), y, {"sample_weight": w}),
        lambda X, y, w: (X.astype(np.float32), y, {"sample_weight": w}),
    ],
    ids=["sample_weight", "y", "rows", "dtype"],
)
def test_any_change_in_the_training_data_misses(tmp_path, data, change):
    X, y = data
    w = np.ones(len(X))
    CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y, sample_weight=w)
    X2, y2, params = change(X, y, w)
    model = CachedEstimator(FitCountingRegressor(), memory=tmp_path)
    assert not model.fit(X2, y2, **params).cache_hit_
    assert FIT_COUNTS["regressor"] == 2


def test_a_parameter_change_misses(tmp_path, data):
    X, y = data
    CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    model = CachedEstimator(FitCountingRegressor(alpha=0.5), memory=tmp_path)
    assert not model.fit(X, y).cache_hit_


def test_equal_dataframes_built_differently_hit(tmp_path, data):
    pd = pytest.importorskip("pandas")
    X, y = data
    by_columns = pd.DataFrame({f"f{i}": X[:, i] for i in range(4)})
    from_array = pd.DataFrame(np.asfortranarray(X), columns=[f"f{i}" for i in range(4)])
    path = tmp_path / "X.csv"
    by_columns.to_csv(path, index=False, float_format="%.17g")
    from_file = pd.read_csv(path)
    memory = tmp_path / "cache"
    for frame in (by_columns, from_array, from_file):
        CachedEstimator(FitCountingRegressor(), memory=memory).fit(frame, pd.Series(y))
    assert FIT_COUNTS["regressor"] == 1
    renamed = by_columns.rename(columns={"f0": "g0"})
    CachedEstimator(FitCountingRegressor(), memory=memory).fit(renamed, y)
    assert FIT_COUNTS["regressor"] == 2


def test_sparse_and_polars_training_data(tmp_path, data):
    sparse = pytest.importorskip("scipy.sparse")
    pl = pytest.importorskip("polars")
    X, _ = data
    for make in (
        lambda: sparse.csr_matrix(X),
        lambda: sparse.csr_matrix(X),  # the same matrix: a hit
        lambda: sparse.csc_matrix(X),  # another format: the output's too
        lambda: pl.DataFrame({f"f{i}": X[:, i] for i in range(4)}),
    ):
        model = CachedEstimator(StandardScaler(with_mean=False), memory=tmp_path)
        model.fit(make())
    assert len(entries(tmp_path)) == 3


def test_set_output_is_part_of_the_key(tmp_path, data):
    pytest.importorskip("pandas")
    X, _ = data
    plain = CachedEstimator(StandardScaler(), memory=tmp_path)
    assert type(plain.fit_transform(X)).__name__ == "ndarray"
    frame = CachedEstimator(StandardScaler(), memory=tmp_path).set_output(
        transform="pandas"
    )
    out = frame.fit_transform(X)
    assert not frame.cache_hit_ and type(out).__name__ == "DataFrame"


def test_lambdas_and_closures_are_cached_and_keyed(tmp_path, data):
    X, _ = data
    for offset in (1.0, 1.0, 2.0):
        step = FunctionTransformer(lambda Z, o=offset: Z + o)
        model = CachedEstimator(step, memory=tmp_path).fit(X)
        np.testing.assert_array_equal(model.transform(X), X + offset)
    assert len(entries(tmp_path)) == 2


def test_grid_search_over_a_cached_estimator_hits_on_rerun(tmp_path, data):
    X, y = data
    search = GridSearchCV(
        CachedEstimator(FitCountingRegressor(), memory=tmp_path),
        {"estimator__alpha": [0.0, 1.0]},
        cv=3,
    )
    first = search.fit(X, y).cv_results_["mean_test_score"]
    fits = FIT_COUNTS["regressor"]
    assert fits == 2 * 3 + 1
    second = clone(search).fit(X, y).cv_results_["mean_test_score"]
    assert FIT_COUNTS["regressor"] == fits
    np.testing.assert_array_equal(first, second)


def test_batched_estimators_share_the_cache(tmp_path, data):
    X, y = data
    cached = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    batched = BatchedPredictor(FitCountingRegressor(), memory=tmp_path, n_jobs=2)
    np.testing.assert_array_equal(batched.fit(X, y).predict(X), cached.predict(X))
    assert FIT_COUNTS["regressor"] == 1
    assert batched.cache_hit_ and batched.cache_key_ == cached.cache_key_
    scaler = BatchedTransformer(FitCountingScaler(), memory=tmp_path)
    scaler.fit(X)
    clone(scaler).fit(X)
    assert FIT_COUNTS["scaler"] == 1


def test_a_fresh_process_hits(tmp_path, data):
    log = tmp_path / "fits.log"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np
        from sklearn.base import BaseEstimator, TransformerMixin
        from sklearn.pipeline import make_pipeline
        from skbatch import CachedEstimator
        from tests.estimators_for_tests import FitCountingRegressor

        class Doubler(TransformerMixin, BaseEstimator):  # defined in __main__
            def fit(self, X, y=None):
                return self
            def transform(self, X):
                return np.asarray(X) * 2

        rng = np.random.default_rng(0)
        X = rng.normal(size=(50, 3)); y = X.sum(axis=1)
        pipe = make_pipeline(Doubler(), FitCountingRegressor(log={str(log)!r}))
        model = CachedEstimator(pipe, memory={str(tmp_path / "cache")!r}).fit(X, y)
        assert type(model.estimator_[0]) is Doubler  # this process's class
        print(model.cache_hit_, np.round(model.predict(X[:2]), 6).tolist())
        """
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (hit1, out1), (hit2, out2) = [run.stdout.split(" ", 1) for run in runs]
    assert (hit1, hit2) == ("False", "True") and out1 == out2
    assert len(log.read_text().split()) == 1


CELL = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

FACTOR = 1

def helper(X):
    return np.asarray(X) * {factor} * FACTOR

class Features(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        return self
    def transform(self, X):
        return helper(X){extra}

unrelated = {unrelated}
"""


def _run_cell(source, memory, X, y):
    """Runs ``source`` as a notebook cell does (in ``__main__``'s namespace) and
    fits a cached pipeline built from what it defined."""
    namespace = vars(sys.modules["__main__"]).copy()
    cell = types.ModuleType("__main__")
    cell.__dict__.update(namespace)
    exec(compile(source, "<cell>", "exec"), cell.__dict__)
    pipe = make_cached_pipeline(cell.Features(), FitCountingRegressor(), memory=memory)
    return [step.cache_hit_ for _, step in pipe.fit(X, y).steps]


def test_editing_a_notebook_cell_misses_and_an_unrelated_edit_hits(tmp_path, data):
    X, y = data
    base = {"factor": 2, "extra": "", "unrelated": 1}
    assert _run_cell(CELL.format(**base), tmp_path, X, y) == [False, False]
    assert _run_cell(CELL.format(**base), tmp_path, X, y) == [True, True]
    assert _run_cell(CELL.format(**{**base, "unrelated": 5}), tmp_path, X, y) == [
        True,
        True,
    ]
    # An edit to the helper the method calls: that step refits, and so does
    # the model after it, whose input changed.
    assert _run_cell(CELL.format(**{**base, "factor": 3}), tmp_path, X, y) == [
        False,
        False,
    ]
    # A constant the helper reads.
    assert _run_cell(CELL.format(**base) + "\nFACTOR = 3\n", tmp_path, X, y) == [
        False,
        False,
    ]
    # An edit that leaves the output alone: only the edited step refits.
    assert _run_cell(CELL.format(**{**base, "extra": " + 0"}), tmp_path, X, y) == [
        False,
        True,
    ]


def test_editing_a_module_misses(tmp_path, data, monkeypatch):
    import importlib

    X, y = data
    module = tmp_path / "my_features.py"
    source = CELL.replace("{unrelated}", "1").replace("{extra}", "")
    module.write_text(source.replace("{factor}", "2"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_features

    def fit():
        pipe = make_cached_pipeline(
            my_features.Features(), FitCountingRegressor(), memory=tmp_path / "c"
        )
        return [step.cache_hit_ for _, step in pipe.fit(X, y).steps]

    try:
        assert fit() == [False, False]
        assert fit() == [True, True]
        module.write_text(source.replace("{factor}", "3"))
        importlib.invalidate_caches()
        os.utime(module, (0, os.stat(module).st_mtime + 5))  # a fresh .pyc
        importlib.reload(my_features)
        assert fit() == [False, False]
    finally:
        sys.modules.pop("my_features", None)


def test_a_corrupted_entry_is_detected_and_refitted(tmp_path, data):
    X, y = data
    expected = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    (entry,) = entries(tmp_path)
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    entry.write_bytes(bytes(raw))
    model = CachedEstimator(FitCountingRegressor(), memory=tmp_path)
    with pytest.warns(CacheWarning, match="corrupted"):
        model.fit(X, y)
    assert not model.cache_hit_ and FIT_COUNTS["regressor"] == 2
    np.testing.assert_array_equal(model.predict(X), expected.predict(X))
    again = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    assert again.cache_hit_  # the entry was rewritten whole
    assert FitCache(tmp_path).stats().corrupted >= 1


def test_a_truncated_entry_is_detected_and_refitted(tmp_path, data):
    X, y = data
    CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    (entry,) = entries(tmp_path)
    entry.write_bytes(entry.read_bytes()[:-7])
    with pytest.warns(CacheWarning, match="payload bytes"):
        model = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
    assert not model.cache_hit_ and FIT_COUNTS["regressor"] == 2


def test_concurrent_fits_of_one_key_are_correct_in_threads(tmp_path, data):
    X, y = data
    expected = FitCountingRegressor().fit(X, y).predict(X)
    results = []

    def fit():
        model = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
        results.append(model.predict(X))

    threads = [threading.Thread(target=fit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    for result in results:
        np.testing.assert_array_equal(result, expected)
    assert len(entries(tmp_path)) == 1
    assert not list((tmp_path / "skbatch").glob(".tmp-*"))


def test_concurrent_fits_of_one_key_are_correct_in_processes(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np
        from skbatch import CachedEstimator
        from tests.estimators_for_tests import FitCountingRegressor
        X = np.random.default_rng(0).normal(size=(20000, 20)); y = X.sum(axis=1)
        for _ in range(5):
            model = CachedEstimator(FitCountingRegressor(), memory={str(tmp_path)!r})
            model.fit(X, y)
            assert np.allclose(model.coef_, 1.0), model.coef_
        print("ok")
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert outputs == ["ok\n", "ok\n"]
    assert len(entries(tmp_path)) == 1
    FIT_COUNTS.clear()  # the two processes' fits were counted too
    X = np.random.default_rng(0).normal(size=(20000, 20))
    model = CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(
        X, X.sum(axis=1)
    )
    assert model.cache_hit_ and FIT_COUNTS["regressor"] == 0


def test_an_unwritable_folder_fits_with_one_warning(tmp_path, data):
    X, y = data
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(CacheWarning, match="cannot be written") as caught:
        for alpha in (0.0, 1.0, 0.0):
            model = CachedEstimator(FitCountingRegressor(alpha=alpha), memory=blocker)
            clone(model).fit(X, y)
    messages = [str(w.message) for w in caught if w.category is CacheWarning]
    assert len(messages) == 1 and str(blocker) in messages[0]
    assert FIT_COUNTS["regressor"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_a_full_disk_fits_with_one_warning_and_no_temporary_files(
    tmp_path, data, monkeypatch
):
    import errno

    from skbatch import _cache_store

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_cache_store.os, "fsync", full)
    X, y = data
    with pytest.warns(CacheWarning, match="No space left on device") as caught:
        for alpha in (0.0, 1.0):
            CachedEstimator(FitCountingRegressor(alpha=alpha), memory=tmp_path).fit(
                X, y
            )
    assert len([w for w in caught if w.category is CacheWarning]) == 1
    assert list((tmp_path / "skbatch").iterdir()) == []


class Handle:
    """Like a database connection: copied by reference, never pickled."""

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a Handle cannot be pickled")


def test_an_unkeyable_parameter_fits_uncached_with_one_warning(tmp_path, data):
    X, _ = data
    step = FunctionTransformer(
        lambda Z, connection: Z, kw_args={"connection": Handle()}
    )
    with pytest.warns(CacheWarning, match="cannot be pickled") as caught:
        for _ in range(3):
            model = CachedEstimator(step, memory=tmp_path).fit(X)
    assert len([w for w in caught if w.category is CacheWarning]) == 1
    assert model.cache_key_ is None and entries(tmp_path) == []
    np.testing.assert_array_equal(model.transform(X), X)


def test_verbose_reports_hits_and_misses(tmp_path, data, capsys):
    X, y = data
    for _ in range(2):
        CachedEstimator(FitCountingRegressor(), memory=tmp_path, verbose=1).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[skbatch cache] miss: FitCountingRegressor.fit took")
    assert out[1].startswith("[skbatch cache] hit: FitCountingRegressor.fit loaded")
    assert "1 entries" in out[1] and "1 hits" in out[1]


@pytest.mark.parametrize(
    "memory, error, match",
    [
        (3, TypeError, "memory must be None, a folder path, a joblib.Memory"),
        (True, TypeError, "got bool True"),
        ("", ValueError, "names no folder"),
    ],
)
def test_bad_memory_is_refused_at_fit(memory, error, match, data):
    X, y = data
    model = CachedEstimator(FitCountingRegressor(), memory=memory)  # no error yet
    with pytest.raises(error, match=match):
        model.fit(X, y)
    assert FIT_COUNTS["regressor"] == 0


def test_methods_exist_exactly_when_the_wrapped_estimator_has_them():
    regressor = CachedEstimator(FitCountingRegressor())
    assert hasattr(regressor, "predict") and not hasattr(regressor, "transform")
    assert not hasattr(regressor, "predict_proba")
    scaler = CachedEstimator(StandardScaler())
    assert hasattr(scaler, "transform") and hasattr(scaler, "fit_transform")
    assert hasattr(scaler, "inverse_transform") and not hasattr(scaler, "predict")


def test_a_cached_estimator_is_not_fitted_until_fit(data):
    from sklearn.exceptions import NotFittedError

    model = CachedEstimator(FitCountingRegressor())
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict(data[0])


def test_warnings_from_other_steps_pass_through(tmp_path, data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)
        CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(X, y)


def test_a_hit_says_what_the_fit_said(tmp_path):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
    for expected_hit in (False, True):
        model = CachedEstimator(LogisticRegression(max_iter=1), memory=tmp_path)
        with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
            model.fit(X, y)
        assert model.cache_hit_ is expected_hit


def test_warning_filters_apply_to_replayed_warnings(tmp_path):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
    with pytest.warns(ConvergenceWarning):  # recorded: the filters let it show
        CachedEstimator(LogisticRegression(max_iter=1), memory=tmp_path).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing else comes out
        warnings.simplefilter("ignore", ConvergenceWarning)  # checked first
        model = CachedEstimator(LogisticRegression(max_iter=1), memory=tmp_path)
        assert model.fit(X, y).cache_hit_
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            CachedEstimator(LogisticRegression(max_iter=1), memory=tmp_path).fit(X, y)


def test_a_failing_fit_is_not_cached_and_keeps_its_warnings(tmp_path):
    class Failing(FitCountingRegressor):
        def fit(self, X, y):
            warnings.warn("about to fail", UserWarning, stacklevel=2)
            raise ValueError("bad training data")

    for _ in range(2):
        with pytest.warns(UserWarning, match="about to fail"):
            with pytest.raises(ValueError, match="bad training data"):
                CachedEstimator(Failing(), memory=tmp_path).fit(*_data())
    assert entries(tmp_path) == []


def _data():
    X = np.random.default_rng(1).normal(size=(30, 2))
    return X, X[:, 0]


class Robust(FitCountingRegressor):
    """Takes a fallback path when a warning is raised as an error."""

    def fit(self, X, y):
        from sklearn.exceptions import ConvergenceWarning

        try:
            warnings.warn("no convergence", ConvergenceWarning, stacklevel=2)
            self.solver_ = "fancy"
        except ConvergenceWarning:
            self.solver_ = "fallback"
        return super().fit(X, y)


def test_error_filters_act_inside_a_recorded_fit(tmp_path, data):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        plain = Robust().fit(*data).solver_
        cached = CachedEstimator(Robust(), memory=tmp_path).fit(*data)
    assert plain == cached.estimator_.solver_ == "fallback"


def test_nested_cached_fits_replay_their_own_warnings(tmp_path, data):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    X, y = data[0], (data[1] > 0).astype(int)
    inner = make_cached_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1), memory=tmp_path / "in"
    )
    for expected_hit in (False, True):
        with pytest.warns(ConvergenceWarning):
            outer = CachedEstimator(inner, memory=tmp_path / "out").fit(X, y)
        assert outer.cache_hit_ is expected_hit
    with pytest.warns(ConvergenceWarning):  # the inner steps' entries have them
        clone(inner).fit(X, y)


def test_a_damaged_inner_entry_is_reported_once_not_on_every_outer_hit(tmp_path, data):
    inner = make_cached_pipeline(
        StandardScaler(), FitCountingRegressor(), memory=tmp_path / "in"
    )
    inner.fit(*data)
    for entry in entries(tmp_path / "in"):
        entry.write_bytes(b"garbage")
    with pytest.warns(CacheWarning, match="corrupted"):
        CachedEstimator(inner, memory=tmp_path / "out").fit(*data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert CachedEstimator(inner, memory=tmp_path / "out").fit(*data).cache_hit_


class SlowRegressor(FitCountingRegressor):
    def fit(self, X, y):
        time.sleep(1.0)
        return super().fit(X, y)


def test_a_warning_from_another_thread_is_not_taken_into_an_entry(tmp_path, data):
    slow = threading.Thread(
        target=lambda: CachedEstimator(SlowRegressor(), memory=tmp_path).fit(*data)
    )
    slow.start()
    time.sleep(0.3)  # the slow fit is recording now
    with pytest.warns(UserWarning, match="from the other thread"):
        warnings.warn("from the other thread", UserWarning, stacklevel=1)
    slow.join()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = CachedEstimator(SlowRegressor(), memory=tmp_path).fit(*data)
    assert model.cache_hit_


def test_one_argument_fits_get_no_y(tmp_path):
    from sklearn.preprocessing import LabelEncoder

    for _ in range(2):
        model = CachedEstimator(LabelEncoder(), memory=tmp_path).fit(["b", "a", "b"])
    assert model.cache_hit_
    np.testing.assert_array_equal(model.transform(["a", "b"]), [0, 1])


def test_a_class_as_a_parameter_is_keyed(tmp_path, data):
    step = FunctionTransformer(lambda Z, kind: Z, kw_args={"kind": StandardScaler})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        assert CachedEstimator(step, memory=tmp_path).fit(data[0]).cache_key_


def test_an_unkeyable_fit_raises_its_own_error_alone(tmp_path):
    class Failing(FitCountingRegressor):
        def fit(self, X, y):
            raise ValueError("bad training data")

    step = Failing(log=Handle())
    with pytest.warns(CacheWarning), pytest.raises(ValueError) as caught:
        CachedEstimator(step, memory=tmp_path).fit(*_data())
    assert caught.value.__context__ is None


def test_entries_are_created_like_other_files(tmp_path, data):
    CachedEstimator(FitCountingRegressor(), memory=tmp_path).fit(*data)
    umask = os.umask(0)
    os.umask(umask)
    (entry,) = entries(tmp_path)
    assert entry.stat().st_mode & 0o777 == 0o666 & ~umask


class CheckingRegressor(FitCountingRegressor):
    """Refits more carefully when it sees a warning of its own: a fit that
    watches warnings, as some libraries do."""

    def fit(self, X, y):
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn("first try was rough", UserWarning, stacklevel=2)
        self.retried_ = bool(seen)
        return super().fit(X, y)


def test_a_fit_that_watches_warnings_takes_the_same_path(tmp_path, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = CheckingRegressor().fit(*data).retried_
        cached = CachedEstimator(CheckingRegressor(), memory=tmp_path).fit(*data)
    assert cached.estimator_.retried_ == plain


def test_a_hit_takes_today_s_run_only_parameters(tmp_path, data):
    from sklearn.linear_model import LinearRegression

    pipe = make_pipeline(StandardScaler(), LinearRegression(n_jobs=1))
    CachedEstimator(pipe, memory=tmp_path).fit(*data)
    pipe.set_params(linearregression__n_jobs=2, memory=str(tmp_path / "joblib"))
    model = CachedEstimator(pipe, memory=tmp_path).fit(*data)
    assert model.cache_hit_
    assert model.estimator_[-1].n_jobs == 2
    assert model.estimator_.memory == str(tmp_path / "joblib")
