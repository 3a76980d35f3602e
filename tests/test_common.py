"""scikit-learn's estimator checks, run over several wrapped estimators."""

import atexit
import shutil
import tempfile

from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skbatch import BatchedPredictor, BatchedTransformer, CachedEstimator, FitCache

ESTIMATORS = [
    BatchedPredictor(LogisticRegression()),
    BatchedPredictor(Ridge()),
    BatchedTransformer(StandardScaler()),
    BatchedPredictor(make_pipeline(StandardScaler(), KNeighborsClassifier())),
    # Two workers with small batches, so the checks also go through joblib.
    BatchedPredictor(LogisticRegression(), n_jobs=2, batch_size=7, backend="threading"),
    BatchedTransformer(StandardScaler(), n_jobs=2, batch_size=7),
    BatchedPredictor(KMeans(n_clusters=3, n_init=2, random_state=0)),
    BatchedPredictor(IsolationForest(n_estimators=10, random_state=0)),
]

# The checks fit many times on the same data: with a cache they exercise hits.
_FOLDER = tempfile.mkdtemp(prefix="skbatch-checks-")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
_CACHE = FitCache(_FOLDER)
ESTIMATORS += [
    CachedEstimator(LogisticRegression()),
    CachedEstimator(LogisticRegression(), memory=_CACHE),
    CachedEstimator(StandardScaler(), memory=_CACHE),
    CachedEstimator(make_pipeline(StandardScaler(), Ridge()), memory=_CACHE),
    CachedEstimator(KMeans(n_clusters=3, n_init=2, random_state=0), memory=_CACHE),
    BatchedPredictor(LogisticRegression(), n_jobs=2, memory=_CACHE),
    BatchedTransformer(StandardScaler(), memory=_CACHE),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
