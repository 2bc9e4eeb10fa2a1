"""MLflow: one experiment per study, one run per trained model, never left RUNNING; the queries the rest needs.

The Tracker is the only place that talks to MLflow (with the process it may hand a population's run ends to,
``writer``; ``ablate.tracking`` is the only code that imports MLflow): callers ask it questions ("finished configs of this sweep", "runs another worker holds") and get plain
records back. A RUNNING run is also a lease: several workers (processes, Ray tasks, SLURM jobs) sharing one store
train a variant only after opening its run and seeing no rival run of the same config (``Tracker.leased_elsewhere``);
each process keeps its open runs alive with a heartbeat (``liveness``), so a dead worker's lease is recognised and its
variant trained again.

Uses ``MlflowClient`` rather than the fluent API, so that several runs (a population, a sweep's parent and
children) can be open at once without global state. Metrics are sent in batches (one ``log_batch`` costs about
as much as one ``log_metric``), throttled to about one flush a second during training.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Collection, Iterator, Mapping, Optional

from ablate.config.identity import config_hash, flatten, to_dict
from ablate.config.run import DataSource, RunConfig, TrackingConfig
from ablate.errors import UserError, signals_deferred
from ablate.tracking.liveness import HOST, Heartbeat, is_dead
from ablate.tracking.provenance import code_version, git_commit, inputs, inputs_digest, package_versions
from ablate.tracking.store import check_reachable, check_scheme, creating, mask_url, sqlite_file, sqlite_in_wal_mode
from ablate.tracking.writer import Batch, Writer, end_run

TAG_HASH, TAG_CODE, TAG_SWEEP = "ablate.config_hash", "ablate.code_version", "ablate.sweep_id"
TAG_HOST, TAG_PID, TAG_ERROR, TAG_KIND = "ablate.host", "ablate.pid", "ablate.error", "ablate.kind"
TAG_HEARTBEAT = "ablate.heartbeat"  # unix time of the owner's last sign of life
TAG_INPUTS = "ablate.inputs"  # a digest of the user's code and the data files a run read; per part: ablate.inputs.*
TAG_FACTORS, TAG_DEFINITION = "ablate.factors", "ablate.definition"  # a sweep's parent: what it varies
TAG_VARIANTS = "ablate.variants"
TAG_TASK_EPOCHS = "ablate.task_epochs."  # + a remote task's id, on its sweep's parent run: member-epochs it trained
SWEEP_KEYS = ("tracking.sweep_id", "tracking.parent_run_id")  # recorded as TAG_SWEEP and MLflow's parent run  # a sweep's parent: how many variants its grid has
FLUSH_EVERY_S = 1.0
log = logging.getLogger("ablate")


class RunKind(str, Enum):
    train = "train"  # one trained variant: a single run, or a member of a sweep or of the claims
    trial = "trial"  # one trial of a search
    final = "final"  # a search's best config retrained and tested
    sweep = "sweep"  # the parent run of a sweep (the claims' too)
    search = "search"  # the parent run of a search


class RunStatus(str, Enum):  # MLflow's run states
    running = "RUNNING"
    finished = "FINISHED"
    failed = "FAILED"
    killed = "KILLED"


@dataclass(frozen=True)
class RunRecord:
    """A run as read back from the store."""

    run_id: str
    status: RunStatus
    start_time: int  # ms since the epoch
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def config_hash(self) -> Optional[str]:
        return self.tags.get(TAG_HASH)

    @property
    def kind(self) -> Optional[str]:
        return self.tags.get(TAG_KIND)


@dataclass(frozen=True)
class SweepRef:
    """The sweep a job belongs to: its id and its MLflow parent run. A job in another process (joblib) receives it
    in its config (``tracking.sweep_id``, ``tracking.parent_run_id``), set by the sweep itself."""

    sweep_id: str
    parent_run_id: str

    @classmethod
    def of(cls, tracking: TrackingConfig) -> Optional["SweepRef"]:
        return cls(tracking.sweep_id, tracking.parent_run_id) if tracking.sweep_id else None

    def as_overrides(self) -> list[str]:
        return [f"tracking.sweep_id={self.sweep_id}", f"tracking.parent_run_id={self.parent_run_id}"]


def run_name(cfg: RunConfig) -> str:
    m, o = cfg.model, cfg.optim
    factors = [f"bn={m.bn.value}" if m.bn is not None else "", f"p={m.dropout:g}" if m.dropout is not None else ""]
    return " ".join(filter(None, [*factors, f"{o.name.value} lr={o.lr:g}",
                                  f"wd={o.weight_decay:g}{'' if o.l2.value == 'penalty' else '(dec)'}",
                                  f"seed={cfg.seed}"]))


def identity_tags(cfg: RunConfig) -> dict[str, str]:
    """What, besides the config (``TAG_HASH``), decides a run's numbers: ablate's code, and the user's model code,
    data code and data files (``provenance.inputs``), in total and by part (to say which one changed)."""
    parts = inputs(getattr(cfg.model, "target", None),  # a family built from the user's code (model=custom)
                   cfg.data.target if cfg.data.source == DataSource.callable else None, cfg.data.files())
    return {TAG_CODE: code_version(), TAG_INPUTS: inputs_digest(parts),
            **{f"{TAG_INPUTS}.{part}": digest for part, digest in parts.items()}}


def lease_key(cfg: RunConfig) -> str:
    """What two workers must not both train: the same config from the same inputs (the code: ``this_code``)."""
    return f"{config_hash(cfg)}/{identity_tags(cfg)[TAG_INPUTS]}"


_CHANGED = {TAG_CODE: "ablate's code", f"{TAG_INPUTS}.model_code": "the model's code",
            f"{TAG_INPUTS}.data_code": "the data function's code", f"{TAG_INPUTS}.data": "the data files"}


def what_changed(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The parts of a run's identity that differ between a recorded run's tags and this one's (empty: the same)."""
    if recorded.get(TAG_CODE) == now[TAG_CODE] and recorded.get(TAG_INPUTS) == now[TAG_INPUTS]:
        return []
    changed = [what for tag, what in _CHANGED.items() if recorded.get(tag) != now.get(tag)]
    return changed or ["what the run read (its inputs digest)"]


