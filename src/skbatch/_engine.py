"""Running a method over the rows of an input: the only module that decides how.

A call runs in steps:

1. The first rows (a *probe*) run in the calling thread, and the last of them
   run once more on their own: both must agree, or the method is not row-wise.
   This happens on every call.
2. *Measuring* (the first call of a model's method, see
   :mod:`skbatch._measure`): while the probe and the following chunks run in the
   calling thread, a sleeping watcher thread measures how often the model
   holds the GIL, and growing chunks are timed until the cost per row and per
   call are known.
3. *Choice* (only when no backend was asked for): a model that holds the GIL
   runs in worker processes, as soon as the probe shows it and if enough work
   is left to pay for them; a model that releases it runs in threads; too
   little work left, and the calling thread goes on alone.
4. The rest of the rows go to the workers chosen (see :mod:`skbatch._schedule`),
   the calling thread being one of them. Workers run under a thread budget
   (see :mod:`skbatch._threadlimits`).
5. Outputs come back in row order and are joined once by :mod:`skbatch._concat`.

What the first call measured is kept (see :mod:`skbatch._profiles`): a later
call of the same model's method skips step 2 and starts its workers at once,
the calling thread running its probe meanwhile. Its observed speed keeps the
choice honest.

Every step's rows are real output rows: measuring wastes no work. If the
method turns out not to be row-wise, or the first rows fail (most bad input
does, before any worker starts), the estimator is called once on the whole
input instead: bad input then raises exactly the error the estimator raises on
its own, and a method that cannot be batched still returns its own result. A
batch failing later stops the call, and the failure on the lowest rows is
raised with a note naming its batch (see :mod:`skbatch._failures`). What a
call did and why is kept in a :class:`skbatch._plan.CallReport`.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from dataclasses import dataclass

from joblib import Parallel, delayed, parallel_config
from joblib._parallel_backends import MultiprocessingBackend
from joblib.externals.loky.process_executor import TerminatedWorkerError
from sklearn import get_config

from skbatch import _profiles
from skbatch._batching import chunk_rows_for, plan_batches
from skbatch._concat import concat_parts, head_rows, tail_agrees
from skbatch._dead_workers import (
    DeadWorkerWatch,
    PoolWorkerDied,
    exit_code_text,
    marked_batch,
    multiprocessing_pool,
    remove_marks,
)
from skbatch._errors import (
    BatchTimeoutError,
    ModelFileError,
    NotRowWiseError,
    SerialFallbackWarning,
    UnshippableModelError,
    WorkerDiedError,
)
from skbatch._failures import (
    NOTE_PREFIX,
    THREAD_LEFT,
    BatchFailed,
    WritesIntoInput,
    add_note,
    note_batch,
    timeout_error,
    worker_died,
)
from skbatch._indexing import (
    copy_rows,
    first_nonfinite_row,
    is_readonly_array,
    make_sliceable,
    num_rows,
    row_nbytes,
    take_rows,
)
from skbatch._measure import Costs, GilWatch, holds_gil, timed
from skbatch._plan import CallReport, resolve_workers
from skbatch._pool import (
    expected_start_seconds,
    get_executor,
    note_start_seconds,
    publish_model,
    release_model,
    start_workers_in_background,
    temp_folder,
    workers_alive,
)
from skbatch._process_run import ProcessRun
from skbatch._progress import ProgressMonitor, single_call_bar
from skbatch._schedule import (
    Outputs,
    RowCursor,
    compute_chunk,
    run_in_caller,
    run_in_threads,
)
from skbatch._shipping import unshippable_error, why_unshippable
from skbatch._threadlimits import idle_cpu_seconds, inner_threads
from skbatch._timeouts import BatchOverran, run_within
from skbatch._worker import (
    MemmapRows,
    MethodCall,
    ModelNotLoadedError,
    SharedModel,
    chain_worker_traceback,
    pack_filters,
    reissue_warnings,
    run_batch,
)

# ------------------------------------------------------------------ settings
#: Rows run in the calling thread before anything else. Inputs with fewer than
#: twice this many rows are one call, like serial.
PROBE_ROWS = 64
#: The probe's last rows run a second time on their own, to check row-wise-ness.
TAIL_ROWS = 31
#: Calibration chunks grow by this factor, and stop at the first that takes
#: this long and this many times as long as the probe (so the cost per row
#: shows past the fixed cost of a call) ...
CALIBRATE_GROWTH = 4
CALIBRATE_SECONDS = 0.02
CALIBRATE_OVER_PROBE = 1.5
#: ... or once this share of the input is done, if the GIL watcher has seen
#: enough by then; it has until :data:`WATCH_SHARE` of the input is done.
CALIBRATE_SHARE = 0.05
WATCH_SHARE = 0.25
#: Rows whose estimated serial time is below this stay in the calling thread:
#: sharing them would cost more than it saves (unless batch_size is given).
#: Starting a thread costs well under a millisecond; worker processes have
#: their own, higher bar (:data:`MIN_PROCESS_SECONDS`).
MIN_PARALLEL_SECONDS = 0.05
#: Chunks for workers are as large as memory and an even spread allow, up to
#: this much serial time (so progress moves), and at least
#: :data:`OVERHEAD_FACTOR` times the fixed cost of one call. Small chunks are
#: costly beyond their fixed cost: a model that releases the GIL in short
#: stretches (a forest, tree by tree) makes threads queue for it (measured:
#: a 200-tree forest on two threads, 4,096-row chunks 1.35x serial, 16,384-row
#: ones 1.9x).
MAX_CHUNK_SECONDS = 0.5
OVERHEAD_FACTOR = 40
#: Chunks shrink towards the end down to this much serial time (or
#: :data:`TAIL_OVERHEAD_FACTOR` times a call's fixed cost, if more), so that
#: workers finish together.
MIN_CHUNK_SECONDS = 0.02
TAIL_OVERHEAD_FACTOR = 4
#: Chunks for workers hold at most this many bytes of input rows, so the
#: intermediates a method allocates stay in memory already mapped (measured on
#: a scaler + logistic regression, 2 threads: 8 MiB chunks 1.85x serial).
MAX_WORKER_CHUNK_BYTES = 16 * 2**20
#: The machine must leave at least this many cores idle while the calling
#: thread runs a GIL-bound model alone for worker processes to help; with no
#: core idle, other programs hold them.
IDLE_CORE = 0.5
#: ... judged only over at least this many seconds.
IDLE_WINDOW = 0.1
#: Worker processes must have at least this much serial work left when they are
#: already running; when they must start first, the start time on top.
MIN_PROCESS_SECONDS = 0.3
#: A parallel run's speed over serial is judged (for later calls) only when it
#: lasted this long: shorter ones are noise.
MIN_OBSERVED_SECONDS = 0.1


def resolve_n_workers(n_jobs, backend) -> int:
    """Workers a call may use for ``n_jobs`` and ``backend`` (calling thread
    included); raises joblib's own error for a bad backend or ``n_jobs=0``."""
    return resolve_workers(n_jobs, backend)[1]


