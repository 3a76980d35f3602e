"""skbatch's own exception and warning classes."""


class NotRowWiseError(ValueError):
    """A method returned something other than one entry per input row.

    Batching splits rows, so it can only reproduce methods whose output for a
    row depends on that row alone. When the first rows of a call show this
    error, the estimator is called once on the whole input instead.
    """


class SerialFallbackWarning(UserWarning):
    """A batched call ran as one call of the estimator on the whole input.

    skbatch falls back to one call when a batch fails although the whole input
    may not, or when the method turns out not to be row-wise. The result is the
    estimator's own; only the parallelism (and progress) was lost.

    Examples
    --------
    Turn it into an error where batching is required:

    >>> import warnings
    >>> from skbatch import SerialFallbackWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", SerialFallbackWarning)
    ...     # batched calls here raise instead of falling back
    """


class CacheWarning(UserWarning):
    """The fit cache could not be used as asked; the result is still right.

    Raised when a cache entry was found corrupted (it is fitted again and
    rewritten), when the cache location cannot be written (fits are
    returned, not stored), or when a fitted model cannot be pickled (it is
    not stored, and not tried again).
    """
