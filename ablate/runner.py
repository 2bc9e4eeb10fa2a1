"""Jobs end to end: data -> model -> fit -> MLflow, for one variant or a population of them.

``python -m ablate`` trains one variant; the population launcher passes a whole sweep. Either way each variant
is its own MLflow run in the same form, so reports and resume cannot tell how it was trained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ablate.config import DataConfig, RunConfig, config_hash
from ablate.data import Splits, load_splits
from ablate.model import summary
from ablate.population import populations, require_memory
from ablate.tracking import REPO, RecordedRun, SweepGroup, Tracker, run_name
from ablate.train import fit_population, resolve_device

log = logging.getLogger("ablate")
_splits_cache: dict[str, Splits] = {}


@dataclass
class RunResult:
    run_id: str
    status: str  # FINISHED, FAILED, PRUNED; SKIPPED (a FINISHED run of this config and code exists); CLAIMED
    # (another worker is training it)
    metrics: dict[str, float]


def cached_splits(cfg: DataConfig) -> Splits:
    """Read and split the data once per process: the jobs of a sweep share it."""
    if cfg.path and not Path(cfg.path).is_absolute() and not Path(cfg.path).exists() and (REPO / cfg.path).exists():
        cfg = DataConfig(**{**asdict(cfg), "path": str(REPO / cfg.path)})  # the repo's data/ from any directory
    key = json.dumps(asdict(cfg), sort_keys=True, default=str)
    if key not in _splits_cache:
        _splits_cache[key] = load_splits(cfg)
    return _splits_cache[key]


def train_and_log(cfg: RunConfig) -> RunResult:
    """One variant (see ``train_and_log_all``). A job of a sweep leaves a variant another worker holds to that
    worker and returns at once (the sweep waits for it at its end); a lone run waits for the other's result."""
    return train_and_log_all([cfg], wait_for_others=SweepGroup.from_env() is None)[0]


# on_epoch(cfg, metrics) -> True stops that variant (a pruned trial): recorded KILLED, result status PRUNED.
EpochHook = Callable[[RunConfig, dict[str, float]], Optional[bool]]


def train_and_log_all(cfgs: Sequence[RunConfig], population_size: int = 1,
                      on_result: Optional[Callable[[RunConfig, RunResult], None]] = None,
                      memory_fraction: float = 0.5, on_epoch: Optional[EpochHook] = None, kind: str = "train",
                      tags_of: Optional[Callable[[RunConfig], dict[str, str]]] = None,
                      wait_for_others: bool = True) -> list[RunResult]:
    """Train and record ``cfgs``, up to ``population_size`` at once; results in the order of ``cfgs``.

    A variant with a FINISHED run of the same config and code (in the same sweep, inside one) is skipped.
    A variant another worker holds (its live RUNNING run) is left to it: with ``wait_for_others`` this waits
    for that run's result, and trains the variant itself if that worker dies; otherwise it is reported CLAIMED.
    A diverging variant is recorded FAILED alone; a population that crashes or runs out of memory has its runs
    FAILED with the error and the others go on; Ctrl-C marks the open runs KILLED and propagates. A bad data file
    fails before any run opens. ``kind`` and ``tags_of`` label the runs (the search's trials).
    """
    if not cfgs:
        return []
    tracker = Tracker(cfgs[0].tracking)
    sweep = SweepGroup.from_env()
    sweep_id = sweep.sweep_id if sweep else None
    results: dict[int, RunResult] = {}

    def record(cfg: RunConfig, result: RunResult) -> None:
        results[id(cfg)] = result
        if on_result:
            on_result(cfg, result)

    pending, announced = list(cfgs), False
    while pending:
        checked_ms, todo = int(time.time() * 1000), []
        finished = tracker.finished([c for c in pending if not c.force], sweep_id, kind)
        for cfg in pending:
            done = None if cfg.force else finished.get(config_hash(cfg))
            if done is None:
                todo.append(cfg)
                continue
            log.info(f"skipped: run {done.info.run_id} already FINISHED this config with this code (force=true re-runs)")
            record(cfg, RunResult(done.info.run_id, "SKIPPED", dict(done.data.metrics)))
        busy = tracker.held(sweep_id, kind) if todo else set()
        free = [c for c in todo if config_hash(c) not in busy]
        pending = [c for c in todo if config_hash(c) in busy]
        if free:  # a bad data file fails here, before any run is opened
            splits_of = {id(c): cached_splits(c.data) for c in free}
            sizes = next(iter(splits_of.values()))
            groups = populations(free, population_size, sizes.n_features, sizes.n_classes,
                                 max(len(sizes.train), len(sizes.test)), memory_fraction)
            start = random.randrange(len(groups))  # workers sharing a sweep start at different groups
            for i, group in enumerate(groups[start:] + groups[:start]):
                if i and len(groups) > 1:  # what other workers opened meanwhile is theirs
                    busy = tracker.held(sweep_id, kind)
                    pending += [c for c in group if config_hash(c) in busy]
                    group = [c for c in group if config_hash(c) not in busy]
                    if not group:
                        continue
                trained, taken = _train_group(tracker, group, splits_of[id(group[0])], sweep, on_epoch, kind,
                                              tags_of, checked_ms, memory_fraction)
                for cfg, result in trained:
                    record(cfg, result)
                pending += taken
        if pending and not wait_for_others:
            for cfg in pending:
                log.info(f"left to another worker: {run_name(cfg)} (its run is RUNNING)")
                record(cfg, RunResult("", "CLAIMED", {}))
            break
        if pending:
            if not announced:
                log.info(f"waiting for {len(pending)} variant(s) other workers are training")
                announced = True
            time.sleep(random.uniform(0.5, 1.0) * min(5.0, cfgs[0].tracking.heartbeat_s))
    return [results[id(cfg)] for cfg in cfgs]