def _backend_context(backend):
    if backend is None:
        return contextlib.nullcontext()
    return parallel_config(backend=backend)


def _resolved_backend(parallel):
    # joblib exposes no public way to ask which backend a Parallel resolved to.
    # Without this private attribute we would fall back to the manager queue,
    # which works for threads too.
    return getattr(parallel, "_backend", None)


def _uses_threads(parallel) -> bool:
    return bool(getattr(_resolved_backend(parallel), "uses_threads", False))


def run(
    model,
    method: str,
    X,
    params: dict,
    *,
    n_jobs=None,
    backend=None,
    batch_size=None,
    progress=None,
    verbose=0,
    label=None,
    record=None,
    bar_options=None,
    repeatable=True,
    splittable=True,
    timeout=None,
    max_retries=0,
):
    """Return ``getattr(model, method)(X, **params)``, computed in batches.

    Parameters
    ----------
    model : object
        The fitted model.
    method : str
        Name of a row-wise method of ``model``.
    X : array-like
        Input rows.
    params : dict
        Extra keyword arguments passed unchanged to every call.
    n_jobs, backend : see :class:`skbatch.BatchedPredictor`.
    batch_size : int or None
        Rows per chunk; None lets skbatch size chunks from its measurements.
    progress : {None, "overall", "workers"}
        Which bars to draw.
    verbose : int
        Print what the call did, and why, when > 0.
    label : str
        Name shown in progress bars, notes and messages.
    record : CallReport or None
        Filled in with what the call did; a new one if None.
    bar_options : dict or None
        tqdm options for the bars, already checked.
    repeatable : bool
        Whether rows may be computed more than once (checks of row-wise-ness
        and of worker processes, one whole-input call after a failure).
        False for plain functions, which may have side effects: each row is
        computed exactly once and errors are raised as they are.
    splittable : bool
        Whether a user's batch may run in several calls (each of about half
        a second at most), so that an interrupt or a failure elsewhere stops
        it between two. False where each call must get the whole batch (a
        plain function given batches).
    timeout : float or None
        Seconds one batch may run, from when it starts in its worker.
    max_retries : int
        Times a failed batch runs again before its failure is raised.
    """
    started = time.perf_counter()
    label = label or f"{type(model).__name__}.{method}"
    call = MethodCall(model, method, params, label, repeatable)
    call.timeout, call.max_retries = timeout, max_retries
    call.splittable = splittable
    n = num_rows(X)
    if record is None:
        record = CallReport(label, n)
    record.n_rows = n
    try:
        if not n:
            # None (not splittable) or 0 rows: the estimator decides, serially.
            record.reasons.append("input not split into rows: one plain call")
            return _plain_call(call, X, record)
        # A plain function's batch_size is a promise about its calls.
        fits = call.repeatable or batch_size is None or batch_size >= n
        if n < 2 * PROBE_ROWS and fits:
            # Nothing to split: exactly the serial call, at its cost (the
            # workers allowed do not matter, so are not even resolved).
            record.reasons.append(f"under {2 * PROBE_ROWS} rows: one plain call")
            if progress is None:
                return _plain_call(call, X, record)
            with single_call_bar(n, call.label, bar_options) as done:
                result = _plain_call(call, X, record)
                done()
            return result
        kind, n_workers = resolve_workers(n_jobs, backend)
        record.n_workers = n_workers
        return _run(
            call, X, n, kind, n_workers, backend, batch_size, progress, record,
            bar_options,
        )  # fmt: skip
    finally:
        record.seconds = time.perf_counter() - started
        if verbose:
            print(record.summary())


