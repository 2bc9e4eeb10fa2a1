"""Processes side by side on one machine, each on torch's default threads or on its share of the cores:

    python bench/threads.py [--epochs 2] [--busy 0 1]

Two training processes (``ablate model.bn=pre`` and ``model.bn=none``, the shipped data) start together, as
``make search WORKERS=2`` starts its workers: first each with as many threads as the machine has cores (torch's
default, what each took before the Makefile gave every worker its share), then each with its share (the cores over
the processes). Then ``make sweep JOBS=2``'s way, the same two variants as a joblib sweep (each job takes its share
by itself), beside the same sweep one job after another (``hydra/launcher=basic``, all the cores). The reference, measured in the same sitting: one of the runs alone on all the cores. ``--busy N`` repeats
it all beside N processes that keep a core busy, as other work on a shared host does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORES = len(os.sched_getaffinity(0))
SWEEP = "model.bn=pre,none"
VARIANTS = ("model.bn=pre", "model.bn=none")  # the sweep's two, as two processes


def started(overrides: list[str], folder: str, threads: int | None, multirun: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "ablate", *(["-m"] if multirun else []), *overrides], cwd=folder,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wall(groups: list[tuple[list[str], int | None, bool]], epochs: int) -> float:
    """Seconds until every process of ``groups`` (overrides, threads, multirun) has ended, each in its own folder."""
    with tempfile.TemporaryDirectory() as root:
        began = time.perf_counter()
        processes = []
        for i, (overrides, threads, multirun) in enumerate(groups):
            folder = Path(root, str(i))
            folder.mkdir()
            processes.append(started([*overrides, f"trainer.epochs={epochs}"], str(folder), threads, multirun))
        if any(p.wait() for p in processes):
            raise SystemExit("a process failed: rerun the command by hand to see why")
        return time.perf_counter() - began


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    share = max(1, CORES // len(VARIANTS))
    print(f"{CORES} cores; two processes of {args.epochs} epochs each (the shipped data); their share: {share} "
          f"thread(s) each")
    print(f"{'busy cores':>10}  {'one alone':>10}  {'2 x default threads':>20}  {'2 x their share':>16}  "
          f"{'sweep one by one':>17}  {'JOBS=2 sweep':>13}")
    for n in args.busy:
        spinning = busy(n)
        try:
            alone = wall([([VARIANTS[0]], CORES, False)], args.epochs)
            default = wall([([v], CORES, False) for v in VARIANTS], args.epochs)
            shared = wall([([v], share, False) for v in VARIANTS], args.epochs)
            serial = wall([([SWEEP, "hydra/launcher=basic"], None, True)], args.epochs)
            jobs = wall([([SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], None, True)], args.epochs)
        finally:
            for process in spinning:
                process.kill()
        print(f"{n:>10}  {alone:>9.1f}s  {default:>8.1f}s ({default / alone:>4.2f}x)  {shared:>6.1f}s "
              f"({shared / alone:>4.2f}x)  {serial:>8.1f}s ({serial / alone:>4.2f}x)  {jobs:>5.1f}s ({jobs / alone:>4.2f}x)")


if __name__ == "__main__":
    main()
