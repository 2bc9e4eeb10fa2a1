"""Stores behind URIs (an MLflow store, an Optuna storage): masking their passwords, probing that they answer (a
scheme MLflow has, a server that listens, a SQLite file that is whole and writable: one line naming the store and
the fix, in seconds), and creating a new store so that no interrupt can leave it half made: under a lock, into a
temporary file renamed into place once MLflow's migrations are done.

Knows nothing of runs or trials; the tracker and the search open their stores through it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from ablate.errors import UserError, chain

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


KNOWN_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks")


def check_scheme(uri: str, key: str) -> None:
    """A URI whose scheme MLflow has no store for is one line (MLflow's own error is a ``KeyError``)."""
    if "://" in uri and scheme(uri) not in KNOWN_SCHEMES:
        raise UserError(f"{key}={mask_url(uri)}: there is no store for the scheme {scheme(uri)!r}; give sqlite:///"
                        f"mlflow.db (a file here), postgresql://user@host/db or http(s)://host:port (a server).")


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
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = sqlite_file(uri)
    _writable_folder(path.parent, uri)
    handle = os.open(path.parent, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        _create_sqlite_store(path) if _absent(path) else check_sqlite_store(path, uri)
        yield
    finally:
        os.close(handle)  # and with it the lock


def _writable_folder(folder: Path, uri: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"the MLflow store {mask_url(uri)} cannot be made: its folder {folder} cannot be created "
                        f"({err.strerror}); point tracking.uri elsewhere.") from err
    if not os.access(folder, os.W_OK):
        raise UserError(f"the MLflow store {mask_url(uri)} is in a folder this user cannot write ({folder}): SQLite "
                        f"writes its journal beside the file. Make it writable, or point tracking.uri elsewhere.")


def _absent(path: Path) -> bool:
    if path.is_dir():
        raise UserError(f"the MLflow store sqlite:///{path} is a folder, not a SQLite file: point tracking.uri at a "
                        f"file (sqlite:///{path / 'mlflow.db'}), or remove the folder.")
    return not path.exists() or path.stat().st_size == 0


def _create_sqlite_store(path: Path) -> None:
    """A new store made whole before it exists: MLflow's migrations run on a temporary file in the same folder, which
    is then renamed into place (atomically), so an interrupt at any moment leaves either no store or a whole one.
    Temporary files of interrupted creations are removed first (the lock is ours: nobody else is creating)."""
    from mlflow import MlflowClient

    for leftover in path.parent.glob(f".{path.name}.creating-*"):
        leftover.unlink(missing_ok=True)
    partial = path.parent / f".{path.name}.creating-{os.getpid()}"
    try:
        MlflowClient(f"sqlite:///{partial}").search_experiments()  # creates the tables, runs every migration
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_store(path: Path, uri: str) -> None:
    """An existing SQLite store that is whole and writable, or one line saying what it is instead: another kind of
    file, damaged pages, a file cut short, tables of an interrupted migration, a file this user cannot write."""
    import sqlite3

    where = f"the MLflow store {mask_url(uri)}"
    with open(path, "rb") as file:
        if file.read(16) != SQLITE_HEADER:
            raise UserError(f"{where} is not a SQLite database (another kind of file, or garbage): move it away, "
                            f"or point tracking.uri at another file.")
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:  # its mode says so, even to root
        raise UserError(f"{where} is read-only: make the file writable (chmod u+w {path}), or point tracking.uri at a "
                        f"copy.")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            found = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            interrupted = db.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()
    except sqlite3.DatabaseError as err:
        found, interrupted = str(err), []
    if found != "ok":
        raise UserError(f"{where} is damaged ({found}): restore it from a copy, or move it away to start a new one "
                        f"(sqlite3 {path} .recover can save what is readable).")
    if interrupted:
        raise UserError(f"{where} holds the tables of an interrupted migration ({interrupted[0][0]}): restore it "
                        f"from a copy, or move it away to start a new one.")


_LOCK_KEY = int.from_bytes(b"ablate", "big")  # PostgreSQL advisory locks are numbered per database


def sqlite_file(uri: str) -> Path:
    """``sqlite:///mlflow.db`` -> the database file's absolute path."""
    return Path(uri.removeprefix("sqlite:///")).resolve()


_OURS: set[str] = set()  # the SQLite files ablate opened as stores: the only ones its pragmas touch


def sqlite_in_wal_mode(uri: str) -> None:
    """This SQLite store in write-ahead-log mode with normal syncing: a commit appends to the log instead of syncing
    the database file, a quarter less time per MLflow call, and readers no longer block the writer, which helps
    several local workers on one store. Only ablate's own store files: another SQLite database of the process (a
    notebook's, Optuna's) keeps its settings."""
    _OURS.add(str(sqlite_file(uri)))
    _listen_for_our_stores()


@functools.cache
def _listen_for_our_stores() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        if not type(connection).__module__.startswith("sqlite3"):
            return
        cursor = connection.cursor()
        try:
            files = {row[2] for row in cursor.execute("PRAGMA database_list").fetchall()}
            if files & _OURS:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()


_WRITE_FAILURES = ("database or disk is full", "attempt to write a readonly database", "disk i/o error",
                   "unable to open database file", "database disk image is malformed")


def store_failure(err: BaseException) -> Optional[str]:
    """One line for a store that failed under a command (a full disk, a file made read-only or damaged meanwhile),
    found anywhere in ``err``'s chain (MLflow wraps SQLAlchemy, which wraps the driver); None for anything else."""
    for found in chain(err):
        text = str(found).lower()
        reason = next((r for r in _WRITE_FAILURES if r in text), None)
        if reason is not None:
            return (f"the MLflow store could not be written ({reason}): free disk space or make the store writable, "
                    f"then run the same command again (the runs finished before are kept).")
    return None


@contextlib.contextmanager
def store_lines_quiet() -> Iterator[None]:
    """MLflow's own lines about its SQL store quiet for the block (creating its tables; a failure logged whole
    before it is raised, which ablate then names in one line), its logger as it was afterwards."""
    import logging

    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        store_log.setLevel(level)
