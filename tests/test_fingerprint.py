"""Training data is keyed by content, whatever its layout."""

import numpy as np
import pytest
import scipy.sparse as sp

from skbatch._fingerprint import data_digest


def test_equal_arrays_in_any_layout_share_a_digest():
    X = np.arange(24.0).reshape(4, 6)
    same = [
        np.asfortranarray(X),
        X.copy(),
        X.astype(">f8"),  # other byte order, same values
        np.repeat(X, 2, axis=1)[:, ::2],  # a strided view
    ]
    assert {data_digest(v) for v in same} == {data_digest(X)}


@pytest.mark.parametrize(
    "other",
    [
        lambda X: X.astype(np.float32),
        lambda X: X.reshape(6, 4),
        lambda X: np.where(X == 5.0, 5.5, X),
        lambda X: X[:3],
    ],
    ids=["dtype", "shape", "one value", "fewer rows"],
)
def test_any_change_of_content_changes_the_digest(other):
    X = np.arange(24.0).reshape(4, 6)
    assert data_digest(other(X)) != data_digest(X)


def test_large_buffers_are_keyed_by_every_byte():
    X = np.random.default_rng(0).normal(size=(20_000, 100))  # 16 MB
    digest = data_digest(X)
    assert data_digest(np.asfortranarray(X)) == digest
    for row, col in [(0, 0), (10_000, 50), (-1, -1)]:
        changed = X.copy()
        changed[row, col] = np.nextafter(changed[row, col], np.inf)  # one bit
        assert data_digest(changed) != digest


def test_equal_dataframes_built_differently_share_a_digest():
    pd = pytest.importorskip("pandas")
    a = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["u", "v", "u"]})
    b = pd.DataFrame([[1.0, "u"], [2.0, "v"], [3.0, "u"]], columns=["x", "c"])
    assert data_digest(a) == data_digest(b)
    assert data_digest(a) != data_digest(a.rename(columns={"x": "y"}))
    assert data_digest(a) != data_digest(a.set_axis([5, 6, 7]))
    assert data_digest(a) != data_digest(a.astype({"x": "float32"}))
    cat = a.astype({"c": "category"})
    assert data_digest(cat) != data_digest(a)
    assert data_digest(cat) == data_digest(b.astype({"c": "category"}))
    assert data_digest(a["x"]) != data_digest(a["x"].rename("z"))


def test_sparse_matrices_are_keyed_by_their_canonical_form():
    dense = np.array([[0, 1.0, 0], [2.0, 0, 3.0]])
    csr = sp.csr_matrix(dense)
    # Unsorted indices and a duplicate entry that sums to the same values.
    messy = sp.csr_matrix(
        (np.array([1.0, 3.0, 1.0, 1.0]), np.array([1, 2, 0, 0]), np.array([0, 1, 4])),
        shape=(2, 3),
    )
    assert data_digest(messy) == data_digest(csr) == data_digest(sp.csc_matrix(dense))
    assert data_digest(csr) != data_digest(dense)  # sparse is not dense
    assert data_digest(csr) != data_digest(sp.csr_matrix(dense * 2))


def test_lists_dicts_and_none():
    assert data_digest([1, 2, 3]) == data_digest([1, 2, 3])
    assert data_digest([1, 2, 3]) != data_digest((1, 2, 3))
    assert data_digest({"a": np.ones(3)}) == data_digest({"a": np.ones(3)})
    assert data_digest({"a": np.ones(3)}) != data_digest({"b": np.ones(3)})
    assert data_digest(None) != data_digest([])
    assert data_digest(["a", None, 1]) == data_digest(["a", None, 1])
    # Several objects: the digest of the sequence, in order.
    X, y = np.ones((3, 2)), np.arange(3)
    assert data_digest(X, y) != data_digest(y, X)