def _train_group(tracker: Tracker, cfgs: list[RunConfig], splits: Splits, sweep: Optional[SweepGroup],
                 hook: Optional[EpochHook], kind: str, tags_of: Optional[Callable[[RunConfig], dict[str, str]]],
                 checked_ms: int, memory_fraction: float) -> tuple[list[tuple[RunConfig, RunResult]], list[RunConfig]]:
    """One population: claim its variants, train the claimed ones at once, end each run on its own.

    Returns (config, result) of the variants trained here, and the configs left to other workers. A crash or
    an out-of-memory error fails this group alone: its runs are FAILED with the error and the sweep goes on.
    """
    opened: list[tuple[RunConfig, RecordedRun]] = []
    try:
        return _claim_and_fit(tracker, cfgs, splits, sweep, hook, kind, tags_of, checked_ms, memory_fraction, opened)
    except Exception as err:
        log.error(f"a population of {len(cfgs)} failed ({type(err).__name__}: {err}); its runs are marked FAILED")
        run_ids = {id(cfg): run.run_id for cfg, run in opened if run.status != "KILLED"}  # not the withdrawn
        taken = [cfg for cfg, run in opened if run.status == "KILLED"]
        failed = [cfg for cfg in cfgs if all(cfg is not t for t in taken)]
        return [(cfg, RunResult(run_ids.get(id(cfg), ""), "FAILED", {})) for cfg in failed], taken


