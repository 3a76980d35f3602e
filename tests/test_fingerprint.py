"""Training data is keyed by content, whatever its layout."""

import numpy as np
import pytest
import scipy.sparse as sp

from skbatch._fingerprint import data_digest
from tests.conftest import outputs_under_hash_seeds


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


def test_sparse_matrices_are_keyed_as_stored():
    dense = np.array([[0, 1.0, 0], [2.0, 0, 3.0]])
    csr = sp.csr_matrix(dense)
    assert data_digest(csr) == data_digest(sp.csr_matrix(dense.copy()))
    # A duplicate entry (Binarizer sees 1 + 1 as two ones, not a 2) and
    # another format or class (fit_transform returns the input's) all count.
    duplicate = sp.csr_matrix(
        (np.array([1.0, 1.0, 1.0, 3.0]), np.array([1, 0, 0, 2]), np.array([0, 1, 4])),
        shape=(2, 3),
    )
    summed = sp.csr_matrix(
        (np.array([1.0, 2.0, 3.0]), np.array([1, 0, 2]), np.array([0, 1, 3])),
        shape=(2, 3),
    )
    assert data_digest(summed) == data_digest(csr)  # the same arrays
    others = [duplicate, sp.csc_matrix(dense), sp.csr_array(dense)]
    others += [sp.coo_matrix(dense), dense, sp.csr_matrix(dense * 2)]
    assert len({data_digest(m) for m in [csr, *others]}) == 1 + len(others)


def test_masks_records_order_and_sets_count():
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    assert data_digest(masked) != data_digest(np.array([1.0, 2.0]))
    a = np.zeros(2, dtype=[("x", "f8"), ("y", "f8")])
    b = np.zeros(2, dtype=[("p", "f8"), ("q", "f8")])
    assert data_digest(a) != data_digest(b)
    assert data_digest({"a": 1, "b": 2}) != data_digest({"b": 2, "a": 1})
    ordered = pd.Series(pd.Categorical(["x", "y"], ordered=True))
    unordered = pd.Series(pd.Categorical(["x", "y"], ordered=False))
    assert data_digest(ordered) != data_digest(unordered)
    null = pl.DataFrame({"a": [1.0, None]})
    nan = pl.DataFrame({"a": [1.0, float("nan")]})
    assert data_digest(null) != data_digest(nan)
    nullable = pd.Series([1.0, None], dtype="Float64")
    nan_in_nullable = pd.Series(np.array([1.0, np.nan]), dtype="Float64")
    if nullable.isna().tolist() != nan_in_nullable.isna().tolist():
        assert data_digest(nullable) != data_digest(nan_in_nullable)
    assert data_digest([{"b", "a", "c"}]) == data_digest([{"c", "b", "a"}])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_is_not_an_array():
    values = np.arange(4.0).reshape(2, 2)
    assert data_digest(np.matrix(values)) != data_digest(values)


def test_sets_hash_alike_under_any_hash_seed():
    script = (
        "from skbatch._fingerprint import data_digest\n"
        "print(data_digest([{'sci-fi', 'thriller', 'drama'}, frozenset('abc')]))"
    )
    digests = outputs_under_hash_seeds(script)
    assert len(digests) == 1


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
