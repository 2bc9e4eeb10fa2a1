"""A model of any family (``engine.families``): built from its own seed, checked against the data, described and
measured. The rest of ablate asks here and never looks at a family's config itself.

Every family's weights of dimension >= 2 (Linear and Conv kernels, a custom layer's matrices) are what L2 acts on
and what ``model.init_scale`` multiplies; biases and normalisation parameters never.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ablate.config.run import ModelConfig
from ablate.engine.families import family_of
from ablate.engine.nn import Dropout
from ablate.errors import ConfigValueError


def build(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> nn.Module:
    """The family's readable definition, its weights scaled by ``model.init_scale``. Initialisation draws from
    torch's generator: ``seeded`` draws it from a seed of its own."""
    return scale_init(family_of(cfg).build(cfg, tuple(in_shape), n_classes), cfg.init_scale)


def seeded(cfg: ModelConfig, seed: int, in_shape: Sequence[int], n_classes: int) -> nn.Module:
    """``build`` with the initialisation of ``torch.manual_seed(seed)``, the caller's generator left as it was (a
    notebook's random state is its own)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build(cfg, in_shape, n_classes)


def describe(cfg: ModelConfig) -> str:
    """One line for the console: the family and its factors."""
    return family_of(cfg).describe(cfg)


def check(cfg: ModelConfig) -> None:
    """What can be checked before any data is read (a custom model's contract)."""
    if (check_family := family_of(cfg).check) is not None:
        check_family(cfg)


def check_shapes(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> None:
    """Once the data's shape is known, before training: the model builds for it and its forward returns
    [batch, n_classes], on a batch of two zero samples (on the meta device where the model allows: no memory)."""
    model, device = built(cfg, in_shape, n_classes)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *in_shape, device=device))
    except Exception as err:
        raise ConfigValueError(f"{describe(cfg)} fails on a batch of shape {[2, *in_shape]}: "
                               f"{type(err).__name__}: {err}") from err
    if tuple(out.shape) != (2, n_classes):
        raise ConfigValueError(f"{describe(cfg)} returns {list(out.shape)} for a batch of {[2, *in_shape]}: its forward "
                               f"must return [batch, n_classes] = [2, {n_classes}].")


SMALL_ENOUGH_TO_BUILD = 20_000_000  # parameters: a real model of this size builds and runs one sample in milliseconds


def built(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> tuple[nn.Module, str]:
    """The model to read shapes and sizes from: built on the CPU where it is small (a real forward of one sample
    takes milliseconds; the meta device's first forward in a process costs a second of imports), on the meta
    device where it is too large to allocate; on the CPU also where its constructor cannot run on meta. Seeded, so
    that looking at a model leaves torch's generator alone."""
    try:
        with torch.device("meta"):
            model = build(cfg, in_shape, n_classes)
    except Exception:  # noqa: BLE001 - whatever the meta device cannot do, the CPU can (or says why not)
        return seeded(cfg, 0, in_shape, n_classes), "cpu"
    if sum(p.numel() for p in model.parameters()) <= SMALL_ENOUGH_TO_BUILD:
        return seeded(cfg, 0, in_shape, n_classes), "cpu"
    return model, "meta"


def scale_init(model: nn.Module, scale: float) -> nn.Module:
    """Multiply every weight of dimension >= 2 by ``scale`` (the initialisation-sensitivity factor)."""
    if scale != 1.0:
        with torch.no_grad():
            for weight in decayed_weights(model):
                weight.mul_(scale)
    return model


def is_decayed(param: torch.Tensor) -> bool:
    """Whether L2 / weight decay acts on a model's parameter: every one of dimension >= 2 (Linear and Conv kernels,
    a custom layer's matrices). Biases and BatchNorm's gamma and beta are left alone, as the notes say."""
    return param.dim() >= 2


def decayed_weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if is_decayed(p)]


def _leaf_forward(model: nn.Module, in_shape: Sequence[int], device: str, on_leaf) -> bool:
    """One sample through the model in evaluation mode, ``on_leaf(name, module, output)`` after every leaf layer;
    False where the forward cannot run on this device."""
    hooks = [module.register_forward_hook(lambda m, _, out, name=name: on_leaf(name, m, out))
             for name, module in model.named_modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape, device=device))
        return True
    except Exception:  # noqa: BLE001 - a forward that cannot run here: the caller says so
        return False
    finally:
        for hook in hooks:
            hook.remove()


def layer_table(model: nn.Module, in_shape: Sequence[int], device: str = "meta") -> list[tuple[str, str, str, int]]:
    """(name, layer, output shape, parameters) of every leaf module on a batch of one."""
    rows: list[tuple[str, str, str, int]] = []

    def own(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters(recurse=False))

    ran = _leaf_forward(model, in_shape, device, lambda name, m, out: rows.append(
        (name, _layer_text(m), "[B, " + ", ".join(map(str, out.shape[1:])) + "]", own(m))))
    if not ran:  # the table lists its layers unshaped
        rows = [(n, _layer_text(m), "?", own(m)) for n, m in model.named_modules() if not list(m.children())]
    return rows


def _layer_text(module: nn.Module) -> str:
    text = repr(module) if not isinstance(module, Dropout) else "Dropout(p per member)"
    return text.replace("\n", " ")


def summary(cfg: ModelConfig, in_shape: Sequence[int] | int, n_classes: int) -> str:
    """A layer table with output shapes and parameter counts, like torchinfo's, for the run's artifacts. A model too
    large to build is described from the meta device; its run then fails in training, where that is recorded."""
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    model, device = built(cfg, in_shape, n_classes)
    lines = [f"{describe(cfg)} on samples of shape {list(in_shape)}", f"{'layer':<48}{'output':>20}{'params':>14}"]
    lines += [f"{f'{name}: {text}':<48.48}{shape:>20}{count:>14,}" for name, text, shape, count in
              layer_table(model, in_shape, device)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f"Trainable params: {trainable:,}")
    return "\n".join(lines)


def activations_per_sample(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> tuple[int, int]:
    """(parameters, activation elements of one sample through every leaf layer)."""
    model, device = built(cfg, in_shape, n_classes)
    sizes: list[int] = []
    if not _leaf_forward(model, in_shape, device, lambda name, m, out: sizes.append(out[0].numel())):
        raise ConfigValueError(f"{describe(cfg)} cannot run a sample of shape {list(in_shape)} to size its memory.")
    return sum(p.numel() for p in model.parameters()), sum(sizes)
