"""One run end to end into a temporary MLflow store: what is recorded, and that nothing is left RUNNING."""

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
from mlflow import MlflowClient

from ablate import UserError
from ablate.config import PopulationSettings, TrackingConfig, config_hash
from ablate.runner import train_and_log, train_and_log_all
from ablate.provenance import code_version
from ablate.runner import Outcome
from ablate.tracking import (TAG_CODE, TAG_ERROR, TAG_HASH, TAG_HEARTBEAT, TAG_HOST, TAG_KIND, TAG_PID, RunStatus, Tracker,
                             identity_tags)
from tests.conftest import QUICK, REPO, fresh_postgres_database, make_config, stopped_at_exit, wait_until
from tests.servers import free_port


def runs(uri):
    client = MlflowClient(uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_run_is_recorded_finished_with_params_metrics_and_artifacts(tracking_uri):
    result = train_and_log(make_config(*QUICK))
    client, [run] = runs(tracking_uri)
    assert run.info.status == "FINISHED" and run.info.run_id == result.run_id
    assert run.data.params["model.bn"] == "pre" and run.data.params["optim.lr"] == "0.1"
    assert run.data.params["data.name"] == "digits" and run.data.tags["ablate.config_hash"]
    assert run.data.tags["mlflow.source.git.commit"] and run.data.tags["torch"] and run.data.tags["device"] == "cpu"
    assert run.data.tags["ablate.code_version"] == code_version() and run.data.tags["ablate.inputs"]
    assert run.data.tags["numeric_mode"] == "float32 on cpu" and run.data.params["trainer.tf32"] == "False"
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_norm"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2]
    assert run.data.metrics == pytest.approx(result.metrics)  # what a run returns is what resume reads back
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt"} <= artifacts
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_seed_notebook_logs_109770_parameters(tracking_uri):
    cfg = make_config("+experiment=seed_notebook", "trainer.epochs=1", "trainer.device=cpu")
    assert cfg.data.val_fraction == 0 and not cfg.data.stratify
    result = train_and_log(cfg)
    client = MlflowClient(tracking_uri)
    text = client.download_artifacts(result.run_id, "model_summary.txt")
    assert "Trainable params: 109,770" in open(text).read()
    assert "val_acc" not in client.get_run(result.run_id).data.metrics


def test_rerun_skips_a_finished_config_and_force_reruns(tracking_uri):
    first = train_and_log(make_config(*QUICK))
    again = train_and_log(make_config(*QUICK))
    assert (again.outcome, again.run_id) == (Outcome.skipped, first.run_id)
    forced = train_and_log(make_config(*QUICK, "force=true"))
    assert forced.outcome == Outcome.finished and forced.run_id != first.run_id
    assert len(runs(tracking_uri)[1]) == 2


def test_diverged_run_is_failed_with_its_error(tracking_uri):
    result = train_and_log(make_config(*QUICK, "model.bn=none", "model.init_scale=50", "optim.lr=50"))
    _, [run] = runs(tracking_uri)
    assert result.outcome == Outcome.failed and run.info.status == "FAILED"
    assert "Diverged" in run.data.tags[TAG_ERROR]


def test_ctrl_c_marks_the_run_killed_and_an_error_marks_it_failed(tracking_uri):
    tracker = Tracker(make_config().tracking)
    for error, status in [(KeyboardInterrupt(), "KILLED"), (RuntimeError("boom"), "FAILED")]:
        with pytest.raises(type(error)):
            with tracker.training_run(make_config(*QUICK), "cpu") as run:
                raise error
        assert MlflowClient(tracking_uri).get_run(run.run_id).info.status == status


def test_an_internal_error_keeps_its_whole_traceback_in_error_txt_and_the_console(tracking_uri, caplog):
    """A population whose vmap probe runs out of memory fails (no silent fallback to one by one): its runs FAILED
    with the one line in the tag and the traceback, down to the model's own frame, in error.txt."""
    from tests.user_models import OutOfMemoryUnderVmap

    OutOfMemoryUnderVmap.forwards = 0
    cfgs = [make_config(*QUICK, "model=custom", "model.target=tests.user_models.OutOfMemoryUnderVmap", f"seed={s}")
            for s in (0, 1)]
    with caplog.at_level(logging.INFO, logger="ablate"):
        results = train_and_log_all(cfgs, PopulationSettings(vectorise=True))
    assert [r.outcome for r in results] == [Outcome.failed, Outcome.failed]
    assert "one by one" not in caplog.text and "Traceback" in caplog.text and "OutOfMemoryError" in caplog.text
    client = MlflowClient(tracking_uri)
    for result in results:
        run = client.get_run(result.run_id)
        assert run.info.status == "FAILED" and run.data.tags[TAG_ERROR].startswith("OutOfMemoryError: ")
        text = open(client.download_artifacts(result.run_id, "error.txt")).read()
        assert text.startswith("Traceback") and "user_models.py" in text and 'raise torch.OutOfMemoryError' in text


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


def test_ctrl_c_in_the_next_population_leaves_the_last_one_recorded_behind_it_finished(tracking_uri):
    """A population's runs are ended by the writer while the next trains; Ctrl-C in the next still finds them
    written FINISHED with their metrics, its own members KILLED, nothing RUNNING."""
    cfgs = [make_config(*QUICK, "tracking.write_behind=true", f"model.bn={bn}", f"seed={seed}")
            for bn in ("pre", "none") for seed in (0, 1)]
    order = []

    def on_epoch(cfg, metrics):
        if cfg.model.bn.value not in order:
            order.append(cfg.model.bn.value)
        if len(order) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_and_log_all(cfgs, PopulationSettings(), on_epoch=on_epoch)
    _, recorded = runs(tracking_uri)
    status = {(r.data.params["model.bn"], r.data.params["seed"]): r for r in recorded}
    assert len(status) == 4
    for seed in ("0", "1"):
        first, second = status[(order[0], seed)], status[(order[1], seed)]
        assert first.info.status == "FINISHED" and {"test_acc", "val_acc"} <= set(first.data.metrics)
        assert second.info.status == "KILLED" and second.data.tags[TAG_ERROR] == "interrupted (Ctrl-C)"


def test_a_run_another_worker_ended_as_dead_is_left_killed_and_its_variant_is_not_finished_twice(tracking_uri,
                                                                                                    caplog):
    """Fencing: while a population trains, a rival judges one member's worker dead (its heartbeat looked stale) and
    ends that run KILLED, as ``Tracker.live`` does. The owner must not end it FINISHED after all: it drops its result
    and, finding no live rival, trains the variant again; each variant ends with one FINISHED run."""
    cfgs = [make_config(*QUICK, f"seed={seed}") for seed in (0, 1)]
    rival, ended = Tracker(cfgs[0].tracking), []

    def on_epoch(cfg, metrics):
        if cfg.seed == 0 and not ended:
            (run,) = rival.runs(status=RunStatus.running, config_hashes=[config_hash(cfg)])
            rival.terminate(run.run_id, RunStatus.killed, "its worker died or stopped heartbeating while RUNNING")
            ended.append(run.run_id)

    with caplog.at_level(logging.WARNING, logger="ablate"):
        results = train_and_log_all(cfgs, PopulationSettings(), on_epoch=on_epoch)
    _, recorded = runs(tracking_uri)
    by_id = {r.info.run_id: r for r in recorded}
    assert by_id[ended[0]].info.status == "KILLED"
    assert [r.outcome for r in results] == [Outcome.finished, Outcome.finished] and results[0].run_id != ended[0]
    finished = [r.data.params["seed"] for r in recorded if r.info.status == "FINISHED"]
    assert sorted(finished) == ["0", "1"]
    assert "tracking.dead_after_s" in caplog.text and ended[0] in caplog.text


def test_a_finished_run_of_other_code_is_trained_again(tracking_uri):
    """Resume reuses a FINISHED run only for the same config *and* code version."""
    cfg = make_config(*QUICK)
    tracker = Tracker(cfg.tracking)
    other_code = tracker.start_run("older code", {TAG_HASH: config_hash(cfg), **identity_tags(cfg), TAG_KIND: "train"})
    MlflowClient(tracking_uri).set_tag(other_code.run_id, TAG_CODE, "0123456789ab")
    other_code.end(RunStatus.finished)
    result = train_and_log(cfg)
    assert result.outcome == Outcome.finished and result.run_id != other_code.run_id
    assert train_and_log(cfg).run_id == result.run_id  # the same code's run is reused


def test_a_variant_another_worker_holds_is_left_to_it_then_its_result_is_used(tracking_uri):
    cfg = make_config(*QUICK)
    tracker = Tracker(cfg.tracking)
    other = tracker.start_run("another worker's claim", {TAG_HASH: config_hash(cfg), **identity_tags(cfg), TAG_KIND: "train",
                                                         TAG_HOST: "another-machine"})
    [left] = train_and_log_all([cfg], PopulationSettings(), wait_for_others=False)
    assert left.outcome == Outcome.elsewhere
    assert [r.run_id for r in tracker.runs(status=RunStatus.running)] == [other.run_id]  # ours withdrawn

    # A waiting worker takes the other's FINISHED result instead of training the variant again.
    threading.Timer(1.0, other.end, [RunStatus.finished]).start()
    [waited] = train_and_log_all([cfg], PopulationSettings())
    assert waited.outcome == Outcome.skipped and waited.run_id == other.run_id
    assert code_version() in MlflowClient(tracking_uri).get_run(other.run_id).data.tags.values()


def run_cli(*args, cwd, timeout=120):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'examples'}"}
    return subprocess.run([sys.executable, "-m", "ablate", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_rejects_a_bad_value_fast_naming_key_and_choices(tmp_path):
    out = run_cli("model.bn=foo", cwd=tmp_path)
    assert out.returncode != 0 and "model.bn" in out.stderr and "none, pre, post" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing started


def test_cli_names_a_device_this_machine_lacks_in_one_line(tmp_path):
    import torch

    missing = next((d for d, ok in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available()))
                    if not ok), None)
    if missing is None:
        pytest.skip("this machine has both cuda and mps")
    out = run_cli(f"trainer.device={missing}", cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2
    assert (f"error: trainer.device={missing} is not available on this machine; use trainer.device=auto or "
            f"trainer.device=cpu.") in text
    assert "Traceback" not in text


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


@pytest.mark.parametrize("module, args", [("ablate.report", ["tracking.uri=http://127.0.0.1:{port}"]),
                                          ("ablate.claims", ["model.bn=foo"])])
def test_other_commands_end_a_user_error_with_one_message(module, args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", module, *[a.format(port=free_port()) for a in args]], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert "cannot reach the MLflow store" in out.stderr or "Invalid value 'foo'" in out.stderr


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_workers_opening_a_new_store_together_all_get_it(store, tmp_path, request):
    # As `make search WORKERS=4` or a cluster's first jobs start them: each would run MLflow's migrations.
    with contextlib.ExitStack() as stack:
        if store == "postgresql":
            request.getfixturevalue("postgres_server")  # skips, saying what is missing, where there is none
            uri = stack.enter_context(fresh_postgres_database())
        else:
            uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
        code = ("from ablate.config import TrackingConfig; from ablate.tracking import Tracker; "
                f"print(Tracker(TrackingConfig(uri={uri!r})).experiment_id)")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        workers = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        stack.enter_context(stopped_at_exit(*workers))
        outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment for all


def test_cli_help_lists_groups_and_examples(tmp_path):
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("data:", "fmnist_small", "digits", "fashion_mnist", "model:", "optim:", "adamw", "trainer:",
                 "python -m ablate -m model.bn=pre,post,none"):
        assert word in out.stdout


def test_cli_run_prints_epochs_and_where_the_run_went(tracking_uri, tmp_path):
    out = run_cli(*QUICK, "model.bn=post", "model.dropout=0.1", "optim.lr=0.05", "optim.weight_decay=1e-4",
                  "seed=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "bn=post, relu, dropout=0.1, sgd lr=0.05, weight_decay=0.0001" in text and "seed=3" in text
    assert "epoch   2/2" in text and "FINISHED" in text and "#/experiments/" in text and tracking_uri in text


def test_a_password_in_a_uri_is_masked_in_params_config_and_console(tracking_uri, caplog):
    from ablate.store import mask_url

    assert mask_url("postgresql://ada:s3cret@db:5432/ml") == "postgresql://ada:***@db:5432/ml"
    assert mask_url("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    cfg = make_config(*QUICK, "data.name=postgresql://ada:s3cret@db/x")  # a secret-bearing value in any param
    with caplog.at_level("INFO", logger="ablate"):
        result = train_and_log(cfg)
    client = MlflowClient(tracking_uri)
    run = client.get_run(result.run_id)
    assert "s3cret" not in str(run.data.params) and "s3cret" not in str(run.data.tags)
    assert "s3cret" not in open(client.download_artifacts(result.run_id, "config.yaml")).read()
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize("args, message", [
    (["model=custom", "model.target=tests.user_models.NoDropout", "model.dropout=0.2"],
     "error: tests.user_models.NoDropout does not take `dropout`: add a `dropout` parameter, or drop `model.dropout`."),
    (["model=custom", "model.target=no_such_module.Net"], "error: model.target=no_such_module.Net: cannot import"),
    (["model=custom", "model.target=tests.user_models.WrongOutput"],
     "error: tests.user_models.WrongOutput() returns [2, 11] for a batch of [2, 1, 8, 8]"),
    (["model=custom", "model.target=tests.user_models.Raises", "model.bn=pre"], "raised ValueError: needs at least 3"),
    (["model=cnn", "model.channels=[2,2,2,2]"], "halves a 8x8 image 4 times"),
])
def test_a_model_that_breaks_its_contract_is_one_line_and_exit_2_before_anything_trains(args, message, tracking_uri,
                                                                                          tmp_path):
    out = run_cli(*QUICK, *args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    client = MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])  # no run was opened


@pytest.mark.parametrize("multirun", [False, True])
def test_a_password_in_clear_on_the_command_line_is_refused_before_hydra_writes_it_anywhere(multirun, tmp_path):
    args = ["-m", "seed=0,1"] if multirun else []
    out = run_cli(*args, *QUICK, "search.storage=postgresql://ada:s3cret@db/optuna", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: search.storage holds a password in clear (postgresql://ada:***@db/optuna)")
    assert "search.storage='${oc.env:OPTUNA_STORAGE}'" in out.stderr and "s3cret" not in out.stdout + out.stderr
    assert not [f for f in tmp_path.rglob("*") if f.is_file() and "s3cret" in f.read_text(errors="replace")]


def test_a_replaced_data_file_trains_again_and_an_unchanged_one_is_reused(tracking_uri, tmp_path, caplog):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.random((120, 6)).astype(np.float32), y=np.arange(120) % 3)
    cfg = make_config("data=npz", f"data.path={path}", "data.n_classes=3", "trainer.epochs=1", "trainer.device=cpu")
    first = train_and_log(cfg)
    assert train_and_log(cfg).outcome == Outcome.skipped  # the same config, code and file
    np.savez(path, x=rng.random((120, 6)).astype(np.float32), y=np.arange(120) % 3)  # another file, same name
    with caplog.at_level(logging.INFO, logger="ablate"):
        again = train_and_log(cfg)
    assert again.outcome == Outcome.finished and again.run_id != first.run_id
    assert "0 of 1 variants skipped" in caplog.text and "1 train again because the data files changed" in caplog.text
    tags = MlflowClient(tracking_uri).get_run(again.run_id).data.tags
    assert tags["ablate.inputs.data"].startswith("mine.npz:") and tags["ablate.inputs"] != \
        MlflowClient(tracking_uri).get_run(first.run_id).data.tags["ablate.inputs"]


def test_editing_the_users_model_file_retrains_every_variant_of_the_sweep_and_says_why(tracking_uri, tmp_path):
    model = tmp_path / "my_net.py"
    model.write_text("from torch import nn\n\n\nclass Net(nn.Sequential):\n    def __init__(self, in_shape, n_classes, "
                     "dropout=0.0):\n        super().__init__(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), "
                     "nn.Dropout(dropout), nn.Linear(8, n_classes))\n")
    sweep = ["-m", "model=custom", "model.target=my_net.Net", "model.dropout=0,0.2", "seed=0", *QUICK,
             "hydra/launcher=population"]
    out = run_cli(*sweep, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    again = run_cli(*sweep, cwd=tmp_path)
    assert again.returncode == 0 and "train again" not in again.stderr
    assert len([r for r in runs(tracking_uri)[1] if r.data.tags.get("ablate.kind") == "train"]) == 2  # both reused
    model.write_text(model.read_text().replace("nn.Linear(64, 8)", "nn.Linear(64, 16)").replace("Linear(8,", "Linear(16,"))
    edited = run_cli(*sweep, cwd=tmp_path)
    text = edited.stdout + edited.stderr
    assert edited.returncode == 0, text[-3000:]
    assert "0 of 2 variants skipped" in text and "2 train again because the model's code changed" in text
    _, recorded = runs(tracking_uri)
    finished = [r for r in recorded if r.data.tags.get("ablate.kind") == "train"]
    assert len(finished) == 4 and len({r.data.tags["ablate.inputs.model_code"] for r in finished}) == 2
