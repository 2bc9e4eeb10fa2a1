"""Every signal honoured, exactly once: SIGINT, SIGTERM and SIGHUP sent to a sweep at 36 moments (while Hydra
composes, while populations train, while runs are opened and ended, some runs written behind by their own process,
and a second signal during the wind-down) end it with 130, 143 or 129 and one line, its open runs KILLED with the
signal's name, nothing RUNNING. The command runs in this process, signalled by a timer thread, as a terminal or
SLURM would signal it; ``test_cli`` checks the same exit code from a real process."""

import signal
import threading
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ablate_cli, fresh_store_in

REASONS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)",
           signal.SIGHUP: "terminated (SIGHUP)"}
SWEEP = ("-m", "model.bn=pre,post,none", "seed=range(4)", "data=digits", "trainer.epochs=5", "trainer.device=cpu",
         "hydra/launcher=population", "hydra.launcher.max_size=2")


def signalled(after_s: float, signals: list[int], gap_s: float):
    """A thread that sends ``signals`` to this process, the first after ``after_s``, then one every ``gap_s``, while
    the command runs; a signal that would come after it returned is not sent (and a late one is caught here)."""
    done, sent = threading.Event(), []

    def send():
        import os

        for i, signum in enumerate(signals):
            if done.wait(after_s if i == 0 else gap_s):
                return
            sent.append(signum)
            os.kill(os.getpid(), signum)

    return threading.Thread(target=send, daemon=True), done, sent


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # a stop raised in a GC
def test_a_signal_at_any_moment_stops_the_sweep_once_with_its_code_and_leaves_nothing_running(migrated_store,
                                                                                               tmp_path, monkeypatch):
    late = []
    for signum in REASONS:  # a signal that came after the command returned lands here, not in pytest
        signal.signal(signum, lambda number, frame: late.append(number))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{migrated_store}")
    assert ablate_cli("--cfg", "job").code == 0  # Hydra's plugins imported once, as a process has them at its start
    durations = []
    for timed in ("cold", "warm"):  # the moments spread over this host's own sweep: a slower one finishes later
        fresh_store_in(tmp_path / timed, migrated_store, monkeypatch)
        began = time.perf_counter()
        assert ablate_cli(*SWEEP).code == 0
        durations.append(time.perf_counter() - began)
    whole = min(durations)  # the first pays for what this process had not loaded yet (the data, lazy imports)
    stopped, kept = 0, 0
    try:
        for attempt in range(36):
            kinds = list(REASONS)
            first = kinds[attempt % 3]
            second = kinds[(attempt // 3) % 3]
            uri = fresh_store_in(tmp_path / f"attempt{attempt}", migrated_store, monkeypatch)
            behind = ["tracking.write_behind=true"] if attempt % 9 == 4 else []  # the ends written by their process
            signals = [first, second] if attempt % 4 == 3 else [first]  # a second one during the wind-down
            thread, done, sent = signalled(0.03 + 0.6 * whole * attempt / 35, signals, 0.05)
            thread.start()
            try:
                ran = ablate_cli(*SWEEP, *behind)
            finally:
                done.set()
                thread.join()
            landed_late = len(late)
            if not sent or (ran.code == 0 and landed_late):  # the sweep ended first: its signal came after it
                assert ran.code == 0, ran.text[-2000:]
                late.clear()
                continue
            stopped += 1
            reason = REASONS[sent[0]]
            assert ran.code == 128 + sent[0], (attempt, sent, ran.text[-3000:])
            assert f"{reason}: finished runs stay recorded" in ran.err and "Traceback" not in ran.text, ran.err[-2000:]
            client = MlflowClient(uri)
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            assert not [r for r in runs if r.info.status == "RUNNING"], (attempt, sent)
            kept += sum(r.info.status == "FINISHED" and r.data.tags.get("ablate.kind") == "train" for r in runs)
            killed = [r for r in runs if r.info.status == "KILLED"]
            assert all(r.data.tags.get("ablate.error") in (reason, None) for r in killed), (attempt, sent)
    finally:
        for signum in REASONS:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    # the late signals came after finished runs, which stayed recorded
    assert stopped >= 32 and kept, (stopped, kept, durations)
