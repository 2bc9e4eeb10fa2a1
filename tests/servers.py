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
