from typing import ClassVar

import numpy as np
import pytest
from sklearn.datasets import load_iris

import skbatch
from skbatch import _progress, _progress_display


@pytest.fixture(scope="session")
def iris():
    X, y = load_iris(return_X_y=True)
    # 600 rows: enough for several batches, small enough to stay fast.
    return np.tile(X, (4, 1)), np.tile(y, 4)


CONTAINERS = ["numpy", "memmap", "pandas", "sparse", "polars", "list"]


def as_container(X, kind, tmp_path=None):
    """``X`` (a float ndarray) in the named input container."""
    if kind == "numpy":
        return X
    if kind == "memmap":
        path = tmp_path / "X.dat"
        mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        return np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape)
    if kind == "pandas":
        pd = pytest.importorskip("pandas")
        columns = [f"f{i}" for i in range(X.shape[1])]
        # A non-default index: it must survive batching.
        return pd.DataFrame(X, columns=columns, index=np.arange(X.shape[0]) * 3 + 7)
    if kind == "sparse":
        sparse = pytest.importorskip("scipy.sparse")
        return sparse.csr_matrix(X)
    if kind == "polars":
        pl = pytest.importorskip("polars")
        return pl.DataFrame({f"f{i}": X[:, i] for i in range(X.shape[1])})
    if kind == "list":
        return X.tolist()
    raise ValueError(kind)


class RecordingBar:
    """Stands in for tqdm: records every update and whether it was closed."""

    instances: ClassVar[list] = []

    def __init__(self, *args, total=None, desc=None, **kwargs):
        self.total = total
        self.desc = desc
        self.n = 0
        self.updates = []
        self.closed = False
        self.postfix = ""
        self.postfixes = []
        self.overshot = False
        self.kwargs = kwargs
        RecordingBar.instances.append(self)

    def update(self, n=1):
        self.n += n
        self.updates.append(n)
        if self.total is not None and self.n > self.total:
            self.overshot = True

    def set_postfix_str(self, text="", refresh=True):
        self.postfix = text
        self.postfixes.append(text)

    def set_description(self, desc=None, refresh=True):
        self.desc = desc

    def refresh(self):
        pass

    def __str__(self):
        return f"{self.desc}: {self.n}/{self.total}"

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    """Replace tqdm in skbatch._progress; yields the list of bars created."""
    RecordingBar.instances = []
    monkeypatch.setattr(_progress, "tqdm", RecordingBar)
    # Drawn as on a terminal (pytest captures stderr, which is not one).
    monkeypatch.setattr(_progress_display, "output_kind", lambda *args: "terminal")
    return RecordingBar.instances


@pytest.fixture(autouse=True)
def fresh_measurements():
    """Each test measures its models afresh: what an earlier test's call
    learned about a model must not decide this one's path."""
    skbatch.forget_measurements()
    yield
    skbatch.forget_measurements()


def outputs_under_hash_seeds(script, seeds=("1", "2", "3")):
    """What ``script`` prints in fresh interpreters with different hash seeds
    (set and dict-of-str iteration orders differ between them)."""
    import os
    import subprocess
    import sys

    return {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in seeds
    }
