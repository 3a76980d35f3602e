"""Edits that must change a fit's key, and reruns that must not.

Each case is a notebook cell defining ``EST``, written with a value that an
edit changes. The cell runs as Jupyter runs cells (in a ``__main__``-like
namespace); its key must be the same on a rerun and differ after the edit.
Collected from the ways caches have gone stale on real users.
"""

import functools
import sys
import types

import numpy as np
import pytest

from skbatch._fit_key import fit_key

HEAD = """
import functools, numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import FunctionTransformer
"""

CASES = {
    "method body": (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None): self.k_ = {}; return self\n"
        "EST = T()",
        2,
        3,
    ),
    "helper the method calls": (
        "def k(): return {}\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None): self.k_ = k(); return self\n"
        "EST = T()",
        2,
        3,
    ),
    "partial as func": (
        "def f(X, k): return X * k + {}\n"
        "EST = FunctionTransformer(functools.partial(f, k=2))",
        1,
        5,
    ),
    "global partial helper": (
        "def _i(X, k): return X * k + {}\n"
        "h = functools.partial(_i, k=2)\n"
        "EST = FunctionTransformer(lambda X: h(X))",
        0,
        1,
    ),
    "global np.vectorize": (
        "def _i(v): return v + {}\nvf = np.vectorize(_i)\n"
        "EST = FunctionTransformer(lambda X: vf(X))",
        0,
        1,
    ),
    "global ufunc": (
        "OP = np.{}\nEST = FunctionTransformer(lambda X: OP(X))",
        "log1p",
        "sqrt",
    ),
    "lru_cache helper": (
        "@functools.lru_cache\ndef k(): return {}\n"
        "EST = FunctionTransformer(lambda X: X * k())",
        2,
        3,
    ),
    "global constant": ("K = {}\nEST = FunctionTransformer(lambda X: X * K)", 2, 3),
    "global dict": (
        "CFG = {{'k': {}}}\nEST = FunctionTransformer(lambda X: X * CFG['k'])",
        2,
        3,
    ),
    "global list": ("W = [{}]\nEST = FunctionTransformer(lambda X: X * W[0])", 2, 3),
    "global array over 1000 values": (
        "W = np.zeros(5000); W[2500] = {}\n"
        "EST = FunctionTransformer(lambda X: X * W.sum())",
        1,
        7,
    ),
    "global enum member": (
        "import enum\nclass M(enum.Enum):\n    A = 1\n    B = 2\nMODE = M.{}\n"
        "EST = FunctionTransformer(lambda X: X * MODE.value)",
        "A",
        "B",
    ),
    "global object's attribute": (
        "class C: k = {}\nCFG = C()\nEST = FunctionTransformer(lambda X: X * CFG.k)",
        2,
        3,
    ),
    "global object's method": (
        "class H:\n    def run(self, X): return X + {}\nH_ = H()\n"
        "EST = FunctionTransformer(lambda X: H_.run(X))",
        0,
        1,
    ),
    "bound method as func": (
        "class H:\n    def _i(self, X): return X + {}\n"
        "    def run(self, X): return self._i(X)\n"
        "EST = FunctionTransformer(H().run)",
        0,
        1,
    ),
    "partial in kw_args": (
        "def _a(X, k): return X + k + {}\ndef ap(X, op): return op(X)\n"
        "EST = FunctionTransformer(ap, kw_args={{'op': functools.partial(_a, k=1)}})",
        0,
        1,
    ),
    "class-based decorator on fit": (
        "class deco:\n    def __init__(s, f): s.f = f\n"
        "    def __get__(s, o, t=None): return functools.partial(s.f, o)\n"
        "class T(TransformerMixin, BaseEstimator):\n    @deco\n"
        "    def fit(self, X, y=None): self.k_ = {}; return self\nEST = T()",
        2,
        3,
    ),
    "functools.wraps decorator": (
        "def deco(f):\n    @functools.wraps(f)\n"
        "    def inner(*a): return f(*a)\n    return inner\n"
        "class T(TransformerMixin, BaseEstimator):\n    @deco\n"
        "    def fit(self, X, y=None): self.k_ = {}; return self\nEST = T()",
        2,
        3,
    ),
    "available_if method": (
        "from sklearn.utils.metaestimators import available_if\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None): return self\n"
        "    @available_if(lambda self: True)\n"
        "    def transform(self, X): return X * {}\nEST = T()",
        2,
        3,
    ),
    "cached_property": (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    @functools.cached_property\n    def k(self): return {}\n"
        "    def fit(self, X, y=None): self.k_ = self.k; return self\nEST = T()",
        2,
        3,
    ),
    "partialmethod": (
        "def _k(self, v): return v\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    k = functools.partialmethod(_k, {})\n"
        "    def fit(self, X, y=None): self.k_ = self.k(); return self\nEST = T()",
        2,
        3,
    ),
    "nested class": (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    class _I:\n        def k(self): return {}\n"
        "    def fit(self, X, y=None): self.k_ = self._I().k(); return self\nEST = T()",
        2,
        3,
    ),
    "class held in a class attribute": (
        "class H:\n    def k(self): return {}\n"
        "class T(TransformerMixin, BaseEstimator):\n    helper = H\n"
        "    def fit(self, X, y=None): self.k_ = self.helper().k(); return self\n"
        "EST = T()",
        2,
        3,
    ),
    "class attribute object": (
        "class C:\n    def __init__(s, k): s.k = k\n"
        "class T(TransformerMixin, BaseEstimator):\n    CFG = C({})\n"
        "    def fit(self, X, y=None): self.k_ = self.CFG.k; return self\nEST = T()",
        2,
        3,
    ),
    "user object parameter's code": (
        "class S:\n    def k(self): return {}\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def __init__(self, s=None): self.s = s\n"
        "    def fit(self, X, y=None): self.k_ = self.s.k(); return self\n"
        "EST = T(S())",
        2,
        3,
    ),
    "singledispatch implementation": (
        "@functools.singledispatch\ndef f(X): return X\n"
        "@f.register(np.ndarray)\ndef _(X): return X * {}\n"
        "EST = FunctionTransformer(lambda X: f(X))",
        2,
        3,
    ),
    "user subclass of dict as parameter": (
        "class Cfg(dict):\n    def k(self): return {}\n"
        "EST = FunctionTransformer(lambda X, c: X * c.k(), kw_args={{'c': Cfg()}})",
        2,
        3,
    ),
    "dict key objects with equal reprs": (
        "class Key:\n    def __init__(s, w): s.w = w\n"
        "    def __repr__(s): return 'Key'\n"
        "EST = FunctionTransformer(lambda X, m: X, kw_args={{'m': {{Key({}): 1}}}})",
        1,
        5,
    ),
    "function attribute": (
        "def g(X): return X * g.k\ng.k = {}\nEST = FunctionTransformer(g)",
        2,
        3,
    ),
    "user parameter named memory": (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def __init__(self, memory=5): self.memory = memory\n"
        "    def fit(self, X, y=None): self.k_ = self.memory; return self\n"
        "EST = T(memory={})",
        2,
        3,
    ),
}


