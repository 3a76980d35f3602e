"""Fault injection: errors, dead workers, interrupts, timeouts, warnings.

Every scenario runs in a fresh Python process under a hard time limit, with
:class:`estimators_for_tests.FaultyTransformer` misbehaving on chosen global
rows. The scenario prints what it saw as JSON; the test then checks that the
process left nothing behind: no process started from it is alive, no file
of ours remains (model folders and stop files, which go to ``/dev/shm``
normally, go to a folder of the scenario's own through
``SKBATCH_TEMP_FOLDER``). Inside the process, after the
failing call, no skbatch thread or tqdm bar is left (worker processes are left
only where the call succeeded or the failure did not touch them).

Times are never asserted: "prompt" is checked by order (no batch starts after
the call has returned, no more batches start after a failure than there were
workers) and by the hard limit, far below what the work would take.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
#: No scenario may take longer; each one would take minutes if it did not stop.
HARD_LIMIT = 90

PRELUDE = """
import json, os, signal, sys, threading, time, warnings
sys.path.insert(0, {tests!r})
import numpy as np
from sklearn.frozen import FrozenEstimator
from estimators_for_tests import FaultyTransformer
import skbatch
from skbatch import BatchedTransformer, _schedule

def rows(n):
    # Column 0: each row's global index.
    return np.repeat(np.arange(n, dtype=float), 2).reshape(-1, 2)

