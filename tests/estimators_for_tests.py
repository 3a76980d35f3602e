"""Small estimators that make the engine's behaviour observable in tests.

They live in an importable module (not in a test file) so that loky workers
can unpickle them by reference.
"""

import os
import threading

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.linear_model import LogisticRegression


class PickleCountingClassifier(LogisticRegression):
    """LogisticRegression that counts how often it is pickled in this process."""

    n_pickles = 0

    def __getstate__(self):
        type(self).n_pickles += 1
        return super().__getstate__()


class WhereAmIClassifier(ClassifierMixin, BaseEstimator):
    """Predicts, for each row, the process id and thread id that computed it.

    ``work`` adds that many pure-Python loop steps per row, to make it slow.
    """

    def __init__(self, work=0):
        self.work = work

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        n = len(X)
        for _ in range(n * self.work):
            pass
        return np.column_stack(
            [np.full(n, os.getpid()), np.full(n, threading.get_ident() % 2**31)]
        )


class InterruptingClassifier(ClassifierMixin, BaseEstimator):
    """Raises ``KeyboardInterrupt`` (or another error) on rows whose first value
    is ``trigger``, as if the user pressed Ctrl-C in the middle of a call."""

    def __init__(self, trigger=-1.0, error=KeyboardInterrupt):
        self.trigger = trigger
        self.error = error

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        X = np.asarray(X)
        if (X[:, 0] == self.trigger).any():
            raise self.error("interrupted by the test")
        return np.zeros(len(X), dtype=int)


class InPlaceScaler(BaseEstimator):
    """Writes into its input, as some user transformers do."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X *= 2
        return X


class RowError(Exception):
    """An exception whose constructor needs two arguments: it cannot be
    rebuilt from its pickle."""

    def __init__(self, row, reason):
        super().__init__(f"row {row}: {reason}")
        self.row = row


class RowErrorClassifier(ClassifierMixin, BaseEstimator):
    """Raises :class:`RowError` on rows whose first value is -1."""

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X, offset=0):
        X = np.asarray(X)
        bad = np.flatnonzero(X[:, 0] == -1.0)
        if len(bad):
            raise RowError(int(bad[0]) + offset, "bad value")
        return np.zeros(len(X), dtype=int)


class DriftWarning(UserWarning):
    """A warning class whose constructor needs more than the text."""

    def __init__(self, column, score):
        super().__init__(f"drift in column {column}: {score:.2f}")
        self.column = column


class WarningClassifier(ClassifierMixin, BaseEstimator):
    """Warns :class:`DriftWarning` on every call."""

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        import warnings

        warnings.warn(DriftWarning("a", 0.5), stacklevel=2)
        return np.zeros(len(X), dtype=int)


_PARENT_PID = os.getpid()


class ParentOnlyClassifier(ClassifierMixin, BaseEstimator):
    """Cannot be unpickled in another process (as some models holding handles
    to local resources): its ``__setstate__`` refuses."""

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        self.home_ = os.getpid()
        return self

    def __setstate__(self, state):
        if os.getpid() != state.get("home_", os.getpid()):
            raise RuntimeError("this model only loads in the process that made it")
        self.__dict__.update(state)

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 5).astype(int)


class ThreadBudgetClassifier(ClassifierMixin, BaseEstimator):
    """Predicts, for each row: the most native (BLAS/OpenMP) threads any
    library would use in the thread computing it, its process id and thread
    id. Waits ``seconds_per_row`` per row (releasing the GIL)."""

    def __init__(self, seconds_per_row=2e-4):
        self.seconds_per_row = seconds_per_row

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        import time

        from skbatch._threadlimits import native_threads_now

        time.sleep(self.seconds_per_row * len(X))
        n = len(X)
        return np.column_stack(
            [
                np.full(n, max(native_threads_now().values())),
                np.full(n, os.getpid()),
                np.full(n, threading.get_ident() % 2**31),
            ]
        )


class SleepyRegressor(RegressorMixin, BaseEstimator):
    """Waits ``seconds_per_row`` per row, releasing the GIL (like a model
    calling out to a service or to native code)."""

    def __init__(self, seconds_per_row=2e-4):
        self.seconds_per_row = seconds_per_row

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        import time

        time.sleep(self.seconds_per_row * len(X))
        return np.asarray(X, dtype=float)[:, 0]


class RowSourceRegressor(RegressorMixin, BaseEstimator):
    """Predicts, for each row, how the rows reached it: 1 for a read-only view
    of the array given to ``fit`` (no copy), 2 for a memmap of ``mapped_file``,
    0 for anything else (a copy)."""

    def __init__(self, mapped_file=None, seconds_per_row=0.0):
        self.mapped_file = mapped_file
        self.seconds_per_row = seconds_per_row

    def fit(self, X, y=None):
        self.source_ = X
        return self

    def predict(self, X):
        import time

        time.sleep(self.seconds_per_row * len(X))
        source = self.__dict__.get("source_")
        if (
            self.mapped_file is not None
            and isinstance(X, np.memmap)
            and X.filename is not None
            and os.fspath(X.filename) == self.mapped_file
        ):
            code = 2
        elif (
            isinstance(source, np.ndarray)
            and np.shares_memory(X, source)
            and not X.flags.writeable
        ):
            code = 1
        else:
            code = 0
        return np.full(len(X), code, dtype=float)


class CallCountingRegressor(RegressorMixin, BaseEstimator):
    """Counts its predict calls (in this process)."""

    def fit(self, X, y=None):
        self.n_calls_ = 0
        return self

    def predict(self, X):
        self.n_calls_ += 1
        return np.zeros(len(X))


class SlowLogisticRegression(LogisticRegression):
    """LogisticRegression with ``work`` pure-Python steps per predicted row, so
    that worker processes take part even on small inputs."""

    work = 20_000

    def predict_proba(self, X):
        for _ in range(len(X) * self.work):
            pass
        return super().predict_proba(X)


def predict_in_worker_processes_then_exit(queue):
    """Target of a multiprocessing child: uses skbatch's worker processes, then
    returns (the child must then exit, not wait for idle workers)."""
    from sklearn.frozen import FrozenEstimator

    from skbatch import BatchedPredictor, _pool, _schedule

    _schedule.CALLER_TAKES_ROWS = False
    X = np.arange(1200.0).reshape(-1, 3)
    model = SlowLogisticRegression().fit(X, (X[:, 0] > 600).astype(int))
    batched = BatchedPredictor(
        FrozenEstimator(model), backend="loky", n_jobs=2, batch_size=100
    )
    batched.predict_proba(X)
    queue.put((batched.last_call_.path, _pool._store._folder))


#: Read by ModuleStateRegressor at predict time; tests change it at run time,
#: which worker processes (importing this module afresh) do not see.
OFFSET = 0.0


class ModuleStateRegressor(RegressorMixin, BaseEstimator):
    """Predicts the first feature plus the module-level ``OFFSET``, slowly."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        for _ in range(len(X) * 5_000):
            pass
        return np.asarray(X, dtype=float)[:, 0] + OFFSET


