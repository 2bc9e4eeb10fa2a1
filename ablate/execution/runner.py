"""The runner executes a plan (``engine.plan``): each planned population's variants leased, trained and recorded,
each variant its own MLflow run in the same form however it was trained, so reports and resume cannot tell how.

It decides nothing the plan decided. It skips what is already done (a FINISHED run of the same config, code and
data), leaves what another worker holds to it (its live RUNNING run: the lease), and ends every run it opened:
FINISHED, FAILED with its error, or KILLED on Ctrl-C. A worker that trains a population planned elsewhere (a Ray
task, a SLURM job) cuts it to its own device's memory first.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional, Sequence

from ablate.config.identity import config_hash
from ablate.config.launch import PopulationSettings
from ablate.config.run import RunConfig
from ablate.engine import models
from ablate.engine.data import Splits, cached_splits
from ablate.engine.device import numeric_mode, resolve_device
from ablate.engine.memory import DataSize, cut_to_memory, require_memory
from ablate.engine.plan import Plan, duration, make_plan, seconds_to_train
from ablate.engine.trainer import fit_population
from ablate.errors import UserError, raise_if_stopped
from ablate.paths import command
from ablate.tracking.tracker import RecordedRun, RunKind, RunStatus, SweepRef, Tracker, lease_key, run_name

log = logging.getLogger("ablate")


class Outcome(str, Enum):
    finished = "finished"  # trained here to the end: its run is FINISHED
    failed = "failed"  # diverged or crashed: its run is FAILED with the error
    pruned = "pruned"  # stopped early by on_epoch (a pruned trial): its run is KILLED
    skipped = "skipped"  # not trained: a FINISHED run of this config and code exists, whose metrics are returned
    elsewhere = "elsewhere"  # not trained here: another worker holds it (its run is RUNNING)


@dataclass
class RunResult:
    run_id: str
    outcome: Outcome
    metrics: dict[str, float]

    @property
    def value(self) -> float:
        """What a job reports (to Hydra, to a sweeper): the validation accuracy, test where there is none."""
        return self.metrics.get("val_acc", self.metrics.get("test_acc", math.nan))


# on_epoch(cfg, metrics) -> True stops that variant (a pruned trial): recorded KILLED, outcome pruned.
EpochHook = Callable[[RunConfig, dict[str, float]], Optional[bool]]


@dataclass
class Recording:
    """How a plan's variants are recorded and followed: the store, the sweep they join, their kind and extra tags,
    what is told after each member's epoch (a pruner) and as each variant's result is known (a progress bar)."""

    tracker: Tracker
    sweep: Optional[SweepRef] = None
    kind: RunKind = RunKind.train
    tags_of: Callable[[RunConfig], dict[str, str]] = field(default=lambda cfg: {})
    on_epoch: Optional[EpochHook] = None
    on_result: Optional[Callable[[RunConfig, "RunResult"], None]] = None
    announce: Callable[[str], None] = field(default=lambda text: log.info(text))  # a sweep's: above its bar

    @property
    def sweep_id(self) -> Optional[str]:
        return self.sweep.sweep_id if self.sweep else None


def train_and_log(cfg: RunConfig, tracker: Optional[Tracker] = None, sweep: Optional[SweepRef] = None,
                  on_epoch: Optional[EpochHook] = None) -> RunResult:
    """One variant: a plan of one. A job of a sweep leaves a variant another worker holds to that worker and returns
    at once (the sweep waits for it at its end); a lone run waits for the other's result."""
    plan = make_plan([cfg], PopulationSettings(max_size=1))
    recording = Recording(tracker or Tracker(cfg.tracking), sweep, on_epoch=on_epoch)
    return execute(plan, recording, wait_for_others=sweep is None)[0]


