"""The results page: tables, targets, plot, from ``results/latest.json``."""

from __future__ import annotations

import math
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Issue 3's targets, as ratios to serial on 2 cores: (warm, first call).
#: ``tiny`` is a bound on time: skbatch at most 1.1x serial's.
TARGETS = {
    "knn": (1.15, None),
    "logreg": (1.3, None),
    "python": (1.85, 1.3),
    "forest": (1.75, None),
    "tiny": (1 / 1.1, None),
}
PEERS = ["joblib-loky", "joblib-threading", "tqdm_batch", "dask-ml", "mpire"]


def list_table(header, rows) -> list[str]:
    """The lines of an RST list-table: ``header`` and ``rows`` of cells."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *rows]:
        first, *rest = cells
        lines.append(f"   * - {first}")
        lines += [f"     - {cell}" for cell in rest]
    return lines


def _ratio(serial, r, key):
    if not r or key not in r or key not in serial:
        return math.nan
    if key == "warm" and "paired_x" in r:
        return r["paired_x"]  # measured against serial back to back
    return serial[key] / r[key]


def targets_table(results):
    lines = [
        "Targets",
        "-------",
        "",
        "Speed-up of ``skbatch`` (default settings, no progress bar) over "
        "serial, against the targets, and against the best other tool.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - workload",
        "     - warm x",
        "     - target",
        "     - first x",
        "     - target",
        "     - best other tool (warm x)",
        "     - skbatch path (first; later)",
        "     - target met",
        "     - >= best other",
    ]
    for workload, (warm_target, first_target) in TARGETS.items():
        rows = results.get(workload)
        if not rows or "serial" not in rows:
            continue
        serial = rows["serial"]
        mine = rows.get("skbatch", {})
        warm = _ratio(serial, mine, "warm")
        first = _ratio(serial, mine, "first")
        peers = {p: _ratio(serial, rows.get(p), "warm") for p in PEERS if p in rows}
        peers = {p: x for p, x in peers.items() if not math.isnan(x)}
        best = max(peers, key=peers.get) if peers else None
        met = warm >= warm_target and (first_target is None or first >= first_target)
        beats = best is None or warm >= peers[best]
        lines += [
            f"   * - {workload}",
            f"     - {warm:.2f}",
            f"     - >= {warm_target:.2f}",
            f"     - {first:.2f}",
            f"     - {f'>= {first_target:.2f}' if first_target else ''}",
            f"     - {best} ({peers[best]:.2f})" if best else "     -",
            f"     - {mine.get('first_path')}; {', '.join(mine.get('paths', []))}",
            f"     - {'yes' if met else 'no'}",
            f"     - {'yes' if beats else 'no'}",
        ]
    return [*lines, ""]


def workload_table(title, rows, tools):
    serial = rows.get("serial", {})
    lines = [
        title,
        "-" * len(title),
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - tool",
        "     - first s",
        "     - warm s",
        "     - x (warm)",
        "     - x (first)",
        "     - MB",
        "     - same",
    ]
    for tool in tools:
        r = rows.get(tool)
        if r is None:
            continue
        if "error" in r:
            lines += [f"   * - {tool}", f"     - failed: {r['error'][:60]}"]
            lines += ["     -"] * 5
            continue
        lines += [
            f"   * - {tool}",
            f"     - {r['first']:.3f}",
            f"     - {r['warm']:.3f}",
            f"     - {_ratio(serial, r, 'warm'):.2f}",
            f"     - {_ratio(serial, r, 'first'):.2f}",
            f"     - {r['peak_mb']:.0f}",
            f"     - {'yes' if r['same'] else 'NO'}",
        ]
    return [*lines, ""]


def write_docs(payload, workloads, tools):
    info, scale, repeats = payload["machine"], payload["scale"], payload["repeats"]
    results = payload["results"]
    lines = [
        "Benchmarks",
        "==========",
        "",
        "Batch inference with each tool, measured by ``benchmarks/run.py`` "
        f"(scale {scale}, median of {repeats} warm calls, 2 workers), each "
        "workload and tool in a fresh process.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared and noisy: "
        "timings vary by 10-20% from run to run); Python "
        f"{info['python']}, numpy {info['numpy']}, scikit-learn "
        f"{info['scikit-learn']}, joblib {info['joblib']}.",
        "",
        "*first*: the first call in a fresh process (worker start-up included); "
        "*warm*: later calls; *x (warm)*: serial time divided by the tool's, "
        "median over pairs of calls run back to back in the tool's process "
        "(the speed this shared machine gives changes from minute to minute); "
        "*x (first)*: serial's first call divided by the tool's; "
        "*MB*: peak resident memory of all processes; *same*: output equal to "
        "serial's.",
        "",
        *(
            [
                "Rerun later, after a change, all tools again: "
                + ", ".join(f"{w} ({when})" for w, when in payload["rerun"].items())
                + ".",
                "",
            ]
            if payload.get("rerun")
            else []
        ),
        *targets_table(results),
        ".. include:: benchmark_notes.inc",
        "",
    ]
    for workload, (title, _) in workloads.items():
        if results.get(workload):
            lines += workload_table(title, results[workload], tools)
    lines += [
        "",
        ".. image:: _static/benchmarks.png",
        "   :alt: warm speed-up by tool",
        "",
    ]
    if (ROOT / "docs" / "cache_benchmark.inc").exists():
        lines += [
            "Fit cache",
            "---------",
            "",
            "From ``benchmarks/cache_hits.py`` and ``benchmarks/cache_keys.py``, "
            "run separately (a minute each). Target: a hit at least 20x faster "
            "than a fit of 2 s or more; keys well under a warm read of the data.",
            "",
            ".. include:: cache_benchmark.inc",
            "",
        ]
    (ROOT / "docs" / "benchmarks.rst").write_text("\n".join(lines))
    plot(results, tools)


def plot(results, tools):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in results if "serial" in results[w]]
    tools = [t for t in tools if t != "serial"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(tools)
    for i, tool in enumerate(tools):
        ys = [
            _ratio(results[w]["serial"], results[w].get(tool), "warm")
            for w in workloads
        ]
        ys = [0 if math.isnan(y) else y for y in ys]
        ax.bar([x + i * width for x in range(len(workloads))], ys, width, label=tool)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(workloads))], workloads)
    ax.set_ylabel("warm speed-up vs serial")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "_static" / "benchmarks.png", dpi=110)
