"""The MLP of the seed notebook, with BatchNorm placement and dropout as the factors under study."""

from __future__ import annotations

import torch
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
