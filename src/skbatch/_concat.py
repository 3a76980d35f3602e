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
            f"{what} returned {found} for {n_rows} input rows, not one entry "
            "per input row"
        )


def concat_parts(parts: list, n_rows: list[int]):
    """Join outputs computed on consecutive row ranges.

    Parameters
    ----------
    parts : list
        Outputs in row order, all of the same kind.
    n_rows : list of int
        Number of input rows behind each part; tells a per-output list (one
        array per output) from a list with one entry per row.

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
            concat_parts([part[i] for part in parts], n_rows) for i in range(len(first))
        )
    if all(_is_per_output_sequence(p, n) for p, n in zip(parts, n_rows, strict=True)):
        return [
            concat_parts([part[i] for part in parts], n_rows) for i in range(len(first))
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

        # Parts that each start a fresh RangeIndex at 0 (made by the method,
        # not taken from the input) get one fresh index, as one call would.
        fresh = all(
            isinstance(part.index, pandas.RangeIndex)
            and part.index.start == 0
            and part.index.step == 1
            for part in parts
        )
        return pandas.concat(parts, axis=0, ignore_index=fresh)
    if is_polars(first):
        import polars

        return polars.concat(parts, how="vertical")
    raise TypeError(
        f"skbatch cannot join outputs of type {type(first).__name__}; call the "
        "estimator directly for this method."
    )


def _comparable(part):
    if is_sparse(part):
        return part.toarray()
    if is_pandas(part) or is_polars(part):
        return part.to_numpy()
    return np.asarray(part, dtype=object) if isinstance(part, list) else part


def head_agrees(head, whole, head_rows: int, whole_rows: int) -> bool:
    """Whether ``head`` (output for the first ``head_rows`` rows alone) equals
    the first ``head_rows`` rows of ``whole`` (output for ``whole_rows`` rows).

    False reveals a method whose output for a row depends on the other rows
    (iterative solvers with a global stopping rule, random draws, shapes that
    grow with the input). Floating-point values may differ by rounding only.

    >>> X = np.arange(6.0).reshape(3, 2)
    >>> head_agrees(X[:2] * 2, X * 2, 2, 3)
    True
    >>> head_agrees(X[:2] - X[:2].mean(), X - X.mean(), 2, 3)
    False
    """
    if isinstance(whole, tuple) or _is_per_output_sequence(whole, whole_rows):
        return (
            type(head) is type(whole)
            and len(head) == len(whole)
            and all(
                head_agrees(h, w, head_rows, whole_rows)
                for h, w in zip(head, whole, strict=True)
            )
        )
    head, whole = _comparable(head), _comparable(whole)
    head_shape = getattr(head, "shape", None)
    whole_shape = getattr(whole, "shape", None)
    if head_shape is None or whole_shape is None or len(head_shape) == 0:
        return False
    if head_shape[1:] != whole_shape[1:] or head_shape[0] != head_rows:
        return False
    whole = whole[:head_rows]
    if np.issubdtype(head.dtype, np.inexact) and np.issubdtype(whole.dtype, np.inexact):
        # Rounding differences grow with the dtype's precision and the values'
        # magnitude (and a lot where results cancel, as in a variance near 0):
        # allow 1e-7 of the largest value, or a thousand ulps if coarser.
        eps = np.finfo(np.result_type(head.dtype, whole.dtype)).eps
        with np.errstate(invalid="ignore"):
            scale = np.nanmax(np.abs(whole), initial=1.0)
        if not np.isfinite(scale):
            scale = 1.0
        tolerance = max(1e-7, 1000 * eps)
        return bool(
            np.allclose(
                head, whole, rtol=tolerance, atol=tolerance * scale, equal_nan=True
            )
        )
    try:
        return bool(np.array_equal(head, whole))
    except Exception:
        return False
