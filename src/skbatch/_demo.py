"""The ``skbatch demo`` job: batch prediction on real digits, serial vs batched.

Data: scikit-learn's bundled ``load_digits`` images (no download), expanded into
a large query set of new, realistic images derived from the real ones.
Models: a StandardScaler → KNN pipeline (the classic joblib tutorial workload)
and a pipeline whose predict is pure Python per row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from skbatch._pool import start_workers
from skbatch._predictor import BatchedPredictor


def make_digit_queries(n_rows, *, noise=1.0, random_state=0):
    """Query images derived from the real digits.

    Each image blends two real images of the same digit (a new hand between two
    writers), scales its intensity (pen pressure) and adds noise on the strokes.

    Parameters
    ----------
    n_rows : int
        Number of images to make.
    noise : float, default=1.0
        Standard deviation of the stroke noise (pixels range over 0 to 16).
    random_state : int, default=0
        Seed; the same seed gives the same images.

    Returns
    -------
    X : ndarray of shape (n_rows, 64)
        Images as rows, values clipped to [0, 16].
    y : ndarray of shape (n_rows,)
        The digit each image shows.

    Examples
    --------
    >>> X, y = make_digit_queries(5)
    >>> X.shape, y.shape, float(X.min()) >= 0.0, float(X.max()) <= 16.0
    ((5, 64), (5,), True, True)
    """
    digits = load_digits()
    data, target = digits.data, digits.target
    rng = np.random.default_rng(random_state)
    first = rng.integers(0, len(data), size=n_rows)
    second = np.empty(n_rows, dtype=np.intp)
    for digit in np.unique(target):
        wanted = target[first] == digit
        second[wanted] = rng.choice(
            np.flatnonzero(target == digit), size=int(wanted.sum())
        )
    weight = rng.uniform(0.5, 1.0, size=(n_rows, 1))
    X = weight * data[first] + (1.0 - weight) * data[second]
    X *= rng.uniform(0.85, 1.15, size=(n_rows, 1))
    X += (X > 0) * rng.normal(0.0, noise, size=X.shape)
    return np.clip(X, 0.0, 16.0), target[first]


class PythonNearestCentroid(ClassifierMixin, BaseEstimator):
    """Nearest-centroid classifier whose predict loops over rows in Python.

    A stand-in for the many real models whose inference is Python code per
    row (rules, parsers, feature lookups): slow, GIL-bound, and exactly the
    case that needs worker processes.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> PythonNearestCentroid().fit(X, [0, 0, 1, 1]).predict([[4.0, 4.0]])
    array([1])
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self.centroids_ = np.array(
            [X[y_index == k].mean(axis=0) for k in range(len(self.classes_))]
        )
        return self

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        centroids = self.centroids_.tolist()
        labels = []
        for row in X.tolist():
            best, best_distance = 0, float("inf")
            for k, centroid in enumerate(centroids):
                distance = 0.0
                for value, center in zip(row, centroid, strict=True):
                    distance += (value - center) ** 2
                if distance < best_distance:
                    best, best_distance = k, distance
            labels.append(best)
        return self.classes_[np.array(labels, dtype=np.intp)]


@dataclass
class DemoResult:
    """Timings of one pipeline: serial, then batched (first and warm call)."""

    name: str
    rows: int
    serial_seconds: float
    first_seconds: float
    warm_seconds: float
    identical: bool


def _timed(func):
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def demo_pipelines():
    """The demo's two pipelines, fitted on the real digits."""
    X, y = load_digits(return_X_y=True)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    python = make_pipeline(StandardScaler(), PythonNearestCentroid())
    return {
        "scaler+knn": knn.fit(X, y),
        "python centroid": python.fit(X, y),
    }


def run_demo(*, rows, python_rows, n_jobs, progress, out=print):
    """Predict serially and batched with each pipeline; return the results."""
    out(f"Making {rows:,} query images from scikit-learn's digits ...")
    X, y = make_digit_queries(rows)
    results = []
    for name, pipe in demo_pipelines().items():
        n_run = rows if name == "scaler+knn" else min(rows, python_rows)
        X_run = X[:n_run]
        out(f"\n{name}: {n_run:,} rows")
        pipe.predict(X_run[:1000])  # first-call costs (thread pools) are not serial's
        serial, serial_seconds = _timed(lambda: pipe.predict(X_run))  # noqa: B023
        out(f"  serial               {serial_seconds:8.2f} s")
        batched_model = BatchedPredictor(
            FrozenEstimator(pipe), n_jobs=n_jobs, progress=progress
        )
        timings, identical = [], True
        for call in ("first call", "warm call"):
            batched, seconds = _timed(lambda: batched_model.predict(X_run))  # noqa: B023
            out(f"  batched, {call:<11} {seconds:8.2f} s")
            timings.append(seconds)
            identical = identical and bool(np.array_equal(serial, batched))
            if call == "first call" and batched_model.last_call_.n_workers > 1:
                # What a program calling predict repeatedly would do: have
                # the worker processes ready (a no-op once they are).
                start_workers(n_jobs)
        accuracy = np.mean(serial == y[:n_run])
        out(f"  accuracy on the derived digits: {accuracy:.3f}")
        results.append(DemoResult(name, n_run, serial_seconds, *timings, identical))
    return results


def format_table(results, *, n_jobs) -> str:
    """A plain-text table of the demo's timings.

    Examples
    --------
    >>> table = format_table([DemoResult("m", 100, 2.0, 1.5, 1.0, True)], n_jobs=2)
    >>> table.splitlines()[1].split()[:4]
    ['pipeline', 'rows', 'serial', 's']
    >>> table.splitlines()[-1].split()
    ['m', '100', '2.00', '50', '1.50', '1.00', '100', '2.00x', 'yes']
    """
    columns = (
        f"{'pipeline':<17}{'rows':>9}{'serial s':>10}{'rows/s':>9}"
        f"{'first s':>9}{'warm s':>8}{'rows/s':>9}{'speed-up':>10}  same"
    )
    lines = [
        f'Batched with n_jobs={n_jobs}; "first" includes starting the workers, '
        '"warm" runs once they are ready.',
        columns,
        "-" * len(columns),
    ]
    for r in results:
        lines.append(
            f"{r.name:<17}{r.rows:>9,}{r.serial_seconds:>10.2f}"
            f"{r.rows / r.serial_seconds:>9,.0f}{r.first_seconds:>9.2f}"
            f"{r.warm_seconds:>8.2f}{r.rows / r.warm_seconds:>9,.0f}"
            f"{r.serial_seconds / r.warm_seconds:>9.2f}x  "
            f"{'yes' if r.identical else 'NO'}"
        )
    return "\n".join(lines)
