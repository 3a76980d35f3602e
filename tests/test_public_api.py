import skbatch


def test_public_names():
    assert sorted(skbatch.__all__) == skbatch.__all__
    assert skbatch.__all__ == [
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
    for name in skbatch.__all__:
        assert hasattr(skbatch, name)


def test_version_string():
    assert isinstance(skbatch.__version__, str) and skbatch.__version__
