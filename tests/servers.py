"""Throwaway servers for tests and benchmarks: ``python -m ablate.server`` on a free port, and a closed port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    """A local TCP port nothing listens on (for a server to take, or a test to find closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(db_url: str, home: Path, *args: str, env_extra: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m ablate.server`` on a free port until the block ends (tests, benchmarks); yields its URL.

    It runs in a process group of its own, so that stopping it stops all of MLflow's workers; its log is
    ``home/server.log``, its artifacts ``home/artifacts``."""
    port = free_port()
    env = {**os.environ, "ABLATE_SERVER_DB": db_url, **(env_extra or {})}
    with open(home / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "ablate", "server", "--port", str(port), "--workers", "2",
                                    "--artifacts", str(home / "artifacts"), *args], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5)
                break
            except OSError:  # not up yet
                if process.poll() is not None:
                    raise RuntimeError(f"the MLflow server stopped:\n{(home / 'server.log').read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def serves(port, process, timeout_s=60):
    """Wait until a server answers on ``port`` (its process still up)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                assert page.status == 200
                return
        except OSError:
            assert time.time() < deadline and process.poll() is None, process.stdout.read() if process.poll() else ""
            time.sleep(0.5)


def descendants(pid: int) -> list[str]:
    """The command lines of every process ``pid`` started, its children's children too (in sessions of their own)."""
    table = [line.split(None, 2) for line in subprocess.run(["ps", "-eww", "-o", "pid=,ppid=,args="],
                                                             capture_output=True, text=True).stdout.splitlines()]
    found, frontier = [], {str(pid)}
    while frontier:
        children = [row for row in table if len(row) == 3 and row[1] in frontier]
        found += [row[2] for row in children]
        frontier = {row[0] for row in children}
    return found


def assert_all_gone(session, port, timeout_s=20):
    """No process of the session a server ran in is left, and nothing listens on its port."""
    deadline = time.time() + timeout_s
    while True:
        try:
            os.killpg(session, 0)
        except ProcessLookupError:
            break
        assert time.time() < deadline, subprocess.run(["ps", "-o", "pid,args", "-g", str(session)],
                                                      capture_output=True, text=True).stdout
        time.sleep(0.2)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # refused: the port is free


RAY_TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "ablate-tests-" + os.urandom(8).hex()}  # a cluster's secret


@contextlib.contextmanager
def ray_head(num_gpus: int = 0) -> Iterator[str]:
    """A Ray cluster's head on this machine, as ``ray start --head`` starts one (2 CPUs; ``num_gpus`` it may not
    have, for a worker that finds none), with token authentication (``RAY_TOKEN``) and a temporary folder of its own,
    so that ``ray.init()`` elsewhere does not find it; yields its address. Stopped with everything it started."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live under it
    port = free_port()
    log = open(Path(folder) / "head.log", "w+")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", f"--num-gpus={num_gpus}",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}"],
                            env={**os.environ, **RAY_TOKEN}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while "Ray runtime started" not in Path(log.name).read_text():
            assert time.time() < deadline and head.poll() is None, Path(log.name).read_text()[-3000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # to it alone: it stops the cluster (seconds; the group's SIGTERM, 20 s)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
