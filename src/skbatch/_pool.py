"""Worker processes that outlive a call, and the models they hold.

Starting a worker process costs seconds (a fresh interpreter importing
scikit-learn), more than many whole predict calls. skbatch keeps one pool of
worker processes for the life of the calling process; idle workers exit after
:data:`IDLE_TIMEOUT` seconds and come back on demand. The pool is skbatch's own,
so a ``joblib.Parallel`` call elsewhere in the program (which resizes joblib's
shared pool at will) never kills workers that hold a loaded model.

Models travel through files, not through tasks: a call pickles the model once,
names the bytes by their digest and writes them to a folder in shared memory
(``/dev/shm`` where it exists). Each task carries only the digest; a worker
unpickles a model the first time it sees its digest and keeps it, so a model
unchanged since the last call is neither re-sent nor re-loaded. A changed model
(refitted, new parameters, edited in place) pickles to different bytes, hence a
new digest, and is loaded afresh: workers never run a stale model.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from joblib.externals.loky import ProcessPoolExecutor
from joblib.externals.loky.backend.context import get_context

from skbatch._errors import ModelFileError
from skbatch._worker import cloudpickle, worker_ready

#: Idle worker processes exit after this many seconds; the next call that
#: needs them starts new ones.
IDLE_TIMEOUT = 300
#: Model files go here by default: memory, not disk, where it exists.
SHARED_MEMORY = "/dev/shm"
#: Until a worker has been timed starting in this process, assume this.
DEFAULT_START_SECONDS = 2.0

_lock = threading.RLock()
_executor = None
_executor_size = 0
_start_seconds = DEFAULT_START_SECONDS


def _reset_after_fork():
    # A forked child must not use its parent's pool or model folder.
    global _executor, _executor_size, _lock, _store
    _executor, _executor_size = None, 0
    _lock = threading.RLock()
    _store = _ModelStore()


def get_executor(n_processes: int) -> ProcessPoolExecutor:
    """The pool, with room for at least ``n_processes`` workers."""
    global _executor, _executor_size
    with _lock:
        broken = _executor is not None and _is_broken(_executor)
        if _executor is None or broken or _executor_size < n_processes:
            if _executor is not None:
                _executor.shutdown(wait=False, kill_workers=broken)
            _executor = ProcessPoolExecutor(
                max_workers=n_processes,
                timeout=IDLE_TIMEOUT,
                context=get_context("loky"),
            )
            _executor_size = n_processes
            _stop_at_exit(_shutdown_pool)
        return _executor


def _shutdown_pool():
    global _executor
    executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


def kill_workers(wait: float = 1.0) -> None:
    """Kill every worker process now, waiting up to ``wait`` seconds for them
    to be gone; the next call starts a fresh pool. After an interrupt: a
    worker inside a batch cannot be told to stop, and must not go on."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is None:
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    executor.shutdown(wait=False, kill_workers=True)
    deadline = time.monotonic() + wait
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))


def _stop_at_exit(callback):
    """Run ``callback`` when this process exits, a multiprocessing child too.

    Idle workers would otherwise keep the process from ending: a
    multiprocessing child joins every process it started before it exits
    (and does not run ``atexit`` handlers).
    """
    from multiprocessing import util

    util.Finalize(None, callback, exitpriority=20)


def _is_broken(executor) -> bool:
    # loky marks a pool whose worker died, or that was shut down, in ``_flags``.
    flags = getattr(executor, "_flags", None)
    return flags is not None and (
        getattr(flags, "broken", None) is not None or getattr(flags, "shutdown", False)
    )


def pool_size() -> int:
    """How many worker processes the pool may run (it only grows)."""
    with _lock:
        return _executor_size if _executor is not None else 0


def workers_alive() -> int:
    """How many worker processes are running now (0 when none started)."""
    with _lock:
        if _executor is None:
            return 0
        processes = getattr(_executor, "_processes", None) or {}
        return sum(1 for p in list(processes.values()) if p.is_alive())


