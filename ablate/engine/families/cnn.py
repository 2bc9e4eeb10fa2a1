"""``model=cnn``: a small CNN of ``ablate.nn`` blocks, trained by the generic population path (``engine.vmapped``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

from ablate.config.run import BuiltinModelConfig
from ablate.engine.families.registry import Family, register_family
from ablate.errors import ConfigValueError, require


@dataclass
class CNNConfig(BuiltinModelConfig):
    """``model=cnn``: blocks of Conv2d, BatchNorm (placed by bn), the activation, 2x2 max-pooling and dropout; a
    Linear head."""

    family: ClassVar[str] = "cnn"
    channels: list[int] = field(default_factory=lambda: [16, 32])  # one block per entry, halving the image
    kernel_size: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "model.channels", self.channels,
                "a non-empty list of positive channel counts")
        require(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "model.kernel_size", self.kernel_size,
                "an odd positive size (padding keeps the image's size)")


def build_cnn(cfg: CNNConfig, in_shape: Sequence[int], n_classes: int):
    """One block per ``model.channels`` entry: a Conv2d of ``model.kernel_size``, BatchNorm and the activation placed
    by ``model.bn`` as for the MLP, 2x2 max-pooling, dropout after the activation; then a Linear head."""
    from torch import nn

    from ablate.engine.nn import block

    if len(in_shape) != 3:
        raise ConfigValueError(f"model=cnn needs images [channels, height, width]; the data gives samples of shape "
                               f"{list(in_shape)}. Use model=mlp, or data whose source declares an image shape.")
    channels, height, width = in_shape
    layers: list[nn.Module] = []
    for out in cfg.channels:
        if height < 2 or width < 2:
            raise ConfigValueError(f"model.channels={cfg.channels} halves a {in_shape[1]}x{in_shape[2]} image "
                                   f"{len(cfg.channels)} times, to nothing: give fewer channel entries.")
        conv = nn.Conv2d(channels, out, cfg.kernel_size, padding=cfg.kernel_size // 2)
        layers.append(block(conv, cfg.bn, cfg.dropout, nn.MaxPool2d(2), cfg.bn_eps, cfg.bn_momentum, cfg.activation))
        channels, height, width = out, height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(channels * height * width, n_classes)]
    return nn.Sequential(*layers)


def describe(cfg: CNNConfig) -> str:
    return f"CNN channels {cfg.channels}, bn={cfg.bn.value}, {cfg.activation.value}, dropout={cfg.dropout:g}"


# ablate.nn's Dropout keeps p in a buffer, which the generic path stacks per member
register_family(Family(CNNConfig, build=build_cnn, describe=describe, per_member=frozenset({"init_scale", "dropout"})))
