"""The trainer: K >= 1 variants of one architecture trained at once, K = 1 being a single run.

A sweep of small models is dominated by per-step overhead, not arithmetic. Stacking K members along a leading
axis turns K small steps into one batched step: the MLP family's hand-written ``StackedMLP``, or any other
family's ``ModulePopulation`` (``torch.func``). Every member keeps what makes it a variant: its seed
(initialisation, batch order), dropout p, learning rate, momentum, betas, weight decay and L2 mode. A single run
is K = 1, so the single run and a population member share every line of maths. Where a population would be slower
than its members one by one (measured: a CNN under vmap on a CPU), its members train one at a time.

Batches are gathered from whole tensors already on the device (no per-sample Dataset). Training knows nothing of
MLflow or Optuna: it calls ``on_epoch`` with each member's metrics, and the caller logs, prunes or stops.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config.run import BNStats, RunConfig, Source
from ablate.engine import augment, models
from ablate.engine.data import Split, Splits
from ablate.engine.device import numeric_mode_set, resolve_device, torch_dtype
from ablate.engine.families import family_of
from ablate.engine.nn import key_streams
from ablate.engine.optim import Optimizer, member_hyperparameters
from ablate.engine.probes import measure, summary
from ablate.engine.vmapped import ModulePopulation, NotVectorisable

log = logging.getLogger("ablate")
# on_epoch(member, metrics) -> True stops that member (a pruned trial); its history ends there.
MemberCallback = Callable[[int, dict[str, float]], Optional[bool]]


class Diverged(RuntimeError):
    """The loss became NaN or infinite: the run cannot recover, so it stops and is recorded as failed."""


class Population(Protocol):
    """K members of one architecture, parameters stacked [K, ...] (see ``StackedMLP``, ``ModulePopulation``)."""

    params: list[torch.Tensor]
    decayed: list[bool]  # which parameters L2 acts on: weights of dimension >= 2

    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer: Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """x [K, B, ...], y [K, B] -> (per-member mean losses [K], logits [K, B, classes])."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation mode on one batch for all: x [b, ...] -> [K, b, classes]."""

    def member(self, k: int) -> nn.Module:
        """Member k as its plain module, trained state included."""

    def running_stats(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each BatchNorm layer's (running mean, running variance), [K, C], in place."""

    def bn_forward(self, x: torch.Tensor, momentum: float) -> None:
        """x [b, ...] through all with BatchNorm on batch statistics (running ones updated by ``momentum``),
        dropout off."""


def build_population(cfgs: Sequence[RunConfig], in_shape: Sequence[int], n_classes: int, device: torch.device,
                     dtype: torch.dtype) -> Population:
    """The members, each initialised from its own seed: the family's own population path where it has one (the
    MLP's stacked one), the generic one otherwise."""
    stack = family_of(cfgs[0].model).stack
    if stack is not None:
        return stack([c.model for c in cfgs], [c.seed_of(Source.init) for c in cfgs],
                     [c.seed_of(Source.noise) for c in cfgs], in_shape, n_classes, device, dtype)
    return generic_population(cfgs, in_shape, n_classes, device, dtype)


def generic_population(cfgs: Sequence[RunConfig], in_shape: Sequence[int], n_classes: int, device: torch.device,
                       dtype: torch.dtype) -> ModulePopulation:
    """Any family through ``torch.func`` (the MLP too, where a benchmark or a test asks for it)."""
    members = [key_streams(models.seeded(cfg.model, cfg.seed_of(Source.init), in_shape, n_classes),
                           cfg.seed_of(Source.noise)) for cfg in cfgs]
    return ModulePopulation(members, in_shape, device, dtype)  # their dropout masks from their own streams


def batch_starts(n_rows: int, batch_size: int) -> list[int]:
    """Batch offsets of one epoch; a last batch of a single row is dropped (BatchNorm cannot train on it)."""
    return [s for s in range(0, n_rows, batch_size) if n_rows - s >= 2]


def epochs_to_reach(history: list[dict[str, float]], target: float) -> float:
    """The first epoch whose validation accuracy reaches ``target`` (NaN if none does): speed of training."""
    return next((m["epoch"] for m in history if m.get("val_acc", -1.0) >= target), math.nan)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)  # one dict of metrics per epoch
    final: dict[str, float] = field(default_factory=dict)  # test metrics, timing, epochs to target
    probes: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, metrics) of trainer.probes


@dataclass
class MemberResult:
    history: History
    error: Optional[Diverged] = None  # set for a member whose loss stopped being finite
    stopped: bool = False  # stopped early by on_epoch (a pruned trial)


