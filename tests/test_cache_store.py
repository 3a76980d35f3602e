"""Cache entries are written whole and never returned corrupted."""

import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skbatch._cache_store import EntryStore
from skbatch._errors import CacheWarning


def _fitted():
    X = np.arange(40.0).reshape(20, 2)
    return LogisticRegression().fit(X, np.arange(20) % 2)


def test_an_entry_comes_back_equal(tmp_path):
    store = EntryStore(tmp_path / "cache")
    model = _fitted()
    assert store.load("k") == (False, None)
    assert store.save("k", model)
    found, loaded = store.load("k")
    assert found
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k.skbc"]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b[:-10], "payload bytes"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "do not match their digest"),
        (lambda b: b[:20], "truncated header"),
        (lambda b: b"hello", "not a skbatch cache entry"),
    ],
    ids=["truncated", "bit flip", "header cut", "foreign file"],
)
def test_a_damaged_entry_is_reported_removed_and_missing(tmp_path, damage, reason):
    store = EntryStore(tmp_path)
    store.save("k", _fitted())
    path = store.path("k")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(CacheWarning, match=reason):
        assert store.load("k") == (False, None)
    assert not path.exists()
    assert store.save("k", _fitted()) and store.load("k")[0]


def test_an_unwritable_location_warns_once_and_leaves_no_temporary_files(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = EntryStore(blocker / "cache")
    with pytest.warns(CacheWarning, match="cannot be written") as caught:
        assert not store.save("k1", _fitted())
        assert not store.save("k2", _fitted())
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert str(blocker / "cache") in str(caught[0].message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_an_unpicklable_fit_is_reported_once_and_not_retried(tmp_path):
    store = EntryStore(tmp_path)
    unpicklable = {"lock": threading.Lock()}
    with pytest.warns(CacheWarning, match="cannot be pickled"):
        assert not store.save("k", unpicklable)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not store.save("k", unpicklable)
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path):
    store = EntryStore(tmp_path)
    model = _fitted()
    threads = [threading.Thread(target=store.save, args=("k", model)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from skbatch._cache_store import EntryStore
        X = np.arange(40.0).reshape(20, 2)
        model = LogisticRegression().fit(X, np.arange(20) % 2)
        store = EntryStore({str(tmp_path)!r})
        for _ in range(20):
            store.save("k", model)
            assert store.load("k")[0]
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    found, loaded = store.load("k")
    assert found
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    assert [p.name for p in tmp_path.iterdir()] == ["k.skbc"]
