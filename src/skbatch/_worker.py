"""What runs inside a worker: the shipped model, the method call, the row loop.

Everything here is picklable and runs the same in a worker process, a worker
thread or the calling thread. A worker sends back plain data: outputs, row
counts, and the warnings it raised; an exception that could not travel back
intact is replaced by :class:`WorkerError`, so the caller never hangs or sees a
garbled error (the caller then calls the estimator itself, see ``_engine``).
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
import threading
import traceback
import uuid
import warnings
from collections import OrderedDict

from sklearn import config_context

from skbatch._batching import iter_chunks
from skbatch._concat import check_rows
from skbatch._dead_workers import mark_batch, unmark_batch
from skbatch._errors import WorkerError
from skbatch._failures import add_note, note_batch, timeout_error
from skbatch._indexing import copy_rows, is_readonly_array, num_rows, take_rows
from skbatch._timeouts import BatchOverran, run_within

try:  # joblib >= 1.6 depends on cloudpickle; older releases vendor it
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle


class _RowsNotRun(RuntimeError):
    """A task ran none of its rows (see the subclasses)."""


class WorkerOverran(Exception):
    """A worker process's batch ran past its timeout; ``pid`` is the worker,
    which the caller kills (the batch goes on in a thread there). ``probe``:
    it was the probe rows, which each worker process runs again once."""

    def __init__(self, pid, probe=False):
        super().__init__(pid, probe)
        self.pid, self.probe = pid, probe


# ----------------------------------------------------------------- the model
_WORKER_MODELS: OrderedDict[str, object] = OrderedDict()
_WORKER_MODELS_LOCK = threading.Lock()


def _restore_model(token: str, data: bytes):
    """Unpickle a shipped model, at most once per worker process and call."""
    with _WORKER_MODELS_LOCK:
        model = _WORKER_MODELS.get(token)
        if model is None:
            try:
                model = cloudpickle.loads(data)
            except Exception as exc:
                # Raising while a task is unpickled breaks loky's pool and hangs
                # multiprocessing's: fail when the model is used instead.
                model = _UnloadableModel(exc)
            # Keep only the newest model: an idle worker should not hold
            # an old call's model in memory.
            _WORKER_MODELS.clear()
            _WORKER_MODELS[token] = model
    return model


class ChunkSkipped(_RowsNotRun):
    """A task found its call stopped; none of its rows ran."""


class ModelNotLoadedError(_RowsNotRun):
    """A worker process could not load the model; none of the task's rows ran."""


class _UnloadableModel:
    """Stands for a model that could not be unpickled in this worker."""

    def __init__(self, exc: Exception):
        self.error = _travelling(exc)

    def __getattr__(self, name):
        raise ModelNotLoadedError(
            f"the model could not be loaded in a worker process: {self.error}"
        )


class SharedModel:
    """A fitted model shipped to workers as one payload per call.

    Pickling serializes the model the first time only; every further task that
    carries this payload reuses the same bytes, and each worker process unpickles
    them once. In-process and thread execution never pickles it at all.
    """

    def __init__(self, model):
        self.model = model
        self.token = uuid.uuid4().hex
        self._data = None
        self._lock = threading.Lock()

    def __reduce__(self):
        with self._lock:
            if self._data is None:
                self._data = cloudpickle.dumps(self.model)
        return _restore_model, (self.token, self._data)


class MethodCall:
    """``model.<method>(rows, **params)``, picklable with a shared model."""

    def __init__(self, model, method: str, params: dict, label: str, repeatable=True):
        self.model = model
        self.method = method
        self.params = params
        self.label = label
        #: Whether rows may be computed more than once: to check the method is
        #: row-wise and worker processes agree, or to redo them as one call on
        #: the whole input. Not for plain functions, which may have effects.
        self.repeatable = repeatable
        #: For list outputs as long as their rows: whether they hold one array
        #: per output (learned on the probe; None: not known).
        self.per_output = None
        #: Seconds a batch may run (None: no limit), times a failed batch runs
        #: again, and rows per call within a batch (None: the whole batch):
        #: set by the engine for the call.
        self.timeout = None
        self.max_retries = 0
        self.sub_rows = None
        #: Whether a batch may run in several calls (sub-chunks).
        self.splittable = True
        #: The model's file for worker processes, when published for the call.
        self.model_ref = None
        #: Where a worker process marks the batch it runs (None: nowhere).
        self.run_marks = None

    def __call__(self, X_rows):
        model = self.model.model if isinstance(self.model, SharedModel) else self.model
        return getattr(model, self.method)(X_rows, **self.params)


