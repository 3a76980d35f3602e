"""Cache every step of a pipeline, the notebook way: rerun, edit, rerun.

In a notebook you rerun cells all day. With ``make_cached_pipeline`` the
first run fits, a rerun is served from disk, and after you edit a
transformer's code only that step refits (and the steps after it, when its
output changed). Here each ``CELL`` string plays the notebook cell you edit
and rerun; the script runs it the way Jupyter does, in ``__main__``.

    python examples/cache_fits.py
"""

import sys
import tempfile
import time

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from skbatch import FitCache, make_cached_pipeline

X, y = load_digits(return_X_y=True)
rng = np.random.default_rng(0)
X = X.repeat(4, axis=0) + rng.normal(scale=2.0, size=(4 * len(X), 64))  # noisy copies
y = y.repeat(4)
folder = tempfile.TemporaryDirectory(prefix="skbatch-example-")
cache = FitCache(folder.name, max_bytes="200M")

CELL = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

def pooled(images):
    # 8x8 digits -> 4x4 sums of 2x2 blocks, plus the raw pixels
    blocks = images.reshape(-1, 4, 2, 4, 2).sum(axis=(2, 4)).reshape(-1, 16)
    return np.hstack([images, blocks * SCALE])

class DigitFeatures(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return pooled(np.asarray(X, dtype=float))

SCALE = 1.0
"""


def run_cell(source, title):
    """Run ``source`` as a notebook cell, then fit the cached pipeline."""
    exec(compile(source, "<cell>", "exec"), vars(sys.modules["__main__"]))
    pipe = make_cached_pipeline(
        DigitFeatures(),  # noqa: F821 - defined by the cell
        CalibratedClassifierCV(SVC(C=3.0), ensemble=False),  # about a second
        memory=cache,
    )
    start = time.perf_counter()
    pipe.fit(X, y)
    seconds = time.perf_counter() - start
    refitted = [name for name, step in pipe.steps if not step.cache_hit_]
    print(
        f"{title:44s} fit {len(X):,} rows in {seconds:5.2f} s; "
        f"refitted: {', '.join(refitted) or 'nothing'}"
    )
    return pipe


first = run_cell(CELL, "1. first run")
again = run_cell(CELL, "2. rerun, no edit")
assert (again.predict(X) == first.predict(X)).all()
run_cell(CELL + "\nunrelated = 'an edit elsewhere in the cell'\n", "3. unrelated edit")
run_cell(CELL.replace("blocks * SCALE", "blocks * SCALE / 4"), "4. edit the helper")
run_cell(
    CELL.replace("return pooled(", "return 0 + pooled("),
    "5. edit transform, same output",
)
print(cache.stats())
print(f"cleared {cache.clear()} entries")
folder.cleanup()
