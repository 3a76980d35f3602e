"""Digests of training data by content, fast enough to key a fit cache.

Two inputs equal in values, dtypes, shape (and, for tables, columns, index
and missing-value masks) get the same digest however they were built: a
Fortran-ordered array and its C-ordered copy, a memmap and its copy, a
DataFrame built column by column and one read from a file. Sparse matrices
count as stored (class, format, duplicates), since those can change what a
fit returns.

Data buffers are hashed with XXH3 (128 bits): it runs at memory speed (1 GiB
of float64 in about 0.035 s here, a fifth of reading it back from a warm disk
cache; SHA-256 took 0.3 s on two threads, ``joblib.hash`` 1.4 s). It is not a
cryptographic hash: a cache keyed on it is safe from accidental collisions,
not from someone forging data to collide with a cached fit. The typed parts
around the buffers go through SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import types

import numpy as np
import xxhash

from skbatch._indexing import is_pandas, is_polars, is_sparse


def _buffer_digest(buffer) -> bytes:
    """Digest of a contiguous byte buffer."""
    return xxhash.xxh3_128(buffer).digest()


class _Digest:
    """Accumulates typed parts: a tag and a length go with every part, so
    different structures never hash alike."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def part(self, tag: str, data: bytes) -> None:
        self._hash.update(f"{tag}:{len(data)}:".encode())
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _add_array(digest: _Digest, array: np.ndarray) -> None:
    if np.ma.isMaskedArray(array):  # the mask and fill value change a fit
        digest.part("masked", repr(array.fill_value).encode())
        _add_array(digest, np.ma.getmaskarray(array))
        array = np.ma.getdata(array)
    array = np.asarray(array)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))  # same values
    # Records: field names and offsets too (``dtype.str`` is just '|V16').
    dtype = array.dtype.descr if array.dtype.names else array.dtype.str
    digest.part("dtype", repr(dtype).encode())
    digest.part("shape", repr(array.shape).encode())
    if array.dtype.hasobject:
        import pickle

        # Object arrays: their values, not their pointers.
        digest.part("objects", pickle.dumps(array.tolist(), protocol=5))
        return
    contiguous = np.ascontiguousarray(array)  # a copy only if not C-ordered
    # As bytes: any dtype (datetimes, records), any shape (empty, 0-d).
    digest.part("data", _buffer_digest(contiguous.reshape(-1).view(np.uint8)))


_SCALARS = (bool, int, float, complex, str, bytes)


def _is_uniform(items) -> bool:
    """True when ``np.asarray(items)`` keeps every value and type: items of
    one scalar type, or arrays of one dtype and shape. Mixed items (``[1,
    "1"]``, DataFrames) are hashed one by one, so conversion never makes two
    different lists alike."""
    if not items:
        return False
    first = items[0]
    if type(first) in _SCALARS:
        return all(type(item) is type(first) for item in items)
    if type(first) is np.ndarray and not first.dtype.hasobject:
        return all(
            type(item) is np.ndarray
            and item.dtype == first.dtype
            and item.shape == first.shape
            for item in items
        )
    return False


def _add(digest: _Digest, obj) -> None:
    if obj is None:
        digest.part("none", b"")
    elif is_sparse(obj):
        # As stored: the format and class decide what a fit_transform returns,
        # and duplicate entries are not always summed (Binarizer).
        cls = type(obj)
        digest.part("sparse", f"{cls.__module__}.{cls.__qualname__}".encode())
        digest.part("shape", repr(obj.shape).encode())
        if hasattr(obj, "indptr"):  # csr, csc, bsr
            parts = (obj.data, obj.indices, obj.indptr)
        else:
            coo = obj if obj.format == "coo" else obj.tocoo()
            parts = (
                (coo.data, *coo.coords)
                if hasattr(coo, "coords")
                else (coo.data, coo.row, coo.col)
            )
        for array in parts:
            _add_array(digest, array)
    elif is_pandas(obj):
        import pandas as pd

        digest.part("pandas", type(obj).__name__.encode())
        index = obj.index
        digest.part("index", f"{type(index).__name__}:{index.names!r}".encode())
        _add_array(digest, np.asarray(index))
        columns = [obj] if isinstance(obj, pd.Series) else [obj[c] for c in obj.columns]
        names = [obj.name] if isinstance(obj, pd.Series) else list(obj.columns)
        digest.part("columns", repr(names).encode())
        for column in columns:
            digest.part("column dtype", str(column.dtype).encode())
            if isinstance(column.dtype, pd.CategoricalDtype):
                digest.part("ordered", repr(column.cat.ordered).encode())
                _add_array(digest, column.cat.codes.to_numpy())
                _add_array(digest, np.asarray(column.cat.categories, dtype=object))
            else:
                if not isinstance(column.dtype, np.dtype):
                    # Extension arrays (nullable, Arrow) tell missing from NaN
                    # only in their mask; to_numpy() makes both NaN.
                    _add_array(digest, column.isna().to_numpy())
                _add_array(digest, column.to_numpy())
    elif is_polars(obj):
        digest.part("polars", type(obj).__name__.encode())
        frame = obj.to_frame() if hasattr(obj, "to_frame") and obj.ndim == 1 else obj
        digest.part("columns", repr(frame.columns).encode())
        for name in frame.columns:
            series = frame[name]
            digest.part("column dtype", str(series.dtype).encode())
            _add_array(digest, series.is_null().to_numpy())  # null is not NaN
            _add_array(digest, series.to_numpy())
    elif isinstance(obj, np.ndarray):
        if type(obj) not in (np.ndarray, np.memmap):  # np.matrix multiplies
            digest.part("array class", type(obj).__qualname__.encode())
        _add_array(digest, obj)
    elif isinstance(obj, (list, tuple)):
        digest.part(type(obj).__name__, str(len(obj)).encode())
        if _is_uniform(obj):
            _add_array(digest, np.asarray(obj))
        else:
            for item in obj:
                _add(digest, item)
    elif isinstance(obj, dict):
        # In order: DictVectorizer(sort=False) and friends keep it.
        digest.part("dict", str(len(obj)).encode())
        for key, value in obj.items():
            _add(digest, key)
            _add(digest, value)
    elif isinstance(obj, (set, frozenset)):  # iteration order: the hash seed's
        digest.part(type(obj).__name__, str(len(obj)).encode())
        for item in sorted(data_digest(item) for item in obj):
            digest.part("item", item.encode())
    else:
        import pickle

        digest.part(type(obj).__qualname__, pickle.dumps(obj, protocol=5))