def _claim_and_fit(tracker: Tracker, cfgs: list[RunConfig], splits: Splits, sweep: Optional[SweepGroup],
                   hook: Optional[EpochHook], kind: str, tags_of: Optional[Callable[[RunConfig], dict[str, str]]],
                   checked_ms: int, memory_fraction: float, opened: list[tuple[RunConfig, RecordedRun]]
                   ) -> tuple[list[tuple[RunConfig, RunResult]], list[RunConfig]]:
    device = str(resolve_device(cfgs[0].trainer.device))
    sweep_id = sweep.sweep_id if sweep else None
    summaries = {repr(c.model): summary(c.model, splits.n_features, splits.n_classes) for c in cfgs}  # mostly one
    with contextlib.ExitStack() as stack:
        for cfg in cfgs:
            opened.append((cfg, stack.enter_context(tracker.training_run(
                cfg, device, sweep.parent_run_id if sweep else None, sweep_id, kind,
                tags_of(cfg) if tags_of else None, {"model_summary.txt": summaries[repr(cfg.model)]}))))
        # The claim: a rival that opened the same variant meanwhile sees ours too, and both withdraw (and retry
        # later) rather than both train; one that looked before we opened ours withdraws when it sees ours.
        held = tracker.held(sweep_id, kind, None if cfgs[0].force else checked_ms - 60_000,
                            {run.run_id for _, run in opened})
        taken = [cfg for cfg, _ in opened if config_hash(cfg) in held]
        for cfg, run in opened:
            if config_hash(cfg) in held:
                run.withdraw()
        claimed = [(cfg, run) for cfg, run in opened if run.status is None]
        if not claimed:
            return [], taken
        cfgs, runs = [c for c, _ in claimed], [r for _, r in claimed]
        require_memory(cfgs[0], splits.n_features, splits.n_classes, max(len(splits.train), len(splits.test)),
                       memory_fraction)
        single = len(cfgs) == 1
        for run in runs:
            if not single:
                run.flush_every_s = None  # K runs: their metrics go in one batch each at the end
        log.info(f"run {runs[0].run_id}: {model_line(cfgs[0], splits)} on {device}" if single else
                 f"population of {len(cfgs)} on {device}: {model_line(cfgs[0], splits).split(', seed')[0]} ...")
        epoch_level = logging.INFO if single and not sweep else logging.DEBUG

        def on_epoch(member: int, metrics: dict[str, float]) -> Optional[bool]:
            log.log(epoch_level, _epoch_line(metrics, cfgs[member].trainer.epochs))
            runs[member].log_epoch(metrics)
            return hook(cfgs[member], metrics) if hook else None

        members, _ = fit_population(cfgs, splits, on_epoch)
        results = []
        for run, cfg, member in zip(runs, cfgs, members):
            if member.error is not None:
                run.end("FAILED", f"Diverged: {member.error}")
                log.error(f"run {run.run_id} diverged: {member.error}")
                results.append(RunResult(run.run_id, "FAILED", {}))
                continue
            last = member.history.epochs[-1]
            if member.stopped:
                run.end("KILLED", f"pruned after epoch {int(last['epoch'])}")
                results.append(RunResult(run.run_id, "PRUNED", dict(last)))
                continue
            final = {k: v for k, v in member.history.final.items() if not math.isnan(v)}
            run.log_metrics(final, step=cfg.trainer.epochs)
            metrics = {**{k: last[k] for k in ("train_loss", "train_acc", "val_acc") if k in last}, **final}
            results.append(RunResult(run.run_id, "FINISHED", metrics))
    for run, result in zip(runs, results):
        if result.status == "FINISHED":
            _report(tracker, run.run_id, result.metrics, brief=not single or sweep is not None)
    return list(zip(cfgs, results)), taken


def model_line(cfg: RunConfig, splits: Splits) -> str:
    widths = "-".join(str(w) for w in [splits.n_features, *cfg.model.hidden, splits.n_classes])
    return (f"MLP {widths}, bn={cfg.model.bn.value}, dropout={cfg.model.dropout:g}, {cfg.optim.name.value} "
            f"lr={cfg.optim.lr:g}, weight_decay={cfg.optim.weight_decay:g} ({cfg.optim.l2.value}), "
            f"seed={cfg.seed}; {len(splits.train)} train / {len(splits.val) if splits.val else 0} val / "
            f"{len(splits.test)} test rows")


def _epoch_line(m: dict[str, float], epochs: int) -> str:
    val = f" | val loss {m['val_loss']:.4f} acc {m['val_acc']:.3f}" if "val_acc" in m else ""
    return (f"epoch {int(m['epoch']):>3}/{epochs}  train loss {m['train_loss']:.4f} acc {m['train_acc']:.3f}"
            f"{val} | |w| {m['weight_norm']:.2f} | {m['epoch_seconds']:.2f} s")


def _report(tracker: Tracker, run_id: str, metrics: dict[str, float], brief: bool) -> None:
    val = f", val acc {metrics['val_acc']:.4f}" if "val_acc" in metrics else ""
    line = (f"FINISHED in {metrics['train_seconds']:.1f} s: test acc {metrics['test_acc']:.4f}, "
            f"test loss {metrics['test_loss']:.4f}{val}")
    if brief:
        return log.info(f"run {run_id} {line}")
    log.info(f"{line}\n  recorded in {tracker.uri}, experiment {tracker.experiment_id}, run {run_id}\n"
             f"  look at it: make ui, then open {tracker.runs_url()}/{run_id}")
