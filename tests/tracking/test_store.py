"""The store behind a URI: passwords masked, a broken or unreachable store one line within seconds, and a new store
that no interrupt can leave half made."""

import os
import signal
import time

import pytest

from ablate.cli import run_command
from ablate.config import TrackingConfig
from ablate.errors import UserError
from ablate.tracking.store import check_scheme, mask_url, store_failure
from ablate.tracking.tracker import Tracker


def test_passwords_are_masked_wherever_they_appear():
    assert mask_url("postgresql://ada:s3cret@db:5432/ml") == "postgresql://ada:***@db:5432/ml"
    assert mask_url("see postgresql://ada:s3cret@db/x and http://u:p@h/") == "see postgresql://ada:***@db/x and " \
                                                                             "http://u:***@h/"
    assert mask_url("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_an_unknown_scheme_is_one_line_naming_the_ones_there_are():
    with pytest.raises(UserError, match=r"tracking.uri=foo://bar: there is no store for the scheme 'foo'"):
        check_scheme("foo://bar", "tracking.uri")
    check_scheme("postgresql+psycopg://u@h/db", "tracking.uri")  # a driver named: the scheme is postgresql


def broken(tmp_path, kind, migrated_store):
    """A store file broken the way ``kind`` says, from a whole one."""
    path = tmp_path / f"{kind}.db"
    if kind == "folder":
        path.mkdir()
        return path
    data = bytearray(migrated_store.read_bytes())
    if kind == "garbage":
        data = bytearray(os.urandom(8192))
    elif kind == "truncated":
        data = data[:len(data) // 3]
    elif kind == "damaged":
        for page in range(4096, len(data) // 2, 4096):  # b-tree pages overwritten, the header left whole
            data[page + 100:page + 300] = b"\xff" * 200
    path.write_bytes(bytes(data))
    if kind == "read-only":
        path.chmod(0o444)
    return path


@pytest.mark.parametrize("kind, message", [
    ("folder", "is a folder, not a SQLite file"), ("garbage", "is not a SQLite database"),
    ("truncated", "is damaged (database disk image is malformed)"), ("damaged", "is damaged"),
    ("read-only", "is read-only: make the file writable"),
])
def test_a_broken_store_is_one_line_naming_it_and_the_fix_within_seconds(kind, message, tmp_path, migrated_store):
    path = broken(tmp_path, kind, migrated_store)
    began = time.perf_counter()
    with pytest.raises(UserError) as err:
        Tracker(TrackingConfig(uri=f"sqlite:///{path}"))
    assert message in str(err.value) and str(path.name) in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - began < 5


def test_a_store_that_fails_under_a_command_is_named_in_one_line():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as driver:
            raise OperationalError("INSERT ...", {}, driver) from driver
    except OperationalError as err:
        assert store_failure(err).startswith("the MLflow store could not be written (database or disk is full)")
    assert store_failure(ValueError("something else")) is None


def test_a_new_store_appears_whole_and_only_then(tmp_path):
    path = tmp_path / "fresh" / "mlflow.db"
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{path}"))
    assert path.read_bytes()[:16] == b"SQLite format 3\x00" and tracker.experiment_id
    assert not list(path.parent.glob(".mlflow.db.creating-*"))  # the temporary file was renamed into place


def created_in_a_fork(uri: str) -> int:
    """A child of this process (its imports already done) that makes the store at ``uri`` as a command would, its
    signals handled by ablate's entry point; returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            run_command(lambda: Tracker(TrackingConfig(uri=uri)), "the store is left as it was")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os._exit(code)
    return pid


@pytest.mark.slow
def test_an_interrupt_at_any_moment_of_a_stores_creation_leaves_it_usable(tmp_path):
    """SIGKILL and SIGTERM at 12 moments spread over the creation (MLflow's migrations, the rename, the first
    experiment): every next command opens the store, or makes it, whole."""
    began = time.perf_counter()
    _, status = os.waitpid(created_in_a_fork(f"sqlite:///{tmp_path / 'timed' / 'mlflow.db'}"), 0)
    whole = time.perf_counter() - began
    assert os.waitstatus_to_exitcode(status) == 0
    ended = []
    for i in range(12):
        store = tmp_path / f"store{i}" / "mlflow.db"
        uri = f"sqlite:///{store}"
        pid = created_in_a_fork(uri)
        time.sleep(whole * (0.02 + 1.0 * i / 11))  # from its first statement to past the rename
        os.kill(pid, signal.SIGKILL if i % 2 else signal.SIGTERM)
        ended.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        Tracker(TrackingConfig(uri=uri))  # the next command: it must work, whatever the kill left
        assert store.read_bytes()[:16] == b"SQLite format 3\x00"
    assert {-signal.SIGKILL, 143} <= set(ended)  # both signals landed mid-creation at least once
