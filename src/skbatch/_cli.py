"""The ``skbatch`` command."""

from __future__ import annotations

import argparse
import sys


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {text!r}"
        ) from None


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _n_jobs(text: str) -> int:
    value = _whole_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError(
            "0 workers has no meaning; use 1 for serial or -1 for all cores"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skbatch",
        description="Batch inference for scikit-learn, in parallel, with progress.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="batch-predict digits derived from scikit-learn's bundled data",
        description=(
            "Predict a large set of digit images (derived from scikit-learn's "
            "bundled digits) with a StandardScaler -> KNN pipeline and a pure-Python "
            "pipeline, serially and with BatchedPredictor; check that the "
            "predictions are identical and print a speed table."
        ),
    )
    demo.add_argument(
        "--rows", type=_positive_int, default=300_000, help="query rows (300000)"
    )
    demo.add_argument(
        "--python-rows",
        type=_positive_int,
        default=20_000,
        help="rows for the pure-Python pipeline, at most --rows (20000)",
    )
    demo.add_argument(
        "--n-jobs", type=_n_jobs, default=-1, help="workers; -1 means all cores (-1)"
    )
    demo.add_argument(
        "--progress",
        choices=["overall", "workers", "none"],
        default="overall",
        help="progress bars to draw (overall)",
    )
    cache = commands.add_parser(
        "cache",
        help="show or clear a fit cache folder",
        description=(
            "Show what a fit cache folder holds (entries, size), or remove "
            "its skbatch entries. FOLDER is what was given as memory=."
        ),
    )
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("folder", metavar="FOLDER")
    return parser


def _cache_command(action: str, folder: str) -> int:
    from skbatch import FitCache

    cache = FitCache(folder)
    if action == "clear":
        print(f"removed {cache.clear()} entries from {cache.location}")
        return 0
    if not cache.location.is_dir():
        print(f"no fit cache in {folder}: {cache.location} does not exist")
        return 1
    stats = cache.stats()
    print(f"{stats.entries} entries, {stats.total_bytes:,} bytes in {stats.location}")
    return 0


def _version() -> str:
    from skbatch import __version__

    return __version__


def main(argv=None) -> int:
    """Run the ``skbatch`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "cache":
        return _cache_command(args.action, args.folder)
    from skbatch._demo import format_table, run_demo

    progress = False if args.progress == "none" else args.progress
    results = run_demo(
        rows=args.rows,
        python_rows=args.python_rows,
        n_jobs=args.n_jobs,
        progress=progress,
    )
    print()
    print(format_table(results, n_jobs=args.n_jobs))
    no_gain = [r.name for r in results if r.warm_seconds > r.serial_seconds / 1.1]
    if no_gain:
        print(f"\nLittle or no gain from batching: {', '.join(no_gain)}.")
        if "scaler+knn" in no_gain:
            print(
                "KNN already uses every core itself (through OpenMP): more "
                "workers add little."
            )
        print(
            "Any gain shrinks when other programs share the cores; batching "
            "pays off when\nthe model leaves cores idle, as pure-Python "
            "predicts do on an idle machine."
        )
    if not all(r.identical for r in results):
        print("\nBatched predictions differ from serial ones.", file=sys.stderr)
        return 1
    print("\nBatched predictions are identical to serial ones.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
