"""Scale-out: a sweep's populations sent to Ray tasks or submitit jobs (SLURM, or local processes).

The unit of work is a whole population: the worker trains it at once on its own device (checking its own free
memory) and records each member as its own MLflow run, with the same leases as a local sweep, so several sweep
processes, restarts and dead workers stay exact. Ray and submitit do the scheduling; this module only says what
one task is (``train_population``) and collects the results as they arrive.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import uuid
from dataclasses import replace
from typing import Any, Callable, Collection, Optional

from ablate.config.identity import config_hash
from ablate.config.run import Device, RunConfig
from ablate.engine.plan import Plan, PlannedPopulation
from ablate.errors import UserError, chain
from ablate.execution.runner import Outcome, Recording, RunResult, execute
from ablate.tracking.tracker import RunKind, RunStatus, SweepRef, Tracker

log = logging.getLogger("ablate")
TAG_TASK = "ablate.task"  # the remote task that trained a run: a task that dies takes only its own runs down
REPORT_EVERY_S = 10.0  # at most this often a remote task reports its progress (tracking.heartbeat_s if shorter)


class NoGPU(RuntimeError):
    """A task asked for a GPU and its worker has none: its runs fail rather than train on a CPU."""


def train_population(population: PlannedPopulation, sweep: Optional[SweepRef], task: str, memory_fraction: float,
                     gpu: bool = False, threads: Optional[int] = None) -> list[RunResult]:
    """What a worker runs: one planned population trained and recorded in the sweep, cut to this worker's memory
    (``gpu``: its task asked for one; ``threads``: the CPUs it asked for, which torch then keeps to)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if threads:
        torch.set_num_threads(threads)  # workers side by side share the cores, not each take them all
    cfgs = list(population.cfgs)
    if gpu and not torch.cuda.is_available():
        raise NoGPU(f"its task asked for a GPU (trainer.device={cfgs[0].trainer.device.value}), but this worker has "
                    f"no CUDA device: give the cluster GPUs, or set trainer.device=cpu (or auto on a CPU machine)")
    if gpu:
        cfgs = [replace(c, trainer=replace(c.trainer, device=Device.cuda)) for c in cfgs]  # auto: on the GPU asked for
    plan = Plan([replace(population, cfgs=tuple(cfgs))], torch.device("cuda" if gpu else "cpu"), "on this worker",
                memory_checked=False, memory_fraction=memory_fraction)
    tracker = Tracker(cfgs[0].tracking)
    report = TaskReport(tracker, sweep, task, report_every_s(cfgs[0])) if sweep else None
    return execute(plan, Recording(tracker, sweep, tags_of=lambda _: {TAG_TASK: task}, on_epoch=report))


def report_every_s(cfg: RunConfig) -> float:
    return min(REPORT_EVERY_S, cfg.tracking.heartbeat_s)


class TaskReport:
    """A remote task's progress for its sweep's bar: the member-epochs it has trained, stamped on the sweep's parent
    run at most every ``every_s`` (a Recording's epoch hook)."""

    def __init__(self, tracker: Tracker, sweep: SweepRef, task: str, every_s: float) -> None:
        self.tracker, self.sweep, self.task, self.every_s = tracker, sweep, task, every_s
        self.epochs, self.last = 0, time.monotonic()

    def __call__(self, cfg: RunConfig, metrics: dict[str, float]) -> None:
        self.epochs += 1
        if time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        try:
            self.tracker.report_task(self.sweep.parent_run_id, self.task, self.epochs)
        except Exception as err:  # noqa: BLE001 - progress is told again next time; training goes on
            log.warning(f"could not report this task's progress ({type(err).__name__}: {err})")


