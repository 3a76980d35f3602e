"""Benchmark the cost of progress: 20,000 cheap items on 2 workers.

Side by side, each in a fresh process (so first calls start their workers;
imports are done before timing):
plain joblib (``Parallel(n_jobs=2)`` over the items, no bar), tqdm_batch's
``batch_process`` (per-worker bars), and ``skbatch.batch_process`` with
progress off, one bar, and one bar per worker. Reports the first call and the
median of warm calls, the ratio to plain joblib, and skbatch's progress on
against off; writes ``results/progress.json`` and ``docs/progress_benchmark.inc``.

Run: ``.venv/bin/python benchmarks/progress.py`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import list_table

HERE = Path(__file__).resolve().parent
N_ITEMS = 20_000
N_JOBS = 2
TOOLS = [
    "joblib",
    "tqdm_batch",
    "skbatch (progress off)",
    "skbatch (overall)",
    "skbatch (workers)",
]


def cheap(x):
    """About 20 microseconds of pure Python per item."""
    total = 0
    for i in range(200):
        total += (x + i) % 7
    return total


def _call(tool, items):
    if tool == "joblib":
        from joblib import Parallel, delayed

        return Parallel(n_jobs=N_JOBS)(delayed(cheap)(x) for x in items)
    if tool == "tqdm_batch":
        from tqdm_batch import batch_process

        return batch_process(items, cheap, n_workers=N_JOBS, sep_progress=True)
    from skbatch import batch_process

    progress = {"off": False, "overall": "overall", "workers": "workers"}[
        tool.split("(")[1].rstrip(")").replace("progress ", "")
    ]
    return batch_process(items, cheap, n_jobs=N_JOBS, progress=progress)


def child(tool, repeats):
    # Imports are not the tools' cost per call: done before the clock starts.
    import joblib  # noqa: F401
    import tqdm_batch  # noqa: F401

    import skbatch  # noqa: F401

    items = list(range(N_ITEMS))
    expected = [cheap(x) for x in items]
    start = time.perf_counter()
    out = _call(tool, items)
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = _call(tool, items)
        warm.append(time.perf_counter() - start)
    same = [int(v) for v in out] == expected
    return {"first": first, "warm": statistics.median(warm), "same": same}


def run_tool(tool, repeats):
    done = subprocess.run(
        [sys.executable, __file__, "--child", tool, "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_table(results, repeats):
    base = results["joblib"]["warm"]
    off = results["skbatch (progress off)"].get("warm")
    rows = []
    for tool in TOOLS:
        r = results[tool]
        if "error" in r:
            rows.append([tool, f"failed: {r['error']}", "", "", "", ""])
            continue
        vs_off = f"{r['warm'] / off:.3f}" if tool.startswith("skbatch") else ""
        rows.append(
            [
                tool,
                f"{r['first']:.3f}",
                f"{r['warm']:.3f}",
                f"{r['warm'] / base:.2f}",
                vs_off,
                "yes" if r["same"] else "NO",
            ]
        )
    lines = [
        f"{N_ITEMS:,} items of about 20 µs of pure Python each, {N_JOBS} workers, "
        f"each tool in a fresh process; *warm*: median of {repeats} later calls; "
        "*x joblib*: the tool's warm time over plain joblib's (lower is better); "
        "*x off*: over skbatch with progress off.",
        "",
        *list_table(["tool", "first s", "warm s", "x joblib", "x off", "same"], rows),
    ]
    table = HERE.parent / "docs" / "progress_benchmark.inc"
    table.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repeats)))
        return 0
    results = {}
    for tool in TOOLS:
        results[tool] = run_tool(tool, args.repeats)
        print(f"{tool:24s} {results[tool]}", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "progress.json").write_text(
        json.dumps({"repeats": args.repeats, "results": results}, indent=2)
    )
    write_table(results, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
