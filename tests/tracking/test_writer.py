import os
import signal
import threading

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from ablate.cli import run_command
from ablate.config import TrackingConfig
from ablate.tracking.liveness import pid_alive
from ablate.tracking.tracker import RunStatus, Tracker
from ablate.tracking.writer import WriteError, Writer
from tests.conftest import wait_until


@pytest.mark.slow  # the writer's own process is what is tested
def test_the_writer_ends_runs_in_its_own_process_in_order_ignoring_ctrl_c_and_drain_raises_its_traceback(
        tracking_uri):
    """Runs ended behind: each end is held until sent, a process of its own writes them in order (a Ctrl-C sent to
    it does not stop it), and drain sends what is held, waits, and raises the first failure with the writer's
    traceback after trying the rest."""
    tracker = Tracker(TrackingConfig(uri=tracking_uri))
    runs = [tracker.start_run(f"run {i}", {}).run_id for i in range(3)]
    writer, answered, first_answer = Writer(tracking_uri, enabled=True), [], threading.Event()

    def then(i):
        answered.append(i)
        first_answer.set()

    writer.end_run(runs[0], [([Metric("acc", 0.5, 0, 1)], [], [])], "FINISHED", lambda: then(0))
    assert MlflowClient(tracking_uri).get_run(runs[0]).info.status == "RUNNING"  # held until sent
    writer.send_held()
    assert first_answer.wait(60)
    child = writer._process.pid
    assert child != os.getpid() and pid_alive(child)
    os.kill(child, signal.SIGINT)  # the parent's Ctrl-C reaches its process group: the writer finishes its work
    writer.end_run("0" * 32, [], "FINISHED", lambda: then(1))  # no such run: this end fails in the writer
    writer.end_run(runs[2], [([Metric("acc", 0.7, 0, 1)], [], [])], "KILLED", lambda: then(2))
    with pytest.raises(WriteError, match=f"the end of run {'0' * 32} was not written") as raised:
        writer.drain()
    assert "Traceback (most recent call last)" in str(raised.value)  # the writer's own, whole
    assert answered == [0, 1, 2] and writer._process is None
    wait_until(lambda: not pid_alive(child))  # its stdin closed, it exits
    client = MlflowClient(tracking_uri)
    assert [client.get_run(r).info.status for r in runs] == ["FINISHED", "RUNNING", "KILLED"]
    assert client.get_run(runs[2]).data.metrics == {"acc": 0.7}
    writer.drain()  # drained: nothing left to raise


@pytest.mark.slow  # the writer's own process is what is tested
def test_a_writer_process_that_dies_fails_the_ends_it_had_not_written_and_a_run_ends_in_place_when_off(tracking_uri):
    tracker = Tracker(TrackingConfig(uri=tracking_uri))
    run = tracker.start_run("behind", {})
    writer = Writer(tracking_uri, enabled=True)
    writer.end_run(run.run_id, [], "FINISHED", lambda: None)
    writer.send_held()
    os.kill(writer._process.pid, signal.SIGKILL)
    with pytest.raises(WriteError, match="exited with code -9|is gone"):
        writer.drain()

    assert not tracker.writer.enabled  # tracking.write_behind is off by default: a batched run ends in place
    inline = tracker.start_run("in place", {})
    inline.write_behind = True
    inline.log_metrics({"acc": 0.9}, step=1)
    inline.end(RunStatus.finished)
    assert MlflowClient(tracking_uri).get_run(inline.run_id).info.status == "FINISHED"


@pytest.mark.slow  # the writer's own process is what is tested
def test_a_stop_while_drain_waits_for_the_writer_lets_every_end_be_written_then_stops(tracking_uri):
    """Ctrl-C while the sweep's last ends are being written (the writer's process still starting): the ends are
    written, not left RUNNING with no one to end them, and the command then stops with 130."""
    tracker = Tracker(TrackingConfig(uri=tracking_uri))
    runs = [tracker.start_run(f"run {i}", {}).run_id for i in range(2)]
    writer = Writer(tracking_uri, enabled=True)
    for run in runs:
        writer.end_run(run, [([Metric("acc", 0.5, 0, 1)], [], [])], "FINISHED", lambda: None)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))  # the process takes seconds to import MLflow

    def drained():
        timer.start()
        writer.drain()

    with pytest.raises(SystemExit) as stopped:
        run_command(drained, "stopped")
    timer.join()
    assert stopped.value.code == 130
    assert [MlflowClient(tracking_uri).get_run(r).info.status for r in runs] == ["FINISHED", "FINISHED"]
