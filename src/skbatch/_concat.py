"""Reassembling per-chunk outputs into what one call on all rows would return.

Outputs come back in row order; this module only joins them, with one copy at
most, keeping the container (ndarray, sparse, pandas, polars) and dtype. Tuples
and per-output lists (multi-output ``predict_proba``) are joined element-wise.
"""

from __future__ import annotations

import itertools

import numpy as np

from skbatch._errors import NotRowWiseError
from skbatch._indexing import is_pandas, is_polars, is_sparse, num_rows


def _is_per_output_sequence(part, n_rows: int) -> bool:
    """A list whose every element is an array with one row per input row."""
    return (
        isinstance(part, list)
        and len(part) > 0
        and all(
            getattr(item, "ndim", 0) >= 1 and num_rows(item) == n_rows for item in part
        )
    )


def check_rows(part, n_rows: int, what: str) -> None:
    """Raise :class:`NotRowWiseError` unless ``part`` has ``n_rows`` rows."""
    if isinstance(part, tuple) or _is_per_output_sequence(part, n_rows):
        for item in part:
            check_rows(item, n_rows, what)
        return
    got = num_rows(part)
    if got != n_rows:
        shape = getattr(part, "shape", None)
        found = f"shape {shape}" if shape is not None else type(part).__name__
        raise NotRowWiseError(
            f"{what} returned {found} for {n_rows} input rows; skbatch can only "
            "split methods that return one entry per input row. Call the "
            "estimator directly for this method."
        )


def concat_parts(parts: list, n_rows: list[int], *, keep_index: bool = True):
    """Join outputs computed on consecutive row ranges.

    Parameters
    ----------
    parts : list
        Outputs in row order, all of the same kind.
    n_rows : list of int
        Number of input rows behind each part; tells a per-output list (one
        array per output) from a list with one entry per row.
    keep_index : bool, default=True
        Whether pandas outputs keep their index. False when the input had no
        index: each part then carries a fresh ``RangeIndex`` from 0, and the
        joined output gets one from 0 too, as a single call would give it.

    >>> concat_parts([np.array([1, 2]), np.array([3])], [2, 1])
    array([1, 2, 3])
    >>> concat_parts([(np.zeros(1), np.ones(1)), (np.zeros(1), np.ones(1))], [1, 1])
    (array([0., 0.]), array([1., 1.]))
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(
            concat_parts([part[i] for part in parts], n_rows, keep_index=keep_index)
            for i in range(len(first))
        )
    if all(_is_per_output_sequence(p, n) for p, n in zip(parts, n_rows, strict=True)):
        return [
            concat_parts([part[i] for part in parts], n_rows, keep_index=keep_index)
            for i in range(len(first))
        ]
    if isinstance(first, list):
        return list(itertools.chain.from_iterable(parts))
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if is_sparse(first):
        import scipy.sparse

        return scipy.sparse.vstack(parts, format=first.format, dtype=first.dtype)
    if is_pandas(first):
        import pandas

        return pandas.concat(parts, axis=0, ignore_index=not keep_index)
    if is_polars(first):
        import polars

        return polars.concat(parts, how="vertical")
    raise TypeError(
        f"skbatch cannot join outputs of type {type(first).__name__}; call the "
        "estimator directly for this method."
    )
