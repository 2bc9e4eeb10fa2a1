"""One configured job, end to end: data -> model -> fit -> MLflow. ``python -m ablate`` and sweeps call it."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ablate.config import DataConfig, RunConfig
from ablate.data import Splits, load_splits
from ablate.model import build_mlp, summary
from ablate.tracking import REPO, SweepGroup, Tracker
from ablate.train import Diverged, fit, resolve_device

log = logging.getLogger("ablate")
_splits_cache: dict[str, Splits] = {}


@dataclass
class RunResult:
    run_id: str
    status: str  # FINISHED, FAILED, or SKIPPED (a FINISHED run of the same config and code already exists)
    metrics: dict[str, float]


def cached_splits(cfg: DataConfig) -> Splits:
    """Read and split the data once per process: the jobs of a sweep share it."""
    if cfg.path and not Path(cfg.path).is_absolute() and not Path(cfg.path).exists() and (REPO / cfg.path).exists():
        cfg = DataConfig(**{**asdict(cfg), "path": str(REPO / cfg.path)})  # the repo's data/ from any directory
    key = json.dumps(asdict(cfg), sort_keys=True, default=str)
    if key not in _splits_cache:
        _splits_cache[key] = load_splits(cfg)
    return _splits_cache[key]


def _epoch_line(m: dict[str, float], epochs: int) -> str:
    val = f" | val loss {m['val_loss']:.4f} acc {m['val_acc']:.3f}" if "val_acc" in m else ""
    return (f"epoch {int(m['epoch']):>3}/{epochs}  train loss {m['train_loss']:.4f} acc {m['train_acc']:.3f}"
            f"{val} | |w| {m['weight_norm']:.2f} | {m['epoch_seconds']:.2f} s")


def train_and_log(cfg: RunConfig) -> RunResult:
    """Train one variant and record it, unless a FINISHED run of the same config and code exists (resume).

    A diverging run is recorded FAILED and returned as such; other errors propagate after the run is
    marked FAILED (or KILLED on Ctrl-C).
    """
    tracker = Tracker(cfg.tracking)
    sweep = SweepGroup.from_env()
    if not cfg.force and (done := tracker.find_finished(cfg, sweep.sweep_id if sweep else None)) is not None:
        log.info(f"skipped: run {done.info.run_id} already FINISHED this config with this code (force=true re-runs)")
        return RunResult(done.info.run_id, "SKIPPED", dict(done.data.metrics))

    splits = cached_splits(cfg.data)  # a bad data file fails here, before any run is opened
    torch.manual_seed(cfg.seed)
    model = build_mlp(cfg.model, splits.n_features, splits.n_classes)
    device = resolve_device(cfg.trainer.device)
    try:
        with tracker.training_run(cfg, str(device), sweep.parent_run_id if sweep else None,
                                  sweep.sweep_id if sweep else None) as run:
            run.log_text(summary(model, splits.n_features), "model_summary.txt")
            log.info(f"run {run.run_id}: {model_line(cfg, splits)} on {device}")
            epoch_level = logging.DEBUG if sweep else logging.INFO  # in a sweep, the progress bar reports

            def on_epoch(metrics: dict[str, float]) -> None:
                log.log(epoch_level, _epoch_line(metrics, cfg.trainer.epochs))
                run.log_epoch(metrics)

            history = fit(model, splits, cfg, on_epoch)
            final = {k: v for k, v in history.final.items() if not math.isnan(v)}
            run.log_metrics(final, step=cfg.trainer.epochs)
    except Diverged as err:  # recorded FAILED by the run's lifecycle; a sweep goes on with the next variant
        log.error(f"run {run.run_id} diverged: {err}")
        return RunResult(run.run_id, "FAILED", {})
    last = history.epochs[-1]
    metrics = {**{k: last[k] for k in ("train_loss", "train_acc", "val_acc") if k in last}, **final}
    _report(tracker, run.run_id, metrics, history.final["train_seconds"], brief=sweep is not None)
    return RunResult(run.run_id, "FINISHED", metrics)


def model_line(cfg: RunConfig, splits: Splits) -> str:
    widths = "-".join(str(w) for w in [splits.n_features, *cfg.model.hidden, splits.n_classes])
    return (f"MLP {widths}, bn={cfg.model.bn.value}, dropout={cfg.model.dropout:g}, {cfg.optim.name.value} "
            f"lr={cfg.optim.lr:g}, weight_decay={cfg.optim.weight_decay:g} ({cfg.optim.l2.value}), "
            f"seed={cfg.seed}; {len(splits.train)} train / {len(splits.val) if splits.val else 0} val / "
            f"{len(splits.test)} test rows")


def _report(tracker: Tracker, run_id: str, metrics: dict[str, float], seconds: float, brief: bool) -> None:
    val = f", val acc {metrics['val_acc']:.4f}" if "val_acc" in metrics else ""
    line = f"FINISHED in {seconds:.1f} s: test acc {metrics['test_acc']:.4f}, test loss {metrics['test_loss']:.4f}{val}"
    if brief:
        return log.info(line)
    log.info(f"{line}\n"
             f"  recorded in {tracker.uri}, experiment {tracker.experiment_id}, run {run_id}\n"
             f"  look at it: make ui, then open {tracker.runs_url()}/{run_id}")
