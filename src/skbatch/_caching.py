"""``CachedEstimator`` and ``make_cached_pipeline``: fits you can trust to
come back from disk.

The meta-estimator holds parameters, keys and runs its fit through
:func:`skbatch._fit_cache.fit_with_cache`, and delegates everything else to
the fitted estimator. Keys are made in :mod:`skbatch._fit_key`, entries kept
in :mod:`skbatch._cache_store`.
"""

from __future__ import annotations

from typing import ClassVar

from sklearn.base import MetaEstimatorMixin, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import HasMethods
from sklearn.utils._set_output import _safe_set_output
from sklearn.utils.metaestimators import available_if

from skbatch._base import SkbatchEstimator
from skbatch._delegation import (
    WrapsEstimatorMixin,
    delegated_method,
    estimator_has,
    fitted_attribute,
    route,
)
from skbatch._fit_cache import fit_into


def _can_fit_transform(self):
    inner = getattr(self, "estimator_", self.estimator)
    return hasattr(inner, "fit_transform") or hasattr(inner, "transform")


class CachedEstimator(WrapsEstimatorMixin, MetaEstimatorMixin, SkbatchEstimator):
    """Cache the fit of any estimator or pipeline on disk, safely.

    ``fit`` looks up the fit in ``memory``: when the same fit was done before,
    the fitted estimator comes back from disk; otherwise a clone of
    ``estimator`` is fitted and stored. "The same fit" means the same
    estimator code, parameters, training data (by content) and library
    versions; see the Notes. Every other method (``predict``, ``transform``,
    ``score``, ...) exists exactly when the wrapped estimator has it and
    calls the fitted one.

    Use it as a whole model, or as any step of a pipeline, the final step
    included: :func:`make_cached_pipeline` wraps every step. The wrapped
    estimator's parameters are reached through ``estimator__``, as in
    ``GridSearchCV(CachedEstimator(LogisticRegression()), {"estimator__C":
    [0.1, 1.0]})``.

    Parameters
    ----------
    estimator : estimator object
        The estimator or pipeline whose fit is cached.

    memory : str, path-like, joblib.Memory or FitCache, default=None
        Where fits are cached: a folder (entries go in its ``skbatch``
        subfolder), a :class:`joblib.Memory` (its location), or a
        :class:`FitCache` (which can also cap the size). None fits without
        caching.

    verbose : int, default=0
        Print each hit or miss, with the fit time and the cache's size, when
        > 0.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted estimator: a fitted clone of ``estimator``, or the one
        stored in the cache.

    cache_hit_ : bool
        Whether the latest fit came from the cache.

    cache_key_ : str or None
        The latest fit's cache key; None without ``memory`` or when the fit
        could not be keyed (a :class:`CacheWarning` said why). A key is made
        even when the folder cannot be written.

    classes_ : ndarray of shape (n_classes,)
        Class labels, for classifiers.

    n_features_in_ : int
        Number of features seen during ``fit``, when the estimator records it.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names seen during ``fit``, when the estimator records them.

    See Also
    --------
    FitCache : A cache folder with a size cap and statistics.
    make_cached_pipeline : A pipeline whose every step is cached.

    Notes
    -----
    The key covers:

    - the code: classes and functions from installed libraries by the
      library's version; user code (a script, a notebook cell, a local
      module) by the compiled code of every method and helper function it
      reaches, ``FunctionTransformer`` functions, partials and lambdas
      included, and by the globals they read, so an edit to any of them
      misses while an unrelated edit elsewhere in the same cell does not;
    - the parameters, nested estimators included, and any other state of the
      unfitted clone (``set_output``, metadata requests, the model inside a
      ``FrozenEstimator``), leaving out those of library estimators that
      only say how to run: ``n_jobs``, ``verbose``, ``memory``,
      ``pre_dispatch`` (your own estimators list theirs in a class attribute
      ``_run_only_params``);
    - ``X``, ``y`` and fit parameters (``sample_weight``, ...) by content:
      two DataFrames equal in values, dtypes, columns and index give the same
      key however they were built;
    - the versions of Python, numpy, scipy, scikit-learn and the data's
      library, and the scikit-learn settings that change a fit
      (``transform_output``, ...).

    An estimator with ``random_state=None`` is fitted once; later hits return
    that fit. Entries are verified when read: a damaged entry is reported
    with a :class:`CacheWarning`, removed and fitted again. A folder that
    cannot be written is reported once; fits are still returned.

    ``fit_transform`` and ``fit_predict`` cache their output with the fitted
    estimator, as ``Pipeline(memory=...)`` does, so a pipeline step that hits
    does not transform its training data again.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbatch import CachedEstimator
    >>> X, y = load_iris(return_X_y=True)
    >>> folder = tempfile.TemporaryDirectory()
    >>> pipe = make_pipeline(StandardScaler(), LogisticRegression())
    >>> model = CachedEstimator(pipe, memory=folder.name).fit(X, y)
    >>> model.cache_hit_, model.predict(X[:2])
    (False, array([0, 0]))
    >>> CachedEstimator(pipe, memory=folder.name).fit(X, y).cache_hit_
    True
    >>> folder.cleanup()
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit"])],
        "memory": "no_validation",  # resolve_memory says what is wrong
        "verbose": ["verbose"],
    }

    #: Where and how loudly to cache, not what the fit computes.
    _run_only_params = ("memory", "verbose")

    def __init__(self, estimator, *, memory=None, verbose=0):
        self.estimator = estimator
        self.memory = memory
        self.verbose = verbose

    def _fit_cached(self, method, X, y, fit_params):
        return fit_into(self, method, X, y, route(self, method, fit_params))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **fit_params):
        """Fit the wrapped estimator, or take the fit from the cache.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
                default=None
            Targets, if the estimator needs them.

        **fit_params : dict
            Passed to the wrapped estimator's ``fit`` (routed when metadata
            routing is enabled); part of the key.

        Returns
        -------
        self : object
            The fitted meta-estimator.
        """
        self._fit_cached("fit", X, y, fit_params)
        return self

    @available_if(_can_fit_transform)
    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit and transform, or take both from the cache.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,), default=None
            Targets, if the estimator needs them.

        **fit_params : dict
            Passed to the wrapped estimator's ``fit_transform``.

        Returns
        -------
        X_out : array-like of shape (n_samples, n_features_out)
            What the wrapped ``fit_transform`` returns.
        """
        return self._fit_cached("fit_transform", X, y, fit_params)

    @available_if(estimator_has("fit_predict"))
    @_fit_context(prefer_skip_nested_validation=False)
    def fit_predict(self, X, y=None, **fit_params):
        """Fit and predict, or take both from the cache.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,), default=None
            Targets, if the estimator needs them.

        **fit_params : dict
            Passed to the wrapped estimator's ``fit_predict``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            What the wrapped ``fit_predict`` returns.
        """
        return self._fit_cached("fit_predict", X, y, fit_params)

    def _fitted(self):
        try:
            return self.estimator_
        except AttributeError:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call "
                "'fit' with appropriate arguments first."
            ) from None

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_")

    predict = delegated_method(
        "predict",
        "Predict with the fitted estimator.",
        "y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)",
    )
    predict_proba = delegated_method(
        "predict_proba",
        "Class probabilities from the fitted estimator.",
        "proba : ndarray of shape (n_samples, n_classes)",
    )
    predict_log_proba = delegated_method(
        "predict_log_proba",
        "Log class probabilities from the fitted estimator.",
        "log_proba : ndarray of shape (n_samples, n_classes)",
    )
    decision_function = delegated_method(
        "decision_function",
        "Decision function of the fitted estimator.",
        "scores : ndarray of shape (n_samples,) or (n_samples, n_classes)",
    )
    score_samples = delegated_method(
        "score_samples",
        "Per-sample scores of the fitted estimator.",
        "scores : ndarray of shape (n_samples,)",
    )
    transform = delegated_method(
        "transform",
        "Transform with the fitted estimator.",
        "X_out : array-like of shape (n_samples, n_features_out)",
    )
    inverse_transform = delegated_method(
        "inverse_transform",
        "Inverse-transform with the fitted estimator.",
        "X_original : array-like of shape (n_samples, n_features)",
    )

    @available_if(estimator_has("score"))
    def score(self, X, y=None, **params):
        """Score the fitted estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
                default=None
            True targets.

        **params : dict
            Passed to the wrapped ``score`` (``sample_weight``, ...).

        Returns
        -------
        score : float
            What the fitted estimator's ``score`` returns.
        """
        return self._fitted().score(X, y, **route(self, "score", params))

    @available_if(estimator_has("get_feature_names_out"))
    def get_feature_names_out(self, input_features=None):
        """Output feature names of the fitted transformer.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input feature names.

        Returns
        -------
        feature_names_out : ndarray of str objects
            Transformed feature names.
        """
        return self._fitted().get_feature_names_out(input_features)

    @available_if(_can_fit_transform)
    def set_output(self, *, transform=None):
        """Set the output container of the wrapped transformer.

        The setting is part of the cache key: a fit stored for NumPy output
        is not returned for pandas output.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"}, default=None
            Output container; None leaves the configuration unchanged.

        Returns
        -------
        self : estimator instance
            This estimator.
        """
        _safe_set_output(self.estimator, transform=transform)
        if hasattr(self, "estimator_"):
            _safe_set_output(self.estimator_, transform=transform)
        return self

    def __getattr__(self, name):
        fitted = None if name == "estimator_" else self.__dict__.get("estimator_")
        return fitted_attribute(self, fitted, name)