def _plain_call(call, X, record):
    """The estimator's own call on the whole input (the user's rows, not a
    copy), within the call's timeout and retries."""
    n = record.n_rows or 0
    attempts = 0
    while True:
        attempts += 1
        try:
            return run_within(call.timeout, lambda: call(X))
        except BatchOverran:
            error = timeout_error(
                call.label, 0, 0, n, n, call.timeout, "the calling thread",
                THREAD_LEFT,
            )  # fmt: skip
        except Exception as exc:
            error = exc
        if attempts > call.max_retries:
            if attempts > 1:
                note_batch(error, call.label, 0, 0, n, n, attempts)
            raise error
        record.retries += 1


def _run(
    call, X, n, kind, n_workers, backend, batch_size, progress, record, bar_options
):  # fmt: skip
    if progress is None and n_workers == 1 and batch_size is None:
        record.reasons.append("one worker: one plain call")
        return _plain_call(call, X, record)

    X_rows = make_sliceable(X)
    parallel, cross_process = None, False
    if kind == "joblib" and n_workers > 1:
        with _backend_context(backend):
            parallel = Parallel(n_jobs=n_workers)
        cross_process = not _uses_threads(parallel)
    failure = None
    with ProgressMonitor(
        n,
        mode=progress,
        n_workers=n_workers,
        cross_process=cross_process,
        caller_works=kind != "joblib" and n_workers > 1,
        desc=call.label,
        options=bar_options,
    ) as monitor:
        try:
            if kind == "joblib" and n_workers > 1:
                return _run_joblib(
                    call, X_rows, n, parallel, cross_process, batch_size, monitor,
                    record,
                )  # fmt: skip
            return _run_measured(
                call, X_rows, n, kind, n_workers, batch_size, monitor.reporter,
                record,
            )  # fmt: skip
        except BatchFailed as failed:
            if (
                failed.lo == 0
                and call.repeatable
                and not isinstance(failed.error, BatchTimeoutError)
            ):
                # The first rows failed, before any worker started: most bad
                # input does this. One call on the whole input then raises the
                # estimator's error exactly (its message may show the data,
                # or list every bad value), at the cost of that one call.
                reason = (
                    f"the first rows raised {type(failed.error).__name__}: "
                    f"{failed.error}"
                )
            else:
                failure = failed  # raised below, outside this handler
        except (
            TerminatedWorkerError, MemoryError, UnshippableModelError, ModelFileError
        ):  # fmt: skip
            raise  # a worker died, memory ran out, the model cannot be sent
            # or written: one bigger call would not help
        except Exception as exc:
            # The method is not row-wise, writes into its input, cannot load
            # in workers: batching cannot reproduce it, one call can.
            if not call.repeatable:
                raise  # a plain function's rows are never computed twice
            if isinstance(exc, (NotRowWiseError, WritesIntoInput)):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
        if failure is None:
            record.path = "whole-input fallback"
            record.reasons.append(f"one call on the whole input instead: {reason}")
            try:
                result = _plain_call(call, X, record)
            except Exception as exc:
                add_note(exc, f"{NOTE_PREFIX} raised by one call on the whole input")
                raise
            monitor.finish()
    if failure is not None:
        record.reasons.append(
            f"rows {failure.lo}:{failure.hi} raised {type(failure.error).__name__}"
        )
        chain_worker_traceback(failure.error)
        raise failure.error
    warnings.warn(
        SerialFallbackWarning(
            f"{call.label} ran as one call on the whole input, not in batches: "
            f"{reason}. The result is the estimator's own."
        ),
        stacklevel=5,  # the user's line calling predict, transform, ...
    )
    return result


def _probe_stop(n, n_workers, X_rows, batch_size=None, checked=True) -> int:
    """Where the probe ends: with one worker, a whole chunk (``batch_size``
    rows, if set); else :data:`PROBE_ROWS` rows. A ``checked`` method is
    checked for row-wise-ness on at least :data:`PROBE_ROWS` rows whatever
    the batch size; a plain function (not checked) never gets more than
    ``batch_size`` items per call. Without ``batch_size``, no tiny remainder
    is left after the probe (small inputs are one call)."""
    if n_workers > 1:
        stop = PROBE_ROWS
    elif batch_size is None:
        stop = chunk_rows_for(n, row_nbytes(X_rows))
    else:
        stop = batch_size
    if batch_size is not None:
        stop = max(stop, PROBE_ROWS) if checked else min(stop, batch_size)
        return min(n, stop)
    stop = min(n, stop)
    return n if n - stop < PROBE_ROWS else stop


