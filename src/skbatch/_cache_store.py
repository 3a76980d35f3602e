"""Fitted models on disk, one file per key: written atomically, verified on
load, evicted least recently used first.

An entry is a header (magic, payload length, XXH3-128 digest of the payload)
and the pickled payload. It is written to a temporary file in the same
folder and renamed over the final name, so a reader sees either no entry or a
whole one, and two processes storing the same key both leave a valid entry.
An entry whose bytes do not match its digest (a truncated write, a flipped
bit, another program's file) is reported, removed and treated as missing:
nothing corrupted is ever returned. A location that cannot be written is
reported once, naming the path and the reason; fits go on uncached.

Payloads are pickled with cloudpickle (lambdas, classes defined in
functions), except that classes and functions of ``__main__`` (a script, a
notebook) go by name, and its lambdas are rebound to the live ``__main__`` on
load: a model from the cache is the current cell's class, and reads the same
globals a freshly fitted one would. A hit
sets the entry's modification time: that is the "last used" the size cap
evicts by, with no index file for concurrent processes to fight over.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import sys
import threading
import time
import types
import uuid
from pathlib import Path
from stat import S_ISREG

import xxhash

from skbatch._code_fingerprint import code_fingerprint
from skbatch._errors import CacheWarning, warn_at_caller
from skbatch._worker import cloudpickle

MAGIC = b"SKBATCH-CACHE-1\n"
_HEADER = struct.Struct("<Q16s")  # payload length, payload digest
SUFFIX = ".skbc"
_TEMPORARY_PREFIX = ".tmp-"
#: A temporary file this old was left by a writer that died mid-write.
_STALE_TEMPORARY_SECONDS = 3600


def _from_main(qualname: str):
    """A class or function of ``__main__``, looked up by name."""
    obj = sys.modules["__main__"]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _main_object(qualname: str, fingerprint: str, copy: bytes):
    """On load: ``__main__``'s own class or function of that name when its
    code is the one stored (so ``isinstance`` holds and the current cell's
    object is used), else the stored copy (the cell changed since, or this
    process, a worker, has no such name)."""
    try:
        live = _from_main(qualname)
    except (AttributeError, KeyError):
        live = None
    if live is not None and code_fingerprint(live) == fingerprint:
        return live
    if copy is None:  # its code reads a lock, a file: no copy could be kept
        raise LookupError(f"__main__.{qualname} is not the class the fit used")
    return pickle.loads(copy)


def _main_function(code, name, qualname, defaults, kwdefaults, attributes, cells):
    """A lambda or nested function of ``__main__``, rebuilt on the live
    ``__main__`` globals: it reads what a fresh fit's function reads."""
    closure = None if cells is None else tuple(types.CellType(v) for v in cells)
    function = types.FunctionType(
        code, vars(sys.modules["__main__"]), name, defaults, closure
    )
    function.__qualname__ = qualname
    function.__kwdefaults__ = kwdefaults
    function.__dict__.update(attributes)
    return function


class _EntryPickler(cloudpickle.Pickler):
    """cloudpickle, except for ``__main__`` (a script, a notebook):

    - a class or function it defines by name goes as its name, its code's
      fingerprint and a copy (see ``_main_object``);
    - other functions of its (lambdas, closures) go as code to be bound to
      the live ``__main__`` on load.

    cloudpickle alone sends both as copies with a frozen copy of the globals
    they read: a model from the cache would then fail ``isinstance`` against
    the cell's class and miss a global changed after the fit."""

    def reducer_override(self, obj):
        main = sys.modules.get("__main__")
        if (
            main is None
            or not isinstance(obj, (type, types.FunctionType))
            or getattr(obj, "__module__", None) != "__main__"
        ):
            return super().reducer_override(obj)
        if "<locals>" not in obj.__qualname__ and "<lambda>" not in obj.__qualname__:
            try:
                copy = cloudpickle.dumps(obj, protocol=5)
            except Exception:
                copy = None
            return _main_object, (obj.__qualname__, code_fingerprint(obj), copy)
        if isinstance(obj, types.FunctionType) and obj.__globals__ is vars(main):
            cells = None
            if obj.__closure__ is not None:
                try:
                    cells = [cell.cell_contents for cell in obj.__closure__]
                except ValueError:  # an empty cell: leave it to cloudpickle
                    return super().reducer_override(obj)
            return _main_function, (
                obj.__code__,
                obj.__name__,
                obj.__qualname__,
                obj.__defaults__,
                obj.__kwdefaults__,
                dict(obj.__dict__),
                cells,
            )
        return super().reducer_override(obj)


def _dumps(value) -> bytes:
    buffer = io.BytesIO()
    try:
        _EntryPickler(buffer, protocol=5).dump(value)
    except RecursionError:  # a closure that holds itself: cloudpickle copes
        return cloudpickle.dumps(value, protocol=5)
    return buffer.getvalue()