# ------------------------------------------------- models in worker processes
_PROCESS_MODEL: list = [None, None]  # [digest, model] of the newest model
_PROCESS_MODEL_LOCK = threading.Lock()


def load_model(ref):
    """The model for ``ref`` (a :class:`skbatch._pool.ModelRef`) in this worker
    process, and whether it had to be loaded (False: kept from an earlier task
    or call). Only the newest model is kept: an idle worker should not hold an
    old model in memory."""
    with _PROCESS_MODEL_LOCK:
        if _PROCESS_MODEL[0] == ref.digest:
            return _PROCESS_MODEL[1], False
        with open(ref.path, "rb") as f:
            model = cloudpickle.loads(f.read())
        _PROCESS_MODEL[:] = [ref.digest, model]
        return model, True


def worker_ready(ref, inner_threads):
    """First task of a worker: load the model (``ref`` may be None) and import
    what it needs, so the worker is ready for rows. Returns ``(pid, loaded)``."""
    if ref is None:
        import sklearn.base  # noqa: F401  (the import every model needs)

        return os.getpid(), False
    try:
        _, loaded = load_model(ref)
    except Exception as exc:
        raise _travelling(exc) from None
    return os.getpid(), loaded


def _maps_the_file(owner) -> bool:
    """Whether ``owner``'s memory is mapped from the file now at its name.

    A file replaced after it was mapped (saved anew, ``os.replace``) leaves the
    caller with the old data and workers opening the name with the new: only
    when the mapping's inode is the name's may workers map it. Read from
    ``/proc/self/maps``; where that does not exist, never.
    """
    try:
        stat = os.stat(owner.filename)
        address = owner.__array_interface__["data"][0]
        with open("/proc/self/maps") as maps:
            for line in maps:
                span, _, _, device, inode = line.split(None, 5)[:5]
                lo, hi = (int(part, 16) for part in span.split("-"))
                if lo <= address < hi:
                    major, minor = (int(part, 16) for part in device.split(":"))
                    return (
                        int(inode) == stat.st_ino
                        and os.makedev(major, minor) == stat.st_dev
                    )
    except (OSError, ValueError):
        pass
    return False


class MemmapRows:
    """Rows ``[start, stop)`` of an array backed by a file, by reference.

    Pickles as the file name and layout, so a worker process maps the same file
    (read-only) instead of receiving a copy of the rows.
    """

    def __init__(self, filename, offset, dtype, shape, order, start, stop):
        self.filename = filename
        self.offset = offset
        self.dtype = dtype
        self.shape = shape
        self.order = order
        self.start = start
        self.stop = stop

    @classmethod
    def describe(cls, X):
        """A description of ``X``'s file and layout, or None when ``X`` is not
        a contiguous view of an array mapped from a file."""
        import mmap

        import numpy as np

        if not isinstance(X, np.ndarray) or X.dtype.hasobject:
            return None
        if not (X.flags.c_contiguous or (X.ndim == 2 and X.flags.f_contiguous)):
            return None
        # The array that owns the mapping is the one whose base is the mmap
        # itself; its first element sits at its ``offset`` in the file.
        owner = X
        while owner is not None and not isinstance(owner.base, mmap.mmap):
            owner = owner.base if isinstance(owner.base, np.ndarray) else None
        if (
            owner is None
            or not isinstance(owner, np.memmap)
            or owner.filename is None
            or owner.mode == "c"  # copy-on-write: memory may differ from file
        ):
            return None
        if not _maps_the_file(owner):
            return None
        shift = X.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
        order = "C" if X.flags.c_contiguous else "F"
        return cls(
            owner.filename, owner.offset + shift, X.dtype, X.shape, order, 0, len(X)
        )

    def rows(self, start, stop):
        return MemmapRows(
            self.filename,
            self.offset,
            self.dtype,
            self.shape,
            self.order,
            start,
            stop,
        )

    def open(self):
        import numpy as np

        whole = np.memmap(
            self.filename,
            dtype=self.dtype,
            mode="r",
            offset=self.offset,
            shape=self.shape,
            order=self.order,
        )
        return whole[self.start : self.stop]


_CHECKED_CALL: list = [None]  # the call whose probe rows this worker ran


