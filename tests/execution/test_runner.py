"""One run end to end into a temporary MLflow store: what is recorded, and that nothing is left RUNNING."""

import logging
import threading

import pytest
import torch
from mlflow import MlflowClient

from ablate.config import PopulationSettings, config_hash
from ablate.execution.runner import train_and_log
from ablate.tracking.provenance import code_version
from ablate.execution.runner import Outcome
from ablate.tracking.tracker import (TAG_CODE, TAG_ERROR, TAG_HASH, TAG_HOST, TAG_KIND, RunStatus, Tracker, identity_tags)
from tests.conftest import QUICK, make_config, train_all


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
    assert run.data.tags["numeric_mode"] == f"float32 on cpu, {torch.get_num_threads()} thread(s)" and run.data.params["trainer.tf32"] == "False"
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


def test_an_internal_error_keeps_its_whole_traceback_in_error_txt_and_the_console(tracking_uri, caplog):
    """A population whose vmap probe runs out of memory fails (no silent fallback to one by one): its runs FAILED
    with the one line in the tag and the traceback, down to the model's own frame, in error.txt."""
    from tests.user_models import OutOfMemoryUnderVmap

    OutOfMemoryUnderVmap.forwards = 0
    cfgs = [make_config(*QUICK, "model=custom", "model.target=tests.user_models.OutOfMemoryUnderVmap", f"seed={s}")
            for s in (0, 1)]
    with caplog.at_level(logging.INFO, logger="ablate"):
        results = train_all(cfgs, PopulationSettings(vectorise=True))
    assert [r.outcome for r in results] == [Outcome.failed, Outcome.failed]
    assert "one by one" not in caplog.text and "Traceback" in caplog.text and "OutOfMemoryError" in caplog.text
    client = MlflowClient(tracking_uri)
    for result in results:
        run = client.get_run(result.run_id)
        assert run.info.status == "FAILED" and run.data.tags[TAG_ERROR].startswith("OutOfMemoryError: ")
        text = open(client.download_artifacts(result.run_id, "error.txt")).read()
        assert text.startswith("Traceback") and "user_models.py" in text and 'raise torch.OutOfMemoryError' in text


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
        train_all(cfgs, PopulationSettings(), on_epoch=on_epoch)
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
        results = train_all(cfgs, PopulationSettings(), on_epoch=on_epoch)
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
    [left] = train_all([cfg], PopulationSettings(), wait_for_others=False)
    assert left.outcome == Outcome.elsewhere
    assert [r.run_id for r in tracker.runs(status=RunStatus.running)] == [other.run_id]  # ours withdrawn

    # A waiting worker takes the other's FINISHED result instead of training the variant again.
    threading.Timer(1.0, other.end, [RunStatus.finished]).start()
    [waited] = train_all([cfg], PopulationSettings())
    assert waited.outcome == Outcome.skipped and waited.run_id == other.run_id
    assert code_version() in MlflowClient(tracking_uri).get_run(other.run_id).data.tags.values()


def test_a_password_in_a_uri_is_masked_in_params_config_and_console(tracking_uri, caplog):
    from ablate.tracking.store import mask_url

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