def cell_key(source, **fit_params):
    cell = types.ModuleType("__main__")
    cell.__dict__["__builtins__"] = __builtins__
    exec(compile(HEAD + source, "<cell>", "exec"), cell.__dict__)
    return fit_key(cell.EST, "fit", np.ones((3, 2)), None, fit_params)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_an_edit_changes_the_key_and_a_rerun_does_not(case):
    body, before, after = CASES[case]
    first = cell_key(body.format(before))
    assert cell_key(body.format(before)) == first
    assert cell_key(body.format(after)) != first


def test_an_unrelated_edit_and_attribute_names_keep_the_key():
    body = (
        "class Scale(TransformerMixin, BaseEstimator):\n"
        "    def __init__(self, factor=2.0): self.factor = factor\n"
        "    def fit(self, X, y=None): self.factor_ = self.factor; return self\n"
        "EST = Scale()\n"
    )
    # ``factor``, a loop variable in the notebook, is not what self.factor reads.
    keys = {cell_key(body + f"factor = {i}\nunrelated = {i}\n") for i in range(3)}
    assert len(keys) == 1


def test_callables_among_fit_parameters_count():
    def metric_v1(a):
        return a + 1

    def metric_v2(a):
        return a + 2

    body = (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None, fn=None): self.k_ = fn(1); return self\n"
        "EST = T()"
    )
    assert cell_key(body, fn=metric_v1) != cell_key(body, fn=metric_v2)
    assert cell_key(body, fn=lambda a: a) == cell_key(body, fn=lambda a: a)


