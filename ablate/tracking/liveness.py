"""Liveness of workers: what a worker holds (a sweep's run, a search's trial) stays its own while it stamps it
with a heartbeat; one rule tells a dead worker's from a live one's, for sweeps and searches alike.

Heartbeats compare wall clocks, so machines sharing a store keep their clocks in sync (as NTP does).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable, Optional

log = logging.getLogger("ablate")
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(host: Optional[str], pid: Optional[int], last_beat: float, dead_after_s: float) -> bool:
    """The worker that holds something is gone: its process on this host has exited, or it has not stamped it
    for ``dead_after_s`` seconds (a lost machine, a kill -9 elsewhere)."""
    if host == HOST and pid is not None and not pid_alive(pid):
        return True
    return time.time() - last_beat > dead_after_s


class Heartbeat:
    """A daemon thread stamping, every ``every_s`` seconds, each thing this process keeps alive; it runs while
    there is something to stamp. A failed stamp (a store briefly unreachable) is logged and does not stop it."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stamps: dict[str, Callable[[float], None]] = {}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def keep_alive(self, key: str, stamp: Callable[[float], None]) -> None:
        """``stamp(time.time())`` every beat until ``forget(key)``."""
        with self._lock:
            self._stamps[key] = stamp
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="ablate-heartbeat", daemon=True)
                self._thread.start()

    def forget(self, key: str) -> None:
        """Once this returns, ``key`` is never stamped again (a stamp under way finishes first)."""
        with self._lock:
            self._stamps.pop(key, None)

    def _beat(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(min(0.5, self.every_s))
            with self._lock:
                if not self._stamps:
                    self._thread = None
                    return
                keys = list(self._stamps) if time.monotonic() - last >= self.every_s else []
            if not keys:
                continue
            last, now = time.monotonic(), time.time()
            for key in keys:
                with self._lock:  # stamped only while still kept alive
                    stamp = self._stamps.get(key)
                    if stamp is None:
                        continue
                    try:
                        stamp(now)
                    except Exception as err:  # noqa: BLE001 - training must go on; the next beat tries again
                        log.warning(f"heartbeat of {key} not recorded: {err}")
