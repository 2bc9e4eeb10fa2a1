"""The MLP of the seed notebook, with BatchNorm placement and dropout as the factors under study.

``build_mlp`` is the readable definition (an ``nn.Sequential``, as in the notebook). ``StackedMLP`` holds K
copies of it as [K, ...] tensors and computes the same layers with batched matmuls: the trainer trains that,
K = 1 for a single run, so a single run and a population member share every line of maths.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import BN, ModelConfig


def build_mlp(cfg: ModelConfig, in_features: int, n_classes: int) -> nn.Sequential:
    """Linear blocks with BN ``pre`` (Linear, BN, ReLU), ``post`` (Linear, ReLU, BN) or ``none``, then dropout.

    The seed's 784-128-64-10 with bn=pre and dropout 0.3 has 109,770 trainable parameters, as in the notebook.
    Call ``torch.manual_seed`` first: the initialisation draws from the global generator.
    """
    layers: list[nn.Module] = []
    width = in_features
    for hidden in cfg.hidden:
        norm = nn.BatchNorm1d(hidden, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        block = {BN.none: [nn.ReLU()], BN.pre: [norm, nn.ReLU()], BN.post: [nn.ReLU(), norm]}[cfg.bn]
        layers += [nn.Linear(width, hidden), *block]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))  # after the activation, as the notes place it
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    model = nn.Sequential(*layers)
    if cfg.init_scale != 1.0:
        with torch.no_grad():
            for weight in decayed_weights(model):
                weight.mul_(cfg.init_scale)
    return model


def decayed_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices of the Linear layers: the only tensors L2 / weight decay acts on.

    Biases and BatchNorm's gamma and beta are left alone, as the notes say ("applied only to weights").
    """
    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]


def summary(model: nn.Module, in_features: int) -> str:
    """A layer table with output shapes and parameter counts, like torchinfo's, for the run's artifacts."""
    lines = [f"{'layer':<34}{'output':>14}{'params':>12}"]
    width = in_features
    for index, layer in enumerate(model.children()):
        if isinstance(layer, nn.Linear):
            width = layer.out_features
        count = sum(p.numel() for p in layer.parameters())
        lines.append(f"{f'{index}: {layer}':<34.34}{f'[B, {width}]':>14}{count:>12,}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f"Trainable params: {trainable:,}")
    return "\n".join(lines)


class StackedMLP:
    """K copies of ``build_mlp``'s network as [K, ...] tensors; the layer order comes from a template model."""

    def __init__(self, cfgs: Sequence[ModelConfig], seeds: Sequence[int], n_features: int, n_classes: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        models = []
        for cfg, seed in zip(cfgs, seeds):
            torch.manual_seed(seed)  # each member's own initialisation
            models.append(build_mlp(cfg, n_features, n_classes))
        # The template has Dropout layers wherever any member needs them (members with p = 0 keep every unit).
        self.layers = list(build_mlp(replace(cfgs[0], dropout=max(c.dropout for c in cfgs)),
                                     n_features, n_classes).children())
        self.cfgs, self.n_features, self.n_classes = list(cfgs), n_features, n_classes

        def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.stack(list(tensors)).to(device=device, dtype=dtype)

        weights = decayed_weights(models[0])
        self.decayed = [any(p is w for w in weights) for p in models[0].parameters()]
        # Linear weights are stored [K, in, out] (nn.Linear keeps [out, in]): their gradients then come out
        # of the batched matmul contiguous, which makes the backward pass and the update markedly faster.
        self.params = [stack([p.t() if is_weight else p for p in ps]).requires_grad_()
                       for is_weight, ps in zip(self.decayed, zip(*(m.parameters() for m in models)))]
        self.buffers = [stack(bs) for bs in zip(*(_running_stats(m) for m in models))]
        dropout = torch.tensor([c.dropout for c in cfgs], device=device, dtype=dtype).view(-1, 1, 1)
        self.keep, self.rescale = 1 - dropout, 1 / (1 - dropout)

    def member(self, k: int) -> nn.Sequential:
        """Member k as the plain ``build_mlp`` module, trained weights and running averages included."""
        model = build_mlp(self.cfgs[k], self.n_features, self.n_classes).to(self.params[0].dtype)
        with torch.no_grad():
            for mine, stacked in zip([*model.parameters(), *_running_stats(model)], [*self.params, *self.buffers]):
                mine.copy_(stacked[k].t() if stacked.dim() == 3 else stacked[k])
        return model

    def weight_norms(self) -> torch.Tensor:
        return torch.sqrt(sum(p.detach().pow(2).flatten(1).sum(1) for p, d in zip(self.params, self.decayed) if d))

    def forward(self, x: torch.Tensor, train: bool, masks: Optional[torch.Generator] = None) -> torch.Tensor:
        """x: [K, B, F] (each member its own batch) or [B, F] (one batch for all, evaluation) -> [K, B, classes]."""
        params, buffers = iter(self.params), iter(self.buffers)
        h = x
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                weight, bias = next(params), next(params)
                if h.dim() == 3 and len(weight) == 1:  # one model: a plain matmul, faster than a batch of one
                    h = torch.addmm(bias[0], h[0], weight[0]).unsqueeze(0)
                elif h.dim() == 3:
                    h = torch.baddbmm(bias.unsqueeze(1), h, weight)
                else:
                    h = torch.matmul(h, weight) + bias.unsqueeze(1)
            elif isinstance(layer, nn.BatchNorm1d):
                gamma, beta, running_mean, running_var = next(params), next(params), next(buffers), next(buffers)
                h = _batch_norm(h, gamma, beta, running_mean, running_var, train, layer.momentum, layer.eps)
            elif isinstance(layer, nn.ReLU):
                h = torch.relu(h)
            elif isinstance(layer, nn.Dropout) and train:  # each unit kept with probability 1 - p, rescaled
                uniform = torch.rand(h.shape, generator=masks, device=h.device, dtype=h.dtype)
                h = h * uniform.lt_(self.keep).mul_(self.rescale)  # half the time of bernoulli with [K] probabilities
        return h


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    return [b for name, b in model.named_buffers() if not name.endswith("num_batches_tracked")]


def _batch_norm(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, running_mean: torch.Tensor,
                running_var: torch.Tensor, train: bool, momentum: float, eps: float) -> torch.Tensor:
    """BatchNorm of K members with PyTorch's own kernel, the members' channels side by side: per channel it
    computes exactly what nn.BatchNorm1d computes (bit for bit, running averages included)."""
    k, c = gamma.shape
    if k > 1:  # with one member the layout change is a no-op and so is the gradient's
        h = _ContiguousGrad.apply(h)
    rows = h.transpose(0, 1).reshape(-1, k * c)  # [B, K*C]: member k's channel j at column k*C + j
    out = F.batch_norm(rows, running_mean.view(-1), running_var.view(-1), gamma.reshape(-1), beta.reshape(-1),
                       train, momentum, eps)
    return out.view(-1, k, c).transpose(0, 1).contiguous()


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient: the batched matmul before a BatchNorm would
    otherwise get the transposed view of ``_batch_norm``'s layout and fall back to a much slower kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()