@dataclass
class Resumable:
    """What resume finds for a set of configs, by config hash: runs to reuse, and why the others train again."""

    reuse: dict[str, RunRecord] = field(default_factory=dict)
    stale: dict[str, list[str]] = field(default_factory=dict)  # a FINISHED run exists, but these parts changed

    def reusable(self, cfg: RunConfig) -> Optional[RunRecord]:
        """The FINISHED run that stands for ``cfg``; None where it trains (none found, or ``force=true``)."""
        return None if cfg.force else self.reuse.get(config_hash(cfg))


def _where(*, sweep_id: Optional[str] = None, kind: Optional[RunKind] = None, not_kind: Optional[RunKind] = None,
           status: Optional[RunStatus] = None, config_hashes: Collection[str] = (), this_code: bool = False,
           tags: Optional[dict[str, str]] = None, started_since_ms: Optional[int] = None,
           ended_since_ms: Optional[int] = None, run_ids: Collection[str] = ()) -> str:
    """An MLflow filter string from what the caller asks for (the only place one is written)."""
    parts = [f"tags.`{TAG_CODE}` = '{code_version()}'"] if this_code else []
    if run_ids:
        quoted = ", ".join(f"'{run_id}'" for run_id in run_ids)
        parts.append(f"attributes.run_id IN ({quoted})")
    for key, value in {TAG_SWEEP: sweep_id, TAG_KIND: kind and kind.value, **(tags or {})}.items():
        if value is not None:
            parts.append(f"tags.`{key}` = '{value}'")
    if not_kind is not None:
        parts.append(f"tags.`{TAG_KIND}` != '{not_kind.value}'")
    if len(config_hashes) == 1:
        parts.append(f"tags.`{TAG_HASH}` = '{next(iter(config_hashes))}'")
    if status is not None:
        parts.append(f"attributes.status = '{status.value}'")
    if started_since_ms is not None:
        parts.append(f"attributes.start_time >= {started_since_ms}")
    if ended_since_ms is not None:
        parts.append(f"attributes.end_time >= {ended_since_ms}")
    return " and ".join(parts)


