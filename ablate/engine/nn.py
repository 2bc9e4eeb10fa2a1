"""Building blocks that give an ablation factor the same meaning in every model.

``block(layer, bn, dropout, activation=...)`` wraps a Linear or Conv layer with BatchNorm placed ``pre`` (layer, BN,
activation), ``post`` (layer, activation, BN) or ``none`` (layer, activation), then optional pooling, then dropout
after the activation: the seed notes' placements, for any layer and any of ``ACTIVATIONS`` (ReLU by default).
``Dropout`` keeps its p in a buffer, so a population of K members can give each its own p (``torch.func`` stacks buffers per member). A model of your own that uses these takes the same
switches as ablate's MLP and CNN::

    from torch import nn
    from ablate.nn import block

    class Net(nn.Module):
        def __init__(self, in_shape, n_classes, bn="pre", dropout=0.0):
            super().__init__()
            self.body = nn.Sequential(block(nn.Conv2d(in_shape[0], 16, 3, padding=1), bn, dropout, nn.MaxPool2d(2)),
                                      nn.Flatten(), nn.LazyLinear(n_classes))
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ablate.engine.streams import DROPOUT, counter_uniform, stream_key

_NORMS = {nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}  # model.activation


class Dropout(nn.Module):
    """Inverted dropout: each unit kept with probability 1 - p and scaled by 1 / (1 - p) in training, the identity
    in evaluation. p is a buffer (a tensor, saved with the model), so members of a population may differ in it.

    Inside ablate each layer's masks come from the member's own stream (``key_streams``): a hash of its key and
    step counter, buffers too, so under ``vmap`` each member draws what its single run draws. A standalone
    module (no key given) draws from torch's global generator, as ``nn.Dropout`` does."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout p={p} must be in [0, 1)")
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("key", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("step", torch.tensor(0, dtype=torch.int64))  # training forwards so far
        self.keyed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1 - self.p.to(x.dtype)
        if self.keyed:
            uniform = counter_uniform(self.key, self.step, x.shape, x.dtype)
            self.step.add_(1)
        else:
            uniform = torch.rand_like(x)
        return x * (uniform < keep).to(x.dtype) / keep

    def extra_repr(self) -> str:
        return f"p={self.p.item() if self.p.device.type != 'meta' else '?'}"


def key_streams(model: nn.Module, seed: int) -> nn.Module:
    """Give every dropout layer of ``model`` its own stream from ``seed`` (layer i: ``stream_key(seed, DROPOUT,
    i)``), torch's ``nn.Dropout`` replaced by ``Dropout`` (the same maths) so that it has one. In place."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))
    for index, layer in enumerate(m for m in model.modules() if isinstance(m, Dropout)):
        layer.key.fill_(stream_key(seed, DROPOUT, index))
        layer.step.zero_()
        layer.keyed = True
    return model


def norm_act(bn: str, layer: nn.Module, eps: float = 1e-5, momentum: float = 0.1,
             activation: str = "relu") -> list[nn.Module]:
    """What follows ``layer`` (a Linear or Conv): BN then the activation (``pre``), the activation then BN
    (``post``), or the activation alone (``none``)."""
    kind = next((norm for cls, norm in _NORMS.items() if isinstance(layer, cls)), None)
    if kind is None:
        raise TypeError(f"norm_act places BatchNorm after Linear or Conv layers, not {type(layer).__name__}")
    channels = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    bn, activation = getattr(bn, "value", bn), getattr(activation, "value", activation)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} must be one of {', '.join(ACTIVATIONS)}")
    act = ACTIVATIONS[activation]()
    if bn == "none":
        return [act]
    norm = kind(channels, eps=eps, momentum=momentum)
    if bn == "pre":
        return [norm, act]
    if bn == "post":
        return [act, norm]
    raise ValueError(f"bn={bn!r} must be one of none, pre, post")


def block(layer: nn.Module, bn: str, dropout: Optional[float] = None, pool: Optional[nn.Module] = None,
          eps: float = 1e-5, momentum: float = 0.1, activation: str = "relu") -> nn.Sequential:
    """``layer``, its BatchNorm and activation in the placement ``bn``, then ``pool``, then ``Dropout(dropout)``
    (left out when ``dropout`` is None)."""
    parts = [layer, *norm_act(bn, layer, eps, momentum, activation)]
    if pool is not None:
        parts.append(pool)
    if dropout is not None:
        parts.append(Dropout(dropout))
    return nn.Sequential(*parts)