def _stopped(stop_file, lo) -> bool:
    """Whether the call's stop file says the task starting at ``lo`` stops:
    it holds the lowest failed row (-1: every task stops)."""
    if stop_file is None or not os.path.exists(stop_file):
        return False
    try:
        with open(stop_file) as f:
            row = int(f.read() or -1)
    except (OSError, ValueError):
        row = -1
    return row < 0 or lo > row


def run_process_chunk(
    ref, call_spec, rows, start, stop, config, filters_blob, inner, check, limits
):  # fmt: skip
    """Worker-process entry point for rows ``[start, stop)`` of the user's input.

    ``call_spec`` is ``(method, params, label)``; ``rows`` the rows themselves
    or a :class:`MemmapRows`. Runs under the caller's scikit-learn config and
    warning filters, with native thread pools limited to ``inner`` threads.
    ``check`` is ``(call token, probe rows, stop file)``: the first task of a
    call in this worker also runs the probe rows, whose output the caller
    compares with its own (a model reading module state set at run time,
    which a worker process imports afresh, gives different outputs). A task
    that finds the stop file says it must stop (the call failed below it, or
    was interrupted) computes nothing more and raises :class:`ChunkSkipped`.
    ``limits`` is ``(sub_rows, timeout)``: rows per call of the method (None:
    all at once) and seconds the task may run (None: no limit; past it,
    :class:`WorkerOverran`). Returns ``(pid, loaded, output, warnings, probe
    output or None)``, the output being ``[(start row, part, rows)]``.
    """
    stop_file = check[2]
    if _stopped(stop_file, start):
        raise ChunkSkipped(f"rows {start}:{stop} not started: the call stopped")
    from skbatch._threadlimits import limit_process_pools

    method, params, label = call_spec
    sub_rows, timeout = limits
    try:
        model, loaded = load_model(ref)
    except Exception as exc:
        # No row ran: the caller may compute these rows itself.
        raise ModelNotLoadedError(
            f"the model could not be loaded in a worker process: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if loaded and _stopped(stop_file, start):  # loading took a while
        raise ChunkSkipped(f"rows {start}:{stop} not started: the call stopped")
    if stop_file is not None:  # which batch this worker runs, should it die
        mark_batch(f"{stop_file}.run", start, stop)

    def compute(X):
        n_rows = stop - start
        step = sub_rows or n_rows
        parts = []
        for lo in range(0, n_rows, step):
            if lo and _stopped(stop_file, start):
                raise ChunkSkipped(f"rows {start}:{stop} stopped at {start + lo}")
            hi = min(n_rows, lo + step)
            sub = X if step >= n_rows else take_rows(X, lo, hi)
            try:
                out = getattr(model, method)(sub, **params)
            except Exception as exc:
                # Rows mapped from the user's file are read-only; a method
                # that writes into its input gets a copy, as with joblib.
                if not is_readonly_array(sub) or "read-only" not in str(exc):
                    raise
                out = getattr(model, method)(sub.copy(), **params)
            check_rows(out, hi - lo, label)
            parts.append((start + lo, out, hi - lo))
        return parts

    try:
        X = rows.open() if isinstance(rows, MemmapRows) else rows
        with (
            config_context(**config),
            limit_process_pools(inner),
            warnings.catch_warnings(record=True) as caught,
        ):
            _apply_filters(filters_blob)
            try:
                out = run_within(timeout, lambda: compute(X), inner)
            except BatchOverran:
                raise WorkerOverran(os.getpid()) from None
            probe_out = None
            if check[1] is not None and _CHECKED_CALL[0] != check[0]:
                # The probe rows again, under the same limit: a model that
                # hangs only in a fresh process must not hang the call here.
                try:
                    probe_out = run_within(
                        timeout, lambda: getattr(model, method)(check[1], **params),
                        inner,
                    )  # fmt: skip
                except BatchOverran:
                    raise WorkerOverran(os.getpid(), probe=True) from None
                _CHECKED_CALL[0] = check[0]
    except (ChunkSkipped, WorkerOverran):
        raise
    except BaseException as exc:  # SystemExit, a user's BaseException too
        raise _travelling(exc) from None
    warned = [portable_warning(w) for w in caught]
    return os.getpid(), loaded, out, warned, probe_out


# --------------------------------------------------------------- the row loop
def run_rows(call, X, chunk_rows, report, copy, batch):
    """Run ``call`` over the rows of ``X`` (a whole batch) in sub-chunks.

    ``copy`` says which chunks the method gets as copies: ``"always"`` where
    ``X`` is the user's own data (the calling process, worker threads), so a
    method that writes into its input never changes the user's rows (and a
    fallback to one whole-input call starts from untouched data);
    ``"readonly"`` in worker processes, where joblib memory-maps large inputs
    read-only although the user's array was writeable; ``"never"``.
    ``batch`` is ``(index, first row, rows in the whole input)``, for notes.
    A failed batch runs again up to ``call.max_retries`` times (not past its
    ``call.timeout``: its thread may still run).

    Returns the per-chunk outputs and their row counts.
    """
    n = num_rows(X)
    report.took(n)
    index, offset, n_total = batch
    attempts = 0
    while True:
        attempts += 1
        parts, n_rows = [], []
        try:
            run_within(
                call.timeout,
                functools.partial(
                    _rows_out, call, X, n, chunk_rows, copy, report, parts, n_rows
                ),
            )
            return parts, n_rows
        except BatchOverran:
            error = timeout_error(
                call.label, index, offset, offset + n, n_total, call.timeout,
                "a joblib worker", "joblib stops its workers after an error",
            )  # fmt: skip
        except Exception as exc:
            error = exc
        if sum(n_rows):
            report(-sum(n_rows))  # this attempt's rows count only once
        if attempts > call.max_retries or isinstance(error, TimeoutError):
            break
    note_batch(error, call.label, index, offset, offset + n, n_total, attempts)
    raise error


def _rows_out(call, X, n, chunk_rows, copy, report, parts, n_rows):
    for lo, hi in iter_chunks(0, n, chunk_rows):
        if copy == "always":
            rows = copy_rows(X, lo, hi)
        else:
            rows = take_rows(X, lo, hi)
            if copy == "readonly" and is_readonly_array(rows):
                rows = rows.copy()
        out = call(rows)
        check_rows(out, hi - lo, call.label)
        parts.append(out)
        n_rows.append(hi - lo)
        report(hi - lo)


def run_batch(config, filters_blob, call, X_batch, batch, chunk_rows, report, copy):
    """Worker entry point: a batch arrives already sliced; ``batch`` is
    ``(index, first row, rows in the whole input)``.

    Runs under the caller's scikit-learn ``config`` (``transform_output``, ...).
    Returns ``(parts, n_rows, warnings)``. A worker process gets the caller's
    warning filters (pickled, ``filters_blob``), records its warnings and
    returns them, so the caller shows each once; a worker thread
    (``filters_blob=None``) shares the caller's warnings state and leaves it
    alone: swapping it from several threads at once is not safe.
    """
    with config_context(**config):
        if filters_blob is None:
            parts, n_rows = run_rows(call, X_batch, chunk_rows, report, copy, batch)
            return parts, n_rows, []
        mark_batch(call.run_marks, batch[1], batch[1] + num_rows(X_batch))
        try:
            with warnings.catch_warnings(record=True) as caught:
                _apply_filters(filters_blob)
                parts, n_rows = run_rows(call, X_batch, chunk_rows, report, copy, batch)
        except BaseException as exc:  # SystemExit, a user's BaseException too
            raise _travelling(exc) from None
        finally:
            unmark_batch(call.run_marks)
    return parts, n_rows, [portable_warning(w) for w in caught]


def pack_filters():
    """The caller's warning filters as bytes for worker processes, or b"" if
    they cannot travel (a category defined where workers cannot import it)."""
    try:
        return cloudpickle.dumps(list(warnings.filters))
    except Exception:
        return b""


def _apply_filters(filters_blob: bytes) -> None:
    # Filters that cannot be rebuilt here are left at the worker's defaults:
    # the caller applies its own filters again when it re-issues warnings.
    try:
        warnings.filters[:] = cloudpickle.loads(filters_blob)
    except Exception:
        pass


class WorkerTraceback(Exception):
    """The traceback of an exception in a worker process, as text: chained
    (``__cause__``) to the exception the caller gets."""

    def __str__(self):
        return "\n" + self.args[0]


class _Rebuilt(Exception):
    """An exception that travels as its class, ``args`` and attributes
    (cloudpickle bytes), and arrives as itself, its ``__init__`` not called."""

    def __init__(self, blob: bytes):
        super().__init__()
        self.blob = blob

    def __reduce__(self):
        return _rebuild_exception, (self.blob,)


def _rebuild_exception(blob):
    cls, args, state, text = cloudpickle.loads(blob)
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    exc.__cause__ = WorkerTraceback(text)
    # The pool chains its own traceback (of the re-raise) over this one as
    # it unpickles: the caller chains this one back (chain_worker_traceback).
    exc.__dict__[_TRACEBACK_KEY] = text
    return exc


_TRACEBACK_KEY = "_skbatch_worker_traceback"


def chain_worker_traceback(exc: BaseException) -> None:
    """Chain to ``exc``, rebuilt from a worker process, the traceback it had
    there (the estimator's frames) in place of the pool's re-raise."""
    text = getattr(exc, "__dict__", {}).pop(_TRACEBACK_KEY, None)
    if text is not None:
        exc.__cause__ = WorkerTraceback(text)


def _traceback_text(exc) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _travelling(exc: BaseException) -> Exception:
    """``exc``, in a form that reaches the caller as an exception of its own
    class whenever possible, and never breaks a result channel.

    An exception whose class cannot be rebuilt from its pickle (an ``__init__``
    with extra required arguments, say) breaks loky's result channel and hangs
    multiprocessing's pool forever; a class defined in a script or notebook
    cannot be found by name where plain pickle unpickles results. Such an
    exception travels as its class (by value), ``args`` and attributes, and is
    rebuilt without calling ``__init__``. One that cannot travel at all (it
    holds a lock) becomes a :class:`WorkerError` with its type name, message
    and traceback.
    """
    try:
        if type(pickle.loads(pickle.dumps(exc))) is type(exc):
            return exc  # travels as is, whatever pickles results
    except Exception:
        pass
    text = _traceback_text(exc)
    try:
        blob = cloudpickle.dumps((type(exc), exc.args, dict(vars(exc)), text))
        if type(_rebuild_exception(blob)).__qualname__ == type(exc).__qualname__:
            return _Rebuilt(blob)
    except Exception:
        pass
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__qualname__} whose str() failed>"
    error = WorkerError(type(exc).__qualname__, message, text)
    for note in getattr(exc, "__notes__", ()):
        add_note(error, note)
    return error


