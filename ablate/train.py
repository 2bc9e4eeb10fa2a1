"""Training one model: epochs of shuffled batches sliced from whole tensors, evaluation, divergence.

The maths of a step lives in two small functions that ``population.py`` reuses unchanged for K stacked
models: ``hyper`` (hyperparameters as tensors, scalars here and [K] there) and ``optimizer_step``. Training knows nothing of MLflow or Optuna: it calls ``on_epoch`` with the metrics and
the caller logs, prunes or stops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import Device, DType, L2Mode, OptimName, RunConfig
from ablate.data import Split, Splits
from ablate.model import decayed_weights

EpochCallback = Callable[[dict[str, float]], None]


class Diverged(RuntimeError):
    """The loss became NaN or infinite: the run cannot recover, so it stops and is recorded as failed."""


def resolve_device(device: Device) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                 "cpu": True}
    if device == Device.auto:
        return torch.device(next(name for name, ok in available.items() if ok))
    if not available[device.value]:
        raise RuntimeError(f"trainer.device={device.value} is not available on this machine; "
                           f"use trainer.device=auto or trainer.device=cpu.")
    return torch.device(device.value)


def torch_dtype(dtype: DType) -> torch.dtype:
    return {DType.float32: torch.float32, DType.float64: torch.float64}[dtype]


# ----------------------------------------------------------------------------------- the step's maths
@dataclass
class Hyper:
    """Per-run hyperparameters as tensors: 0-dim for one model, [K] for a population of K.

    The ``uses_*`` flags say whether any member needs a term, so that a step skips work that is zero for all.
    """

    lr: torch.Tensor
    momentum: torch.Tensor
    nesterov: torch.Tensor  # 1.0 or 0.0
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    penalty_decay: torch.Tensor  # lambda where optim.l2=penalty, else 0
    decoupled_decay: torch.Tensor  # lambda where optim.l2=decoupled, else 0
    uses_momentum: bool = True
    uses_nesterov: bool = True
    uses_penalty: bool = True
    uses_decoupled: bool = True


def hyper(cfgs: Sequence[RunConfig], device: torch.device, dtype: torch.dtype, stacked: bool) -> Hyper:
    """Hyperparameters of one run (``stacked=False``) or of K runs stacked along a leading member axis."""
    def column(values: list[float]) -> torch.Tensor:
        t = torch.tensor(values, device=device, dtype=dtype)
        return t if stacked else t[0]

    o = [c.optim for c in cfgs]
    penalty = [x.weight_decay * (x.l2 == L2Mode.penalty) for x in o]
    decoupled = [x.weight_decay * (x.l2 == L2Mode.decoupled) for x in o]
    return Hyper(lr=column([x.lr for x in o]), momentum=column([x.momentum for x in o]),
                 nesterov=column([float(x.nesterov) for x in o]),
                 beta1=column([x.betas[0] for x in o]), beta2=column([x.betas[1] for x in o]),
                 eps=column([x.eps for x in o]), penalty_decay=column(penalty), decoupled_decay=column(decoupled),
                 uses_momentum=any(x.momentum for x in o), uses_nesterov=any(x.nesterov for x in o),
                 uses_penalty=any(penalty), uses_decoupled=any(decoupled))


def _per_member(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a [K] hyperparameter against a [K, ...] parameter (a 0-dim one broadcasts as it is)."""
    return value.view(-1, *([1] * (like.dim() - 1))) if value.dim() == 1 else value


@dataclass
class OptimizerState:
    """Momentum buffers (SGD) or first and second moments (Adam), one per parameter, plus the step count."""

    first: list[torch.Tensor]
    second: list[torch.Tensor]
    step: int = 0

    @classmethod
    def zeros_like(cls, params: Sequence[torch.Tensor]) -> "OptimizerState":
        return cls([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params])


@torch.no_grad()
def optimizer_step(kind: OptimName, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                   decayed: Sequence[bool], state: OptimizerState, hp: Hyper) -> None:
    """One update of SGD (momentum, Nesterov) or Adam, as torch.optim computes them, with L2 on weights only.

    ``l2=penalty`` adds lambda * sum(w**2) to the loss; its gradient, 2 * lambda * w, is added here rather
    than through autograd (same maths, a fraction of the cost). ``l2=decoupled`` shrinks the weights by
    ``lr * lambda`` before the gradient step, as AdamW does. Biases and BN's gamma and beta never decay.
    """
    state.step += 1
    for p, g, decays, m, v in zip(params, grads, decayed, state.first, state.second):
        lr = _per_member(hp.lr, p)
        if decays and hp.uses_penalty:
            g = g.add(2 * _per_member(hp.penalty_decay, p) * p)
        if decays and hp.uses_decoupled:
            p.mul_(1 - lr * _per_member(hp.decoupled_decay, p))
        if kind == OptimName.sgd:
            if hp.uses_momentum:
                momentum = _per_member(hp.momentum, p)
                m.mul_(momentum).add_(g)
                g = torch.lerp(m, g + momentum * m, _per_member(hp.nesterov, p)) if hp.uses_nesterov else m
            p.addcmul_(lr, g, value=-1)
        else:
            beta1, beta2 = _per_member(hp.beta1, p), _per_member(hp.beta2, p)
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            m_hat, v_hat = m / (1 - beta1 ** state.step), v / (1 - beta2 ** state.step)
            p.addcmul_(lr, m_hat / (v_hat.sqrt() + _per_member(hp.eps, p)), value=-1)


