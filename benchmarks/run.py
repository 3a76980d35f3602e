"""Benchmark batch inference: serial, joblib, tqdm_batch, dask-ml, mpire, skbatch.

Every (workload, tool) pair runs in a fresh Python process, so the first call
is a true cold start (worker start-up included) and memory is that pair's own.
Each process times the first call, then ``--repeats`` warm calls (median), and
samples the resident memory of itself and all its child processes.

    python -m pip install -e . -r benchmarks/requirements.txt
    python benchmarks/run.py            # full sizes (about 15 minutes)
    python benchmarks/run.py --quick    # a tenth of the rows, for a smoke run

Results: ``benchmarks/results/latest.json`` and, unless ``--no-docs``,
``docs/benchmarks.md`` with ``docs/_static/benchmarks.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


# ------------------------------------------------------------- child process
class PeakMemory:
    """Samples the summed RSS of this process and its descendants."""

    def __init__(self, interval=0.01):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _rss(self):
        total = 0
        for proc in [self._process, *self._process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except Exception:
                pass
        return total

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self._interval)

    def __enter__(self):
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def child(workload, tool, scale, repeats, reference):
    import numpy as np
    import tools
    from tools import TOOLS
    from workloads import WORKLOADS

    model, X, method = WORKLOADS[workload][1](scale)
    run = TOOLS[tool]
    with PeakMemory() as memory:
        start = time.perf_counter()
        out = run(model, X, method)
        first = time.perf_counter() - start
        # Calls of a few milliseconds need many runs for a stable median.
        runs = repeats if first > 0.05 else max(repeats, 200)
        warm = []
        for _ in range(runs):
            start = time.perf_counter()
            run(model, X, method)
            warm.append(time.perf_counter() - start)
    # The speed-up is measured in pairs, serial then the tool, back to back:
    # on a shared machine the speed available changes from minute to minute,
    # and a ratio of times taken minutes apart would measure that change.
    ratios = []
    if tool != "serial":
        serial = TOOLS["serial"]
        for _ in range(runs):
            start = time.perf_counter()
            serial(model, X, method)
            serial_seconds = time.perf_counter() - start
            start = time.perf_counter()
            run(model, X, method)
            ratios.append(serial_seconds / (time.perf_counter() - start))
    if reference is None:
        same = True
    else:
        expected = np.load(reference)
        same = bool(
            out.shape == expected.shape
            and (
                np.allclose(out, expected)
                if np.issubdtype(out.dtype, np.floating)
                else np.array_equal(out, expected)
            )
        )
    return {
        "rows": len(X),
        "first": first,
        "warm": statistics.median(warm),
        "peak_mb": memory.peak / 2**20,
        "paired_x": statistics.median(ratios) if ratios else 1.0,
        "same": same,
        "paths": sorted(set(tools.SKBATCH_PATHS[1:])),
        "first_path": tools.SKBATCH_PATHS[0] if tools.SKBATCH_PATHS else None,
    }, out


# ------------------------------------------------------------ parent process
def machine():
    import joblib
    import numpy
    import sklearn

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }


#: A pair that has not finished after this many seconds is hung (mpire forks
#: after OpenMP ran in the parent, which can deadlock the child); the slowest
#: pair that finishes takes about a minute on 2 cores.
PAIR_TIMEOUT = 240


def run_pair(workload, tool, scale, repeats, reference, save_to=None):
    command = [
        sys.executable,
        __file__,
        "--child",
        workload,
        tool,
        "--scale",
        str(scale),
        "--repeats",
        str(repeats),
    ]
    if reference:
        command += ["--reference", reference]
    if save_to:
        command += ["--save", save_to]
    # Own session, so that a hung tool's worker processes go with it.
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=PAIR_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"error": f"hung: no result after {PAIR_TIMEOUT} s, killed"}
    except BaseException:  # Ctrl-C: the tool's workers go too
        os.killpg(process.pid, signal.SIGKILL)
        raise
    if process.returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        return {"error": last or f"exit status {process.returncode}"}
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated workloads")
    parser.add_argument("--tools", default="", help="comma-separated tools")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only (all tools): replace those workloads in latest.json",
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the docs from latest.json"
    )
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "TOOL"))
    parser.add_argument("--reference")
    parser.add_argument("--save")
    args = parser.parse_args(argv)
    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)

    if args.child:
        import numpy as np

        result, out = child(*args.child, scale, args.repeats, args.reference)
        if args.save:
            np.save(args.save, out)
        print(json.dumps(result))
        return 0

    from report import write_docs
    from tools import TOOLS
    from workloads import WORKLOADS

    if args.render:
        payload = json.loads((HERE / "results" / "latest.json").read_text())
        write_docs(payload, WORKLOADS, TOOLS)
        return 0

    workloads = args.only.split(",") if args.only else list(WORKLOADS)
    tools = args.tools.split(",") if args.tools else list(TOOLS)
    results, info = {}, machine()
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            results[workload] = {}
            reference = os.path.join(tmp, f"{workload}.npy")
            for tool in ["serial", *[t for t in tools if t != "serial"]]:
                r = run_pair(
                    workload,
                    tool,
                    scale,
                    args.repeats,
                    None if tool == "serial" else reference,
                    reference if tool == "serial" else None,
                )
                results[workload][tool] = r
                shown = {
                    k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()
                }
                print(f"{workload:8s} {tool:18s} {shown}", flush=True)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    partial = bool(args.only or args.tools)
    payload = {
        "machine": info,
        "scale": scale,
        "repeats": args.repeats,
        "results": results,
    }
    if args.merge:
        # Whole workloads (every tool, paired with its own serial run) replace
        # theirs in the full results; each workload records when it ran.
        if args.tools or not args.only:
            parser.error("--merge takes --only workloads with every tool")
        full = json.loads((out_dir / "latest.json").read_text())
        if full["scale"] != scale or full["repeats"] != args.repeats:
            parser.error("--merge needs the scale and repeats of latest.json")
        full["results"].update(results)
        full.setdefault("rerun", {}).update(
            {w: time.strftime("%Y-%m-%d %H:%M") for w in workloads}
        )
        payload, partial = full, False
    # A partial run (--only, --tools) never replaces the full results.
    name = "partial.json" if partial else "latest.json"
    (out_dir / name).write_text(json.dumps(payload, indent=2))
    if not args.no_docs and not partial:
        write_docs(payload, WORKLOADS, TOOLS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
