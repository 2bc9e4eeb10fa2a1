"""MLflow: one experiment per study, one run per trained model, never left RUNNING.

A RUNNING run is also a claim: several workers (processes, Ray tasks, SLURM jobs) sharing one store train a
variant only after opening its run and seeing no rival run of the same config (``Tracker.held``). Each process
stamps its open runs with a heartbeat, so a claim whose worker died is recognised and its variant trained again.

Uses ``MlflowClient`` rather than the fluent API, so that several runs (a population, a sweep's parent and
children) can be open at once without global state. Metrics are sent in batches (one ``log_batch`` costs
about as much as one ``log_metric``), throttled to about one flush a second during training.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Optional

import mlflow
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag

from ablate import UserError
from ablate.config import RunConfig, TrackingConfig, config_hash, flatten, to_dict

REPO = Path(__file__).resolve().parent.parent
TAG_HASH, TAG_CODE, TAG_SWEEP = "ablate.config_hash", "ablate.code_version", "ablate.sweep_id"
TAG_HOST, TAG_PID, TAG_ERROR, TAG_KIND = "ablate.host", "ablate.pid", "ablate.error", "ablate.kind"
TAG_HEARTBEAT = "ablate.heartbeat"  # unix time of the owner's last sign of life
FLUSH_EVERY_S = 1.0
log = logging.getLogger("ablate")
# MLflow prints two lines per run ended on a tracking server; ablate prints its own line per run.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


@functools.cache
def code_version() -> str:
    """The git commit of the code, plus a digest of uncommitted changes: runs are reused only for equal code."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit, diff = git("rev-parse", "HEAD").strip(), git("diff", "HEAD", "--", "ablate")
    except (OSError, subprocess.CalledProcessError):
        from ablate import __version__

        return f"ablate-{__version__}"
    return commit[:12] + (f"+dirty.{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else "")


def mask_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``: never print or log a password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def check_store_reachable(uri: str) -> None:
    """Fail in seconds, naming the fix, where MLflow would retry for minutes and then print a traceback: a
    tracking server that is down (~4 min of retries) or a database that is down or does not exist (~2 min)."""
    scheme = _scheme(uri)
    try:
        if scheme in ("http", "https"):
            import requests

            insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"  # as MLflow's client
            verify = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH", True)
            requests.get(uri.rstrip("/") + "/health", timeout=10, verify=verify)  # any answer will do, even 401
        elif scheme in ("postgresql", "mysql", "mssql"):
            import sqlalchemy

            engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10} if scheme != "mssql" else {})
            try:
                engine.connect().close()
            finally:
                engine.dispose()
    except ImportError as err:
        raise UserError(f"the MLflow store {mask_url(uri)} needs a database driver that is not installed ({err}); "
                        f"install it (PostgreSQL: pip install \"ablate[postgres]\").") from err
    except Exception as err:  # requests' ConnectionError / Timeout, sqlalchemy's OperationalError
        raise UserError(f"cannot reach the MLflow store {mask_url(uri)}: {connection_failure(err)}. Start the server "
                        f"or database (or create the database), or point tracking.uri / MLFLOW_TRACKING_URI "
                        f"elsewhere.") from err


def connection_failure(err: Exception) -> str:
    """What went wrong, in the words of the database driver or the socket, without the wrappers' prose."""
    text = str(getattr(err, "orig", None) or err)  # sqlalchemy keeps the driver's error as .orig
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)  # requests nests the socket's deep in its message
    return errno.group(0) if errno else text.strip().splitlines()[0]


@contextlib.contextmanager
def one_process_at_a_time(uri: str) -> Iterator[None]:
    """Processes opening a new store together (``make search WORKERS=4``, a cluster's first jobs) would each run
    MLflow's migrations and collide ("table ... already exists", a duplicate key): they take turns, holding a lock
    on a SQLite store's folder or a PostgreSQL advisory lock."""
    scheme = _scheme(uri)
    if scheme == "postgresql":
        import sqlalchemy

        engine = sqlalchemy.create_engine(uri)
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        finally:
            engine.dispose()
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (start one worker first there)
        fcntl = None
    if fcntl is None or not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # and with it the lock


