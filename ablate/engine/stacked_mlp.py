"""The MLP family's fast path: K copies of ``build_mlp``'s network as [K, ...] tensors, trained by hand.

``StackedMLP`` computes the same layers as the readable ``nn.Sequential`` with batched matmuls and ATen's own
BatchNorm and activation kernels, forward and backward, without autograd: a sweep of small MLPs is dominated by
per-step overhead, and this path trains K members for little more than the cost of one. K = 1 is a single run,
so a single run and a population member share every line of maths. A test checks the gradients against
autograd on ``build_mlp``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ablate.engine.families.mlp import MLPConfig
from ablate.engine.models import is_decayed, seeded
from ablate.engine.nn import Dropout
from ablate.engine.optim import FactoredGradient, member_matmul
from ablate.engine.streams import DROPOUT, MemberUniform


class StackedMLP:
    """K copies of ``build_mlp``'s network as [K, ...] tensors; the layer order comes from a template model.

    Training needs no autograd: ``forward`` records on a tape what each layer's gradient needs, and ``backward``
    walks the layers back by hand with ATen's own backward kernels (BatchNorm, the activations). That saves autograd's
    bookkeeping on every one of a sweep's many small steps, and lets each weight be updated the moment its
    gradient is known (see ``FactoredGradient``).
    """

    def __init__(self, cfgs: Sequence[MLPConfig], init_seeds: Sequence[int], noise_seeds: Sequence[int],
                 in_shape: Sequence[int] | int, n_classes: int, device: torch.device, dtype: torch.dtype) -> None:
        n_features = in_shape if isinstance(in_shape, int) else math.prod(in_shape)
        models = [seeded(cfg, seed, (n_features,), n_classes) for cfg, seed in zip(cfgs, init_seeds)]  # own inits
        # The template has Dropout layers wherever any member needs them (members with p = 0 keep every unit).
        self.layers = list(seeded(replace(cfgs[0], dropout=max(c.dropout for c in cfgs)), 0, (n_features,),
                                  n_classes).children())
        self.cfgs, self.n_features, self.n_classes = list(cfgs), n_features, n_classes

        def stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.stack(list(tensors)).to(device=device, dtype=dtype)

        self.decayed = [is_decayed(p) for p in models[0].parameters()]  # the weights; never b, gamma, beta
        # Linear weights are stored [K, in, out] (nn.Linear keeps [out, in]): their gradients x^T dy then come
        # out of the batched matmul in the weights' own layout.
        self.params = [stack([p.t() if is_weight else p for p in ps])
                       for is_weight, ps in zip(self.decayed, zip(*(m.parameters() for m in models)))]
        self.buffers = [stack(bs) for bs in zip(*(_running_stats(m) for m in models))]
        self.first_param = [sum(len(list(layer.parameters())) for layer in self.layers[:i])
                            for i in range(len(self.layers))]  # layer i's parameters start at params[first_param[i]]
        dropout = torch.tensor([c.dropout for c in cfgs], device=device, dtype=dtype).view(-1, 1, 1)
        self.keep, self.rescale = 1 - dropout, 1 / (1 - dropout)
        self.masks = MemberUniform(noise_seeds, DROPOUT, device, dtype)  # each member's masks from its own stream

    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x [K, B, ...], y [K, B] (each member its own batch) -> (per-member losses [K], logits). The
        optimiser receives each parameter's gradient as soon as the backward pass knows it."""
        tape: list = []
        logits = self.forward(x, train=True, masks=self.masks, tape=tape)
        losses, grad = cross_entropy(logits, y)  # member k's gradient is its own loss's
        optimizer.start_step()
        self.backward(tape, grad, optimizer.update)
        return losses, logits

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation mode (running averages, no dropout) on one batch for all: x [b, ...] -> [K, b, classes]."""
        return self.forward(x, train=False)

    def running_stats(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each BatchNorm layer's (running mean, running variance), [K, C], in place."""
        return list(zip(self.buffers[::2], self.buffers[1::2]))

    def bn_forward(self, x: torch.Tensor, momentum: float) -> None:
        """One batch for all (x [b, ...]) through the members with BatchNorm on batch statistics, updating the
        running ones with ``momentum``, and dropout off: one step of re-estimating them (``trainer.precise_bn``)."""
        self.forward(x, train=False, bn_momentum=momentum)

    def member(self, k: int) -> nn.Sequential:
        """Member k as the plain ``build_mlp`` module, trained weights and running averages included."""
        model = seeded(self.cfgs[k], 0, (self.n_features,), self.n_classes).to(self.params[0].dtype)
        with torch.no_grad():
            for mine, stacked in zip([*model.parameters(), *_running_stats(model)], [*self.params, *self.buffers]):
                mine.copy_(stacked[k].t() if stacked.dim() == 3 else stacked[k])
        return model

    @torch.no_grad()
    def forward(self, x: torch.Tensor, train: bool, masks: Optional[MemberUniform] = None,
                tape: Optional[list] = None, bn_momentum: Optional[float] = None) -> torch.Tensor:
        """x: [K, B, ...] (``train``: each member its own batch) or [B, ...] (one batch for all) -> [K, B, classes].

        BatchNorm normalises with the batch's statistics in training or with a ``bn_momentum`` (which updates the
        running ones), else with the running ones. With a ``tape``, each layer appends what ``backward`` needs.
        """
        params, buffers = iter(self.params), iter(self.buffers)
        h = x
        for layer in self.layers:
            saved = None
            if isinstance(layer, nn.Flatten):  # each sample [C, H, W] -> [C*H*W]; training batches are [K, B, ...]
                h = h.reshape(*h.shape[:2 if train else 1], -1)
            elif isinstance(layer, nn.Linear):
                saved, h = h, _linear(h, next(params), next(params))
            elif isinstance(layer, nn.BatchNorm1d):
                h, saved = _batch_norm(h, next(params), next(params), next(buffers), next(buffers),
                                       train or bn_momentum is not None,
                                       layer.momentum if bn_momentum is None else bn_momentum, layer.eps)
            elif isinstance(layer, nn.ReLU):
                h = saved = torch.relu(h)
            elif isinstance(layer, (nn.Sigmoid, nn.Tanh)):
                h = saved = torch.sigmoid(h) if isinstance(layer, nn.Sigmoid) else torch.tanh(h)
            elif isinstance(layer, nn.GELU):
                saved, h = h, torch.nn.functional.gelu(h)
            elif isinstance(layer, Dropout) and train:  # each unit kept with probability 1 - p, rescaled
                saved = masks.uniform(h.shape[1:]).lt_(self.keep).mul_(self.rescale)
                h = h * saved
            if tape is not None:
                tape.append(saved)
        return h

    @torch.no_grad()
    def backward(self, tape: list, grad: torch.Tensor, update: Callable[[int, torch.Tensor | FactoredGradient], None]) -> None:
        """From d loss / d logits [K, B, classes] back through the layers; ``update(i, gradient)`` receives
        parameter i's gradient as soon as it is known. A layer's input gradient is computed before its
        parameters are handed on, so ``update`` may change them in place."""
        for index in reversed(range(len(self.layers))):
            layer, saved, first = self.layers[index], tape[index], self.first_param[index]
            if isinstance(layer, nn.Linear):
                weight = self.params[first]
                # no earlier layer has parameters (the first Linear, after Flatten): nobody needs its input's gradient
                grad_in = None if first == 0 else member_matmul(grad, weight.transpose(1, 2))
                update(first + 1, grad.sum(1))
                update(first, FactoredGradient(saved, grad))
                grad = grad_in
            elif isinstance(layer, nn.BatchNorm1d):
                grad, grad_gamma, grad_beta = _batch_norm_backward(grad, self.params[first], saved, layer.eps)
                update(first, grad_gamma)
                update(first + 1, grad_beta)
            elif isinstance(layer, nn.ReLU):
                grad = torch.ops.aten.threshold_backward(grad, saved, 0)
            elif isinstance(layer, nn.Sigmoid):
                grad = torch.ops.aten.sigmoid_backward(grad, saved)
            elif isinstance(layer, nn.Tanh):
                grad = torch.ops.aten.tanh_backward(grad, saved)
            elif isinstance(layer, nn.GELU):
                grad = torch.ops.aten.gelu_backward(grad, saved)
            elif isinstance(layer, Dropout):
                grad = grad * saved


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    """BatchNorm's running means and variances, in layer order (not a Dropout's p: the stacked path keeps its own)."""
    return [b for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var"))]


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if h.dim() == 3:
        return member_matmul(h, weight, add=bias.unsqueeze(1))
    return torch.matmul(h, weight) + bias.unsqueeze(1)  # evaluation: one batch for all members


def _batch_norm(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, running_mean: torch.Tensor,
                running_var: torch.Tensor, train: bool, momentum: float, eps: float) -> tuple[torch.Tensor, tuple]:
    """BatchNorm of K members with ATen's own kernel (the one nn.BatchNorm1d runs), the members' channels side
    by side as [B, K*C] columns: per channel exactly what nn.BatchNorm1d computes, running averages included.
    Returns the output and what the backward needs."""
    rows = _side_by_side(h)
    out, mean, invstd = torch.ops.aten.native_batch_norm(
        rows, gamma.reshape(-1), beta.reshape(-1), running_mean.view(-1), running_var.view(-1), train, momentum, eps)
    return _stacked(out, len(gamma)), (rows, mean, invstd)


def _batch_norm_backward(grad: torch.Tensor, gamma: torch.Tensor, saved: tuple,
                         eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, mean, invstd = saved
    grad_rows, grad_gamma, grad_beta = torch.ops.aten.native_batch_norm_backward(
        _side_by_side(grad), rows, gamma.reshape(-1), None, None, mean, invstd, True, eps, [True, True, True])
    return _stacked(grad_rows, len(gamma)), grad_gamma.view_as(gamma), grad_beta.view_as(gamma)


def _side_by_side(h: torch.Tensor) -> torch.Tensor:
    """[K, B, C] -> [B, K*C]: member k's channel j at column k*C + j."""
    return h[0] if len(h) == 1 else h.transpose(0, 1).reshape(h.shape[1], -1)


def _stacked(rows: torch.Tensor, k: int) -> torch.Tensor:
    return rows.view(len(rows), k, -1).transpose(0, 1).contiguous()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's mean cross-entropy [K] and its gradient by the logits: (softmax - one-hot) / batch size."""
    log_probs = torch.log_softmax(logits, 2)
    target = y.unsqueeze(2)
    losses = log_probs.gather(2, target).mean((1, 2)).neg_()
    return losses, log_probs.exp_().scatter_(2, target, -1.0, reduce="add").div_(y.shape[1])
