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


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_an_unshippable_function_fails_before_any_item_is_processed(backend):
    # Its side effects would be done already, and done again by a rerun on
    # threads.
    from skbatch import batch_process

    lock, processed = threading.Lock(), []

    def record(item):
        with lock:
            processed.append(item)
        return item

    with pytest.raises(UnshippableModelError, match="function cannot be sent") as e:
        batch_process(list(range(5000)), record, n_jobs=2, backend=backend,
                      progress=False)  # fmt: skip
    assert processed == []
    # The user's own function, and the variable it closes over.
    assert "record.<closure variable 'lock'> (a _thread.lock)" in str(e.value)


def test_the_path_goes_through_a_functions_globals():
    # A function from no importable module (a script's) travels by value,
    # with the globals it reads.
    namespace = {"__name__": "a_script_of_the_user", "LOCK": threading.Lock()}
    exec("def uses_lock(x):\n    return LOCK, x\n", namespace)
    where, _ = unpicklable_part(namespace["uses_lock"])
    assert where == "uses_lock.<global 'LOCK'> (a _thread.lock)"
