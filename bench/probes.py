"""What the mechanisms cost: training with each probe on, and with precise BatchNorm statistics, against training
with neither, measured in the same run.

    python bench/probes.py [--k 32] [--epochs 2] [--every 50] [--repeats 2] [--device cpu] [--model mlp]

A population of K seeds of the seed config (or ``--model cnn``) on the shipped data. Prints the seconds of each
setting (best of --repeats), the ratio to training without probes, and each probe's cost per member per probe
(its extra time over the probes taken). The reference's own time is printed beside it: ratios move with the host.
"""

from __future__ import annotations

import argparse
import time

import torch

from ablate.config import Probe, with_values
from ablate.engine.data import cached_splits
from ablate.engine.trainer import batch_starts, fit_population

import trainer  # bench/trainer.py: the seed's composed config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    args = parser.parse_args()
    base = trainer.compose_config(f"model={args.model}", f"trainer.epochs={args.epochs}",
                                  f"trainer.device={args.device}", f"trainer.probe_every={args.every}")
    splits = cached_splits(base.data)
    steps = args.epochs * len(batch_starts(len(splits.train), base.trainer.batch_size))
    probes_taken = len(range(0, steps, args.every)) + (steps % args.every != 0)  # every `every` steps, and the last
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, model {args.model}, "
          f"K={args.k}, {args.epochs} epochs ({steps} steps), a probe every {args.every} steps ({probes_taken} "
          f"probes a member), best of {args.repeats}")

    def seconds(**values) -> float:
        cfgs = [with_values(base, {**values, "seed": seed}) for seed in range(args.k)]
        best = float("inf")
        for _ in range(args.repeats):
            began = time.perf_counter()
            fit_population(cfgs, splits)
            best = min(best, trainer.seconds_since(began, torch.device(args.device)))
        return best

    reference = seconds()
    rows = [("no probes (the reference)", reference)]
    rows += [(f"trainer.probes=[{p.value}]", seconds(**{"trainer.probes": [p.value]})) for p in Probe]
    rows.append(("every probe", seconds(**{"trainer.probes": [p.value for p in Probe]})))
    rows.append(("model.bn_stats=precise (no probes)", seconds(**{"model.bn_stats": "precise"})))
    print("\n| setting | seconds | x no probes | ms per member per probe |\n|---|---|---|---|")
    for name, took in rows:
        per_probe = "" if name.startswith(("no probes", "model.")) else \
            f"{1000 * (took - reference) / args.k / probes_taken:.1f}"
        print(f"| {name} | {took:.2f} | {took / reference:.2f} | {per_probe} |")


if __name__ == "__main__":
    main()
