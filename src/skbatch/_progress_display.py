"""How one call's bars are drawn, for the kind of output they go to.

* A **terminal**: the overall bar and one stacked bar per worker, redrawn in
  place. tqdm leaves stacked bars out of order when they close (each close
  moves the cursor), so every bar is cleared at the end and their final lines
  are written afresh, in order: the overall line, then one per worker, each at
  its last true count.
* **Plain output** (a file, a CI log, a pipe): a line at most every
  :data:`PLAIN_INTERVAL` seconds and a last one, each a whole line of text
  (tqdm's in-place redraws would pile up as thousands of carriage returns);
  per-worker counts go on the overall line.
* A **notebook** (``tqdm.auto`` picks widgets): one widget per bar, kept.
"""

from __future__ import annotations

import inspect
import re
import sys

#: In plain output, seconds between two lines (unless ``mininterval`` is given).
PLAIN_INTERVAL = 10.0
#: tqdm options skbatch sets itself, with why.
RESERVED_OPTIONS = {
    "iterable": "skbatch counts rows itself",
    "total": "skbatch sets it to the number of rows (or items)",
    "initial": "every bar starts at 0 rows",
}
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def validate_bar_options(options, owner="progress_bar_kwargs") -> dict:
    """Check a dict of tqdm options; returns a copy. Raises with what was
    wrong and what to do."""
    from tqdm import tqdm

    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(
            f"{owner} must be a dict of tqdm options (or None), got "
            f"{type(options).__name__}: pass e.g. {{'desc': 'scoring'}}."
        )
    known = set(inspect.signature(tqdm.__init__).parameters) - {"self", "kwargs"}
    for key in options:
        if key in RESERVED_OPTIONS:
            raise ValueError(f"{owner} may not set {key!r}: {RESERVED_OPTIONS[key]}.")
        if key not in known:
            raise ValueError(
                f"{owner} has an unknown tqdm option {key!r}; valid options: "
                f"{', '.join(sorted(known - set(RESERVED_OPTIONS)))}."
            )
    position = options.get("position", 0)
    if position is not None and (
        not isinstance(position, int) or isinstance(position, bool) or position < 0
    ):
        raise ValueError(
            f"{owner}['position'] is the line of the first bar, a non-negative "
            f"int (the worker bars go below it); got {position!r}."
        )
    return dict(options)


def output_kind(tqdm_class, file) -> str:
    """``"notebook"``, ``"terminal"`` or ``"plain"``."""
    if "notebook" in getattr(tqdm_class, "__module__", ""):
        return "notebook"
    isatty = getattr(file, "isatty", None)
    try:
        return "terminal" if isatty is not None and isatty() else "plain"
    except Exception:  # a closed or odd stream
        return "plain"


class PlainLines:
    """A file for tqdm that turns in-place redraws into whole lines: each
    flushed state becomes one line, written once."""

    def __init__(self, file):
        self._file = file
        self._current = ""
        self._last = None

    def write(self, text):
        for part in re.split(r"[\r\n]", _ESCAPE.sub("", text)):
            if part.strip():
                self._current = part.rstrip()
        return len(text)

    def flush(self):
        if self._current and self._current != self._last:
            self._file.write(self._current + "\n")
            self._last = self._current
        try:
            self._file.flush()
        except Exception:
            pass

    def isatty(self):
        return False


