"""Ending runs behind training: a population's runs are written by a process of its own while the next trains.

A process, not a thread: a writer thread's Python (MLflow's ORM) and the trainer's step loop take turns on one GIL
(``bench/writer.py``, the trainer on one thread: a population of 48 trained in 6.5-6.7 s alone, in 7.9-8.3 s beside
a thread ending 96 runs, 1.2 s of writes alone, and in 6.8-7.1 s beside this process doing the same). The process is
started as the first population trains and let go by ``drain``; it reads jobs from its stdin and answers on its
stdout, one pickle each, runs at the lowest CPU priority (the trainer first), and ignores Ctrl-C, SIGTERM and SIGHUP so
that what it was given is written (it ends when its parent closes its stdin or exits).

    python -m ablate.tracking.writer   (started by ``Writer``, never by hand)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from typing import Callable, Optional, Sequence

from ablate.errors import signals_deferred

Batch = tuple[list, list, list]  # MLflow Metric, Param and RunTag entities, within MLflow's limits for one log_batch


class WriteError(RuntimeError):
    """A run's end could not be written; the message carries the writer process's traceback."""


class Writer:
    """Ends runs (their last batches, then their status) in its process, in order; ``drain`` waits for all of them.

    A run's end is held until ``send_held`` (called as the next population starts training, so that these writes
    overlap training and do not contend with the opening of that population's runs for the store). Until its end is
    written a run stays RUNNING and stamped by its owner's heartbeat (``then`` runs once it is written or has failed:
    the caller forgets the run there), so a worker killed first leaves it to the dead-worker rule."""

    def __init__(self, uri: str, enabled: bool) -> None:
        self.uri, self.enabled = uri, enabled
        self._process: Optional[subprocess.Popen] = None
        self._held: list[tuple] = []  # jobs not yet sent
        self._pending: dict[int, tuple[str, Callable[[], None]]] = {}  # job -> run id, then: until answered
        self._sent_to: dict[int, subprocess.Popen] = {}
        self._errors: list[WriteError] = []
        self._changed = threading.Condition()
        self._sending = threading.Lock()
        self._jobs = 0

    def end_run(self, run_id: str, batches: Sequence[Batch], status: str, then: Callable[[], None]) -> None:
        """End the run with ``batches`` and ``status`` by the writer's process, once sent (``send_held``)."""
        with self._changed:
            self._jobs += 1
            self._pending[self._jobs] = (run_id, then)
            self._held.append((self._jobs, self.uri, run_id, list(batches), status))

    def send_held(self) -> None:
        """Start the writer's process where it is not running (its start-up overlaps training too) and hand it the
        ends held so far; returns at once (a thread feeds the pipe, which holds less than a population's ends)."""
        if not self.enabled:
            return
        if self._process is None:
            self._process = subprocess.Popen([sys.executable, "-m", "ablate.tracking.writer"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE)
            threading.Thread(target=self._read, args=(self._process,), name="ablate-writer-answers",
                             daemon=True).start()
        with self._changed:
            held, self._held = self._held, []
            self._sent_to.update((job[0], self._process) for job in held)
        if held:
            threading.Thread(target=self._send, args=(self._process, held), name="ablate-writer-jobs",
                             daemon=True).start()

    def _send(self, process: subprocess.Popen, jobs: list[tuple]) -> None:
        with self._sending:  # one sender at a time: the jobs reach the process in order
            for job in jobs:
                try:
                    pickle.dump(job, process.stdin)
                    process.stdin.flush()
                except (OSError, ValueError):  # the process is gone: this end fails like those it had not answered
                    self._answered(job[0], f"the writer process is gone (exit code {process.poll()})")

    def _read(self, process: subprocess.Popen) -> None:
        """Each job's answer, as it comes; when the process ends, what it had not answered fails."""
        while True:
            try:
                job, error = pickle.load(process.stdout)
            except (EOFError, pickle.UnpicklingError, OSError):
                break
            self._answered(job, error)
        code = process.wait()
        for job in [job for job, by in list(self._sent_to.items()) if by is process]:
            self._answered(job, f"the writer process exited with code {code}")

    def _answered(self, job: int, error: Optional[str]) -> None:
        with self._changed:
            if job not in self._pending:
                return
            run_id, then = self._pending.pop(job)
            self._sent_to.pop(job, None)
            if error:
                self._errors.append(WriteError(f"the end of run {run_id} was not written: {error}"))
            then()
            self._changed.notify_all()

    def drain(self) -> None:
        """Wait until every run given is written, then let the process go; the first failure is raised (with the
        writer's traceback) after every other write was tried. A stop that comes meanwhile waits for the writes (the
        runs given here are no longer anyone else's to end) and is raised after them."""
        with signals_deferred():
            if self._held:
                self.send_held()
            with self._changed:
                self._changed.wait_for(lambda: not self._pending)
                errors, self._errors = self._errors, []
        if self._process is not None:  # its stdin closed, it exits; the thread reading its answers reaps it
            with self._sending, contextlib.suppress(OSError):  # a process gone leaves a pipe that cannot flush
                self._process.stdin.close()
            self._process = None
        if errors:
            raise errors[0]


def end_run(client, run_id: str, batches: Sequence[Batch], status: str) -> None:
    """What a run's end writes, here or in the writer's process: its batches, then its status."""
    for metrics, params, tags in batches:
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    client.set_terminated(run_id, status)


def main() -> None:
    """The writer's process: jobs from stdin, answers to stdout (nothing else is printed there)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C: finish what was given
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the parent winds down, this finishes its work
    os.nice(19)  # the trainer first: where it keeps every core busy, the ends wait for a gap instead of slowing it
    from mlflow import MlflowClient

    from ablate.tracking.store import sqlite_in_wal_mode

    jobs, answers, sys.stdout = sys.stdin.buffer, sys.stdout.buffer, sys.stderr
    clients: dict[str, MlflowClient] = {}
    while True:
        try:
            job, uri, run_id, batches, status = pickle.load(jobs)
        except EOFError:
            return
        try:
            if uri not in clients:
                if uri.startswith("sqlite:"):
                    sqlite_in_wal_mode(uri)  # as its parent writes: a commit syncs no file
                clients[uri] = MlflowClient(uri)
            end_run(clients[uri], run_id, batches, status)
            error = None
        except Exception:  # noqa: BLE001 - sent back whole: the parent raises it at its drain
            error = "\n" + traceback.format_exc()
        pickle.dump((job, error), answers)
        answers.flush()


if __name__ == "__main__":
    main()
