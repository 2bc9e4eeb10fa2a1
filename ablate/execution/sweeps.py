"""Sweeps: a grid of variants as one MLflow parent run, resumable, with its progress and a summary table.

A sweep is identified by its definition (the multirun's overrides and the experiment's grid), so starting the same
command again continues the same MLflow parent run: variants with a FINISHED run of the same config, code and data
are reused, runs whose process died are marked KILLED, the rest are trained. Its variants are planned once
(``engine.plan``) and trained as populations here, or each population as one Ray task or submitit job (``scale``).
The Hydra-facing adapters (sweeper, launcher, callback) live in ``hydra_plugins/ablate_launchers``; ``ablate.sweep``
comes here too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import random
import time
from typing import Any, Iterator, Optional, Sequence

from ablate.config.launch import Dispatch, LauncherSettings
from ablate.config.run import RunConfig
from ablate.engine.plan import Plan, data_sizes, make_plan
from ablate.errors import UserError, raise_if_stopped
from ablate.paths import command
from ablate.execution.runner import Outcome, Recording, RunResult, execute
from ablate.tracking.tracker import (TAG_DEFINITION, TAG_FACTORS, TAG_KIND, TAG_SWEEP, TAG_VARIANTS, RecordedRun,
                                     RunKind, RunStatus, SweepRef, Tracker)


@functools.cache
def bar_class() -> type:
    """tqdm's notebook widget where ipywidgets can draw it, its console bar otherwise (where tqdm.auto would warn
    that it found no widgets, then draw the console bar)."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm


def announce(text: str) -> None:
    """A line on the console above the sweep's progress bar (Hydra's process log is quiet)."""
    bar_class().write(text)