_LOCK_KEY = int.from_bytes(b"ablate", "big")  # PostgreSQL advisory locks are numbered per database


def _scheme(uri: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql``."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """One daemon thread per process stamps every open run with the time (``tracking.heartbeat_s``)."""

    runs: dict[str, MlflowClient] = {}
    every_s = 30.0
    _lock = threading.Lock()
    _thread: Optional[threading.Thread] = None

    @classmethod
    def add(cls, run_id: str, client: MlflowClient) -> None:
        with cls._lock:
            cls.runs[run_id] = client
            if cls._thread is None:
                cls._thread = threading.Thread(target=cls._beat, name="ablate-heartbeat", daemon=True)
                cls._thread.start()

    @classmethod
    def remove(cls, run_id: str) -> None:
        with cls._lock:
            cls.runs.pop(run_id, None)

    @classmethod
    def _beat(cls) -> None:
        last = time.monotonic()
        while True:
            time.sleep(min(0.5, cls.every_s))
            if time.monotonic() - last < cls.every_s:
                continue
            last = time.monotonic()
            with cls._lock:
                runs = list(cls.runs.items())
            now = f"{time.time():.3f}"
            for run_id, client in runs:
                try:
                    client.set_tag(run_id, TAG_HEARTBEAT, now)
                except Exception as err:  # a store that is briefly unreachable must not stop training
                    log.warning(f"heartbeat of run {run_id} not recorded: {err}")


def is_dead(run: Run, claim_timeout_s: float) -> bool:
    """A RUNNING run whose worker is gone: its process on this host has exited, or it stopped heartbeating."""
    tags = run.data.tags
    if tags.get(TAG_HOST) == socket.gethostname() and TAG_PID in tags and not pid_alive(int(tags[TAG_PID])):
        return True
    return time.time() - float(tags.get(TAG_HEARTBEAT, run.info.start_time / 1000)) > claim_timeout_s


def _scope(sweep_id: Optional[str], kind: str) -> str:
    """The runs that count as the same work: this code, this kind of run, and the sweep if there is one."""
    return f"tags.`{TAG_CODE}` = '{code_version()}' and tags.`{TAG_KIND}` = '{kind}'" + \
        (f" and tags.`{TAG_SWEEP}` = '{sweep_id}'" if sweep_id else "")


def run_name(cfg: RunConfig) -> str:
    m, o = cfg.model, cfg.optim
    return (f"bn={m.bn.value} p={m.dropout:g} {o.name.value} lr={o.lr:g} "
            f"wd={o.weight_decay:g}{'' if o.l2.value == 'penalty' else '(dec)'} seed={cfg.seed}")


@dataclass
class SweepGroup:
    """The sweep a job belongs to. The sweep's process sets it in the environment, which its jobs inherit
    (in-process, joblib, submitit and local Ray workers alike)."""

    sweep_id: str
    parent_run_id: str

    @classmethod
    def from_env(cls) -> Optional["SweepGroup"]:
        sweep_id, parent = os.environ.get("ABLATE_SWEEP_ID"), os.environ.get("ABLATE_PARENT_RUN_ID")
        return cls(sweep_id, parent) if sweep_id and parent else None

    def to_env(self) -> None:
        os.environ["ABLATE_SWEEP_ID"], os.environ["ABLATE_PARENT_RUN_ID"] = self.sweep_id, self.parent_run_id


class Tracker:
    """The MLflow experiment runs are recorded in; created on first use with the UI's training-runs view."""

    def __init__(self, cfg: TrackingConfig) -> None:
        self.uri = mask_url(cfg.uri)  # for display; the client gets the real one
        self.claim_timeout_s = cfg.claim_timeout_s
        Heartbeat.every_s = cfg.heartbeat_s
        check_store_reachable(cfg.uri)
        mlflow.set_tracking_uri(cfg.uri)  # also for mlflow's own helpers that read the global URI
        with one_process_at_a_time(cfg.uri):  # creating the client creates (and migrates) a new store
            self.client = MlflowClient(cfg.uri)
            experiment = self.client.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                with contextlib.suppress(mlflow.exceptions.MlflowException):  # another worker created it first
                    self.client.create_experiment(
                        cfg.experiment, artifact_location=self._artifact_root(cfg.uri, cfg.experiment),
                        tags={"mlflow.experimentKind": "custom_model_development"})  # MLflow 3: the runs table
                experiment = self.client.get_experiment_by_name(cfg.experiment)
        self.experiment_id: str = experiment.experiment_id

    @staticmethod
    def _artifact_root(uri: str, experiment: str) -> Optional[str]:
        """Beside a SQLite file: ``mlartifacts/<experiment>``; a server or PostgreSQL store decides for itself."""
        if not uri.startswith("sqlite:///"):
            return None
        return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts" / experiment).as_uri()

    def runs_url(self, host: str = "http://127.0.0.1:5000") -> str:
        return f"{host}/#/experiments/{self.experiment_id}/runs"

    def search(self, filter_string: str, max_results: int = 50_000) -> list[Run]:
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string,
                                           max_results=min(max_results, 10_000), page_token=token)
            runs += page
            token = page.token
            if not token or len(runs) >= max_results:
                return runs

    def finished(self, cfgs: Collection[RunConfig], sweep_id: Optional[str] = None,
                 kind: str = "train") -> dict[str, Run]:
        """FINISHED runs of these configs with this code (within the sweep, if given), by config hash: what
        resume skips. Inside a sweep one query covers all of it; outside, one query per config (the experiment may
        hold many other runs)."""
        hashes = {config_hash(cfg) for cfg in cfgs}
        filters = [""] if sweep_id and len(hashes) > 1 else [f" and tags.`{TAG_HASH}` = '{h}'" for h in hashes]
        runs = [run for only in filters
                for run in self.search(f"{_scope(sweep_id, kind)} and attributes.status = 'FINISHED'{only}")]
        return {r.data.tags[TAG_HASH]: r for r in reversed(runs) if r.data.tags.get(TAG_HASH) in hashes}

    def running(self, extra_filter: str = "") -> list[Run]:
        """RUNNING runs whose worker is alive; those of dead workers (kill -9, a lost node) are marked KILLED."""
        query = "attributes.status = 'RUNNING'" + (f" and {extra_filter}" if extra_filter else "")
        alive = []
        for run in self.search(query):
            if not is_dead(run, self.claim_timeout_s):
                alive.append(run)
                continue
            self.terminate(run.info.run_id, "KILLED", "its worker died or stopped heartbeating while RUNNING")
            log.info(f"run {run.info.run_id} of a dead worker marked KILLED")
        return alive

    def terminate(self, run_id: str, status: str, error: str) -> None:
        """End another process's run (it cannot end its own any more), saying why; this process stops stamping
        it if it ever did."""
        Heartbeat.remove(run_id)
        self.client.set_tag(run_id, TAG_ERROR, error)
        self.client.set_terminated(run_id, status)

    def held(self, sweep_id: Optional[str], kind: str, finished_since_ms: Optional[int] = None,
             exclude: Collection[str] = ()) -> set[str]:
        """Config hashes another worker holds (runs in ``exclude`` are ours): a live RUNNING run of the same code,
        and, given ``finished_since_ms``, a run FINISHED since then. One or two queries, however large the sweep."""
        scope = _scope(sweep_id, kind)
        runs = self.running(scope)
        if finished_since_ms is not None:
            runs += self.search(f"{scope} and attributes.status = 'FINISHED' and attributes.end_time >= {finished_since_ms}")
        return {r.data.tags.get(TAG_HASH) for r in runs if r.info.run_id not in exclude}

    def start_run(self, name: str, tags: dict[str, str], parent_id: Optional[str] = None) -> "RecordedRun":
        tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), TAG_CODE: code_version(),
                "mlflow.source.git.commit": code_version().split("+")[0], "mlflow.source.name": "ablate",
                "git.dirty": str("+dirty" in code_version()).lower(), **tags}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        tags[TAG_HEARTBEAT] = f"{time.time():.3f}"
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        return RecordedRun(self.client, run.info.run_id)

    @contextlib.contextmanager
    def training_run(self, cfg: RunConfig, device: str, parent_id: Optional[str] = None,
                     sweep_id: Optional[str] = None, kind: str = "train",
                     extra_tags: Optional[dict[str, str]] = None,
                     texts: Optional[dict[str, str]] = None) -> Iterator["RecordedRun"]:
        """One MLflow run for one trained model: params, config (and ``texts``: name -> content, more
        artifacts), versions; FINISHED, FAILED or KILLED at the end."""
        tags = {TAG_HASH: config_hash(cfg), TAG_KIND: kind, "device": device,
                "torch": torch.__version__, "mlflow": mlflow.__version__, **(extra_tags or {})}
        if sweep_id:
            tags[TAG_SWEEP] = sweep_id
        if cfg.experiment_name:
            tags["ablate.experiment"] = cfg.experiment_name
        run = self.start_run(run_name(cfg), tags, parent_id)
        with run.lifecycle():
            run.log_params(flatten(cfg))
            run.log_texts({"config.yaml": mask_url(yaml.safe_dump(to_dict(cfg), sort_keys=False)), **(texts or {})})
            yield run


