"""Scale-out throughput: one sweep process vs two sharing the grid, and Ray jobs per variant vs per population group.

    python bench/scale.py [--variants 16] [--epochs 2] [--data fmnist_small]

Everything runs end to end through ``python -m ablate -m`` against one MLflow tracking server on the local
PostgreSQL (``python -m ablate.server`` on a fresh database, dropped at the end), as a team would run it.
Each row is a new sweep of the same grid (its own MLflow experiment); ratios are against the first row's
baseline measured in the same run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' throwaway PostgreSQL database and server
from tests.conftest import fresh_postgres_database  # noqa: E402
from tests.servers import serving  # noqa: E402


def sweep(grid: list[str], workers: int, url: str, home: Path, experiment: str) -> float:
    """Wall seconds until ``workers`` processes started together on the grid have all ended."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": url}
    began = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "ablate", "-m", *grid, f"tracking.experiment={experiment}",
                                   "tracking.heartbeat_s=2", "tracking.dead_after_s=10"], cwd=home, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"sweep failed:\n{err[-3000:]}")
    seconds = time.perf_counter() - began
    client = MlflowClient(url)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              "tags.`ablate.kind` = 'train' and attributes.status = 'FINISHED'")
    assert len({r.data.tags["ablate.config_hash"] for r in runs}) == len(runs), "a variant was trained twice"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=16, help="seeds of the seed config (a multiple of 4)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default="fmnist_small")
    args = parser.parse_args()
    home = Path(f"/tmp/ablate-bench-{uuid.uuid4().hex[:6]}")
    home.mkdir()
    grid = [f"seed=range({args.variants})", f"data={args.data}", f"trainer.epochs={args.epochs}",
            "trainer.device=cpu"]
    quarter = args.variants // 4
    cases = [  # (name, launcher overrides, workers)
        (f"1 sweep process, populations of {quarter}", ["hydra/launcher=population", f"hydra.launcher.max_size={quarter}"], 1),
        (f"2 sweep processes on the same grid, populations of {quarter}",
         ["hydra/launcher=population", f"hydra.launcher.max_size={quarter}"], 2),
        ("Ray, one job per variant (hydra/launcher=ray)", ["hydra/launcher=ray"], 1),
        (f"Ray, one task per population group of {quarter} (population_ray)",
         ["hydra/launcher=population_ray", f"hydra.launcher.max_size={quarter}"], 1),
    ]
    with fresh_postgres_database("ablate_bench") as db, serving(db, home) as url:
        print(f"{args.variants} variants x {args.epochs} epochs on {args.data}, {os.cpu_count()} CPUs, "
              f"MLflow server on PostgreSQL; wall time end to end")
        rows = []
        for name, launcher, workers in cases:
            seconds = sweep(grid + launcher, workers, url, home, f"bench-{uuid.uuid4().hex[:6]}")
            rows.append((name, seconds))
            print(f"  {name}: {seconds:.1f} s", flush=True)
    print("\n| how | wall s | variants/s | x first row |\n|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.variants / seconds:.2f} | {rows[0][1] / seconds:.2f} |")


if __name__ == "__main__":
    main()
