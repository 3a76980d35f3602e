"""Making inputs sliceable and taking contiguous rows out of them.

Supported containers: numpy arrays (memmaps included), pandas DataFrames and
Series, polars DataFrames and Series, scipy.sparse matrices and arrays, and
Python sequences (lists of lists, lists of strings). Rows are always taken by
position, so an input's index, columns and dtypes survive slicing.
"""

from __future__ import annotations

import copy
import sys

import numpy as np

#: Sparse formats that support row slicing; anything else is converted to CSR.
_ROW_SLICEABLE_SPARSE = {"csr", "csc", "lil", "dok"}


def _module_of(X) -> str:
    return type(X).__module__.partition(".")[0]


def is_pandas(X) -> bool:
    return _module_of(X) == "pandas" and hasattr(X, "iloc")


def is_polars(X) -> bool:
    # LazyFrames have no rows yet (no shape): they are handed over whole.
    return _module_of(X) == "polars" and hasattr(X, "slice") and hasattr(X, "shape")


def is_sparse(X) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def num_rows(X) -> int | None:
    """Number of rows of ``X``, or None when ``X`` cannot be split by rows.

    None covers scalars, strings, None, zero-dimensional arrays, unsized
    iterables and anything else skbatch does not know how to slice: such inputs
    are handed to the estimator whole, so it raises its own error for them.

    >>> num_rows([[1, 2], [3, 4], [5, 6]])
    3
    >>> num_rows(np.zeros((0, 4)))
    0
    >>> num_rows(None) is None, num_rows("abc") is None, num_rows(np.float64(1)) is None
    (True, True, True)
    """
    if X is None or isinstance(X, (str, bytes, dict)):
        return None
    if isinstance(X, np.ndarray):
        return X.shape[0] if X.ndim >= 1 else None
    if is_sparse(X) or is_pandas(X) or is_polars(X):
        return X.shape[0]
    if isinstance(X, (list, tuple)):
        return len(X)
    return None


def make_sliceable(X):
    """Return ``X`` in a form :func:`take_rows` can slice cheaply.

    Only sparse formats without row slicing (COO, DIA, BSR) change: they become
    CSR once, in the parent, as scikit-learn's own input validation would do.
    """
    if is_sparse(X) and X.format not in _ROW_SLICEABLE_SPARSE:
        return X.tocsr()
    return X


def take_rows(X, start: int, stop: int):
    """Rows ``[start, stop)`` of ``X``, in the same container type.

    Numpy arrays give views (no copy), pandas objects are sliced with ``iloc``
    (index, columns and dtypes kept), polars with ``slice``.

    >>> take_rows(np.arange(10).reshape(5, 2), 1, 3)
    array([[2, 3],
           [4, 5]])
    >>> take_rows([[1], [2], [3]], 2, 3)
    [[3]]
    """
    if is_pandas(X):
        return X.iloc[start:stop]
    if is_polars(X):
        return X.slice(start, stop - start)
    return X[start:stop]


def copy_rows(X, start: int, stop: int):
    """Rows ``[start, stop)`` of ``X`` as an independent copy.

    For extra calls skbatch makes on rows that are also processed normally: a
    method that writes into its input must not change the user's rows twice.

    >>> X = np.zeros((3, 1))
    >>> copy_rows(X, 0, 2)[0, 0] = 5.0
    >>> float(X[0, 0])
    0.0
    """
    rows = take_rows(X, start, stop)
    if isinstance(rows, list):
        # Each row copied one level deep: enough for lists of lists or dicts,
        # and cheap for lists of strings (which cannot change).
        return [copy.copy(row) for row in rows]
    if hasattr(rows, "copy") and not is_polars(rows):  # polars frames are immutable
        return rows.copy()
    return rows


def protected_rows(X, start: int, stop: int):
    """Rows ``[start, stop)`` of ``X`` that a method may read but not change.

    A numpy array gives a read-only view (no copy: a method that writes into
    its input raises, and the caller falls back to one plain call); anything
    else gives a copy, as :func:`copy_rows`.

    >>> rows = protected_rows(np.zeros((3, 1)), 0, 2)
    >>> rows.flags.writeable
    False
    """
    if isinstance(X, np.ndarray):
        rows = X[start:stop].view()
        rows.flags.writeable = False
        return rows
    return copy_rows(X, start, stop)


def row_nbytes(X) -> int | None:
    """Bytes per row for arrays whose size is cheap to know, else None."""
    if isinstance(X, np.ndarray) and X.ndim >= 1 and X.shape[0] > 0:
        return X.nbytes // X.shape[0]
    return None


def is_readonly_array(X) -> bool:
    """True for a numpy array the user cannot write into."""
    return isinstance(X, np.ndarray) and not X.flags.writeable


def first_nonfinite_row(X) -> int | None:
    """Position of the first row holding NaN or infinity, if cheap to find.

    Looks only at floating-point numpy arrays and sparse matrices; returns None
    for everything else and for inputs that are all finite. A single sum settles
    the common all-finite case without a temporary array.

    >>> first_nonfinite_row(np.array([[0.0, 1.0], [2.0, np.nan], [np.inf, 0.0]]))
    1
    >>> first_nonfinite_row(np.ones((3, 2))) is None
    True
    """
    if is_sparse(X):
        values = X.tocsr() if X.format != "csr" else X
        if not np.issubdtype(values.dtype, np.floating) or np.isfinite(
            values.data.sum()
        ):
            return None
        bad = ~np.isfinite(values.data)
        if not bad.any():
            return None
        # Row of the first stored non-finite value.
        first = int(np.argmax(bad))
        return int(np.searchsorted(values.indptr, first, side="right") - 1)
    if not isinstance(X, np.ndarray) or X.ndim < 1:
        return None
    if not np.issubdtype(X.dtype, np.floating) or X.size == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(X.sum()):
            return None
    rows_finite = np.isfinite(X.reshape(X.shape[0], -1)).all(axis=1)
    if rows_finite.all():
        return None  # the sum overflowed, every value is finite
    return int(np.argmin(rows_finite))