class CenteringTransformer(TransformerMixin, BaseEstimator):
    """Subtracts the column means of the rows it is given, when ``center``: a
    transform that is not row-wise (each row's output depends on the others).
    With ``center=False`` it returns a copy of its input (row-wise)."""

    def __init__(self, center=True):
        self.center = center

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return X - X.mean(axis=0) if self.center else X.copy()


class IntervalRegressor(SleepyRegressor):
    """Predicts, for each row, ``[pid, start, stop]`` of the call that
    computed it (sleeping ``seconds_per_row`` per row), to see which
    processes worked at the same time."""

    def predict(self, X):
        import time

        start = time.monotonic()
        super().predict(X)
        stop = time.monotonic()
        return np.tile([os.getpid(), start, stop], (len(X), 1))


class FitLog:
    """Real fits of the counting estimators below, one line per fit in the
    file named by ``SKBATCH_FIT_LOG``. Counts live in a file, not in the
    object, because a fit cache keys on the globals a fit reads: a counter
    in memory would change the key at every fit. A file also counts across
    processes."""

    def record(self, tag):
        path = os.environ.get("SKBATCH_FIT_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{tag}\n")

    def __getitem__(self, tag):
        try:
            with open(os.environ["SKBATCH_FIT_LOG"]) as f:
                return f.read().splitlines().count(tag)
        except (KeyError, FileNotFoundError):
            return 0

    def clear(self):
        path = os.environ.get("SKBATCH_FIT_LOG")
        if path and os.path.exists(path):
            os.remove(path)


FIT_COUNTS = FitLog()


class FitCountingRegressor(RegressorMixin, BaseEstimator):
    """Least squares that counts its real fits in ``FIT_COUNTS["regressor"]``
    and, when given, as lines in the file ``log``. ``n_jobs`` and ``verbose``
    change nothing, and the class says so to fit caches."""

    _run_only_params = ("n_jobs", "verbose")

    def __init__(self, alpha=0.0, log=None, n_jobs=None, verbose=0):
        self.alpha = alpha
        self.log = log
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X, y, sample_weight=None):
        FIT_COUNTS.record("regressor")
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(f"{os.getpid()}\n")
        X = np.asarray(X, dtype=float)
        w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight)
        A = X.T @ (X * w[:, None]) + self.alpha * np.eye(X.shape[1])
        self.coef_ = np.linalg.solve(A, X.T @ (np.asarray(y, dtype=float) * w))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return np.asarray(X, dtype=float) @ self.coef_


