import numpy as np
import pytest

from skbatch._concat import check_rows, concat_parts
from skbatch._errors import NotRowWiseError


def test_single_part_is_returned_as_is():
    part = np.arange(3)
    assert concat_parts([part], [3]) is part


def test_ndarray_keeps_dtype():
    parts = [np.array(["a", "b"], dtype=object), np.array(["c"], dtype=object)]
    out = concat_parts(parts, [2, 1])
    assert out.dtype == object and out.tolist() == ["a", "b", "c"]


def test_row_list_and_per_output_list():
    assert concat_parts([[1, 2], [3]], [2, 1]) == [1, 2, 3]
    per_output = concat_parts(
        [[np.zeros((2, 2)), np.ones((2, 3))], [np.zeros((1, 2)), np.ones((1, 3))]],
        [2, 1],
    )
    assert [a.shape for a in per_output] == [(3, 2), (3, 3)]


def test_pandas_index_handling():
    pd = pytest.importorskip("pandas")
    a = pd.DataFrame({"x": [1, 2]}, index=[10, 11])
    b = pd.DataFrame({"x": [3]}, index=[12])
    assert list(concat_parts([a, b], [2, 1]).index) == [10, 11, 12]
    # Parts that each start a fresh index at 0 were made by the method: the
    # joined output gets one fresh index, as a single call would give.
    fresh = [pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]})]
    out = concat_parts(fresh, [2, 1])
    pd.testing.assert_frame_equal(out, pd.DataFrame({"x": [1, 2, 3]}))
    # A default index taken from the input continues: 0..1, then 2.
    taken = [pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]}, index=[2])]
    assert list(concat_parts(taken, [2, 1]).index) == [0, 1, 2]


def test_sparse_keeps_format():
    sparse = pytest.importorskip("scipy.sparse")
    parts = [sparse.csr_matrix(np.eye(2, dtype=np.float32))] * 2
    out = concat_parts(parts, [2, 2])
    assert out.format == "csr" and out.dtype == np.float32 and out.shape == (4, 2)


def test_unknown_type_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot join"):
        concat_parts([object(), object()], [1, 1])


def test_check_rows():
    check_rows(np.zeros((3, 2)), 3, "m")
    check_rows((np.zeros(3), np.zeros(3)), 3, "m")
    with pytest.raises(NotRowWiseError, match="one entry per input row"):
        check_rows(np.zeros(2), 3, "Est.transform")
    with pytest.raises(NotRowWiseError):
        check_rows(1.5, 3, "Est.score")


def test_tail_agrees():
    from skbatch._concat import tail_agrees

    whole = np.arange(10.0).reshape(5, 2)
    assert tail_agrees(whole[2:] + 1e-15, whole, 2, 5)  # rounding is fine
    assert not tail_agrees(whole[2:] * 1.001, whole, 2, 5)
    assert not tail_agrees(np.eye(3), np.eye(5), 2, 5)  # shape grows with rows
    assert tail_agrees((whole[2:], whole[2:, 0]), (whole, whole[:, 0]), 2, 5)
    assert tail_agrees([3, 4, 5], [1, 2, 3, 4, 5], 2, 5)
    assert not tail_agrees(2.0, 3.0, 2, 5)
    # float32 rounding is coarser: tolerated in proportion.
    whole32 = whole.astype(np.float32)
    assert tail_agrees(whole32[2:] * np.float32(1 + 2e-7), whole32, 2, 5)
    assert not tail_agrees(whole32[2:] * np.float32(1.01), whole32, 2, 5)


def test_tail_agrees_with_missing_values_and_odd_outputs():
    pd = pytest.importorskip("pandas")
    sparse = pytest.importorskip("scipy.sparse")
    from skbatch._concat import tail_agrees

    obj = np.array([["a", np.nan], ["b", None], ["c", 1.5]], dtype=object)
    assert tail_agrees(obj[1:].copy(), obj, 1, 3)
    frame = pd.DataFrame(
        {
            "i": pd.array([1, pd.NA, 3], dtype="Int64"),
            "t": pd.to_datetime(["2020-01-01", None, "2020-01-03"]),
        }
    )
    assert tail_agrees(frame.iloc[1:].copy(), frame, 1, 3)
    rows = [(1, 2), (), (3,)]
    assert tail_agrees(rows[1:], rows, 1, 3)
    # Per-row vectors as long as the rows: not mistaken for per-output arrays.
    vectors = [np.arange(4.0) + i for i in range(4)]
    assert tail_agrees(vectors[1:], vectors, 1, 4)
    wide = sparse.random(5, 2**20, density=1e-5, format="csr", random_state=0)
    assert tail_agrees(wide[2:].copy(), wide, 2, 5)  # never densified
    other = wide.copy()
    other.data = other.data + 1.0
    assert not tail_agrees(other[2:], wide, 2, 5) or wide[2:].nnz == 0


def test_categories_are_unified():
    pd = pytest.importorskip("pandas")
    a = pd.DataFrame({"c": pd.Categorical(["x", "y"])})
    b = pd.DataFrame({"c": pd.Categorical(["w"])}, index=[2])
    out = concat_parts([a, b], [2, 1])
    expected = pd.DataFrame({"c": ["x", "y", "w"]}).astype("category")
    pd.testing.assert_frame_equal(out, expected)


def test_sparse_index_dtype_kept():
    sparse = pytest.importorskip("scipy.sparse")
    part = sparse.csr_matrix(np.eye(2))
    part.indices = part.indices.astype(np.int64)
    part.indptr = part.indptr.astype(np.int64)
    out = concat_parts([part, part.copy()], [2, 2])
    assert out.indices.dtype == np.int64
