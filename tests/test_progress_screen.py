"""What the user sees: per-worker bars on a real terminal (a pseudo-terminal
read through the ``pyte`` emulator), and sparse whole lines in a log file."""

import os
import re
import select
import subprocess
import sys
import textwrap

import pytest

pyte = pytest.importorskip("pyte")

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from estimators_for_tests import SleepyRegressor
    from sklearn.frozen import FrozenEstimator
    from skbatch import BatchedPredictor, _schedule
    _schedule.CALLER_TAKES_ROWS = {caller_takes_rows}
    X = np.arange(4000.0).reshape(-1, 1)
    model = SleepyRegressor(seconds_per_row=2e-4).fit(X)
    batched = BatchedPredictor(
        FrozenEstimator(model), n_jobs={n_jobs}, backend={backend!r},
        progress="workers", progress_bar_kwargs={options!r},
    )
    assert (batched.predict(X) == X[:, 0]).all()
    print("ROWS", batched.last_call_.rows_by_worker)
    """
)


def _script(tmp_path, n_jobs, backend, caller_takes_rows=True, options=None):
    path = tmp_path / "job.py"
    path.write_text(
        SCRIPT.format(
            tests=TESTS,
            n_jobs=n_jobs,
            backend=backend,
            caller_takes_rows=caller_takes_rows,
            options=options or {},
        )
    )
    return str(path)


def _run_in_terminal(script, columns=120, lines=30, timeout=120):
    """Run ``script`` on a pseudo-terminal; returns the final screen's lines."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of known size
        os.execvpe(
            sys.executable,
            [sys.executable, script],
            {**os.environ, "COLUMNS": str(columns), "LINES": str(lines)},
        )
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            pytest.fail("the job did not finish in time")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    screen = pyte.Screen(columns, lines)
    pyte.ByteStream(screen).feed(output)
    return [line.rstrip() for line in screen.display if line.strip()]


def _count(line):
    done, total = re.search(r"(\d+)/(\d+)", line).groups()
    return int(done), int(total)


pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "win32", reason="needs a pty"
)


@pytest.mark.parametrize(
    "n_jobs, backend, caller_takes_rows, prefix",
    [
        (4, "threading", True, "thread-"),
        (2, "loky", False, "process-"),
    ],
    ids=["threads", "processes"],
)
def test_final_screen_has_one_line_per_worker_at_its_total(
    tmp_path, n_jobs, backend, caller_takes_rows, prefix
):
    script = _script(tmp_path, n_jobs, backend, caller_takes_rows)
    screen = _run_in_terminal(script)
    rows_line = screen.pop()
    assert rows_line.startswith("ROWS")
    rows_by_worker = eval(rows_line[5:])  # the CallReport's own dict
    overall, *workers = screen
    assert overall.startswith("SleepyRegressor.predict: 100%")
    assert _count(overall) == (4000, 4000)
    # One line per worker that did rows, each at its total, no duplicates,
    # no stale half-drawn bars.
    names = [line.split(":")[0].strip() for line in workers]
    assert sorted(names) == sorted(rows_by_worker)
    assert len(set(names)) == len(names)
    assert any(name.startswith(prefix) for name in names)
    for line in workers:
        done, total = _count(line)
        assert done == total == rows_by_worker[line.split(":")[0].strip()]
        assert "100%" in line


def test_leave_false_leaves_nothing_on_the_terminal(tmp_path):
    script = _script(tmp_path, 2, "threading", options={"leave": False})
    screen = _run_in_terminal(script)
    assert len(screen) == 1 and screen[0].startswith("ROWS")


def test_a_log_file_gets_a_few_whole_lines(tmp_path):
    script = _script(tmp_path, 2, "threading")
    log = tmp_path / "job.log"
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, script], stderr=stderr, check=True, timeout=120)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 4, lines
    last = lines[-1]
    assert _count(last) == (4000, 4000)
    # The per-worker counts are on the overall line, each at its total.
    workers = re.findall(r"(caller|thread-\d+) (\d+)/(\d+)", last)
    assert workers and all(done == total for _, done, total in workers)
    assert sum(int(done) for _, done, _ in workers) == 4000