@torch.no_grad()
def evaluate(population: Population, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member: mean cross-entropy and accuracy in eval mode (BN's running averages, dropout off)."""
    k = population.params[0].shape[0]
    loss = torch.zeros(k, device=x.device, dtype=x.dtype)
    correct = torch.zeros(k, device=x.device, dtype=x.dtype)
    for start in range(0, len(y), batch_size):
        logits = population.logits(x[start:start + batch_size])  # [K, b, classes]
        target = y[start:start + batch_size]
        loss += F.cross_entropy(logits.transpose(1, 2), target.expand(k, -1), reduction="none").sum(1)
        correct += (logits.argmax(2) == target).sum(1)
    return loss / len(y), correct / len(y)


@contextlib.contextmanager
def precise_bn(population: Population, x: torch.Tensor, batch_size: int):
    """Within the block, every member's BatchNorm statistics re-estimated over ``x`` with dropout off (PreciseBN,
    Wu & Johnson 2021); the running averages are back afterwards, so training is untouched. The estimate is
    ``torch.optim.swa_utils.update_bn``'s: statistics reset, then the cumulative average of each batch's mean and
    unbiased variance, here over the batches of ``batch_size`` training takes (a last batch of one row dropped)."""
    stats = population.running_stats()
    saved = [(mean.clone(), var.clone()) for mean, var in stats]
    for mean, var in stats:
        mean.zero_()
        var.fill_(1.0)
    for i, begin in enumerate(batch_starts(len(x), batch_size)):
        population.bn_forward(x[begin:begin + batch_size], momentum=1 / (i + 1))
    try:
        yield
    finally:
        for (mean, var), (old_mean, old_var) in zip(stats, saved):
            mean.copy_(old_mean)
            var.copy_(old_var)


def evaluations(t: "Training", parts: dict[str, Split]) -> dict[str, torch.Tensor]:
    """Per member [K], ``<part>_loss`` and ``<part>_acc`` on each named split, with the statistics ``model.bn_stats``
    chooses; with ``precise`` also the running averages' twins, ``running_<part>_loss`` and ``running_<part>_acc``
    (the same weights evaluated both ways: the estimator's own effect, seed by seed)."""
    size = t.cfgs[0].trainer.eval_batch_size

    def measured(prefix: str = "") -> dict[str, torch.Tensor]:
        out = {}
        for name, split in parts.items():
            out[f"{prefix}{name}_loss"], out[f"{prefix}{name}_acc"] = evaluate(t.population, split.x, split.y, size)
        return out

    if t.cfgs[0].model.bn_stats != BNStats.precise:
        return measured()
    running = measured("running_")
    with precise_bn(t.population, t.data.train.x, t.cfgs[0].trainer.batch_size):
        return {**measured(), **running}


def per_member(values: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """[K] tensors on the device -> lists, in one transfer (one host synchronisation, not one per member)."""
    if not values:
        return {}
    columns = torch.stack([v.to(torch.float64) for v in values.values()]).tolist()
    return dict(zip(values, columns))


def weight_norms(population: Population) -> torch.Tensor:
    """Per member: the norm of every weight L2 acts on, taken together."""
    return torch.sqrt(sum(p.pow(2).flatten(1).sum(1) for p, d in zip(population.params, population.decayed) if d))


@dataclass
class Training:
    """What one fit works on: the members, their optimiser, the data on the device, and each member's record."""

    cfgs: Sequence[RunConfig]
    data: Splits
    population: Population
    optimizer: Optimizer
    orders: list[torch.Generator]  # each member's own batch order, on the data's device
    results: list[MemberResult]
    active: list[bool]
    began: float
    augmenter: Optional[augment.Augmenter]  # None: no member augments its samples
    steps: int = 0  # optimisation steps taken so far

    def probe(self, last: bool = False) -> None:
        """``trainer.probes`` on every active member (``probes.measure``) before every ``trainer.probe_every``-th
        step from step 0, and after the ``last``, on the first ``trainer.probe_rows`` rows of the training split. Off the
        training path: the probes see copies, and torch's generator is left as it was."""
        trainer = self.cfgs[0].trainer
        if not trainer.probes or (self.steps % trainer.probe_every and not last):
            return
        train, val = self.data.train, self.data.val
        x, y = train.x[:trainer.probe_rows], train.y[:trainer.probe_rows]
        device = train.x.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for k, (cfg, result) in enumerate(zip(self.cfgs, self.results)):
                if self.active[k]:
                    model = self.population.member(k).to(device=device, dtype=train.x.dtype)
                    result.history.probes.append((self.steps, measure(
                        model, trainer.probes, x, y, cfg.optim.lr, None if val is None else val.x,
                        trainer.eval_batch_size)))

    @property
    def k(self) -> int:
        return len(self.cfgs)


class OneByOne:
    """Members trained one at a time, each a population of one; ``member(k)`` as a population's."""

    def __init__(self, populations: list[Population]) -> None:
        self.populations = populations

    def member(self, k: int) -> nn.Module:
        return self.populations[k].member(0)


def fit_population(cfgs: Sequence[RunConfig], splits: Splits, on_epoch: Optional[MemberCallback] = None,
                   vectorise: Optional[bool] = None, build: Callable[..., Population] = build_population
                   ) -> tuple[list[MemberResult], Population | OneByOne]:
    """Train ``cfgs`` (they share ``plan.population_key``); per member the metrics of a single run. ``vectorise``
    None trains them at once where that is faster for their family (``Family.vectorised_by_default``), True or False
    says which (the plan's choice).

    Returns each member's result and the trained members (``.member(k)`` is member k as an nn.Module)."""
    device = resolve_device(cfgs[0].trainer.device)
    at_once = family_of(cfgs[0].model).vectorised_by_default(device.type) if vectorise is None else vectorise
    if len(cfgs) > 1 and not at_once:
        return _one_by_one(cfgs, splits, on_epoch, build)
    with numeric_mode_set(cfgs[0]):
        try:
            training = start(cfgs, splits, device, build)
        except NotVectorisable as err:
            log.info(f"{len(cfgs)} members train one by one: vmap cannot take this model ({err})")
            return _one_by_one(cfgs, splits, on_epoch, build)
        for epoch in range(1, cfgs[0].trainer.epochs + 1):
            epoch_began = time.perf_counter()
            loss_sum, correct = train_epoch(training)
            end_epoch(training, epoch, loss_sum, correct, epoch_began, on_epoch)
            if not any(training.active):
                break
        finish(training)
    return training.results, training.population


def start(cfgs: Sequence[RunConfig], splits: Splits, device: torch.device, build: Callable[..., Population]) -> Training:
    """The members built, their optimiser with every member's hyperparameters, the data moved to the device."""
    began = time.perf_counter()
    for data in {repr(c.data): c.data for c in cfgs}.values():
        augment.check(data, splits.in_shape)
    dtype = torch_dtype(cfgs[0].trainer.dtype)
    data = splits.to(device, dtype)
    population = build(cfgs, splits.in_shape, splits.n_classes, device, dtype)
    optimizer = Optimizer(cfgs[0].optim.name, population.params, population.decayed,
                          member_hyperparameters(cfgs, device, dtype))
    orders = [torch.Generator(device).manual_seed(c.seed_of(Source.order)) for c in cfgs]  # on the data's device
    return Training(cfgs, data, population, optimizer, orders, [MemberResult(History()) for _ in cfgs],
                    [True] * len(cfgs), began, augment.Augmenter.of(cfgs, device))


def batches(t: Training) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of each member's own shuffled batches, augmented where asked: x [K, B, ...], y [K, B]."""
    train, batch, k = t.data.train, t.cfgs[0].trainer.batch_size, t.k
    perms = torch.stack([torch.randperm(len(train), generator=g, device=train.x.device) for g in t.orders])  # [K, n]
    rows = train.x.view(len(train), -1)  # gathered as flat rows: index_select's fast path, whatever the shape
    for begin in batch_starts(len(train), batch):
        idx = perms[:, begin:begin + batch].flatten()
        x = rows.index_select(0, idx).view(k, -1, *train.x.shape[1:])  # 8x faster than x[idx]
        y = train.y.index_select(0, idx).view(k, -1)
        yield (x if t.augmenter is None else t.augmenter(x, t.steps)), y


def train_epoch(t: Training) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over each member's own shuffled batches; returns each member's summed loss and correct count."""
    train, k = t.data.train, t.k
    loss_sum = torch.zeros(k, device=train.x.device, dtype=train.x.dtype)  # summed on the device: no sync per step
    correct = torch.zeros(k, device=train.x.device, dtype=train.x.dtype)
    for x, y in batches(t):
        t.probe()
        losses, logits = t.population.train_step(x, y, t.optimizer)
        t.steps += 1
        loss_sum.add_(losses, alpha=y.shape[1])
        correct += (logits.argmax(2) == y).sum(1)
    return loss_sum, correct


def end_epoch(t: Training, epoch: int, loss_sum: torch.Tensor, correct: torch.Tensor, epoch_began: float,
              on_epoch: Optional[MemberCallback]) -> None:
    """Validation, weight norms, each member's metrics to ``on_epoch``; a member whose loss is no longer finite
    stops, recorded as diverged."""
    batch, n = t.cfgs[0].trainer.batch_size, len(t.data.train)
    seen = sum(min(batch, n - s) for s in batch_starts(n, batch))
    values = per_member({"train_loss": loss_sum / seen, "train_acc": correct / seen,
                         **(evaluations(t, {"val": t.data.val}) if t.data.val is not None else {}),
                         "weight_norm": weight_norms(t.population)})
    norms = values.pop("weight_norm")
    seconds = (time.perf_counter() - epoch_began) / t.k  # amortised: the population's epoch shared by K
    for i, (cfg, result) in enumerate(zip(t.cfgs, t.results)):
        if not t.active[i]:
            continue
        if not math.isfinite(values["train_loss"][i]):
            result.error = Diverged(f"the training loss became {values['train_loss'][i]} in epoch {epoch} "
                                    f"(optim.lr={cfg.optim.lr}); lower optim.lr or add BatchNorm (model.bn=pre).")
            t.active[i] = False
            continue
        metrics = {"epoch": float(epoch), **{name: column[i] for name, column in values.items()},
                   "lr": cfg.optim.lr, "weight_norm": norms[i], "epoch_seconds": seconds}
        result.history.epochs.append(metrics)
        if on_epoch is not None and on_epoch(i, metrics):
            result.stopped, t.active[i] = True, False


def finish(t: Training) -> None:
    """The final metrics of the members still in: test, train accuracy in eval mode, time, training speed."""
    # Train accuracy in eval mode (dropout off): the running one is measured under dropout, which would make a
    # train-minus-validation gap shrink with p for no reason but the measurement.
    values = per_member(evaluations(t, {"test": t.data.test, "train_eval": t.data.train}))
    t.probe(last=True)
    seconds = (time.perf_counter() - t.began) / t.k
    for i, (cfg, result) in enumerate(zip(t.cfgs, t.results)):
        if result.error is None and not result.stopped:
            epochs = result.history.epochs
            result.history.final = {
                **{name: column[i] for name, column in values.items()},
                "train_seconds": seconds, "epochs_to_target": epochs_to_reach(epochs, cfg.trainer.target_val_acc),
                # mean validation accuracy over the epochs (area under the learning curve): training speed
                "val_acc_auc": sum(m.get("val_acc", math.nan) for m in epochs) / len(epochs),
                **summary(result.history.probes)}


def step_seconds(cfgs: Sequence[RunConfig], splits: Splits, vectorised: bool, budget_s: float = 1.0) -> float:
    """What one optimisation step of all these members takes here (together, or one member's step times K one by
    one): the fastest of up to 5 steps on their own batches after a warm-up step, within ``budget_s``. Off the
    record: the members are thrown away and torch's generators are left as they were."""
    device = resolve_device(cfgs[0].trainer.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), numeric_mode_set(cfgs[0]):
        try:
            t = start(cfgs if vectorised else cfgs[:1], splits, device, build_population)
        except NotVectorisable:
            t, vectorised = start(cfgs[:1], splits, device, build_population), False
        times: list[float] = []
        clock = time.perf_counter()
        for x, y in batches(t):
            t.population.train_step(x, y, t.optimizer)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - clock)
            clock = time.perf_counter()
            if len(times) > 5 or sum(times) > budget_s:
                break
    return min(times[1:] or times) * (1 if vectorised else len(cfgs))


def _one_by_one(cfgs: Sequence[RunConfig], splits: Splits, on_epoch: Optional[MemberCallback],
                build: Callable[..., Population]) -> tuple[list[MemberResult], OneByOne]:
    results, populations = [], []
    # the data moves to the device once for all of them (each member's start finds it there: no copy)
    splits = splits.to(resolve_device(cfgs[0].trainer.device), torch_dtype(cfgs[0].trainer.dtype))
    for k, cfg in enumerate(cfgs):
        [result], population = fit_population([cfg], splits, None if on_epoch is None else
                                              lambda _, metrics, k=k: on_epoch(k, metrics), build=build)
        results.append(result)
        populations.append(population)
    return results, OneByOne(populations)


def fit(cfg: RunConfig, splits: Splits, on_epoch: Optional[Callable[[dict[str, float]], None]] = None) -> History:
    """One run: a population of one. Raises ``Diverged`` when its loss stops being finite.

    The model is its family's definition initialised after ``torch.manual_seed(cfg.seed)``; the batch order comes
    from a generator seeded with ``cfg.seed``, so on the CPU the same seed gives the same metrics.
    """
    [result], _ = fit_population([cfg], splits, None if on_epoch is None else lambda _, m: on_epoch(m))
    if result.error is not None:
        raise result.error
    return result.history
