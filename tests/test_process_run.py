"""Stop files of calls run in worker processes: kept while tasks may read
them, never left behind. (Failures end to end: tests/test_faults.py.)"""

from concurrent.futures import Future

from skbatch._process_run import _StopFiles


def _file(tmp_path, name):
    path = tmp_path / name
    path.write_text("-1")
    (tmp_path / f"{name}.run.123").write_text("0 10")  # a batch marker
    return str(path)


def test_a_stop_file_stays_until_its_calls_tasks_have_settled(tmp_path):
    files = _StopFiles()
    task = Future()
    path = _file(tmp_path, "skbatch-stop-a")
    files.keep(path, [task])
    files.sweep()
    assert (tmp_path / "skbatch-stop-a").exists()  # the task may still start
    task.cancel()
    files.sweep()
    assert list(tmp_path.iterdir()) == []


def test_a_running_calls_file_is_not_swept_by_another_call(tmp_path):
    files = _StopFiles()
    path = _file(tmp_path, "skbatch-stop-b")
    files.keep(path)  # its call runs
    files.sweep()
    assert (tmp_path / "skbatch-stop-b").exists()
    files.settled(path)
    assert list(tmp_path.iterdir()) == []


def test_whatever_is_kept_goes_at_exit(tmp_path):
    files = _StopFiles()
    files.keep(_file(tmp_path, "skbatch-stop-c"))
    files.keep(_file(tmp_path, "skbatch-stop-d"), [Future()])
    files.remove_all()  # what the exit handler runs
    assert list(tmp_path.iterdir()) == []
