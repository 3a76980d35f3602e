"""The ``skbatch`` command, run in-process on small inputs."""

import subprocess
import sys

import numpy as np
import pytest

from skbatch._cli import main
from skbatch._demo import PythonNearestCentroid, demo_pipelines, make_digit_queries


def test_demo_runs_and_reports(capsys):
    status = main(["demo", "--rows", "3000", "--python-rows", "500", "--n-jobs", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "identical to serial" in out
    table = out[out.index("pipeline") :]
    assert "scaler+knn" in table and "python centroid" in table
    assert "3,000" in table and "500" in table
    assert table.count("yes") == 2


def test_demo_progress_none(capsys):
    assert main(["demo", "--rows", "300", "--progress", "none", "--n-jobs", "1"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--rows", "0"], ">= 1"),
        (["demo", "--rows", "many"], "whole number"),
        (["demo", "--n-jobs", "0"], "no meaning"),
        (["demo", "--progress", "loud"], "invalid choice"),
    ],
)
def test_bad_arguments_are_explained(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "skbatch", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("skbatch ")


def test_queries_are_real_digits_and_reproducible():
    X, y = make_digit_queries(2000, random_state=3)
    X2, y2 = make_digit_queries(2000, random_state=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    knn = demo_pipelines()["scaler+knn"]
    # Derived images still look like their digit.
    assert (knn.predict(X) == y).mean() > 0.9


def test_python_centroid_matches_a_vectorised_computation():
    X, y = make_digit_queries(300)
    model = PythonNearestCentroid().fit(X, y)
    distances = ((X[:, None, :] - model.centroids_[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(
        model.predict(X), model.classes_[distances.argmin(axis=1)]
    )


def test_cache_info_and_clear(tmp_path, capsys):
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    from skbatch import CachedEstimator

    CachedEstimator(StandardScaler(), memory=tmp_path).fit(np.ones((5, 2)))
    (tmp_path / "mine.txt").write_text("kept")
    assert main(["cache", "info", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("1 entries, ")
    assert main(["cache", "clear", str(tmp_path)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert (tmp_path / "mine.txt").read_text() == "kept"
    assert main(["cache", "info", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().out