class FitCountingScaler(TransformerMixin, BaseEstimator):
    """Centres columns; counts fits and transforms in ``FIT_COUNTS``."""

    def fit(self, X, y=None):
        FIT_COUNTS.record("scaler")
        self.mean_ = np.asarray(X, dtype=float).mean(axis=0)
        self.n_features_in_ = len(self.mean_)
        return self

    def transform(self, X):
        FIT_COUNTS.record("scaler transforms")
        return np.asarray(X, dtype=float) - self.mean_


class LockHoldingTransformer(TransformerMixin, BaseEstimator):
    """Squares of rows, in pure Python (so it holds the GIL), and a lock
    among its fitted attributes: it cannot be sent to worker processes."""

    def fit(self, X, y=None):
        self.lock_ = threading.Lock()
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    work = 40  # pure-Python passes per row: long enough for worker processes

    def transform(self, X):
        out = []
        for row in np.asarray(X).tolist():
            for _ in range(self.work):
                total = sum(v * v for v in row)
            out.append([total])
        return np.array(out)


class FaultyTransformer(TransformerMixin, BaseEstimator):
    """Returns its input, and misbehaves on chosen global rows.

    Column 0 of the input holds each row's global index. When a call gets one
    of ``rows``, it does ``fault``:

    - ``"raise"``: ``ValueError("bad row <r>")``;
    - ``"unpicklable"``: an exception holding a lock (it cannot travel);
    - ``"base"``: :class:`RowAbort`, a ``BaseException`` its pickle cannot
      rebuild;
    - ``"kill"``: SIGKILL to its own process (as the out-of-memory killer);
    - ``"exit"``: ``os._exit(3)``;
    - ``"segfault"``: reads address 0 (a crash in native code);
    - ``"sleep"``: sleeps forever;
    - ``"deaf"``: blocks SIGINT and SIGTERM, then sleeps forever;
    - ``"warn"``: a ``RuntimeWarning`` (and returns normally).

    ``in_workers_only`` fires faults only outside the process that fitted it,
    so a kill never takes the caller down. With ``once_file``, the fault fires
    once (the file marks it fired): a transient failure, for retries. Each
    call sleeps ``seconds_per_call`` plus ``seconds_per_row`` per row and,
    with ``log``, appends
    ``"<pid> <first row> <rows> <start time> <end time>"`` to that file.
    """

    def __init__(
        self,
        fault="raise",
        rows=(),
        in_workers_only=False,
        once_file=None,
        seconds_per_call=0.0,
        seconds_per_row=0.0,
        log=None,
    ):
        self.fault = fault
        self.rows = rows
        self.in_workers_only = in_workers_only
        self.once_file = once_file
        self.seconds_per_call = seconds_per_call
        self.seconds_per_row = seconds_per_row
        self.log = log

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        self.fitted_in_pid_ = os.getpid()
        return self

    def transform(self, X):
        import time

        X = np.asarray(X)
        started = time.time()
        if self.seconds_per_call or self.seconds_per_row:
            time.sleep(self.seconds_per_call + self.seconds_per_row * len(X))
        hit = np.isin(np.asarray(self.rows, dtype=float), X[:, 0])
        if hit.any() and self._fires():
            self._misbehave(int(np.asarray(self.rows)[hit][0]))
        if self.log:
            with open(self.log, "a") as f:
                f.write(
                    f"{os.getpid()} {int(X[0, 0])} {len(X)} "
                    f"{started!r} {time.time()!r}\n"
                )
        return X.copy()

    def _fires(self) -> bool:
        if self.in_workers_only and os.getpid() == self.fitted_in_pid_:
            return False
        if self.once_file is not None:
            try:
                open(self.once_file, "x").close()
            except FileExistsError:
                return False
        return True

    def _misbehave(self, row):
        import signal
        import threading
        import time
        import warnings

        if self.fault == "raise":
            raise ValueError(f"bad row {row}")
        if self.fault == "unpicklable":
            raise LockedError(f"bad row {row}", threading.Lock())
        if self.fault == "base":
            raise RowAbort(row, "aborted")
        if self.fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fault == "exit":
            os._exit(3)
        if self.fault == "segfault":
            import ctypes

            ctypes.string_at(0)
        if self.fault == "deaf":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if self.fault in ("sleep", "deaf"):
            while True:
                time.sleep(3600)
        if self.fault == "warn":
            warnings.warn(f"odd row {row}", RuntimeWarning, stacklevel=2)


class LockedError(Exception):
    """An exception holding a lock: it cannot be pickled at all."""

    def __init__(self, message, lock):
        super().__init__(message)
        self.lock = lock


class RowAbort(BaseException):
    """Not an ``Exception``, and its ``__init__`` needs two arguments: its
    pickle cannot rebuild it."""

    def __init__(self, row, why):
        super().__init__(f"row {row}: {why}")
        self.row, self.why = row, why