class TaskReports:
    """The sweep's process following its remote tasks' reports while it waits: ``poll`` reads them (at most every
    ``every_s``) and tells ``on_report`` each running task's member-epochs; an ended task's are its results'."""

    def __init__(self, tracker: Tracker, sweep: Optional[SweepRef], tasks: Collection[str], every_s: float,
                 on_report: Optional[Callable[[str, int], None]]) -> None:
        self.tracker, self.sweep, self.every_s, self.on_report = tracker, sweep, every_s, on_report
        self.tasks, self.running, self.last = set(tasks), set(tasks), time.monotonic()

    def poll(self) -> None:
        if self.sweep is None or self.on_report is None or time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        try:
            reports = self.tracker.task_reports(self.sweep.parent_run_id)
        except Exception as err:  # noqa: BLE001 - the bar waits for the next read; the tasks' results decide
            log.warning(f"could not read the tasks' progress ({type(err).__name__}: {err})")
            return
        for task in self.running:
            self.on_report(task, reports.get(task, 0))

    def ended(self, task: str) -> None:
        self.running.discard(task)
        if self.on_report is not None:
            self.on_report(task, 0)

    def clear(self) -> None:
        """The stamps gone; a failure to remove them (a store down at the end) is said, not raised over the sweep's
        own outcome."""
        if self.sweep is None:
            return
        try:
            self.tracker.clear_task_reports(self.sweep.parent_run_id, self.tasks)
        except Exception as err:  # noqa: BLE001
            log.warning(f"the tasks' progress stamps stay on the sweep's parent run ({type(err).__name__}: {err})")


def task_device(options: dict[str, Any], device: Device):
    """Where a remote task's runs train: on the GPU it asks for, else as ``trainer.device`` says (auto: a CPU)."""
    import torch

    return torch.device("cuda" if asks_for_gpu(options) else device.value.replace("auto", "cpu"))


def task_threads(how: str, options: dict[str, Any]) -> Optional[int]:
    """The CPUs a task asks for (Ray's num_cpus, SLURM's cpus_per_task): its torch threads."""
    cpus = (options.get("remote") or {}).get("num_cpus") if how == "ray" else \
        (options.get("parameters") or {}).get("cpus_per_task")
    return max(1, int(cpus)) if cpus else None