def execute(plan: Plan, recording: Recording, wait_for_others: bool = True) -> list[RunResult]:
    """Train and record the plan's variants; results in the plan's order of its configs.

    A variant with a FINISHED run of the same config and code (in the same sweep, inside one) is skipped. A variant
    another worker holds (its live RUNNING run) is left to it: with ``wait_for_others`` this waits for that run's
    result, and trains the variant itself if that worker dies; otherwise its outcome is ``elsewhere``. A diverging
    variant is recorded FAILED alone; a population that crashes or runs out of memory has its runs FAILED with the
    error and the others go on; Ctrl-C marks the open runs KILLED and propagates."""
    results: dict[int, RunResult] = {}

    def record(cfg: RunConfig, result: RunResult) -> None:
        results[id(cfg)] = result
        if recording.on_result:
            recording.on_result(cfg, result)

    pending, announced, first = plan.cfgs, False, True
    try:
        while pending:
            pending = train_round(plan, recording, pending, record, summarise=first)
            first = False
            if pending and not wait_for_others:
                for cfg in pending:
                    log.info(f"left to another worker: {run_name(cfg)} (its run is RUNNING)")
                    record(cfg, RunResult("", Outcome.elsewhere, {}))
                break
            if pending:
                raise_if_stopped()
                if not announced:
                    log.info(f"waiting for {len(pending)} variant(s) other workers are training")
                    announced = True
                time.sleep(random.uniform(0.5, 1.0) * min(5.0, pending[0].tracking.heartbeat_s))
    except BaseException as err:  # a run a stop caught between its opening and its lifecycle is ended too
        recording.tracker.end_open(err)
        raise
    finally:  # the populations' runs are all recorded before their results are returned (or the error raised)
        recording.tracker.writer.drain()
    return [results[id(cfg)] for cfg in plan.cfgs]


def train_round(plan: Plan, recording: Recording, pending: list[RunConfig],
                record: Callable[[RunConfig, RunResult], None], summarise: bool) -> list[RunConfig]:
    """One pass over the plan: what is done is skipped, then each population's free members are trained (workers
    sharing a sweep start at different populations); returns the variants other workers hold."""
    tracker, checked_ms = recording.tracker, int(time.time() * 1000)
    todo = resume(tracker, pending, recording.sweep_id, recording.kind, record, summarise)
    if summarise and plan.memory_checked and len(todo) > 1:
        announce_estimate(plan, todo, recording.announce)
    leases = {id(c): lease_key(c) for c in todo}
    busy = tracker.leased_elsewhere(recording.sweep_id, recording.kind) if todo else set()
    held = [c for c in todo if leases[id(c)] in busy]
    free = {id(c) for c in todo if leases[id(c)] not in busy}
    populations = [([c for c in p.cfgs if id(c) in free], p.vectorised) for p in plan.populations]
    populations = [(members, vectorised) for members, vectorised in populations if members]
    start = random.randrange(len(populations)) if populations else 0
    for i, (members, vectorised) in enumerate(populations[start:] + populations[:start]):
        raise_if_stopped()
        if i:  # what other workers opened meanwhile is theirs
            busy = tracker.leased_elsewhere(recording.sweep_id, recording.kind)
            held += [c for c in members if leases[id(c)] in busy]
            members = [c for c in members if leases[id(c)] not in busy]
        splits = cached_splits(members[0].data.rows()) if members else None
        parts = [members] if plan.memory_checked or not members else \
            cut_to_memory(members, DataSize.of(splits), plan.memory_fraction)  # a worker's own device
        for part in parts:
            runs = PopulationRuns(recording, part, vectorised, plan.memory_fraction)
            for cfg, result in runs.train(splits, checked_ms):
                record(cfg, result)
            held += runs.taken
    return held


def announce_estimate(plan: Plan, todo: list[RunConfig], announce: Callable[[str], None]) -> None:
    """About how long ``todo`` will train, said before it does; a step that fails to time says nothing here (the
    training that follows meets the same error and records it with its runs)."""
    try:
        seconds = seconds_to_train(plan, todo)
    except Exception as err:
        log.debug(f"no time estimate: {type(err).__name__}: {err}")
        return
    announce(f"  about {duration(seconds)} to train {len(todo)} variant{'' if len(todo) == 1 else 's'} here (a step "
             f"of each kind of population timed; the bar's estimate then follows the epochs)")


