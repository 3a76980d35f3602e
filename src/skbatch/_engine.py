"""Running a method over the rows of an input: the only module that decides how.

A call runs in steps:

1. The first rows (a *probe*) run in the calling thread, and the last of them
   run once more on their own: both must agree, or the method is not row-wise.
2. *Calibration*: the calling thread goes on with chunks of growing size until
   one takes :data:`CALIBRATE_SECONDS`. Their timings give the cost per row and
   per call, so the rest of the rows can be cut into chunks whose fixed cost is
   small but that still spread evenly over the workers.
3. *Choice* (only when no backend was asked for): two chunks run at once, in
   the calling thread and a worker thread. If that is faster than one thread,
   the model releases the GIL: threads. If not, and the CPU load shows one
   busy core (a GIL-bound, pure-Python model) and enough work is left to pay
   for worker processes, processes. Otherwise the calling thread goes on alone.
4. The rest of the rows go to the workers chosen (see :mod:`skbatch._schedule`),
   the calling thread being one of them. Workers run under a thread budget
   (see :mod:`skbatch._threadlimits`).
5. Outputs come back in row order and are joined once by :mod:`skbatch._concat`.

Every step's rows are real output rows: measuring wastes no work. If any step
fails, or the method turns out not to be row-wise, the estimator is called once
on the whole input instead. Bad input then raises exactly the error the
estimator raises on its own (for most bad input, before any worker starts), and
a method that cannot be batched still returns its own result. What a call did
and why is kept in a :class:`skbatch._plan.CallReport`.
"""

from __future__ import annotations

import contextlib
import time
import warnings

from joblib import Parallel, delayed, parallel_config
from joblib.externals.loky.process_executor import TerminatedWorkerError
from sklearn import get_config

from skbatch._batching import chunk_rows_for, plan_batches
from skbatch._concat import check_rows, concat_parts, tail_agrees
from skbatch._errors import NotRowWiseError, SerialFallbackWarning
from skbatch._indexing import (
    copy_rows,
    first_nonfinite_row,
    is_readonly_array,
    make_sliceable,
    num_rows,
    row_nbytes,
    take_rows,
)
from skbatch._plan import CallReport, resolve_workers
from skbatch._pool import (
    expected_start_seconds,
    get_executor,
    note_start_seconds,
    publish_model,
    release_model,
    workers_alive,
)
from skbatch._progress import ProgressMonitor
from skbatch._schedule import (
    Outputs,
    ProcessRun,
    RowCursor,
    compute_chunk,
    measure_threads,
    run_in_caller,
    run_in_threads,
    run_range,
)
from skbatch._threadlimits import inner_threads, limit_process_pools
from skbatch._worker import (
    MemmapRows,
    MethodCall,
    SharedModel,
    add_note,
    pack_filters,
    reissue_warnings,
    run_batch,
)

#: Rows run in the calling thread before anything is dispatched. Inputs with
#: fewer than twice this many rows are one call, like serial.
PROBE_ROWS = 64
#: The probe's last rows run a second time on their own, to check row-wise-ness.
TAIL_ROWS = 31
#: Without an explicit ``batch_size``, rows whose estimated serial time is below
#: this stay in the calling thread: dispatching to workers would cost more.
MIN_PARALLEL_SECONDS = 0.2


