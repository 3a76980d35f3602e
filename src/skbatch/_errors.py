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


class ModelFileError(OSError):
    """The model's file could not be written where worker processes read it
    (``SKBATCH_TEMP_FOLDER`` unusable, or no room on the disk either). The
    message names the folder, the model's size and what to do."""


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


class WorkerError(RuntimeError):
    """An exception raised in a worker process that could not be sent back.

    Some exceptions cannot be pickled (they hold a lock or a connection) or
    rebuilt from their pickle (an ``__init__`` with extra required arguments).
    skbatch then raises this instead, never a bare "failed to un-serialize":
    the message holds the original type name, message and the worker's
    traceback, also kept in the attributes below.

    Attributes
    ----------
    type_name : str
        Qualified name of the original exception's class.
    message : str
        ``str()`` of the original exception.
    traceback_text : str
        The original traceback, as formatted in the worker.

    Examples
    --------
    >>> from skbatch import WorkerError
    >>> error = WorkerError("KeyError", "'x'", "Traceback ...")
    >>> print(error)  # doctest: +ELLIPSIS
    KeyError: 'x' (this exception could not be sent back from a worker process...
    >>> error.type_name
    'KeyError'
    """

    def __init__(self, type_name, message, traceback_text):
        super().__init__(type_name, message, traceback_text)
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __str__(self):
        return (
            f"{self.type_name}: {self.message} (this exception could not be sent "
            "back from a worker process as it was; its traceback there "
            f"follows)\n{self.traceback_text}"
        )


class BatchTimeoutError(TimeoutError):
    """A batch ran longer than the ``timeout`` it was given.

    The clock starts when the batch starts running in its worker (not when it
    is queued, not while workers start). The message names the batch, its rows
    and the limit. A worker process running it is terminated (the next call
    starts fresh workers); a thread cannot be stopped, so it is left to end
    in the background and whatever it computes is dropped.

    Examples
    --------
    >>> from skbatch import BatchTimeoutError
    >>> issubclass(BatchTimeoutError, TimeoutError)
    True
    """