def expected_start_seconds() -> float:
    """How long starting a worker took last time in this process."""
    return _start_seconds


def note_start_seconds(seconds: float) -> None:
    global _start_seconds
    _start_seconds = seconds


def start_workers(n_jobs: int = -1, *, timeout: float = 120.0) -> int:
    """Start skbatch's worker processes now, so a later call finds them ready.

    The first call that runs in worker processes otherwise starts them itself
    (the calling thread keeps working through rows meanwhile, so the call is
    not slower than serial, but the workers only help once they are up). Call
    this at program start, or while loading data, to have them ready. Workers
    import scikit-learn while starting; an idle worker exits after 5 minutes.

    Parameters
    ----------
    n_jobs : int or None, default=-1
        Workers a later call will use, counted like ``BatchedPredictor``'s
        ``n_jobs``: the calling thread is one of them, so ``n_jobs - 1``
        processes start (``-1`` or None: one per core).
    timeout : float, default=120.0
        Seconds to wait for the workers to be ready.

    Returns
    -------
    n_processes : int
        Worker processes running.

    Examples
    --------
    >>> import skbatch
    >>> skbatch.start_workers(n_jobs=2)
    1
    """
    from numbers import Integral, Real

    from skbatch._plan import resolve_workers

    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (Integral, type(None))):
        raise TypeError(
            f"n_jobs must be an int or None (-1 or None: one worker per core), "
            f"got {n_jobs!r}."
        )
    if isinstance(timeout, bool) or not isinstance(timeout, Real) or timeout <= 0:
        raise ValueError(
            f"timeout must be a positive number of seconds, got {timeout!r}."
        )
    _, n_workers = resolve_workers(n_jobs, None)  # joblib's error for n_jobs=0
    n_processes = max(0, n_workers - 1)
    if n_processes == 0:
        return 0
    executor = get_executor(n_processes)
    started = time.perf_counter()
    cold = workers_alive() < n_processes
    futures = [executor.submit(worker_ready, None, 0) for _ in range(n_processes)]
    deadline = time.monotonic() + timeout
    for future in futures:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise TimeoutError(
                f"{n_processes} worker processes were not ready after {timeout} s; "
                "they go on starting in the background."
            ) from None
    if cold:
        note_start_seconds(time.perf_counter() - started)
    return workers_alive()


def start_workers_in_background(n_processes: int) -> None:
    """Have ``n_processes`` worker processes start, without waiting for them:
    for the next calls, when this one is over before they would be up."""
    if n_processes < 1 or workers_alive() >= n_processes:
        return
    executor = get_executor(n_processes)
    started = time.perf_counter()

    def ready(_future):
        note_start_seconds(time.perf_counter() - started)

    futures = [executor.submit(worker_ready, None, 0) for _ in range(n_processes)]
    futures[-1].add_done_callback(ready)


# --------------------------------------------------------------- model files
def temp_folder() -> str:
    """Where skbatch keeps the files of a call (model files, stop files):
    ``$SKBATCH_TEMP_FOLDER`` if set, else ``/dev/shm`` (memory) where it can be
    written, else the system's temporary folder."""
    folder = os.environ.get("SKBATCH_TEMP_FOLDER")
    if folder:
        # Absolute: the files are removed at exit, from any working folder.
        folder = os.path.abspath(os.path.expanduser(folder))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ModelFileError(
                f"SKBATCH_TEMP_FOLDER={folder!r} cannot be used for skbatch's "
                f"files ({exc}): point it at a folder you can write, or unset it."
            ) from exc
        return folder
    if os.access(SHARED_MEMORY, os.W_OK):
        return SHARED_MEMORY
    return tempfile.gettempdir()


@dataclass(frozen=True)
class ModelRef:
    """What a task carries instead of the model: the digest and the file."""

    digest: str
    path: str
    nbytes: int


