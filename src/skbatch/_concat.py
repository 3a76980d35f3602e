"""Reassembling per-chunk outputs into what one call on all rows would return.

Outputs come back in row order; this module only joins them, with one copy at
most, keeping the container (ndarray, sparse, pandas, polars) and dtype. Tuples
and per-output lists (multi-output ``predict_proba``) are joined element-wise.
"""

from __future__ import annotations

import itertools

import numpy as np

from skbatch._errors import NotRowWiseError
from skbatch._indexing import is_pandas, is_polars, is_sparse, num_rows, take_rows


class RowList(list):
    """A list with one entry per input row, whatever the entries are (arrays
    as long as the chunk included): joined by chaining, never read as one
    output per list entry."""


def _is_per_output_sequence(part, n_rows: int) -> bool:
    """A list whose every element is an array with one row per input row."""
    return (
        isinstance(part, list)
        and not isinstance(part, RowList)
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


def lists_per_output(parts: list, n_rows: list[int], hint=None) -> bool:
    """Whether list outputs hold one array per output (a multi-output
    estimator) rather than one entry per row.

    A part whose list length differs from its row count, or parts of
    different row counts with lists of one length, are per output; lists as
    long as their rows in every part read both ways: ``hint`` (what the
    engine saw on two calls of different row counts) decides, else per row.
    """
    pairs = list(zip(parts, n_rows, strict=True))
    if not all(_is_per_output_sequence(p, n) for p, n in pairs):
        return False
    if len({len(p) for p in parts}) > 1:
        return False  # the entries follow the rows
    if any(len(p) != n for p, n in pairs):
        return True
    return bool(hint)


def concat_parts(parts: list, n_rows: list[int], per_output=None):
    """Join outputs computed on consecutive row ranges.

    Parameters
    ----------
    parts : list
        Outputs in row order, all of the same kind.
    n_rows : list of int
        Number of input rows behind each part; tells a per-output list (one
        array per output) from a list with one entry per row.
    per_output : bool or None
        For list outputs as long as their rows, whether they are per output
        (see :func:`lists_per_output`).

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
    if lists_per_output(parts, n_rows, per_output):
        return [
            concat_parts([part[i] for part in parts], n_rows) for i in range(len(first))
        ]
    if isinstance(first, RowList):
        return RowList(itertools.chain.from_iterable(parts))
    if isinstance(first, list):
        return list(itertools.chain.from_iterable(parts))
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, axis=0)
    if is_sparse(first):
        import scipy.sparse

        joined = scipy.sparse.vstack(parts, format=first.format, dtype=first.dtype)
        return _keep_index_dtype(joined, parts)
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
        if first.ndim == 2 and any(
            not part.columns.equals(first.columns) for part in parts
        ):
            # Columns made from the values seen (pandas.get_dummies): one call
            # would have made them from all rows; joining would fill NaN.
            raise NotRowWiseError(
                "its output's columns depend on the rows given (batches gave "
                "different columns)"
            )
        return pandas.concat(_unify_categories(parts), axis=0, ignore_index=fresh)
    if is_polars(first):
        import polars

        return polars.concat(parts, how="vertical")
    raise TypeError(
        f"skbatch cannot join outputs of type {type(first).__name__}; call the "
        "estimator directly for this method."
    )


def _is_missing(value) -> bool:
    try:
        return value is None or bool(value != value)  # NaN, NaT
    except TypeError:
        return type(value).__name__ == "NAType"  # pandas.NA refuses bool()


def _same_values(a, b) -> bool:
    """Exact equality where missing values (NaN, NaT, None, pd.NA) match."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:
        pass  # object arrays: compare element by element below
    for x, y in zip(a.ravel(), b.ravel(), strict=True):
        try:
            if x is y or bool(x == y):
                continue
        except (TypeError, ValueError):
            if _same_values(x, y) if hasattr(x, "__len__") else False:
                continue
        if not (_is_missing(x) and _is_missing(y)):
            return False
    return True


def _close_values(a, b) -> bool:
    """Float equality up to rounding, which grows with the dtype's precision and
    the values' magnitude (and a lot where results cancel, as in a variance
    near zero): 1e-7 of the largest value, or a thousand ulps if coarser."""
    eps = np.finfo(np.result_type(a.dtype, b.dtype)).eps
    with np.errstate(invalid="ignore"):
        scale = np.nanmax(np.abs(b), initial=1.0) if b.size else 1.0
    if not np.isfinite(scale):
        scale = 1.0
    tolerance = max(1e-7, 1000 * eps)
    return bool(
        np.allclose(a, b, rtol=tolerance, atol=tolerance * scale, equal_nan=True)
    )


def _sparse_close(a, b) -> bool:
    """Sparse equality up to rounding, without densifying (a hashing
    vectorizer's rows are a million columns wide)."""
    if a.shape != b.shape:
        return False
    a, b = a.tocsr(), b.tocsr()
    for m in (a, b):
        m.sum_duplicates()
        m.sort_indices()
    if not (
        np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    ):
        # Different stored entries: equal only if the extra ones are zeros.
        difference = (a - b).tocsr()
        difference.eliminate_zeros()
        return difference.nnz == 0
    if np.issubdtype(a.dtype, np.inexact) and np.issubdtype(b.dtype, np.inexact):
        return _close_values(a.data, b.data)
    return _same_values(a.data, b.data)


def _rows_agree(part, whole) -> bool:
    """``part`` equals ``whole`` (same number of rows), up to float rounding."""
    if is_sparse(part) and is_sparse(whole):
        return _sparse_close(part, whole)
    if is_pandas(part) or is_polars(part):
        if (
            is_pandas(part)
            and part.ndim == 2
            and not part.columns.equals(whole.columns)
        ):
            return False
        part, whole = part.to_numpy(), whole.to_numpy()
    if isinstance(whole, list):
        return len(part) == len(whole) and all(
            _same_values(p, w) for p, w in zip(part, whole, strict=True)
        )
    part, whole = np.asarray(part), np.asarray(whole)
    if part.ndim == 0 or part.shape != whole.shape:
        return False
    if np.issubdtype(part.dtype, np.inexact) and np.issubdtype(whole.dtype, np.inexact):
        return _close_values(part, whole)
    return _same_values(part, whole)


def head_rows(output, rows: int, per_output: bool = False):
    """The first ``rows`` rows of a method's output (of each output, for a
    tuple or a per-output list)."""
    if isinstance(output, tuple):
        return tuple(head_rows(part, rows) for part in output)
    if per_output:
        return [head_rows(part, rows) for part in output]
    return take_rows(output, 0, rows)


def tail_agrees(tail, whole, start: int, whole_rows: int) -> bool:
    """Whether ``tail`` (output for rows ``start:whole_rows`` alone) equals the
    same rows of ``whole`` (output for rows ``0:whole_rows``).

    False reveals a method whose output for a row depends on the other rows
    (iterative solvers with a global stopping rule, random draws, statistics of
    the input, shapes that grow with the input). Floats may differ by rounding.

    >>> X = np.arange(6.0).reshape(3, 2)
    >>> tail_agrees(X[1:] * 2, X * 2, 1, 3)
    True
    >>> tail_agrees(X[1:] - X[1:].mean(), X - X.mean(), 1, 3)
    False
    """
    tail_rows = whole_rows - start
    # A list is per output (one array per output) only if both outputs read
    # that way: a list of per-row vectors as long as the probe reads both ways.
    per_output = _is_per_output_sequence(whole, whole_rows) and _is_per_output_sequence(
        tail, tail_rows
    )
    if isinstance(whole, tuple) or per_output:
        return (
            type(tail) is type(whole)
            and len(tail) == len(whole)
            and all(
                tail_agrees(t, w, start, whole_rows)
                for t, w in zip(tail, whole, strict=True)
            )
        )
    if num_rows(tail) != tail_rows or num_rows(whole) != whole_rows:
        return False
    try:
        return _rows_agree(tail, take_rows(whole, start, whole_rows))
    except Exception:
        return False


def _keep_index_dtype(joined, parts):
    """scipy's vstack narrows int64 indices to int32 when values allow; one call
    would have kept the estimator's index dtype."""
    wanted = np.result_type(*(p.indices.dtype for p in parts if hasattr(p, "indices")))
    if hasattr(joined, "indices") and joined.indices.dtype != wanted:
        joined.indices = joined.indices.astype(wanted)
        joined.indptr = joined.indptr.astype(wanted)
    return joined


def _unify_categories(parts):
    """Give categorical columns the same categories in every part.

    A method that builds categories from its input (``astype("category")``)
    gives each batch its own; pandas would then join them as plain objects. One
    call would have seen all values: use their union, sorted as pandas sorts
    inferred categories.
    """
    import pandas

    def categoricals(part):
        if isinstance(part, pandas.Series):
            return (
                {None: part.dtype}
                if isinstance(part.dtype, pandas.CategoricalDtype)
                else {}
            )
        return {
            name: dtype
            for name, dtype in part.dtypes.items()
            if isinstance(dtype, pandas.CategoricalDtype)
        }

    first = categoricals(parts[0])
    unified = {}
    for name, dtype in first.items():
        dtypes = [categoricals(part).get(name) for part in parts]
        if any(d is None for d in dtypes) or all(d == dtype for d in dtypes):
            continue
        values = pandas.Index(
            np.concatenate([np.asarray(d.categories, dtype=object) for d in dtypes])
        ).unique()
        try:
            values = values.sort_values()
        except TypeError:
            pass  # unorderable mix: keep first-seen order
        unified[name] = pandas.CategoricalDtype(values, ordered=dtype.ordered)
    if not unified:
        return parts
    if None in unified:
        return [part.astype(unified[None]) for part in parts]
    return [part.astype(unified) for part in parts]
