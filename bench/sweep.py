"""End to end: a 144-variant sweep through Hydra and MLflow, one variant per job vs populations.

    python bench/sweep.py [--epochs 10] [--launchers basic population]

The grid: dropout {0, 0.1, 0.3, 0.5} x lr {0.01, 0.1} x weight decay {0, 1e-4, 1e-3} x seeds 0-5 = 144 runs of
the seed's model on the shipped data, each run recorded in a fresh SQLite MLflow store. Prints wall time, runs per
minute, and the per-run overhead: wall time not spent training (Hydra, MLflow, data loading, process start),
divided by the number of runs. Training time is the sum of the runs' own ``train_seconds`` metric.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parent.parent
GRID = ["model.dropout=0,0.1,0.3,0.5", "optim.lr=0.01,0.1", "optim.weight_decay=0,1e-4,1e-3", "seed=range(6)"]


def sweep(launcher: str, epochs: int) -> tuple[float, int, float]:
    """Wall seconds, FINISHED runs, summed training seconds."""
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        MlflowClient(uri).search_experiments()  # migrate the store before the clock starts
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ablate", "-m", *GRID, f"trainer.epochs={epochs}", "trainer.device=cpu",
                        f"hydra/launcher={launcher}"], cwd=folder, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - began
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  "tags.`ablate.kind` = 'train' and attributes.status = 'FINISHED'", max_results=1000)
        return wall, len(runs), sum(r.data.metrics["train_seconds"] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--launchers", nargs="*", default=["basic", "population"])
    args = parser.parse_args()
    print(f"144-variant sweep, {args.epochs} epochs, batch 32, shipped data, SQLite MLflow store\n")
    print("| launcher | runs | wall s | runs/min | training s | overhead per run (ms) |\n|---|---|---|---|---|---|")
    baseline = None
    for launcher in args.launchers:
        wall, runs, training = sweep(launcher, args.epochs)
        baseline = baseline or wall
        print(f"| {launcher} | {runs} | {wall:.1f} | {60 * runs / wall:.1f} | {training:.1f} | "
              f"{1000 * (wall - training) / runs:.0f} |", flush=True)
    if len(args.launchers) > 1:
        print(f"\n{args.launchers[-1]} vs {args.launchers[0]}: {baseline / wall:.2f}x faster end to end")


if __name__ == "__main__":
    main()
