"""Sweeps through the command line (Hydra multirun, ablate's sweeper, the launchers) into a temporary MLflow store.
The command runs in this process; a test starts one only where processes are what it tests (a kill, workers)."""

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from ablate.engine.data import cached_splits
from ablate.engine.trainer import fit
from ablate.execution.sweeps import grid
from tests.conftest import REPO, ablate_cli, make_config, stopped_at_exit

FAST = ["data=digits", "trainer.device=cpu"]


def multirun(*args, cwd, env_extra=None):
    """``ablate -m ...`` from ``cwd``, in this process, as a finished process reads (returncode, stdout, stderr)."""
    saved, before = os.getcwd(), {k: os.environ.get(k) for k in env_extra or {}}
    os.environ.update(env_extra or {})
    os.chdir(cwd)
    try:
        ran = ablate_cli("-m", *args)
    finally:
        os.chdir(saved)
        for key, value in before.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return SimpleNamespace(returncode=ran.code, stdout=ran.out, stderr=ran.err)


def multirun_process(*args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "ablate", "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def train_runs(uri, status=None):
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`ablate.kind` = 'train'")
    return [r for r in runs if status is None or r.info.status == status]


def test_the_grid_is_hydras_product_in_its_order_with_its_factors():
    jobs, factors = grid(["model.bn=pre,post,none", "seed=range(2)", "optim.lr=0.1"])
    assert factors == ["model.bn", "seed"] and len(jobs) == 6
    assert jobs[:2] == [["model.bn=pre", "seed=0", "optim.lr=0.1"], ["model.bn=pre", "seed=1", "optim.lr=0.1"]]


def test_multirun_is_one_group_with_a_summary(tracking_uri, tmp_path):
    out = multirun("model.bn=pre,post,none", "trainer.epochs=1", *FAST, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = train_runs(tracking_uri)
    assert sorted(r.data.params["model.bn"] for r in runs) == ["none", "post", "pre"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["ablate.sweep_id"] for r in runs}) == 1
    parent_ids = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parent_ids) == 1
    parent = MlflowClient(tracking_uri).get_run(parent_ids.pop())
    assert parent.info.status == "FINISHED" and parent.data.tags["ablate.factors"] == "model.bn"
    assert "| model.bn | runs | val_acc | test_acc |" in out.stdout and "3 FINISHED runs" in out.stdout


def test_rerun_skips_finished_variants_and_force_reruns_all(tracking_uri, tmp_path):
    args = ("model.bn=pre,none", "trainer.epochs=1", *FAST)
    assert multirun(*args, cwd=tmp_path).returncode == 0
    again = multirun(*args, cwd=tmp_path)
    assert again.stdout.count("skipped: run") == 2 and len(train_runs(tracking_uri)) == 2
    assert multirun(*args, "force=true", cwd=tmp_path).returncode == 0
    assert len(train_runs(tracking_uri, "FINISHED")) == 4


def test_a_diverging_variant_fails_alone_and_the_sweep_says_so(tracking_uri, tmp_path):
    out = multirun("optim.lr=0.01,1e4", "model.bn=none", "trainer.epochs=1", *FAST, cwd=tmp_path)
    assert out.returncode != 0 and "1 run(s) of sweep" in out.stderr + out.stdout
    assert sorted(r.info.status for r in train_runs(tracking_uri)) == ["FAILED", "FINISHED"]


def test_a_diverging_member_of_a_population_sweep_fails_alone_and_its_neighbours_equal_single_runs(tracking_uri,
                                                                                                   tmp_path):
    common = ["model.bn=none", "model.dropout=0", "trainer.epochs=1", "trainer.dtype=float64", *FAST]
    out = multirun("optim.lr=0.01,1e200,0.05", *common, "hydra/launcher=population", cwd=tmp_path)
    assert out.returncode != 0 and "1 run(s) of sweep" in out.stderr + out.stdout
    runs = {r.data.params["optim.lr"]: r for r in train_runs(tracking_uri)}
    assert {lr: r.info.status for lr, r in runs.items()} == {"0.01": "FINISHED", "1e+200": "FAILED",
                                                             "0.05": "FINISHED"}
    assert "Diverged" in runs["1e+200"].data.tags["ablate.error"]
    assert len({r.data.tags["ablate.pid"] for r in runs.values()}) == 1  # trained together, in one process
    for lr in ("0.01", "0.05"):
        cfg = make_config(*common, f"optim.lr={lr}")
        single = fit(cfg, cached_splits(cfg.data)).final
        for metric in ("test_acc", "test_loss", "train_eval_acc"):
            assert runs[lr].data.metrics[metric] == pytest.approx(single[metric], abs=1e-9), (lr, metric)


