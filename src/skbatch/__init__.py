"""skbatch: batch inference for scikit-learn, in parallel, with progress."""

from skbatch._caching import CachedEstimator, make_cached_pipeline
from skbatch._errors import (
    BatchTimeoutError,
    CacheWarning,
    SerialFallbackWarning,
    UnshippableModelError,
    WorkerDiedError,
    WorkerError,
)
from skbatch._fit_cache import CacheStats, FitCache
from skbatch._plan import CallReport
from skbatch._pool import start_workers
from skbatch._predictor import BatchedPredictor, BatchedTransformer
from skbatch._process import batch_process
from skbatch._profiles import forget_measurements

__version__ = "0.1.0.dev0"

__all__ = [
    "BatchTimeoutError",
    "BatchedPredictor",
    "BatchedTransformer",
    "CacheStats",
    "CacheWarning",
    "CachedEstimator",
    "CallReport",
    "FitCache",
    "SerialFallbackWarning",
    "UnshippableModelError",
    "WorkerDiedError",
    "WorkerError",
    "__version__",
    "batch_process",
    "forget_measurements",
    "make_cached_pipeline",
    "start_workers",
]
