"""FitCache: the size cap, least recently used eviction, statistics, clear."""

import os
import pickle
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge

from skbatch import CachedEstimator, CacheWarning, FitCache
from skbatch._fit_cache import resolve_memory


def fit_ridge(cache, alpha, n_features=50):
    X = np.random.default_rng(0).normal(size=(100, n_features))
    return CachedEstimator(Ridge(alpha=alpha), memory=cache).fit(X, X[:, 0])


def sizes(cache):
    return [p.stat().st_size for p in cache.location.glob("*.skbc")]


def test_the_size_cap_holds_and_evicts_the_least_recently_used(tmp_path):
    probe = FitCache(tmp_path / "probe")
    fit_ridge(probe, 0.0)
    (entry_size,) = sizes(probe)
    cache = FitCache(tmp_path / "capped", max_bytes=3 * entry_size + entry_size // 2)
    for alpha in (1.0, 2.0, 3.0):
        fit_ridge(cache, alpha)
        time.sleep(0.01)  # distinct modification times
    assert fit_ridge(cache, 1.0).cache_hit_  # 1.0 is now the most recently used
    time.sleep(0.01)
    fit_ridge(cache, 4.0)
    assert sum(sizes(cache)) <= cache.max_bytes
    assert cache.stats().entries == 3 and cache.stats().evictions == 1
    assert fit_ridge(cache, 1.0).cache_hit_
    assert not fit_ridge(cache, 2.0).cache_hit_  # the oldest went
    assert sum(sizes(cache)) <= cache.max_bytes


def test_a_fit_bigger_than_the_cap_is_not_stored_and_said_once(tmp_path):
    cache = FitCache(tmp_path, max_bytes=200)
    with pytest.warns(CacheWarning, match="more than the cache's max_bytes") as caught:
        for _ in range(3):
            model = fit_ridge(cache, 0.0)
    assert len(caught) == 1 and not model.cache_hit_
    assert cache.stats().entries == 0


def test_stats_count_hits_misses_and_saved_time(tmp_path):
    cache = FitCache(tmp_path)
    fit_ridge(cache, 0.0)
    fit_ridge(cache, 0.0)
    fit_ridge(cache, 1.0)
    stats = FitCache(tmp_path).stats()  # another FitCache, same folder
    assert (stats.hits, stats.misses, stats.stores, stats.entries) == (1, 2, 2, 2)
    assert stats.total_bytes == sum(sizes(cache)) and stats.saved_seconds > 0
    assert stats.location == tmp_path.absolute() / "skbatch"
    assert "2 entries" in str(stats) and "1 hits, 2 misses" in str(stats)


def test_clear_removes_only_skbatch_entries(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    cache = FitCache(tmp_path)
    fit_ridge(cache, 0.0)
    fit_ridge(cache, 1.0)
    (cache.location / "README").write_text("also mine")
    assert cache.clear() == 2
    assert cache.stats().entries == 0
    assert sorted(p.name for p in cache.location.iterdir()) == ["README"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not fit_ridge(cache, 0.0).cache_hit_


def test_stale_temporary_files_are_swept_fresh_ones_kept(tmp_path):
    cache = FitCache(tmp_path)
    fit_ridge(cache, 0.0)
    stale = cache.location / ".tmp-dead.skbc"
    fresh = cache.location / ".tmp-writing.skbc"
    for path in (stale, fresh):
        path.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert cache.stats().entries == 1
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, None),
        (1000, 1000),
        (2.5e3, 2500),
        ("2K", 2048),
        ("1.5 MiB", 1572864),
        ("3G", 3 * 1024**3),
        ("10b", 10),
    ],
)
def test_max_bytes_takes_numbers_and_sizes(tmp_path, given, expected):
    assert FitCache(tmp_path, max_bytes=given).max_bytes == expected


@pytest.mark.parametrize(
    "given, error, match",
    [
        (0, ValueError, "at least 1 byte"),
        (-5, ValueError, "at least 1 byte"),
        (float("nan"), ValueError, "at least 1 byte"),
        ("lots", ValueError, "such as '500M'"),
        (True, TypeError, "number of bytes"),
        ([1], TypeError, "number of bytes"),
    ],
)
def test_bad_max_bytes_is_refused(tmp_path, given, error, match):
    with pytest.raises(error, match=match):
        FitCache(tmp_path, max_bytes=given)


@pytest.mark.parametrize("location", [None, 3])
def test_bad_locations_are_refused(location):
    with pytest.raises(TypeError, match="location must be a folder path"):
        FitCache(location)


def test_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert FitCache("~/fits").location == tmp_path / "fits" / "skbatch"


def test_a_cache_survives_clone_and_pickle(tmp_path):
    cache = FitCache(tmp_path, max_bytes="1G")
    model = CachedEstimator(Ridge(), memory=cache)
    assert clone(model).memory == cache
    assert pickle.loads(pickle.dumps(cache)) == cache
    assert repr(cache) == f"FitCache({str(tmp_path)!r}, max_bytes='1G')"


def test_resolve_memory_names_the_owner_in_errors():
    with pytest.raises(TypeError, match="BatchedPredictor: memory must be"):
        resolve_memory(object(), "BatchedPredictor")


def test_a_folder_named_like_an_entry_is_left_alone(tmp_path):
    cache = FitCache(tmp_path)
    fit_ridge(cache, 0.0)
    (cache.location / "odd.skbc").mkdir()
    assert cache.stats().entries == 1
    assert cache.clear() == 1
    assert (cache.location / "odd.skbc").is_dir()


def test_unpicklable_fits_are_reported_once_per_process(tmp_path):
    import threading

    from sklearn.preprocessing import FunctionTransformer

    lock = threading.Lock()

    def holding(Z, k):
        return Z

    with pytest.warns(CacheWarning, match="cannot be pickled") as caught:
        for k in range(3):
            step = FunctionTransformer(holding, kw_args={"k": k})
            model = CachedEstimator(step, memory=tmp_path).fit(np.ones((3, 2)))
            model.estimator_.lock_ = lock  # what a later fit would store
            from skbatch._fit_cache import FitCache as _F

            _F(tmp_path)._store.save(f"key{k}", {"estimator": model.estimator_})
    assert len([w for w in caught if w.category is CacheWarning]) == 1


def test_infinite_max_bytes_points_to_none(tmp_path):
    with pytest.raises(ValueError, match="use max_bytes=None"):
        FitCache(tmp_path, max_bytes=float("inf"))


def test_an_empty_location_is_refused_clearly():
    with pytest.raises(ValueError, match="names no folder"):
        FitCache("")
