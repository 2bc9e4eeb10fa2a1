"""Servers stop cleanly: SIGTERM (kill) of the command alone, or Ctrl-C (SIGINT to the terminal's process group), of
``ablate server``, ``ablate ui``, ``ablate dashboard`` and ``make dashboard`` leaves no process of theirs and the port
free."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, stopped_at_exit
from tests.servers import assert_all_gone, descendants, free_port, serves

VENV = Path(sys.executable).parent.parent
HOW = [("kill", signal.SIGTERM, 143), ("ctrl-c", signal.SIGINT, 130)]


def started(argv, cwd, env=None):
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(process, how, signum):
    if how == "kill":
        process.send_signal(signum)  # to the command alone: it stops what it started
    else:
        os.killpg(process.pid, signum)  # a terminal's Ctrl-C reaches the whole foreground group


def empty_study(folder: Path) -> Path:
    import optuna

    journal = folder / "ablate.journal"
    optuna.create_study(study_name="empty", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    return journal


# Each MLflow server (seconds of CPU to start) meets one way of stopping and each way one of them: they stop through
# one function, cli.serve, so the other two pairings repeat it; the dashboard (a second to start) meets both.
CASES = [("server", *HOW[0]), ("ui", *HOW[1]), *[("dashboard", *h) for h in HOW]]


@pytest.mark.slow
@pytest.mark.parametrize("command, how, signum, code", CASES)
def test_ablate_server_ui_and_dashboard_stop_with_everything_they_started(command, how, signum, code, tmp_path):
    port = free_port()
    argv = {"server": ["server", "--port", str(port), "--workers", "2", "--artifacts", str(tmp_path / "artifacts")],
            "ui": ["ui", f"port={port}"],
            "dashboard": ["dashboard", "--port", str(port), "--storage", str(empty_study(tmp_path))]}[command]
    argv = [sys.executable, "-m", "ablate", *argv]
    server = started(argv, tmp_path, {"ABLATE_SERVER_DB": f"sqlite:///{tmp_path}/server.db"})
    with stopped_at_exit(server, with_children=True):
        serves(port, server)
        if command != "dashboard":  # MLflow's GenAI job runners stay off: ablate records no such jobs
            tree = "\n".join(descendants(server.pid))
            assert "mlflow" in tree and "huey" not in tree, tree
        stop(server, how, signum)
        assert server.wait(timeout=30) == code, server.stdout.read()[-2000:]
        assert_all_gone(server.pid, port)


@pytest.mark.slow
@pytest.mark.parametrize("how, signum, code", HOW)
def test_make_dashboard_stops_with_optuna_dashboard(how, signum, code, tmp_path):
    journal = empty_study(tmp_path)
    port = free_port()
    make = started(["make", "-s", "-C", str(REPO), "dashboard", f"VENV={VENV}", f"STORAGE={journal}",
                    f"DASHBOARD_PORT={port}", "-o", f"{VENV}/.ready"], tmp_path)
    with stopped_at_exit(make, with_children=True):
        serves(port, make)
        stop(make, how, signum)
        make.wait(timeout=30)
        assert_all_gone(make.pid, port)
