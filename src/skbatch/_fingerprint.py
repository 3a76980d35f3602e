"""Digests of training data by content, fast enough to key a fit cache.

Two inputs equal in values, dtypes, shape (and, for tables, columns and
index) get the same digest however they were built: a Fortran-ordered array
and its C-ordered copy, a DataFrame built column by column and one read from
a file, a sparse matrix with unsorted indices and its canonical form. Large
buffers are hashed in blocks on several threads (``hashlib`` releases the GIL
while it hashes) and the block digests hashed again, so 1 GB of float64 costs
a fraction of reading it from a warm disk cache. SHA-256: CPUs hash it in
hardware (about 1.8 GB/s per core here, twice blake2b's), and a collision
would return a wrong model.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from skbatch._indexing import is_pandas, is_polars, is_sparse

#: Bytes hashed per block; blocks are hashed in parallel.
BLOCK_BYTES = 64 * 2**20
#: Threads hashing blocks (hashing is memory-bound beyond a few).
MAX_HASH_THREADS = 4


def _buffer_digest(buffer: memoryview) -> bytes:
    """Digest of a contiguous byte buffer, hashed block by block."""
    n = buffer.nbytes
    if n <= BLOCK_BYTES:
        return hashlib.sha256(buffer).digest()
    blocks = [buffer[i : i + BLOCK_BYTES] for i in range(0, n, BLOCK_BYTES)]
    threads = min(MAX_HASH_THREADS, os.cpu_count() or 1, len(blocks))

    def one(block):
        return hashlib.sha256(block).digest()

    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            digests = list(pool.map(one, blocks))
    else:
        digests = [one(block) for block in blocks]
    return hashlib.sha256(b"".join(digests)).digest()


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
    array = np.asarray(array)
    if array.dtype.byteorder not in "=|":
        array = array.astype(array.dtype.newbyteorder("="))  # same values
    digest.part("dtype", array.dtype.str.encode())
    digest.part("shape", repr(array.shape).encode())
    if array.dtype.hasobject:
        import pickle

        # Object arrays: their values, not their pointers.
        digest.part("objects", pickle.dumps(array.tolist(), protocol=5))
        return
    contiguous = np.ascontiguousarray(array)  # a copy only if not C-ordered
    digest.part("data", _buffer_digest(memoryview(contiguous).cast("B")))


def _add(digest: _Digest, obj) -> None:
    if obj is None:
        digest.part("none", b"")
    elif is_sparse(obj):
        canonical = obj.tocsr(copy=True)
        canonical.sum_duplicates()
        canonical.sort_indices()
        digest.part("sparse", repr(canonical.shape).encode())
        for array in (canonical.data, canonical.indices, canonical.indptr):
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
                _add_array(digest, column.cat.codes.to_numpy())
                _add_array(digest, np.asarray(column.cat.categories, dtype=object))
            else:
                _add_array(digest, column.to_numpy())
    elif is_polars(obj):
        digest.part("polars", type(obj).__name__.encode())
        frame = obj.to_frame() if hasattr(obj, "to_frame") and obj.ndim == 1 else obj
        digest.part("columns", repr(frame.columns).encode())
        for name in frame.columns:
            series = frame[name]
            digest.part("column dtype", str(series.dtype).encode())
            _add_array(digest, series.to_numpy())
    elif isinstance(obj, np.ndarray):
        _add_array(digest, obj)
    elif isinstance(obj, (list, tuple)):
        digest.part(type(obj).__name__, str(len(obj)).encode())
        try:
            array = np.asarray(obj)
        except (ValueError, TypeError):
            array = None
        if array is not None and not array.dtype.hasobject:
            _add_array(digest, array)
        else:
            for item in obj:
                _add(digest, item)
    elif isinstance(obj, dict):
        digest.part("dict", str(len(obj)).encode())
        for key in sorted(obj, key=repr):
            digest.part("key", repr(key).encode())
            _add(digest, obj[key])
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
