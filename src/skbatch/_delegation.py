"""What a meta-estimator borrows from the estimator it wraps: methods that
exist exactly when the wrapped one has them, its fitted attributes, its tags.

Shared by every skbatch meta-estimator, so that ``hasattr``, ``get_tags`` and
``model.coef_`` tell the same truth whichever wrapper a user picks.
"""

from __future__ import annotations

from copy import deepcopy

from sklearn.utils._tags import get_tags
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    _routing_enabled,
    process_routing,
)
from sklearn.utils.metaestimators import available_if


def estimator_has(attr):
    """``available_if`` check: the fitted estimator if there is one, else the
    unfitted one."""

    def check(self):
        return hasattr(getattr(self, "estimator_", self.estimator), attr)

    return check


def copy_inner_tags(tags, estimator):
    """``tags`` with the input, target and kind tags of ``estimator``."""
    inner = get_tags(estimator)
    tags.estimator_type = inner.estimator_type
    tags.input_tags = deepcopy(inner.input_tags)
    tags.target_tags = deepcopy(inner.target_tags)
    tags.classifier_tags = deepcopy(inner.classifier_tags)
    tags.regressor_tags = deepcopy(inner.regressor_tags)
    if inner.transformer_tags is not None:
        tags.transformer_tags = deepcopy(inner.transformer_tags)
    tags.non_deterministic = inner.non_deterministic
    return tags


def fitted_attribute(wrapper, fitted, name: str):
    """``getattr`` fallback: public fitted attributes (``coef_``,
    ``n_outputs_``, ...) come from ``fitted``, as they would from the
    wrapped estimator itself."""
    if fitted is not None and name.endswith("_") and not name.startswith("_"):
        try:
            return getattr(fitted, name)
        except AttributeError:
            pass
    raise AttributeError(f"{type(wrapper).__name__!r} object has no attribute {name!r}")


#: Methods whose metadata is routed to the same method of the wrapped estimator.
ROUTED_METHODS = (
    "fit",
    "fit_transform",
    "fit_predict",
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "score",
    "transform",
    "inverse_transform",
)


def route(owner, method: str, params: dict) -> dict:
    """The metadata ``owner.<method>`` passes on to the wrapped estimator."""
    if _routing_enabled():
        return process_routing(owner, method, **params).estimator[method]
    return params


def same_method_router(owner):
    """A router sending every method's metadata to the same method of
    ``owner.estimator``."""
    mapping = MethodMapping()
    for method in ROUTED_METHODS:
        mapping.add(caller=method, callee=method)
    return MetadataRouter(owner=owner).add(
        estimator=owner.estimator, method_mapping=mapping
    )


def delegated_method(method: str, summary: str, returns: str):
    """``owner.<method>(X, **params)`` calling the fitted estimator's, present
    exactly when the wrapped estimator has it. ``returns`` is the numpydoc
    Returns entry."""

    def call(self, X, **params):
        return getattr(self._fitted(), method)(X, **route(self, method, params))

    call.__name__ = call.__qualname__ = method
    call.__doc__ = f"""{summary}

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to the wrapped ``{method}`` (routed when metadata routing
            is enabled).

        Returns
        -------
        {returns}
        """
    return available_if(estimator_has(method))(call)


class WrapsEstimatorMixin:
    """The fitted attributes, metadata routing and tags of a meta-estimator
    whose ``_fitted()`` returns the fitted wrapped estimator."""

    @property
    def classes_(self):
        """Class labels of the fitted classifier."""
        return self._fitted().classes_

    @property
    def n_features_in_(self):
        """Number of features seen during fit."""
        return self._fitted().n_features_in_

    @property
    def feature_names_in_(self):
        """Names of features seen during fit."""
        return self._fitted().feature_names_in_

    def get_metadata_routing(self):
        """Get metadata routing of this object.

        Every method routes its metadata to the same method of the wrapped
        estimator.

        Returns
        -------
        routing : MetadataRouter
            A :class:`~sklearn.utils.metadata_routing.MetadataRouter`
            encapsulating routing information.
        """
        return same_method_router(self)

    def __sklearn_tags__(self):
        return copy_inner_tags(super().__sklearn_tags__(), self.estimator)
