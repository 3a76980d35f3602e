"""A model that cannot be sent to worker processes is named precisely."""

import threading

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skbatch import BatchedTransformer, UnshippableModelError
from skbatch._shipping import unpicklable_part
from tests.estimators_for_tests import LockHoldingTransformer


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(20_000, 8))


@pytest.fixture(scope="module")
def locked_pipe(X):
    return make_pipeline(StandardScaler(), LockHoldingTransformer()).fit(X)


def test_the_path_names_the_step_and_the_attribute(locked_pipe):
    where, error = unpicklable_part(FrozenEstimator(locked_pipe))
    assert where == (
        "FrozenEstimator.estimator.steps['lockholdingtransformer'].lock_ "
        "(a _thread.lock)"
    )
    assert "pickle" in str(error)


def test_the_path_goes_through_dicts_lists_and_slots():
    class Slotted:
        __slots__ = ("handle",)

        def __init__(self):
            self.handle = threading.Lock()

    step = FunctionTransformer(kw_args={"options": [1, {"inner": Slotted()}]})
    where, _ = unpicklable_part(step)
    assert where.startswith("FunctionTransformer.kw_args['options'][1]['inner']")
    assert where.endswith(".handle (a _thread.lock)")


def test_a_picklable_model_has_no_such_part():
    assert unpicklable_part(make_pipeline(StandardScaler())) is None


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_asking_for_processes_fails_before_workers_start(locked_pipe, X, backend):
    batched = BatchedTransformer(
        FrozenEstimator(locked_pipe), n_jobs=2, backend=backend
    )
    with pytest.raises(
        UnshippableModelError, match=r"steps\['lockholdingtransformer'\]\.lock_"
    ):
        batched.transform(X)
    assert "process-" not in " ".join(batched.last_call_.rows_by_worker)


def test_when_skbatch_chooses_it_runs_in_the_calling_thread_and_says_why(
    locked_pipe, X
):
    batched = BatchedTransformer(FrozenEstimator(locked_pipe), n_jobs=2)
    out = batched.transform(X)
    np.testing.assert_array_equal(out, locked_pipe.transform(X))
    if batched.last_call_.path == "in-process":  # a short call may not try
        reasons = " ".join(batched.last_call_.reasons)
        if "cannot be sent" in reasons:
            assert "lock_ (a _thread.lock)" in reasons


def test_threads_share_the_model_instead(locked_pipe, X):
    batched = BatchedTransformer(
        FrozenEstimator(locked_pipe), n_jobs=2, backend="threading"
    )
    np.testing.assert_array_equal(batched.transform(X), locked_pipe.transform(X))
