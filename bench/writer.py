"""Why the writer is a process: a population training beside the ends of runs written by a thread, or by ablate's
writer process (``ablate.writer``), against the same training alone and the same writes alone.

    python bench/writer.py [--members 48] [--epochs 3] [--runs 96] [--repeats 2]
    OMP_NUM_THREADS=1 python bench/writer.py   # the trainer on one thread: a core left free, as beside a GPU

Each run's end is what a population's member sends: 70 epoch metrics and 7 final ones, 40 params, its status.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

import trainer  # bench/trainer.py: the seed's composed config
from ablate.config import TrackingConfig
from ablate.engine.data import cached_splits
from ablate.tracking.tracker import Tracker
from ablate.engine.trainer import fit_population
from ablate.tracking.writer import Writer, end_run


def run_ends(uri: str, n: int) -> list[tuple[str, list]]:
    """``n`` open runs and the batch each one's end sends."""
    tracker = Tracker(TrackingConfig(uri=uri))
    batch = ([Metric(f"m{i % 7}", 0.5, 0, i // 7) for i in range(77)], [Param(f"p{i}", "1") for i in range(40)], [])
    return [(tracker.start_run(f"run {i}", {}).run_id, [batch]) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    splits = cached_splits(trainer.compose_config().data)
    cfgs = trainer.seed_configs(args.members, args.epochs, "cpu")
    fit_population(cfgs[:2], splits)  # warm-up

    def fit() -> float:
        began = time.perf_counter()
        fit_population(cfgs, splits)
        return time.perf_counter() - began

    print(f"A population of {args.members} (the seed's MLP, {args.epochs} epochs, {torch.get_num_threads()} trainer "
          f"thread(s)) beside the ends of {args.runs} runs on SQLite.\n\n"
          "| repeat | training alone s | writes alone s | both, one after the other s | beside a thread: training s, "
          "all done s | beside the writer process: training s, all done s |\n|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            uri = f"sqlite:///{folder}/mlflow.db"
            alone, ends = fit(), run_ends(uri, 3 * args.runs)
            client, batches = MlflowClient(uri), [ends[i::3] for i in range(3)]
            began = time.perf_counter()
            for run_id, batch in batches[0]:
                end_run(client, run_id, batch, "FINISHED")
            writes = time.perf_counter() - began

            began = time.perf_counter()
            thread = threading.Thread(target=lambda: [end_run(client, r, b, "FINISHED") for r, b in batches[1]])
            thread.start()
            beside_thread = fit()
            thread.join()
            thread_total = time.perf_counter() - began

            writer = Writer(uri, enabled=True)
            writer.send_held()  # its start-up, as in a sweep, overlaps the first population
            time.sleep(3.0)
            began = time.perf_counter()
            for run_id, batch in batches[2]:
                writer.end_run(run_id, batch, "FINISHED", then=lambda: None)
            writer.send_held()
            beside_process = fit()
            writer.drain()
            process_total = time.perf_counter() - began
        print(f"| {repeat + 1} | {alone:.2f} | {writes:.2f} | {alone + writes:.2f} | {beside_thread:.2f}, "
              f"{thread_total:.2f} | {beside_process:.2f}, {process_total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
