import numpy as np
import pytest
from conftest import CONTAINERS, as_container

from skbatch._indexing import (
    first_nonfinite_row,
    make_sliceable,
    num_rows,
    take_rows,
)


@pytest.mark.parametrize("container", CONTAINERS)
def test_take_rows_keeps_container(container, tmp_path):
    X = np.arange(40.0).reshape(10, 4)
    X_in = make_sliceable(as_container(X, container, tmp_path))
    assert num_rows(X_in) == 10
    part = take_rows(X_in, 3, 6)
    assert type(part) is type(X_in)
    assert num_rows(part) == 3
    dense = np.asarray(part.toarray() if hasattr(part, "toarray") else part)
    np.testing.assert_array_equal(dense, X[3:6])
    if container == "pandas":
        assert list(part.index) == list(X_in.index[3:6])
        assert list(part.columns) == list(X_in.columns)


def test_numpy_rows_are_views():
    X = np.arange(12.0).reshape(6, 2)
    assert np.shares_memory(take_rows(X, 1, 3), X)


def test_pandas_dtypes_survive():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(
        {"a": [1, 2, 3], "b": pd.Categorical(["x", "y", "x"]), "c": ["u", "v", "w"]}
    )
    part = take_rows(X, 1, 3)
    assert part.dtypes.equals(X.dtypes)


def test_unsplittable_inputs():
    for X in [None, "text", 3.0, np.float64(2), np.array(5.0), {"a": 1}, iter([1])]:
        assert num_rows(X) is None


def test_coo_becomes_csr():
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.coo_matrix(np.eye(4))
    assert make_sliceable(X).format == "csr"
    X_csc = sparse.csc_matrix(np.eye(4))
    assert make_sliceable(X_csc) is X_csc


def test_first_nonfinite_row():
    X = np.zeros((5, 3))
    assert first_nonfinite_row(X) is None
    X[3, 1] = np.inf
    X[4, 0] = np.nan
    assert first_nonfinite_row(X) == 3
    big = np.full((2, 2), np.finfo(np.float64).max)  # sum overflows, all finite
    assert first_nonfinite_row(big) is None
    assert first_nonfinite_row(np.array([[1, 2]])) is None  # integers
    assert first_nonfinite_row([[np.nan]]) is None  # lists are left to the estimator


def test_first_nonfinite_row_sparse():
    sparse = pytest.importorskip("scipy.sparse")
    X = np.zeros((6, 3))
    X[4, 2] = np.nan
    assert first_nonfinite_row(sparse.csr_matrix(X)) == 4
    assert first_nonfinite_row(sparse.coo_matrix(X)) == 4
    assert first_nonfinite_row(sparse.csr_matrix(np.ones((3, 3)))) is None
