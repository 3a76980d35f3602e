"""
Batch-predict a large array with a pipeline you already trained
================================================================

The main recipe: wrap a fitted pipeline in ``FrozenEstimator`` and hand it to
``BatchedPredictor``. Rows are split across workers, a progress bar counts
finished rows, and the result is what the pipeline returns on its own: the same
labels, and the same probabilities up to floating-point rounding.

Run it with ``python examples/predict_large_array.py``.
"""

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatch import BatchedPredictor


def main():
    # A model trained earlier: StandardScaler -> KNN on scikit-learn's digits.
    X_train, y_train = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X_train, y_train)

    # A large array to predict: 200,000 new images derived from the real ones
    # (random real digits with a little pixel noise).
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(X_train), size=200_000)
    X_big = np.clip(X_train[picks] + rng.normal(0, 0.5, (len(picks), 64)), 0, 16)
    y_big = y_train[picks]

    batched = BatchedPredictor(FrozenEstimator(pipe), n_jobs=-1, progress=True)
    start = time.perf_counter()
    labels = batched.predict(X_big)
    seconds = time.perf_counter() - start

    # What the pipeline itself returns.
    np.testing.assert_array_equal(labels, pipe.predict(X_big))
    np.testing.assert_allclose(
        batched.predict_proba(X_big[:1000]), pipe.predict_proba(X_big[:1000])
    )
    accuracy = np.mean(labels == y_big)
    print(f"{len(X_big):,} rows in {seconds:.2f} s; accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