def resume(tracker: Tracker, cfgs: Sequence[RunConfig], sweep_id: Optional[str], kind: RunKind,
           record: Callable[[RunConfig, RunResult], None], summarise: bool) -> list[RunConfig]:
    """Record as skipped the configs with a FINISHED run of the same config, code and inputs (``force=true`` trains
    anyway); return the rest. ``summarise``: say how many were skipped and why each of the rest trains again."""
    found = tracker.finished(cfgs, sweep_id, kind)
    todo = []
    for cfg in cfgs:
        done = found.reusable(cfg)
        if done is None:
            todo.append(cfg)
            continue
        log.info(f"skipped: run {done.run_id} already FINISHED this config with this code and data (force=true "
                 f"re-runs)")
        record(cfg, RunResult(done.run_id, Outcome.skipped, done.metrics))
    stale = [(cfg, found.stale[config_hash(cfg)]) for cfg in todo if config_hash(cfg) in found.stale]
    if summarise and (len(cfgs) > 1 and len(todo) < len(cfgs) or stale):
        why: dict[str, list[str]] = {}
        for cfg, changed in stale:
            why.setdefault(" and ".join(changed), []).append(run_name(cfg))
        # a result that changes under the user's feet is worth a warning (shown in every launcher); reuse is not
        log.log(logging.WARNING if stale else logging.INFO,
                f"resume: {len(cfgs) - len(todo)} of {len(cfgs)} variants skipped (a FINISHED run of the same config, "
                f"code and data; force=true re-runs them)" + "".join(
                    f"; {len(names)} train again because {what} changed since their FINISHED run "
                    f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" for what, names in why.items()))
    return todo


class PopulationRuns:
    """The MLflow runs of one population: leased before it trains, each ended on its own after.

    ``taken`` holds the variants another worker leased meanwhile (left to it); a crash or an out-of-memory
    error fails this population's own runs with the error, and the sweep goes on."""

    def __init__(self, recording: Recording, cfgs: list[RunConfig], vectorised: bool, memory_fraction: float) -> None:
        self.recording, self.cfgs, self.vectorised, self.memory_fraction = recording, cfgs, vectorised, memory_fraction
        self.opened: list[tuple[RunConfig, RecordedRun]] = []
        self.taken: list[RunConfig] = []

    def train(self, splits: Splits, checked_ms: int) -> list[tuple[RunConfig, RunResult]]:
        try:
            return self._lease_and_fit(splits, checked_ms)
        except Exception as err:
            # a problem the user fixes is its one line; anything else keeps its traceback (and each run's error.txt)
            log.error(f"a population of {len(self.cfgs)} failed ({type(err).__name__}: {err}); its runs are marked "
                      f"FAILED", exc_info=None if isinstance(err, (UserError, MemoryError)) else err)
            run_ids = {id(cfg): run.run_id for cfg, run in self.opened}
            return [(cfg, RunResult(run_ids.get(id(cfg), ""), Outcome.failed, {})) for cfg in self.cfgs
                    if all(cfg is not t for t in self.taken)]

    def _lease_and_fit(self, splits: Splits, checked_ms: int) -> list[tuple[RunConfig, RunResult]]:
        rec = self.recording
        with contextlib.ExitStack() as stack:
            self._lease(stack, splits, checked_ms)
            if not self.opened:
                return []
            cfgs, runs = [c for c, _ in self.opened], [r for _, r in self.opened]
            require_memory(cfgs[0], DataSize.of(splits), self.memory_fraction)
            results = self._fit(cfgs, runs, splits)
            lost = self._fence(cfgs, runs, results)
        kept = [(cfg, run, result) for cfg, run, result in zip(cfgs, runs, results) if run.run_id not in lost]
        for _, run, result in kept:
            if result.outcome == Outcome.finished:
                _report(rec.tracker, run.run_id, result.metrics, brief=len(cfgs) > 1 or rec.sweep is not None)
        return [(cfg, result) for cfg, _, result in kept]

    def _lease(self, stack: contextlib.ExitStack, splits: Splits, checked_ms: int) -> None:
        """Open a run for every member; withdraw those a rival opened meanwhile. A rival that opened the same variant
        sees ours too, and both withdraw (and retry later) rather than both train; one that looked before we opened
        ours withdraws when it sees ours."""
        rec, cfgs = self.recording, self.cfgs
        where = resolve_device(cfgs[0].trainer.device)
        device, mode = str(where), numeric_mode(cfgs[0], where)
        summaries = {key: models.summary(model, splits.in_shape, splits.n_classes)
                     for key, model in {repr(c.model): c.model for c in cfgs}.items()}
        for cfg in cfgs:
            self.opened.append((cfg, stack.enter_context(rec.tracker.training_run(
                cfg, device, rec.sweep, rec.kind, {"numeric_mode": mode, **rec.tags_of(cfg)},
                {"model_summary.txt": summaries[repr(cfg.model)]}, batched=len(cfgs) > 1))))
        held = rec.tracker.leased_elsewhere(rec.sweep_id, rec.kind, None if cfgs[0].force else checked_ms - 60_000,
                                            {run.run_id for _, run in self.opened})
        for cfg, run in self.opened:
            if lease_key(cfg) in held:
                run.withdraw()
                self.taken.append(cfg)
        self.opened = [(cfg, run) for cfg, run in self.opened if run.status is None]

    def _fence(self, cfgs: list[RunConfig], runs: list[RecordedRun], results: list[RunResult]) -> set[str]:
        """A run another worker ended meanwhile (it judged this one dead and took the variant over) is left as it
        is, so that a variant is never FINISHED twice; its result here is dropped."""
        lost = self.recording.tracker.ended_by_others([run.run_id for run, result in zip(runs, results)
                                                       if result.outcome == Outcome.finished])
        for cfg, run in zip(cfgs, runs):
            if run.run_id in lost:
                run.let_go()
                self.taken.append(cfg)
                log.warning(f"run {run.run_id} ({run_name(cfg)}): another worker found its heartbeat older than "
                            f"tracking.dead_after_s={cfg.tracking.dead_after_s:g} s, ended it and took the variant "
                            f"over; its result here is dropped. A slow store or an overloaded host delays "
                            f"heartbeats: raise tracking.dead_after_s.")
        return lost

    def _fit(self, cfgs: list[RunConfig], runs: list[RecordedRun], splits: Splits) -> list[RunResult]:
        """Train the leased variants at once; each run ends on its own: FINISHED, FAILED (diverged) or pruned."""
        rec, single = self.recording, len(cfgs) == 1
        device = resolve_device(cfgs[0].trainer.device)
        log.info(f"run {runs[0].run_id}: {model_line(cfgs[0], splits)} on {device}" if single else
                 f"population of {len(cfgs)} on {device}: {model_line(cfgs[0], splits).split(', seed')[0]} ...")
        epoch_level = logging.INFO if single and not rec.sweep else logging.DEBUG

        def on_epoch(member: int, metrics: dict[str, float]) -> Optional[bool]:
            raise_if_stopped()  # a signal whose first raising was lost stops the work here
            log.log(epoch_level, _epoch_line(metrics, cfgs[member].trainer.epochs))
            runs[member].log_epoch(metrics)
            return rec.on_epoch(cfgs[member], metrics) if rec.on_epoch else None

        rec.tracker.writer.send_held()  # the last population's ends are written while this one trains
        members, _ = fit_population(cfgs, splits, on_epoch, self.vectorised)
        return [_end(run, cfg, member) for run, cfg, member in zip(runs, cfgs, members)]


def _end(run: RecordedRun, cfg: RunConfig, member) -> RunResult:
    """A member's run ended as its training did: FAILED (diverged), KILLED (pruned) or FINISHED with its metrics."""
    if member.error is not None:
        run.end(RunStatus.failed, f"Diverged: {member.error}")
        log.error(f"run {run.run_id} diverged: {member.error}")
        return RunResult(run.run_id, Outcome.failed, {})
    last = member.history.epochs[-1]
    if member.stopped:
        run.end(RunStatus.killed, f"pruned after epoch {int(last['epoch'])}")
        return RunResult(run.run_id, Outcome.pruned, dict(last))
    for step, probed in member.history.probes:
        run.log_metrics(probed, step=step)
    final = {k: v for k, v in member.history.final.items() if not math.isnan(v)}
    run.log_metrics(final, step=cfg.trainer.epochs)
    metrics = {**{k: v for k, v in last.items() if k != "epoch"}, **final}  # what resume reads back
    return RunResult(run.run_id, Outcome.finished, metrics)


def model_line(cfg: RunConfig, splits: Splits) -> str:
    return (f"{models.describe(cfg.model)}, {cfg.optim.name.value} lr={cfg.optim.lr:g}, weight_decay="
            f"{cfg.optim.weight_decay:g} ({cfg.optim.l2.value}), seed={cfg.seed}; {len(splits.train)} train / "
            f"{len(splits.val) if splits.val else 0} val / {len(splits.test)} test samples of shape "
            f"{list(splits.in_shape)}")


def _epoch_line(m: dict[str, float], epochs: int) -> str:
    val = f" | val loss {m['val_loss']:.4f} acc {m['val_acc']:.3f}" if "val_acc" in m else ""
    return (f"epoch {int(m['epoch']):>3}/{epochs}  train loss {m['train_loss']:.4f} acc {m['train_acc']:.3f}"
            f"{val} | |w| {m['weight_norm']:.2f} | {m['epoch_seconds']:.2f} s")


def _report(tracker: Tracker, run_id: str, metrics: dict[str, float], brief: bool) -> None:
    val = f", val acc {metrics['val_acc']:.4f}" if "val_acc" in metrics else ""
    took = metrics["train_seconds"]  # a short run's time in hundredths, not "0.0 s"
    line = (f"FINISHED in {took:.{2 if took < 1 else 1}f} s: test acc {metrics['test_acc']:.4f}, "
            f"test loss {metrics['test_loss']:.4f}{val}")
    if brief:
        return log.info(f"run {run_id} {line}")
    log.info(f"{line}\n  recorded in {tracker.uri}, experiment {tracker.experiment_id}, run {run_id}\n"
             f"  look at it: {command('ui')}, then open {tracker.runs_url(run_id)}")
