"""The generic population: K members of any ``nn.Module`` trained at once through ``torch.func``, or a single one.

Members are built each from its own seed and stacked: parameters and buffers become [K, ...] tensors, so
BatchNorm's running statistics and an ``ablate.nn.Dropout``'s p stay per member. A step is ``vmap`` over members
of ``grad`` of the loss (``functional_call`` on one template module), ``randomness="different"`` (each member its
own dropout masks); the gradients go to the same ``Optimizer`` as the MLP's, so the update maths is one.

A single member (K = 1) trains with plain autograd on its own module, whose parameters are views of the stacked
ones: a single run is an ordinary PyTorch loop. A model ``vmap`` cannot take (data-dependent control flow, an op
without a batching rule) is found by one probe step at construction (``NotVectorisable``): its members then train
one at a time, each as a population of one. Any other error of the probe (out of memory, a bug in the forward)
fails the population with its traceback (``vmap_refuses``).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from ablate.engine.models import is_decayed

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def named_batch_norms(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorm layers that keep running statistics, with their names, in module order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


def batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for _, m in named_batch_norms(module)]


class NotVectorisable(RuntimeError):
    """``vmap`` refused the model (the message says why): its members train one at a time instead."""


def vmap_refuses(err: BaseException) -> bool:
    """Whether an error from a vmapped step means "vmap cannot take this model": its own refusals (messages that
    start ``vmap:``, e.g. data-dependent control flow or ``.item()``) and operators without a batching rule. An
    out-of-memory error or a bug in the model's forward is none of these: it must fail, not hide in a fallback."""
    if not isinstance(err, RuntimeError) or isinstance(err, torch.OutOfMemoryError):
        return False
    text = str(err)
    return text.startswith("vmap:") or "atching rule not implemented" in text or "does not have a batching rule" in text


class ModulePopulation:
    """K members of one architecture as stacked tensors; ``member(k)`` is member k as its plain module."""

    def __init__(self, members: Sequence[nn.Module], in_shape: Sequence[int], device: torch.device,
                 dtype: torch.dtype) -> None:
        members = [m.to(device=device, dtype=dtype) for m in members]
        self.k = len(members)
        if self.k == 1:  # plain autograd on the module; the optimiser updates it through views of its parameters
            self.module = members[0]
            self.names = [name for name, _ in self.module.named_parameters()]
            self.params = [p.detach().unsqueeze(0) for p in self.module.parameters()]
        else:
            params, self.buffers = stack_module_state(list(members))
            self.names = list(params)
            self.params = [params[name].detach() for name in self.names]
            self.skeleton = members[0]  # member(k) is a copy of it with member k's state loaded
            self.template = copy.deepcopy(members[0]).to("meta")
            self._grads = vmap(grad(self._loss, has_aux=True), randomness="different")
            self._logits = vmap(self._forward, in_dims=(0, 0, None), randomness="different")
            self._probe(tuple(in_shape), device, dtype)
        self.decayed = [is_decayed(p[0]) for p in self.params]  # [K, ...]: judged on one member's

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def _loss(self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor):
        logits = self._forward(params, buffers, x)
        loss = F.cross_entropy(logits, y)
        return loss, (loss, logits)

    def _probe(self, in_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> None:
        """One step on a batch of two zero samples, on copies (the running statistics stay as they are)."""
        x = torch.zeros(self.k, 2, *in_shape, device=device, dtype=dtype)
        y = torch.zeros(self.k, 2, dtype=torch.long, device=device)
        buffers = {name: b.clone() for name, b in self.buffers.items()}
        try:
            self.template.train()
            self._grads(dict(zip(self.names, self.params)), buffers, x, y)
        except RuntimeError as err:
            if not vmap_refuses(err):
                raise  # an out-of-memory error, a bug in the forward: the population fails with its traceback
            raise NotVectorisable(f"{type(err).__name__}: {str(err).strip().splitlines()[0]}") from err

    # -------------------------------------------------------------------------------------- training
    def train_step(self, x: torch.Tensor, y: torch.Tensor, optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: x [K, B, ...], y [K, B] (each member its own batch) -> (per-member losses [K], logits)."""
        if self.k == 1:
            self.module.train()
            logits = self.module(x[0])
            loss = F.cross_entropy(logits, y[0])
            grads = torch.autograd.grad(loss, list(self.module.parameters()))
            optimizer.step([g.unsqueeze(0) for g in grads])
            return loss.detach().unsqueeze(0), logits.detach().unsqueeze(0)
        self.template.train()
        grads, (losses, logits) = self._grads(dict(zip(self.names, self.params)), self.buffers, x, y)
        optimizer.step([grads[name] for name in self.names])
        return losses, logits

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation mode (running statistics, no dropout) on one batch for all: x [b, ...] -> [K, b, classes]."""
        if self.k == 1:
            return self.module.eval()(x).unsqueeze(0)
        self.template.eval()
        return self._logits(dict(zip(self.names, self.params)), self.buffers, x)

    # ------------------------------------------------------------------------- BatchNorm's statistics
    def running_stats(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each BatchNorm layer's (running mean, running variance) as [K, C] tensors, in place."""
        if self.k == 1:
            return [(m.running_mean.unsqueeze(0), m.running_var.unsqueeze(0)) for m in batch_norms(self.module)]
        return [(self.buffers[f"{name}.running_mean"], self.buffers[f"{name}.running_var"])
                for name, _ in named_batch_norms(self.template)]

    @torch.no_grad()
    def bn_forward(self, x: torch.Tensor, momentum: float) -> None:
        """One batch for all (x [b, ...]) through the members with BatchNorm on batch statistics, updating the
        running ones with ``momentum``, and everything else in evaluation mode (dropout off): one step of
        re-estimating them (``trainer.precise_bn``). The layers' own momentum and batch counts are left as they were."""
        module = self.module if self.k == 1 else self.template
        module.eval()
        norms = batch_norms(module)
        kept = [m.momentum for m in norms]
        for norm in norms:
            norm.train()
            norm.momentum = momentum
        try:
            if self.k == 1:
                module(x)
            else:
                self._logits(dict(zip(self.names, self.params)), self.buffers, x)
        finally:
            for norm, value in zip(norms, kept):
                norm.momentum = value
        counts = [m.num_batches_tracked for m in norms] if self.k == 1 else \
            [b for name, b in self.buffers.items() if name.endswith("num_batches_tracked")]
        for count in counts:
            count.sub_(1)

    def member(self, k: int) -> nn.Module:
        """Member k as its plain module, trained weights and running statistics included."""
        if self.k == 1:
            return copy.deepcopy(self.module)
        model = copy.deepcopy(self.skeleton)
        state = {**{name: p[k] for name, p in zip(self.names, self.params)},
                 **{name: b[k] for name, b in self.buffers.items()}}
        model.load_state_dict(state)
        return model
