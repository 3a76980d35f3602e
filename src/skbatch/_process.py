"""``batch_process``: a plain function over many items, in parallel, with
progress.

The items are the rows of an input; the function is applied to each (or, with
``batched=True``, to each chunk of rows) by the same engine that runs the
estimators' methods (:mod:`skbatch._engine`): the same choice of threads,
worker processes or the calling thread, the same chunks, bars and teardown.
Unlike an estimator's method, a plain function may have side effects, so no
item is ever computed twice: no row-wise check, no check of worker processes
against the caller, and an error is raised as is, never retried as one call on
every item.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np

from skbatch._concat import RowList
from skbatch._engine import resolve_n_workers, run
from skbatch._failures import check_failure_options
from skbatch._indexing import is_pandas, is_polars, is_sparse, num_rows
from skbatch._progress_display import validate_bar_options

_PROGRESS = {True: "overall", False: None, "overall": "overall", "workers": "workers"}


class ItemFunction:
    """``function(item, *args, **kwargs)`` for every item of a chunk of rows,
    as the "model" the engine calls (picklable when the function is, through
    cloudpickle: lambdas and closures too)."""

    #: What messages call it when it cannot be sent to worker processes.
    shipped_as = "function"

    def __init__(self, function, args, kwargs, batched):
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.batched = batched

    @property
    def user_part(self):
        """What the user gave (for messages about what cannot be pickled)."""
        return self.function

    @property
    def name(self) -> str:
        return getattr(self.function, "__qualname__", None) or repr(self.function)

    def apply(self, items):
        if self.batched:
            out = self.function(items, *self.args, **self.kwargs)
            if isinstance(out, tuple):
                out = list(out)
            n_in = num_rows(items)
            n_out = None if isinstance(out, Mapping) else _length(out)
            if n_out != n_in:
                got = (
                    f"{n_out} results" if n_out is not None
                    else f"a {type(out).__name__}"
                )  # fmt: skip
                raise ValueError(
                    f"with batched=True, {self.name} must return one result per "
                    f"item of its batch (a list, array, Series or DataFrame as "
                    f"long as the batch): it returned {got} for {n_in} items. "
                    "Or use batched=False to apply it to one item at a time."
                )
            return out
        results = RowList()
        # A loop, not a generator: a StopIteration the function raises must
        # reach the caller as itself.
        for item in _each(items):
            results.append(self.function(item, *self.args, **self.kwargs))
        return results


def _length(out):
    try:
        return num_rows(out) if hasattr(out, "shape") else len(out)
    except TypeError:
        return None


def _each(items):
    """The items of a chunk, one by one: rows of a table or matrix."""
    if is_pandas(items):
        if items.ndim == 1:
            yield from items.array  # a Series: its values
        else:
            for i in range(len(items)):
                yield items.iloc[i]
    elif is_polars(items):
        if hasattr(items, "iter_rows"):
            yield from items.iter_rows(named=True)
        else:
            yield from items  # a Series: its values
    elif is_sparse(items):
        for i in range(items.shape[0]):
            yield items[[i]]
    else:
        yield from items


def _sliceable_items(items):
    if is_sparse(items):
        # Rows of any format: CSR slices rows cheaply (COO, DIA and DOK do
        # not slice, BSR slices only whole blocks).
        return items if items.format == "csr" else items.tocsr()
    if items is None or isinstance(items, (str, bytes)) or isinstance(items, Mapping):
        what = "None" if items is None else type(items).__name__
        raise TypeError(
            f"items must be a sequence of items (a list, a numpy array, a pandas "
            f"or polars DataFrame, a scipy.sparse matrix), got {what}. For a "
            "dict, pass list(d.items()) or list(d.values())."
        )
    if getattr(items, "ndim", 1) == 0:
        raise TypeError("items must have at least one dimension; got a scalar.")
    if num_rows(items) is not None and (
        hasattr(items, "shape") or isinstance(items, list)
    ):
        return items
    if not hasattr(items, "__len__"):
        raise TypeError(
            f"items must have a length (got {type(items).__name__}, which has "
            "none): pass list(items), or an array."
        )
    return list(items)


def batch_process(
    items,
    function,
    *args,
    n_jobs=None,
    batch_size=None,
    progress=True,
    progress_bar_kwargs=None,
    backend=None,
    batched=False,
    timeout=None,
    max_retries=0,
    verbose=0,
    **kwargs,
):
    """Apply ``function`` to every item, in parallel batches, with progress.

    Items are split into chunks of rows, handed to whichever worker is free
    (the calling thread included), and ``function(item, *args, **kwargs)`` is
    applied to each item. As for the estimators, skbatch chooses threads for a
    function that releases the GIL, worker processes for pure-Python code,
    and the calling thread alone when sharing would not pay.

    Parameters
    ----------
    items : list, ndarray, DataFrame, sparse matrix or sized iterable
        The items: a list's elements, a numpy array's rows (its elements if
        1-D), a pandas DataFrame's rows (as Series, not its column names), a
        polars DataFrame's rows (as dicts), a scipy.sparse matrix's rows (as
        1-row matrices), or the elements of any other iterable with a length.
    function : callable
        Called as ``function(item, *args, **kwargs)``; with worker processes
        it is sent to them with cloudpickle (lambdas and closures work).
    *args
        Passed to every call after the item.
    n_jobs : int, default=None
        Workers, the calling thread included; None: one per core (or the
        ``n_jobs`` of a surrounding ``joblib.parallel_config``), -1: all cores.
    batch_size : int, default=None
        Items per chunk handed to a worker, at most (the first chunk, timed
        to size the others, and the last may be smaller); None sizes chunks
        from timing the first items.
    progress : bool or {"overall", "workers"}, default=True
        One bar of completed items (``True``/``"overall"``), the same plus one
        bar per worker (``"workers"``), or none (``False``).
    progress_bar_kwargs : dict, default=None
        tqdm options for the bars (``desc``, ``file``, ``position``,
        ``leave``, ``disable``, ``mininterval``, ...).
    backend : str, default=None
        None lets skbatch choose; ``"threading"``, ``"loky"``, ``"sequential"``
        or another joblib backend forces one.
    batched : bool, default=False
        Call ``function(batch, *args, **kwargs)`` once per chunk instead, with
        the chunk in the input's own container (a slice of the list, array or
        DataFrame), for vectorized functions. It must return one result per
        item; the results are joined into one container of the kind it
        returns (a list, an array, a DataFrame).
    timeout : float, default=None
        Seconds one chunk may run, from when it starts in its worker; past
        it, :class:`BatchTimeoutError` (a worker process running it is
        killed). None: no limit.
    max_retries : int, default=0
        Times a chunk that failed (raised, lost its worker process, ran past
        ``timeout``) runs again. Only its successful run counts; items of a
        failed attempt may have been processed (their side effects done).
    verbose : int, default=0
        Print what ran, and why, when > 0.
    **kwargs
        Passed to every call (names above are skbatch's own: pass a function
        option called ``n_jobs`` or ``progress`` through ``functools.partial``).

    Returns
    -------
    results : list
        One result per item, in input order (with ``batched=True``, the
        joined results). Empty input gives ``[]`` without calling
        ``function``.

    Notes
    -----
    No item is processed twice (unless ``max_retries`` runs a failed chunk
    again), so a function with side effects (writing files, say) sees each
    item once. An exception raised by ``function`` reaches the caller as
    raised, with a note naming the chunk and its items; no new chunk starts
    after it, and of several failing chunks the one on the lowest items is
    reported, as a serial loop would.

    Examples
    --------
    >>> from skbatch import batch_process
    >>> batch_process(range(5), pow, 2, progress=False)
    [0, 1, 4, 9, 16]
    >>> import numpy as np
    >>> batch_process(np.arange(6).reshape(3, 2), np.sum, progress=False)
    [np.int64(1), np.int64(5), np.int64(9)]
    >>> batch_process([1, 2, 3], lambda b: [2 * x for x in b], batched=True,
    ...               progress=False)
    [2, 4, 6]
    """
    if not callable(function):
        raise TypeError(
            f"function must be callable, got {type(function).__name__}: "
            "batch_process(items, function, *args, **kwargs)."
        )
    if isinstance(progress, (bool, np.bool_)) or progress in ("overall", "workers"):
        mode = _PROGRESS[progress if isinstance(progress, str) else bool(progress)]
    else:
        raise ValueError(
            f"progress must be True, False, 'overall' or 'workers'; got {progress!r}."
        )
    if batch_size is not None and (
        isinstance(batch_size, (bool, np.bool_))
        or not isinstance(batch_size, Integral)
        or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be a positive int or None; got {batch_size!r}."
        )
    timeout = check_failure_options(timeout, max_retries)
    options = {
        "unit": "items",
        "desc": getattr(function, "__name__", None) or "batch_process",
        **validate_bar_options(progress_bar_kwargs),
    }
    # Checked now, whatever the input's size: a tiny input never resolves them.
    resolve_n_workers(n_jobs, backend)
    items = _sliceable_items(items)
    mapper = ItemFunction(function, args, kwargs, bool(batched))
    if num_rows(items) == 0:
        return []
    out = run(
        mapper,
        "apply",
        items,
        {},
        n_jobs=n_jobs,
        backend=backend,
        batch_size=None if batch_size is None else int(batch_size),
        progress=mode,
        bar_options=options,
        verbose=verbose,
        label=f"batch_process({mapper.name})",
        repeatable=False,
        splittable=not mapper.batched,  # one item at a time: may stop anywhere
        timeout=timeout,
        max_retries=int(max_retries),
    )
    return list(out) if isinstance(out, RowList) else out
