"""Training throughput: the notebook's loop vs ablate's trainer, one model and populations of K.

    python bench/trainer.py [--epochs 10] [--sizes 8 32 144] [--repeats 3] [--device cpu]

Same process, same data shape as the seed (data/fmnist_small.csv.gz: 6,000 x 784, 10 classes), batch 32.
Prints model-epochs per second and the ratio to the reference measured in the same run (best of --repeats,
since a shared machine's timings are noisy). The reference is the notebook's loop: a per-sample Dataset and
DataLoader, nn.Sequential, torch.optim.SGD. Lightning is timed too when it is installed.

The last column is a ceiling: the same number of steps of the step's matmuls alone (three forward, two
input-gradient, three weight updates; no other op), as a ratio to the reference. No eager trainer of this model
can beat it; how close a row comes to it says how much of its time is still overhead.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ablate.engine.families.mlp import MLPConfig
from ablate.config import RunConfig
from ablate.engine.data import cached_splits
from ablate.engine.optim import member_matmul
from ablate.engine.trainer import batch_starts, fit_population


def seconds_since(began: float, device: torch.device) -> float:
    """Wall seconds, once the device has finished what it was given (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


class NotebookDataset(Dataset):  # the seed notebook's CustomDataset
    def __init__(self, features, labels):
        self.features, self.labels = features, labels

    def __len__(self):
        return len(self.features)

    def __getitem__(self, idx):
        return self.features[idx], self.labels[idx]


def notebook_model(n_features: int, n_classes: int) -> nn.Sequential:
    """The seed notebook's MLP, as it writes it: (Linear, BatchNorm1d, ReLU, Dropout 0.3) twice, then Linear."""
    return nn.Sequential(nn.Linear(n_features, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(128, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, n_classes))


def reference(splits, epochs: int, device: torch.device) -> float:
    """The notebook's training loop on its flat 784-pixel rows; returns seconds."""
    torch.manual_seed(42)
    model = notebook_model(splits.n_features, splits.n_classes).to(device)
    loader = DataLoader(NotebookDataset(splits.train.x.flatten(1), splits.train.y), batch_size=32, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    began = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return seconds_since(began, device)


def lightning_run(splits, epochs: int) -> float | None:
    """One Lightning Trainer run of the same model (the peer a lightning-hydra-template user would pick)."""
    try:
        import lightning as L
    except ImportError:
        return None

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = notebook_model(splits.n_features, splits.n_classes)

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = DataLoader(NotebookDataset(splits.train.x.flatten(1), splits.train.y), batch_size=32, shuffle=True)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    began = time.perf_counter()
    trainer.fit(Module(), loader)
    return time.perf_counter() - began


def compose_config(*overrides: str) -> RunConfig:
    """A run config composed as ``ablate`` composes it."""
    from ablate.execution.compose import compose_run, composing

    with composing():
        return compose_run(*overrides)


def seed_configs(k: int, epochs: int, device: str) -> list[RunConfig]:
    """The seed config over K seeds."""
    from ablate.config import with_values

    base = compose_config(f"trainer.epochs={epochs}", f"trainer.device={device}")
    return [with_values(base, {"seed": seed}) for seed in range(k)]


def population(splits, k: int, epochs: int, device: str) -> float:
    """ablate's trainer on K seeds of the seed config (K = 1 is a single run); returns seconds."""
    cfgs = seed_configs(k, epochs, device)
    began = time.perf_counter()
    fit_population(cfgs, splits)
    return seconds_since(began, torch.device(device))


def matmuls_alone(splits, k: int, epochs: int, device: str) -> float:
    """The matmuls of K members' training steps, with ablate's own matmul helper, on random tensors of the
    step's shapes (each layer's input x and output gradient dy): seconds for as many steps as the trainer takes."""
    widths = [splits.n_features, *MLPConfig().hidden, splits.n_classes]
    rand = lambda *shape: torch.rand(k, *shape, device=device)  # noqa: E731
    xs, dys = [rand(32, w) for w in widths[:-1]], [rand(32, w) for w in widths[1:]]
    weights = [rand(n_in, n_out) for n_in, n_out in zip(widths, widths[1:])]
    biases = [rand(1, n_out) for n_out in widths[1:]]
    began = time.perf_counter()
    for _ in range(epochs * len(batch_starts(len(splits.train), 32))):
        for x, weight, bias in zip(xs, weights, biases):  # forward
            member_matmul(x, weight, add=bias)
        for dy, weight in zip(dys[1:], weights[1:]):  # input gradients (none for the data)
            member_matmul(dy, weight.transpose(1, 2))
        for x, dy, weight in zip(xs, dys, weights):  # plain SGD's fused update w += x^T dy
            member_matmul(x.transpose(1, 2), dy, add=weight, out=weight)
    return seconds_since(began, torch.device(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sizes", type=int, nargs="*", default=[8, 32, 144])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    splits = cached_splits(seed_configs(1, args.epochs, args.device)[0].data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"{len(splits.train)} train rows, batch 32, {args.epochs} epochs, best of {args.repeats}")

    rows = []
    best = lambda f: min(f() for _ in range(args.repeats))  # noqa: E731
    ref = best(lambda: reference(splits, args.epochs, device))
    rows.append(("reference: notebook loop (Dataset + DataLoader)", 1, ref))
    light = lightning_run(splits, args.epochs)
    if light is not None:
        rows.append(("Lightning Trainer, one run", 1, light))
    for k in [1, *args.sizes]:
        seconds = best(lambda: population(splits, k, args.epochs, args.device))
        floor = best(lambda: matmuls_alone(splits, k, args.epochs, args.device))
        rows.append((f"ablate {'single run' if k == 1 else f'population K={k}'}", k, seconds, floor))

    ref_rate = args.epochs / ref
    print("\n| trainer | models | seconds | model-epochs/s | x reference | matmuls alone: x reference |\n"
          "|---|---|---|---|---|---|")
    for name, k, seconds, *floor in rows:
        ceiling = f"{k * args.epochs / floor[0] / ref_rate:.2f}" if floor else ""
        print(f"| {name} | {k} | {seconds:.2f} | {k * args.epochs / seconds:.1f} | "
              f"{k * args.epochs / seconds / ref_rate:.2f} | {ceiling} |")


if __name__ == "__main__":
    main()
