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


def _library_folders():
    import os

    import sklearn

    import skbatch

    return tuple(
        os.path.dirname(module.__file__) + os.sep for module in (skbatch, sklearn)
    )


def warn_at_caller(warning: Warning) -> None:
    """Emit ``warning`` attributed to the first frame outside skbatch and
    scikit-learn: the user's line, however deep in a pipeline it was raised."""
    import sys
    import warnings

    folders = _library_folders()
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(folders):
        frame, level = frame.f_back, level + 1
    warnings.warn(warning, stacklevel=level)


class UnshippableModelError(TypeError):
    """A model asked to run in worker processes cannot be sent to them.

    Raised before any worker takes a row, naming the step or attribute that
    cannot be pickled (a lock, an open file, a connection).

    Examples
    --------
    >>> from skbatch import UnshippableModelError
    >>> issubclass(UnshippableModelError, TypeError)
    True
    """


def _terminated_worker_error():
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return TerminatedWorkerError


class WorkerDiedError(_terminated_worker_error()):
    """A worker process died while computing rows (killed for memory, a
    segmentation fault, ``os._exit``).

    A subclass of loky's ``TerminatedWorkerError`` (what joblib raises), so
    existing handlers still catch it. The message names the rows that were
    being computed, the exit codes, and what they usually mean. The next call
    starts fresh workers.

    Examples
    --------
    >>> from joblib.externals.loky.process_executor import TerminatedWorkerError
    >>> from skbatch import WorkerDiedError
    >>> issubclass(WorkerDiedError, TerminatedWorkerError)
    True
    """
