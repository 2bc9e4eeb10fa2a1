"""The Optuna search on real storages (a journal file; PostgreSQL where reachable) into a temporary MLflow store."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from ablate.errors import UserError
from ablate.errors import ConfigValueError
from ablate.config import config_hash, with_values
from ablate.config.search_space import searched_keys
from ablate.execution.search import export_best, open_study, run_search, trial_values
from tests.conftest import REPO, make_config, stopped_at_exit

FAST = ("data=digits", "trainer.device=cpu", "trainer.epochs=3", "search.final_seeds=2")


def mlflow_runs(uri, kind):
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], f"tags.`ablate.kind` = '{kind}'")


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


@pytest.mark.parametrize("override, key", [
    ("search.space.optim.lr={type: log_uniform, low: 0.1, high: 0.01}", "search.space.optim.lr"),
    ("search.space.model.dropout={type: uniform, low: 0, high: null}", "search.space.model.dropout"),
    ("search.space.optim.weight_decay={type: off_or_log_uniform, low: 0, high: 0.1}", "search.space.optim.weight_decay"),
    ("search.space.optim.lr={type: normal, low: 0.1, high: 1}", "search.space.optim.lr.type"),
    ("+search.space.optim.momentun={type: uniform, low: 0, high: 0.9}", "search.space.optim.momentun"),
    ("search.batch=0", "search.batch")])
def test_bad_search_space_is_a_clear_error(override, key):
    with pytest.raises(ConfigValueError, match=key.replace(".", r"\.")):
        make_config(override)


def test_any_config_key_can_be_searched_by_declaring_it():
    cfg = make_config("+search.space.optim.momentum={type: uniform, low: 0, high: 0.95}",
                      "+search.space.model.bn={type: categorical, choices: [pre, post]}", "~search.space.model.dropout")
    space = searched_keys(cfg.search.space)
    assert set(space) == {"optim.momentum", "model.bn", "optim.weight_decay", "optim.lr"}
    trial = optuna.create_study().ask()
    from ablate.execution.search import suggest

    values = suggest(trial, space)
    run = with_values(cfg, values)
    assert 0 <= run.optim.momentum <= 0.95 and run.model.bn.value in ("pre", "post")
    assert run.optim.lr == values["optim.lr"]


def test_search_needs_a_validation_split(tracking_uri, tmp_path):
    with pytest.raises(Exception, match="data.val_fraction"):
        run_search(make_config(*FAST, "data.val_fraction=0", f"search.storage={tmp_path}/s.journal"))


def test_a_search_fills_its_budget_prunes_records_and_resumes(tracking_uri, tmp_path):
    storage = f"{tmp_path}/studies/s.journal"
    args = [*FAST, f"search.storage={storage}", "search.batch=3", "search.pruner_startup_trials=1",
            "search.pruner_warmup_epochs=0"]
    # Three good trials first, then two with a learning rate far too low (beside one more good one): the low ones
    # fall far below the median of the finished trials after their first epoch and must be pruned there.
    study = open_study(make_config(*args).search, 3)
    for lr, p in [(0.1, 0.0), (0.2, 0.1), (0.3, 0.0), (1e-3, 0.1), (0.15, 0.0), (1e-3, 0.2)]:
        study.enqueue_trial({"model.dropout": p, "optim.weight_decay.on": False, "optim.lr": lr})
    best = run_search(make_config(*args, "search.n_trials=6"))
    finished = [s for s in states(study) if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6  # the budget counts pruned trials
    pruned = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED]
    hopeless = [t for t in pruned if t.params["optim.lr"] == 1e-3]
    assert len(hopeless) == 2 and all(list(t.intermediate_values) == [1] for t in hopeless)  # after epoch 1
    trials = mlflow_runs(tracking_uri, "trial")
    assert len(trials) == 6 and len(mlflow_runs(tracking_uri, "search")) == 1
    assert {r.data.tags["optuna.state"] for r in trials} <= {"COMPLETE", "PRUNED"}
    # the objective is validation accuracy, never test accuracy
    for run in trials:
        if run.data.tags["optuna.state"] == "COMPLETE":
            trial = study.trials[int(run.data.tags["optuna.trial"])]
            assert trial.value == pytest.approx(run.data.metrics["val_acc"])
    assert best.value == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    parent = mlflow_runs(tracking_uri, "search")[0]
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best.value)
    for run in trials + mlflow_runs(tracking_uri, "final"):  # every trial and final run is a child of the study's
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["ablate.sweep_id"] == parent.data.tags["ablate.sweep_id"]
    assert "final_test_acc_mean" in parent.data.metrics and parent.data.params["best.optim.lr"]
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent.info.run_id, "optuna")}
    assert "optuna/history.png" in artifacts and "optuna/best.yaml" in artifacts

    run_search(make_config(*args, "search.n_trials=8"))  # the same study, a larger budget: resumes
    study = open_study(make_config(*args).search, 3)
    assert len([s for s in states(study) if s in (TrialState.COMPLETE, TrialState.PRUNED)]) == 8
    assert len(mlflow_runs(tracking_uri, "trial")) == 8 and len(mlflow_runs(tracking_uri, "search")) == 1


def test_exported_best_config_reproduces_the_trial(tmp_path):
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"model.dropout": 0.123, "optim.weight_decay.on": True, "optim.weight_decay": 3.2e-4, "optim.lr": 0.0456},
        distributions={"model.dropout": optuna.distributions.FloatDistribution(0, 0.6),
                       "optim.weight_decay.on": optuna.distributions.CategoricalDistribution([True, False]),
                       "optim.weight_decay": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
                       "optim.lr": optuna.distributions.FloatDistribution(1e-3, 1, log=True)}, value=0.9))
    base = make_config("data=digits", "model.bn=post", "model.hidden=[32]", "optim.momentum=0.9", "trainer.epochs=3",
                       "seed=7")  # what the search's command line set
    path = export_best(study.best_trial, base, tmp_path)
    # Composed from the defaults, as `python -m ablate --config-dir <folder> +experiment=best` does:
    retrained = make_config(f"hydra.searchpath=[file://{tmp_path}]", "+experiment=best")
    space = searched_keys(base.search.space)
    expected = with_values(base, trial_values(study.best_trial.params, space))
    assert config_hash(retrained) == config_hash(expected)
    assert (retrained.model.dropout, retrained.optim.lr, retrained.optim.weight_decay) == (0.123, 0.0456, 3.2e-4)
    assert (retrained.data.name, retrained.model.bn.value, retrained.seed) == ("digits", "post", 7)
    assert "validation accuracy 0.9000" in path.read_text()
    assert trial_values({**study.best_trial.params, "optim.weight_decay.on": False}, space)["optim.weight_decay"] == 0.0


def start_worker(args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "ablate", "search", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_missing_storage_database_is_named_with_the_fix(postgres_server):
    cfg = make_config("search.storage=postgresql://postgres:secret@127.0.0.1:5432/ablate_no_such_database")
    with pytest.raises(UserError) as err:
        open_study(cfg.search, epochs=1)
    message = str(err.value)
    assert 'database "ablate_no_such_database" does not exist' in message and "set search.storage" in message
    assert "postgres:***@" in message and "secret" not in message


def run_workers(args, n, cwd):
    """n search processes on one study (only the first reports); their outputs, once all have ended."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [start_worker([*args, f"search.finalize={i == 0}"], cwd, env) for i in range(n)]
    with stopped_at_exit(*workers):
        outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), [out[-3000:] for w, out in zip(workers, outputs) if w.returncode]
    return outputs