# ------------------------------------------------------------------ settings
#: Rows run in the calling thread before anything else. Inputs with fewer than
#: twice this many rows are one call, like serial.
PROBE_ROWS = 64
#: The probe's last rows run a second time on their own, to check row-wise-ness.
TAIL_ROWS = 31
#: Calibration stops at the first chunk (after two) that takes this long ...
CALIBRATE_SECONDS = 0.02
#: ... or once this share of the input is done.
CALIBRATE_SHARE = 0.05
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
#: 1,400-row chunks made a 200-tree forest 2x slower than serial).
MAX_CHUNK_SECONDS = 0.5
OVERHEAD_FACTOR = 40
#: Chunks shrink towards the end down to this much serial time (or ten times a
#: call's fixed cost, if more), so that workers finish together.
MIN_CHUNK_SECONDS = 0.02
#: Chunks for workers hold at most this many bytes of input rows. Larger ones
#: make every call allocate fresh memory for its intermediates, and page faults
#: serialize threads (a scaler + logistic regression: 8 MiB chunks 2.1x serial,
#: 32 MiB 1.6x); smaller ones make a forest's threads queue for the GIL
#: between trees (16 MiB: 1.85x, 4 MiB: 1.6x).
MAX_WORKER_CHUNK_BYTES = 16 * 2**20
#: Each of the two chunks of the thread trial aims at this much serial time.
TRIAL_SECONDS = 0.03
#: Two threads this much faster than one scale well: threads, no question.
THREADS_SCALE = 1.5
#: Two threads must be at least this much faster than one to be chosen.
THREAD_GAIN = 1.1
#: A CPU load (CPU time over wall time) below this means one busy core.
ONE_CORE_LOAD = 1.5
#: Two threads that hold the GIL in turn keep one core busy: a load above this
#: (a forest whose threads queue for the GIL between trees reaches 1.4) is not
#: a pure-Python model, and worker processes would cost more than they give.
GIL_LOAD = 1.2
#: The machine must leave at least this many cores idle during the thread
#: trial for a one-core result to mean "GIL-bound" rather than "cores taken".
IDLE_CORE = 0.5
#: Worker processes must have at least this much serial work left when they are
#: already running; when they must start first, the start time on top.
MIN_PROCESS_SECONDS = 0.3


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
    """
    started = time.perf_counter()
    label = label or f"{type(model).__name__}.{method}"
    call = MethodCall(model, method, params, label)
    n = num_rows(X)
    kind, n_workers = resolve_workers(n_jobs, backend)
    if record is None:
        record = CallReport(label, n)
    record.n_rows, record.n_workers = n, n_workers
    try:
        return _run(call, X, n, kind, n_workers, backend, batch_size, progress, record)
    finally:
        record.seconds = time.perf_counter() - started
        if verbose:
            print(record.summary())


def _run(call, X, n, kind, n_workers, backend, batch_size, progress, record):
    if not n:
        # None (not splittable) or 0 rows: the estimator decides, serially.
        record.reasons.append("input not split into rows: one plain call")
        return call(X)
    if progress is None and (n_workers == 1 or n < 2 * PROBE_ROWS):
        # Nothing to split or show: exactly the serial call, at its cost.
        why = "one worker" if n_workers == 1 else f"under {2 * PROBE_ROWS} rows"
        record.reasons.append(f"{why}: one plain call")
        return call(X)

    X_rows = make_sliceable(X)
    parallel, cross_process = None, False
    if kind == "joblib" and n_workers > 1:
        with _backend_context(backend):
            parallel = Parallel(n_jobs=n_workers)
        cross_process = not _uses_threads(parallel)
    with ProgressMonitor(
        n,
        mode=progress,
        n_workers=n_workers,
        cross_process=cross_process,
        caller_works=kind != "joblib" and n_workers > 1,
        desc=call.label,
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
        except (TerminatedWorkerError, MemoryError):
            raise  # a worker died or memory ran out: one bigger call won't help
        except NotRowWiseError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        record.path = "whole-input fallback"
        record.reasons.append(f"one call on the whole input instead: {reason}")
        try:
            result = call(X)
        except Exception as exc:
            add_note(exc, "(skbatch: raised by one call on the whole input)")
            raise
        monitor.finish()
    warnings.warn(
        SerialFallbackWarning(
            f"{call.label} ran as one call on the whole input, not in batches: "
            f"{reason}. The result is the estimator's own."
        ),
        stacklevel=5,  # the user's line calling predict, transform, ...
    )
    return result


def _probe(call, X_rows, n, n_workers, report, record):
    """Run the probe rows in the calling thread.

    Returns ``(probe_stop, output, seconds)``: where the probe ended, its
    output, and how long its (main) call took.
    """
    if n_workers == 1:
        probe_stop = min(n, chunk_rows_for(n, row_nbytes(X_rows)))
    else:
        probe_stop = min(n, PROBE_ROWS)
    if n - probe_stop < PROBE_ROWS:
        probe_stop = n  # no tiny remainder: small inputs are one call
    tail = _run_tail(call, X_rows, probe_stop) if probe_stop < n else None
    rows = copy_rows(X_rows, 0, probe_stop)
    started = time.perf_counter()
    first = call(rows)
    seconds = time.perf_counter() - started
    check_rows(first, probe_stop, call.label)
    if tail is not None:
        _check_row_wise(call, X_rows, tail, first, probe_stop, call.label)
    record.add_rows("caller", probe_stop)
    report(probe_stop)
    return probe_stop, first, seconds


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


class _Costs:
    """Serial cost of a chunk of rows, ``per_call + per_row * rows``, fitted on
    the calibration chunks (the two largest)."""

    def __init__(self, timings):
        (rows_a, wall_a), (rows_b, wall_b) = timings[-2], timings[-1]
        average = wall_b / rows_b
        slope = (wall_b - wall_a) / (rows_b - rows_a) if rows_b > rows_a else average
        # Timing noise can make the slope absurd. Within [average / 2, average]
        # the line still passes through the largest chunk, and the work left
        # is never estimated at less than half its average cost.
        self.per_row = min(max(slope, 0.5 * average), average)
        self.per_call = wall_b - self.per_row * rows_b

    def seconds(self, rows: int) -> float:
        return self.per_call + self.per_row * rows

    def rows_for(self, seconds: float) -> int:
        return max(1, int(seconds / max(self.per_row, 1e-12)))


def _run_measured(call, X_rows, n, kind, n_workers, batch_size, report, record):
    outputs = Outputs()
    clock = _PhaseClock(record)
    probe_stop, first, probe_seconds = _probe(
        call, X_rows, n, n_workers, report, record
    )
    clock.lap("probe")
    outputs.add(0, first, probe_stop)
    position = probe_stop
    if position < n and (n_workers == 1 or kind == "serial"):
        record.path = "in-process"
        record.reasons.append(
            "one worker" if n_workers == 1 else "sequential backend asked for"
        )
        chunk = batch_size or chunk_rows_for(n - position, row_nbytes(X_rows))
        cursor = RowCursor(position, n, n_workers=1, fixed_rows=chunk)
        run_in_caller(call, X_rows, cursor, outputs, report, record)
        position = n
    if position >= n:
        return _joined(outputs, [])

    # Calibration: growing chunks in the calling thread, under the thread
    # budget the workers will have. Under its own defaults a model's native
    # pool (OpenBLAS, OpenMP) would keep spinning on idle cores for up to a
    # tenth of a second after each call, slowing the workers that follow.
    inner = inner_threads(n_workers)
    budget = contextlib.ExitStack()
    budget.enter_context(limit_process_pools(inner))
    try:
        return _calibrate_and_run(
            call, X_rows, n, kind, n_workers, batch_size, report, record,
            outputs, clock, probe_stop, probe_seconds, inner, budget,
        )  # fmt: skip
    finally:
        budget.close()


def _calibrate_and_run(
    call, X_rows, n, kind, n_workers, batch_size, report, record,
    outputs, clock, probe_stop, probe_seconds, inner, budget,
):  # fmt: skip
    position = probe_stop
    max_bytes_rows = _rows_within_bytes(X_rows, n)
    # The probe's call counts as the first, smallest calibration point.
    timings, loads = [(probe_stop, probe_seconds)], []
    size = 2 * probe_stop
    while position < n:
        size = min(size, max_bytes_rows, n - position)
        if n - position - size < PROBE_ROWS:
            size = n - position
        wall, cpu = _timed(
            compute_chunk, call, X_rows, position, position + size, outputs, report,
            record, "caller",
        )  # fmt: skip
        timings.append((size, wall))
        loads.append(cpu / max(wall, 1e-9))
        position += size
        enough = wall >= CALIBRATE_SECONDS or position >= CALIBRATE_SHARE * n
        if enough and len(timings) >= 2:
            break
        size *= 2
    if position >= n:
        record.path = "in-process"
        record.reasons.append("all rows done while measuring")
        return _joined(outputs, [])
    record.inner_threads = inner
    clock.lap("calibration")
    costs = _Costs(timings if len(timings) > 1 else timings * 2)
    record.serial_rows_per_second = 1.0 / max(costs.per_row, 1e-12)
    record.serial_cpu_load = round(loads[-1], 2)
    rest = n - position
    estimate = costs.seconds(rest)
    chunk_rows = min(
        max_bytes_rows,
        max(
            costs.rows_for(MAX_CHUNK_SECONDS),
            costs.rows_for(OVERHEAD_FACTOR * costs.per_call),
        ),
        -(-rest // (2 * n_workers)),
    )
    if batch_size is None and estimate < MIN_PARALLEL_SECONDS:
        record.path = "in-process"
        record.reasons.append(
            f"the other {rest} rows would take about {estimate:.3f} s serially: "
            "too little to share"
        )
        budget.close()  # the calling thread alone: the model's own defaults
        record.inner_threads = None
        cursor = RowCursor(position, n, n_workers=1, fixed_rows=chunk_rows)
        run_in_caller(call, X_rows, cursor, outputs, report, record)
        return _joined(outputs, [])

    config = get_config()
    path = {"threads": "threads", "processes": "processes"}.get(kind)
    if path is not None:
        record.reasons.append(f"backend asked for: {path}")
    else:
        # The thread trial (see _thread_trial), on enough rows that starting
        # a thread and setting its limits, and a call's fixed cost, do not
        # drown the comparison.
        trial_rows = min(
            max(costs.rows_for(TRIAL_SECONDS), costs.rows_for(10 * costs.per_call)),
            rest // 8,
        )
        if trial_rows >= 1 and rest - 6 * trial_rows >= PROBE_ROWS:
            path = None
            for attempt in range(2):
                speedup, pair_load, idle_cores = _thread_trial(
                    call, X_rows, position, trial_rows, chunk_rows, outputs,
                    report, record, inner, config,
                )  # fmt: skip
                position += 3 * trial_rows
                estimate = costs.seconds(n - position)
                record.thread_speedup = round(speedup, 2)
                if attempt:
                    record.reasons.pop()  # the first trial's verdict
                choice = _choose(
                    record, speedup, pair_load, idle_cores, estimate, n_workers
                )
                # Worker processes cost a model transfer and memory: a noisy
                # trial must not send a model that releases the GIL (a large
                # forest) there. They need two trials that agree.
                if choice != "processes" or path == "processes":
                    break
                path = choice
            path = choice
        else:
            record.reasons.append("too few rows to measure threads")
            path = "threads"

    clock.lap("trial")
    if batch_size is not None:
        cursor = RowCursor(position, n, n_workers=n_workers, fixed_rows=batch_size)
        chunk_rows = batch_size
    else:
        cursor = RowCursor(
            position,
            n,
            n_workers=n_workers,
            # The last, smallest chunks keep workers finishing together.
            min_rows=min(
                chunk_rows,
                max(
                    PROBE_ROWS,
                    costs.rows_for(max(MIN_CHUNK_SECONDS, 10 * costs.per_call)),
                ),
            ),
            max_rows=chunk_rows,
        )
    record.chunk_rows = chunk_rows
    worker_warnings = []
    if path == "threads":
        record.path, record.inner_threads = "threads", inner
        run_in_threads(
            call, X_rows, cursor, outputs, report, record,
            n_threads=n_workers, inner=inner, config=config,
        )  # fmt: skip
    elif path == "processes":
        worker_warnings = _run_processes(
            call, X_rows, cursor, outputs, report, record, n_workers, inner, config
        )
    else:
        budget.close()  # the calling thread alone: the model's own defaults
        record.path, record.inner_threads = "in-process", None
        run_in_caller(call, X_rows, cursor, outputs, report, record)
    clock.lap("rest")
    joined = _joined(outputs, worker_warnings)
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


def _thread_trial(
    call, X_rows, position, trial_rows, chunk_rows, outputs, report, record,
    inner, config,
):  # fmt: skip
    """Time ``trial_rows`` rows alone, then twice as many on two threads.

    Timing both directly keeps a call's fixed cost and the noise of fitted
    costs out of the comparison. Returns ``(speedup, pair_load)``.
    """
    alone, alone_cpu = _timed(
        run_range, call, X_rows, position, position + trial_rows,
        chunk_rows, outputs, report, record, "caller",
    )  # fmt: skip
    position += trial_rows
    claims = [
        (position, position + trial_rows),
        (position + trial_rows, position + 2 * trial_rows),
    ]
    wall, cpu, idle = measure_threads(
        call, X_rows, claims, chunk_rows, outputs, report, record,
        inner=inner, config=config,
    )  # fmt: skip
    speedup = 2 * alone / max(wall, 1e-9)
    pair_load = cpu / max(wall, 1e-9)
    # Cores the machine left idle meanwhile: two threads that keep one core
    # busy while another sits idle take turns holding the GIL; with no core
    # idle, other programs hold them, and worker processes would not help.
    idle_cores = None if idle is None else idle / max(wall, 1e-9)
    alone_load = alone_cpu / max(alone, 1e-9)
    if alone_load >= 0.5:
        # CPU-bound: two threads cannot run faster than the cores they kept
        # busy; this bounds a speed-up inflated by a slow (noisy) single run.
        speedup = min(speedup, pair_load / alone_load)
    return speedup, pair_load, idle_cores


def _choose(record, speedup, pair_load, idle_cores, estimate, n_workers):
    """The path for the rest of the rows, from the thread trial.

    Two threads that scale well: threads. Two threads that keep one core busy
    between them and gain little take turns holding the GIL: worker processes,
    if enough work is left to pay for them. A small gain otherwise (a
    memory-bound model): still threads; none: the calling thread alone.
    """
    reasons = record.reasons
    if speedup >= THREADS_SCALE:
        reasons.append(f"two threads ran {speedup:.2f}x as fast as one: threads")
        return "threads"
    holds_gil = ONE_CORE_LOAD / 3 <= pair_load < GIL_LOAD and speedup < 1.3
    if holds_gil and idle_cores is not None and idle_cores < IDLE_CORE:
        reasons.append(
            f"two threads kept {pair_load:.1f} cores busy and ran {speedup:.2f}x "
            f"as fast as one, but other programs kept the other cores busy "
            f"({idle_cores:.1f} idle): calling thread alone"
        )
        return "in-process"
    if holds_gil:
        running = workers_alive() >= n_workers - 1
        needed = MIN_PROCESS_SECONDS + (0 if running else expected_start_seconds())
        gil = (
            f"two threads kept {pair_load:.1f} cores busy and ran {speedup:.2f}x "
            "as fast as one while a core sat idle: the model holds the GIL"
        )
        if estimate >= needed:
            reasons.append(
                f"{gil} and about {estimate:.2f} s of work is left: worker processes"
                + ("" if running else " (starting now; the calling thread works)")
            )
            return "processes"
        reasons.append(
            f"{gil}, but the {estimate:.2f} s of work left would be over before "
            f"worker processes help ({'running' if running else 'not started'}): "
            "calling thread alone"
        )
        return "in-process"
    if speedup >= THREAD_GAIN:
        reasons.append(f"two threads ran {speedup:.2f}x as fast as one: threads")
        return "threads"
    reasons.append(
        f"two threads kept {pair_load:.1f} cores busy but ran only {speedup:.2f}x "
        "as fast as one (memory-bound?): calling thread alone"
    )
    return "in-process"


def _run_processes(
    call, X_rows, cursor, outputs, report, record, n_workers, inner, config
):
    _try_first_nonfinite_row(call, X_rows, cursor.position)
    try:
        ref = publish_model(call.model)
    except Exception as exc:
        record.path = "in-process"
        record.reasons.append(
            f"the model cannot be sent to worker processes "
            f"({type(exc).__name__}: {exc}): calling thread alone"
        )
        run_in_caller(call, X_rows, cursor, outputs, report, record)
        return []
    record.model_pickles += 1
    record.path, record.inner_threads = "processes", inner
    memmap = MemmapRows.describe(X_rows)
    record.rows_transfer = "memmap" if memmap is not None else "pickled"
    probe_stop = min(PROBE_ROWS, cursor.position)
    probe = (copy_rows(X_rows, 0, probe_stop), outputs.get(0))
    cold = workers_alive() < n_workers - 1
    try:
        run = ProcessRun(
            call, X_rows, cursor, outputs, report, record,
            executor=get_executor(n_workers - 1), n_processes=n_workers - 1,
            inner=inner, ref=ref, memmap=memmap, config=config,
            filters=pack_filters(), probe=probe,
        ).run()  # fmt: skip
    finally:
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
    return run.warnings


def _rows_within_bytes(X_rows, n) -> int:
    nbytes = row_nbytes(X_rows)
    if not nbytes:
        return n
    return max(PROBE_ROWS, MAX_WORKER_CHUNK_BYTES // nbytes)


def _joined(outputs, worker_warnings):
    reissue_warnings(worker_warnings)
    parts, n_rows = outputs.in_order()
    return concat_parts(parts, n_rows)


def _run_joblib(call, X_rows, n, parallel, cross_process, batch_size, monitor, record):
    """Any other joblib backend: one batch per worker (or of ``batch_size``)
    through ``joblib.Parallel``, after the probe."""
    label = call.label
    n_workers = parallel.n_jobs
    report = monitor.reporter
    probe_stop, first, _ = _probe(call, X_rows, n, n_workers, report, record)
    parts, n_rows = [first], [probe_stop]
    _try_first_nonfinite_row(call, X_rows, probe_stop)
    if probe_stop == n:
        record.path = "in-process"
        return concat_parts(parts, n_rows)
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
    shipped = MethodCall(SharedModel(call.model), call.method, call.params, label)
    if cross_process:
        copy = "never" if is_readonly_array(X_rows) else "readonly"
        record.model_pickles += 1
    else:
        copy = "always"
    # Like sklearn.utils.parallel, carry the scikit-learn config into
    # workers; warning filters go to worker processes only (see run_batch).
    config = get_config()
    filters = pack_filters() if cross_process else None
    monitor.waiting_for_workers()
    outputs = parallel(
        delayed(run_batch)(
            config,
            filters,
            shipped,
            take_rows(X_rows, b.start, b.stop),
            b.start,
            chunk_rows,
            report,
            copy,
        )
        for b in batches
    )
    worker_warnings = []
    for batch_parts, batch_rows, batch_warnings in outputs:
        parts += batch_parts
        n_rows += batch_rows
        worker_warnings += batch_warnings
    record.add_rows(backend_name, n - probe_stop)
    reissue_warnings(worker_warnings)
    return concat_parts(parts, n_rows)


def _run_tail(call, X_rows, probe_stop):
    """Output for the probe's last rows run alone (on a copy), or None.

    The tail, not the head: a method that draws from a generator reseeded on
    every call, or uses statistics of its input, gives the same first rows
    whatever follows them, but not the same later rows.
    """
    tail_rows = min(TAIL_ROWS, probe_stop - 1)
    if tail_rows < 2:
        return None
    start = probe_stop - tail_rows
    return start, call(copy_rows(X_rows, start, probe_stop))


def _check_row_wise(call, X_rows, tail, first, probe_stop, label):
    """Compare the tail's output with the probe's.

    Raises :class:`NotRowWiseError` if the tail's output differs from the same
    rows' output within the probe. The tail ran on a copy of its rows.
    """
    start, tail_output = tail
    if not tail_agrees(tail_output, first, start, probe_stop):
        raise NotRowWiseError(
            f"the output of {label} for a row depends on the other rows given "
            f"with it (rows {start}:{probe_stop} alone differ from the same rows "
            f"within rows 0:{probe_stop})"
        )


def _try_first_nonfinite_row(call, X_rows, probe_stop):
    """Call the method on the first row holding NaN or infinity, if any.

    Most estimators reject such rows: they then raise now, before worker
    processes start, rather than in a worker. (Threads and the calling thread
    meet the row in its chunk, which fails the same way.) Runs on a copy.
    """
    bad_row = first_nonfinite_row(X_rows)
    if bad_row is not None and bad_row >= probe_stop:
        call(copy_rows(X_rows, bad_row, bad_row + 1))
