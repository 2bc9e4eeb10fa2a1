"""Probes: the mechanisms the seed notes name, measured during training (``trainer.probes``, off by default).

Each probe looks at one member as its plain ``nn.Module`` (a copy: nothing here touches training) with a fixed probe
batch ``x, y`` of the training split and the member's learning rate. Its forwards run as training does, BatchNorm
on the batch's statistics, but with dropout off, so that two forwards differ only in what the probe changed; the
running averages are left alone. Any family works, and a population's member gives its single run's numbers.

- ``activations`` (Ioffe & Szegedy 2015, Fig. 1b-c): per nonlinearity i, its input's 15th/50th/85th percentiles
  over every unit and sample of the probe batch, its mean and std: ``activations/<i>/p15|p50|p85|mean|std``.
- ``covariate_shift`` (Santurkar et al. 2018, Definition 2.1): per weight matrix i >= 2, G = the loss's gradient by
  W_i, and G' = the same after every parameter before W_i took a plain SGD step of the member's learning rate on
  that batch: ``covariate_shift/<i>/l2`` = ||G - G'||, ``covariate_shift/<i>/cos`` = cos(G, G').
- ``landscape`` (their Fig. 4): along the gradient g, for eta = lr x {1/2, 1, 2, 4}: the loss at W - eta g
  (``landscape/loss_min|loss_max``), the gradient's change ||g(W - eta g) - g(W)|| (``landscape/grad_change_min|max``,
  their gradient predictiveness) and the effective beta-smoothness max ||g(W - eta g) - g(W)|| / ||eta g||.
- ``variance_shift`` (Li et al. 2019): per BatchNorm layer i, the variance v of its input over the validation split,
  the network in evaluation mode, against its running variance: max(v / v_run, v_run / v) per channel, averaged
  over channels (``variance_shift/<i>``); 1 means no shift.
- ``norms``: each weight matrix's norm and its gradient's on the probe batch (``norms/<i>/weight|grad``).

Layers are numbered from 1 in the order the model registers them. ``summary`` condenses a run's probes into the
few numbers claims compare (means over the probes, and over layers).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ablate.config.run import PROBE_SUMMARIES, Probe
from ablate.engine.nn import ACTIVATIONS
from ablate.engine.vmapped import batch_norms

STEP_FACTORS = (0.5, 1.0, 2.0, 4.0)  # the landscape's step sizes, in units of the learning rate
PERCENTILES = (15, 50, 85)
MAX_QUANTILE_ELEMENTS = 1 << 22  # torch.quantile's input is capped; a larger layer is read at a regular stride

Params = dict[str, torch.Tensor]


def measure(model: nn.Module, probes: Sequence[Probe], x: torch.Tensor, y: torch.Tensor, lr: float,
            val_x: Optional[torch.Tensor], eval_batch_size: int) -> dict[str, float]:
    """Every probe of ``probes`` on ``model`` (changed: its modes and BatchNorm momentum; pass a copy);
    ``variance_shift`` reads ``val_x`` (none: not measured) in batches of ``eval_batch_size``."""
    out: dict[str, float] = {}
    if Probe.variance_shift in probes and val_x is not None:
        out.update(variance_shift(model, val_x, eval_batch_size))
    _probe_mode(model)
    params = {name: p.detach() for name, p in model.named_parameters()}
    weights = [name for name, p in params.items() if p.dim() >= 2]  # what L2 acts on: Linear and Conv kernels

    def loss_at(values: Params) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, values, (x,)), y)

    inputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _, args, __: inputs.append(args[0].detach()))
             for m in model.modules() if isinstance(m, tuple(ACTIVATIONS.values()))] \
        if Probe.activations in probes else []
    try:
        loss, grads = gradient(loss_at, params)
    finally:
        for hook in hooks:
            hook.remove()
    for i, h in enumerate(inputs, 1):
        out.update({f"activations/{i}/{k}": v for k, v in activation_stats(h).items()})
    if Probe.norms in probes:
        for i, name in enumerate(weights, 1):
            out[f"norms/{i}/weight"], out[f"norms/{i}/grad"] = params[name].norm().item(), grads[name].norm().item()
    if Probe.covariate_shift in probes:
        out.update(covariate_shift(loss_at, params, grads, weights, lr))
    if Probe.landscape in probes:
        out.update(landscape(loss_at, params, grads, lr))
    return out


def _probe_mode(model: nn.Module) -> None:
    """Evaluation mode but for BatchNorm, which normalises with the batch's statistics (as in training) without
    moving its running averages (momentum 0)."""
    model.eval()
    for norm in batch_norms(model):
        norm.train()
        norm.momentum = 0.0


def gradient(loss_at: Callable[[Params], torch.Tensor], params: Params) -> tuple[float, Params]:
    """The loss at ``params`` and its gradient by each of them."""
    with torch.enable_grad():
        leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
        loss = loss_at(leaves)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return loss.item(), {name: torch.zeros_like(p) if g is None else g
                         for (name, p), g in zip(leaves.items(), grads)}


def activation_stats(h: torch.Tensor) -> dict[str, float]:
    """Percentiles, mean and std of every element of one layer's input."""
    flat = h.flatten().to(torch.float64)
    sample = flat[::math.ceil(len(flat) / MAX_QUANTILE_ELEMENTS)]
    quantiles = torch.quantile(sample, torch.tensor([q / 100 for q in PERCENTILES], dtype=torch.float64,
                                                    device=flat.device)).tolist()
    return {**{f"p{q}": v for q, v in zip(PERCENTILES, quantiles)}, "mean": flat.mean().item(),
            "std": flat.std().item()}