def _step_names(estimators):
    names = [e if isinstance(e, str) else type(e).__name__.lower() for e in estimators]
    repeated = {name for name in names if names.count(name) > 1}
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in repeated:
            seen[name] = seen.get(name, 0) + 1
            names[i] = f"{name}-{seen[name]}"
    return names


def make_cached_pipeline(*steps, memory, verbose=False, cache_verbose=0):
    """A :class:`~sklearn.pipeline.Pipeline` whose every step is a
    :class:`CachedEstimator`, the final one included.

    Each step is keyed on its own code, parameters and input, so after an
    edit only the edited step refits, and the steps after it only if its
    output changed. ``Pipeline(memory=...)`` caches neither the final step
    nor across code edits. Step parameters gain an ``estimator__`` level:
    ``logisticregression__estimator__C``.

    Parameters
    ----------
    *steps : list of estimators
        The steps, as for :func:`~sklearn.pipeline.make_pipeline`. Steps are
        named after the estimators they wrap. ``"passthrough"`` and None are
        kept as they are.

    memory : str, path-like, joblib.Memory or FitCache
        Where fits are cached; see :class:`CachedEstimator`.

    verbose : bool, default=False
        The pipeline's own ``verbose``: time each step's fit.

    cache_verbose : int, default=0
        Each step's ``verbose``: print its hits and misses.

    Returns
    -------
    pipeline : Pipeline

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbatch import make_cached_pipeline
    >>> X, y = load_iris(return_X_y=True)
    >>> folder = tempfile.TemporaryDirectory()
    >>> pipe = make_cached_pipeline(
    ...     StandardScaler(), LogisticRegression(), memory=folder.name
    ... )
    >>> [name for name, _ in pipe.steps]
    ['standardscaler', 'logisticregression']
    >>> pipe.fit(X, y).score(X, y)
    0.97...
    >>> pipe.set_params(logisticregression__estimator__C=0.1).fit(X, y)[-1].cache_hit_
    False
    >>> pipe[0].cache_hit_  # the scaler's fit came from the cache
    True
    >>> folder.cleanup()
    """
    inner = [
        step.estimator if isinstance(step, CachedEstimator) else step for step in steps
    ]
    wrapped = [
        step
        if step is None or isinstance(step, (str, CachedEstimator))
        else CachedEstimator(step, memory=memory, verbose=cache_verbose)
        for step in steps
    ]
    return Pipeline(
        list(zip(_step_names(inner), wrapped, strict=True)), verbose=verbose
    )