def assert_budget_held_exactly(study, n_trials):
    counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == n_trials and not [t for t in study.trials if t.state == TrialState.RUNNING]
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers)))  # none lost, none duplicated


@pytest.mark.slow
def test_four_workers_on_postgresql_complete_the_budget_exactly(tracking_uri, tmp_path, postgres_url):
    study_name = f"ablate-test-{uuid.uuid4().hex[:8]}"
    run_workers([*FAST, f"search.storage={postgres_url}", f"search.study={study_name}", "search.n_trials=10",
                 "search.batch=2", "search.pruner=none", "trainer.epochs=2"], 4, tmp_path)
    assert_budget_held_exactly(optuna.load_study(study_name=study_name, storage=postgres_url), 10)
    assert len(mlflow_runs(tracking_uri, "trial")) == 10
    optuna.delete_study(study_name=study_name, storage=postgres_url)


@pytest.mark.slow
def test_make_search_with_three_workers_on_the_default_journal_completes_the_budget_sharing_the_cores(tracking_uri,
                                                                                                     tmp_path):
    venv = Path(sys.executable).parent.parent
    args = " ".join([*FAST, "search.n_trials=6", "search.batch=2", "search.pruner=none", "trainer.epochs=1",
                     "search.final_seeds=0"])  # no search.storage: studies/ablate.journal, in the folder make runs in
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}  # torch's own default
    done = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "search", "WORKERS=3", f"ARGS={args}",
                           f"VENV={venv}", "-o", f"{venv}/.ready"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = optuna.load_study(study_name="ablate", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "studies" / "ablate.journal"))))
    assert_budget_held_exactly(study, 6)
    trials = mlflow_runs(tracking_uri, "trial")
    assert len(trials) == 6
    share = max(1, len(os.sched_getaffinity(0)) // 3)  # each worker its share, not all the cores each
    assert {r.data.tags["numeric_mode"] for r in trials} == {f"float32 on cpu, {share} thread(s)"}


def test_the_first_search_process_is_reproducible_from_its_sampler_seed(tracking_uri, tmp_path):
    def trial_params(storage, seed):
        cfg = make_config(*FAST, f"search.storage={storage}", "search.n_trials=4", "search.batch=2",
                          "search.pruner=none", "search.final_seeds=0", "trainer.epochs=1", f"search.sampler_seed={seed}")
        run_search(cfg)
        return [t.params for t in open_study(cfg.search, 1).trials]

    first = trial_params(tmp_path / "a.journal", 7)
    assert first == trial_params(tmp_path / "b.journal", 7) and len(first) == 4
    assert first != trial_params(tmp_path / "c.journal", 8)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_detected_and_its_trial_retried(tracking_uri, tmp_path):
    storage = f"{tmp_path}/s.journal"
    args = [*FAST, f"search.storage={storage}", "search.n_trials=3", "search.batch=1", "search.pruner=none",
            "trainer.epochs=200", "search.final_seeds=0"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = start_worker(args, tmp_path, env)
    with stopped_at_exit(worker):
        deadline = time.time() + 120
        while True:  # wait until a trial is mid-training (it has a reported epoch)
            assert time.time() < deadline and worker.poll() is None
            time.sleep(0.5)
            if os.path.exists(storage):
                study = optuna.load_study(study_name="ablate", storage=optuna.storages.JournalStorage(
                    optuna.storages.journal.JournalFileBackend(storage)))
                if any(t.intermediate_values for t in study.get_trials(states=(TrialState.RUNNING,))):
                    break
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    fast = [a for a in args if not a.startswith("trainer.epochs")] + ["trainer.epochs=2"]
    restarted = start_worker(fast, tmp_path, env)
    with stopped_at_exit(restarted):
        output = restarted.communicate(timeout=300)[0]
    assert restarted.returncode == 0, output
    study = optuna.load_study(study_name="ablate", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) >= 1 and any(t.user_attrs.get("retry_of") == failed[0].number for t in trials)
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 3


def test_diverging_trials_are_pruned_and_the_study_goes_on(tracking_uri, tmp_path):
    cfg = make_config(*FAST, "model.bn=none", "search.space.optim.lr={type: log_uniform, low: 1e3, high: 1e4}",
                      "~search.space.model", "~search.space.optim.weight_decay", "search.n_trials=3", "search.batch=3",
                      "search.final_seeds=0", f"search.storage={tmp_path}/d.journal")
    assert run_search(cfg) is None  # no COMPLETE trial to report
    study = open_study(cfg.search, 3)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 3
    assert all(t.user_attrs.get("diverged") for t in study.trials)
    assert {r.data.tags["optuna.state"] for r in mlflow_runs(tracking_uri, "trial")} == {"PRUNED"}


def test_a_trial_over_several_seeds_is_judged_by_their_mean(tracking_uri, tmp_path):
    cfg = make_config(*FAST, f"search.storage={tmp_path}/m.journal", "search.n_trials=2", "search.batch=2",
                      "search.seeds_per_trial=3", "search.pruner=none", "search.final_seeds=0", "trainer.epochs=1",
                      "seed=10")
    run_search(cfg)
    study = open_study(cfg.search, 1)
    runs = mlflow_runs(tracking_uri, "trial")
    assert len(runs) == 6
    for trial in study.trials:
        mine = [r for r in runs if r.data.tags["optuna.trial"] == str(trial.number)]
        assert sorted(int(r.data.params["seed"]) for r in mine) == [10, 11, 12]
        assert trial.value == pytest.approx(np.mean([r.data.metrics["val_acc"] for r in mine]))
        assert trial.intermediate_values[1] == pytest.approx(trial.value)  # the pruner saw the same mean
        assert {r.data.params["optim.lr"] for r in mine} == {str(trial.params["optim.lr"])}