def children():
    # Processes started from this one, but loky's resource tracker, which
    # lives as long as this process does.
    found = []
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            with open(f"/proc/{{stat}}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{{stat}}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            if "resource_tracker" not in cmdline:
                found.append(int(stat))
    return found

def hygiene(wait=2.0):
    import tqdm
    deadline = time.monotonic() + wait
    while True:
        threads = sorted(
            t.name for t in threading.enumerate() if t.name.startswith("skbatch-")
        )
        if not threads or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return {{
        "threads": threads,
        "bars": len(getattr(tqdm.tqdm, "_instances", ())),
        "children": children(),
    }}

def done(**facts):
    print("RESULT " + json.dumps(facts), flush=True)
"""


def _alive_with(token):
    alive = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in environ and state != "Z":
            alive.append(int(pid))
    return alive


def run_scenario(tmp_path, body, token=None, **values):
    """Run ``body`` after the prelude in a fresh process; return its facts.

    Checks the process ended (before :data:`HARD_LIMIT`), left no process
    behind, and no file of ours in its temporary folder.
    """
    token = token or uuid.uuid4().hex
    script = tmp_path / "scenario.py"
    script.write_text(
        PRELUDE.format(tests=TESTS)
        + textwrap.dedent(body).format(tmp=str(tmp_path), **values)
    )
    # The scenario's files (model files, stop files) go to a folder of its own,
    # by the same code as to /dev/shm: other programs using skbatch on this
    # machine cannot make the check fail.
    temp = tmp_path / "skbatch-temp"
    env = {**os.environ, "SKBATCH_FAULT_TOKEN": token, "SKBATCH_TEMP_FOLDER": str(temp)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True,
        timeout=HARD_LIMIT, env=env, start_new_session=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deadline = time.monotonic() + 10
    while _alive_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive_with(token), "processes outlived the scenario"
    left = sorted(os.listdir(temp)) if temp.exists() else []
    assert not left, f"files of ours were left behind: {left}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    facts = json.loads(lines[-1][len("RESULT ") :])
    facts["stderr"] = proc.stderr
    return facts


def _log(path):
    """The calls a FaultyTransformer logged: (pid, first row, rows, start, end)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [
            (int(pid), int(lo), int(n_rows), float(start), float(end))
            for pid, lo, n_rows, start, end in (line.split() for line in f)
        ]


BACKENDS = ["loky", "threading", "multiprocessing"]

RAISE = """
X = rows(3000)
model = FaultyTransformer("{fault}", rows={bad_rows}, log={tmp!r} + "/log",
                          seconds_per_call=0.01).fit(X)
if {backend!r} == "loky":
    _schedule.CALLER_TAKES_ROWS = False  # the failing rows run in a process
serial = None
try:
    model.transform(X[{first_lo}:{first_hi}])
except Exception as exc:
    serial = (type(exc).__name__, str(exc))
batched = BatchedTransformer(FrozenEstimator(model), n_jobs=2, batch_size=100,
                             backend={backend!r}, progress=True)
try:
    batched.transform(X)
except Exception as exc:
    error = exc
returned = time.time()
done(type=type(error).__name__, message=str(error),
     notes=getattr(error, "__notes__", []), serial=serial,
     cause=repr(error.__cause__)[:2000], returned=returned,
     is_value_error=isinstance(error, ValueError), **hygiene())
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_is_the_estimators_own_with_its_batch(tmp_path, backend):
    facts = run_scenario(
        tmp_path, RAISE, fault="raise", bad_rows=[1650], backend=backend,
        first_lo=1564, first_hi=1664,
    )  # fmt: skip
    # Batches of 100 rows after the 64-row probe: row 1650 is in batch 16.
    assert [facts["type"], facts["message"]] == facts["serial"]
    assert any("batch 16, rows [1564, 1664) of 3000" in n for n in facts["notes"])
    assert facts["threads"] == [] and facts["bars"] == 0
    if backend == "loky":
        assert "ValueError" in facts["cause"]  # the worker's traceback, chained
    # No batch started after the call returned; rows past the failure were
    # mostly never computed.
    calls = _log(tmp_path / "log")
    assert all(start < facts["returned"] for _, _, _, start, _ in calls)
    assert sum(n_rows for _, _, n_rows, _, _ in calls) < 3000


@pytest.mark.parametrize("backend", BACKENDS)
def test_of_several_failures_the_lowest_rows_are_reported(tmp_path, backend):
    # Both rows fail; serially, row 700 is met first, whichever batch a
    # worker finishes first.
    facts = run_scenario(
        tmp_path, RAISE, fault="raise", bad_rows=[2950, 700], backend=backend,
        first_lo=664, first_hi=764,
    )  # fmt: skip
    if backend == "multiprocessing":
        # joblib stops at the first failure it meets, not the lowest.
        assert facts["message"] in ("bad row 700", "bad row 2950")
        return
    assert facts["message"] == "bad row 700"
    assert any("rows [664, 764)" in note for note in facts["notes"])


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_an_exception_that_cannot_travel_keeps_its_name_message_and_traceback(
    tmp_path, backend
):
    body = RAISE.replace(
        "seconds_per_call=0.01", "seconds_per_call=0.01, in_workers_only=True"
    )
    body = body.replace(
        "batched = BatchedTransformer",
        "_schedule.CALLER_TAKES_ROWS = False\nbatched = BatchedTransformer",
    )
    facts = run_scenario(
        tmp_path, body, fault="unpicklable", bad_rows=[1650], backend=backend,
        first_lo=1564, first_hi=1664,
    )  # fmt: skip
    assert facts["type"] == "WorkerError"
    assert facts["message"].startswith("LockedError: bad row 1650")
    assert "Traceback" in facts["message"] and "_misbehave" in facts["message"]
    assert not facts["is_value_error"]
    assert "failed to un-serialize" not in facts["message"]
    assert any("rows [1564, 1664)" in note for note in facts["notes"])


BASE = """
_schedule.CALLER_TAKES_ROWS = False  # the failing rows run in a process
X = rows(3000)
model = FaultyTransformer("base", rows=[1650], in_workers_only=True).fit(X)
batched = BatchedTransformer(FrozenEstimator(model), n_jobs=2, batch_size=100,
                             backend={backend!r})
try:
    batched.transform(X)
except BaseException as exc:
    error = exc
done(type=type(error).__name__, message=str(error), row=getattr(error, "row", None),
     notes=getattr(error, "__notes__", []), cause=str(error.__cause__),
     **hygiene())
"""


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_base_exception_that_cannot_be_rebuilt_arrives_as_itself(tmp_path, backend):
    # Not an Exception, and its pickle cannot rebuild it: it broke loky's
    # result channel ("failed to un-serialize", read as a dead worker) and
    # hung the multiprocessing pool.
    facts = run_scenario(tmp_path, BASE, backend=backend)
    assert (facts["type"], facts["message"]) == ("RowAbort", "row 1650: aborted")
    assert facts["row"] == 1650
    # The worker's traceback, down to the estimator's line, is chained.
    assert "_misbehave" in facts["cause"] and "RowAbort" in facts["cause"]
    if backend == "loky":  # (skbatch's own pool: its workers stay for later)
        assert any("rows [1564, 1664)" in note for note in facts["notes"])
    else:
        assert facts["children"] == []
    assert facts["threads"] == []


DEATH = """
_schedule.CALLER_TAKES_ROWS = False  # rows go to the workers
X = rows(3000)
model = FaultyTransformer({fault!r}, rows=[1650], in_workers_only=True,
                          once_file={once!r}, seconds_per_call=0.01).fit(X)
stream = __import__("io").StringIO()
batched = BatchedTransformer(
    FrozenEstimator(model), n_jobs=3, batch_size=100, backend={backend!r},
    max_retries={retries}, progress=True,
    progress_bar_kwargs={{"file": stream, "mininterval": 0}},
)
facts = {{}}
try:
    out = batched.transform(X)
    facts["same"] = bool((out == X).all())
    facts["retries"] = batched.last_call_.retries
    facts["rows"] = sum(batched.last_call_.rows_by_worker.values())
    facts["bar"] = stream.getvalue().replace("\\r", "\\n").split("\\n")[-2]
except Exception as exc:
    from joblib.externals.loky.process_executor import TerminatedWorkerError
    facts.update(type=type(exc).__name__, message=str(exc),
                 old_handler=isinstance(exc, TerminatedWorkerError))
facts.update(hygiene(wait=0))
model.rows = []  # the next call on the same estimator works
facts["next"] = bool((batched.transform(X) == X).all())
done(**facts)
"""


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
@pytest.mark.parametrize(
    ("fault", "says", "hint"),
    [
        ("kill", "{SIGKILL(-9)}", "out of memory"),
        ("exit", "{EXIT(3)}", "the worker exited"),
        ("segfault", "{SIGSEGV(-11)}", "a crash in native code"),
    ],
    ids=["kill", "exit", "segfault"],
)
def test_a_dead_worker_says_which_rows_and_why(tmp_path, fault, says, hint, backend):
    # multiprocessing's own pool would wait forever for the lost batch.
    facts = run_scenario(
        tmp_path, DEATH, fault=fault, once=None, retries=0, backend=backend
    )
    assert facts["type"] == "WorkerDiedError" and facts["old_handler"]
    assert says in facts["message"] and hint in facts["message"], facts["message"]
    # The batch the dead worker was running, not just every batch in flight.
    assert "died running batch 16 (rows [1564, 1664))" in facts["message"]
    if fault == "kill":
        assert "lower batch_size or n_jobs" in facts["message"]
    assert facts["threads"] == [] and facts["bars"] == 0
    assert facts["next"]


def test_max_retries_reruns_a_batch_whose_worker_died_counting_rows_once(
    tmp_path,
):
    once = str(tmp_path / "fired")
    facts = run_scenario(
        tmp_path, DEATH, fault="kill", once=once, retries=1, backend="loky"
    )
    assert facts["same"] and facts["retries"] >= 1
    assert facts["rows"] == 3000  # rows by worker: each row once
    assert "3000/3000" in facts["bar"]  # the bar: each row once
    assert facts["next"]


RETRY_ERROR = """
X = rows(3000)
model = FaultyTransformer("raise", rows=[1650], once_file={once!r}).fit(X)
stream = __import__("io").StringIO()
batched = BatchedTransformer(
    FrozenEstimator(model), n_jobs=2, batch_size=100, backend={backend!r},
    max_retries=1, progress=True,
    progress_bar_kwargs={{"file": stream, "mininterval": 0}},
)
out = batched.transform(X)
done(same=bool((out == X).all()), retries=batched.last_call_.retries,
     rows=sum(batched.last_call_.rows_by_worker.values()),
     bar=stream.getvalue().replace("\\r", "\\n").split("\\n")[-2], **hygiene())
"""


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_max_retries_reruns_a_failed_batch_counting_rows_once(tmp_path, backend):
    once = str(tmp_path / "fired")
    facts = run_scenario(tmp_path, RETRY_ERROR, once=once, backend=backend)
    assert facts["same"] and facts["retries"] == 1
    assert facts["rows"] == 3000 and "3000/3000" in facts["bar"]


INTERRUPT = """
X = rows(100_000)
model = FaultyTransformer({fault!r}, rows=[{bad_row}], in_workers_only=True,
                          seconds_per_row=2e-4, log={tmp!r} + "/log").fit(X)
if {workers_only}:
    _schedule.CALLER_TAKES_ROWS = False
batched = BatchedTransformer(FrozenEstimator(model), n_jobs={n_jobs},
                             batch_size=20_000, backend={backend!r}, progress=True)
def press_ctrl_c():
    # Once the workers are busy (a call logged by another process, or 2 s).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open({tmp!r} + "/log") as f:
                pids = {{line.split()[0] for line in f}}
        except OSError:
            pids = set()
        if len(pids) > 1 or ({backend!r} != "loky" and pids):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    global pressed
    pressed = time.time()
    if {group}:
        os.killpg(os.getpgid(0), signal.SIGINT)  # a terminal's Ctrl-C
    else:
        os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=press_ctrl_c, daemon=True).start()
