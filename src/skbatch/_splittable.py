"""Which wrapped estimators' methods can be split by rows, and how to score them.

skbatch checks row-wise-ness on every call's first rows (``_engine``); this
module holds what is known beforehand about scikit-learn estimators, seen
through ``FrozenEstimator``, pipelines and column/feature unions.
"""

from __future__ import annotations

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import Pipeline


def not_row_wise_reason(estimator):
    """Why ``estimator``'s methods cannot be split by rows, if known; else None.

    Catches scikit-learn estimators whose output for a row depends on the rows
    given with it. The check on every call's first rows only sees those rows;
    these estimators can differ only further on.

    >>> from sklearn.decomposition import NMF
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> not_row_wise_reason(make_pipeline(StandardScaler(), NMF())) is not None
    True
    >>> not_row_wise_reason(StandardScaler()) is None
    True
    """
    if isinstance(estimator, FrozenEstimator):
        return not_row_wise_reason(estimator.estimator)
    name = type(estimator).__name__
    if name in {"NMF", "MiniBatchNMF"}:
        return (
            f"{name}.transform starts from, and stops on, statistics of all the "
            "rows it is given"
        )
    if name == "IterativeImputer" and getattr(estimator, "sample_posterior", False):
        return "IterativeImputer(sample_posterior=True) draws random values in order"
    children = []
    if isinstance(estimator, Pipeline):
        children = [step for _, step in estimator.steps]
    elif hasattr(estimator, "transformer_list"):  # FeatureUnion
        children = [t for _, t in estimator.transformer_list]
    elif hasattr(estimator, "transformers"):  # ColumnTransformer
        fitted = getattr(estimator, "transformers_", estimator.transformers)
        children = [t for _, t, _ in fitted]
    for child in children:
        if hasattr(child, "get_params"):
            reason = not_row_wise_reason(child)
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
