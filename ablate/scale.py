"""Scale-out: a sweep's population groups sent to Ray tasks or submitit jobs (SLURM, or local processes).

The unit of work is a whole population group: the worker trains it at once on its own device (checking its own
free memory) and records each member as its own MLflow run, with the same claims as a local sweep, so several
sweep processes, restarts and dead workers stay exact. Ray and submitit do the scheduling; this module only says
what one task is (``train_group``) and collects the results as they arrive.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Optional, Sequence

from ablate.config import RunConfig, config_hash
from ablate.runner import RunResult, train_and_log_all
from ablate.tracking import TAG_HASH, SweepGroup, Tracker

log = logging.getLogger("ablate")
TAG_TASK = "ablate.task"  # the remote task that trained a run: a task that dies takes only its own runs down

GroupDone = Callable[[Sequence[RunConfig], list[RunResult]], None]


def train_group(cfgs: Sequence[RunConfig], sweep: Optional[SweepGroup], task: str, max_size: int,
                memory_fraction: float) -> list[RunResult]:
    """What a worker runs: join the sweep, then train and record ``cfgs`` as populations."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if sweep is not None:
        sweep.to_env()
    return train_and_log_all(cfgs, max_size, memory_fraction=memory_fraction, tags_of=lambda _: {TAG_TASK: task})


def dispatch(groups: Sequence[Sequence[RunConfig]], how: str, options: dict[str, Any], max_size: int,
             memory_fraction: float, on_group: GroupDone) -> None:
    """Run each group as one remote task (``how``: ``ray`` or ``submitit``); ``on_group`` gets each group's
    results as it completes. A task that crashes (a lost node, a killed process) fails its own runs only."""
    sweep = SweepGroup.from_env()
    tasks = [(list(group), uuid.uuid4().hex[:12]) for group in groups]
    submit = {"ray": _ray, "submitit": _submitit}[how]
    for (group, task), outcome in submit(tasks, options, sweep, max_size, memory_fraction):
        if isinstance(outcome, BaseException):
            outcome = _fail_task(group, task, outcome)
        on_group(group, outcome)


def _fail_task(group: list[RunConfig], task: str, error: BaseException) -> list[RunResult]:
    """The task died without ending its runs: those it left RUNNING become FAILED with the error, and a member
    it never opened a run for gets a FAILED run, so that every failure is counted and visible."""
    tracker, sweep = Tracker(group[0].tracking), SweepGroup.from_env()
    text = f"its worker task failed: {type(error).__name__}: {error}"[:5000]
    log.error(f"a population of {len(group)} failed remotely ({text})")
    runs = {r.data.tags.get(TAG_HASH): r for r in tracker.search(f"tags.`{TAG_TASK}` = '{task}'")}
    results = []
    for cfg in group:
        run = runs.get(config_hash(cfg))
        if run is not None and run.info.status != "RUNNING":
            results.append(RunResult(run.info.run_id, run.info.status, dict(run.data.metrics)))
            continue
        if run is None:
            with tracker.training_run(cfg, "none", sweep.parent_run_id if sweep else None,
                                      sweep.sweep_id if sweep else None, extra_tags={TAG_TASK: task}) as opened:
                opened.end("FAILED", text)
            results.append(RunResult(opened.run_id, "FAILED", {}))
            continue
        tracker.terminate(run.info.run_id, "FAILED", text)
        results.append(RunResult(run.info.run_id, "FAILED", {}))
    return results


def _ray(tasks, options, sweep, max_size, memory_fraction):
    import ray

    if not ray.is_initialized():
        ray.init(**{k: v for k, v in options.get("init", {}).items() if v is not None})
    remote = ray.remote(**{k: v for k, v in options.get("remote", {}).items() if v is not None})(train_group)
    pending = {remote.remote(group, sweep, task, max_size, memory_fraction): (group, task) for group, task in tasks}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        try:
            outcome = ray.get(ref)
        except Exception as err:  # RayTaskError, WorkerCrashedError, OutOfMemoryError
            outcome = err
        yield pending.pop(ref), outcome


def _submitit(tasks, options, sweep, max_size, memory_fraction):
    import submitit

    executor = submitit.AutoExecutor(folder=options["folder"], cluster=options.get("cluster"))
    executor.update_parameters(**{k: v for k, v in options.get("parameters", {}).items() if v is not None})
    with executor.batch():  # one array job on SLURM
        jobs = [executor.submit(train_group, group, sweep, task, max_size, memory_fraction) for group, task in tasks]
    by_job = {id(job): task for job, task in zip(jobs, tasks)}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=1):
        try:
            outcome = job.result()
        except Exception as err:  # FailedJobError, UncompletedJobError (timeout, preemption)
            outcome = err
        yield by_job[id(job)], outcome
