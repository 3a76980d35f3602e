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


def test_head_agrees():
    from skbatch._concat import head_agrees

    whole = np.arange(10.0).reshape(5, 2)
    assert head_agrees(whole[:3] + 1e-15, whole, 3, 5)  # rounding is fine
    assert not head_agrees(whole[:3] * 1.001, whole, 3, 5)
    assert not head_agrees(np.eye(3), np.eye(5), 3, 5)  # shape grows with rows
    assert head_agrees((whole[:3], whole[:3, 0]), (whole, whole[:, 0]), 3, 5)
    assert head_agrees([1, 2, 3], [1, 2, 3, 4, 5], 3, 5)
    assert not head_agrees(2.0, 3.0, 3, 5)
    # float32 rounding is coarser: tolerated in proportion.
    whole32 = whole.astype(np.float32)
    assert head_agrees(whole32[:3] * np.float32(1 + 2e-7), whole32, 3, 5)
    assert not head_agrees(whole32[:3] * np.float32(1.01), whole32, 3, 5)
