"""The key of a fit: everything that decides what ``fit`` produces.

A key covers the estimator's code (:mod:`skbatch._code_fingerprint`), its
state (class, parameters with nested estimators, and whatever else it holds:
a ``set_output`` setting, metadata requests, the fitted model inside a
``FrozenEstimator``), the training data by content
(:mod:`skbatch._fingerprint`), the scikit-learn settings that change a fit,
and the versions of Python, numpy, scipy, scikit-learn and the data's own
library. Parameters that only say how to run (``n_jobs``, ``verbose``,
``memory``, ``pre_dispatch``, skbatch's execution options) are left out, so
changing them keeps the cache.

When something cannot be keyed reliably (an object that cannot be pickled
among the parameters, say), :class:`UnkeyableError` says what, and the fit
runs uncached: a key that might match a different fit is never made.
"""

from __future__ import annotations

import functools
import pickle
import platform
import sys
import types
from importlib import metadata

import numpy as np
import sklearn

from skbatch._code_fingerprint import code_fingerprint, is_library_module
from skbatch._fingerprint import (
    ADDRESS_ATTRIBUTES,
    data_digest,
    has_params,
    object_attributes,
)

#: Bumped when what a key covers changes, so old entries are never matched.
KEY_FORMAT = "skbatch-fit-key-4"

#: Parameters that say how to run a fit, not what it computes.
RUN_ONLY_PARAMS = frozenset({"n_jobs", "verbose", "memory", "pre_dispatch"})

#: scikit-learn settings that change what a fit returns.
_RESULT_SETTINGS = (
    "assume_finite",
    "array_api_dispatch",
    "enable_metadata_routing",
    "skip_parameter_validation",
    "sparse_interface",
    "transform_output",
)


class UnkeyableError(Exception):
    """A fit that cannot be keyed reliably; the message says why."""


@functools.cache
def _version(module_name: str) -> str:
    try:
        return metadata.version(module_name)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(module_name), "__version__", "?")


def _environment(*data) -> tuple:
    libraries = {"numpy", "scipy", "scikit-learn"}
    for obj in data:  # pandas, polars, ...: conversion rules change with them
        module = type(obj).__module__.split(".")[0]
        if module not in ("builtins", "numpy"):
            libraries.add(module)
    config = sklearn.get_config()
    return (
        sys.version_info[:3],
        platform.machine(),
        tuple((name, _version(name)) for name in sorted(libraries)),
        tuple((name, repr(config.get(name))) for name in _RESULT_SETTINGS),
    )


def _describe(value, where: str, depth: int = 0):
    """A structure ``data_digest`` hashes, standing for ``value``'s effect on
    a fit. Code is keyed separately; this covers values and state."""
    if depth > 100:
        raise UnkeyableError(f"{where} nests too deeply to be keyed")
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        return value
    if isinstance(value, type):  # before estimators: a class has get_params too
        return ("class", f"{value.__module__}.{value.__qualname__}")
    if has_params(value) and callable(getattr(value, "fit", None)):
        return _describe_estimator(value, where, depth)
    if isinstance(value, (list, tuple)):
        return (
            type(value).__name__,
            [_describe(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)],
        )
    if isinstance(value, dict):  # keys by content too: reprs can collide
        return (
            "dict",
            [
                (_describe(k, f"{where} key", depth + 1),
                 _describe(v, f"{where}[{k!r}]", depth + 1))
                for k, v in value.items()
            ],
        )  # fmt: skip
    if isinstance(value, (set, frozenset)):  # iteration order follows the hash seed
        items = [_describe(v, where, depth + 1) for v in value]
        return ("set", sorted(items, key=data_digest))
    if isinstance(value, np.random.RandomState):
        return ("RandomState", value.get_state(legacy=False))
    if isinstance(value, np.random.Generator):
        return ("Generator", value.bit_generator.state)
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        # The code is in the code fingerprint; its data is here.
        closure = [
            _describe(cell.cell_contents, f"{where} closure", depth + 1)
            for cell in getattr(value, "__closure__", None) or ()
            if _cell_is_set(cell)
        ]
        return (
            "function",
            getattr(value, "__module__", None),
            getattr(value, "__qualname__", repr(value)),
            _describe(getattr(value, "__defaults__", None), where, depth + 1),
            _describe(getattr(value, "__kwdefaults__", None), where, depth + 1),
            closure,
        )
    if isinstance(value, types.MethodType):
        return ("method", value.__func__.__qualname__, _describe(value.__self__, where))
    if isinstance(value, functools.partial):
        return (
            "partial",
            _describe(value.func, f"{where}.func", depth + 1),
            _describe(value.args, f"{where}.args", depth + 1),
            _describe(value.keywords, f"{where}.keywords", depth + 1),
        )
    module = type(value).__module__.split(".")[0]
    if module in ("pandas", "polars", "scipy"):
        return value  # tables, sparse matrices: data_digest hashes their content
    if (
        not is_library_module(type(value).__module__)
        and hasattr(value, "__dict__")
        and not _pickles_its_own_way(type(value))
    ):
        # A user object (a splitter, a strategy): by its attributes, which
        # need no importable class, as a notebook's classes may not be.
        return (
            "object",
            type(value).__qualname__,
            {
                name: _describe(attribute, f"{where}.{name}", depth + 1)
                for name, attribute in vars(value).items()
            },
        )
    try:
        return ("pickled", type(value).__qualname__, pickle.dumps(value, protocol=5))
    except Exception as exc:
        raise UnkeyableError(
            f"{where} (a {type(value).__name__}) cannot be pickled, so its "
            f"effect on the fit cannot be keyed ({type(exc).__name__}: {exc})"
        ) from None


