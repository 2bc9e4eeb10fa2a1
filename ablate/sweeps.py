"""Sweeps: a Hydra multirun as one MLflow parent run, resumable, with a progress bar and a summary table; and
how the population launcher turns a sweep's jobs into populations.

A sweep is identified by its definition (the multirun's overrides and the experiment's grid), so starting the
same command again continues the same MLflow parent run: variants with a FINISHED run of the same config, code
and data are reused (``runner.train_and_log_all``), runs whose process died are marked KILLED, the rest are trained.
The Hydra-facing adapters (launcher, sweeper, callback) live in ``hydra_plugins/ablate_launchers``.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import random
import time
from typing import Any, Optional, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from tqdm import tqdm

from ablate.config import PopulationSettings, RunConfig
from ablate.tracking import (TAG_DEFINITION, TAG_FACTORS, TAG_KIND, TAG_SWEEP, RecordedRun, RunKind, RunStatus,
                             SweepRef, Tracker)


def announce(text: str) -> None:
    """A line on the console above the sweep's progress bar (Hydra's process log is quiet)."""
    tqdm.write(text)


def sweep_definition(config: Any) -> list[str]:
    """The overrides that define a multirun: the command line's and the experiment's ``hydra.sweeper.params``."""
    params = config.hydra.sweeper.get("params") or {}
    return sorted([f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task))


def grid_shape(definition: list[str]) -> tuple[list[str], int]:
    """The swept keys (the factors, ``seed`` included) and the number of jobs the grid expands to."""
    factors, total = [], 1
    for override in OverridesParser.create().parse_overrides(definition):
        if override.is_sweep_override():
            factors.append(override.key_or_group)
            total *= len(list(override.sweep_string_iterator()))
    return factors, total


class Sweep:
    """The MLflow parent run of a sweep (a search's or the claims' too): opened or re-opened, closed with a summary."""

    def __init__(self, tracker: Tracker, definition: list[str], total: int, factors: list[str],
                 kind: RunKind = RunKind.sweep) -> None:
        self.tracker, self.total, self.factors, self.kind = tracker, total, factors, kind
        self.sweep_id = "sweep-" + hashlib.sha256("\n".join(definition).encode()).hexdigest()[:10]
        self.started_ms = int(time.time() * 1000)
        tracker.live(sweep_id=self.sweep_id)  # runs of dead workers become KILLED
        self.parent = self._open_parent(" ".join(definition)[:200] or "sweep", {
            TAG_SWEEP: self.sweep_id, TAG_KIND: kind.value, TAG_FACTORS: ",".join(factors),
            TAG_DEFINITION: " ".join(definition)[:5000]})
        self.ref = SweepRef(self.sweep_id, self.parent.run_id)
        self.bar = tqdm(total=total, desc=f"{kind.value} {self.sweep_id}", unit="run", dynamic_ncols=True)
        self.closed = False
        atexit.register(self._kill_if_open)  # Ctrl-C or a crash: the parent is not left RUNNING

    def _open_parent(self, name: str, tags: dict[str, str]) -> RecordedRun:
        """The sweep's one parent run, shared by every worker on the sweep: the oldest one, re-opened, or ours.

        Workers starting together may both create one; each then sees the other's and withdraws its own, and
        both look again after a random pause, so exactly one parent remains."""
        while True:
            previous = sorted(self.tracker.runs(sweep_id=self.sweep_id, kind=self.kind),
                              key=lambda r: (r.start_time, r.run_id))
            if previous:
                parent = self.tracker.reopen(previous[0].run_id)
                announce(f"continuing {self.kind.value} {self.sweep_id} (MLflow run {parent.run_id}): finished "
                         f"variants are reused")
                return parent
            parent = self.tracker.start_run(name, tags)
            if len(self.tracker.runs(sweep_id=self.sweep_id, kind=self.kind)) == 1:
                return parent
            parent.withdraw()
            time.sleep(random.uniform(0.1, 1.0))

    def job_done(self) -> None:
        self.bar.update()

    def close(self, text: Optional[str] = None) -> int:
        """Summary (a table of the runs unless ``text`` is given), FINISHED parent; returns how many of this
        attempt's training runs failed."""
        from ablate.tables import markdown_table, runs_frame, summary_table  # pandas only at the end

        self._wait_for_other_workers()
        self.bar.close()
        finished = [r for r in self.tracker.runs(sweep_id=self.sweep_id, status=RunStatus.finished)
                    if r.kind != self.kind.value]  # one query: the summary's rows and the count
        if text is None:
            table = summary_table(runs_frame([r for r in finished if r.kind == RunKind.train.value], self.factors),
                                  [f for f in self.factors if f != "seed"])
            text = markdown_table(table) if len(table) else "(no FINISHED runs)"
        self.parent.log_texts({"summary.md": text})
        failed = len(self.tracker.runs(sweep_id=self.sweep_id, kind=RunKind.train, status=RunStatus.failed,
                                       started_since_ms=self.started_ms))
        self.parent.end(RunStatus.finished if not failed else RunStatus.failed)
        self.closed = True
        announce(f"\n{self.kind.value.capitalize()} {self.sweep_id}: {len(finished)} FINISHED runs, {failed} failed "
                 f"in this attempt\n{text}\n"
                 f"  MLflow: {self.tracker.runs_url()} (filter: tags.`{TAG_SWEEP}` = '{self.sweep_id}')\n"
                 f"  report: python -m ablate.report sweep={self.sweep_id}")
        return failed

    def _wait_for_other_workers(self) -> None:
        """Variants other workers are still training belong in this sweep's summary: wait for them (a worker
        that dies meanwhile has its runs marked KILLED; the same command then trains those variants)."""
        while running := self.tracker.live(sweep_id=self.sweep_id, not_kind=self.kind):
            self.bar.set_postfix_str(f"waiting for {len(running)} run(s) of other workers")
            time.sleep(min(5.0, self.tracker.heartbeat.every_s))

    def _kill_if_open(self) -> None:
        if not self.closed:
            self.bar.close()
            self.parent.end(RunStatus.killed)