def test_a_local_package_is_followed(tmp_path, monkeypatch):
    import importlib

    package = tmp_path / "localpkg"
    package.mkdir()
    (package / "__init__.py").write_text("from . import sub\nFACTOR = 2\n")
    (package / "sub.py").write_text("def scale():\n    return 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    body = (
        "import localpkg\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n"
        "        self.k_ = localpkg.FACTOR * localpkg.sub.scale(); return self\n"
        "EST = T()"
    )
    try:
        import localpkg

        first = cell_key(body)
        assert cell_key(body) == first
        localpkg.FACTOR = 3
        second = cell_key(body)
        assert second != first
        localpkg.sub.scale = lambda: 100
        assert cell_key(body) != second
    finally:
        for name in ("localpkg", "localpkg.sub"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def test_a_module_imported_inside_a_method_counts_by_its_code(tmp_path, monkeypatch):
    import importlib
    import os

    module = tmp_path / "insidemod.py"
    module.write_text("def k():\n    return 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    body = (
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None):\n"
        "        import insidemod\n        self.k_ = insidemod.k(); return self\n"
        "EST = T()"
    )
    try:
        first = cell_key(body)
        assert cell_key(body) == first
        module.write_text("def k():\n    return 3\n")
        os.utime(module, (0, module.stat().st_mtime + 5))  # not the old .pyc
        sys.modules.pop("insidemod")  # as in a new process (or a reload)
        importlib.invalidate_caches()
        assert cell_key(body) != first
    finally:
        sys.modules.pop("insidemod", None)


def test_libraries_used_through_their_module_count_by_version(monkeypatch):
    from skbatch import _code_fingerprint

    body = (
        "import joblib\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def fit(self, X, y=None): self.h_ = joblib.hash(X); return self\n"
        "EST = T()"
    )
    first = cell_key(body)
    real = _code_fingerprint._library_version

    @functools.cache
    def upgraded(name):
        return "99.0" if name.startswith("joblib") else real(name)

    monkeypatch.setattr(_code_fingerprint, "_library_version", upgraded)
    assert cell_key(body) != first


def test_code_that_imports_by_computed_name_cannot_be_keyed():
    from skbatch._fit_key import UnkeyableError

    body = (
        "import importlib\n"
        "class T(TransformerMixin, BaseEstimator):\n"
        "    def __init__(self, where='math'): self.where = where\n"
        "    def fit(self, X, y=None):\n"
        "        self.m_ = importlib.import_module(self.where); return self\n"
        "EST = T()"
    )
    with pytest.raises(UnkeyableError, match="computed name"):
        cell_key(body)


def test_vars_of_self_does_not_key_the_whole_module():
    body = (
        "class Demo(TransformerMixin, BaseEstimator):\n"
        "    def __init__(self, k=1): self.k = k\n"
        "    def fit(self, X, y=None): self.params_ = dict(vars(self)); return self\n"
        "EST = Demo()\n"
    )
    # START is never read by Demo: a timestamp that differs every run.
    assert cell_key(body + "START = 1.5\n") == cell_key(body + "START = 2.5\n")


def test_a_big_list_global_is_hashed_not_walked(monkeypatch):
    from skbatch import _code_fingerprint

    walked = []
    real = _code_fingerprint._Fingerprint.value

    def counting(self, value, depth=0):
        walked.append(type(value))
        return real(self, value, depth)

    monkeypatch.setattr(_code_fingerprint._Fingerprint, "value", counting)
    body = (
        "BIG = [float(i) for i in range(100_000)]\n"
        "EST = FunctionTransformer(lambda X: X * len(BIG))"
    )
    first = cell_key(body)
    assert walked.count(float) == 0  # the list's items are hashed, not walked
    assert cell_key(body.replace("100_000", "99_999")) != first