def grid(definition: Sequence[str], config_loader: Any = None) -> tuple[list[list[str]], list[str]]:
    """A grid's jobs (each a list of overrides) and its swept keys (the factors, ``seed`` included), from overrides
    such as ``model.bn=pre,post`` and ``seed=range(3)``, as Hydra's grid sweeper makes them: in its order, a later
    override of a key replacing an earlier one (the command line's over an experiment's ``hydra.sweeper.params``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: dict[str, list[str]] = {}
    factors: dict[str, bool] = {}
    for override in OverridesParser.create(config_loader=config_loader).parse_overrides(list(definition)):
        key = override.get_key_element()
        if override.is_sweep_override():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
        factors[override.key_or_group] = override.is_sweep_override()
    return [list(job) for job in itertools.product(*axes.values())], [k for k, swept in factors.items() if swept]


class Progress:
    """A sweep's progress in trained member-epochs (they move from a population's first epoch, where runs would
    move only at its end), with tqdm's estimate; a notebook gets tqdm's widget. Remote tasks move it by their
    reports while they train. Work that will not train here (a variant reused, pruned, failed early, or another
    worker's) leaves the total, so the estimate stays honest."""

    def __init__(self, cfgs: Sequence[RunConfig], desc: str, quiet: bool = False) -> None:
        self.epochs = {id(c): c.trainer.epochs for c in cfgs}
        self.seen = dict.fromkeys(self.epochs, 0)
        self.reported: dict[str, int] = {}  # running remote tasks' member-epochs, as they reported them
        self.credit = 0  # what ended tasks' reports showed, until their variants' results count it
        self.bar = bar_class()(total=sum(self.epochs.values()), desc=desc, unit=" member-epochs", dynamic_ncols=True,
                        disable=quiet, smoothing=0.05)

    def add(self, cfgs: Sequence[RunConfig]) -> None:
        """More variants to follow (a search's next round)."""
        for cfg in cfgs:
            self.epochs[id(cfg)], self.seen[id(cfg)] = cfg.trainer.epochs, 0
        self.bar.total += sum(c.trainer.epochs for c in cfgs)
        self.bar.refresh()

    def epoch(self, cfg: RunConfig) -> None:
        self.seen[id(cfg)] += 1
        self.bar.update(1)

    def remote(self, task: str, epochs: int) -> None:
        """A remote task's member-epochs so far, as it reported them; 0 once it has ended, when what it showed
        becomes credit for its variants' results, which follow (so the bar neither drops back nor counts twice)."""
        shown = self.reported.pop(task, 0)
        if not epochs:
            self.credit += shown
            return
        self.reported[task] = max(epochs, shown)  # a report read late never moves the bar back
        if self.reported[task] != shown:
            self.bar.n += self.reported[task] - shown
            self.bar.refresh()

    def result(self, cfg: RunConfig, result: RunResult) -> None:
        """A variant's end: trained elsewhere (a remote task) counts its epochs now, less what the task's reports
        already showed; not trained leaves the total."""
        left = self.epochs[id(cfg)] - self.seen[id(cfg)]
        self.seen[id(cfg)] = self.epochs[id(cfg)]
        shown = min(self.credit, left)
        self.credit -= shown
        if result.outcome == Outcome.finished:
            self.bar.update(left - shown)
        elif left:
            self.bar.total -= left
            self.bar.n -= shown
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class Sweep:
    """The MLflow parent run of a sweep (a search's or the claims' too): opened or re-opened, closed with a summary."""

    def __init__(self, tracker: Tracker, definition: list[str], total: int, factors: list[str],
                 kind: RunKind = RunKind.sweep, quiet: bool = False) -> None:
        self.tracker, self.total, self.factors, self.kind, self.quiet = tracker, total, factors, kind, quiet
        self.sweep_id = "sweep-" + hashlib.sha256("\n".join(definition).encode()).hexdigest()[:10]
        self.started_ms = int(time.time() * 1000)
        self.name = " ".join(definition)[:200] or "sweep"
        self.tags = {TAG_SWEEP: self.sweep_id, TAG_KIND: kind.value, TAG_FACTORS: ",".join(factors),
                     TAG_DEFINITION: " ".join(definition)[:5000], TAG_VARIANTS: str(total)}
        self.progress: Optional[Progress] = None

    def _open_parent(self) -> RecordedRun:
        """The sweep's one parent run, shared by every worker on the sweep: the oldest one, re-opened, or ours.

        Workers starting together may both create one; each then sees the other's and withdraws its own, and
        both look again after a random pause, so exactly one parent remains."""
        self.tracker.live(sweep_id=self.sweep_id)  # runs of dead workers become KILLED
        while True:
            previous = sorted(self.tracker.runs(sweep_id=self.sweep_id, kind=self.kind),
                              key=lambda r: (r.start_time, r.run_id))
            if previous:
                parent = self.tracker.reopen(previous[0].run_id)
                self.announce(f"continuing {self.kind.value} {self.sweep_id} (MLflow run {parent.run_id}): finished "
                         f"variants are reused")
                return parent
            parent = self.tracker.start_run(self.name, self.tags)
            if len(self.tracker.runs(sweep_id=self.sweep_id, kind=self.kind)) == 1:
                return parent
            parent.withdraw()
            time.sleep(random.uniform(0.1, 1.0))

    def announce(self, text: str) -> None:
        if not self.quiet:
            announce(text)

    def recording(self, cfgs: Sequence[RunConfig], quiet: bool = False, **options: Any) -> Recording:
        """How the sweep's variants are recorded, with their progress in member-epochs (``options``: the
        ``Recording``'s kind, tags, epoch hook)."""
        if self.progress is None:
            self.progress = Progress(cfgs, f"{self.kind.value} {self.sweep_id}", quiet or self.quiet)
        else:
            self.progress.add(cfgs)
        on_epoch = options.pop("on_epoch", None)

        def epoch(cfg: RunConfig, metrics: dict[str, float]) -> Optional[bool]:
            self.progress.epoch(cfg)
            return on_epoch(cfg, metrics) if on_epoch else None

        return Recording(self.tracker, self.ref, on_epoch=epoch, on_result=self.progress.result,
                         **{"announce": self.announce, **options})

    def job_done(self) -> None:
        """A job of a one-variant-per-job launcher ended (Hydra's basic launcher, joblib): progress in runs."""
        if self.progress is None:
            self.progress = Progress([], f"{self.kind.value} {self.sweep_id}")
            self.progress.bar.unit, self.progress.bar.total = " runs", self.total
        self.progress.bar.update()

    def close(self, text: Optional[str] = None) -> int:
        """Summary (a table of the runs unless ``text`` is given), FINISHED parent; returns how many of this
        attempt's training runs failed."""
        from ablate.analysis.tables import markdown_table, runs_frame, summary_table  # pandas only at the end

        self._wait_for_other_workers()
        if self.progress:
            self.progress.close()
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
        self.announce(f"\n{self.kind.value.capitalize()} {self.sweep_id}: {len(finished)} FINISHED runs, {failed} failed "
                 f"in this attempt\n{text}\n"
                 f"  MLflow: {self.tracker.runs_url()} (filter: tags.`{TAG_SWEEP}` = '{self.sweep_id}')\n"
                 f"  report: {command('report', f'sweep={self.sweep_id}')}")
        return failed

    def _wait_for_other_workers(self) -> None:
        """Variants other workers are still training belong in this sweep's summary: wait for them (a worker
        that dies meanwhile has its runs marked KILLED; the same command then trains those variants)."""
        while running := self.tracker.live(sweep_id=self.sweep_id, not_kind=self.kind):
            raise_if_stopped()
            if self.progress:
                self.progress.bar.set_postfix_str(f"waiting for {len(running)} run(s) of other workers")
            time.sleep(min(5.0, self.tracker.heartbeat.every_s))

    @contextlib.contextmanager
    def lifecycle(self) -> Iterator["Sweep"]:
        """The parent run opened (or re-opened) for the block; it and every run the block left open end KILLED with
        the signal's name on a stop, FAILED on an error: nothing is left RUNNING."""
        try:
            self.parent = self._open_parent()
            self.ref = SweepRef(self.sweep_id, self.parent.run_id)
            yield self
        except BaseException as err:
            if self.progress:
                self.progress.close()
            self.tracker.end_open(err)
            raise


def launch_populations(cfgs: Sequence[RunConfig], settings: LauncherSettings, sweep: Sweep,
                       quiet: bool = False) -> list[RunResult]:
    """A sweep's variants planned once and trained as populations in this process, or with ``dispatch: ray |
    submitit`` each population one Ray task or submitit job (``scale``); results in the order of ``cfgs``."""
    if settings.dispatch == Dispatch.local:
        plan = make_plan(cfgs, settings.population())
        sweep.announce(str(plan))
        done = dict(zip(map(id, plan.cfgs), execute(plan, sweep.recording(plan.cfgs, quiet))))
        return [done[id(cfg)] for cfg in cfgs]
    from ablate.execution import scale

    options = scale.task_resources(settings.dispatch.value, getattr(settings, settings.dispatch.value) or {},
                                   cfgs[0].trainer.device, settings.gpus_per_task)
    plan: Plan = make_plan(cfgs, settings.population(), device=scale.task_device(options, cfgs[0].trainer.device),
                           where=f"as {settings.dispatch.value} tasks, {scale.resources_text(options)}")
    sweep.announce(str(plan))
    recording = sweep.recording(plan.cfgs, quiet)
    results: dict[int, RunResult] = {}
    for population, done in scale.dispatch(plan, settings.dispatch.value, options, sweep.ref, sweep.tracker,
                                           on_report=sweep.progress.remote):
        for cfg, result in zip(population.cfgs, done):
            results[id(cfg)] = result
            recording.on_result(cfg, result)
    return [results[id(cfg)] for cfg in cfgs]


def sweep_definition(config: Any) -> list[str]:
    """The overrides that define a multirun: the command line's and the experiment's ``hydra.sweeper.params``."""
    params = config.hydra.sweeper.get("params") or {}
    return sorted([f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task))


def sweep_jobs(overrides: Sequence[str], compose: Any, config_loader: Any) -> tuple[list[list[str]], list[str],
                                                                                    list[str]]:
    """A sweep's jobs (each a list of overrides), its definition and its swept keys, as Hydra's grid sweeper makes
    them: the overrides' sweeps (``a=1,2``, ``seed=range(3)``) and an experiment's ``hydra.sweeper.params``
    (``compose(overrides, return_hydra_config=True)`` reads them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    params = compose(fixed).hydra.sweeper.get("params") or {}
    swept = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    jobs, factors = grid(swept, config_loader)
    return jobs, sorted(swept), factors


def run_sweep(cfgs: Sequence[RunConfig], definition: list[str], factors: list[str], settings: LauncherSettings,
              quiet: bool = False) -> tuple[Sweep, list[RunResult], int]:
    """A sweep end to end: its variants checked (the data read, each model against it) before anything is written,
    its parent run opened (or continued), its populations trained, its summary recorded. Returns the sweep, its
    results in the order of ``cfgs``, and how many of this attempt's runs failed."""
    if not cfgs:
        raise UserError("no variants to train: the sweep's values expand to nothing (an empty range or list?); "
                        "give each swept key at least one value.")
    data_sizes(cfgs)
    sweep = Sweep(Tracker(cfgs[0].tracking), definition, len(cfgs), factors, quiet=quiet)
    with sweep.lifecycle():
        results = launch_populations(cfgs, settings, sweep, quiet)
        return sweep, results, sweep.close()


def end_with_failures(sweep: Sweep, failed: int) -> None:
    """A command line's sweep with failed runs exits 1, saying where their errors are."""
    if failed:
        raise SystemExit(f"{failed} run(s) of sweep {sweep.sweep_id} failed (their errors are in MLflow, tag "
                         f"ablate.error); the others are recorded.")
