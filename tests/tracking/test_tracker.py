"""One run end to end into a temporary MLflow store: what is recorded, and that nothing is left RUNNING."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from ablate.errors import Stopped, UserError
from ablate.config import TrackingConfig
from ablate.tracking.tracker import (TAG_ERROR, TAG_HEARTBEAT, TAG_HOST, TAG_PID, RunStatus, Tracker)
from tests.conftest import QUICK, REPO, fresh_postgres_database, make_config, stopped_at_exit, wait_until
from tests.servers import free_port


def runs(uri):
    client = MlflowClient(uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_ctrl_c_marks_the_run_killed_and_an_error_marks_it_failed(tracking_uri):
    tracker = Tracker(make_config().tracking)
    for error, status in [(KeyboardInterrupt(), "KILLED"), (RuntimeError("boom"), "FAILED")]:
        with pytest.raises(type(error)):
            with tracker.training_run(make_config(*QUICK), "cpu") as run:
                raise error
        assert MlflowClient(tracking_uri).get_run(run.run_id).info.status == status


def test_a_stop_that_lands_between_a_runs_opening_and_its_lifecycle_still_ends_it(tracking_uri):
    """The window CI once hit (a SIGTERM after ``start_run`` returned, before the run's ``with``): the outer layer's
    ``end_open`` ends what is open, as the stop or the error says, and leaves the ended runs as they were."""
    tracker = Tracker(make_config().tracking)
    done = tracker.start_run("done", {})
    done.end(RunStatus.finished)
    client = MlflowClient(tracking_uri)
    for err, status, why in [(Stopped(signal.SIGTERM), "KILLED", "terminated (SIGTERM)"),
                             (RuntimeError("boom"), "FAILED", "RuntimeError: boom")]:
        caught = tracker.start_run("caught", {})
        tracker.end_open(err)
        assert client.get_run(caught.run_id).info.status == status
        assert client.get_run(caught.run_id).data.tags[TAG_ERROR] == why
    assert client.get_run(done.run_id).info.status == "FINISHED" and TAG_ERROR not in client.get_run(done.run_id).data.tags


def test_runs_of_dead_processes_are_marked_killed(tracking_uri):
    tracker = Tracker(make_config().tracking)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tracker.start_run("stale", {TAG_PID: str(dead.pid)})
    alive = tracker.start_run("alive", {})
    assert [r.run_id for r in tracker.live()] == [alive.run_id]
    client = MlflowClient(tracking_uri)
    assert client.get_run(stale.run_id).info.status == "KILLED"
    assert client.get_run(alive.run_id).info.status == "RUNNING" and client.get_run(alive.run_id).data.tags[TAG_HOST]
    alive.end(RunStatus.finished)


def test_a_claim_lives_while_its_worker_heartbeats_and_expires_after(tracking_uri):
    tracker = Tracker(make_config(*QUICK, "tracking.heartbeat_s=1", "tracking.dead_after_s=3").tracking)
    elsewhere = {TAG_HOST: "another-machine", TAG_PID: "1"}  # its pid means nothing here: only the heartbeat counts
    fresh, stale = tracker.start_run("fresh", elsewhere), tracker.start_run("stale", elsewhere)
    tracker.heartbeat.forget(stale.run_id)  # another worker's run: this process must not stamp it alive again
    client = MlflowClient(tracking_uri)
    client.set_tag(stale.run_id, TAG_HEARTBEAT, str(time.time() - 10))
    assert {r.run_id for r in tracker.live()} == {fresh.run_id}
    assert client.get_run(stale.run_id).info.status == "KILLED"
    stamped = float(client.get_run(fresh.run_id).data.tags[TAG_HEARTBEAT])
    # this process's heartbeat thread keeps stamping its open run
    wait_until(lambda: float(client.get_run(fresh.run_id).data.tags[TAG_HEARTBEAT]) > stamped)
    fresh.end(RunStatus.finished)


def test_a_terminated_run_is_no_longer_stamped(tracking_uri):
    tracker = Tracker(make_config(*QUICK, "tracking.heartbeat_s=1", "tracking.dead_after_s=3").tracking)
    run = tracker.start_run("ended elsewhere", {})
    tracker.terminate(run.run_id, RunStatus.killed, "its worker died")
    client = MlflowClient(tracking_uri)
    stamp = client.get_run(run.run_id).data.tags[TAG_HEARTBEAT]
    time.sleep(2.5)  # two beats' time: a stamp now would make the dead run look alive to other workers
    assert client.get_run(run.run_id).data.tags[TAG_HEARTBEAT] == stamp


def test_a_tracking_server_that_is_down_is_one_clear_error_at_once():
    with pytest.raises(UserError, match=r"cannot reach the MLflow store http://127.0.0.1:\d+: \[Errno 111\] "
                                        r"Connection refused\. Start the server"):
        Tracker(TrackingConfig(uri=f"http://127.0.0.1:{free_port()}"))  # MLflow alone retries for ~4 minutes


def test_a_missing_postgresql_database_is_named_and_its_password_masked(postgres_server):
    uri = "postgresql://postgres:secret@127.0.0.1:5432/ablate_no_such_database"
    with pytest.raises(UserError) as err:
        Tracker(TrackingConfig(uri=uri))
    assert 'database "ablate_no_such_database" does not exist' in str(err.value)
    assert "postgres:***@" in str(err.value) and "secret" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_workers_opening_a_new_store_together_all_get_it(store, tmp_path, request):
    # As `make search WORKERS=4` or a cluster's first jobs start them: each would run MLflow's migrations.
    with contextlib.ExitStack() as stack:
        if store == "postgresql":
            request.getfixturevalue("postgres_server")  # skips, saying what is missing, where there is none
            uri = stack.enter_context(fresh_postgres_database())
        else:
            uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
        # each imports first, then waits for the others: they open the store within milliseconds of each other, and
        # each records a run in it (a store made twice, one over the other, would lose the first one's run)
        go = tmp_path / "go"
        code = ("import pathlib, time; from mlflow import MlflowClient; from ablate.config import TrackingConfig; "
                "from ablate.tracking.tracker import Tracker; print('ready', flush=True)\n"
                f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.005)\n"
                f"experiment = Tracker(TrackingConfig(uri={uri!r})).experiment_id\n"
                f"print(experiment, MlflowClient({uri!r}).create_run(experiment).info.run_id)")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(3)]
        stack.enter_context(stopped_at_exit(*workers))
        assert [w.stdout.readline() for w in workers] == ["ready\n"] * 3
        go.touch()
        outputs = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0] * 3, [err[-2000:] for _, err in outputs]
        experiments, runs = zip(*(out.split() for out, _ in outputs))
        assert len(set(experiments)) == 1  # one experiment for all
        kept = {r.info.run_id for r in MlflowClient(uri).search_runs([experiments[0]])}
        assert kept == set(runs), f"runs recorded {sorted(runs)}, kept {sorted(kept)}"