def _pickles_its_own_way(cls) -> bool:
    """A class that says how it is pickled (or that it cannot be) means its
    attributes are not the whole story: a connection, a file handle."""
    return any(
        getattr(cls, name, None) is not getattr(object, name, None)
        for name in ("__reduce__", "__reduce_ex__", "__getstate__")
    )


def _cell_is_set(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _describe_estimator(estimator, where: str, depth: int):
    try:
        params = estimator.get_params(deep=False)
    except Exception as exc:
        raise UnkeyableError(
            f"{where}.get_params() failed ({type(exc).__name__}: {exc})"
        ) from None
    # A user's own estimator may give ``verbose`` or ``memory`` a meaning of
    # its own: only library estimators' run-only parameters are left out.
    ignored = set(getattr(estimator, "_run_only_params", ()))
    if is_library_module(type(estimator).__module__):
        ignored |= RUN_ONLY_PARAMS
    kept = {
        name: _describe(value, f"{where}.{name}", depth + 1)
        for name, value in params.items()
        if name not in ignored
    }
    # Anything else it holds (fitted attributes of a FrozenEstimator's model,
    # set_output and metadata request settings) may change the fit too.
    state = {
        name: _describe(value, f"{where}.{name}", depth + 1)
        for name, value in (object_attributes(estimator) or {}).items()
        if name not in params and name not in ADDRESS_ATTRIBUTES
    }
    cls = type(estimator)
    return ("estimator", f"{cls.__module__}.{cls.__qualname__}", kept, state)


def fit_key(estimator, method: str, X, y=None, fit_params=None) -> str:
    """The cache key of ``estimator.<method>(X, y, **fit_params)``.

    Raises :class:`UnkeyableError` when the fit cannot be keyed reliably.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.arange(8.0).reshape(4, 2), np.array([0, 0, 1, 1])
    >>> a = fit_key(LogisticRegression(n_jobs=1), "fit", X, y)
    >>> a == fit_key(LogisticRegression(n_jobs=4), "fit", X, y)
    True
    >>> a == fit_key(LogisticRegression(C=0.5), "fit", X, y)
    False
    """
    fit_params = fit_params or {}
    name = type(estimator).__name__
    try:
        description = _describe(estimator, name)
        parameters = _describe(fit_params, "the fit parameters")
    except UnkeyableError:
        raise
    except Exception as exc:  # a __getattr__ that raises, a property that fails
        raise UnkeyableError(
            f"{name}'s parameters cannot be read to key the fit "
            f"({type(exc).__name__}: {exc})"
        ) from None
    try:  # callables among the fit parameters run too
        code = code_fingerprint(estimator, fit_params)
    except Exception as exc:  # a class whose code cannot be walked
        raise UnkeyableError(
            f"the code of {name} cannot be fingerprinted ({type(exc).__name__}: {exc})"
        ) from None
    try:
        data = data_digest(X, y, parameters)
    except Exception as exc:
        raise UnkeyableError(
            f"the training data cannot be hashed ({type(exc).__name__}: {exc})"
        ) from None
    return data_digest(
        KEY_FORMAT,
        method,
        code,
        data,
        _environment(X, y, *fit_params.values()),
        description,
    )