def data_digest(*objs) -> str:
    """A hex digest of ``objs`` (arrays, DataFrames, sparse matrices, lists,
    dicts of them, scalars) by content.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(6.0).reshape(2, 3)
    >>> data_digest(X) == data_digest(np.asfortranarray(X))
    True
    >>> data_digest(X) == data_digest(X + 1)
    False
    """
    digest = _Digest()
    for obj in objs:
        _add(digest, obj)
    return digest.hexdigest()


#: Fitted attributes that hold a memory address, not a result: keyed, they
#: would make every fit of a FrozenEstimator(CountVectorizer) miss.
ADDRESS_ATTRIBUTES = frozenset({"_stop_words_id"})


def value_digest(value, is_library) -> str:
    """A digest of any value by content, whatever it holds: data as is,
    functions and classes by name (a code fingerprint walks their code),
    partials by their parts, user objects by their attributes, library
    objects (``is_library(module_name)``) pickled, and what cannot be pickled
    by its type. Never raises."""
    return data_digest(_state(value, is_library))


def _state(value, is_library, depth=0):
    """``value`` in a form ``data_digest`` hashes by content, whatever it
    holds: data as is, functions and classes by name (their code is walked
    separately), partials by their parts, user objects by their attributes,
    library objects pickled, and what cannot be pickled by its type."""
    if depth > 60:
        return "<too deep>"
    if value is None or isinstance(
        value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic)
    ):
        return value
    if isinstance(value, (types.FunctionType, type, types.BuiltinFunctionType)):
        return f"<{type(value).__name__} {getattr(value, '__qualname__', '')}>"
    if isinstance(value, types.ModuleType):
        return f"<module {value.__name__}>"
    if isinstance(value, (functools.partial, functools.partialmethod)):
        return (
            "partial",
            _state(value.func, is_library, depth + 1),
            _state(value.args, is_library, depth + 1),
            _state(value.keywords, is_library, depth + 1),
        )
    if isinstance(value, types.MethodType):
        return (
            "method",
            value.__func__.__qualname__,
            _state(value.__self__, is_library, depth + 1),
        )
    if isinstance(value, (list, tuple)):
        if value and type(value[0]) in _SCALARS and _is_uniform(value):
            return (type(value).__name__, value)  # hashed as one array: fast
        return (type(value).__name__, [_state(v, is_library, depth + 1) for v in value])
    if isinstance(value, (set, frozenset)):
        return (
            "set",
            sorted(data_digest(_state(v, is_library, depth + 1)) for v in value),
        )
    if isinstance(value, types.MappingProxyType):
        value = dict(value)
    if isinstance(value, dict):
        return (
            "dict",
            [
                (_state(k, is_library), _state(v, is_library, depth + 1))
                for k, v in value.items()
            ],
        )
    if type(value).__module__.split(".")[0] in ("pandas", "polars", "scipy"):
        return value  # tables and sparse matrices: hashed by content
    library = is_library(type(value).__module__)
    if library and not has_params(value):
        # A library object by its pickle, or (a lock, a thread, a file, a
        # weak dict) by its type alone: its attributes are that process's.
        try:
            return ("pickled", pickle.dumps(value, protocol=5))
        except Exception:
            return f"<{type(value).__module__}.{type(value).__qualname__}>"
    attributes = object_attributes(value)  # user objects, estimators
    if attributes is not None:
        state = {
            k: _state(v, is_library, depth + 1)
            for k, v in attributes.items()
            if k not in ADDRESS_ATTRIBUTES
        }
        return (type(value).__qualname__, state)
    try:
        return ("pickled", pickle.dumps(value, protocol=5))
    except Exception:  # a lock, a file: nothing to key but what it is
        return f"<{type(value).__module__}.{type(value).__qualname__}>"


def has_params(value) -> bool:
    try:
        return callable(value.get_params)
    except Exception:
        return False


def object_attributes(value) -> dict | None:
    """An object's attributes, ``__slots__`` included; None if it has none."""
    attributes = dict(getattr(value, "__dict__", None) or {})
    for klass in type(value).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if isinstance(slot, str) and slot not in ("__dict__", "__weakref__"):
                try:
                    attributes[slot] = getattr(value, slot)
                except Exception:  # an unset slot
                    continue
    if not attributes and not hasattr(value, "__dict__"):
        return None
    return attributes