def covariate_shift(loss_at: Callable[[Params], torch.Tensor], params: Params, grads: Params, weights: list[str],
                    lr: float) -> dict[str, float]:
    """Santurkar et al.'s internal covariate shift of each weight matrix but the first (see the module's doc)."""
    names, out = list(params), {}
    for i, weight in enumerate(weights[1:], 2):
        before = names[:names.index(weight)]
        moved = {name: params[name] - lr * grads[name] if name in before else params[name] for name in names}
        _, shifted = gradient(loss_at, moved)
        g, g_moved = grads[weight].flatten(), shifted[weight].flatten()
        out[f"covariate_shift/{i}/l2"] = (g - g_moved).norm().item()
        out[f"covariate_shift/{i}/cos"] = F.cosine_similarity(g, g_moved, dim=0).item()
    return out


def landscape(loss_at: Callable[[Params], torch.Tensor], params: Params, grads: Params, lr: float,
              factors: Sequence[float] = STEP_FACTORS) -> dict[str, float]:
    """The loss and the gradient along -g, g the gradient at ``params`` (see the module's doc)."""
    g = torch.cat([grads[name].flatten() for name in params])
    losses, changes, smoothness = [], [], []
    for factor in factors:
        eta = factor * lr
        loss, moved = gradient(loss_at, {name: p - eta * grads[name] for name, p in params.items()})
        change = (torch.cat([moved[name].flatten() for name in params]) - g).norm().item()
        losses.append(loss)
        changes.append(change)
        smoothness.append(change / (eta * g.norm().item()) if g.norm() > 0 else math.nan)
    return {"landscape/loss_min": min(losses), "landscape/loss_max": max(losses),
            "landscape/grad_change_min": min(changes), "landscape/grad_change_max": max(changes),
            "landscape/beta_smoothness": max(smoothness)}


@torch.no_grad()
def variance_shift(model: nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Per BatchNorm layer, its input's variance over ``x`` in evaluation mode against its running variance."""
    norms = batch_norms(model)
    sums: list[list] = [[0, 0.0, 0.0] for _ in norms]  # rows seen, per-channel sum, per-channel sum of squares

    def accumulate(i: int, h: torch.Tensor) -> None:
        channels = h.transpose(0, 1).flatten(1).to(torch.float64)  # [C, everything else]
        sums[i][0] += channels.shape[1]
        sums[i][1] = sums[i][1] + channels.sum(1)
        sums[i][2] = sums[i][2] + channels.pow(2).sum(1)

    hooks = [norm.register_forward_hook(lambda _, args, __, i=i: accumulate(i, args[0])) for i, norm in enumerate(norms)]
    try:
        model.eval()
        for begin in range(0, len(x), batch_size):
            model(x[begin:begin + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    out = {}
    for i, (norm, (n, total, squares)) in enumerate(zip(norms, sums), 1):
        variance = (squares - total ** 2 / n) / (n - 1)  # unbiased, as BatchNorm's running variance
        running = norm.running_var.to(torch.float64)
        out[f"variance_shift/{i}"] = torch.maximum(variance / running, running / variance).mean().item()
    return out


# ------------------------------------------------------------------------------------------ summaries
def summary(history: Sequence[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """A run's probes as the numbers claims compare (``config.run.PROBE_SUMMARIES``): the mean over layers and over
    every probe, or over the last probe's layers (variance shift: the running averages start at 1, far from anything
    measured). Only those the probes measured."""
    out = {}
    for name, (prefix, suffix, which) in PROBE_SUMMARIES.items():
        probed = [{**m, "landscape/loss_range": m["landscape/loss_max"] - m["landscape/loss_min"]}
                  if "landscape/loss_max" in m else m for _, m in history]
        values = [v for m in (probed[-1:] if which == "last" else probed) for k, v in m.items()
                  if k.startswith(prefix) and k.endswith(suffix)]
        if values:
            out[name] = sum(values) / len(values)
    return out
