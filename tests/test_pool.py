"""Model files: where they go, and what happens when they cannot be written."""

import errno
import os

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler

from skbatch import BatchedTransformer, _pool
from skbatch._errors import ModelFileError


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A stand-in for /dev/shm and for the system's temporary folder."""
    shm, disk = tmp_path / "shm", tmp_path / "disk"
    shm.mkdir()
    disk.mkdir()
    monkeypatch.delenv("SKBATCH_TEMP_FOLDER", raising=False)
    monkeypatch.setattr(_pool, "SHARED_MEMORY", str(shm))
    monkeypatch.setattr("tempfile.tempdir", str(disk))
    return shm, disk


def _full(*folders):
    """``_write_once`` as on a disk with no room left in ``folders``."""
    write_once = _pool._write_once

    def write(path, data):
        if any(path.startswith(str(folder)) for folder in folders):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return write_once(path, data)

    return write


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def test_model_files_go_to_shared_memory_once_per_digest(folders):
    shm, disk = folders
    store = _pool._ModelStore()
    first = store.publish({"weights": np.arange(10)})
    again = store.publish({"weights": np.arange(10)})
    assert first == again and first.path.startswith(str(shm))
    assert len(_files(shm)) == 1 and _files(disk) == []


def test_a_full_shared_memory_sends_model_files_to_the_temporary_folder(
    folders, monkeypatch
):
    # A container's /dev/shm is often 64 MB: the model goes to disk instead.
    shm, disk = folders
    monkeypatch.setattr(_pool, "_write_once", _full(shm))
    store = _pool._ModelStore()
    ref = store.publish({"weights": np.arange(10)})
    assert ref.path.startswith(str(disk)) and os.path.exists(ref.path)
    assert _files(shm) == []  # the empty folder there was removed
    # Later models go straight there.
    assert store.publish([1, 2, 3]).path.startswith(str(disk))


def test_no_room_anywhere_names_the_folder_the_size_and_the_way_out(
    folders, monkeypatch
):
    shm, disk = folders
    monkeypatch.setattr(_pool, "_write_once", _full(shm, disk))
    with pytest.raises(ModelFileError, match="No space left") as info:
        _pool._ModelStore().publish(np.zeros(1000))
    message = str(info.value)
    assert str(disk) in message and "MB" in message
    assert "SKBATCH_TEMP_FOLDER" in message and "backend='threading'" in message
    assert isinstance(info.value, OSError)


def test_a_partial_file_is_never_left(tmp_path, monkeypatch):
    def fail_replace(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="I/O error"):
        _pool._write_once(str(tmp_path / "model.pkl"), b"bytes")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["a file", "unreachable"])
def test_an_unusable_temp_folder_setting_is_named_not_blamed_on_the_model(
    tmp_path, monkeypatch, kind
):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    folder = blocker / "inside" if kind == "a file" else "/proc/no-such-folder"
    monkeypatch.setenv("SKBATCH_TEMP_FOLDER", str(folder))
    monkeypatch.setattr(_pool, "_store", _pool._ModelStore())
    X = np.random.default_rng(0).normal(size=(5000, 4))
    batched = BatchedTransformer(
        FrozenEstimator(StandardScaler().fit(X)), backend="loky", n_jobs=2,
        batch_size=500,
    )  # fmt: skip
    with pytest.raises(ModelFileError, match="SKBATCH_TEMP_FOLDER=") as info:
        batched.transform(X)
    assert str(folder) in str(info.value) and "unset it" in str(info.value)


def test_the_temp_folder_setting_is_used(tmp_path, monkeypatch):
    folder = tmp_path / "made" / "here"
    monkeypatch.setenv("SKBATCH_TEMP_FOLDER", str(folder))
    assert _pool.temp_folder() == str(folder) and folder.is_dir()
    ref = _pool._ModelStore().publish("a model")
    assert ref.path.startswith(str(folder))


def test_a_relative_temp_folder_setting_is_made_absolute(tmp_path, monkeypatch):
    # Files are removed at exit, perhaps from another working folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKBATCH_TEMP_FOLDER", "skb-temp")
    assert _pool.temp_folder() == str(tmp_path / "skb-temp")


def test_a_model_folder_removed_between_calls_is_made_again(folders):
    import shutil

    store = _pool._ModelStore()
    first = store.publish("a model")
    shutil.rmtree(os.path.dirname(first.path))  # a cleanup job, say
    again = store.publish("a model")
    assert os.path.exists(again.path)
