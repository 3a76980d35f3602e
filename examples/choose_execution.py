"""
Let skbatch choose threads, processes or the calling thread, per model
======================================================================

No single execution suits every model. A random forest releases the GIL while
it walks its trees, so threads share the work without copying anything. A
pure-Python ``predict`` holds the GIL, so only worker processes help. A model
that already keeps every core busy gains little from either. ``BatchedPredictor``
measures each call's model on its first rows and picks; ``last_call_`` says what
it picked and why.

``skbatch.start_workers()`` starts the worker processes ahead of time, so the
first call that needs them finds them ready.

Run it with ``python examples/choose_execution.py``.
"""

import math

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator

import skbatch
from skbatch import BatchedPredictor


class LeibnizPi(RegressorMixin, BaseEstimator):
    """A pure-Python predict: a Leibniz-series estimate of pi per row."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        out = []
        for row in np.asarray(X):
            terms = 2000 + int(abs(row[0]) * 100) % 500
            out.append(sum((-1.0) ** k / (2 * k + 1) for k in range(terms)) * 4)
        return np.array(out) - math.pi


def show(name, batched, X, method="predict"):
    getattr(batched, method)(X)
    report = batched.last_call_
    print(f"{name}: {len(X)} rows in {report.seconds:.2f} s, {report.path}")
    print(f"    rows by worker: {report.rows_by_worker}")
    print(f"    why: {report.reasons[-1]}")


def main():
    # Start worker processes now; the script goes on while they import.
    skbatch.start_workers()

    X_digits, y_digits = load_digits(return_X_y=True)
    queries = np.tile(X_digits, (20, 1))  # 35,940 rows

    forest = RandomForestClassifier(n_estimators=100, random_state=0)
    forest.fit(X_digits, y_digits)
    show(
        "random forest",
        BatchedPredictor(FrozenEstimator(forest)),
        queries,
        "predict_proba",
    )

    rows = np.random.default_rng(0).normal(size=(6000, 4))
    pi_model = FrozenEstimator(LeibnizPi().fit(rows))
    show("pure-Python predict", BatchedPredictor(pi_model), rows)

    # An explicit backend wins over the measurements.
    batched = BatchedPredictor(FrozenEstimator(forest), backend="threading")
    assert (batched.predict(queries) == forest.predict(queries)).all()
    print(f"forced threads: {batched.last_call_.path}")


if __name__ == "__main__":
    main()
