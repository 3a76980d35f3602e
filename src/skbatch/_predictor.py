"""``BatchedPredictor`` and ``BatchedTransformer``: the scikit-learn face.

These classes hold parameters, fit a clone of the wrapped estimator, delegate
methods so that ``hasattr`` tells the truth, and copy the wrapped estimator's
tags. Execution itself lives in :mod:`skbatch._engine`.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import (
    MetaEstimatorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils._set_output import _safe_set_output
from sklearn.utils.metaestimators import available_if

from skbatch import _engine
from skbatch._base import SkbatchEstimator
from skbatch._delegation import (
    WrapsEstimatorMixin,
    estimator_has,
    fitted_attribute,
    route,
)
from skbatch._errors import SerialFallbackWarning
from skbatch._failures import check_failure_options
from skbatch._fit_cache import fit_into
from skbatch._indexing import num_rows
from skbatch._plan import CallReport
from skbatch._progress import single_call_bar
from skbatch._progress_display import validate_bar_options
from skbatch._splittable import not_row_wise_reason, row_wise_score_metric

#: The latest call's report of each meta-estimator. Kept outside the instance:
#: predict must not change an estimator's ``__dict__`` (scikit-learn checks it).
_LAST_CALLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Parameter combinations that passed validation (with the estimator's type).
_VALIDATED: set = set()


def _is_plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, np.generic))


#: Models inside a FrozenEstimator found fitted. Checking costs about 50
#: microseconds (as much as a small predict), a FrozenEstimator is often made
#: afresh for each call, and a fitted model stays fitted.
_FITTED_MODELS: weakref.WeakSet = weakref.WeakSet()


def _is_fitted_frozen(estimator) -> bool:
    if not isinstance(estimator, FrozenEstimator):
        return False
    model = estimator.estimator
    try:
        if model in _FITTED_MODELS:
            return True
    except TypeError:  # unhashable (defines __eq__ only): check every time
        return estimator.__sklearn_is_fitted__()
    if not estimator.__sklearn_is_fitted__():
        return False
    with contextlib.suppress(TypeError):  # cannot be weakly referenced
        _FITTED_MODELS.add(model)
    return True


def _display_name(estimator) -> str:
    """Class name shown in bars and notes; a FrozenEstimator shows its model's."""
    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    return type(estimator).__name__