def job_threads(launcher: dict[str, Any], cores: int) -> Optional[int]:
    """The torch threads of one job of a Hydra launcher that runs jobs side by side in processes of this machine or
    a cluster's, so that together they take the cores once, not each all of them (None: the launcher runs jobs in
    this process, or leaves their processes to ablate's own tasks). joblib: the cores over ``n_jobs``; Ray: the
    task's ``num_cpus``; submitit: ``cpus_per_task``."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        jobs = int(launcher.get("n_jobs") or -1)
        jobs = jobs if jobs > 0 else max(1, cores + 1 + jobs)  # joblib's negatives: -1 all cores, -2 all but one
        return max(1, cores // jobs)
    if target.endswith("RayLauncher"):
        cpus = ((launcher.get("ray") or {}).get("remote") or {}).get("num_cpus")
    elif "submitit_launcher" in target:
        cpus = launcher.get("cpus_per_task")
    else:
        return None
    return max(1, int(cpus)) if cpus else None


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


def dispatch(plan: Plan, how: str, options: dict[str, Any], sweep: Optional[SweepRef], tracker: Tracker,
             on_report: Optional[Callable[[str, int], None]] = None):
    """Run each planned population as one remote task (``how``: ``ray`` or ``submitit``); yields each population and
    its results as it completes, telling ``on_report`` (task, member-epochs) what running tasks have trained. A task
    that crashes (a lost node, a killed process) fails its own runs only."""
    tasks = [(population, uuid.uuid4().hex[:12]) for population in plan.populations]
    reports = TaskReports(tracker, sweep, [task for _, task in tasks], report_every_s(plan.cfgs[0]), on_report)
    submit = {"ray": _ray, "submitit": _submitit}[how]  # each task: train_population(population, sweep, task, ...)
    try:
        for (population, task), outcome in submit(tasks, options, sweep, plan.memory_fraction,
                                                  task_threads(how, options), reports.poll):
            reports.ended(task)
            if isinstance(outcome, BaseException):
                outcome = fail_task(tracker, list(population.cfgs), task, outcome, sweep)
            yield population, outcome
    finally:
        reports.clear()


def fail_task(tracker: Tracker, members: list[RunConfig], task: str, error: BaseException,
              sweep: Optional[SweepRef]) -> list[RunResult]:
    """The task died without ending its runs: those it did not finish become FAILED with the task's error (also one
    another worker's liveness check found dead meanwhile and marked KILLED: the same death, counted the same), and a
    member it never opened a run for gets a FAILED run, so that every failure is counted and visible."""
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


def _ray(tasks, options, sweep, memory_fraction, threads, waiting):
    import ray

    start_ray(options.get("init", {}))
    remote = ray.remote(**{k: v for k, v in options.get("remote", {}).items() if v is not None})(train_population)
    gpu = asks_for_gpu(options)
    pending = {remote.remote(population, sweep, task, memory_fraction, gpu, threads): (population, task)
               for population, task in tasks}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if not ready:
            waiting()
            continue
        [ref] = ready
        try:
            outcome = ray.get(ref)
        except Exception as err:  # RayTaskError, WorkerCrashedError, OutOfMemoryError
            outcome = err
        yield pending.pop(ref), outcome


def start_ray(init: dict[str, Any]) -> None:
    """Ray started here (a local instance) or joined (``address``: a cluster's head), once per process, with
    ``ray.init``'s arguments; a cluster that cannot be joined is one line, not Ray's retries and traceback. Both
    Ray launchers start it so: population_ray's dispatch, and the sweeper before hydra/launcher=ray's jobs."""
    import ray

    if ray.is_initialized():
        return
    init = {k: v for k, v in init.items() if v is not None}
    check_ray_address(init.get("address"))
    try:
        ray.init(**init)
    except ConnectionError as err:
        raise _unreachable(init.get("address"), err) from err


def check_ray_address(address: Optional[str]) -> None:
    """A Ray cluster's head named as host:port answers there, or one line now: ``ray.init`` would retry for
    minutes."""
    import socket

    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit():  # unset (a local instance), "auto", or a ray:// client address
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise _unreachable(address, err) from err


def _unreachable(address: Optional[str], err: BaseException) -> UserError:
    """The Ray cluster a sweep names, unreachable, in one line: one that asks for a token this process does not send
    (token authentication: Ray's default for ``ray start`` since 2.59), or none answering at the address."""
    texts = [str(e) for e in chain(err)]
    where = f"cannot connect to the Ray cluster at {address}" if address else \
        "cannot connect to the Ray cluster that ray.init found on this machine"
    if "Authentication token is missing or incorrect" in "".join(texts):
        return UserError(f"{where}: it asks for a token and this process sends none. Run the sweep with "
                         f"RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token "
                         f"(`ray get-auth-token` on the head prints it).")
    return UserError(f"{where}: nothing answers there ({texts[0]}). Start it (`ray start --head`), or point "
                     f"RAY_ADDRESS (or hydra.launcher.ray.init.address) at its head.")


def _submitit(tasks, options, sweep, memory_fraction, threads, waiting):
    import submitit

    executor = submitit.AutoExecutor(folder=options["folder"], cluster=options.get("cluster"))
    executor.update_parameters(**{k: v for k, v in options.get("parameters", {}).items() if v is not None})
    with executor.batch():  # one array job on SLURM
        jobs = [executor.submit(train_population, population, sweep, task, memory_fraction, asks_for_gpu(options),
                                threads) for population, task in tasks]
    by_job = {id(job): task for job, task in zip(jobs, tasks)}
    local = options.get("cluster") == "local"
    for job in _as_completed(jobs, waiting):
        try:
            if local and not job.paths.result_pickle.exists():
                raise _died_locally(job)
            outcome = job.result()
        except Exception as err:  # FailedJobError, UncompletedJobError (timeout, preemption)
            outcome = err
        yield by_job[id(job)], outcome


def _as_completed(jobs, waiting: Callable[[], None]):
    """submitit's jobs as each ends (``submitit.helpers.as_completed``, checking every second), ``waiting`` called
    between the checks."""
    pending = list(jobs)
    while pending:
        done = [job for job in pending if job.done()]
        if not done:
            waiting()
            time.sleep(1.0)
        for job in done:
            pending.remove(job)
            yield job


def _died_locally(job) -> Exception:
    """A local job's process ended without writing its result: it was killed, or died. Said at once: ``result()``
    would first wait 15 s for the file, the delay a cluster's network file system may need, which a local folder
    does not."""
    from submitit.core.utils import UncompletedJobError

    stderr = (job.stderr() or "")[-3000:]
    return UncompletedJobError(f"Job {job.job_id}'s process ended without a result: it was killed, or died\n"
                               f"Error stream produced:\n{stderr}")
