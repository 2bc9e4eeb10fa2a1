"""Scale-out: a sweep's populations sent to Ray tasks or submitit jobs (SLURM, or local processes).

The unit of work is a whole population: the worker trains it at once on its own device (checking its own free
memory) and records each member as its own MLflow run, with the same leases as a local sweep, so several sweep
processes, restarts and dead workers stay exact. Ray and submitit do the scheduling; this module only says what
one task is (``train_population``) and collects the results as they arrive.
"""

from __future__ import annotations

import logging
import math
import traceback
import uuid
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

from ablate.config import Device, PopulationSettings, RunConfig, config_hash
from ablate.runner import Outcome, RunResult, train_and_log_all
from ablate.tracking import RunKind, RunStatus, SweepRef, Tracker

log = logging.getLogger("ablate")
TAG_TASK = "ablate.task"  # the remote task that trained a run: a task that dies takes only its own runs down

PopulationDone = Callable[[Sequence[RunConfig], list[RunResult]], None]


class NoGPU(RuntimeError):
    """A task asked for a GPU and its worker has none: its runs fail rather than train on a CPU."""


def train_population(cfgs: Sequence[RunConfig], sweep: Optional[SweepRef], task: str,
                     population: PopulationSettings, gpu: bool = False) -> list[RunResult]:
    """What a worker runs: train and record ``cfgs`` as populations, in the sweep (``gpu``: its task asked for one)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if gpu and not torch.cuda.is_available():
        raise NoGPU(f"its task asked for a GPU (trainer.device={cfgs[0].trainer.device.value}), but this worker has "
                    f"no CUDA device: give the cluster GPUs, or set trainer.device=cpu (or auto on a CPU machine)")
    if gpu:
        cfgs = [replace(c, trainer=replace(c.trainer, device=Device.cuda)) for c in cfgs]  # auto: on the GPU asked for
    return train_and_log_all(cfgs, population, sweep=sweep, tags_of=lambda _: {TAG_TASK: task})


def asks_for_gpu(options: dict[str, Any]) -> bool:
    return bool((options.get("remote") or {}).get("num_gpus") or (options.get("parameters") or {}).get("gpus_per_node"))


def task_resources(how: str, options: dict[str, Any], device: Device, gpus_per_task: float) -> dict[str, Any]:
    """The task options with the GPU request the runs need: where ``num_gpus`` (Ray) or ``gpus_per_node`` (SLURM) is
    not set, ``gpus_per_task`` of them when the runs are on CUDA (``trainer.device=cuda``, or ``auto`` where this
    machine has CUDA), else none. Set explicitly, they are kept as they are."""
    import torch

    wants = device == Device.cuda or (device == Device.auto and torch.cuda.is_available())
    options = {**options, "remote": dict(options.get("remote") or {}), "parameters": dict(options.get("parameters") or {})}
    if how == "ray" and options["remote"].get("num_gpus") is None:
        options["remote"]["num_gpus"] = gpus_per_task if wants else 0
    if how == "submitit" and options["parameters"].get("gpus_per_node") is None and wants:
        options["parameters"]["gpus_per_node"] = math.ceil(gpus_per_task)
    return options


def resources_text(options: dict[str, Any]) -> str:
    remote, parameters = options.get("remote") or {}, options.get("parameters") or {}
    gpus = remote.get("num_gpus") or parameters.get("gpus_per_node") or 0
    cpus = remote.get("num_cpus") or parameters.get("cpus_per_task")
    return f"each asking for {gpus:g} GPU(s)" + (f" and {cpus:g} CPU(s)" if cpus else "")


def dispatch(populations: Sequence[Sequence[RunConfig]], how: str, options: dict[str, Any],
             population: PopulationSettings, sweep: Optional[SweepRef], on_done: PopulationDone) -> None:
    """Run each population as one remote task (``how``: ``ray`` or ``submitit``); ``on_done`` gets each one's
    results as it completes. A task that crashes (a lost node, a killed process) fails its own runs only."""
    tasks = [(list(members), uuid.uuid4().hex[:12]) for members in populations]
    submit = {"ray": _ray, "submitit": _submitit}[how]  # each task: train_population(members, sweep, task, ...)
    for (members, task), outcome in submit(tasks, options, sweep, population):
        if isinstance(outcome, BaseException):
            outcome = fail_task(members, task, outcome, sweep)
        on_done(members, outcome)


def fail_task(members: list[RunConfig], task: str, error: BaseException, sweep: Optional[SweepRef]) -> list[RunResult]:
    """The task died without ending its runs: those it did not finish become FAILED with the task's error (also one
    another worker's liveness check found dead meanwhile and marked KILLED: the same death, counted the same), and a
    member it never opened a run for gets a FAILED run, so that every failure is counted and visible."""
    tracker = Tracker(members[0].tracking)
    text = f"its worker task failed: {type(error).__name__}: {error}"[:5000]
    details = "".join(traceback.format_exception(error))  # a Ray task's error carries the remote traceback
    log.error(f"a population of {len(members)} failed remotely ({text})")
    runs = {r.config_hash: r for r in tracker.runs(tags={TAG_TASK: task})}
    results = []
    for cfg in members:
        run = runs.get(config_hash(cfg))
        if run is not None and run.status == RunStatus.finished:
            results.append(RunResult(run.run_id, Outcome.finished, run.metrics))
            continue
        if run is None:
            with tracker.training_run(cfg, "none", sweep, RunKind.train, extra_tags={TAG_TASK: task}) as opened:
                opened.log_texts({"error.txt": details})
                opened.end(RunStatus.failed, text)
            results.append(RunResult(opened.run_id, Outcome.failed, {}))
            continue
        tracker.terminate(run.run_id, RunStatus.failed, text, details)
        results.append(RunResult(run.run_id, Outcome.failed, {}))
    return results


def _ray(tasks, options, sweep, population):
    import ray

    if not ray.is_initialized():
        ray.init(**{k: v for k, v in options.get("init", {}).items() if v is not None})
    remote = ray.remote(**{k: v for k, v in options.get("remote", {}).items() if v is not None})(train_population)
    gpu = asks_for_gpu(options)
    pending = {remote.remote(members, sweep, task, population, gpu): (members, task) for members, task in tasks}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        try:
            outcome = ray.get(ref)
        except Exception as err:  # RayTaskError, WorkerCrashedError, OutOfMemoryError
            outcome = err
        yield pending.pop(ref), outcome


def _submitit(tasks, options, sweep, population):
    import submitit

    executor = submitit.AutoExecutor(folder=options["folder"], cluster=options.get("cluster"))
    executor.update_parameters(**{k: v for k, v in options.get("parameters", {}).items() if v is not None})
    with executor.batch():  # one array job on SLURM
        jobs = [executor.submit(train_population, members, sweep, task, population, asks_for_gpu(options))
                for members, task in tasks]
    by_job = {id(job): task for job, task in zip(jobs, tasks)}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=1):
        try:
            outcome = job.result()
        except Exception as err:  # FailedJobError, UncompletedJobError (timeout, preemption)
            outcome = err
        yield by_job[id(job)], outcome
