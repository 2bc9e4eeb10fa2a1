"""Shared fixtures: Hydra's compose API on conf/, a temporary MLflow SQLite store per test, and a throwaway
PostgreSQL database per session.

A new MLflow SQLite database runs every migration (seconds), so one is migrated per session and copied.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

# The suite sends MLflow's telemetry nothing; its client would also set and unset a session variable in
# os.environ whenever MLflow re-creates it, which the API's leave-the-process-as-found test would see.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):  # tests side by side share the cores: one thread each, their processes too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402 - after the thread count it reads

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from ablate.config import PopulationSettings, RunConfig  # noqa: E402
from ablate.engine.plan import make_plan
from ablate.execution.compose import compose_run, composing, register_configs
from ablate.execution.runner import Recording, RunResult, execute
from ablate.tracking.tracker import Tracker

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"  # trust auth, as CI's machine has it
register_configs()


def make_config(*overrides: str) -> RunConfig:
    """The composed, validated config for these overrides, exactly as ``ablate`` builds it."""
    with composing():
        return compose_run(*overrides)


def train_all(cfgs: list[RunConfig], settings: Optional[PopulationSettings] = None, wait_for_others: bool = True,
              **recording) -> list[RunResult]:
    """``cfgs`` planned and executed as every launcher does, into their store (``recording``: Recording's options)."""
    plan = make_plan(cfgs, settings or PopulationSettings())
    results = dict(zip(map(id, plan.cfgs), execute(plan, Recording(Tracker(cfgs[0].tracking), **recording),
                                                   wait_for_others)))
    return [results[id(cfg)] for cfg in cfgs]


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def postgres_missing() -> Optional[str]:
    """Why the PostgreSQL tests cannot run here (None when they can): the server, the driver or the right to
    create a database, named exactly."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'ablate[postgres]')"
    name = f"ablate_probe_{uuid.uuid4().hex[:8]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
        _admin(f'DROP DATABASE "{name}"')
    except Exception as err:  # noqa: BLE001 - the reason is reported, whatever it is
        return f"cannot create a database on {POSTGRES_SERVER} as postgres: {str(err).strip().splitlines()[0]}"
    return None


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "ablate_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block; dropped afterwards, whatever happens."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server URL (without a database), or a skip that says exactly what is missing."""
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    return POSTGRES_SERVER


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> Iterator[str]:
    """A throwaway database for this test session (tests needing a fresh one use ``fresh_postgres_database``)."""
    with fresh_postgres_database("ablate_session") as url:
        yield url


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates the tables, runs the migrations
    return path


def fresh_store_in(folder: Path, migrated_store: Path, monkeypatch) -> str:
    """A fresh MLflow store (a copy of the migrated one) in ``folder``, which becomes the working directory and the
    store of MLFLOW_TRACKING_URI; returns its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(migrated_store, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(folder)
    return uri


@pytest.fixture
def tracking_uri(migrated_store, tmp_path, monkeypatch) -> str:
    """A fresh MLflow store for this test, in its own working directory; the user's store is never touched."""
    return fresh_store_in(tmp_path, migrated_store, monkeypatch)


@contextlib.contextmanager
def stopped_at_exit(*processes, with_children: bool = False) -> Iterator[None]:
    """Processes a test started are killed when the block ends, so a failing assertion leaves nothing running.
    ``with_children``: each was started in a session of its own (``start_new_session=True``) and is killed with all
    it started, even once it has exited itself (a server's workers would outlive it)."""
    try:
        yield
    finally:
        for process in processes:
            if with_children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the session's id is its first process's pid
            elif process.poll() is None:
                process.kill()
            process.wait()


QUICK = ("data=digits", "trainer.epochs=2", "trainer.device=cpu")
# python -m ablate.claims in one context (digits) of conf/judge.yaml's four
ONLY_DIGITS = ("~judge.contexts.fmnist_small", "~judge.contexts.fmnist_small_precise", "~judge.contexts.digits_precise")

# The equivalence tests run on every device this machine has: a CUDA path is checked the day a GPU is there
# (pytest -m cuda runs only those), and skipped with the reason where it is not.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine (torch.cuda.is_available() is False)")])]


def on(device: str, overrides: tuple[str, ...]) -> tuple[str, ...]:
    """``overrides`` with ``trainer.device`` set to ``device`` (instead of the one they name)."""
    return (*[o for o in overrides if not o.startswith("trainer.device=")], f"trainer.device={device}")


def wait_until(condition, timeout_s=20.0, every_s=0.1):
    """Poll ``condition`` until it holds; fail the test at the deadline (no fixed sleeps)."""
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, "condition not met before the deadline"
        time.sleep(every_s)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def ablate_cli(*argv: str) -> Ran:
    """The ``ablate`` command run in this process, as the console script runs it: its exit code (0, 1, 2, 130, ...),
    what it printed to stdout and to stderr. Only a test of what crosses a process boundary starts a process."""
    from ablate.__main__ import cli

    out, err, saved = io.StringIO(), io.StringIO(), list(sys.argv)
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        finally:
            sys.argv[:] = saved
    return Ran(code, out.getvalue(), err.getvalue())