class Tracker:
    """The MLflow experiment runs are recorded in; created on first use with the UI's training-runs view."""

    def __init__(self, cfg: TrackingConfig) -> None:
        from mlflow import MlflowClient

        self.uri = mask_url(cfg.uri)  # for display; the client gets the real one
        self.dead_after_s = cfg.dead_after_s
        self.heartbeat = Heartbeat(cfg.heartbeat_s)
        self.writer = Writer(cfg.uri, cfg.write_behind)
        self._open: dict[str, RecordedRun] = {}  # this process's runs not yet ended: what ``end_open`` ends
        check_scheme(cfg.uri, "tracking.uri")
        check_reachable(cfg.uri, "MLflow store", "Start the server or database (or create the database), or point "
                                                 "tracking.uri / MLFLOW_TRACKING_URI elsewhere.")
        if cfg.uri.startswith("sqlite:"):
            sqlite_in_wal_mode(cfg.uri)
        with creating(cfg.uri):  # creating the client creates (and migrates) a new store
            self._client = MlflowClient(cfg.uri)
            self.experiment_id: str = self._experiment(cfg)

    def _experiment(self, cfg: TrackingConfig) -> str:
        """The experiment's id, created on first use (with the UI's training-runs view, MLflow 3)."""
        from mlflow.exceptions import MlflowException

        experiment = self._client.get_experiment_by_name(cfg.experiment)
        if experiment is None:
            try:
                self._client.create_experiment(cfg.experiment, tags={"mlflow.experimentKind": "custom_model_development"},
                                               artifact_location=self._artifact_root(cfg.uri, cfg.experiment))
            except MlflowException as err:  # another worker created it first, or MLflow refuses it: say why
                if (experiment := self._client.get_experiment_by_name(cfg.experiment)) is None:
                    reason = str(err.message).strip().splitlines()[0][:300]
                    raise UserError(f"MLflow cannot create the experiment tracking.experiment="
                                    f"{cfg.experiment[:40]!r}{'...' if len(cfg.experiment) > 40 else ''} in "
                                    f"{self.uri}: {reason}. Choose another name.") from err
            experiment = experiment or self._client.get_experiment_by_name(cfg.experiment)
        return experiment.experiment_id

    @staticmethod
    def _artifact_root(uri: str, experiment: str) -> Optional[str]:
        """Beside a SQLite file: ``mlartifacts/<experiment>``; a server or PostgreSQL store decides for itself."""
        if not uri.startswith("sqlite:///"):
            return None
        return (sqlite_file(uri).parent / "mlartifacts" / experiment).as_uri()

    def runs_url(self, run_id: str = "", host: str = "http://127.0.0.1:5000") -> str:
        return f"{host}/#/experiments/{self.experiment_id}/runs" + (f"/{run_id}" if run_id else "")

    # ------------------------------------------------------------------------------------------- queries
    def runs(self, max_results: int = 50_000, newest_first: bool = False, **where) -> list[RunRecord]:
        """Runs matching ``where`` (see ``_where``: sweep_id, kind, status, tags, ...), as records."""
        query, found, token = _where(**where), [], None
        order = ["attributes.start_time DESC"] if newest_first else None
        while True:
            with signals_deferred():  # a stop waits for the page: raised inside SQLAlchemy's fetch, it is logged
                page = self._client.search_runs([self.experiment_id], query, max_results=min(max_results, 10_000),
                                                page_token=token, order_by=order)
            found += [RunRecord(r.info.run_id, RunStatus(r.info.status), r.info.start_time, dict(r.data.params),
                                dict(r.data.metrics), dict(r.data.tags)) for r in page]
            token = page.token
            if not token or len(found) >= max_results:
                return found

    def finished(self, cfgs: Collection[RunConfig], sweep_id: Optional[str], kind: RunKind) -> Resumable:
        """FINISHED runs of these configs (within the sweep, if given) made by the same code from the same inputs,
        by config hash: what resume reuses; for a config whose FINISHED run has other code or inputs, what changed.
        Configs with ``force=true`` are not looked up. Inside a sweep one query covers all of it; outside, one query
        per config (the experiment may hold many other runs)."""
        by_hash = {config_hash(cfg): cfg for cfg in cfgs if not cfg.force}
        batches = [set(by_hash)] if sweep_id and len(by_hash) > 1 else [{h} for h in by_hash]
        runs = [run for batch in batches for run in self.runs(sweep_id=sweep_id, kind=kind, status=RunStatus.finished,
                                                               config_hashes=batch)]
        found, identities = Resumable(), {}
        for run in sorted(runs, key=lambda r: r.start_time):  # the newest run of a config decides
            if run.config_hash not in by_hash:
                continue
            now = identities.setdefault(run.config_hash, identity_tags(by_hash[run.config_hash]))
            changed = what_changed(run.tags, now)
            if changed:
                found.stale.setdefault(run.config_hash, changed)
            else:
                found.reuse[run.config_hash] = run
        found.stale = {h: why for h, why in found.stale.items() if h not in found.reuse}
        return found

    def live(self, **where) -> list[RunRecord]:
        """RUNNING runs whose worker is alive; those of dead workers (kill -9, a lost node) are marked KILLED."""
        alive = []
        for run in self.runs(status=RunStatus.running, **where):
            tags = run.tags
            last_beat = float(tags.get(TAG_HEARTBEAT, run.start_time / 1000))
            if not is_dead(tags.get(TAG_HOST), int(tags[TAG_PID]) if TAG_PID in tags else None, last_beat,
                           self.dead_after_s):
                alive.append(run)
                continue
            self.terminate(run.run_id, RunStatus.killed, "its worker died or stopped heartbeating while RUNNING")
            log.info(f"run {run.run_id} of a dead worker marked KILLED")
        return alive

    def leased_elsewhere(self, sweep_id: Optional[str], kind: RunKind, finished_since_ms: Optional[int] = None,
                         ours: Collection[str] = ()) -> set[str]:
        """Lease keys (``lease_key``) another worker holds (runs in ``ours`` are this worker's): a live RUNNING run
        of the same code, and, given ``finished_since_ms``, a run FINISHED since then. One or two queries, however
        large."""
        runs = self.live(sweep_id=sweep_id, kind=kind, this_code=True)
        if finished_since_ms is not None:
            runs += self.runs(sweep_id=sweep_id, kind=kind, this_code=True, status=RunStatus.finished,
                              ended_since_ms=finished_since_ms)
        return {f"{r.config_hash}/{r.tags.get(TAG_INPUTS)}" for r in runs if r.run_id not in ours}

    def ended_by_others(self, run_ids: Collection[str]) -> set[str]:
        """Which of this process's open runs another worker has ended meanwhile: it found their heartbeat older
        than ``dead_after_s`` (a stalled store or host) and took their variants over. One query."""
        if not run_ids:
            return set()
        return {r.run_id for r in self.runs(run_ids=run_ids) if r.status != RunStatus.running}

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of a metric logged per epoch."""
        return [(m.step, m.value) for m in self._client.get_metric_history(run_id, key)]

    def latest_sweep_id(self) -> Optional[str]:
        newest = self.runs(kind=RunKind.sweep, max_results=1, newest_first=True)
        return newest[0].tags[TAG_SWEEP] if newest else None

    # ------------------------------------------------------------------------------------------ writing
    def start_run(self, name: str, tags: dict[str, str], parent_id: Optional[str] = None) -> "RecordedRun":
        """A new RUNNING run of this process, kept alive by its heartbeat until it ends."""
        tags = {TAG_HOST: HOST, TAG_PID: str(os.getpid()), TAG_CODE: code_version(), "mlflow.source.name": "ablate",
                **({"mlflow.source.git.commit": git_commit()} if git_commit() else {}), **tags,
                TAG_HEARTBEAT: f"{time.time():.3f}"}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        with signals_deferred():  # a stop meanwhile finds the run among the open ones
            info = self._client.create_run(self.experiment_id, tags=tags, run_name=name).info
            return self._opened(RecordedRun(self, info.run_id, artifact_uri=info.artifact_uri))

    def reopen(self, run_id: str) -> "RecordedRun":
        """An ended run of this experiment RUNNING again, as this process's (a resumed sweep's parent)."""
        with signals_deferred():
            self._client.update_run(run_id, status=RunStatus.running.value)
            return self._opened(RecordedRun(self, run_id))

    def _opened(self, run: "RecordedRun") -> "RecordedRun":
        self._open[run.run_id] = run
        self._keep_alive(run.run_id)
        return run

    def end_open(self, err: BaseException) -> None:
        """End every run this process still has open as ``err`` ends a run's lifecycle. The commands' outer layers
        (a sweep's lifecycle, ``runner.execute``) call this on their way out, so that a stop landing anywhere (between
        a run's opening and its lifecycle too, a window of a few bytecodes) leaves nothing RUNNING."""
        for run in list(self._open.values()):
            run.end_with(err)

    def report_task(self, parent_run_id: str, task: str, epochs: int) -> None:
        """A remote task's member-epochs so far, on its sweep's parent run: a worker's one way back to the sweep's
        process that works the same on Ray, SLURM and local processes (the store they all share)."""
        with signals_deferred():
            self._client.set_tag(parent_run_id, TAG_TASK_EPOCHS + task, str(epochs))

    def task_reports(self, parent_run_id: str) -> dict[str, int]:
        """Each reporting task's member-epochs, as ``report_task`` stamped them last."""
        tags = self._client.get_run(parent_run_id).data.tags
        return {k.removeprefix(TAG_TASK_EPOCHS): int(v) for k, v in tags.items() if k.startswith(TAG_TASK_EPOCHS)}

    def clear_task_reports(self, parent_run_id: str, tasks: Collection[str]) -> None:
        """These tasks' reports gone from the parent run once they have ended (their runs say what they trained);
        another process's tasks of the same sweep keep theirs."""
        with signals_deferred():
            for task in set(self.task_reports(parent_run_id)) & set(tasks):
                self._client.delete_tag(parent_run_id, TAG_TASK_EPOCHS + task)

    def run(self, run_id: str) -> "RecordedRun":
        """An existing run to log more to (a report's artifacts), its state untouched."""
        return RecordedRun(self, run_id, status=RunStatus.finished)

    def _keep_alive(self, run_id: str) -> None:
        self.heartbeat.keep_alive(run_id, lambda now: self._client.set_tag(run_id, TAG_HEARTBEAT, f"{now:.3f}"))

    def terminate(self, run_id: str, status: RunStatus, error: str, details: Optional[str] = None) -> None:
        """End another process's run (it cannot end its own any more), saying why (``details``: a traceback, as
        the artifact ``error.txt``); this process stops stamping it if it ever did."""
        self.heartbeat.forget(run_id)
        with signals_deferred():
            if details:
                self.run(run_id).log_texts({"error.txt": details})
            self._client.set_tag(run_id, TAG_ERROR, error)
            self._client.set_terminated(run_id, status.value)

    @contextlib.contextmanager
    def training_run(self, cfg: RunConfig, device: str, sweep: Optional[SweepRef] = None,
                     kind: RunKind = RunKind.train, extra_tags: Optional[dict[str, str]] = None,
                     texts: Optional[dict[str, str]] = None, batched: bool = False) -> Iterator["RecordedRun"]:
        """One MLflow run for one trained model: params, config (and ``texts``: name -> content, more
        artifacts), versions; FINISHED, FAILED or KILLED at the end. ``batched`` (a population's member) sends its
        params and metrics in one batch when it ends, where one run would send them as they come, through the
        tracker's ``writer``."""
        import yaml

        tags = {TAG_HASH: config_hash(cfg), **identity_tags(cfg), TAG_KIND: kind.value, "device": device,
                **package_versions(), **(extra_tags or {})}
        if sweep is not None:
            tags[TAG_SWEEP] = sweep.sweep_id
        if cfg.experiment_name:
            tags["ablate.experiment"] = cfg.experiment_name
        run = self.start_run(run_name(cfg), tags, sweep.parent_run_id if sweep else None)
        if batched:
            run.flush_every_s, run.write_behind = None, True
        with run.lifecycle():
            run.log_params({k: v for k, v in flatten(cfg).items() if k not in SWEEP_KEYS})  # the sweep: its tags
            config = yaml.dump(to_dict(cfg), sort_keys=False, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
            run.log_texts({"config.yaml": mask_url(config), **(texts or {})})  # libyaml's dumper: the same text, 4x faster
            yield run


class RecordedRun:
    """An open MLflow run: buffered params and metrics, artifacts, and its end state."""

    def __init__(self, tracker: Tracker, run_id: str, status: Optional[RunStatus] = None,
                 artifact_uri: Optional[str] = None) -> None:
        self._tracker, self._client, self.run_id = tracker, tracker._client, run_id
        self.artifact_uri = artifact_uri
        self.flush_every_s: Optional[float] = FLUSH_EVERY_S  # None: everything in one batch when the run ends
        self.write_behind = False  # its end (that batch, its status) by the tracker's writer process
        self.status = status  # set once the run has ended
        self._pending: dict[str, list] = {"metrics": [], "params": [], "tags": []}
        self._last_flush = time.monotonic()

    def params(self) -> dict[str, str]:
        return dict(self._client.get_run(self.run_id).data.params)

    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        self._pending["params"] += [Param(k, mask_url(str(v))) for k, v in params.items()]
        self._flush_if_due(now=True)

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending["metrics"] += [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if k != "epoch"]
        self._flush_if_due()

    def _flush_if_due(self, now: bool = False) -> None:
        if self.flush_every_s is not None and (now or time.monotonic() - self._last_flush >= self.flush_every_s):
            self.flush()

    def log_epoch(self, metrics: Mapping[str, float]) -> None:
        self.log_metrics(metrics, step=int(metrics["epoch"]))

    def flush(self) -> None:
        for metrics, params, tags in self._take_batches():
            self._client.log_batch(self.run_id, metrics=metrics, params=params, tags=tags)
        self._last_flush = time.monotonic()

    def _take_batches(self) -> list[Batch]:
        """What is pending, in as few batches as MLflow's limits allow (1000 metrics, 100 params, 100 tags)."""
        pending, batches = self._pending, []
        while any(pending.values()):
            batches.append((pending["metrics"][:1000], pending["params"][:100], pending["tags"][:100]))
            pending = {"metrics": pending["metrics"][1000:], "params": pending["params"][100:],
                       "tags": pending["tags"][100:]}
        self._pending = pending
        return batches

    def set_tags(self, tags: Mapping[str, object]) -> None:
        self._pending["tags"] += [_tag(k, str(v)) for k, v in tags.items()]
        self._flush_if_due(now=True)

    def log_texts(self, texts: Mapping[str, str], folder: Optional[str] = None) -> None:
        """Text files as artifacts, in one call, straight to the run's artifact store where it is known (the
        client would look the run up again for each call)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with tempfile.TemporaryDirectory() as tmp:
            for name, text in texts.items():
                (Path(tmp) / name).write_text(text)
            if self.artifact_uri is None:
                self._client.log_artifacts(self.run_id, tmp, folder)
            else:
                get_artifact_repository(self.artifact_uri).log_artifacts(tmp, folder)

    def log_files(self, paths: Collection[Path], folder: Optional[str] = None) -> None:
        for path in paths:
            self._client.log_artifact(self.run_id, str(path), folder)

    def end(self, status: RunStatus, error: Optional[str] = None) -> None:
        """The run's end state; what it has pending is sent first. It stays RUNNING (and stamped) until then."""
        if self.status is not None:
            return
        self.status = status
        self._tracker._open.pop(self.run_id, None)
        if error:
            self._pending["tags"].append(_tag(TAG_ERROR, error[:5000]))
        forget = functools.partial(self._tracker.heartbeat.forget, self.run_id)
        if self.write_behind and self._tracker.writer.enabled:
            return self._tracker.writer.end_run(self.run_id, self._take_batches(), status.value, then=forget)
        try:
            with signals_deferred():  # ended whole: a stop waits for the status to be written
                end_run(self._client, self.run_id, self._take_batches(), status.value)
        finally:  # a run that cannot be ended is not kept alive either: the dead-worker rule ends it
            forget()

    def let_go(self) -> None:
        """Leave the run as another worker ended it (``Tracker.ended_by_others``): nothing more is written to it."""
        self.status = RunStatus.killed
        self._tracker._open.pop(self.run_id, None)
        self._tracker.heartbeat.forget(self.run_id)

    def withdraw(self) -> None:
        """Give up the lease (another worker holds the variant): the run is ended and deleted, out of every table."""
        self.write_behind = False
        with signals_deferred():
            self.end(RunStatus.killed, "withdrawn: another worker holds this variant")
            self._client.delete_run(self.run_id)

    @contextlib.contextmanager
    def lifecycle(self) -> Iterator["RecordedRun"]:
        """FINISHED on success, KILLED on Ctrl-C or SIGTERM, FAILED with the error otherwise; the error propagates."""
        try:
            yield self
        except BaseException as err:
            self.end_with(err)
            raise
        self.end(RunStatus.finished)

    def end_with(self, err: BaseException) -> None:
        """KILLED by Ctrl-C, SIGTERM or SIGHUP (``errors.Stopped``: its str names the signal), FAILED by an error."""
        if isinstance(err, KeyboardInterrupt):
            self.end(RunStatus.killed, str(err) or "interrupted (Ctrl-C)")
        else:
            self.fail(err)

    def fail(self, err: BaseException) -> None:
        """FAILED with the error's one line in the tag and its whole traceback as the artifact ``error.txt``."""
        if self.status is None:
            with contextlib.suppress(Exception):  # the store's own trouble must not hide the error being recorded
                self.log_texts({"error.txt": "".join(traceback.format_exception(err))})
        self.end(RunStatus.failed, f"{type(err).__name__}: {err}")


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, mask_url(value))
