"""``FitCache``: where fits are cached, how big the cache may grow, what it
did; and the one function every cached fit goes through.

``memory=`` (on :class:`~skbatch.CachedEstimator`, ``BatchedPredictor`` and
``BatchedTransformer``) takes a path, a :class:`joblib.Memory` or a
``FitCache``; all three name a folder, and entries live in its ``skbatch``
subfolder, next to (never inside) joblib's own. Every ``FitCache`` for one
folder in a process shares one :class:`~skbatch._cache_store.EntryStore`:
clones made by ``GridSearchCV`` count into the same statistics and an
unwritable folder is reported once, not once per clone.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import threading
import time
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from sklearn.base import clone

from skbatch._cache_store import EntryStore
from skbatch._fit_key import RUN_ONLY_PARAMS, UnkeyableError, fit_key
from skbatch._fit_warnings import call_recording_warnings, replay_warnings

_STORES: dict[str, EntryStore] = {}
_SAVED_SECONDS: dict[str, float] = {}
_STORES_LOCK = threading.Lock()

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _parse_bytes(max_bytes):
    if max_bytes is None:
        return None
    if isinstance(max_bytes, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", max_bytes, re.I)
        if match is None:
            raise ValueError(
                f"max_bytes must be a number of bytes or a size such as '500M' "
                f"or '2G', got {max_bytes!r}."
            )
        max_bytes = float(match[1]) * _UNITS[match[2].upper()]
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (Integral, Real)):
        raise TypeError(
            f"max_bytes must be a number of bytes, a size such as '2G', or None; "
            f"got {type(max_bytes).__name__} {max_bytes!r}."
        )
    if not max_bytes >= 1:  # also rejects NaN
        raise ValueError(f"max_bytes must be at least 1 byte, got {max_bytes!r}.")
    if max_bytes == float("inf"):
        raise ValueError("max_bytes must be finite; use max_bytes=None for no cap.")
    return int(max_bytes)


@dataclass(frozen=True)
class CacheStats:
    """What a fit cache holds and, in this process, what it did.

    Attributes
    ----------
    location : pathlib.Path
        The folder holding the entries.
    entries : int
        Cached fits on disk now.
    total_bytes : int
        Their size on disk.
    max_bytes : int or None
        The size cap, if any.
    hits, misses : int
        Fits served from the cache, and fits run, by this process.
    stores : int
        Fits written to the cache by this process.
    evictions : int
        Entries this process removed to keep under ``max_bytes``.
    corrupted : int
        Damaged entries this process found (each was removed and refitted).
    saved_seconds : float
        Fit time the hits saved, as measured when each entry was stored.
    """

    location: Path
    entries: int
    total_bytes: int
    max_bytes: int | None
    hits: int
    misses: int
    stores: int
    evictions: int
    corrupted: int
    saved_seconds: float

    def __str__(self):
        cap = "" if self.max_bytes is None else f" of {_size(self.max_bytes)}"
        return (
            f"{self.entries} entries, {_size(self.total_bytes)}{cap} in "
            f"{self.location}; this process: {self.hits} hits, {self.misses} "
            f"misses, {self.stores} stored, {self.evictions} evicted, "
            f"{self.saved_seconds:.1f} s of fitting saved"
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


class FitCache:
    """A folder of cached fits, with an optional size cap.

    Pass it as ``memory=`` to :class:`CachedEstimator`,
    :class:`BatchedPredictor` or :class:`BatchedTransformer`. A plain path (or
    a :class:`joblib.Memory`) does the same without a size cap.

    Parameters
    ----------
    location : str or path-like
        The folder; ``~`` is expanded. Entries go in its ``skbatch``
        subfolder, which is created on the first store. Other files in the
        folder are never touched.

    max_bytes : int or str, default=None
        Size cap of the entries, in bytes or as ``"500M"``, ``"2G"`` (powers of
        1024). After each store, least recently used entries are removed until
        the rest fit; a fit bigger than the cap on its own is not stored.
        None means no cap.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbatch import CachedEstimator, FitCache
    >>> X, y = load_iris(return_X_y=True)
    >>> folder = tempfile.TemporaryDirectory()
    >>> cache = FitCache(folder.name, max_bytes="100M")
    >>> model = CachedEstimator(LogisticRegression(max_iter=500), memory=cache)
    >>> model.fit(X, y).cache_hit_
    False
    >>> model.fit(X, y).cache_hit_
    True
    >>> cache.stats().entries
    1
    >>> cache.clear()
    1
    >>> folder.cleanup()
    """

    def __init__(self, location, max_bytes=None):
        if not isinstance(location, (str, os.PathLike)):
            raise TypeError(
                "location must be a folder path (str or path-like), got "
                f"{type(location).__name__} {location!r}."
            )
        if not os.fspath(location):
            raise ValueError("location '' names no folder; give a folder path.")
        self._folder = Path(os.path.expanduser(os.fspath(location))).absolute()
        self._max_bytes = _parse_bytes(max_bytes)
        self._given = (location, max_bytes)

    @property
    def location(self) -> Path:
        """Where the entries are: the ``skbatch`` subfolder of the folder
        given (``FitCache("fits").location`` is ``<cwd>/fits/skbatch``)."""
        return self._folder / "skbatch"

    @property
    def max_bytes(self):
        """The size cap in bytes, or None."""
        return self._max_bytes

    @property
    def _store(self) -> EntryStore:
        key = str(self.location)
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = EntryStore(self.location)
                _SAVED_SECONDS[key] = 0.0
            return store

    def stats(self) -> CacheStats:
        """The cache's size now and this process's hits, misses, ...

        Returns
        -------
        stats : CacheStats
        """
        store = self._store
        entries = store.entries()
        counts = dict(store.counts)
        return CacheStats(
            location=self.location,
            entries=len(entries),
            total_bytes=sum(size for _, size, _ in entries),
            max_bytes=self._max_bytes,
            saved_seconds=_SAVED_SECONDS[str(self.location)],
            **counts,
        )

    def clear(self) -> int:
        """Remove every cached fit (only skbatch's files).

        Returns
        -------
        n_removed : int
            The number of entries removed.
        """
        return self._store.clear()

    def __repr__(self):
        location, max_bytes = self._given
        cap = "" if max_bytes is None else f", max_bytes={max_bytes!r}"
        return f"FitCache({os.fspath(location)!r}{cap})"

    def __eq__(self, other):
        return isinstance(other, FitCache) and (
            (self._folder, self._max_bytes) == (other._folder, other._max_bytes)
        )

    def __hash__(self):
        return hash((self._folder, self._max_bytes))

    def __reduce__(self):
        return type(self), self._given


def resolve_memory(memory, owner: str) -> FitCache | None:
    """The ``FitCache`` a ``memory`` parameter names, or None for no caching."""
    if memory is None or isinstance(memory, FitCache):
        return memory
    if isinstance(memory, (str, os.PathLike)) and not isinstance(memory, bool):
        if not str(memory):
            raise ValueError(
                f"{owner}: memory='' names no folder; give a path, or None for "
                "no caching."
            )
        return FitCache(memory)
    location = getattr(memory, "location", False)
    if location is None:  # joblib.Memory(None): caching switched off
        return None
    if isinstance(location, (str, os.PathLike)) and hasattr(memory, "cache"):
        return FitCache(location)
    raise TypeError(
        f"{owner}: memory must be None, a folder path, a joblib.Memory or a "
        f"skbatch.FitCache; got {type(memory).__name__} {memory!r}."
    )


def _takes_one_argument(method) -> bool:
    """``fit(self, y)`` (LabelEncoder, MultiLabelBinarizer): no room for y."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) == 1 and not any(
        p.kind == p.VAR_POSITIONAL for p in parameters
    )