class _Sink:
    """Where a log's bars go with ``leave=False``: a log cannot erase a line,
    so it gets none."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _final_line(bar) -> str:
    """A bar's line with its average rate (tqdm shows a smoothed recent one,
    which at the end is stale)."""
    try:
        return bar.format_meter(**{**bar.format_dict, "rate": None})
    except Exception:  # not a tqdm bar
        return str(bar)


class BarSet:
    """The bars of one call: an overall bar and, with ``per_worker``, one per
    worker (created in the caller's thread: notebook widgets must not be
    displayed from the listener thread).

    A worker's bar counts its finished rows out of the rows it has taken plus
    its share of the rows no worker has taken yet: an estimate while rows are
    left, exactly its own rows once all are taken, and never below what it
    has done.
    """

    def __init__(self, tqdm_class, total, *, desc, per_worker, n_workers, options):
        options = dict(options)
        self.file = options.pop("file", None) or sys.stderr
        self.leave = options.pop("leave", True)
        offset = options.pop("position", 0) or 0
        desc = options.pop("desc", desc)
        unit = options.pop("unit", "rows")
        self.kind = output_kind(tqdm_class, self.file)
        self.per_worker = per_worker
        self.total = total
        self.n_workers = max(1, n_workers)
        self.counts = {}  # worker name -> [done, taken]
        self._taken = 0
        if self.kind == "plain":
            options.setdefault("mininterval", PLAIN_INTERVAL)
            options.setdefault("maxinterval", max(PLAIN_INTERVAL, 10.0))
            self.file = PlainLines(self.file) if self.leave else _Sink()
        # Below other bars (a position offset), tqdm's own way of leaving
        # bars is kept: rewriting final lines would land on the outer bars.
        self._rewrite = self.kind == "terminal" and not offset
        leave = False if self._rewrite or self.kind == "plain" else self.leave
        common = {"file": self.file, "unit": unit, "leave": leave, **options}
        self.overall = tqdm_class(total=total, desc=desc, position=offset, **common)
        self._make_bar = lambda name, position: tqdm_class(
            desc=f"  {name}", total=0, position=position, **common
        )
        self._offset = offset
        self._free = []
        self._bars = {}  # worker name -> bar
        if per_worker and self.kind == "notebook":
            # Widgets must be displayed from the caller's thread, not the
            # listener's: made now, named when their worker reports.
            self._free = [
                self._make_bar(f"worker {i}", offset + 1 + i) for i in range(n_workers)
            ]
            self._free.reverse()
        self._unused = list(self._free)

    def note(self, text: str) -> None:
        """Show ``text`` after the overall count (empty: clear it)."""
        self.overall.set_postfix_str(text, refresh=bool(text))

    def _expected(self, name) -> int:
        done, taken = self.counts[name]
        untaken = max(0, self.total - self._taken)
        return max(done, taken + -(-untaken // self.n_workers))

    def add(self, name: str, done: int, taken: int) -> None:
        """Count ``done`` rows finished and ``taken`` rows taken by worker
        ``name`` (None: counted in the overall bar only)."""
        if done:
            # A backend that reruns a lost worker's rows (dask) reports
            # them twice: the overall count never passes the total.
            self.overall.update(min(done, max(0, self.total - self.overall.n)))
        if name is None or not self.per_worker:
            return
        counts = self.counts.setdefault(name, [0, 0])
        counts[0] += done
        before = counts[1]
        counts[1] = max(counts[1] + taken, counts[0])
        self._taken += counts[1] - before
        if self.kind == "plain":
            self.overall.set_postfix_str(self._worker_summary(), refresh=False)
            return
        bar = self._bars.get(name)
        if bar is None:
            if self.kind == "terminal":
                # On a terminal, a bar appears when its worker first reports
                # (no empty bar for a worker that never starts), one line
                # below the last.
                bar = self._make_bar(name, self._offset + 1 + len(self._bars))
                if hasattr(self.overall, "start_t"):
                    # Its rate counts from the call's start, as the
                    # overall bar's: the worker may have worked a while
                    # before its first report was read.
                    bar.start_t = self.overall.start_t
            elif self._free:
                bar = self._free.pop()
                self._unused.remove(bar)
                bar.set_description(f"  {name}", refresh=False)
            else:
                return  # more workers than widgets: counted in the overall bar
            self._bars[name] = bar
        expected = self._expected(name)
        if bar.total != expected:
            bar.total = expected  # shown with the next redraw
        if done:
            bar.update(done)

    def _worker_summary(self) -> str:
        return ", ".join(
            f"{name} {done}/{taken}" for name, (done, taken) in self._ordered()
        )

    def _ordered(self):
        """Workers in a stable order: the calling thread, then by name."""
        return sorted(
            self.counts.items(), key=lambda item: (item[0] != "caller", item[0])
        )

    def close(self, complete_to=None) -> None:
        """Close every bar, leaving (unless ``leave=False``) one final line
        per bar at its last true count, out of its own rows. ``complete_to``:
        rows done some other way, to show in the overall bar first."""
        if complete_to is not None and self.overall.n < complete_to:
            self.overall.update(complete_to - self.overall.n)
        for name, bar in self._bars.items():
            bar.total = self.counts[name][1]  # its own rows, now all known
        try:
            if self._rewrite:
                final = [_final_line(self.overall)]
                final += [
                    _final_line(self._bars[name])
                    for name, _ in self._ordered()
                    if name in self._bars
                ]
        finally:
            bars = [self.overall, *self._bars.values(), *self._unused]
            for bar in reversed(bars):
                bar.close()
        if self._rewrite and self.leave:
            try:
                self.file.write("".join(line + "\n" for line in final))
                self.file.flush()
            except Exception:
                pass  # the terminal went away; nothing to show it on
        if self.kind == "plain" and self.leave:
            self.overall.set_postfix_str(
                self._worker_summary() if self.per_worker else "", refresh=False
            )
            # The last line, with the final worker counts and the average rate.
            self.file.write(_final_line(self.overall))
            self.file.flush()
