"""Populations per model family: members one by one vs one population of K, per-model seconds and the ratio.

    python bench/families.py [--sizes 8 32] [--epochs 1] [--singles 4] [--device cpu] [--channels 16 32] [--augment]

For the MLP (its hand-written stacked path, and the generic torch.func path on the same network) and the CNN, on the
shipped data (4,200 training images, batch 32): the per-model time of members trained one by one (each a population
of one; measured over --singles runs, since one member's time does not depend on K), then K members as one
vectorised population. The notebook loop (bench/trainer.py's reference) is timed in the same sitting for the same
epochs, so a reader can compare hosts. Prints a markdown table; ``train.vectorised_by_default`` follows it.
``--augment`` adds the CNN with ``data.augment=[crop,flip]`` (on the device, inside the step).
"""

from __future__ import annotations

import argparse
import time

import torch

from ablate.config import with_values
from ablate.engine.data import cached_splits
from ablate.engine.trainer import build_population, fit_population, generic_population

import trainer  # bench/trainer.py: the notebook loop and the seed's composed config


def per_model_seconds(cfgs, splits, vectorise: bool, build, device: torch.device) -> float:
    began = time.perf_counter()
    if vectorise:
        fit_population(cfgs, splits, vectorise=True, build=build)
    else:
        for cfg in cfgs:
            fit_population([cfg], splits, build=build)
    return trainer.seconds_since(began, device) / len(cfgs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--singles", type=int, default=4, help="single runs timed for the one-by-one figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--channels", type=int, nargs="*", default=[16, 32])
    parser.add_argument("--augment", action="store_true", help="also the CNN with data.augment=[crop,flip]")
    args = parser.parse_args()
    device = torch.device(args.device)
    base = trainer.seed_configs(1, args.epochs, args.device)[0]
    splits = cached_splits(base.data)
    cnn = trainer.compose_config("model=cnn", f"model.channels=[{','.join(map(str, args.channels))}]",
                                 f"trainer.epochs={args.epochs}", f"trainer.device={args.device}")
    families = {
        "MLP, hand-written stacked path": (with_values(base, {}), build_population),
        "MLP, generic torch.func path": (with_values(base, {}), generic_population),
        f"CNN {args.channels}, torch.func": (cnn, build_population),
    }
    if args.augment:
        families[f"CNN {args.channels}, data.augment=[crop,flip]"] = (
            with_values(cnn, {"data.augment": ["crop", "flip"]}), build_population)
    reference = min(trainer.reference(splits, args.epochs, device) for _ in range(3))  # warm: its first run pays set-up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {len(splits.train)} train "
          f"images {list(splits.in_shape)}, batch 32, {args.epochs} epoch(s); the notebook loop: {reference:.2f} s a "
          f"model\n")
    print("| family | K | one by one: s a model | population: s a model | population vs one by one | "
          "population vs notebook loop (MLP) |\n|---|---|---|---|---|---|")
    for name, (cfg, build) in families.items():
        singles = per_model_seconds([with_values(cfg, {"seed": s}) for s in range(args.singles)], splits, False,
                                    build, device)
        for k in args.sizes:
            population = per_model_seconds([with_values(cfg, {"seed": s}) for s in range(k)], splits, True, build,
                                           device)
            # the notebook loop trains the MLP: a ratio to it means something for the MLP's rows only
            versus_notebook = f"{reference / population:.1f}x" if name.startswith("MLP") else "–"
            print(f"| {name} | {k} | {singles:.3f} | {population:.3f} | {singles / population:.2f}x | "
                  f"{versus_notebook} |", flush=True)


if __name__ == "__main__":
    main()
