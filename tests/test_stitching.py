"""Outputs that a careless join would get wrong are joined right, or the
estimator is called once on the whole input."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin

from skbatch import BatchedTransformer, SerialFallbackWarning


class Embed(TransformerMixin, BaseEstimator):
    """One vector of ``size`` values per row, as a list (an embedding)."""

    def __init__(self, size=64):
        self.size = size

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return [np.full(self.size, row[0]) for row in np.asarray(X)]


@pytest.mark.parametrize("backend", ["threading", "multiprocessing", None])
def test_per_row_vectors_as_long_as_the_batch_stay_per_row(backend):
    X = np.arange(640.0).reshape(640, 1)
    batched = BatchedTransformer(
        Embed(64), n_jobs=2, batch_size=64, backend=backend
    ).fit(X)
    for _ in range(2):
        out = batched.transform(X)
        assert len(out) == 640
        assert all(v.shape == (64,) and v[0] == i for i, v in enumerate(out))


class Center(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return X - X.mean(axis=0)


@pytest.mark.parametrize("backend", ["threading", "loky", None])
def test_input_statistics_are_caught_behind_identical_first_rows(backend):
    rng = np.random.default_rng(0)
    X = np.vstack([np.zeros((100, 3)), rng.normal(size=(5000, 3))])
    batched = BatchedTransformer(Center(), n_jobs=2, backend=backend).fit(X)
    with pytest.warns(SerialFallbackWarning, match="depends on the other rows"):
        out = batched.transform(X)
    np.testing.assert_array_equal(out, Center().fit(X).transform(X))


class Dummies(TransformerMixin, BaseEstimator):
    """Columns made from the categories seen (``pandas.get_dummies``)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        import pandas as pd

        return pd.get_dummies(X["c"])


def test_dataframe_outputs_with_other_columns_per_batch_are_not_joined():
    pd = pytest.importorskip("pandas")
    # "b" only in the middle: the first and last rows (the row-wise check's)
    # are all "a"; batches in the middle get a column more.
    X = pd.DataFrame({"c": ["a"] * 1000 + ["b"] * 500 + ["a"] * 1500})
    batched = BatchedTransformer(
        Dummies(), n_jobs=2, batch_size=500, backend="threading"
    ).fit(X)
    with pytest.warns(SerialFallbackWarning, match="columns depend on the rows"):
        out = batched.transform(X)
    pd.testing.assert_frame_equal(out, Dummies().transform(X))