try:
    batched.transform(X)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
returned = time.time()
facts = hygiene()
time.sleep(1.0)  # anything still running would log a call meanwhile
done(outcome=outcome, pressed=pressed, returned=returned, **facts)
"""


@pytest.mark.parametrize(
    ("backend", "n_jobs", "fault", "group"),
    [
        ("threading", 2, "none", False),
        ("sequential", 1, "none", False),
        ("loky", 3, "none", False),
        ("loky", 3, "none", True),
        ("loky", 3, "deaf", False),
        ("multiprocessing", 2, "none", False),
    ],
    ids=[
        "threads",
        "calling-thread",
        "processes",
        "processes-group",
        "deaf-worker",
        "multiprocessing",
    ],
)
def test_ctrl_c_stops_every_batch_and_leaves_nothing(
    tmp_path, backend, n_jobs, fault, group
):
    facts = run_scenario(
        tmp_path, INTERRUPT, fault=fault, bad_row=30_000, backend=backend,
        n_jobs=n_jobs, group=group, workers_only=fault == "deaf",
    )  # fmt: skip
    assert facts["outcome"] == "KeyboardInterrupt"
    assert facts["threads"] == [] and facts["bars"] == 0
    assert facts["children"] == []  # workers were killed, not left computing
    calls = _log(tmp_path / "log")
    # No call started after the call returned, and after the press only the
    # sub-chunks already running ended (one per worker at most).
    assert not [c for c in calls if c[3] > facts["returned"]]
    ended_late = [c for c in calls if c[4] > facts["pressed"]]
    assert len(ended_late) <= n_jobs
    # Far from done: 100,000 rows at 0.2 ms each take 20 s serially.
    assert sum(n_rows for _, _, n_rows, _, _ in calls) < 100_000


ITEMS_INTERRUPT = """
log = open({tmp!r} + "/items", "a", buffering=1)