class _ModelStore:
    """Model files named by digest, in one folder removed at exit.

    A file stays while a call uses it; the most recent one also stays after its
    call, for the next call with the same model. When ``/dev/shm`` is full (a
    container's is often 64 MB), files go to the system's temporary folder.
    """

    def __init__(self):
        self._folder = None
        self._paths: dict[str, str] = {}  # digest -> its file
        self._in_use: dict[str, int] = {}
        self._latest = None
        self._lock = threading.Lock()

    def _new_folder(self, parent: str) -> str:
        folder = tempfile.mkdtemp(prefix="skbatch-models-", dir=parent)
        owner = os.getpid()
        atexit.register(_remove_folder, folder, owner)
        _stop_at_exit(lambda: _remove_folder(folder, owner))
        return folder

    def _write(self, digest: str, data: bytes) -> str:
        """The file holding ``data``, written (atomically) unless it exists.
        Past a full ``/dev/shm``, the folder moves to the temporary folder."""
        if self._folder is not None and not os.path.isdir(self._folder):
            self._folder = None  # removed meanwhile (a temp folder cleaned)
        parent = temp_folder() if self._folder is None else None
        try:
            if self._folder is None:
                self._folder = self._new_folder(parent)
            return _write_once(os.path.join(self._folder, f"{digest}.pkl"), data)
        except OSError as exc:
            disk = tempfile.gettempdir()
            tried = self._folder or parent
            on_disk = disk in (tried, os.path.dirname(tried))
            if os.environ.get("SKBATCH_TEMP_FOLDER") or on_disk:
                raise _model_file_error(tried, data, exc) from exc
            full, self._folder = self._folder, None
            try:
                self._folder = self._new_folder(disk)
                return _write_once(os.path.join(self._folder, f"{digest}.pkl"), data)
            except OSError as again:
                raise _model_file_error(self._folder or disk, data, again) from exc
            finally:
                if full is not None and not os.listdir(full):
                    _remove_folder(full, os.getpid())

    def publish(self, model) -> ModelRef:
        """Pickle ``model`` once and make its file available; mark it in use."""
        data = cloudpickle.dumps(model)
        digest = hashlib.blake2b(data, digest_size=20).hexdigest()
        with self._lock:
            path = self._paths.get(digest)
            if path is None or not os.path.exists(path):
                path = self._paths[digest] = self._write(digest, data)
            self._in_use[digest] = self._in_use.get(digest, 0) + 1
            previous, self._latest = self._latest, digest
            if previous not in (None, digest):
                self._remove_if_unused(previous)
        return ModelRef(digest, path, len(data))

    def release(self, ref: ModelRef) -> None:
        with self._lock:
            self._in_use[ref.digest] -= 1
            if not self._in_use[ref.digest]:
                del self._in_use[ref.digest]
                if ref.digest != self._latest:
                    self._remove_if_unused(ref.digest)

    def _remove_if_unused(self, digest: str) -> None:
        if digest not in self._in_use:
            with contextlib.suppress(KeyError, OSError):
                os.remove(self._paths.pop(digest))


def _write_once(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file (workers never see
    half a file); on failure nothing is left."""
    if not os.path.exists(path):
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise
    return path


def _model_file_error(folder: str, data: bytes, exc: OSError) -> ModelFileError:
    setting = "Point" if os.environ.get("SKBATCH_TEMP_FOLDER") else "Set"
    return ModelFileError(
        f"skbatch could not write the model ({len(data) / 1e6:.1f} MB) to "
        f"{folder}, where worker processes read it: {exc}. {setting} the "
        "SKBATCH_TEMP_FOLDER environment variable to a folder with room, or "
        "use backend='threading', which shares the model instead of sending it."
    )


def _remove_folder(folder: str, owner_pid: int) -> None:
    # A forked child inherits atexit handlers: only the owner removes the folder.
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)


_store = _ModelStore()


def publish_model(model) -> ModelRef:
    return _store.publish(model)


def release_model(ref: ModelRef) -> None:
    _store.release(ref)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