def launch_populations(cfgs: Sequence[RunConfig], settings: dict[str, Any], sweep: Optional[SweepRef],
                       on_result) -> None:
    """A sweep's variants trained as populations in this process, or with ``dispatch: ray | submitit`` each
    population one Ray task or submitit job (``ablate.scale``); ``on_result(cfg, result)`` as each is recorded."""
    from ablate.config import require
    from ablate.runner import train_and_log_all

    dispatch = settings.get("dispatch", "local")
    require(dispatch in ("local", "ray", "submitit"), "hydra.launcher.dispatch", dispatch,
            "one of local, ray, submitit")
    population = PopulationSettings(settings["max_size"], settings["memory_fraction"], settings["vectorise"])
    if dispatch == "local":
        announce(how_populations_train(cfgs, population, dispatch))
        train_and_log_all(cfgs, population, sweep=sweep, on_result=on_result)
        return
    from ablate.population import by_population_key
    from ablate.scale import dispatch as send, task_resources

    options = task_resources(dispatch, settings.get(dispatch) or {}, cfgs[0].trainer.device, settings["gpus_per_task"])
    announce(how_populations_train(cfgs, population, dispatch, options))
    send(by_population_key(cfgs, population.max_size), dispatch, options, population, sweep,
         lambda members, results: [on_result(cfg, result) for cfg, result in zip(members, results)])


def job_value(result: Any) -> float:
    """What a job returns to Hydra: the validation accuracy, NaN for a run without one."""
    return result.metrics.get("val_acc", math.nan)


def how_populations_train(cfgs: Sequence[RunConfig], population: PopulationSettings, dispatch: str,
                          options: Optional[dict[str, Any]] = None) -> str:
    """The sweep's first line: how many variants, which families, where, whether members train at once, and what
    each remote task asks for."""
    import torch

    from ablate.scale import asks_for_gpu, resources_text
    from ablate.train import resolve_device, vectorised_by_default

    if dispatch == "local":
        device = resolve_device(cfgs[0].trainer.device)
    else:  # a worker's device, not this machine's: as the task asks for it
        device = torch.device("cuda" if asks_for_gpu(options or {}) else cfgs[0].trainer.device.value.replace("auto", "cpu"))
    lines = []
    for family in dict.fromkeys(type(c.model).family for c in cfgs):
        cfg = next(c for c in cfgs if type(c.model).family == family)
        at_once = vectorised_by_default(cfg, device) if population.vectorised is None else population.vectorised
        why = ("hydra.launcher.vectorise=" + str(population.vectorise).lower() if population.vectorised is not None
               else f"auto: measured faster {'vectorised' if at_once else 'one by one'} for {family} on {device.type}")
        lines.append(f"{family} {'vectorised' if at_once else 'one member at a time'} ({why})")
    where = "in this process" if dispatch == "local" else f"as {dispatch} tasks, {resources_text(options or {})}"
    return (f"{len(cfgs)} variants as populations of up to {population.max_size} on {device} {where}: "
            + "; ".join(lines))