class BatchedPredictor(WrapsEstimatorMixin, MetaEstimatorMixin, SkbatchEstimator):
    """Run an estimator's inference methods over batches of rows, in parallel.

    ``fit`` fits a clone of ``estimator`` (serially). ``predict``,
    ``predict_proba``, ``predict_log_proba``, ``decision_function``,
    ``score_samples``, ``transform`` and ``score`` exist exactly when the wrapped
    estimator has them, and return what it would return on the whole input:
    same values, dtype, shape, row order and container. The input is split into
    contiguous batches, one per worker by default, each processed in sub-chunks
    so memory stays bounded and progress moves smoothly.

    To batch-predict with a model you already trained, wrap it in
    :class:`sklearn.frozen.FrozenEstimator`; no ``fit`` is needed then::

        BatchedPredictor(FrozenEstimator(model), n_jobs=-1).predict(X_big)

    Parameters
    ----------
    estimator : estimator object
        The estimator or pipeline to wrap. Its inference methods must be
        row-wise: the output for a row depends only on that row.

    n_jobs : int, default=None
        Number of workers, the calling thread included. ``None`` means the
        ``n_jobs`` of a surrounding :func:`joblib.parallel_config`, else one
        per core; ``-1`` means one per core.

    batch_size : int, default=None
        Rows per chunk handed to a worker. ``None`` lets skbatch size chunks
        from what it measures on the first rows. This counts rows; it is not
        joblib's ``batch_size``.

    backend : str, default=None
        ``None`` lets skbatch choose, per call, between the calling thread
        alone, threads and worker processes, from measurements on the first
        rows (see the Notes). ``"threading"``, ``"loky"`` (processes) or
        ``"sequential"`` force that choice (a model that cannot be pickled
        then raises :class:`UnshippableModelError` naming the attribute in
        the way, where skbatch's own choice would run it in the calling
        thread); any other joblib backend
        (``"multiprocessing"``, one registered with joblib) runs the batches
        through ``joblib.Parallel``. A surrounding
        :func:`joblib.parallel_config` that sets a backend counts as asking
        for it.

    timeout : float, default=None
        Seconds one batch may run, counted from when it starts in its worker
        (not while it waits in a queue or workers start). A batch past it
        raises :class:`BatchTimeoutError` naming the batch and its rows; a
        worker process running it is killed. None: no limit.

    max_retries : int, default=0
        Times a failed batch (it raised, its worker process died, it ran past
        ``timeout``) runs again before its failure is raised. Its rows count
        once, in the output and on the bars.

    progress : bool or {"overall", "workers"}, default=False
        Draw a ``tqdm.auto`` progress bar counting completed rows: ``True`` or
        ``"overall"`` draws one bar, ``"workers"`` adds one bar per worker.
        Only the calling process draws; see the user guide's page on
        progress.

    progress_bar_kwargs : dict, default=None
        tqdm options for the bars: ``desc``, ``file``, ``position`` (the line
        of the overall bar; worker bars go below it), ``leave``, ``disable``,
        ``mininterval``, ``unit``, ``colour``, ... ``total``, ``initial`` and
        ``iterable`` are skbatch's to set.

    memory : str, path-like, joblib.Memory or FitCache, default=None
        Cache ``fit`` there, as :class:`CachedEstimator` does (the two share
        entries for the same wrapped estimator). None fits without caching.

    verbose : int, default=0
        Print what each call did, and why, when > 0 (and each cache hit or
        miss).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator`` (``estimator`` itself when it is a
        ``FrozenEstimator``).

    cache_hit_ : bool
        Whether the latest fit came from the cache (``memory``).

    cache_key_ : str or None
        The latest fit's cache key; None without ``memory`` or when the fit
        could not be keyed.

    last_call_ : CallReport
        What the latest batched call did, and why: the path chosen
        (``"direct"``, ``"in-process"``, ``"threads"``, ``"processes"``, ...),
        the measurements behind it, the rows each worker computed, how often
        the model was serialized and loaded. Present after the first call.

    classes_ : ndarray of shape (n_classes,)
        Class labels, for classifiers.

    n_features_in_ : int
        Number of features seen during ``fit``, when the estimator records it.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names seen during ``fit``, when the estimator records them.

    See Also
    --------
    BatchedTransformer : The same, shaped as a transformer for pipelines.

    Notes
    -----
    The first rows of every call run in the calling thread, and are checked to
    be row-wise. Unless a backend was asked for, a watcher thread meanwhile
    sees whether the model holds the GIL: if it does (pure Python), worker
    processes are used when enough work is left to pay for them; if not,
    threads, after the calling thread has timed chunks of growing size to
    size theirs. A model whose parallel run turned out slower than serial
    (one that already keeps every core busy) runs in the calling thread alone
    from its next call on. What the first call measured serves the model's
    next calls, which start their workers at once
    (:func:`skbatch.forget_measurements` forgets it). The calling thread
    always works too, so a call does not wait for worker processes to start.
    Workers and their native BLAS/OpenMP pools together use at most one
    thread per core. ``verbose`` and :attr:`last_call_` say what was chosen
    and why.

    Worker processes outlive the call and keep the model they loaded: a later
    call with the same, unchanged model neither sends nor loads it again.
    :func:`skbatch.start_workers` starts them ahead of the first call.

    When a batch raises, no batch starts after it and the error of the batch
    on the lowest rows (the one a serial loop would meet first) is raised: the
    estimator's own exception, with a note naming the batch and its rows. If
    the first rows fail (most bad input does), the estimator is called once
    on the whole input, so the error is exactly its own. A method that is not
    row-wise is also called once on the whole input, and returns its own
    result (with a :class:`~skbatch.SerialFallbackWarning`). The user guide's
    page on failures shows every message.

    ``score`` predicts in batches, then applies accuracy (classifiers) or R²
    (regressors). Estimators with any other ``score`` are scored serially.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from skbatch import BatchedPredictor
    >>> X, y = load_iris(return_X_y=True)
    >>> model = BatchedPredictor(KNeighborsClassifier(), n_jobs=2, batch_size=50)
    >>> model.fit(X, y).predict(X[:3])
    array([0, 0, 0])
    >>> model.score(X, y)
    0.966...
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit"])],
        "n_jobs": [Integral, None],
        "batch_size": [Integral, None],
        "backend": [str, None],
        "timeout": [Interval(Real, 0, np.inf, closed="right"), None],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "progress": ["boolean", StrOptions({"overall", "workers"})],
        "progress_bar_kwargs": [dict, None],
        "memory": "no_validation",  # resolve_memory says what is wrong
        "verbose": ["verbose"],
    }
    #: How calls run, not what fit computes: left out of fit cache keys.
    _run_only_params = (
        "n_jobs",
        "batch_size",
        "backend",
        "timeout",
        "max_retries",
        "progress",
        "progress_bar_kwargs",
        "memory",
        "verbose",
    )

    def __init__(
        self,
        estimator,
        *,
        n_jobs=None,
        batch_size=None,
        backend=None,
        timeout=None,
        max_retries=0,
        progress=False,
        progress_bar_kwargs=None,
        memory=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.n_jobs = n_jobs
        self.batch_size = batch_size
        self.backend = backend
        self.timeout = timeout
        self.max_retries = max_retries
        self.progress = progress
        self.progress_bar_kwargs = progress_bar_kwargs
        self.memory = memory
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    def _check_params(self):
        # Validation costs a tenth of a millisecond, as much as a small
        # predict: skip it for parameters already found valid. Only the
        # estimator's type matters to its constraint (it must have ``fit``).
        snapshot = (
            type(self),
            *tuple(
                (type(value), value if _is_plain(value) else None)
                for value in (
                    self.estimator,
                    self.n_jobs,
                    self.batch_size,
                    self.backend,
                    self.timeout,
                    self.max_retries,
                    self.progress,
                    self.progress_bar_kwargs,
                    self.verbose,
                )
            ),
        )
        if snapshot in _VALIDATED:
            return validate_bar_options(self.progress_bar_kwargs)
        self._validate_params()
        for name in ("n_jobs", "batch_size"):
            if isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(
                    f"{name} must be an int or None, got {getattr(self, name)!r}."
                )
        check_failure_options(self.timeout, self.max_retries)
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive number of rows or None, got "
                f"{self.batch_size!r}."
            )
        # Resolving the backend raises joblib's own error for an unknown backend
        # or n_jobs=0, now rather than at the first predict.
        _engine.resolve_n_workers(self.n_jobs, self.backend)
        options = validate_bar_options(self.progress_bar_kwargs)
        if len(_VALIDATED) > 256:
            _VALIDATED.clear()
        _VALIDATED.add(snapshot)
        return options

    def _fitted(self):
        if hasattr(self, "estimator_"):
            return self.estimator_
        if _is_fitted_frozen(self.estimator):
            return self.estimator
        if isinstance(self.estimator, FrozenEstimator):
            raise NotFittedError(
                f"This {type(self).__name__} wraps a FrozenEstimator whose "
                f"{type(self.estimator.estimator).__name__} scikit-learn does not "
                "see as fitted: fit it first. (scikit-learn checks for an "
                "attribute ending in '_' set by fit, such as n_features_in_; a "
                "custom estimator's fit must set one, or define "
                "__sklearn_is_fitted__.)"
            )
        raise NotFittedError(
            f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
            "with appropriate arguments first, or wrap an already fitted model in "
            "sklearn.frozen.FrozenEstimator to use it without fitting."
        )

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_") or _is_fitted_frozen(self.estimator)

    def _progress_mode(self):
        if isinstance(self.progress, str):
            return self.progress
        return "overall" if self.progress else None

    def _route(self, method, params):
        return route(self, method, params)

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None, **fit_params):
        """Fit a clone of the wrapped estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
                default=None
            Targets, if the estimator needs them.

        **fit_params : dict
            Passed to the wrapped estimator's ``fit`` (routed when metadata
            routing is enabled).

        Returns
        -------
        self : object
            The fitted meta-estimator.
        """
        self._check_params()
        self._fit_cached("fit", X, y, fit_params)
        return self

    def _fit_cached(self, method, X, y, fit_params):
        return fit_into(self, method, X, y, self._route("fit", fit_params))

    def _batched(self, method, X, params):
        bar_options = self._check_params()
        estimator = self._fitted()
        label = f"{_display_name(estimator)}.{method}"
        record = CallReport(label, None)
        _LAST_CALLS[self] = record
        n_rows = num_rows(X)
        # An input the engine calls directly needs no row-wise check: one call
        # on the whole input is the serial call.
        direct = self._progress_mode() is None and (
            not n_rows or n_rows < 2 * _engine.PROBE_ROWS
        )
        reason = None if direct else not_row_wise_reason(estimator, method)
        if reason is not None:
            record.path = "whole-input fallback"
            record.reasons.append(f"not row-wise: {reason}")
            warnings.warn(
                SerialFallbackWarning(
                    f"{label} ran as one call on the whole input, not in batches: "
                    f"{reason}. The result is the estimator's own."
                ),
                stacklevel=3,
            )
            if self._progress_mode() is None or not n_rows:
                return getattr(estimator, method)(X, **params)
            with single_call_bar(n_rows, label, bar_options) as done:
                result = getattr(estimator, method)(X, **params)
                done()
            return result
        return _engine.run(
            estimator,
            method,
            X,
            params,
            n_jobs=self.n_jobs,
            backend=self.backend,
            batch_size=self.batch_size,
            timeout=check_failure_options(self.timeout, self.max_retries),
            max_retries=self.max_retries,
            progress=self._progress_mode(),
            verbose=self.verbose,
            label=f"{_display_name(estimator)}.{method}",
            record=record,
            bar_options=bar_options,
        )

    @property
    def last_call_(self):
        """What the latest batched call did, and why (a ``CallReport``)."""
        try:
            return _LAST_CALLS[self]
        except (KeyError, TypeError):
            raise AttributeError(
                f"{type(self).__name__} has made no batched call yet: "
                "'last_call_' exists after predict, transform, ..."
            ) from None

    # ---------------------------------------------------------------- methods
    @available_if(estimator_has("predict"))
    def predict(self, X, **params):
        """Predict with the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``predict``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            What ``estimator.predict(X)`` returns.
        """
        return self._batched("predict", X, self._route("predict", params))

    @available_if(estimator_has("predict_proba"))
    def predict_proba(self, X, **params):
        """Class probabilities from the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``predict_proba``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes) or list of such arrays
            What ``estimator.predict_proba(X)`` returns.
        """
        return self._batched("predict_proba", X, self._route("predict_proba", params))

    @available_if(estimator_has("predict_log_proba"))
    def predict_log_proba(self, X, **params):
        """Log class probabilities from the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``predict_log_proba``.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            What ``estimator.predict_log_proba(X)`` returns.
        """
        return self._batched(
            "predict_log_proba", X, self._route("predict_log_proba", params)
        )

    @available_if(estimator_has("decision_function"))
    def decision_function(self, X, **params):
        """Decision function of the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``decision_function``.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            What ``estimator.decision_function(X)`` returns.
        """
        return self._batched(
            "decision_function", X, self._route("decision_function", params)
        )

    @available_if(estimator_has("score_samples"))
    def score_samples(self, X, **params):
        """Per-sample scores of the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``score_samples``.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            What ``estimator.score_samples(X)`` returns.
        """
        return self._batched("score_samples", X, params)

    @available_if(estimator_has("transform"))
    def transform(self, X, **params):
        """Transform with the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        **params : dict
            Passed to every call of the wrapped ``transform``.

        Returns
        -------
        X_out : ndarray, sparse matrix or DataFrame of shape (n_samples, ...)
            What ``estimator.transform(X)`` returns, in the same container.
        """
        return self._batched("transform", X, self._route("transform", params))

    @available_if(estimator_has("transform"))
    @_fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None, **fit_params):
        """Fit the wrapped estimator, then transform ``X``.

        When the wrapped estimator's ``fit_transform`` is scikit-learn's default
        (``fit`` then ``transform``), the transform runs in batches. An estimator
        with its own ``fit_transform`` (``Pipeline``, ``PCA``, ...) is called
        directly, since its result may differ from ``fit`` then ``transform``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,), default=None
            Targets, if the estimator needs them.

        **fit_params : dict
            Passed to the wrapped estimator's ``fit``.

        Returns
        -------
        X_out : ndarray, sparse matrix or DataFrame of shape (n_samples, ...)
            The transformed training data.
        """
        own = getattr(type(self.estimator), "fit_transform", None)
        if own is None or own is TransformerMixin.fit_transform:
            return self.fit(X, y, **fit_params).transform(X)
        self._check_params()
        return self._fit_cached("fit_transform", X, y, fit_params)

    @available_if(estimator_has("score"))
    def score(self, X, y=None, sample_weight=None, **params):
        """Score the wrapped estimator on ``X`` and ``y``.

        Accuracy (classifiers) and R² (regressors) are computed from batched
        predictions; any other ``score`` runs serially on the whole input.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input rows.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs), \
                default=None
            True targets.

        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        **params : dict
            Passed to the wrapped ``score``; when given, scoring runs serially.

        Returns
        -------
        score : float
            What ``estimator.score(X, y, sample_weight=sample_weight)`` returns.
        """
        estimator = self._fitted()
        params = self._route("score", params)
        metric = None if params else row_wise_score_metric(estimator)
        if metric is None:
            if sample_weight is not None:
                params["sample_weight"] = sample_weight
            return estimator.score(X, y, **params)
        y_pred = self._batched("predict", X, {})
        return float(metric(y, y_pred, sample_weight=sample_weight))

    # ------------------------------------------------------------- delegation
    def __getattr__(self, name):
        # Other fitted attributes (coef_, offset_, n_outputs_, ...) come from
        # the fitted estimator, as they would from the estimator itself.
        fitted = None
        if name not in ("estimator_", "last_call_", "cache_hit_", "cache_key_"):
            fitted = self.__dict__.get("estimator_")
            if fitted is None and _is_fitted_frozen(self.__dict__.get("estimator")):
                fitted = self.__dict__["estimator"]
        return fitted_attribute(self, fitted, name)


class BatchedTransformer(
    TransformerMixin, BatchedPredictor, auto_wrap_output_keys=None
):
    """A :class:`BatchedPredictor` shaped as a transformer, for pipeline steps.

    Adds ``fit_transform``, ``inverse_transform`` (when the wrapped estimator
    has it), ``get_feature_names_out`` and ``set_output`` to everything
    :class:`BatchedPredictor` offers.

    Parameters
    ----------
    estimator : estimator object
        The transformer (or pipeline) to wrap. Its ``transform`` must be
        row-wise.

    n_jobs : int, default=None
        Number of workers, the calling thread included; ``None`` means one per
        core unless a :func:`joblib.parallel_config` sets ``n_jobs``.

    batch_size : int, default=None
        Rows per chunk; ``None`` sizes chunks from measurements.

    backend : str, default=None
        ``None`` lets skbatch choose threads, processes or the calling thread
        alone; see :class:`BatchedPredictor`.

    timeout : float, default=None
        Seconds one batch may run once started; see :class:`BatchedPredictor`.

    max_retries : int, default=0
        Times a failed batch runs again; see :class:`BatchedPredictor`.

    progress : bool or {"overall", "workers"}, default=False
        Draw ``tqdm.auto`` progress bars counting completed rows.

    progress_bar_kwargs : dict, default=None
        tqdm options for the bars; see :class:`BatchedPredictor`.

    memory : str, path-like, joblib.Memory or FitCache, default=None
        Cache ``fit`` and ``fit_transform`` there; see
        :class:`CachedEstimator`.

    verbose : int, default=0
        Print what each call did, and why, when > 0.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator``.

    cache_hit_ : bool
        Whether the latest fit came from the cache (``memory``).

    cache_key_ : str or None
        The latest fit's cache key; None without ``memory`` or when the fit
        could not be keyed.

    last_call_ : CallReport
        What the latest batched call did, and why; see
        :class:`BatchedPredictor`.

    n_features_in_ : int
        Number of features seen during ``fit``, when the estimator records it.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names seen during ``fit``, when the estimator records them.

    See Also
    --------
    BatchedPredictor : Batched inference for any estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skbatch import BatchedTransformer
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> scaler = BatchedTransformer(StandardScaler(), n_jobs=2, batch_size=2)
    >>> scaler.fit_transform(X)[:2]
    array([[-1.46..., -1.46...],
           [-0.87..., -0.87...]])
    >>> scaler.get_feature_names_out()
    array(['x0', 'x1'], dtype=object)
    """

    # The same method as BatchedPredictor's, restated so that it comes before
    # TransformerMixin.fit_transform in the method resolution order.
    fit_transform = BatchedPredictor.__dict__["fit_transform"]

    @available_if(estimator_has("inverse_transform"))
    def inverse_transform(self, X, **params):
        """Inverse-transform with the wrapped estimator, batch by batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_out)
            Transformed rows.

        **params : dict
            Passed to every call of the wrapped ``inverse_transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            What ``estimator.inverse_transform(X)`` returns.
        """
        return self._batched(
            "inverse_transform", X, self._route("inverse_transform", params)
        )

    @available_if(estimator_has("get_feature_names_out"))
    def get_feature_names_out(self, input_features=None):
        """Output feature names of the wrapped transformer.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input feature names, as the wrapped ``get_feature_names_out`` takes.

        Returns
        -------
        feature_names_out : ndarray of str objects
            Transformed feature names.
        """
        return self._fitted().get_feature_names_out(input_features)

    def set_output(self, *, transform=None):
        """Set the output container of ``transform`` and ``fit_transform``.

        The setting is passed on to the wrapped estimator (and its fitted clone),
        which produces each batch's output; batches are then joined in the same
        container.

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
        fitted = getattr(self, "estimator_", None)
        if fitted is not None and fitted is not self.estimator:
            _safe_set_output(fitted, transform=transform)
        return self
