import itertools

import pytest

from skbatch._batching import chunk_rows_for, iter_chunks, plan_batches


@pytest.mark.parametrize("n_rows", [1, 2, 3, 7, 10, 101, 1000])
@pytest.mark.parametrize("n_batches", [1, 2, 3, 8, 64])
def test_even_plan_covers_rows_without_empty_batches(n_rows, n_batches):
    batches = plan_batches(5, 5 + n_rows, n_batches=n_batches)
    assert len(batches) == min(n_batches, n_rows)
    assert batches[0].start == 5 and batches[-1].stop == 5 + n_rows
    assert all(a.stop == b.start for a, b in itertools.pairwise(batches))
    sizes = [b.n_rows for b in batches]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert [b.index for b in batches] == list(range(len(batches)))


@pytest.mark.parametrize("n_rows", [1, 9, 10, 11, 1000])
@pytest.mark.parametrize("batch_size", [1, 3, 10, 5000])
def test_sized_plan_has_one_partial_batch_at_most(n_rows, batch_size):
    batches = plan_batches(0, n_rows, batch_size=batch_size)
    sizes = [b.n_rows for b in batches]
    assert sum(sizes) == n_rows
    assert all(s == batch_size for s in sizes[:-1])
    assert 1 <= sizes[-1] <= batch_size


def test_plan_rejects_ambiguous_or_invalid_requests():
    with pytest.raises(ValueError, match="exactly one"):
        plan_batches(0, 10)
    with pytest.raises(ValueError, match="exactly one"):
        plan_batches(0, 10, n_batches=2, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches(0, 10, batch_size=0)
    with pytest.raises(ValueError, match="n_batches"):
        plan_batches(0, 10, n_batches=0)
    assert plan_batches(3, 3, n_batches=2) == []


def test_chunks_cover_the_range():
    assert list(iter_chunks(10, 10, 4)) == []
    chunks = list(iter_chunks(3, 20, 4))  # 17 rows: 5 chunks of 3 or 4, no tail
    assert chunks[0] == (3, 7) and chunks[-1] == (17, 20)
    sizes = [hi - lo for lo, hi in chunks]
    assert sum(sizes) == 17 and max(sizes) <= 4 and min(sizes) >= 3
    # A remainder of one row is spread out instead of left alone.
    assert [hi - lo for lo, hi in iter_chunks(0, 65, 64)] == [33, 32]
    with pytest.raises(ValueError):
        list(iter_chunks(0, 3, 0))


def test_chunk_size_bounds():
    assert chunk_rows_for(1) == 1
    assert chunk_rows_for(10**6) == 10**6 // 16
    assert chunk_rows_for(10**6, row_nbytes=2**20) == 32
    assert chunk_rows_for(10**6, row_nbytes=2**30) == 1
