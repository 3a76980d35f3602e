"""Fingerprints of the code an estimator runs, so a cached fit is never
stale after an edit.

Code from an installed library (scikit-learn, numpy, anything outside the
user's own files) counts by the library's name and version. User code (a
script's ``__main__``, a notebook cell, a local module) counts by what it
does: the code objects of every function and method reachable from the
estimator (its class and bases, the callables among its parameters, nested
estimators, and the functions those call through their globals), with their
constants, names, defaults and closure values. Line numbers and source text
do not count, so an unrelated edit elsewhere in the same cell or file leaves
the fingerprint alone, while an edit to a method, to a helper it calls, or to
a constant it reads (a number, a string, a tuple, an array) changes it.
Mutable globals (lists, dicts, other objects) are left out: code updates them
as it runs.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import sysconfig
import types
from importlib import metadata

import numpy as np

from skbatch._fingerprint import data_digest

_LIBRARY_PATHS = tuple(
    {
        sysconfig.get_paths()[name]
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
)


def _is_library(module_name: str | None) -> bool:
    if not module_name or module_name in ("__main__", "__mp_main__"):
        return False
    module = sys.modules.get(module_name.split(".")[0])
    path = getattr(module, "__file__", None)
    if path is None:  # built-in modules
        return (
            module is not None and module_name.split(".")[0] in sys.builtin_module_names
        )
    return path.startswith(_LIBRARY_PATHS)


@functools.cache
def _library_version(module_name: str) -> str:
    top = module_name.split(".")[0]
    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(top), "__version__", sys.version.split()[0])


class _Fingerprint:
    def __init__(self):
        self._hash = hashlib.sha256()
        self._seen: set[int] = set()

    def add(self, tag: str, text) -> None:
        data = text if isinstance(text, bytes) else repr(text).encode()
        self._hash.update(f"{tag}:{len(data)}:".encode())
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    # --------------------------------------------------------------- walking
    def value(self, value, depth=0) -> None:
        """Code reachable from a parameter value."""
        if depth > 50 or id(value) in self._seen:
            return
        if isinstance(value, type):
            self.cls(value)
        elif isinstance(value, (types.FunctionType, types.MethodType)):
            self.function(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                self.value(item, depth + 1)
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                self.value(value[key], depth + 1)
        elif hasattr(value, "get_params") and hasattr(value, "fit"):
            self._seen.add(id(value))
            self.cls(type(value))
            for name, param in sorted(value.get_params(deep=False).items()):
                self.add("param", name)
                self.value(param, depth + 1)
        elif callable(value) and not isinstance(value, type):
            self.cls(type(value))  # a callable object: its class's code

    def cls(self, cls: type) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        if _is_library(cls.__module__):
            self.add(
                "library",
                (cls.__module__.split(".")[0], _library_version(cls.__module__)),
            )
            self.add("class", f"{cls.__module__}.{cls.__qualname__}")
            return
        self.add("user class", cls.__qualname__)
        for base in cls.__mro__[1:]:
            if base is not object:
                self.cls(base)
        for name, member in sorted(vars(cls).items()):
            if name in ("__dict__", "__weakref__", "__module__", "__doc__"):
                continue
            function = getattr(member, "__func__", member)
            if isinstance(member, property):
                function = member.fget
            if isinstance(function, types.FunctionType):
                self.add("method", name)
                self.function(function)
            elif not callable(member) and not (
                # Bookkeeping Python adds on its own (``__slotnames__``, set
                # by the first pickle of an instance), not behaviour.
                name.startswith("__") and name.endswith("__")
            ):
                self.add("attribute", (name, _plain(member)))

    def function(self, function) -> None:
        function = getattr(function, "__func__", function)
        if id(function) in self._seen:
            return
        self._seen.add(id(function))
        module = getattr(function, "__module__", None)
        if not isinstance(function, types.FunctionType) or _is_library(module):
            self.add(
                "library function", (module, getattr(function, "__qualname__", ""))
            )
            if module:
                self.add("library", (module.split(".")[0], _library_version(module)))
            return
        self.add("user function", function.__qualname__)
        self.code(function.__code__, function.__globals__)
        self.add("defaults", _plain(function.__defaults__))
        self.add("kwdefaults", _plain(function.__kwdefaults__))
        for cell in function.__closure__ or ():
            try:
                self.value(cell.cell_contents)
                self.add("closure", _plain(cell.cell_contents))
            except ValueError:  # an empty cell
                self.add("closure", "<empty>")

    def code(self, code: types.CodeType, globals_: dict) -> None:
        self.add("bytecode", code.co_code)
        self.add("names", code.co_names)
        self.add("varnames", code.co_varnames)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const, globals_)  # a nested function or lambda
            else:
                self.add("const", _plain(const))
        modules = []
        for name in code.co_names:  # globals it reads: helpers, constants
            target = globals_.get(name)
            if isinstance(target, (types.FunctionType, type)):
                self.value(target)
            elif isinstance(target, np.ndarray):
                self.add("global array", (name, data_digest(target)))
            elif _is_constant(target):
                self.add("global", (name, _plain(target)))
            elif isinstance(target, types.ModuleType) and not _is_library(
                target.__name__
            ):
                modules.append(target)
        for module in modules:  # ``helpers.clean(X)`` in a user module
            for name in code.co_names:
                target = getattr(module, name, None)
                if isinstance(target, (types.FunctionType, type)):
                    self.value(target)


def _is_constant(value) -> bool:
    """A value a global may hold that stands for a setting: numbers, text,
    and tuples or frozensets of them. Mutable globals (lists, dicts, objects)
    are left out: code often updates them as it runs (counters, caches)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_is_constant(item) for item in value)
    return isinstance(value, np.generic)


def _plain(value) -> str:
    """A stable text for a constant or default (no memory addresses)."""
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({', '.join(_plain(v) for v in value)})"
    if isinstance(value, (set, frozenset)):  # repr order follows the hash seed
        return f"{type(value).__name__}({', '.join(sorted(map(_plain, value)))})"
    if isinstance(value, (types.FunctionType, type)):
        return f"<{type(value).__name__} {value.__qualname__}>"
    text = repr(value)
    return text if " at 0x" not in text else f"<{type(value).__qualname__}>"


def code_fingerprint(estimator) -> str:
    """A hex digest of the code ``estimator`` runs (see the module's notes).

    Examples
    --------
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> a = code_fingerprint(FunctionTransformer(lambda X: X + 1))
    >>> b = code_fingerprint(FunctionTransformer(lambda X: X + 2))
    >>> a == b
    False
    """
    fingerprint = _Fingerprint()
    fingerprint.add("python", sys.version_info[:2])
    fingerprint.value(estimator)
    return fingerprint.hexdigest()