def work(item):  # a side effect per item: a request, a file written
    time.sleep(0.002)
    log.write(f"{{item}} {{time.time()!r}}\\n")
    return item

def press_ctrl_c():
    time.sleep(1.5)
    global pressed
    pressed = time.time()
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=press_ctrl_c, daemon=True).start()
try:
    skbatch.batch_process(list(range(40_000)), work, n_jobs=2,
                          batch_size=10_000, backend={backend!r}, progress=True)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
returned = time.time()
facts = hygiene()
time.sleep(1.0)  # anything still running would process items meanwhile
done(outcome=outcome, pressed=pressed, returned=returned, **facts)
"""


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_ctrl_c_stops_a_plain_function_between_items(tmp_path, backend):
    # A plain function over items has no batches to keep whole: a batch of
    # 10,000 items (20 s here) stops at its next sub-chunk, not at its end,
    # and no item is processed after KeyboardInterrupt reached the caller.
    facts = run_scenario(tmp_path, ITEMS_INTERRUPT, backend=backend)
    assert facts["outcome"] == "KeyboardInterrupt"
    assert facts["threads"] == [] and facts["bars"] == 0
    with open(tmp_path / "items") as f:
        stamps = [float(line.split()[1]) for line in f]
    assert stamps and not [t for t in stamps if t > facts["returned"]]
    assert len(stamps) < 40_000


TIMEOUT = """
X = rows(4000)
model = FaultyTransformer({fault!r}, rows=[{bad_row}], in_workers_only={workers},
                          seconds_per_call={per_call}).fit(X)
if {workers}:
    _schedule.CALLER_TAKES_ROWS = False
batched = BatchedTransformer(FrozenEstimator(model), n_jobs=2, batch_size=500,
                             backend={backend!r}, timeout={timeout})
