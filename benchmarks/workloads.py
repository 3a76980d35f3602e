"""The benchmark workloads: a fitted model and the rows it predicts.

Importable by worker processes (models pickle by reference to this module).
Every workload is seeded: all tools predict the same rows with the same model.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skbatch._demo import make_digit_queries


class LeibnizPiClassifier(ClassifierMixin, BaseEstimator):
    """Pure-Python, GIL-bound predict: a Leibniz-series pi per row.

    Each row's first value sets how many series terms it sums (as in the
    classic joblib tutorial), so rows cost different amounts of work.
    """

    def __init__(self, terms=2000):
        self.terms = terms

    def fit(self, X, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        out = []
        for row in np.asarray(X):
            n = self.terms + int(abs(row[0]) * 100) % 500
            total = 0.0
            for k in range(n):
                total += (-1.0) ** k / (2 * k + 1)
            out.append(int(4 * total > math.pi))
        return np.array(out)


def knn(scale):
    X, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X, y)
    queries, _ = make_digit_queries(int(300_000 * scale), random_state=1)
    return model, queries, "predict"


def logreg(scale):
    rng = np.random.default_rng(0)
    n = int(2_000_000 * scale)
    X = rng.normal(size=(n, 32))
    y = (X[:, :4].sum(axis=1) + rng.normal(size=n) > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        X[:50_000], y[:50_000]
    )
    return model, X, "predict"


def python(scale):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(int(20_000 * scale), 4))
    return LeibnizPiClassifier().fit(X), X, "predict"


def forest(scale):
    X, y = load_digits(return_X_y=True)
    model = RandomForestClassifier(n_estimators=200, random_state=0).fit(X, y)
    queries, _ = make_digit_queries(int(200_000 * scale), random_state=2)
    return model, queries, "predict_proba"


def tiny(scale):
    X, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(X, y)
    queries, _ = make_digit_queries(100, random_state=3)
    return model, queries, "predict_proba"


WORKLOADS = {
    "knn": ("(a) StandardScaler -> KNN, digits-derived rows", knn),
    "logreg": ("(b) StandardScaler -> LogisticRegression, 2M x 32", logreg),
    "python": ("(c) pure-Python Leibniz pi per row", python),
    "forest": ("(d) 200-tree random forest, predict_proba", forest),
    "tiny": ("(e) 100 rows, KNN predict_proba (overhead)", tiny),
}