def _call(estimator, method, X, y, fit_params):
    # y=None is passed on, so a supervised estimator says y is required;
    # a one-argument fit (LabelEncoder.fit(y)) gets X alone, as called.
    one = y is None and _takes_one_argument(getattr(estimator, method, None))
    args = (X,) if one else (X, y)
    if method == "fit":
        estimator.fit(*args, **fit_params)
        return None
    if method == "fit_transform" and not hasattr(estimator, "fit_transform"):
        return estimator.fit(*args, **fit_params).transform(X)  # as Pipeline does
    return getattr(estimator, method)(*args, **fit_params)


#: Parameter names that may differ between a hit and its entry: scikit-learn's
#: run-only ones and skbatch's execution options. Any other parameter with
#: such a name is in the key, so it is equal anyway.
_RUN_ONLY_NAMES = RUN_ONLY_PARAMS | {
    "batch_size",
    "backend",
    "progress",
    "progress_bar_kwargs",
}


def _take_run_only_params(fitted, current) -> None:
    """Give a model from the cache today's run-only parameters (``n_jobs``,
    ``memory``, ...): they were left out of the key, so the stored ones may
    be another run's."""
    try:
        now = current.get_params(deep=True)
        stored = fitted.get_params(deep=True)
    except Exception:
        return
    changed = {
        name: value
        for name, value in now.items()
        if name.rsplit("__", 1)[-1] in _RUN_ONLY_NAMES
        and name in stored
        and stored[name] is not value
    }
    if changed:
        with contextlib.suppress(Exception):  # FrozenEstimator refuses
            fitted.set_params(**changed)


