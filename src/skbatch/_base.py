"""The base class of skbatch's estimators."""

from sklearn.base import BaseEstimator


class SkbatchEstimator(BaseEstimator):
    """Base estimator whose HTML representation links to skbatch's API docs."""

    _doc_link_module = "skbatch"
    _doc_link_template = (
        "https://skbatch.readthedocs.io/en/latest/api/skbatch.{estimator_name}.html"
    )

    def _doc_link_url_param_generator(self, *args):
        return {"estimator_name": type(self).__name__}