facts = {{}}
try:
    out = batched.transform(X)
    facts["same"] = bool((out == X).all())
except Exception as exc:
    facts.update(type=type(exc).__name__, message=str(exc),
                 is_timeout=isinstance(exc, TimeoutError))
facts.update(hygiene(wait=0))
done(**facts)
"""


def _named_rows(message):
    """The ``[lo, hi)`` row ranges a message names."""
    return [(int(lo), int(hi)) for lo, hi in re.findall(r"\[(\d+), (\d+)\)", message)]


@pytest.mark.parametrize(
    ("backend", "fault", "workers"),
    [
        ("loky", "sleep", True),
        ("loky", "deaf", True),
        ("threading", "sleep", False),
        ("sequential", "sleep", False),
        ("multiprocessing", "deaf", True),
    ],
    ids=["process", "deaf-process", "thread", "calling-thread", "multiprocessing"],
)
def test_a_stuck_batch_times_out_and_the_process_can_exit(
    tmp_path, backend, fault, workers
):
    facts = run_scenario(
        tmp_path, TIMEOUT, fault=fault, bad_row=2600, workers=workers,
        per_call=0.0, backend=backend, timeout=1.5,
    )  # fmt: skip
    assert facts["type"] == "BatchTimeoutError" and facts["is_timeout"]
    [(lo, hi)] = _named_rows(facts["message"])
    assert lo <= 2600 < hi and hi - lo <= 500  # the stuck row's batch
    assert "of 4000" in facts["message"] and "timeout=1.5 s" in facts["message"]
    if backend in ("loky", "multiprocessing"):
        assert facts["children"] == []  # the stuck worker is gone
    if backend == "loky":
        assert "killed" in facts["message"]
    # Run to the end: the process exited although a thread may be stuck.


def test_a_hang_in_the_rows_each_worker_checks_times_out_too(tmp_path):
    # Every worker process runs the first rows again, to compare its outputs
    # with the caller's; a model that hangs only in a fresh process hangs
    # there, and that must time out like a batch.
    facts = run_scenario(
        tmp_path, TIMEOUT, fault="sleep", bad_row=10, workers=True,
        per_call=0.0, backend="loky", timeout=1.5,
    )  # fmt: skip
    assert facts["type"] == "BatchTimeoutError", facts
    assert "rows [0, 64) of 4000" in facts["message"]
    assert "to check its outputs" in facts["message"]
    assert facts["children"] == []


def test_the_timeout_clock_starts_when_the_batch_starts(tmp_path):
    # Starting the worker processes takes longer than the timeout here; each
    # batch takes a fraction of it. Counted from submission, batches would
    # time out while their worker was still starting.
    facts = run_scenario(
        tmp_path, TIMEOUT, fault="none", bad_row=-1, workers=True,
        per_call=0.2, backend="loky", timeout=1.0,
    )  # fmt: skip
    assert facts.get("same"), facts


WARNINGS = """
X = rows(3000)
model = FaultyTransformer("warn", rows=list(range(0, 3000, 7))).fit(X)
batched = BatchedTransformer(FrozenEstimator(model), n_jobs=2, batch_size=100,
                             backend={backend!r})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = batched.transform(X)
messages = sorted(str(w.message) for w in caught if w.category is RuntimeWarning)
with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    try:
        batched.transform(X)
        raised = None
    except RuntimeWarning as exc:
        raised = str(exc)
done(messages=messages, raised=raised, **hygiene())
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_warnings_from_workers_reach_the_caller_once_per_call(tmp_path, backend):
    facts = run_scenario(tmp_path, WARNINGS, backend=backend)
    # One warning per batch (its first bad row), each once, wherever it ran.
    assert len(facts["messages"]) == len(set(facts["messages"]))
    assert "odd row 0" in facts["messages"]
    assert facts["raised"] is not None and facts["raised"].startswith("odd row")


def test_scenarios_see_processes_they_start(tmp_path):
    # The hygiene check itself must be able to fail: a child left running is
    # seen inside, and outlives the scenario outside.
    body = """
    import subprocess
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert hygiene(wait=0)["children"] == [child.pid]
    done()
    """
    token = uuid.uuid4().hex
    try:
        with pytest.raises(AssertionError, match="outlived"):
            run_scenario(tmp_path, body, token=token)
    finally:
        for pid in _alive_with(token):
            os.kill(pid, signal.SIGKILL)
