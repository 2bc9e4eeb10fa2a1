"""Stores behind URIs (an MLflow store, an Optuna storage): masking their passwords, probing that they answer,
and taking turns while a new one is created.

Knows nothing of runs or trials; ``tracking`` and ``search`` open their stores through it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path
from typing import Any, Iterator

from ablate import UserError

_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def mask_url(text: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``, wherever it appears in ``text``:
    never print, log or record a password."""
    return _PASSWORD.sub(r"\1:***@", text)


def refuse_clear_passwords(config: Any, prefix: str = "") -> None:
    """A password written in a config value (a command-line override, a YAML file) would reach Hydra's run folder,
    the shell's history and ``ps``: refused, naming the key, with the fix. An interpolation such as
    ``${oc.env:OPTUNA_STORAGE}`` keeps it in the environment, and is what Hydra writes."""
    if isinstance(config, dict):
        for key, value in config.items():
            refuse_clear_passwords(value, f"{prefix}{key}.")
    elif isinstance(config, list):
        for value in config:
            refuse_clear_passwords(value, prefix)
    elif isinstance(config, str) and "${" not in config and _PASSWORD.search(config):
        key = prefix[:-1]
        fix = ("export MLFLOW_TRACKING_URI=<the URL> and leave tracking.uri out (conf/tracking/mlflow.yaml reads it)"
               if key == "tracking.uri" else f"export a variable, e.g. OPTUNA_STORAGE=<the URL>, and give "
                                             f"{key}='${{oc.env:OPTUNA_STORAGE}}'")
        raise UserError(f"{key} holds a password in clear ({mask_url(config)}): it would be written to Hydra's "
                        f"outputs/.../.hydra files and show in your shell history and ps. Keep it in the environment: "
                        f"{fix}.")


def scheme(uri: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql``."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def connection_failure(err: Exception) -> str:
    """What went wrong, in the words of the database driver or the socket, without the wrappers' prose."""
    text = str(getattr(err, "orig", None) or err)  # sqlalchemy keeps the driver's error as .orig
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)  # requests nests the socket's deep in its message
    return errno.group(0) if errno else text.strip().splitlines()[0]


def check_reachable(uri: str, what: str, fix: str) -> None:
    """Fail in seconds, naming the fix, where a client would retry for minutes and then print a traceback: a
    tracking server that is down (MLflow: ~4 min of retries) or a database that is down or does not exist (~2 min)."""
    kind = scheme(uri)
    try:
        if kind in ("http", "https"):
            import requests
            from mlflow.environment_variables import (MLFLOW_TRACKING_INSECURE_TLS,
                                                      MLFLOW_TRACKING_SERVER_CERT_PATH)

            verify = False if MLFLOW_TRACKING_INSECURE_TLS.get() else (MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True)
            requests.get(uri.rstrip("/") + "/health", timeout=10, verify=verify)  # any answer will do, even 401
        elif kind in ("postgresql", "mysql", "mssql"):
            import sqlalchemy

            engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 10} if kind != "mssql" else {})
            try:
                engine.connect().close()
            finally:
                engine.dispose()
    except ImportError as err:
        raise UserError(f"the {what} {mask_url(uri)} needs a database driver that is not installed ({err}); "
                        f"install it (PostgreSQL: pip install \"ablate[postgres]\").") from err
    except Exception as err:  # requests' ConnectionError / Timeout, sqlalchemy's OperationalError
        raise UserError(f"cannot reach the {what} {mask_url(uri)}: {connection_failure(err)}. {fix}") from err


@contextlib.contextmanager
def creating(uri: str) -> Iterator[None]:
    """Processes opening a new store together (``make search WORKERS=4``, a cluster's first jobs) would each run
    its migrations and collide ("table ... already exists", a duplicate key): they take turns, holding a lock
    on a SQLite store's folder or a PostgreSQL advisory lock."""
    if scheme(uri) == "postgresql":
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
    folder = sqlite_file(uri).parent
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # and with it the lock


_LOCK_KEY = int.from_bytes(b"ablate", "big")  # PostgreSQL advisory locks are numbered per database


def sqlite_file(uri: str) -> Path:
    """``sqlite:///mlflow.db`` -> the database file's absolute path."""
    return Path(uri.removeprefix("sqlite:///")).resolve()


@functools.cache
def sqlite_in_wal_mode() -> None:
    """SQLite stores in write-ahead-log mode with normal syncing (for every SQLAlchemy engine of this process): a
    commit appends to the log instead of syncing the database file, a quarter less time per MLflow call, and
    readers no longer block the writer, which helps several local workers on one store."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        if type(connection).__module__.startswith("sqlite3"):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