def _probe(call, X_rows, n, n_workers, report, record, outputs=None, batch_size=None):
    """Run the probe rows in the calling thread and check the method is
    row-wise on them.

    Returns ``(probe_stop, output, seconds)``: where the probe ended, its
    output (also added to ``outputs``, if given), and how long its call took.
    The probe is batch 0: its failure is raised as :class:`BatchFailed`.
    """
    probe_stop = _probe_stop(n, n_workers, X_rows, batch_size, call.repeatable)
    checked = probe_stop < n and call.repeatable
    kept = outputs if outputs is not None else Outputs()
    started = time.perf_counter()
    # On a copy: the row-wise check computes some of these rows again, and a
    # method writing into its input must not change the user's rows twice.
    rows = copy_rows(X_rows, 0, probe_stop)
    compute_chunk(call, rows, 0, probe_stop, kept, report, record, "caller")
    seconds = time.perf_counter() - started
    first = kept.get(0)
    if checked:
        tail = _run_tail(call, X_rows, probe_stop, n)
        if tail is not None:
            _check_row_wise(call, X_rows, tail, first, probe_stop, call.label)
    return probe_stop, first, seconds


@dataclass
class _Plan:
    """How the rest of a call's rows will run."""

    path: str  # "threads", "processes" or "in-process"
    costs: Costs
    #: First row not done yet; when ``probe_pending``, the probe's rows are
    #: not done either and the calling thread runs them as the workers start.
    position: int
    probe_stop: int
    probe_pending: bool = False
    #: The path was asked for (``backend=``), not chosen by skbatch.
    asked: bool = False


_PATH_OF_KIND = {"threads": "threads", "processes": "processes"}


def _run_measured(call, X_rows, n, kind, n_workers, batch_size, report, record):
    if kind != "processes" or n_workers == 1:
        return _measured(call, X_rows, n, kind, n_workers, batch_size, report, record)
    # Worker processes asked for: a model that cannot go to them is said so
    # before any row runs (a plain function's side effects included), and
    # is pickled once for the call.
    call.model_ref = _publish(call, record, asked=True)
    try:
        return _measured(call, X_rows, n, kind, n_workers, batch_size, report, record)
    finally:
        release_model(call.model_ref)
        call.model_ref = None


def _shipped_as(call) -> str:
    """What the user calls the thing sent to workers: "model", or "function"
    for :func:`skbatch.batch_process`."""
    return getattr(call.model, "shipped_as", "model")


def _publish(call, record, asked):
    """The model's file for worker processes (a :class:`ModelRef`), or None
    when it cannot be sent and processes were not ``asked`` for (the reason
    is recorded); raises when they were."""
    try:
        ref = publish_model(call.model)
    except Exception as exc:
        unwritten = isinstance(exc, ModelFileError)
        why = str(exc) if unwritten else why_unshippable(call.model)
        if asked:  # processes were asked for: say so, and what is in the way
            if unwritten:
                raise
            raise unshippable_error(call.label, why, _shipped_as(call)) from exc
        record.reasons.append(
            f"the model cannot be sent to worker processes ({why}): calling "
            "thread alone"
        )
        return None
    record.model_pickles += 1
    return ref


def _measured(call, X_rows, n, kind, n_workers, batch_size, report, record):
    outputs = Outputs()
    clock = _PhaseClock(record)
    if n_workers == 1 or kind == "serial":
        probe_stop, _, probe_seconds = _probe(
            call, X_rows, n, n_workers, report, record, outputs, batch_size
        )
        clock.lap("probe")
        if probe_stop < n:
            record.path = "in-process"
            record.reasons.append(
                "one worker" if n_workers == 1 else "sequential backend asked for"
            )
            chunk = batch_size or chunk_rows_for(n - probe_stop, row_nbytes(X_rows))
            if batch_size is not None and call.splittable:
                costs = Costs(0.0, probe_seconds / probe_stop)
                call.sub_rows = _sub_rows(costs, X_rows, n, batch_size)
            cursor = RowCursor(probe_stop, n, n_workers=1, fixed_rows=chunk)
            run_in_caller(call, X_rows, cursor, outputs, report, record)
            clock.lap("rest")
        return _joined(call, outputs, [])

    profile = _profiles.recall(call.model, call.method, X_rows, n_workers)
    if profile is not None and (kind != "auto" or profile.path is not None):
        plan = _recalled_plan(
            profile, call, X_rows, n, kind, n_workers, batch_size, record
        )
    else:
        plan, profile = _measure(
            call, X_rows, n, kind, n_workers, batch_size, outputs, report, record,
            clock,
        )  # fmt: skip
        if plan.position >= n:
            record.path = "in-process"
            record.reasons.append("all rows done while measuring")
            return _joined(call, outputs, [])
        _profiles.remember(call.model, call.method, X_rows, n_workers, profile)
    plan.asked = kind != "auto"
    return _execute(
        plan, profile, call, X_rows, n, n_workers, batch_size, outputs, report,
        record, clock,
    )  # fmt: skip


def _recalled_plan(profile, call, X_rows, n, kind, n_workers, batch_size, record):
    """The plan for a call whose model was measured in an earlier call."""
    probe_stop = _probe_stop(n, n_workers, X_rows, batch_size, call.repeatable)
    costs = profile.costs
    record.gil_share = profile.gil_share
    record.serial_rows_per_second = 1.0 / max(costs.per_row, 1e-12)
    record.measured = "recalled"
    path = _PATH_OF_KIND.get(kind)
    if path is not None:
        record.reasons.append(f"backend asked for: {path}")
    else:
        path = profile.path
        record.reasons += [f"{reason} (measured earlier)" for reason in profile.reasons]
    path = _bounded_path(
        path, costs.seconds(n - probe_stop), n - probe_stop, batch_size,
        n_workers, record, asked=kind != "auto", timeout=call.timeout,
    )  # fmt: skip
    return _Plan(path, costs, 0, probe_stop, probe_pending=True)


