"""What a batched call does when rows fail, a batch hangs, or a failure passes.

A transformer that rejects one row, hangs on another, or fails once: the
errors name the batch and its rows, a stuck batch times out, and a transient
failure is retried without counting any row twice.
"""

import os
import tempfile
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.frozen import FrozenEstimator

from skbatch import BatchedTransformer, BatchTimeoutError


class Picky(TransformerMixin, BaseEstimator):
    """Scales its input; rejects, hangs on, or (once) fails on some rows.

    Column 0 holds each row's index, so the rows are easy to name.
    """

    def __init__(self, reject=(), hang=(), flaky_file=None):
        self.reject = reject
        self.hang = hang
        self.flaky_file = flaky_file

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        time.sleep(2e-5 * len(X))  # some work per row
        rows = set(X[:, 0].astype(int))
        bad = sorted(rows & set(self.reject))
        if bad:
            raise ValueError(f"row {bad[0]} has a negative price")
        if rows & set(self.hang):
            time.sleep(3600)  # a stuck call (a lost connection, a deadlock)
        if self.flaky_file and 7000 in rows and not os.path.exists(self.flaky_file):
            open(self.flaky_file, "w").close()
            raise ConnectionError("the feature store did not answer")
        return X * 2.0


X = np.column_stack([np.arange(20_000.0), np.ones(20_000)])

# 1. A bad row: the estimator's own error, stopped at its batch, with a note
#    saying which batch and rows; no batch starts after it.
batched = BatchedTransformer(
    FrozenEstimator(Picky(reject=[12_345, 17_000]).fit(X)),
    n_jobs=2, batch_size=1000, backend="threading",
)  # fmt: skip
try:
    batched.transform(X)
except ValueError as error:
    print(f"ValueError: {error}")
    print(*getattr(error, "__notes__", []), sep="\n")

# 2. A stuck batch: timeout= counts from when the batch starts in its worker.
batched.set_params(estimator=FrozenEstimator(Picky(hang=[15_000]).fit(X)), timeout=2)
started = time.perf_counter()
try:
    batched.transform(X)
except BatchTimeoutError as error:
    print(f"BatchTimeoutError after {time.perf_counter() - started:.1f} s: {error}")

# 3. A transient failure: max_retries runs the batch again; its rows count once.
with tempfile.TemporaryDirectory() as folder:
    flaky = Picky(flaky_file=os.path.join(folder, "failed-once")).fit(X)
    batched.set_params(estimator=FrozenEstimator(flaky), timeout=None, max_retries=2)
    out = batched.transform(X)
    report = batched.last_call_
    print(
        f"{sum(report.rows_by_worker.values())} rows in {report.seconds:.2f} s "
        f"after {report.retries} retry; same as serial: "
        f"{np.array_equal(out, flaky.transform(X))}"
    )
