"""Fingerprints of the code an estimator runs, so a cached fit is never
stale after an edit.

Code from an installed library (scikit-learn, numpy, anything under
site-packages or the standard library) counts by the library's name and
version. User code (a script's ``__main__``, a notebook cell, a local module
or package, an editable install) counts by what it does. That is the compiled
code of every function reachable from the estimator: methods of its class and
bases, nested classes and descriptors (properties, ``cached_property``,
``available_if``, decorators), callables among its parameters (partials,
bound methods, ``np.vectorize``, callable objects), nested estimators, and
whatever those read through their globals. Globals are read from the
bytecode: helper functions and classes are walked, module attribute chains
(``pkg.sub.helper``, ``pkg.FACTOR``) are followed, and other values (numbers,
strings, arrays, dicts, lists, objects) count by their content. A module
imported inside a function counts by its source file.

Line numbers and source text do not count, so an unrelated edit elsewhere in
the same cell or file leaves the fingerprint alone. An edit to a method, to a
helper it calls, or to a value it reads changes it.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import hashlib
import importlib
import importlib.util
import os
import site
import sys
import sysconfig
import types
from importlib import metadata

import numpy as np

from skbatch._fingerprint import data_digest, value_digest


def _library_paths() -> tuple[str, ...]:
    paths = {
        sysconfig.get_paths()[name]
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    with contextlib.suppress(Exception):  # site may be disabled (python -S)
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    return tuple(sorted(paths))


_LIBRARY_PATHS = _library_paths()
#: Folders where installers put libraries, wherever the prefix (Debian's
#: dist-packages, a --user install, a --target folder).
_LIBRARY_FOLDERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
#: Builtins through which code reaches code it does not name.
#: (``vars`` is not one: inside a function it gives locals, or its argument's.)
_DYNAMIC_BUILTINS = frozenset({"eval", "exec", "globals"})
#: Values that hold no code: containers of them are not walked item by item.
_SCALAR_TYPES = frozenset({bool, int, float, complex, str, bytes, type(None)})
_MAX_DEPTH = 60
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib")
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTRIBUTE_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def is_library_module(module_name: str | None) -> bool:
    if not module_name or module_name in ("__main__", "__mp_main__"):
        return False
    top = module_name.split(".")[0]
    if top == "skbatch":  # by version, even from a source checkout: its
        return True  # registries change as it runs, its entries' meaning not
    module = sys.modules.get(top)
    path = getattr(module, "__file__", None)
    if path is None:  # built-in modules, namespace packages
        return module is not None and top in sys.builtin_module_names
    return _is_library_path(path)


def _is_library_path(path: str) -> bool:
    return path.startswith(_LIBRARY_PATHS) or any(f in path for f in _LIBRARY_FOLDERS)


def _has(obj, name: str) -> bool:
    """``hasattr`` for objects whose ``__getattr__`` raises anything."""
    try:
        getattr(obj, name)
    except Exception:
        return False
    return True


@functools.cache
def _library_version(module_name: str) -> str:
    top = module_name.split(".")[0]
    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get(top), "__version__", sys.version.split()[0])


def _file_digest(path: str | None) -> str:
    try:
        with open(path, "rb") as f:
            return data_digest(f.read())
    except (OSError, TypeError):
        return "<no file>"


def _builtin_module(function) -> str | None:
    module = getattr(function, "__module__", None)
    if module is None:  # some C functions say only through their module object
        owner = getattr(function, "__self__", None)
        if isinstance(owner, types.ModuleType):
            module = owner.__name__
    if module is None and isinstance(function, np.ufunc):
        module = "numpy"
    return module


class HiddenCodeError(Exception):
    """Code that runs code no fingerprint can see: a module imported by a
    computed name, a ufunc made by ``np.frompyfunc``."""


class _Fingerprint:
    def __init__(self):
        self._hash = hashlib.sha256()
        self._seen: set[int] = set()
        self._keep: list = []  # objects whose ids are in _seen stay alive
        self._digests: dict[int, str] = {}

    def add(self, tag: str, text) -> None:
        data = text if isinstance(text, bytes) else repr(text).encode()
        self._hash.update(f"{tag}:{len(data)}:".encode())
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def _first_visit(self, obj) -> bool:
        if id(obj) in self._seen:
            return False
        self._seen.add(id(obj))
        self._keep.append(obj)
        return True

    def library(self, module_name: str | None) -> None:
        if module_name:
            top = module_name.split(".")[0]
            self.add("library", (top, _library_version(top)))

    # --------------------------------------------------------------- walking
    def value(self, value, depth=0) -> None:
        """The code reachable from ``value`` (a parameter, a global, a class
        attribute, a closure cell)."""
        if depth > _MAX_DEPTH:
            self.add("too deep", type(value).__qualname__)
            return
        kind = type(value)
        if kind is not type and not is_library_module(kind.__module__):
            self.cls(kind)  # a user subclass of dict, str, ndarray, NamedTuple
        if value is None or isinstance(
            value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic)
        ):
            return  # data: its content is keyed where it is read
        if isinstance(value, type):
            self.cls(value)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        elif isinstance(value, types.MethodType):
            self.function(value.__func__)
            self.value(value.__self__, depth + 1)
        elif isinstance(value, types.ModuleType):
            self.module(value)
        elif isinstance(value, (types.BuiltinFunctionType, np.ufunc)) or type(
            value
        ).__name__ in ("method-wrapper", "wrapper_descriptor", "method_descriptor"):
            module = _builtin_module(value)
            name = getattr(value, "__qualname__", getattr(value, "__name__", ""))
            if isinstance(value, np.ufunc) and "(vectorized)" in value.__name__:
                raise HiddenCodeError(
                    f"np.frompyfunc hides the function behind {value.__name__!r}; "
                    "use np.vectorize, whose function can be seen"
                )
            if value is __import__:
                raise HiddenCodeError(
                    "a module is imported by a computed name "
                    f"({name}), so the code it runs cannot be known in advance"
                )
            self.add("builtin", (module, name))
            if module and not is_library_module(module):  # compiled user code
                path = getattr(sys.modules.get(module), "__file__", None)
                self.add("native module", _file_digest(path))
            else:
                self.library(module)
        elif isinstance(value, (list, tuple, set, frozenset)):
            if self._first_visit(value):
                for item in value:
                    if type(item) not in _SCALAR_TYPES:  # a million floats: fast
                        self.value(item, depth + 1)
        elif isinstance(value, (dict, types.MappingProxyType)):
            if self._first_visit(value):
                for item in value.values():
                    if type(item) not in _SCALAR_TYPES:
                        self.value(item, depth + 1)
                self.value(getattr(value, "default_factory", None), depth + 1)
        elif isinstance(value, functools.partial):
            if self._first_visit(value):
                self.value(value.func, depth + 1)
                self.value(value.args, depth + 1)
                self.value(value.keywords, depth + 1)
        else:
            self.instance(value, depth)

    def instance(self, obj, depth) -> None:
        """An object: its class's code, and the code its attributes reach."""
        if not self._first_visit(obj):
            return
        cls = type(obj)
        self.cls(cls)
        if is_library_module(cls.__module__) and not _has(obj, "get_params"):
            # A library object (a descriptor, a wrapper, a splitter): its
            # version, and any code it wraps (available_if's function,
            # partialmethod's, lru_cache's __wrapped__).
            for attribute in getattr(obj, "__dict__", {}).values():
                if isinstance(
                    attribute,
                    (types.FunctionType, types.MethodType, functools.partial, type),
                ):
                    self.value(attribute, depth + 1)
            return
        if _has(obj, "get_params") and _has(obj, "fit"):
            try:
                attributes = obj.get_params(deep=False)
            except Exception:
                attributes = {}
        else:
            attributes = dict(getattr(obj, "__dict__", {}))
            for klass in cls.__mro__:
                for slot in getattr(klass, "__slots__", ()):
                    if isinstance(slot, str) and hasattr(obj, slot):
                        attributes[slot] = getattr(obj, slot)
        for _, attribute in sorted(attributes.items(), key=lambda item: item[0]):
            self.value(attribute, depth + 1)

    def module(self, module: types.ModuleType) -> None:
        """A module used as a value (passed on, read by ``getattr``, imported
        inside a function): a library's version, or every function, class
        and constant a user module defines."""
        if not self._first_visit(module):
            return
        if is_library_module(module.__name__):
            self.library(module.__name__)
            return
        self.add("user module", module.__name__)
        for name, member in sorted(vars(module).items(), key=lambda item: item[0]):
            if name.startswith("__"):
                continue
            if isinstance(member, (types.FunctionType, type)):
                if getattr(member, "__module__", None) == module.__name__:
                    self.value(member)
            elif isinstance(member, types.ModuleType):
                self.add("module attribute", (name, member.__name__))
            elif _is_constant(member):
                self.add("module constant", (name, _plain(member)))

    def cls(self, cls: type) -> None:
        if not self._first_visit(cls):
            return
        module = cls.__module__
        if is_library_module(module):
            self.library(module)
            self.add("class", f"{module}.{cls.__qualname__}")
            return
        self.add("user class", cls.__qualname__)
        if type(cls) is not type:
            self.cls(type(cls))  # a user metaclass: its attributes, properties
        path = getattr(sys.modules.get(module), "__file__", None) or ""
        if path.endswith(_NATIVE_SUFFIXES):  # compiled user code: its bytes
            self.add("native module", _file_digest(path))
        for base in cls.__mro__[1:]:
            if base is not object:
                self.cls(base)
        for name, member in sorted(vars(cls).items(), key=lambda item: item[0]):
            if name in ("__dict__", "__weakref__", "__module__", "__doc__"):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                self.add("property", name)
                for accessor in (member.fget, member.fset, member.fdel):
                    if accessor is not None:
                        self.value(accessor)
            elif isinstance(member, types.FunctionType):
                self.add("method", name)
                self.function(member)
            elif callable(member) or hasattr(member, "__get__"):
                # nested classes, decorators, cached_property, available_if,
                # partialmethod, lru_cache: whatever they wrap is walked
                self.add("member", name)
                self.value(member)
                self.data("member", name, member)  # partialmethod's arguments
            elif not (name.startswith("__") and name.endswith("__")):
                # Data; dunders are bookkeeping Python adds on its own
                # (``__slotnames__``, set by the first pickle of an instance).
                self.value(member)  # a user object's class
                self.data("attribute", name, member)

    def function(self, function) -> None:
        if not self._first_visit(function):
            return
        module = getattr(function, "__module__", None)
        if function is importlib.import_module:
            raise HiddenCodeError(
                "a module is imported by a computed name (importlib."
                "import_module), so the code it runs cannot be known in advance"
            )
        if is_library_module(module):
            self.add("library function", (module, function.__qualname__))
            self.library(module)
            return
        self.add("user function", function.__qualname__)
        self.code(function.__code__, function.__globals__)
        self.data("defaults", "", function.__defaults__)
        self.data("kwdefaults", "", function.__kwdefaults__)
        self.value(function.__defaults__)
        self.value(function.__kwdefaults__)
        for cell in function.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                self.add("closure", "<empty>")
                continue
            self.value(contents)
            self.data("closure", "", contents)
        if function.__dict__:  # f.k = 3, functools.wraps, singledispatch
            self.value(dict(function.__dict__))
            self.data("function attributes", "", dict(function.__dict__))

    def code(self, code: types.CodeType, globals_: dict) -> None:
        self.add("bytecode", code.co_code)
        self.add("names", code.co_names)
        self.add("varnames", code.co_varnames)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const, globals_)  # a nested function or lambda
            else:
                self.add("const", _plain(const))
        builtins = globals_.get("__builtins__", {})
        if isinstance(builtins, types.ModuleType):
            builtins = vars(builtins)
        missing = object()
        chain = None  # the value an attribute chain (pkg.sub.f) has reached
        consts: list = [None, None]  # the last two constants: import level, names
        for instruction in dis.get_instructions(code):
            op, name = instruction.opname, instruction.argval
            if op in _ATTRIBUTE_LOADS and chain is not None:
                if getattr(chain, "__name__", None) == "importlib":
                    self.value(getattr(chain, name, None))  # import_module
                    chain = None
                else:
                    chain = self.read(name, getattr(chain, name, missing))
                continue
            if chain is not None:  # a user module used as a value: all of it
                if not is_library_module(chain.__name__):
                    self.module(chain)
                chain = None
            if op in _GLOBAL_LOADS:
                target = globals_.get(name, missing)
                if target is missing:
                    target = builtins.get(name, missing)
                if target is missing:
                    self.add("unbound global", name)
                    continue
                if name in _DYNAMIC_BUILTINS and target is builtins.get(name):
                    self.whole_namespace(globals_)  # eval("helper(X)")
                chain = self.read(name, target)
            elif op == "IMPORT_NAME":
                level, names = consts
                self.imported(name, level, names, globals_)
            elif op == "LOAD_CONST":
                consts = [consts[1], name]
        if chain is not None and not is_library_module(chain.__name__):
            self.module(chain)

    def whole_namespace(self, globals_: dict) -> None:
        """Code that names code at run time (``eval``, ``globals()[k]``):
        every function, class and constant of its module."""
        self.add("dynamic", globals_.get("__name__"))
        for name, member in sorted(globals_.items(), key=lambda item: item[0]):
            if isinstance(member, (types.FunctionType, type)):
                self.value(member)
            elif _is_constant(member) and not name.startswith("__"):
                self.add("namespace constant", (name, _plain(member)))

    def read(self, name: str, target):
        """A global (or a module's attribute) the code reads; returns it when
        an attribute chain may go on from it (a user module)."""
        if isinstance(target, types.ModuleType):
            if is_library_module(target.__name__):
                self.library(target.__name__)
                return target if target.__name__ == "importlib" else None
            self.add("user module", target.__name__)
            return target
        if isinstance(target, (types.FunctionType, type)):
            self.value(target)
        elif not isinstance(target, (types.BuiltinFunctionType, np.ufunc)):
            self.value(target)
            self.data("global", name, target)
        else:
            self.value(target)
        return None

    def imported(self, name, level, names, globals_: dict) -> None:
        """``import x`` or ``from .x import y`` inside a function: a library
        by version, a user module by all it defines (imported now if the
        function has not run yet), and so each submodule named."""
        level = level if isinstance(level, int) else 0
        try:
            package = globals_.get("__package__") or None
            absolute = importlib.util.resolve_name("." * level + (name or ""), package)
        except (ImportError, ValueError, TypeError):
            self.add("unresolved import", (name, level))
            return
        targets = [absolute]
        if isinstance(names, tuple):
            targets += [f"{absolute}.{item}" for item in names if item != "*"]
        for target in targets:
            module = sys.modules.get(target)
            if module is None:
                try:
                    spec = importlib.util.find_spec(target)
                except (ImportError, ValueError, AttributeError):
                    spec = None
                if spec is None:
                    continue  # ``from pkg import function``: not a module
                if spec.origin and _is_library_path(spec.origin):
                    self.library(target)
                    continue
                try:
                    module = importlib.import_module(target)
                except Exception:
                    self.add("unimportable", (target, _file_digest(spec.origin)))
                    continue
            self.module(module)

    def data(self, tag: str, name: str, value) -> None:
        """The content of a value code reads: exact, not its repr (which
        elides long arrays and shows objects by address)."""
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            self.add(tag, (name, _plain(value)))
            return
        digest = self._digests.get(id(value))
        if digest is None:  # a big global read by many functions: hashed once
            digest = value_digest(value, is_library_module)
            self._digests[id(value)] = digest
            self._keep.append(value)
        self.add(tag, (name, digest))


def _is_constant(value) -> bool:
    """Numbers, text, and tuples or frozensets of them: what a module's
    settings look like. Walking a whole module keys these by value."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_is_constant(item) for item in value)
    return isinstance(value, np.generic)


def _plain(value) -> str:
    """A stable text for a code constant (no memory addresses)."""
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({', '.join(_plain(v) for v in value)})"
    if isinstance(value, (set, frozenset)):  # repr order follows the hash seed
        return f"{type(value).__name__}({', '.join(sorted(map(_plain, value)))})"
    text = repr(value)
    return text if " at 0x" not in text else f"<{type(value).__qualname__}>"


def code_fingerprint(*objects) -> str:
    """A hex digest of the code ``objects`` run (see the module's notes).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> a = code_fingerprint(FunctionTransformer(np.log1p))
    >>> a == code_fingerprint(FunctionTransformer(np.log1p))
    True
    >>> a == code_fingerprint(FunctionTransformer(np.sqrt))
    False
    """
    fingerprint = _Fingerprint()
    fingerprint.add("python", sys.version_info[:2])
    for obj in objects:
        fingerprint.value(obj)
    return fingerprint.hexdigest()