@pytest.mark.parametrize("bad, message", [
    ("data.path=missing.csv", "error: Data file missing.csv does not exist."),
    ("hydra.launcher.max_size=0", "error: hydra.launcher.max_size=0 is not allowed"),
    ("model.dropout=0.1,1.5", "error: model.dropout=1.5 is not allowed: model.dropout must be in [0, 1)."),
    ("optim.name=sgd,sgdd", "error: optim.name=sgdd is not allowed: optim.name must be one of sgd, adam."),
])
def test_a_population_sweep_ends_a_user_error_with_one_line_before_it_writes_anything(bad, message, tracking_uri,
                                                                                       tmp_path):
    out = multirun("model.bn=pre,none", "trainer.epochs=1", "hydra/launcher=population", "trainer.device=cpu", bad,
                   cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    client = MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])  # no parent run either


def test_a_config_error_on_a_finished_sweep_leaves_its_record_as_it_was(tracking_uri, tmp_path):
    args = ("model.bn=pre,none", "trainer.epochs=1", "hydra/launcher=population", *FAST)
    assert multirun(*args, cwd=tmp_path).returncode == 0
    client = MlflowClient(tracking_uri)
    before = {r.info.run_id: r.info.status for r in client.search_runs([e.experiment_id for e in
                                                                        client.search_experiments()])}
    assert multirun(*args, "hydra.launcher.max_size=0", cwd=tmp_path).returncode == 2
    after = {r.info.run_id: r.info.status for r in client.search_runs([e.experiment_id for e in
                                                                       client.search_experiments()])}
    assert after == before and set(after.values()) == {"FINISHED"}


@pytest.mark.parametrize("bad, message", [
    ("+trainer.epoch=5", "error: trainer.epoch is not a setting ablate has"),
    ("trainer.epochs=0", "error: trainer.epochs=0 is not allowed"),
])
def test_a_sweep_whose_fixed_settings_are_wrong_says_so_before_it_opens_anything(bad, message, tracking_uri,
                                                                                  tmp_path):
    out = multirun("model.bn=pre,none", "hydra/launcher=population", "trainer.device=cpu", bad, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    client = MlflowClient(tracking_uri)
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])  # no parent run either


@pytest.mark.slow
def test_sigkill_mid_sweep_then_restart_loses_nothing_and_leaves_nothing_running(tracking_uri, tmp_path):
    args = ["-m", "model.dropout=0,0.1", "trainer.epochs=2,150", *FAST]  # the kill comes while a long one trains
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "ablate", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with stopped_at_exit(proc):
        deadline = time.time() + 120
        while not (train_runs(tracking_uri, "FINISHED") and [r for r in train_runs(tracking_uri, "RUNNING")
                                                             if r.data.params.get("trainer.epochs") == "150"]):
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # a long run is mid-training now
        proc.wait()
    [interrupted] = train_runs(tracking_uri, "RUNNING")
    finished_before = {r.data.tags["ablate.config_hash"] for r in train_runs(tracking_uri, "FINISHED")}
    assert 1 <= len(finished_before) < 4  # killed midway

    out = multirun(*args[1:], cwd=tmp_path)  # the restart: what crosses a process boundary was the kill
    assert out.returncode == 0, out.stderr
    runs = train_runs(tracking_uri)
    finished = [r.data.tags["ablate.config_hash"] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 4 and len(set(finished)) == 4  # exactly one FINISHED run per variant
    assert finished_before <= set(finished)  # the runs finished before the kill were kept, not redone
    client = MlflowClient(tracking_uri)
    killed = client.get_run(interrupted.info.run_id)
    assert killed.info.status == "KILLED" and "died" in killed.data.tags["ablate.error"]
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in everything if r.info.status == "RUNNING"]