def batch_starts(n_rows: int, batch_size: int) -> list[int]:
    """Batch offsets of one epoch; a last batch of a single row is dropped (BatchNorm cannot train on it)."""
    return [s for s in range(0, n_rows, batch_size) if n_rows - s >= 2]


def epochs_to_reach(history: list[dict[str, float]], target: float) -> float:
    """The first epoch whose validation accuracy reaches ``target`` (NaN if none does): speed of training."""
    return next((m["epoch"] for m in history if m.get("val_acc", -1.0) >= target), math.nan)


# -------------------------------------------------------------------------------------- one model
@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)  # one dict of metrics per epoch
    final: dict[str, float] = field(default_factory=dict)  # test metrics, timing, epochs to target


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode: BN uses its running averages, dropout is off."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        logits = model(split.x[start:start + batch_size])
        y = split.y[start:start + batch_size]
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss / len(split), correct / len(split)


def weight_norm(weights: Sequence[torch.Tensor]) -> float:
    """sqrt(sum(w**2)) over the weight matrices: what L2 shrinks."""
    return math.sqrt(sum(w.detach().pow(2).sum().item() for w in weights))


def fit(model: nn.Module, splits: Splits, cfg: RunConfig, on_epoch: Optional[EpochCallback] = None) -> History:
    """Train ``model`` (built after ``torch.manual_seed(cfg.seed)``) and evaluate it once on the test split.

    The batch order comes from a generator seeded with ``cfg.seed``, so on the CPU the same seed gives the
    same metrics. Raises ``Diverged`` when the loss stops being finite.
    """
    device, dtype = resolve_device(cfg.trainer.device), torch_dtype(cfg.trainer.dtype)
    model.to(device=device, dtype=dtype)
    data = splits.to(device, dtype)
    params = list(model.parameters())
    weights = decayed_weights(model)
    decayed = [any(p is w for w in weights) for p in params]
    hp = hyper([cfg], device, dtype, stacked=False)
    state = OptimizerState.zeros_like(params)
    order = torch.Generator().manual_seed(cfg.seed)
    starts = batch_starts(len(data.train), cfg.trainer.batch_size)
    history = History()
    began = time.perf_counter()

    for epoch in range(1, cfg.trainer.epochs + 1):
        epoch_began = time.perf_counter()
        model.train()
        perm = torch.randperm(len(data.train), generator=order).to(device)
        shuffled_x, shuffled_y = data.train.x[perm], data.train.y[perm]  # one gather; batches are then views
        loss_sum = torch.zeros((), device=device, dtype=dtype)  # summed on the device: no sync per step
        correct = torch.zeros((), device=device, dtype=torch.long)
        for start in starts:
            x = shuffled_x[start:start + cfg.trainer.batch_size]
            y = shuffled_y[start:start + cfg.trainer.batch_size]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, params)
            optimizer_step(cfg.optim.name, params, grads, decayed, state, hp)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen = sum(min(cfg.trainer.batch_size, len(data.train) - s) for s in starts)
        metrics = {"epoch": float(epoch), "train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}
        if not math.isfinite(metrics["train_loss"]):
            raise Diverged(f"the training loss became {metrics['train_loss']} in epoch {epoch} "
                           f"(optim.lr={cfg.optim.lr}); lower optim.lr or add BatchNorm (model.bn=pre).")
        if data.val is not None:
            metrics["val_loss"], metrics["val_acc"] = evaluate(model, data.val, cfg.trainer.eval_batch_size)
        metrics.update(lr=cfg.optim.lr, weight_norm=weight_norm(weights),
                       epoch_seconds=time.perf_counter() - epoch_began)
        history.epochs.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)

    # Train accuracy in eval mode (dropout off): the running one above is measured under dropout, which
    # would make a train-minus-validation gap shrink with p for no reason but the measurement.
    train_eval_loss, train_eval_acc = evaluate(model, data.train, cfg.trainer.eval_batch_size)
    test_loss, test_acc = evaluate(model, data.test, cfg.trainer.eval_batch_size)
    history.final = {"test_loss": test_loss, "test_acc": test_acc,
                     "train_eval_loss": train_eval_loss, "train_eval_acc": train_eval_acc,
                     "train_seconds": time.perf_counter() - began,
                     "epochs_to_target": epochs_to_reach(history.epochs, cfg.trainer.target_val_acc),
                     # mean validation accuracy over the epochs (area under the learning curve): training speed
                     "val_acc_auc": sum(m.get("val_acc", math.nan) for m in history.epochs) / len(history.epochs)}
    return history
