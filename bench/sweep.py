"""End to end: a 144-variant sweep through Hydra and MLflow, one variant per job vs populations.

    python bench/sweep.py [--epochs 10] [--launchers basic population] [--max-size 144] [--write-behind on off]
                          [--device cpu]

The grid: dropout {0, 0.1, 0.3, 0.5} x lr {0.01, 0.1} x weight decay {0, 1e-4, 1e-3} x seeds 0-5 = 144 runs of
the seed's model on the shipped data, each run recorded in a fresh SQLite MLflow store. Prints wall time, runs per
minute, and the per-run overhead: wall time not spent training (Hydra, MLflow, data loading, process start),
divided by the number of runs. Training time is the sum of the runs' own ``train_seconds`` metric (a population's
time, shared among its members). The population launcher runs once per ``--write-behind`` setting
(``tracking.write_behind``: a population's runs written while the next trains, or in turn) and trains populations of
up to ``--max-size`` members: the grid is one population of 144 by default, several below that.

Measured in the same sitting, so that the overhead can be read on any host: the notebook loop (one model, the
same epochs: how fast this host is), a process's start-up (imports and opening the store: paid once a sweep), and
recording alone (144 runs through ablate's Tracker as a population's members are recorded: open with params and
artifacts, each epoch's metrics, the final ones, end; no training: the store's share of the overhead).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from mlflow import MlflowClient

from ablate.engine.data import cached_splits
import trainer  # bench/trainer.py: the notebook loop and the seed's composed config

REPO = Path(__file__).resolve().parent.parent
GRID = ["model.dropout=0,0.1,0.3,0.5", "optim.lr=0.01,0.1", "optim.weight_decay=0,1e-4,1e-3", "seed=range(6)"]
RUNS = 144


def fresh_store(folder: str) -> str:
    """A migrated SQLite store in ``folder``: migrating is once a store, not part of any sweep's cost."""
    uri = f"sqlite:///{folder}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return uri


def sweep(launcher: str, epochs: int, device: str, settings: list[str]) -> tuple[float, int, float]:
    """Wall seconds, FINISHED runs, summed training seconds."""
    with tempfile.TemporaryDirectory() as folder:
        uri = fresh_store(folder)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ablate", "-m", *GRID, f"trainer.epochs={epochs}",
                        f"trainer.device={device}", f"hydra/launcher={launcher}", *settings], cwd=folder, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - began
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  "tags.`ablate.kind` = 'train' and attributes.status = 'FINISHED'", max_results=1000)
        return wall, len(runs), sum(r.data.metrics["train_seconds"] for r in runs)


def start_up_seconds() -> float:
    """A sweep process's fixed cost: importing what a population sweep imports and opening its store, less an
    empty interpreter's start."""
    code = ("import hydra, ablate.execution.runner, ablate.execution.sweeps; from ablate.config import TrackingConfig; "
            "from ablate.tracking.tracker import Tracker; Tracker(TrackingConfig(uri=sys.argv[1]))")
    with tempfile.TemporaryDirectory() as folder:
        uri = fresh_store(folder)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        timed = []
        for command in (["-c", "import sys"], ["-c", f"import sys; {code}", uri]):
            began = time.perf_counter()
            subprocess.run([sys.executable, *command], cwd=folder, env=env, check=True)
            timed.append(time.perf_counter() - began)
        return timed[1] - timed[0]


def recording_seconds(epochs: int) -> float:
    """Seconds to record RUNS runs as a population's members are recorded, with metrics of a run's shape and no
    training."""
    from ablate.config import with_values
    from ablate.tracking.tracker import Tracker

    with tempfile.TemporaryDirectory() as folder:
        uri = fresh_store(folder)
        cfgs = [with_values(cfg, {"tracking.uri": uri}) for cfg in trainer.seed_configs(RUNS, epochs, "cpu")]
        tracker = Tracker(cfgs[0].tracking)
        epoch = dict.fromkeys(["train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_norm",
                               "epoch_seconds"], 0.5)
        final = dict.fromkeys(["test_loss", "test_acc", "train_eval_loss", "train_eval_acc", "train_seconds",
                               "epochs_to_target", "val_acc_auc"], 0.5)
        began = time.perf_counter()
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(tracker.training_run(cfg, "cpu", texts={"model_summary.txt": "a model"},
                                                             batched=True)) for cfg in cfgs]
            for run in runs:
                for step in range(1, epochs + 1):
                    run.log_epoch({"epoch": step, **epoch})
                run.log_metrics(final, step=epochs)
        tracker.writer.drain()  # the runs' ends, written behind (tracking.write_behind), are part of recording
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--launchers", nargs="*", default=["basic", "population"])
    parser.add_argument("--max-size", type=int, default=RUNS, help="members of a population at most")
    parser.add_argument("--write-behind", nargs="*", choices=["on", "off"], default=["on", "off"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    splits = cached_splits(trainer.compose_config().data)
    reference = min(trainer.reference(splits, args.epochs, torch.device(args.device)) for _ in range(3))
    start_up, recording = start_up_seconds(), recording_seconds(args.epochs)
    print(f"{RUNS}-variant sweep, {args.epochs} epochs, batch 32, shipped data, SQLite MLflow store, {args.device}. "
          f"In this sitting:\n"
          f"- the notebook loop, one model, {args.epochs} epochs: {reference:.2f} s (best of 3)\n"
          f"- a process's start-up (imports, opening the store): {start_up:.2f} s, "
          f"{1000 * start_up / RUNS:.0f} ms a run at {RUNS}\n"
          f"- recording alone ({RUNS} runs through the Tracker, no training): {1000 * recording / RUNS:.0f} ms a run\n")
    print("| launcher | write behind | runs | wall s | runs/min | training s | outside training | overhead per run (ms) |"
          "\n|---|---|---|---|---|---|---|---|")
    # write-behind applies to a population's runs: a one-variant-per-job launcher runs as it is ("-")
    rows = [(launcher, write_behind) for launcher in args.launchers
            for write_behind in (args.write_behind if launcher.startswith("population") else ["-"])]
    walls = []
    for launcher, write_behind in rows:
        settings = [] if write_behind == "-" else [f"tracking.write_behind={write_behind == 'on'}",
                                                   f"hydra.launcher.max_size={args.max_size}"]
        wall, runs, training = sweep(launcher, args.epochs, args.device, settings)
        walls.append(wall)
        print(f"| {launcher} | {write_behind} | {runs} | {wall:.1f} | {60 * runs / wall:.1f} | {training:.1f} | "
              f"{100 * (wall - training) / wall:.0f}% | {1000 * (wall - training) / runs:.0f} |", flush=True)
    for (launcher, write_behind), wall in list(zip(rows, walls))[1:]:
        print(f"{launcher} (write behind {write_behind}) vs {rows[0][0]} (write behind {rows[0][1]}): "
              f"{walls[0] / wall:.2f}x faster end to end")


if __name__ == "__main__":
    main()
