"""Which wrapped estimators' methods can be split by rows, and how to score them.

skbatch checks row-wise-ness on every call's first rows (``_engine``); this
module holds what is known beforehand about scikit-learn estimators, wherever
they sit inside the wrapped estimator (pipelines, unions, searches, ...).
"""

from __future__ import annotations

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import Pipeline


def _inner_estimators(estimator):
    """Estimators held in ``estimator``'s parameters: pipeline steps, column
    and feature union parts, the ``estimator`` of search and calibration
    meta-estimators, and so on."""
    try:
        params = estimator.get_params(deep=False)
    except Exception:
        return
    for value in params.values():
        candidates = value if isinstance(value, (list, tuple)) else [value]
        for item in candidates:
            for inner in item if isinstance(item, tuple) else (item,):
                if hasattr(inner, "get_params") and not isinstance(inner, type):
                    yield inner


def not_row_wise_reason(estimator, method="transform"):
    """Why ``estimator.<method>`` cannot be split by rows, if known; else None.

    Catches scikit-learn estimators whose output for a row depends on the rows
    given with it, wherever they sit inside the wrapped estimator. The check on
    every call's rows only sees the first rows; these can differ further on.

    >>> from sklearn.decomposition import NMF
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> not_row_wise_reason(make_pipeline(StandardScaler(), NMF())) is not None
    True
    >>> not_row_wise_reason(NMF(), "inverse_transform") is None
    True
    >>> not_row_wise_reason(StandardScaler()) is None
    True
    """
    if isinstance(estimator, FrozenEstimator):
        return not_row_wise_reason(estimator.estimator, method)
    name = type(estimator).__name__
    if name in {"NMF", "MiniBatchNMF"} and method != "inverse_transform":
        return (
            f"{name}.transform starts from, and stops on, statistics of all the "
            "rows it is given"
        )
    if name == "IterativeImputer" and getattr(estimator, "sample_posterior", False):
        return "IterativeImputer(sample_posterior=True) draws random values in order"
    for inner in _inner_estimators(estimator):
        reason = not_row_wise_reason(inner, method)
        if reason:
            return reason
    return None


def row_wise_score_metric(estimator):
    """The metric behind ``estimator.score`` when it is computed from ``predict``.

    Accuracy for scikit-learn classifiers, R² for regressors, seen through
    ``FrozenEstimator`` and ``Pipeline``. None for anything else (clusterers,
    density estimators, custom ``score`` methods): those are scored serially.

    >>> from sklearn.linear_model import LinearRegression, LogisticRegression
    >>> row_wise_score_metric(LogisticRegression()).__name__
    'accuracy_score'
    >>> row_wise_score_metric(LinearRegression()).__name__
    'r2_score'
    """
    while True:
        if isinstance(estimator, FrozenEstimator):
            estimator = estimator.estimator
        elif (
            isinstance(estimator, Pipeline) and type(estimator).score is Pipeline.score
        ):
            estimator = estimator.steps[-1][1]
        else:
            break
    score = getattr(type(estimator), "score", None)
    if score is ClassifierMixin.score:
        return accuracy_score
    if score is RegressorMixin.score:
        return r2_score
    return None
