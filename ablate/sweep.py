"""Sweeps: a Hydra multirun as one group in MLflow, resumable, with a progress bar and a summary table.

A sweep is identified by its definition (the multirun's overrides and the experiment's grid), so starting the
same command again continues the same MLflow parent run: variants with a FINISHED run of the same config and
code are skipped (``runner.train_and_log``), runs whose process died are marked KILLED, the rest are trained.
"""

from __future__ import annotations

import atexit
import hashlib
import random
import time
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ablate.config import TrackingConfig
from ablate.tracking import TAG_KIND, TAG_SWEEP, Heartbeat, RecordedRun, SweepGroup, Tracker



def say(text: str) -> None:
    """The sweep's own messages go to the console beside its progress bar (Hydra's process log is quiet)."""
    tqdm.write(text)

TAG_FACTORS, TAG_DEFINITION = "ablate.factors", "ablate.definition"


def sweep_definition(config: DictConfig) -> list[str]:
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
    """The MLflow parent run of a sweep: opened (or re-opened) at the start, closed with a summary."""

    def __init__(self, tracker: Tracker, definition: list[str], total: int, factors: list[str],
                 kind: str = "sweep") -> None:
        self.tracker, self.total, self.factors, self.kind = tracker, total, factors, kind
        self.sweep_id = "sweep-" + hashlib.sha256("\n".join(definition).encode()).hexdigest()[:10]
        self.started_ms = int(time.time() * 1000)
        tracker.running(f"tags.`{TAG_SWEEP}` = '{self.sweep_id}'")  # runs of dead workers become KILLED
        self.parent = self._open_parent(" ".join(definition)[:200] or "sweep", {
            TAG_SWEEP: self.sweep_id, TAG_KIND: kind, TAG_FACTORS: ",".join(factors),
            TAG_DEFINITION: " ".join(definition)[:5000]})
        self.parent_id = self.parent.run_id
        SweepGroup(self.sweep_id, self.parent_id).to_env()
        self.bar = tqdm(total=total, desc=f"sweep {self.sweep_id}", unit="run", dynamic_ncols=True)
        self.closed = False
        atexit.register(self._kill_if_open)  # Ctrl-C or a crash: the parent is not left RUNNING

    def _open_parent(self, name: str, tags: dict[str, str]) -> RecordedRun:
        """The sweep's one parent run, shared by every worker on the sweep: the oldest one, re-opened, or ours.

        Workers starting together may both create one; each then sees the other's and withdraws its own, and
        both look again after a random pause, so exactly one parent remains."""
        query = f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_KIND}` = '{self.kind}'"
        while True:
            previous = sorted(self.tracker.search(query), key=lambda r: (r.info.start_time, r.info.run_id))
            if previous:
                parent = RecordedRun(self.tracker.client, previous[0].info.run_id)
                self.tracker.client.update_run(parent.run_id, status="RUNNING")
                say(f"continuing sweep {self.sweep_id} (MLflow run {parent.run_id}): finished variants are skipped")
                return parent
            parent = self.tracker.start_run(name, tags)
            if len(self.tracker.search(query)) == 1:
                return parent
            parent.withdraw()
            time.sleep(random.uniform(0.1, 1.0))

    def job_done(self) -> None:
        self.bar.update()

    def failed_runs(self) -> int:
        return len(self.tracker.search(f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_KIND}` = 'train' "
                                       f"and attributes.status = 'FAILED' "
                                       f"and attributes.start_time >= {self.started_ms}"))

    def close(self, text: Optional[str] = None) -> int:
        """Summary (a table of the runs unless ``text`` is given), FINISHED parent; returns how many of this
        attempt's training runs failed."""
        from ablate.report import load_runs, markdown_table, summary_table  # pandas only at the end

        self._wait_for_other_workers()
        self.bar.close()
        if text is None:
            table = summary_table(load_runs(self.tracker, self.sweep_id), [f for f in self.factors if f != "seed"])
            text = markdown_table(table) if len(table) else "(no FINISHED runs)"
        self.tracker.client.log_text(self.parent_id, text, "summary.md")
        failed = self.failed_runs()
        self.parent.end("FINISHED" if not failed else "FAILED")
        self.closed = True
        finished = self.tracker.search(f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_KIND}` != '{self.kind}' "
                                       f"and attributes.status = 'FINISHED'")
        say(f"\n{self.kind.capitalize()} {self.sweep_id}: {len(finished)} FINISHED runs, {failed} failed in this "
            f"attempt\n{text}\n"
            f"  MLflow: {self.tracker.runs_url()} (filter: tags.`{TAG_SWEEP}` = '{self.sweep_id}')\n"
            f"  report: python -m ablate.report sweep={self.sweep_id}")
        return failed

    def _wait_for_other_workers(self) -> None:
        """Variants other workers are still training belong in this sweep's summary: wait for them (a worker
        that dies meanwhile has its runs marked KILLED; the same command then trains those variants)."""
        query = f"tags.`{TAG_SWEEP}` = '{self.sweep_id}' and tags.`{TAG_KIND}` != '{self.kind}'"
        while running := self.tracker.running(query):
            self.bar.set_postfix_str(f"waiting for {len(running)} run(s) of other workers")
            time.sleep(min(5.0, Heartbeat.every_s))

    def _kill_if_open(self) -> None:
        if not self.closed:
            self.bar.close()
            self.parent.end("KILLED")


class SweepCallback(Callback):
    """Hydra callback (conf/config.yaml): groups every multirun as one ``Sweep``."""

    def __init__(self) -> None:
        self.sweep: Optional[Sweep] = None
        self.group: Optional[SweepGroup] = None

    def __getstate__(self) -> dict:
        """Launchers that run jobs in other processes (joblib, Ray, submitit) pickle their callbacks: the sweep
        (its progress bar, its MLflow client) stays in the sweep's own process; its identity travels along, so
        a job on another machine still joins the sweep."""
        return {"sweep": None, "group": self.group}

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self.group is not None:
            self.group.to_env()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        definition = sweep_definition(config)
        factors, total = grid_shape(definition)
        tracking = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
        self.sweep = Sweep(Tracker(tracking), definition, total, factors)
        self.group = SweepGroup(self.sweep.sweep_id, self.sweep.parent_id)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.sweep is not None:  # None in a launcher's worker process: the bar lives in the sweep's process
            self.sweep.job_done()
            if job_return.status == JobStatus.FAILED:
                say(f"job failed: {job_return._return_value}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep is not None and (failed := self.sweep.close()):
            raise SystemExit(f"{failed} run(s) of sweep {self.sweep.sweep_id} failed "
                             f"(their errors are in MLflow, tag ablate.error); the others are recorded.")

