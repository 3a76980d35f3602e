"""Benchmark the fit cache's data keys: hashing 1 GiB of float64 by content.

Compares ``skbatch._fingerprint.data_digest`` with ``joblib.hash`` (what
``Pipeline(memory=...)`` keys on) and with reading the same data back from a
warm disk cache (``numpy.load`` of a file just written and read), median of
``--repeats`` runs each. Writes ``results/cache_keys.json``.

Run: ``.venv/bin/python benchmarks/cache_keys.py`` (under a minute; needs
about 3 GiB of memory and 1 GiB of temporary disk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

from skbatch._fingerprint import data_digest

HERE = Path(__file__).resolve().parent


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args(argv)
    n = int(args.gib * 2**30 // 8)
    X = np.random.default_rng(0).normal(size=(n // 64, 64))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        np.save(path, X)
        np.load(path)  # in the page cache now
        results = {
            "gib": args.gib,
            "warm read (numpy.load)": _median_seconds(lambda: np.load(path), 3),
            "skbatch data_digest": _median_seconds(lambda: data_digest(X), 3),
            "joblib.hash": _median_seconds(lambda: joblib.hash(X), 3),
        }
    read = results["warm read (numpy.load)"]
    for name in ("skbatch data_digest", "joblib.hash"):
        print(
            f"{name:22s} {results[name]:.3f} s, {results[name] / read:.2f}x a warm read"
        )
    print(f"{'warm read':22s} {read:.3f} s")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cache_keys.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
