"""The tools compared: each runs ``model.<method>(X)`` its own way."""

from __future__ import annotations

import numpy as np

N_JOBS = 2
#: The path skbatch took on each call in this process (see ``last_call_``).
SKBATCH_PATHS: list = []


def serial(model, X, method):
    return getattr(model, method)(X)


def _joblib(backend):
    def run(model, X, method):
        from joblib import Parallel, delayed

        chunks = np.array_split(X, N_JOBS)
        parts = Parallel(n_jobs=N_JOBS, backend=backend)(
            delayed(getattr(model, method))(chunk) for chunk in chunks
        )
        return np.concatenate(parts)

    return run


def tqdm_batch(model, X, method):
    from tqdm_batch import batch_process

    # tqdm_batch calls its function per item: give it row blocks, not rows.
    blocks = np.array_split(X, 64)
    parts = batch_process(blocks, getattr(model, method), n_workers=N_JOBS)
    return np.concatenate(parts)


def dask_ml(model, X, method):
    import dask
    import dask.array as da
    from dask_ml.wrappers import ParallelPostFit

    wrapped = ParallelPostFit(estimator=model)
    X_dask = da.from_array(X, chunks=(max(1, -(-len(X) // (4 * N_JOBS))), X.shape[1]))
    with dask.config.set(scheduler="threads", num_workers=N_JOBS):
        return getattr(wrapped, method)(X_dask).compute()


def mpire(model, X, method):
    from mpire import WorkerPool

    def predict(shared, block):
        return getattr(shared, method)(block)

    blocks = np.array_split(X, 64)
    with WorkerPool(n_jobs=N_JOBS, shared_objects=model) as pool:
        out = pool.map(predict, [(b,) for b in blocks], progress_bar=False)
    # mpire joins array results itself.
    return out if isinstance(out, np.ndarray) else np.concatenate(out)


def _skbatch(progress):
    def run(model, X, method):
        from sklearn.frozen import FrozenEstimator

        from skbatch import BatchedPredictor

        batched = BatchedPredictor(
            FrozenEstimator(model), n_jobs=N_JOBS, progress=progress
        )
        out = getattr(batched, method)(X)
        SKBATCH_PATHS.append(batched.last_call_.path)
        return out

    return run


TOOLS = {
    "serial": serial,
    "joblib-loky": _joblib("loky"),
    "joblib-threading": _joblib("threading"),
    "tqdm_batch": tqdm_batch,
    "dask-ml": dask_ml,
    "mpire": mpire,
    "skbatch": _skbatch(False),
    "skbatch+progress": _skbatch(True),
}