def _measure(
    call, X_rows, n, kind, n_workers, batch_size, outputs, report, record, clock
):
    """Run the probe and calibration chunks in the calling thread, watching the
    GIL when the choice is skbatch's; returns the plan and the profile."""
    watch = GilWatch() if kind == "auto" else None
    idle_before, watch_started = idle_cpu_seconds(), time.perf_counter()
    with watch if watch is not None else contextlib.nullcontext():
        probe_stop, _, probe_seconds = _probe(
            call, X_rows, n, n_workers, report, record, outputs, batch_size
        )
        clock.lap("probe")
        position = probe_stop
        # Until calibrated, the probe's average is an upper bound per row.
        costs = Costs(0.0, probe_seconds / probe_stop)
        # A model that holds the GIL goes to worker processes, which take
        # seconds to start: the sooner they start, the more they do. Their
        # chunks need no precise costs.
        # Batches with a timeout should run where they can be stopped.
        supervised = kind == "processes" and call.timeout is not None
        if (
            position < n
            and not supervised
            and not (watch is not None and holds_gil(watch.gil_share()))
        ):
            position, costs = _calibrate(
                call, X_rows, n, position, (probe_stop, probe_seconds), outputs,
                report, record, watch, batch_size,
            )  # fmt: skip
            clock.lap("calibration")
    watched = time.perf_counter() - watch_started
    idle_after = idle_cpu_seconds()
    share = watch.gil_share() if watch is not None else None
    record.gil_share = None if share is None else round(share, 2)
    record.serial_rows_per_second = 1.0 / max(costs.per_row, 1e-12)
    record.measured = "this call"
    profile = _profiles.Profile(None, costs, share)
    if position >= n:
        return _Plan("in-process", costs, n, probe_stop), profile

    path = _PATH_OF_KIND.get(kind)
    if path is not None:
        record.reasons.append(f"backend asked for: {path}")
    elif holds_gil(share):
        path = "processes"
        profile.reasons = [
            f"{share:.0%} of a watcher thread's wakes waited for the GIL: the "
            "model holds it"
        ]
        # /proc/stat counts in hundredths of a second: judge longer windows.
        idle = (
            None
            if idle_before is None or idle_after is None or watched < IDLE_WINDOW
            else (idle_after - idle_before) / watched
        )
        if idle is not None and idle < IDLE_CORE:
            # Other programs hold the cores: worker processes would queue too.
            record.reasons += [
                *profile.reasons,
                f"other programs kept the other cores busy ({idle:.1f} idle): "
                "calling thread alone",
            ]
            path = "in-process"
    elif share is None:
        # A GIL-bound model gains nothing on threads, and one not written for
        # threads may even go wrong there: without evidence, no threads.
        path = "in-process"
        record.reasons.append(
            "the call was too short to see whether the model holds the GIL: "
            "calling thread alone"
        )
    else:
        path = "threads"
        profile.reasons = [
            f"{share:.0%} of a watcher thread's wakes waited for the GIL: the "
            "model releases it, threads"
        ]
    if kind == "auto" and share is not None:
        profile.path = path if path != "in-process" else "processes"
        if path != "in-process":
            record.reasons += profile.reasons
    path = _bounded_path(
        path, costs.seconds(n - position), n - position, batch_size, n_workers,
        record, asked=kind != "auto", timeout=call.timeout,
    )  # fmt: skip
    return _Plan(path, costs, position, probe_stop), profile


def _calibrate(
    call, X_rows, n, position, probe_point, outputs, report, record, watch,
    batch_size,
):  # fmt: skip
    """Time chunks of growing size (up to ``batch_size`` rows, if set) in the
    calling thread, from ``position``, until one takes long enough to show the
    cost per row. Returns the new position and the fitted :class:`Costs`."""
    max_rows = min(_rows_within_bytes(X_rows, n), batch_size or n)
    probe_rows, probe_seconds = probe_point
    long_enough = max(CALIBRATE_SECONDS, CALIBRATE_OVER_PROBE * probe_seconds)
    large = probe_point
    size = CALIBRATE_GROWTH * probe_rows
    while position < n:
        size = min(size, max_rows, n - position)
        if n - position - size < PROBE_ROWS and batch_size is None:
            size = n - position
        wall, _ = timed(
            compute_chunk, call, X_rows, position, position + size, outputs,
            report, record, "caller",
        )  # fmt: skip
        position += size
        large = (size, wall)
        if watch is not None and holds_gil(watch.gil_share()):
            break  # worker processes: the sooner the better
        watched = watch is None or watch.gil_share() is not None
        if watched and (wall >= long_enough or position >= CALIBRATE_SHARE * n):
            break
        if position >= WATCH_SHARE * n:
            break
        size *= CALIBRATE_GROWTH
    return position, Costs.fit(probe_point, large)


