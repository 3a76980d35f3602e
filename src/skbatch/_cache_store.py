"""Fitted models on disk, one file per key: written atomically, verified on
load.

An entry is a header (magic, payload length, XXH3-128 digest of the payload)
and the cloudpickled payload. It is written to a temporary file in the same
folder and renamed over the final name, so a reader sees either no entry or a
whole one, and two processes storing the same key both leave a valid entry.
An entry whose bytes do not match its digest (a truncated write, a flipped
bit, another program's file) is reported, removed and treated as missing:
nothing corrupted is ever returned. A location that cannot be written is
reported once, naming the path and the reason; fits go on uncached.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
import warnings
from pathlib import Path

import xxhash

from skbatch._errors import CacheWarning
from skbatch._worker import cloudpickle

MAGIC = b"SKBATCH-CACHE-1\n"
_HEADER = struct.Struct("<Q16s")  # payload length, payload digest


class EntryStore:
    """Entries under ``location``, keyed by hex strings."""

    def __init__(self, location):
        self.location = Path(location)
        self._lock = threading.Lock()
        self._unwritable_reported = False
        self._unpicklable = set()  # keys whose value could not be pickled

    def path(self, key: str) -> Path:
        return self.location / f"{key}.skbc"

    def load(self, key: str):
        """``(True, value)`` for a valid entry, else ``(False, None)``."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False, None
        except OSError as exc:
            self._warn(f"cache entry {path} could not be read ({exc}); fitting")
            return False, None
        problem = _problem(data)
        if problem is None:
            try:
                return True, cloudpickle.loads(data[len(MAGIC) + _HEADER.size :])
            except Exception as exc:
                problem = f"it does not unpickle ({type(exc).__name__}: {exc})"
        self._warn(
            f"cache entry {path} is corrupted ({problem}): it is removed and "
            "the estimator fitted again"
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return False, None

    def save(self, key: str, value) -> bool:
        """Store ``value``; False (with one warning) if it could not be."""
        if key in self._unpicklable:
            return False
        try:
            payload = cloudpickle.dumps(value)
        except Exception as exc:
            self._unpicklable.add(key)
            self._warn(
                f"the fitted {type(value).__name__} cannot be pickled "
                f"({type(exc).__name__}: {exc}), so it is not cached; it will "
                "not be tried again in this session"
            )
            return False
        header = MAGIC + _HEADER.pack(len(payload), xxhash.xxh3_128(payload).digest())
        temporary = None
        try:
            self.location.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(
                dir=self.location, prefix=".tmp-", suffix=".skbc"
            )
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path(key))
            return True
        except OSError as exc:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            with self._lock:
                report = not self._unwritable_reported
                self._unwritable_reported = True
            if report:
                self._warn(
                    f"the cache location {self.location} cannot be written "
                    f"({exc.strerror or exc}); fits are returned but not cached"
                )
            return False

    @staticmethod
    def _warn(message: str) -> None:
        warnings.warn(CacheWarning(message), stacklevel=4)


def _problem(data: bytes) -> str | None:
    """What is wrong with an entry's bytes, or None."""
    if not data.startswith(MAGIC):
        return "not a skbatch cache entry"
    header = data[len(MAGIC) : len(MAGIC) + _HEADER.size]
    if len(header) < _HEADER.size:
        return "truncated header"
    length, digest = _HEADER.unpack(header)
    payload = data[len(MAGIC) + _HEADER.size :]
    if len(payload) != length:
        return f"{len(payload)} payload bytes, {length} expected"
    if xxhash.xxh3_128(payload).digest() != digest:
        return "its bytes do not match their digest"
    return None
