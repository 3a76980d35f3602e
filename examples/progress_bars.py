"""Per-worker progress bars for a batched predict, and for a plain function.

Run it in a terminal to see the bars move; redirect stderr to a file to see
the few whole lines a log gets instead:

    python examples/progress_bars.py
    python examples/progress_bars.py 2> progress.log
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator

from skbatch import BatchedPredictor, batch_process, start_workers


class NearestCentroid(ClassifierMixin, BaseEstimator):
    """A pure-Python nearest-centroid classifier: it holds the GIL, so
    skbatch runs it in worker processes."""

    def fit(self, X, y):
        X, y = np.asarray(X), np.asarray(y)
        self.classes_ = np.unique(y)
        self.centroids_ = [X[y == c].mean(axis=0).tolist() for c in self.classes_]
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        out = []
        for row in np.asarray(X).tolist():
            distances = [
                sum((a - b) ** 2 for a, b in zip(row, centroid, strict=True))
                for centroid in self.centroids_
            ]
            out.append(self.classes_[distances.index(min(distances))])
        return np.array(out)


def word_score(text, minimum=3):
    """A plain function applied to every item: pure Python, some 50 µs each."""
    score = 0
    for word in text.split():
        if len(word) >= minimum:
            score += sum(ord(c) for c in word * 60) % 97
    return score


if __name__ == "__main__":
    # Worker processes take seconds to start; started now, they help from the
    # first call on (without this, a first call this short runs in the
    # calling thread and starts them for the next calls).
    start_workers()
    X, y = load_digits(return_X_y=True)
    model = NearestCentroid().fit(X, y)
    X_big = np.tile(X, (12, 1))  # about 21,500 rows

    batched = BatchedPredictor(
        FrozenEstimator(model),
        progress="workers",
        progress_bar_kwargs={"desc": "centroid predict"},
    )
    labels = batched.predict(X_big)
    assert (labels == model.predict(X_big)).all()
    report = batched.last_call_
    print(f"{report.n_rows} rows in {report.seconds:.2f} s, by worker:")
    print(report.rows_by_worker)

    texts = [f"item {i} has some words of several lengths" for i in range(20_000)]
    scores = batch_process(texts, word_score, minimum=4, progress="workers", verbose=1)
    assert scores == [word_score(t, minimum=4) for t in texts]
    print(f"{len(scores)} texts scored")
