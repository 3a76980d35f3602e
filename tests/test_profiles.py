"""What earlier calls learned about a model, kept for later calls."""

import gc

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LinearRegression

from skbatch import _profiles
from skbatch._measure import Costs


def _profile(path="threads"):
    return _profiles.Profile(path, Costs(0.001, 1e-6), 0.0, ["measured"])


def _fitted():
    X = np.arange(20.0).reshape(10, 2)
    return LinearRegression().fit(X, X[:, 0])


def test_a_profile_is_recalled_for_the_same_model_method_and_input_kind():
    model, X = _fitted(), np.zeros((5, 2))
    _profiles.remember(model, "predict", X, 2, _profile())
    assert _profiles.recall(model, "predict", X, 2).path == "threads"
    # Wrapping the model again (a new FrozenEstimator) changes nothing.
    assert _profiles.recall(FrozenEstimator(model), "predict", X, 2) is not None
    # Another method, worker count, dtype, row shape or container: nothing.
    assert _profiles.recall(model, "score", X, 2) is None
    assert _profiles.recall(model, "predict", X, 4) is None
    assert _profiles.recall(model, "predict", X.astype(np.float32), 2) is None
    assert _profiles.recall(model, "predict", np.zeros((5, 3)), 2) is None
    assert _profiles.recall(model, "predict", X.tolist(), 2) is None
    assert _profiles.recall(_fitted(), "predict", X, 2) is None


def test_a_profile_dies_with_its_model():
    model, X = _fitted(), np.zeros((5, 2))
    _profiles.remember(model, "predict", X, 2, _profile())
    assert len(_profiles._profiles) == 1
    del model
    gc.collect()
    assert len(_profiles._profiles) == 0


def test_a_profile_is_measured_afresh_after_its_reuses():
    model, X = _fitted(), np.zeros((5, 2))
    _profiles.remember(model, "predict", X, 2, _profile())
    for _ in range(_profiles.REUSES):
        assert _profiles.recall(model, "predict", X, 2) is not None
    assert _profiles.recall(model, "predict", X, 2) is None


def test_slow_parallel_runs_in_a_row_give_up_their_path():
    profile = _profile("threads")
    assert _profiles.observe(profile, "threads", 1.4) is None
    assert profile.path == "threads"
    # One slow call may be noise; a fast one in between starts the count over.
    assert _profiles.observe(profile, "threads", 0.8) is None
    assert _profiles.observe(profile, "threads", 1.2) is None
    assert _profiles.observe(profile, "threads", 0.8) is None
    assert profile.path == "threads"
    why = _profiles.observe(profile, "threads", 0.8)
    assert "0.80x" in why and "2 earlier calls in a row" in why
    assert profile.path == "in-process"
    # A run on another path than the profile's (forced by a backend) says
    # nothing about the profile's own.
    other = _profile("processes")
    assert _profiles.observe(other, "threads", 0.5) is None
    assert other.path == "processes"


def test_models_that_cannot_be_weakly_referenced_are_not_remembered():
    class Slotted:
        __slots__ = ()

    model, X = Slotted(), np.zeros((5, 2))
    _profiles.remember(model, "predict", X, 2, _profile())
    assert _profiles.recall(model, "predict", X, 2) is None


def test_a_model_refitted_in_place_is_measured_afresh():
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.arange(40.0).reshape(20, 2)
    for model in [
        RandomForestRegressor(n_estimators=2, random_state=0),
        make_pipeline(StandardScaler(), LinearRegression()),
    ]:
        model.fit(X, X[:, 0])
        _profiles.remember(model, "predict", X, 2, _profile())
        assert _profiles.recall(model, "predict", X, 2) is not None
        if hasattr(model, "n_estimators"):
            model.set_params(n_estimators=5)
        model.fit(X, X[:, 0])  # the same object, refitted
        assert _profiles.recall(model, "predict", X, 2) is None