def _bounded_path(
    path, estimate, rest, batch_size, n_workers, record, asked, timeout=None
):  # fmt: skip
    """``path``, unless the ``rest`` rows (``estimate`` seconds serially) are
    too little work to share, or (unless ``asked`` for) to pay for starting
    worker processes. Processes asked for with a ``timeout`` always run: only
    they can be stopped past it."""
    if path == "in-process":
        return path
    if path == "processes" and asked and timeout is not None:
        record.reasons.append("a timeout: every batch in a worker process")
        return path
    if batch_size is None and estimate < MIN_PARALLEL_SECONDS:
        record.reasons.append(
            f"the {rest} rows after the first ones would take about "
            f"{estimate:.3f} s serially: too little to share"
        )
        return "in-process"
    if path == "processes" and batch_size is None and not asked:
        running = workers_alive() >= n_workers - 1
        needed = MIN_PROCESS_SECONDS + (0 if running else expected_start_seconds())
        if estimate < needed:
            record.reasons.append(
                f"the {estimate:.2f} s of work left would be over before worker "
                f"processes help ({'running' if running else 'not started'}): "
                "calling thread alone"
            )
            if not running and estimate >= MIN_PROCESS_SECONDS:
                # Worth it once they are up: the next calls find them ready.
                start_workers_in_background(n_workers - 1)
                record.reasons.append(
                    "worker processes start in the background for the next calls"
                )
            return "in-process"
        if not running:
            record.reasons.append(
                "worker processes start now; the calling thread works meanwhile"
            )
    return path


