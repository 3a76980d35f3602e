"""A cached fit is keyed by the code it runs: edits that matter change the
key, edits that do not leave it alone."""

import sys
import types

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skbatch._code_fingerprint import code_fingerprint

CELL = """
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

def helper(X):
    return X * 2

def unrelated():
    return "nothing to do with the model"

class Doubler(TransformerMixin, BaseEstimator):
    def __init__(self, offset=0):
        self.offset = offset

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return helper(X) + self.offset
"""


def _run_cell(source):
    """Run ``source`` as a notebook cell would: in ``__main__``-like module."""
    module = types.ModuleType("__main__")
    exec(compile(source, "<ipython-input-1>", "exec"), module.__dict__)
    return module


def _fingerprint_of(source):
    module = _run_cell(source)
    return code_fingerprint(make_pipeline(module.Doubler(), LogisticRegression()))


def test_the_same_cell_run_again_gives_the_same_fingerprint():
    assert _fingerprint_of(CELL) == _fingerprint_of(CELL)


def test_unrelated_edits_in_the_cell_leave_it_alone():
    edited = CELL.replace('"nothing to do with the model"', '"still nothing"')
    shifted = "# a comment\n\n\n" + CELL.replace("return self\n", "return self  # ok\n")
    assert _fingerprint_of(edited) == _fingerprint_of(CELL)
    assert _fingerprint_of(shifted) == _fingerprint_of(CELL)


def test_editing_a_method_or_a_helper_it_calls_changes_it():
    method = CELL.replace("helper(X) + self.offset", "helper(X) - self.offset")
    helper = CELL.replace("return X * 2", "return X * 3")
    assert _fingerprint_of(method) != _fingerprint_of(CELL)
    assert _fingerprint_of(helper) != _fingerprint_of(CELL)


def test_function_transformer_funcs_and_lambdas_count():
    def plus_one(X):
        return X + 1

    def plus_two(X):
        return X + 2

    assert code_fingerprint(FunctionTransformer(plus_one)) != code_fingerprint(
        FunctionTransformer(plus_two)
    )
    a = code_fingerprint(FunctionTransformer(lambda X: X * 10))
    b = code_fingerprint(FunctionTransformer(lambda X: X * 10))
    c = code_fingerprint(FunctionTransformer(lambda X: X * 11))
    assert a == b != c


def test_library_code_counts_by_version_not_by_parameters():
    import sklearn

    a = code_fingerprint(make_pipeline(StandardScaler(), LogisticRegression(C=1.0)))
    b = code_fingerprint(make_pipeline(StandardScaler(), LogisticRegression(C=9.0)))
    assert a == b  # parameters are keyed elsewhere; the code is the same
    other = code_fingerprint(make_pipeline(StandardScaler(), LogisticRegression()))
    assert other == a
    assert sklearn.__version__  # the version is part of what is hashed
    assert code_fingerprint(StandardScaler()) != code_fingerprint(LogisticRegression())


def test_modules_in_site_packages_are_libraries_and_local_ones_are_not(tmp_path):
    (tmp_path / "my_steps.py").write_text(
        "from sklearn.base import BaseEstimator\n"
        "class Step(BaseEstimator):\n"
        "    def fit(self, X, y=None):\n"
        "        return self\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import my_steps

        before = code_fingerprint(my_steps.Step())
        (tmp_path / "my_steps.py").write_text(
            "from sklearn.base import BaseEstimator\n"
            "class Step(BaseEstimator):\n"
            "    def fit(self, X, y=None):\n"
            "        self.seen_ = True\n"
            "        return self\n"
        )
        import importlib

        importlib.reload(my_steps)
        assert code_fingerprint(my_steps.Step()) != before
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("my_steps", None)