def fit_with_cache(
    cache: FitCache | None, estimator, method, X, y, fit_params, verbose=0
):
    """Run ``estimator.<method>(X, y, **fit_params)`` ("fit", "fit_transform",
    "fit_predict") or take its result from ``cache``.

    Returns ``(fitted, output, hit, key)``: the fitted estimator (``estimator``
    itself unless it came from the cache), what the method returned (None for
    "fit"), whether it came from the cache, and the key (None if uncached).
    """
    name = type(estimator).__name__
    if cache is None:
        return estimator, _call(estimator, method, X, y, fit_params), False, None
    try:
        key = fit_key(estimator, method, X, y, fit_params)
    except UnkeyableError as exc:
        key, reason = None, str(exc)
    if key is None:  # fitted outside the except: its errors stand alone
        cache._store.warn_once(
            f"unkeyable: {reason}", f"{name} is fitted without caching: {reason}."
        )
        return estimator, _call(estimator, method, X, y, fit_params), False, None
    store = cache._store
    started = time.perf_counter()
    found, entry = store.load(key)
    if found and isinstance(entry, dict) and entry.get("key") == key:
        store.count("hits")
        with _STORES_LOCK:
            _SAVED_SECONDS[str(cache.location)] += entry["fit_seconds"]
        if verbose:
            print(
                f"[skbatch cache] hit: {name}.{method} loaded in "
                f"{time.perf_counter() - started:.2f} s (fitting took "
                f"{entry['fit_seconds']:.2f} s); {cache.stats()}"
            )
        replay_warnings(entry["warnings"])  # what the fit said, said again
        fitted = entry["estimator"]
        _take_run_only_params(fitted, estimator)
        return fitted, entry["output"], True, key
    store.count("misses")
    started = time.perf_counter()
    output, recorded = call_recording_warnings(
        _call, estimator, method, X, y, fit_params
    )
    seconds = time.perf_counter() - started
    entry = {"key": key, "estimator": estimator, "output": output}
    entry.update(fit_seconds=seconds, warnings=recorded)
    stored = store.save(key, entry, max_bytes=cache.max_bytes)
    if verbose:
        print(
            f"[skbatch cache] miss: {name}.{method} took {seconds:.2f} s"
            f"{'' if stored else ', not stored'}; {cache.stats()}"
        )
    return estimator, output, False, key


def fit_into(owner, method, X, y, params):
    """Fit a clone of ``owner.estimator`` with ``owner.memory`` and
    ``owner.verbose`` (a skbatch meta-estimator), setting its ``estimator_``,
    ``cache_hit_`` and ``cache_key_``; returns what ``method`` returned."""
    cache = resolve_memory(owner.memory, type(owner).__name__)
    owner.estimator_, output, owner.cache_hit_, owner.cache_key_ = fit_with_cache(
        cache, clone(owner.estimator), method, X, y, params, owner.verbose
    )
    return output