def _chunk_bounds(costs, X_rows, n, rest, n_workers):
    """``(largest, smallest)`` chunk for workers, in rows."""
    largest = min(
        _rows_within_bytes(X_rows, n),
        max(
            costs.rows_for(MAX_CHUNK_SECONDS),
            costs.rows_for(OVERHEAD_FACTOR * costs.per_call),
        ),
        max(1, -(-rest // (2 * n_workers))),
    )
    smallest = max(
        PROBE_ROWS,
        costs.rows_for(max(MIN_CHUNK_SECONDS, TAIL_OVERHEAD_FACTOR * costs.per_call)),
    )
    return largest, min(largest, smallest)


def _execute(
    plan, profile, call, X_rows, n, n_workers, batch_size, outputs, report,
    record, clock,
):  # fmt: skip
    start = plan.probe_stop if plan.probe_pending else plan.position
    if plan.probe_pending:

        def caller_first():
            _probe(call, X_rows, n, n_workers, report, record, outputs, batch_size)
            clock.lap("probe")

    else:
        caller_first = None
    rest = n - start
    if batch_size is not None:
        cursor = RowCursor(start, n, n_workers=n_workers, fixed_rows=batch_size)
        record.chunk_rows = batch_size
    else:
        largest, smallest = _chunk_bounds(plan.costs, X_rows, n, rest, n_workers)
        cursor = RowCursor(
            start, n, n_workers=n_workers, min_rows=smallest, max_rows=largest
        )
        record.chunk_rows = largest
    if batch_size is not None and call.splittable:
        # A user's batch runs in calls of bounded time, so that an interrupt
        # or a failure elsewhere stops it soon.
        call.sub_rows = _sub_rows(plan.costs, X_rows, n, batch_size)
    inner = inner_threads(n_workers)
    config = get_config()
    worker_warnings, cold = [], False
    started = time.perf_counter()
    if plan.path == "threads":
        record.path, record.inner_threads = "threads", inner
        run_in_threads(
            call, X_rows, cursor, outputs, report, record,
            n_threads=n_workers, inner=inner, config=config,
            caller_first=caller_first,
        )  # fmt: skip
    elif plan.path == "processes":
        worker_warnings, cold = _run_processes(
            call, X_rows, cursor, outputs, report, record, n_workers, inner, config,
            plan.probe_stop, caller_first, plan.asked,
        )  # fmt: skip
    else:
        record.path, record.inner_threads = "in-process", None
        if caller_first is not None:
            caller_first()
        run_in_caller(call, X_rows, cursor, outputs, report, record)
    seconds = time.perf_counter() - started
    clock.lap("rest")
    rows = n - plan.position
    if seconds >= MIN_OBSERVED_SECONDS and not cold and record.path == plan.path:
        speedup = plan.costs.seconds(rows) / seconds
        record.observed_speedup = round(speedup, 2)
        changed = _profiles.observe(profile, plan.path, speedup)
        if changed:
            record.reasons.append(f"next calls: {changed}")
    joined = _joined(call, outputs, worker_warnings)
    clock.lap("join")
    return joined


class _PhaseClock:
    """Records how long each phase of a call took, in ``record.phase_seconds``."""

    def __init__(self, record):
        self._record = record
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self._record.phase_seconds[phase] = round(now - self._last, 4)
        self._last = now


def _run_processes(
    call, X_rows, cursor, outputs, report, record, n_workers, inner, config,
    probe_stop, caller_first, asked,
):  # fmt: skip
    """The rows from the cursor on, in worker processes and the calling
    thread (which first runs ``caller_first``, if given). Returns the warnings
    the workers raised and whether their start was part of this call."""
    _try_first_nonfinite_row(call, X_rows, cursor.position)
    ref = call.model_ref or _publish(call, record, asked)
    if ref is None:
        record.path = "in-process"
        if caller_first is not None:
            caller_first()
        run_in_caller(call, X_rows, cursor, outputs, report, record)
        return [], False
    record.path, record.inner_threads = "processes", inner
    memmap = MemmapRows.describe(X_rows)
    record.rows_transfer = "memmap" if memmap is not None else "pickled"
    # With a timeout the calling thread only watches: a batch stuck in a worker
    # process can be stopped (killed), one in the calling thread cannot.
    n_processes = n_workers if call.timeout is not None else n_workers - 1
    cold = workers_alive() < n_processes
    try:
        run = ProcessRun(
            call, X_rows, cursor, outputs, report, record,
            executor=get_executor(n_processes), n_processes=n_processes,
            inner=inner, ref=ref, memmap=memmap, config=config,
            filters=pack_filters(),
            probe_rows=copy_rows(X_rows, 0, probe_stop) if call.repeatable else None,
            caller_first=caller_first,
        ).run()  # fmt: skip
    finally:
        if ref is not call.model_ref:  # (published early: released there)
            release_model(ref)
    if cold and run.first_ready is not None:
        note_start_seconds(run.first_ready)
    seen = set()
    for lo, _, exc in run.failed:
        where = "while starting" if lo is None else "on its rows"
        reason = (
            f"a worker process failed {where} ({type(exc).__name__}: {exc}); "
            "the calling thread did its rows"
        )
        if reason not in seen:
            seen.add(reason)
            record.reasons.append(reason)
    if run.failed and not any(k.startswith("process-") for k in record.rows_by_worker):
        record.path = "in-process"  # the workers failed: the caller did it all
    return run.warnings, cold


def _sub_rows(costs, X_rows, n, batch_size):
    """Rows per call inside a user's batch: at most :data:`MAX_CHUNK_SECONDS`
    of serial work and :data:`MAX_WORKER_CHUNK_BYTES` of rows, or None when the
    whole batch fits."""
    rows = min(
        costs.rows_for(MAX_CHUNK_SECONDS), _rows_within_bytes(X_rows, n), batch_size
    )
    rows = max(PROBE_ROWS, rows)
    return None if rows >= batch_size else rows


def _rows_within_bytes(X_rows, n) -> int:
    nbytes = row_nbytes(X_rows)
    if not nbytes:
        return n
    return max(PROBE_ROWS, MAX_WORKER_CHUNK_BYTES // nbytes)


def _joined(call, outputs, worker_warnings):
    reissue_warnings(worker_warnings)
    parts, n_rows = outputs.in_order()
    return concat_parts(parts, n_rows, call.per_output)


def _run_joblib(call, X_rows, n, parallel, cross_process, batch_size, monitor, record):
    """Any other joblib backend: one batch per worker (or of ``batch_size``)
    through ``joblib.Parallel``, after the probe."""
    label = call.label
    n_workers = parallel.n_jobs
    report = monitor.reporter
    shared = SharedModel(call.model)
    if cross_process:
        try:  # serialized once, now (before any row runs): every task reuses it
            shared.__reduce__()
        except Exception as exc:
            raise unshippable_error(
                label, why_unshippable(call.model), _shipped_as(call)
            ) from exc
        record.model_pickles += 1
    probe_stop, first, _ = _probe(
        call, X_rows, n, n_workers, report, record, batch_size=batch_size
    )
    parts, n_rows = [first], [probe_stop]
    _try_first_nonfinite_row(call, X_rows, probe_stop)
    if probe_stop == n:
        record.path = "in-process"
        return concat_parts(parts, n_rows, call.per_output)
    if batch_size is None:
        batches = plan_batches(probe_stop, n, n_batches=n_workers)
    else:
        batches = plan_batches(probe_stop, n, batch_size=batch_size)
    chunk_rows = chunk_rows_for(max(b.n_rows for b in batches), row_nbytes(X_rows))
    record.path, record.chunk_rows = "joblib", chunk_rows
    backend_name = type(_resolved_backend(parallel)).__name__
    record.reasons.append(
        f"joblib backend {backend_name}: {len(batches)} batches of <= "
        f"{batches[0].n_rows} rows"
    )
    shipped = MethodCall(shared, call.method, call.params, label)
    if cross_process:
        copy = "never" if is_readonly_array(X_rows) else "readonly"
    else:
        copy = "always"
    # Like sklearn.utils.parallel, carry the scikit-learn config into
    # workers; warning filters go to worker processes only (see run_batch).
    config = get_config()
    filters = pack_filters() if cross_process else None
    monitor.waiting_for_workers()
    shipped.timeout, shipped.max_retries = call.timeout, call.max_retries
    # multiprocessing's pool loses the task of a worker that dies, and joblib
    # waits for it forever: watch its workers, which mark their batches.
    backend = _resolved_backend(parallel)
    watched = isinstance(backend, MultiprocessingBackend)
    shipped.run_marks = _run_marks() if watched else None
    watch = (
        DeadWorkerWatch(multiprocessing_pool(backend), n_workers, shipped.run_marks)
        if watched
        else None
    )
    try:
        with watch or contextlib.nullcontext():
            outputs = parallel(
                delayed(run_batch)(
                    config,
                    filters,
                    shipped,
                    take_rows(X_rows, b.start, b.stop),
                    (i + 1, b.start, n),  # the probe was batch 0
                    chunk_rows,
                    report,
                    copy,
                )
                for i, b in enumerate(batches)
            )
    except PoolWorkerDied:
        raise _pool_worker_died(
            call.label, watch.dead, shipped.run_marks, batches, n
        ) from None
    except (ModelNotLoadedError, KeyboardInterrupt, GeneratorExit):
        raise  # not the rows' failure (ModelNotLoadedError: one call instead)
    except BaseException as exc:  # a user's BaseException subclass too
        # joblib raises the first failure it meets, and stops the others.
        raise BatchFailed(probe_stop, n, exc) from None
    finally:
        if shipped.run_marks is not None:
            remove_marks(shipped.run_marks)
    worker_warnings = []
    for batch_parts, batch_rows, batch_warnings in outputs:
        parts += batch_parts
        n_rows += batch_rows
        worker_warnings += batch_warnings
    record.add_rows(backend_name, n - probe_stop)
    reissue_warnings(worker_warnings)
    return concat_parts(parts, n_rows, call.per_output)


def _run_marks():
    """Where workers of joblib's multiprocessing pool mark the batch they run
    (None: no folder for it)."""
    try:
        return os.path.join(temp_folder(), f"skbatch-run-{uuid.uuid4().hex}")
    except OSError:
        return None


def _pool_worker_died(label, dead, marks, batches, n) -> WorkerDiedError:
    """The error for a dead worker of joblib's multiprocessing pool (``dead``:
    its pid and exit code), naming the batch it marked, if it did."""
    pid, code = dead
    index_of = {b.start: i + 1 for i, b in enumerate(batches)}
    marked = marked_batch(marks, pid) if marks and pid is not None else None
    if marked is not None:
        running, lost = [(pid, *marked)], [marked]
    else:
        running, lost = [], [(batches[0].start, n)]
    return worker_died(
        label, "{" + exit_code_text(code) + "}", lost, running, index_of.get,
        retries=False,
    )  # fmt: skip


def _run_tail(call, X_rows, probe_stop, n):
    """The probe's last rows run again, followed by as many of the input's
    last rows (on a copy): ``(start, tail rows, output)``, or None.

    The tail, not the head: a method that draws from a generator reseeded on
    every call gives the same first rows whatever follows them, but not the
    same later rows. Rows from the input's end: a method using statistics of
    its input (a mean) gives other outputs with other rows around, even when
    the first rows are all alike (padding, sorted data). If the input's last
    rows fail (or run past the timeout), the probe's first rows stand in for
    them: those rows fail in their own batch, in row order, like any other.
    """
    tail_rows = min(TAIL_ROWS, probe_stop - 1)
    if tail_rows < 2:
        return None
    start = probe_stop - tail_rows
    extra = min(tail_rows, n - probe_stop)
    try:
        output = _tail_output(call, X_rows, start, probe_stop, n - extra, n)
    except Exception:
        extra = min(extra, start)
        output = _tail_output(call, X_rows, start, probe_stop, 0, extra)
    return start, tail_rows, output


def _tail_output(call, X_rows, start, stop, extra_start, extra_stop):
    rows = copy_rows(X_rows, start, stop)
    if extra_stop > extra_start:
        rows = concat_parts(
            [rows, copy_rows(X_rows, extra_start, extra_stop)],
            [stop - start, extra_stop - extra_start], per_output=False,
        )  # fmt: skip
    # Its warnings are not silenced, although its rows run again for real:
    # catch_warnings would swap the filters of the whole process, and drop
    # what worker threads (or the user's) warned meanwhile.
    return run_within(call.timeout, lambda: call(rows))


def _check_row_wise(call, X_rows, tail, first, probe_stop, label):
    """Compare the tail's output with the probe's.

    Raises :class:`NotRowWiseError` if the tail's rows got other outputs than
    within the probe. Also learns, for list outputs, whether they hold one
    array per output: their length then does not follow the row count (the
    probe and the check call have different row counts).
    """
    start, tail_rows, output = tail
    if isinstance(first, list) and isinstance(output, list):
        call.per_output = len(output) == len(first)
    head = head_rows(output, tail_rows, bool(call.per_output))
    if not tail_agrees(head, first, start, probe_stop):
        raise NotRowWiseError(
            f"the output of {label} for a row depends on the other rows given "
            f"with it (rows {start}:{probe_stop} with other rows differ from the "
            f"same rows within rows 0:{probe_stop})"
        )


def _try_first_nonfinite_row(call, X_rows, probe_stop):
    """Call the method on the first row holding NaN or infinity, if any.

    Most estimators reject such rows: they then raise now, before worker
    processes start, rather than in a worker. (Threads and the calling thread
    meet the row in its chunk, which fails the same way.) Runs on a copy.
    """
    if not call.repeatable:
        return  # the row would be computed twice
    bad_row = first_nonfinite_row(X_rows)
    if bad_row is None or bad_row < probe_stop:
        return
    try:
        run_within(call.timeout, lambda: call(copy_rows(X_rows, bad_row, bad_row + 1)))
    except BatchOverran:
        return  # the row's batch will time out, in its turn
    except Exception as exc:
        note_batch(exc, call.label, None, bad_row, bad_row + 1, num_rows(X_rows))
        raise BatchFailed(bad_row, bad_row + 1, exc) from None