class EntryStore:
    """Entries under ``location``, keyed by hex strings, with the counters a
    user reads as the cache's statistics (for this process)."""

    def __init__(self, location):
        self.location = Path(location)
        self._lock = threading.Lock()
        self._reported: set[str] = set()  # kinds of problem already said
        self._unpicklable = set()  # keys whose value could not be pickled
        self._oversized = set()  # keys whose entry would not fit the size cap
        self.counts = dict.fromkeys(
            ("hits", "misses", "stores", "evictions", "corrupted"), 0
        )

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def path(self, key: str) -> Path:
        return self.location / f"{key}{SUFFIX}"

    # ----------------------------------------------------------------- read
    def load(self, key: str):
        """``(True, value)`` for a valid entry, else ``(False, None)``."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return False, None
        except OSError as exc:
            self.warn_once(
                "location",
                f"cache entry {path} could not be read ({exc.strerror or exc}); "
                "fitting instead",
            )
            return False, None
        problem = _problem(data)
        if problem is None:
            try:
                value = pickle.loads(memoryview(data)[len(MAGIC) + _HEADER.size :])
            except Exception as exc:
                # Intact bytes this process cannot rebuild (a class it does not
                # define): not corruption. The refit overwrites the entry.
                self._warn(
                    f"cache entry {path} could not be loaded in this process "
                    f"({type(exc).__name__}: {exc}); the estimator is fitted again"
                )
                return False, None
            with contextlib.suppress(OSError):  # read-only caches still serve
                os.utime(path)
            return True, value
        self.count("corrupted")
        self._warn(
            f"cache entry {path} is corrupted ({problem}): it is removed and "
            "the estimator fitted again"
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return False, None

    # ---------------------------------------------------------------- write
    def save(self, key: str, value, max_bytes: int | None = None) -> bool:
        """Store ``value``, evicting least recently used entries to keep the
        folder under ``max_bytes``; False (with one warning) if it could not
        be stored."""
        if key in self._unpicklable or key in self._oversized:
            return False
        try:
            payload = _dumps(value)
        except Exception as exc:
            self._unpicklable.add(key)
            self.warn_once(
                "unpicklable",
                f"the fitted {_describe(value)} cannot be pickled "
                f"({type(exc).__name__}: {exc}), so it is not cached; this "
                "fit is not tried again in this session, and other fits "
                "that cannot be pickled are not reported again",
            )
            return False
        header = MAGIC + _HEADER.pack(len(payload), xxhash.xxh3_128(payload).digest())
        size = len(header) + len(payload)
        if max_bytes is not None and size > max_bytes:
            self._oversized.add(key)
            self.warn_once(
                "oversized",
                f"the fitted {_describe(value)} takes {size:,} bytes, more "
                f"than the cache's max_bytes ({max_bytes:,}), so it is not "
                "cached (nor, this session, other fits over the cap); "
                "raise max_bytes to cache them",
            )
            return False
        temporary = None
        try:
            self.location.mkdir(parents=True, exist_ok=True)
            if max_bytes is not None:
                self.evict(max_bytes - size, keep=key)
            # Created as open() would (mode 0o666 less the umask), not 0o600
            # as mkstemp does: a team's shared cache folder stays readable.
            temporary = str(
                self.location / f"{_TEMPORARY_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
            )
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path(key))
        except OSError as exc:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            self.warn_once(
                "location",
                f"the cache location {self.location} cannot be written "
                f"({exc.strerror or exc}); fits are returned but not cached",
            )
            return False
        self.count("stores")
        if max_bytes is not None:  # another process may have written meanwhile
            self.evict(max_bytes, keep=key)
        return True

    # ----------------------------------------------------------- management
    def entries(self) -> list[tuple[Path, int, int]]:
        """``(path, bytes, last used in ns)`` of every entry, oldest first.
        Temporary files left by dead writers are removed on the way."""
        found = []
        try:
            names = os.listdir(self.location)
        except OSError:
            return []
        now = time.time()
        for name in names:
            path = self.location / name
            if not name.endswith(SUFFIX):
                continue  # not ours: never touched
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile
                continue
            if not S_ISREG(stat.st_mode):
                continue  # a folder named like an entry is not one
            if name.startswith(_TEMPORARY_PREFIX):
                if now - stat.st_mtime > _STALE_TEMPORARY_SECONDS:
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            found.append((path, stat.st_size, stat.st_mtime_ns))
        found.sort(key=lambda entry: (entry[2], entry[0].name))
        return found

    def evict(self, budget: int, keep: str | None = None) -> int:
        """Remove least recently used entries until the rest take at most
        ``budget`` bytes; ``keep`` is removed last. Returns how many went."""
        entries = self.entries()
        keep_path = self.path(keep) if keep is not None else None
        entries.sort(key=lambda entry: entry[0] == keep_path)  # stable: LRU kept
        total = sum(size for _, size, _ in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= budget:
                break
            if path == keep_path:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
            total -= size
        with self._lock:
            self.counts["evictions"] += removed
        return removed

    def clear(self) -> int:
        """Remove every entry (and only skbatch's entries); returns how many."""
        entries = self.entries()
        for path, _, _ in entries:
            with contextlib.suppress(OSError):
                path.unlink()
        with self._lock:
            self._oversized.clear()
        return len(entries)

    def warn_once(self, kind: str, message: str) -> None:
        """Said once per process and kind (an unusable folder, fits that
        cannot be pickled or are over the cap), not once per fit: a grid
        search makes hundreds."""
        with self._lock:
            report = kind not in self._reported
            self._reported.add(kind)
        if report:
            self._warn(message)

    @staticmethod
    def _warn(message: str) -> None:
        warn_at_caller(CacheWarning(message))


def _describe(value) -> str:
    if isinstance(value, dict) and "estimator" in value:
        value = value["estimator"]
    return type(value).__name__


def _problem(data: bytes) -> str | None:
    """What is wrong with an entry's bytes, or None."""
    if not data.startswith(MAGIC):
        return "not a skbatch cache entry"
    header = data[len(MAGIC) : len(MAGIC) + _HEADER.size]
    if len(header) < _HEADER.size:
        return "truncated header"
    length, digest = _HEADER.unpack(header)
    payload = memoryview(data)[len(MAGIC) + _HEADER.size :]
    if len(payload) != length:
        return f"{len(payload)} payload bytes, {length} expected"
    if xxhash.xxh3_128(payload).digest() != digest:
        return "its bytes do not match their digest"
    return None