def test_population_launcher_records_runs_exactly_like_sequential_runs(migrated_store, tmp_path, monkeypatch):
    import shutil

    # data.split_seed refers to the swept seed: each launcher must resolve it per job, as one composition would
    grid = ["model.bn=pre,none", "model.dropout=0,0.3", "seed=0,1", "data.split_seed=${seed}", "trainer.epochs=1",
            *FAST]
    stores = {}
    for launcher in ("basic", "population"):
        folder = tmp_path / launcher
        folder.mkdir()
        shutil.copy(migrated_store, folder / "mlflow.db")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        written_behind = ["tracking.write_behind=true"] if launcher == "population" else []  # records alike
        out = multirun(*grid, f"hydra/launcher={launcher}", *written_behind, cwd=folder,
                       env_extra={"MLFLOW_TRACKING_URI": uri})
        assert out.returncode == 0, out.stderr
        stores[launcher] = {r.data.tags["ablate.config_hash"]: r for r in train_runs(uri, "FINISHED")}
    sequential, population = stores["basic"], stores["population"]
    assert len(population) == 8 and set(population) == set(sequential)  # one FINISHED run per variant
    compared = 0
    for key, run in population.items():
        twin = sequential[key]
        assert set(run.data.params) == set(twin.data.params) and set(run.data.metrics) == set(twin.data.metrics)
        assert set(run.data.tags) == set(twin.data.tags)
        differing = {k for k in run.data.params if run.data.params[k] != twin.data.params[k]}
        assert differing == {"tracking.uri", "tracking.write_behind"}  # the two stores and how, nothing else
        assert run.data.params["data.split_seed"] == run.data.params["seed"]
        for metric, value in run.data.metrics.items():  # a member, dropout masks included, computes its single run
            if not metric.endswith("_seconds"):
                assert value == pytest.approx(twin.data.metrics[metric], abs=1e-5), metric
        compared += 1
    assert compared == 8
    assert len({r.data.tags["mlflow.parentRunId"] for r in population.values()}) == 1
    uri = f"sqlite:///{tmp_path / 'population' / 'mlflow.db'}"
    again = multirun(*grid, "hydra/launcher=population", "tracking.write_behind=true", cwd=tmp_path / "population",
                     env_extra={"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0 and "continuing sweep" in again.stdout
    assert len(train_runs(uri)) == 8  # resumed: nothing trained twice


@pytest.mark.slow
def test_two_local_jobs_side_by_side_group_as_one_sweep(tracking_uri, tmp_path):
    out = multirun_process("model.bn=pre,none", "trainer.epochs=1", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           cwd=tmp_path, env_extra={"OMP_NUM_THREADS": str(2 * len(os.sched_getaffinity(0)))})
    assert out.returncode == 0, out.stderr
    runs = train_runs(tracking_uri, "FINISHED")
    assert len(runs) == 2 and len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    assert len({r.data.tags["ablate.pid"] for r in runs}) == 2  # trained in two worker processes
    # the two share the cores: half each, whatever the environment asked of every process
    shared = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {r.data.tags["numeric_mode"] for r in runs} == {f"float32 on cpu, {shared} thread(s)"}


def test_a_users_model_from_the_working_directory_sweeps_like_the_mlp(tracking_uri, tmp_path):
    import shutil

    shutil.copy(REPO / "examples" / "my_models.py", tmp_path)  # the user's file, in the folder they run from
    out = multirun("model=custom", "model.target=my_models.SmallResNet", "model.bn=pre,post,none", "seed=0,1",
                   "+model.kwargs.width=8", "trainer.epochs=1", *FAST, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = train_runs(tracking_uri)
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1 and "6 FINISHED runs" in out.stdout
    assert {r.data.params["model.target"] for r in runs} == {"my_models.SmallResNet"}
    assert {r.data.params["model.kwargs.width"] for r in runs} == {"8"} and runs[0].data.params["model.family"] == "custom"
    client = MlflowClient(tracking_uri)
    params = {}
    for run in runs:
        text = open(client.download_artifacts(run.info.run_id, "model_summary.txt")).read()
        params[run.data.params["model.bn"]] = int(text.rsplit("Trainable params: ", 1)[1].replace(",", ""))
    assert params["none"] < params["pre"] == params["post"]


def test_cnn_variants_train_as_one_vectorised_population_each_its_own_run(tracking_uri, tmp_path):
    out = multirun("model=cnn", "model.channels=[4,8]", "model.dropout=0,0.2", "optim.lr=0.01,0.1", "seed=0,1,2",
                   "trainer.epochs=1", *FAST, "hydra/launcher=population", "hydra.launcher.vectorise=true",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "plan: 12 variants in 1 population(s) of up to 12 on cpu in this process\n  cnn: vectorised " \
           "(hydra.launcher.vectorise=true)" in text
    runs = train_runs(tracking_uri)
    assert len(runs) == 12 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["ablate.pid"] for r in runs}) == 1
    # one population (dropout p and lr per member): its time is shared, so every member records the same amortised time
    assert len({r.data.metrics["train_seconds"] for r in runs}) == 1
    assert all({"test_acc", "val_acc", "train_eval_acc", "weight_norm"} <= set(r.data.metrics) for r in runs)
    assert {r.data.params["model.family"] for r in runs} == {"cnn"}
