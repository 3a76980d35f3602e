"""The watch on multiprocessing pool workers: deaths seen, the pool's own
stops not taken for deaths. (End to end, through joblib's "multiprocessing"
backend: tests/test_faults.py.)"""

import multiprocessing
import os
import signal
import time

import pytest

from skbatch._dead_workers import (
    DeadWorkerWatch,
    PoolWorkerDied,
    mark_batch,
    marked_batch,
    marking_processes,
    multiprocessing_pool,
    process_alive,
    remove_marks,
    unmark_batch,
)


def spawn_pool():
    # spawn: no fork after OpenMP has run in this process.
    return multiprocessing.get_context("spawn").Pool(2)


def _wait(result, seconds=30):
    # As joblib waits: in Python, so the watch's exception can be raised.
    deadline = time.monotonic() + seconds
    while not result.ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    return result.ready()


def _mark_and_sleep(marks):
    mark_batch(marks, 0, 1)
    time.sleep(60)


@pytest.mark.parametrize("victim", ["busy", "idle"])
def test_a_killed_worker_is_raised_in_the_waiting_thread(tmp_path, victim):
    # As in a call: the pool starts while the watch runs. An idle worker
    # holds the lock on the task queue: killed, it would leave the pool
    # unable to terminate (the with block's exit would wait forever).
    marks = str(tmp_path / "run")
    with pytest.raises(PoolWorkerDied):
        with spawn_pool() as pool, DeadWorkerWatch(lambda: pool, 2, marks) as watch:
            lost = pool.apply_async(_mark_and_sleep, (marks,))
            deadline = time.monotonic() + 30
            while not marking_processes(marks) and time.monotonic() < deadline:
                time.sleep(0.01)
            [busy] = marking_processes(marks)
            pids = [p.pid for p in pool._pool]
            target = busy if victim == "busy" else next(p for p in pids if p != busy)
            os.kill(target, signal.SIGKILL)
            _wait(lost)
    assert watch.dead == (target, -signal.SIGKILL)


def test_a_worker_that_exits_cleanly_is_seen_by_its_replacement():
    # Exit code 0 is also how idle workers leave; but a pool that has to
    # replace a worker lost one.
    with pytest.raises(PoolWorkerDied):
        with spawn_pool() as pool, DeadWorkerWatch(lambda: pool, 2) as watch:
            time.sleep(0.3)  # seen (one dying before that: the next test)
            _wait(pool.apply_async(os._exit, (0,)))
    _, code = watch.dead
    assert code in (0, None)


def test_the_pools_own_stop_is_not_a_death():
    pool = spawn_pool()
    with DeadWorkerWatch(lambda: pool, 2) as watch:
        assert pool.map(abs, range(-5, 5)) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        pool.terminate()  # SIGTERM to the workers, as joblib does after a call
        pool.join()
        time.sleep(0.3)  # several looks
    assert watch.dead is None


def test_a_worker_the_pool_retires_is_not_a_death():
    # maxtasksperchild: the pool replaces workers that exit (code 0) by design.
    pool = multiprocessing.get_context("spawn").Pool(2, maxtasksperchild=1)
    try:
        with DeadWorkerWatch(lambda: pool, 2) as watch:
            for _ in range(6):
                _wait(pool.apply_async(time.sleep, (0.1,)))
            time.sleep(0.3)
        assert watch.dead is None
    finally:
        pool.terminate()
        pool.join()


def test_another_pools_workers_are_not_its_concern(tmp_path):
    # Another call's pool, in another thread: its deaths are that call's.
    marks = str(tmp_path / "run")
    with spawn_pool() as ours, spawn_pool() as theirs:
        with DeadWorkerWatch(lambda: ours, 2) as watch:
            assert ours.map(abs, range(-3, 0)) == [3, 2, 1]
            theirs.apply_async(_mark_and_sleep, (marks,))
            deadline = time.monotonic() + 30
            while not marking_processes(marks) and time.monotonic() < deadline:
                time.sleep(0.01)
            # A busy worker: an idle one holds the queue's lock, and killing
            # it would leave their pool unable to terminate.
            [busy] = marking_processes(marks)
            os.kill(busy, signal.SIGKILL)
            while busy in [p.pid for p in theirs._pool]:
                time.sleep(0.01)  # a replacement starts there
            time.sleep(0.3)
    assert watch.dead is None


def test_a_worker_gone_in_its_batch_is_dead_though_never_seen(tmp_path):
    # A forked worker can start, take a batch and die between two looks.
    marks = str(tmp_path / "run")
    with spawn_pool() as pool:
        victim = pool._pool[0].pid
        watch = DeadWorkerWatch(lambda: pool, 2, marks)
        with open(f"{marks}.{victim}", "w") as f:
            f.write("100 200")  # as the worker marks its batch
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while victim in [p.pid for p in pool._pool] and time.monotonic() < deadline:
            time.sleep(0.01)  # replaced by the pool before any look
        watch._seen = {}
        assert watch._look() == (victim, None)


def test_multiprocessing_pool_reads_joblibs_backend():
    from joblib._parallel_backends import MultiprocessingBackend

    backend = MultiprocessingBackend()
    get_pool = multiprocessing_pool(backend)
    assert get_pool() is None  # before the call starts its pool
    backend.configure(n_jobs=2)
    try:
        assert len(get_pool()._pool) == 2 and get_pool()._state == "RUN"
    finally:
        backend.terminate()


def test_marks_name_the_rows_a_process_runs(tmp_path):
    prefix = str(tmp_path / "run")
    mark_batch(prefix, 100, 200)
    mark_batch(None, 0, 1)  # nowhere to mark: nothing happens
    assert marked_batch(prefix, os.getpid()) == (100, 200)
    assert marked_batch(prefix, os.getpid() + 1) is None
    assert marking_processes(prefix) == [os.getpid()]
    unmark_batch(prefix)
    assert marking_processes(prefix) == []
    mark_batch(prefix, 0, 1)
    remove_marks(prefix)
    assert os.listdir(tmp_path) == []


def test_process_alive_tells_a_zombie_from_a_live_process():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not process_alive(child.pid)  # exited, not reaped yet: a zombie
    child.wait()
    assert not process_alive(child.pid)
    assert process_alive(os.getpid())
