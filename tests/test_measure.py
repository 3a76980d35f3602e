"""The measurements a call takes: the GIL watcher and the cost fit."""

import threading
import time

import numpy as np
import pytest

from skbatch._measure import MIN_WAKES, Costs, GilWatch, holds_gil


def _python_loop(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(100))


def test_watcher_sees_a_pure_python_loop_hold_the_gil():
    with GilWatch() as watch:
        _python_loop(0.1)
    assert watch.n_wakes >= MIN_WAKES
    assert holds_gil(watch.gil_share())


@pytest.mark.parametrize(
    "release",
    [
        lambda: time.sleep(0.1),
        # numpy releases the GIL in large sorts and BLAS products.
        lambda: [np.sort(np.random.default_rng(0).random(2_000_000)) for _ in range(2)],
    ],
    ids=["sleep", "numpy"],
)
def test_watcher_sees_code_that_releases_the_gil(release):
    with GilWatch() as watch:
        release()
    assert watch.n_wakes >= MIN_WAKES
    assert not holds_gil(watch.gil_share())


def test_watcher_has_no_verdict_on_too_short_a_run():
    with GilWatch() as watch:
        pass
    assert watch.gil_share() is None
    assert holds_gil(watch.gil_share()) is None


def test_watcher_thread_is_gone_after_the_block():
    before = threading.active_count()
    with GilWatch():
        _python_loop(0.01)
    assert threading.active_count() == before


def test_watcher_is_stopped_by_an_exception_in_the_block():
    with pytest.raises(ZeroDivisionError), GilWatch() as watch:
        raise ZeroDivisionError
    assert not watch._thread.is_alive()


def test_cost_fit_separates_the_fixed_cost_of_a_call():
    costs = Costs.fit((64, 0.020 + 64e-5), (4096, 0.020 + 4096e-5))
    assert costs.per_row == pytest.approx(1e-5)
    assert costs.per_call == pytest.approx(0.020)
    assert costs.seconds(1000) == pytest.approx(0.030)
    assert costs.rows_for(0.01) == 1000


def test_cost_fit_survives_noise():
    # The larger chunk ran faster than the small one: the slope is negative.
    costs = Costs.fit((64, 0.010), (1024, 0.008))
    assert costs.per_row > 0
    assert costs.per_call >= 0
    # One point: the average.
    assert Costs.fit((100, 0.1), (100, 0.1)).per_row == pytest.approx(1e-3)
