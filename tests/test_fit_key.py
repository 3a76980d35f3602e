"""What a fit key covers, and what it leaves out."""

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skbatch import BatchedPredictor
from skbatch._fit_key import fit_key
from tests.conftest import outputs_under_hash_seeds

X = np.arange(40.0).reshape(20, 2)
y = np.arange(20) % 2


def key(estimator, *args, **params):
    return (
        fit_key(estimator, "fit", X, y, params)
        if not args
        else fit_key(estimator, "fit", *args, params)
    )


def test_nested_parameters_count():
    a = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
    b = make_pipeline(StandardScaler(), LogisticRegression(C=2.0))
    c = make_pipeline(StandardScaler(with_mean=False), LogisticRegression(C=1.0))
    assert len({key(a), key(b), key(c)}) == 3


def test_run_only_parameters_do_not_count():
    assert key(LogisticRegression(n_jobs=1, verbose=0)) == key(
        LogisticRegression(n_jobs=-1, verbose=3)
    )
    assert key(make_pipeline(StandardScaler(), memory=None)) == key(
        make_pipeline(StandardScaler(), memory="/somewhere")
    )
    fast = BatchedPredictor(LogisticRegression(), n_jobs=2, batch_size=10)
    slow = BatchedPredictor(LogisticRegression(), backend="threading", progress=True)
    assert key(fast) == key(slow)


def test_the_method_and_fit_parameters_count():
    model = LogisticRegression()
    assert fit_key(model, "fit", X, y) != fit_key(model, "fit_predict", X, y)
    assert key(model) != key(model, sample_weight=np.ones(20))
    assert key(model, sample_weight=np.ones(20)) != key(
        model, sample_weight=np.full(20, 2.0)
    )


def test_the_model_inside_a_frozen_estimator_counts():
    a = LogisticRegression().fit(X, y)
    b = LogisticRegression().fit(X[:10] * 2, y[:10])
    assert key(FrozenEstimator(a)) != key(FrozenEstimator(b))


def test_random_states_count_by_state():
    a = key(LogisticRegression(random_state=np.random.RandomState(0)))
    assert a == key(LogisticRegression(random_state=np.random.RandomState(0)))
    assert a != key(LogisticRegression(random_state=np.random.RandomState(1)))


def test_function_data_counts():
    def shift(by):
        return FunctionTransformer(lambda Z: Z + by)

    assert key(shift(1.0)) == key(shift(1.0)) != key(shift(2.0))
    assert key(FunctionTransformer(np.log1p)) != key(FunctionTransformer(np.expm1))


def test_keys_do_not_depend_on_the_hash_seed():
    script = (
        "import numpy as np\n"
        "from sklearn.preprocessing import FunctionTransformer\n"
        "from skbatch._fit_key import fit_key\n"
        "def f(Z, names):\n"
        "    return Z if 'a' in {'a', 'b', 'c'} else Z\n"
        "step = FunctionTransformer(f, kw_args={'names': {'x', 'y', 'z', 'w'}})\n"
        "print(fit_key(step, 'fit', np.ones((3, 2))))\n"
    )
    keys = outputs_under_hash_seeds(script)
    assert len(keys) == 1


def test_the_scikit_learn_output_setting_counts():
    import sklearn

    plain = key(StandardScaler())
    with sklearn.config_context(transform_output="pandas"):
        pytest.importorskip("pandas")
        assert key(StandardScaler()) != plain