def portable_warning(w):
    """A recorded warning as data that always pickles: the message object when
    it survives pickling, its text otherwise; category, file and line."""
    message = w.message
    try:
        cloudpickle.loads(cloudpickle.dumps(message))
    except Exception:
        message = str(message)
    return message, w.category, w.filename, w.lineno


def _module_registry(filename: str, cache: dict):
    """The warnings registry of the module at ``filename``, as ``warn`` uses.

    Re-issuing through the module's own registry lets Python's default filter
    show a warning once, whether it was first raised here or in a worker.
    """
    if filename not in cache:
        # Code shipped by value (a class defined in a script or notebook) has no
        # module here; warn_explicit drops a warning whose module is None.
        cache[filename] = (os.path.splitext(os.path.basename(filename))[0], {})
        for name, module in list(sys.modules.items()):
            if getattr(module, "__file__", None) == filename:
                registry = module.__dict__.setdefault("__warningregistry__", {})
                cache[filename] = (name, registry)
                break
    return cache[filename]


def _shipped_code_file(filename: str, lineno: int) -> str:
    """The caller's file for a warning raised by code shipped by value.

    cloudpickle names such code ``<dynamic-code>``; it is most often a class
    from the running script, whose warning the caller may have shown already
    from the real file (the first rows run there): the same file keeps
    Python's default filter to once. Only when the script's line there warns.
    """
    if filename != "<dynamic-code>":
        return filename
    import linecache

    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and "warn" in linecache.getline(main_file, lineno):
        return main_file
    return filename


def reissue_warnings(records) -> None:
    """Issue each distinct recorded warning once, under the caller's filters."""
    seen, registries = set(), {}
    for message, category, filename, lineno in records:
        key = (str(message), category, filename, lineno)
        if key in seen:
            continue
        seen.add(key)
        if not isinstance(message, Warning):
            # Rebuild without calling __init__, which may need more arguments
            # than the text (category and text are what filters look at).
            text = message
            message = category.__new__(category)
            message.args = (text,)
        filename = _shipped_code_file(filename, lineno)
        module, registry = _module_registry(filename, registries)
        warnings.warn_explicit(
            message, category, filename, lineno, module=module, registry=registry
        )
