"""skbatch: batch inference for scikit-learn, in parallel, with progress."""

from skbatch._errors import SerialFallbackWarning
from skbatch._plan import CallReport
from skbatch._pool import start_workers
from skbatch._predictor import BatchedPredictor, BatchedTransformer
from skbatch._process import batch_process
from skbatch._profiles import forget_measurements

__version__ = "0.1.0.dev0"

__all__ = [
    "BatchedPredictor",
    "BatchedTransformer",
    "CallReport",
    "SerialFallbackWarning",
    "__version__",
    "batch_process",
    "forget_measurements",
    "start_workers",
]
