"""``model=mlp``: the seed notebook's MLP (784-128-64-10 on the shipped data), trained by its own hand-written
stacked path (``engine.stacked_mlp``), the fast path on a CPU."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ablate.config.run import BuiltinModelConfig, OptimName, RunConfig
from ablate.engine.families.registry import Family, register_family
from ablate.errors import require


@dataclass
class MLPConfig(BuiltinModelConfig):
    """``model=mlp``: Linear blocks with BatchNorm placed by bn, the activation and dropout; flattens its input."""

    family: ClassVar[str] = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128, 64])

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "model.hidden", self.hidden,
                "a non-empty list of positive layer widths")


def build_mlp(cfg: MLPConfig, in_features: int, n_classes: int):
    """Flatten, then Linear blocks with BN ``pre`` (Linear, BN, activation), ``post`` (Linear, activation, BN) or
    ``none``, then dropout (left out at p = 0, as the notebook has none then).

    The seed's 784-128-64-10 with bn=pre and dropout 0.3 has 109,770 trainable parameters, as in the notebook.
    """
    from torch import nn

    from ablate.engine.nn import block

    layers: list[nn.Module] = [nn.Flatten()]  # images [B, C, H, W] or rows [B, F] alike
    width = in_features
    for hidden in cfg.hidden:
        layers += block(nn.Linear(width, hidden), cfg.bn, cfg.dropout or None, eps=cfg.bn_eps,
                        momentum=cfg.bn_momentum, activation=cfg.activation)
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def stack(cfgs, init_seeds, noise_seeds, in_shape, n_classes, device, dtype):
    from ablate.engine.stacked_mlp import StackedMLP

    return StackedMLP(cfgs, init_seeds, noise_seeds, in_shape, n_classes, device, dtype)


def plain_sgd(cfg: RunConfig) -> tuple:
    """SGD without momentum, whose weight update the optimiser fuses with the gradient's matmul on this path. That
    rounds differently from the unfused update, so members that differ in it train in separate populations: each
    member then computes exactly what its single run computes."""
    return (("plain SGD (fused)", cfg.optim.name == OptimName.sgd and cfg.optim.momentum == 0),)


def describe(cfg: MLPConfig) -> str:
    return f"MLP hidden {cfg.hidden}, bn={cfg.bn.value}, {cfg.activation.value}, dropout={cfg.dropout:g}"


register_family(Family(MLPConfig, build=lambda cfg, in_shape, n_classes: build_mlp(cfg, math.prod(in_shape), n_classes),
                       describe=describe, stack=stack, per_member=frozenset({"init_scale", "dropout"}),
                       splits=plain_sgd))
