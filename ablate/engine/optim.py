"""The update maths: SGD (momentum, Nesterov) and Adam over [K, ...] parameters, as torch.optim computes them,
every member with its own hyperparameters; L2 as a penalty or as decoupled decay, on weights only.

One optimiser for every family: the MLP's hand-written backward hands it gradients as they arrive, the generic
path all at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional, Sequence

import torch

from ablate.config.run import L2Mode, OptimName, RunConfig


@dataclass
class MemberHyperparameters:
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

    def for_parameter(self, param: torch.Tensor) -> "MemberHyperparameters":
        """The same values viewed [K, 1, ...] to broadcast against a [K, ...] parameter (made once, not per step)."""
        shape = (-1, *([1] * (param.dim() - 1)))
        return replace(self, **{f.name: getattr(self, f.name).view(shape) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


def member_hyperparameters(cfgs: Sequence[RunConfig], device: torch.device,
                           dtype: torch.dtype) -> MemberHyperparameters:
    """The hyperparameters of K runs, stacked along the member axis."""
    def column(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, device=device, dtype=dtype)

    o = [c.optim for c in cfgs]
    penalty = [x.weight_decay * (x.l2 == L2Mode.penalty) for x in o]
    decoupled = [x.weight_decay * (x.l2 == L2Mode.decoupled) for x in o]
    return MemberHyperparameters(lr=column([x.lr for x in o]), momentum=column([x.momentum for x in o]),
                 nesterov=column([float(x.nesterov) for x in o]),
                 beta1=column([x.betas[0] for x in o]), beta2=column([x.betas[1] for x in o]),
                 eps=column([x.eps for x in o]), penalty_decay=column(penalty), decoupled_decay=column(decoupled),
                 uses_momentum=any(x.momentum for x in o), uses_nesterov=any(x.nesterov for x in o),
                 uses_penalty=any(penalty), uses_decoupled=any(decoupled))


@dataclass
class FactoredGradient:
    """A Linear weight's gradient x^T dy per member, kept as its two factors: plain SGD adds it into the weights
    with one batched matmul (``add_to``) instead of writing a [K, in, out] gradient and reading it back."""

    x: torch.Tensor  # [K, B, in]
    dy: torch.Tensor  # [K, B, out]

    def into(self, out: torch.Tensor) -> torch.Tensor:
        return member_matmul(self.x.transpose(1, 2), self.dy, out=out)

    def add_to(self, out: torch.Tensor, scale: torch.Tensor) -> None:
        """out += x^T (scale * dy), scale broadcasting over [K, 1, 1]."""
        member_matmul(self.x.transpose(1, 2), self.dy * scale, add=out, out=out)


def member_matmul(a: torch.Tensor, b: torch.Tensor, add: Optional[torch.Tensor] = None,
                  out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """add + a @ b for each member ([K, n, m] @ [K, m, p]), into ``out`` if given (``out`` may be ``add``: in
    place). With one member a plain 2-D matmul, which is faster than a batch of one."""
    if len(a) > 1:
        return torch.bmm(a, b, out=out) if add is None else torch.baddbmm(add, a, b, out=out)
    into = None if out is None else out[0]
    result = torch.mm(a[0], b[0], out=into) if add is None else torch.addmm(add[0], a[0], b[0], out=into)
    return result.unsqueeze(0) if out is None else out


class Optimizer:
    """SGD (momentum, Nesterov) or Adam over [K, ...] parameters, as torch.optim computes them, with L2 on weights
    only and every member's own hyperparameters.

    ``l2=penalty`` adds lambda * sum(w**2) to the loss; its gradient, 2 * lambda * w, is added here rather than
    differentiated (same maths, a fraction of the cost). ``l2=decoupled`` shrinks the weights by ``lr * lambda``
    before the gradient step, as AdamW does. Biases and BN's gamma and beta never decay.
    Plain SGD (no member uses momentum) adds a weight's gradient, handed over as a ``FactoredGradient``, into the
    weights: w <- (1 - lr * (2 lambda_penalty + lambda_decoupled)) w - lr x^T dy, the same update in one matmul.
    """

    def __init__(self, kind: OptimName, params: Sequence[torch.Tensor], decayed: Sequence[bool],
                 hp: MemberHyperparameters) -> None:
        self.kind, self.params, self.decayed = kind, list(params), list(decayed)
        self.hp = [hp.for_parameter(p) for p in params]
        adam = kind == OptimName.adam
        # torch.optim's names: SGD's momentum_buffer; Adam's exp_avg and exp_avg_sq (first and second moments)
        self.momentum_buffer = [torch.zeros_like(p) for p in params] if not adam and hp.uses_momentum else []
        self.exp_avg = [torch.zeros_like(p) for p in params] if adam else []
        self.exp_avg_sq = [torch.zeros_like(p) for p in params] if adam else []
        self.fuses = kind == OptimName.sgd and not hp.uses_momentum  # every member plain SGD
        self.shrink = [1 - h.lr * (2 * h.penalty_decay + h.decoupled_decay) if d and self.fuses else None
                       for h, d in zip(self.hp, decayed)]  # the fused update's weight factor
        self.grad_buffers: dict[int, torch.Tensor] = {}  # where a factored gradient is multiplied out, made once
        self.steps = 0

    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One update from every parameter's gradient at once."""
        self.start_step()
        for i, grad in enumerate(grads):
            self.update(i, grad)

    def start_step(self) -> None:
        self.steps += 1  # Adam's bias correction counts steps

    @torch.no_grad()
    def update(self, i: int, grad: torch.Tensor | FactoredGradient) -> None:
        """Parameter i's part of the current step (``StackedMLP.backward`` calls this as gradients arrive)."""
        p, hp, decays = self.params[i], self.hp[i], self.decayed[i]
        if isinstance(grad, FactoredGradient):
            if self.fuses:
                if hp.uses_penalty or hp.uses_decoupled:
                    p.mul_(self.shrink[i])
                grad.add_to(p, -hp.lr)
                return
            grad = grad.into(self.grad_buffers.setdefault(i, torch.empty_like(p)))
        if decays and hp.uses_penalty:
            grad = grad.add(2 * hp.penalty_decay * p)
        if decays and hp.uses_decoupled:
            p.mul_(1 - hp.lr * hp.decoupled_decay)
        if self.kind == OptimName.sgd:
            if hp.uses_momentum:
                m = self.momentum_buffer[i]
                m.mul_(hp.momentum).add_(grad)  # torch's buffer: momentum * buffer + gradient
                grad = torch.lerp(m, grad + hp.momentum * m, hp.nesterov) if hp.uses_nesterov else m
            p.addcmul_(hp.lr, grad, value=-1)
        else:
            m, v = self.exp_avg[i], self.exp_avg_sq[i]
            m.lerp_(grad, 1 - hp.beta1)
            v.mul_(hp.beta2).addcmul_((1 - hp.beta2) * grad, grad)  # torch's rounding: value * g * g
            # torch.optim's order of operations, so that a run equals torch's Adam to the last digits
            step_size = hp.lr / (1 - hp.beta1 ** self.steps)
            denominator = (v.sqrt() / (1 - hp.beta2 ** self.steps).sqrt()).add_(hp.eps)
            p.sub_(step_size * m / denominator)  # as addcdiv_ rounds: (value * m) / denominator
