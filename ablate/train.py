"""The trainer: K >= 1 variants of one architecture trained at once, K = 1 being a single run.

A sweep of small MLPs is dominated by per-step overhead, not arithmetic. Stacking K models along a leading
member axis (``model.StackedMLP``) turns K small matmuls into one batched matmul per layer, so K models cost
little more than one. Every member keeps what makes it a variant: its seed (initialisation and batch order),
dropout p, learning rate, momentum, betas, weight decay and L2 mode ([K] hyperparameter tensors). A single run
is simply K = 1, so the single run and a population member share every line of maths.

Batches are gathered from whole tensors already on the device (no per-sample Dataset); gradients come from
``StackedMLP.backward``, by hand rather than autograd, straight into ``Optimizer``. Training knows nothing of
MLflow or Optuna: it calls ``on_epoch`` with each member's metrics, and the caller logs, prunes or stops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ablate.config import ConfigValueError, Device, DType, L2Mode, OptimConfig, OptimName, RunConfig
from ablate.data import Splits
from ablate.model import DropoutMasks, Outer, StackedMLP

# on_epoch(member, metrics) -> True stops that member (a pruned trial); its history ends there.
MemberCallback = Callable[[int, dict[str, float]], Optional[bool]]


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
        raise ConfigValueError(f"trainer.device={device.value} is not available on this machine; "
                               f"use trainer.device=auto or trainer.device=cpu.")
    return torch.device(device.value)


def torch_dtype(dtype: DType) -> torch.dtype:
    return {DType.float32: torch.float32, DType.float64: torch.float64}[dtype]


# ----------------------------------------------------------------------------------- the step's maths
@dataclass
class Hyper:
    """Per-member hyperparameters as [K] tensors, or viewed [K, 1, ...] to broadcast against one parameter.

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

    def like(self, param: torch.Tensor) -> "Hyper":
        """The same values viewed [K, 1, ...] to broadcast against a [K, ...] parameter (made once, not per step)."""
        shape = (-1, *([1] * (param.dim() - 1)))
        return replace(self, **{f.name: getattr(self, f.name).view(shape) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


def hyper(cfgs: Sequence[RunConfig], device: torch.device, dtype: torch.dtype) -> Hyper:
    """The hyperparameters of K runs, stacked along the member axis."""
    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, device=device, dtype=dtype)

    o = [c.optim for c in cfgs]
    penalty = [x.weight_decay * (x.l2 == L2Mode.penalty) for x in o]
    decoupled = [x.weight_decay * (x.l2 == L2Mode.decoupled) for x in o]
    return Hyper(lr=column([x.lr for x in o]), momentum=column([x.momentum for x in o]),
                 nesterov=column([float(x.nesterov) for x in o]),
                 beta1=column([x.betas[0] for x in o]), beta2=column([x.betas[1] for x in o]),
                 eps=column([x.eps for x in o]), penalty_decay=column(penalty), decoupled_decay=column(decoupled),
                 uses_momentum=any(x.momentum for x in o), uses_nesterov=any(x.nesterov for x in o),
                 uses_penalty=any(penalty), uses_decoupled=any(decoupled))


def plain_sgd(optim: OptimConfig) -> bool:
    """SGD without momentum, whose weight update ``Optimizer`` fuses with the gradient's matmul. That rounds
    differently from the unfused update, so members that differ in this train in separate populations: each
    member then computes exactly what its single run computes."""
    return optim.name == OptimName.sgd and optim.momentum == 0


class Optimizer:
    """SGD (momentum, Nesterov) or Adam over [K, ...] parameters, as torch.optim computes them, with L2 on weights
    only and every member's own hyperparameters.

    ``l2=penalty`` adds lambda * sum(w**2) to the loss; its gradient, 2 * lambda * w, is added here rather than
    differentiated (same maths, a fraction of the cost). ``l2=decoupled`` shrinks the weights by ``lr * lambda``
    before the gradient step, as AdamW does. Biases and BN's gamma and beta never decay.
    Plain SGD (no member uses momentum) adds a weight's gradient, handed over as an ``Outer``, straight into the
    weights: w <- (1 - lr * (2 lambda_penalty + lambda_decoupled)) w - lr x^T dy, the same update in one matmul.
    """

    def __init__(self, kind: OptimName, params: Sequence[torch.Tensor], decayed: Sequence[bool], hp: Hyper) -> None:
        self.kind, self.params, self.decayed = kind, list(params), list(decayed)
        self.hp = [hp.like(p) for p in params]
        self.first = [torch.zeros_like(p) for p in params]  # SGD's momentum buffers; Adam's first moments
        self.second = [torch.zeros_like(p) for p in params] if kind == OptimName.adam else []
        self.fuses = kind == OptimName.sgd and not hp.uses_momentum  # every member plain SGD
        self.shrink = [1 - h.lr * (2 * h.penalty_decay + h.decoupled_decay) if d and self.fuses else None
                       for h, d in zip(self.hp, decayed)]  # the fused update's weight factor
        self.grad_buffers = [torch.empty_like(p) if d and not self.fuses else None for p, d in zip(params, decayed)]
        self.steps = 0

    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One update from every parameter's gradient at once."""
        self.start_step()
        for i, grad in enumerate(grads):
            self.update(i, grad)

    def start_step(self) -> None:
        self.steps += 1  # Adam's bias correction counts steps

    @torch.no_grad()
    def update(self, i: int, grad: torch.Tensor | Outer) -> None:
        """Parameter i's part of the current step (``StackedMLP.backward`` calls this as gradients arrive)."""
        p, hp, decays, m = self.params[i], self.hp[i], self.decayed[i], self.first[i]
        if isinstance(grad, Outer):
            if self.fuses:
                if hp.uses_penalty or hp.uses_decoupled:
                    p.mul_(self.shrink[i])
                grad.add_to(p, -hp.lr)
                return
            grad = grad.into(self.grad_buffers[i])
        if decays and hp.uses_penalty:
            grad = grad.add(2 * hp.penalty_decay * p)
        if decays and hp.uses_decoupled:
            p.mul_(1 - hp.lr * hp.decoupled_decay)
        if self.kind == OptimName.sgd:
            if hp.uses_momentum:
                m.mul_(hp.momentum).add_(grad)  # torch's buffer: momentum * buffer + gradient
                grad = torch.lerp(m, grad + hp.momentum * m, hp.nesterov) if hp.uses_nesterov else m
            p.addcmul_(hp.lr, grad, value=-1)
        else:
            v = self.second[i]
            m.lerp_(grad, 1 - hp.beta1)
            v.mul_(hp.beta2).add_((1 - hp.beta2) * grad * grad)
            m_hat, v_hat = m / (1 - hp.beta1 ** self.steps), v / (1 - hp.beta2 ** self.steps)
            p.addcmul_(hp.lr, m_hat / (v_hat.sqrt() + hp.eps), value=-1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's mean cross-entropy [K] and its gradient by the logits: (softmax - one-hot) / batch size."""
    log_probs = torch.log_softmax(logits, 2)
    target = y.unsqueeze(2)
    losses = log_probs.gather(2, target).mean((1, 2)).neg_()
    return losses, log_probs.exp_().scatter_(2, target, -1.0, reduce="add").div_(y.shape[1])


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


@dataclass
class MemberResult:
    history: History
    error: Optional[Diverged] = None  # set for a member whose loss stopped being finite
    stopped: bool = False  # stopped early by on_epoch (a pruned trial)


@torch.no_grad()
def evaluate(net: StackedMLP, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member: mean cross-entropy and accuracy in eval mode (BN's running averages, dropout off)."""
    k = net.params[0].shape[0]
    loss = torch.zeros(k, device=x.device, dtype=x.dtype)
    correct = torch.zeros(k, device=x.device, dtype=x.dtype)
    for start in range(0, len(y), batch_size):
        logits = net.forward(x[start:start + batch_size], train=False)  # [K, b, classes]
        target = y[start:start + batch_size]
        loss += F.cross_entropy(logits.transpose(1, 2), target.expand(k, -1), reduction="none").sum(1)
        correct += (logits.argmax(2) == target).sum(1)
    return loss / len(y), correct / len(y)


def fit_population(cfgs: Sequence[RunConfig], splits: Splits,
                   on_epoch: Optional[MemberCallback] = None) -> tuple[list[MemberResult], StackedMLP]:
    """Train ``cfgs`` at once (they share ``population.group_key``); per member the metrics of a single run.

    Returns each member's result and the trained network (``net.member(k)`` is member k as an nn.Module).
    """
    began = time.perf_counter()
    cfg = cfgs[0]
    k, device, dtype = len(cfgs), resolve_device(cfg.trainer.device), torch_dtype(cfg.trainer.dtype)
    data = splits.to(device, dtype)
    net = StackedMLP([c.model for c in cfgs], [c.seed for c in cfgs], splits.n_features, splits.n_classes,
                     device, dtype)
    optimizer = Optimizer(cfg.optim.name, net.params, net.decayed, hyper(cfgs, device, dtype))
    orders = [torch.Generator().manual_seed(c.seed) for c in cfgs]  # each member's own batch order
    masks = DropoutMasks(cfg.seed, device, dtype)  # independent across members
    batch, n = cfg.trainer.batch_size, len(data.train)
    starts = batch_starts(n, batch)
    seen = sum(min(batch, n - s) for s in starts)
    results = [MemberResult(History()) for _ in cfgs]
    active = [True] * k

    for epoch in range(1, cfg.trainer.epochs + 1):
        epoch_began = time.perf_counter()
        perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)  # [K, n]
        loss_sum = torch.zeros(k, device=device, dtype=dtype)  # summed on the device: no sync per step
        correct = torch.zeros(k, device=device, dtype=dtype)
        for start in starts:
            idx = perms[:, start:start + batch]  # each member its own batch: x [K, B, F], y [K, B]
            x = data.train.x.index_select(0, idx.flatten()).view(k, -1, splits.n_features)  # 8x faster than x[idx]
            y = data.train.y.index_select(0, idx.flatten()).view(k, -1)
            tape: list = []
            logits = net.forward(x, train=True, masks=masks, tape=tape)
            losses, grad = cross_entropy(logits, y)  # member k's gradient is its own loss's
            optimizer.start_step()
            net.backward(tape, grad, optimizer.update)
            loss_sum.add_(losses, alpha=y.shape[1])
            correct += (logits.argmax(2) == y).sum(1)
        train_loss, train_acc = (loss_sum / seen).tolist(), (correct / seen).tolist()
        val = evaluate(net, data.val.x, data.val.y, cfg.trainer.eval_batch_size) if data.val is not None else None
        norms = net.weight_norms().tolist()
        seconds = (time.perf_counter() - epoch_began) / k  # amortised: the population's epoch shared by K
        for i, result in enumerate(results):
            if not active[i]:
                continue
            if not math.isfinite(train_loss[i]):
                result.error = Diverged(f"the training loss became {train_loss[i]} in epoch {epoch} "
                                        f"(optim.lr={cfgs[i].optim.lr}); lower optim.lr or add BatchNorm "
                                        f"(model.bn=pre).")
                active[i] = False
                continue
            metrics = {"epoch": float(epoch), "train_loss": train_loss[i], "train_acc": train_acc[i]}
            if val is not None:
                metrics["val_loss"], metrics["val_acc"] = val[0][i].item(), val[1][i].item()
            metrics.update(lr=cfgs[i].optim.lr, weight_norm=norms[i], epoch_seconds=seconds)
            result.history.epochs.append(metrics)
            if on_epoch is not None and on_epoch(i, metrics):
                result.stopped, active[i] = True, False
        if not any(active):
            break

    # Train accuracy in eval mode (dropout off): the running one above is measured under dropout, which
    # would make a train-minus-validation gap shrink with p for no reason but the measurement.
    train_eval = evaluate(net, data.train.x, data.train.y, cfg.trainer.eval_batch_size)
    test = evaluate(net, data.test.x, data.test.y, cfg.trainer.eval_batch_size)
    seconds = (time.perf_counter() - began) / k
    for i, result in enumerate(results):
        if result.error is None and not result.stopped:
            epochs = result.history.epochs
            result.history.final = {
                "test_loss": test[0][i].item(), "test_acc": test[1][i].item(),
                "train_eval_loss": train_eval[0][i].item(), "train_eval_acc": train_eval[1][i].item(),
                "train_seconds": seconds, "epochs_to_target": epochs_to_reach(epochs, cfg.trainer.target_val_acc),
                # mean validation accuracy over the epochs (area under the learning curve): training speed
                "val_acc_auc": sum(m.get("val_acc", math.nan) for m in epochs) / len(epochs)}
    return results, net


def fit(cfg: RunConfig, splits: Splits, on_epoch: Optional[Callable[[dict[str, float]], None]] = None) -> History:
    """One run: a population of one. Raises ``Diverged`` when its loss stops being finite.

    The model is ``build_mlp(cfg.model)`` initialised after ``torch.manual_seed(cfg.seed)``; the batch order
    comes from a generator seeded with ``cfg.seed``, so on the CPU the same seed gives the same metrics.
    """
    [result], _ = fit_population([cfg], splits, None if on_epoch is None else lambda _, m: on_epoch(m))
    if result.error is not None:
        raise result.error
    return result.history