class RecordedRun:
    """An open MLflow run: buffered metrics, artifacts, and its end state."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.flush_every_s = FLUSH_EVERY_S  # a population's members set None: one batch at the end
        self.status: Optional[str] = None  # set once the run has ended
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        Heartbeat.add(run_id, client)

    def log_params(self, params: dict[str, object]) -> None:
        items = [Param(k, mask_url(str(v))) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if k != "epoch"]
        if self.flush_every_s is not None and time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def log_epoch(self, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=int(metrics["epoch"]))

    def flush(self) -> None:
        for i in range(0, len(self._pending), 1000):  # MLflow's limit of metrics per batch
            self.client.log_batch(self.run_id, metrics=self._pending[i:i + 1000])
        self._pending, self._last_flush = [], time.monotonic()

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_texts(self, texts: dict[str, str]) -> None:
        """Text files as artifacts, in one call (each MLflow artifact call looks the run up again)."""
        with tempfile.TemporaryDirectory() as folder:
            for name, text in texts.items():
                (Path(folder) / name).write_text(text)
            self.client.log_artifacts(self.run_id, folder)

    def end(self, status: str, error: Optional[str] = None) -> None:
        if self.status is not None:
            return
        self.status = status
        Heartbeat.remove(self.run_id)
        self.flush()
        if error:
            self.set_tags({TAG_ERROR: error[:5000]})
        self.client.set_terminated(self.run_id, status)

    def withdraw(self) -> None:
        """Give up the claim (another worker holds the variant): the run is ended and deleted, out of every table."""
        self.end("KILLED", "withdrawn: another worker holds this variant")
        self.client.delete_run(self.run_id)

    @contextlib.contextmanager
    def lifecycle(self) -> Iterator["RecordedRun"]:
        """FINISHED on success, KILLED on Ctrl-C, FAILED with the error otherwise; the error propagates."""
        try:
            yield self
        except KeyboardInterrupt:
            self.end("KILLED", "interrupted (Ctrl-C)")
            raise
        except BaseException as err:
            self.end("FAILED", f"{type(err).__name__}: {err}")
            raise
        self.end("FINISHED")
