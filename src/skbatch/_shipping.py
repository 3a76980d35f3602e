"""Which part of a model cannot be sent to worker processes.

Pickling a pipeline that holds a lock fails with "cannot pickle
'_thread.lock' object", which names neither the step nor the attribute. The
search here walks the model (parameters, fitted attributes, pipeline steps
by name, list and dict items) into the innermost part that still fails, so
the error can say ``Pipeline.steps['scale'].lock_``.
"""

from __future__ import annotations

import types

from skbatch._errors import UnshippableModelError
from skbatch._worker import cloudpickle


def _children(obj):
    """``(label, child)`` for the parts of ``obj`` a pickle holds."""
    if isinstance(obj, types.FunctionType):
        # cloudpickle sends a script's function with its closure and the
        # globals it reads.
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=True):
            try:
                yield f".<closure variable {name!r}>", cell.cell_contents
            except ValueError:  # an empty cell
                continue
        for name in code.co_names:
            if name in obj.__globals__:
                yield f".<global {name!r}>", obj.__globals__[name]
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            named = isinstance(item, tuple) and len(item) >= 2
            if named and isinstance(item[0], str):  # a pipeline step
                yield f"[{item[0]!r}]", item[1]
            else:
                yield f"[{i}]", item
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
        return
    attributes = dict(getattr(obj, "__dict__", None) or {})
    for klass in type(obj).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                attributes.setdefault(slot, getattr(obj, slot))
    for name, value in attributes.items():
        yield f".{name}", value


def unpicklable_part(obj) -> tuple[str, BaseException] | None:
    """The path to the innermost part of ``obj`` that cannot be pickled, and
    the error pickling it raised; None if ``obj`` pickles."""
    try:
        cloudpickle.dumps(obj)
        return None
    except Exception as exc:
        error = exc
    root = type(obj).__name__
    if isinstance(obj, types.FunctionType):
        root = obj.__qualname__
    path, current, seen = root, obj, {id(obj)}
    while True:
        for label, child in _children(current):
            if id(child) in seen:
                continue
            try:
                cloudpickle.dumps(child)
            except Exception as exc:
                path, current, error = path + label, child, exc
                seen.add(id(child))
                break
        else:  # no part of it fails alone: it is the culprit
            kind = type(current)
            return f"{path} (a {kind.__module__}.{kind.__qualname__})", error


def why_unshippable(model) -> str:
    """ "<path> (a <type>) cannot be pickled (<error>)", for messages. A
    wrapper naming its ``user_part`` (batch_process's function) is searched
    from that part."""
    found = unpicklable_part(getattr(model, "user_part", model))
    if found is None:  # the user's part pickles: its arguments, then?
        found = unpicklable_part(model)
    if found is None:
        return f"{type(model).__name__} cannot be pickled"
    where, error = found
    return f"{where} cannot be pickled ({type(error).__name__}: {error})"


def unshippable_error(label: str, why: str, what="model") -> UnshippableModelError:
    """The error for a model (or ``what``) that cannot be sent to worker
    processes."""
    return UnshippableModelError(
        f"{label}: the {what} cannot be sent to worker processes, because "
        f"{why}. Drop or recreate that attribute (a lock, an open file, a "
        "connection) before the call, or use backend='threading', which "
        f"shares the {what} instead of sending it."
    )
