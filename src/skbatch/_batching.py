"""Splitting plans: which rows go into which batch, and sub-chunks inside a batch.

Everything here is plain integer arithmetic on row ranges; nothing touches data.
A plan never contains an empty batch or chunk.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

#: A batch is cut into about this many sub-chunks, so that progress moves smoothly
#: and the memory a method needs for its intermediates stays bounded.
CHUNKS_PER_BATCH = 16
#: Sub-chunks are never smaller than this (per-call overhead) ...
MIN_CHUNK_ROWS = 256
#: ... nor larger than this many bytes of input rows.
MAX_CHUNK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Batch:
    """A contiguous range of rows, ``[start, stop)``, numbered by ``index``."""

    index: int
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


def plan_batches(
    start: int,
    stop: int,
    *,
    n_batches: int | None = None,
    batch_size: int | None = None,
) -> list[Batch]:
    """Split rows ``[start, stop)`` into contiguous, non-empty batches.

    Give exactly one of ``n_batches`` (rows are spread evenly: batch sizes differ
    by at most one) or ``batch_size`` (every batch has that many rows, but the last
    may have fewer).

    >>> [(b.start, b.stop) for b in plan_batches(0, 10, n_batches=3)]
    [(0, 4), (4, 7), (7, 10)]
    >>> [(b.start, b.stop) for b in plan_batches(0, 10, batch_size=4)]
    [(0, 4), (4, 8), (8, 10)]
    >>> plan_batches(0, 2, n_batches=4) == plan_batches(0, 2, batch_size=1)
    True
    """
    if (n_batches is None) == (batch_size is None):
        raise ValueError("Give exactly one of n_batches and batch_size.")
    n_rows = stop - start
    if n_rows <= 0:
        return []
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        bounds = [*range(start, stop, batch_size), stop]
    else:
        if n_batches < 1:
            raise ValueError(f"n_batches must be >= 1, got {n_batches}.")
        n_batches = min(n_batches, n_rows)
        small, n_large = divmod(n_rows, n_batches)
        bounds = [start]
        for i in range(n_batches):
            bounds.append(bounds[-1] + small + (1 if i < n_large else 0))
    return [Batch(i, lo, hi) for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]


def chunk_rows_for(n_rows: int, row_nbytes: int | None = None) -> int:
    """Rows per sub-chunk for a batch of ``n_rows`` rows.

    About :data:`CHUNKS_PER_BATCH` chunks, at least :data:`MIN_CHUNK_ROWS` rows
    each, and at most :data:`MAX_CHUNK_BYTES` of input when the row size is known.

    >>> chunk_rows_for(100)
    100
    >>> chunk_rows_for(160_000)
    10000
    >>> chunk_rows_for(160_000, row_nbytes=8 * 2**20)
    4
    """
    rows = max(MIN_CHUNK_ROWS, math.ceil(n_rows / CHUNKS_PER_BATCH))
    if row_nbytes:
        rows = min(rows, max(1, MAX_CHUNK_BYTES // row_nbytes))
    return max(1, min(rows, n_rows))


def iter_chunks(start: int, stop: int, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Yield ``(lo, hi)`` sub-ranges of ``[start, stop)`` of at most ``chunk_rows``.

    The rows are spread evenly over as few chunks as that allows, so no chunk
    is a tiny remainder (a one-row chunk surprises code that squeezes its input).

    >>> list(iter_chunks(0, 5, 2))
    [(0, 2), (2, 4), (4, 5)]
    >>> list(iter_chunks(0, 9, 8))
    [(0, 5), (5, 9)]
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}.")
    n_chunks = math.ceil((stop - start) / chunk_rows)
    for batch in plan_batches(start, stop, n_batches=max(n_chunks, 1)):
        yield batch.start, batch.stop
