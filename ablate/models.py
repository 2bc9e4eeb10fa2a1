"""Model families: what the trainer needs to know about one kind of model. Everything else (runner, sweeps, search,
reports, claims, launchers) sees only configs and runs.

- ``mlp``: the seed notebook's MLP (``build_mlp``), trained by the hand-written stacked path (``stacked_mlp``).
- ``cnn``: a small CNN of ``ablate.nn`` blocks (``build_cnn``), trained by the generic path (``module_population``).
- ``custom``: your own ``nn.Module`` named by ``model.target``, built with ``in_shape``, ``n_classes`` and the
  ablation factors its constructor declares. The factors are a checked contract: a factor set that the
  constructor does not take is an error before any data is read, so a switch never silently does nothing.

Every family's weights of dimension >= 2 (Linear and Conv kernels, a custom layer's matrices) are what L2 acts on
and what ``model.init_scale`` multiplies; biases and normalisation parameters never.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import asdict
from typing import Any, Sequence

import torch
from torch import nn

from ablate.config import CNNConfig, ConfigValueError, CustomConfig, MLPConfig, ModelConfig, split_target
from ablate.errors import user_frame
from ablate.nn import Dropout, block


# ------------------------------------------------------------------------------------------ the MLP
def build_mlp(cfg: MLPConfig, in_features: int, n_classes: int) -> nn.Sequential:
    """Flatten, then Linear blocks with BN ``pre`` (Linear, BN, activation), ``post`` (Linear, activation, BN) or
    ``none``, then dropout (left out at p = 0, as the notebook has none then).

    The seed's 784-128-64-10 with bn=pre and dropout 0.3 has 109,770 trainable parameters, as in the notebook.
    Call ``torch.manual_seed`` first: the initialisation draws from the global generator.
    """
    layers: list[nn.Module] = [nn.Flatten()]  # images [B, C, H, W] or rows [B, F] alike
    width = in_features
    for hidden in cfg.hidden:
        layers += block(nn.Linear(width, hidden), cfg.bn, cfg.dropout or None, eps=cfg.bn_eps,
                        momentum=cfg.bn_momentum, activation=cfg.activation)
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return scale_init(nn.Sequential(*layers), cfg.init_scale)


# ------------------------------------------------------------------------------------------ the CNN
def build_cnn(cfg: CNNConfig, in_shape: Sequence[int], n_classes: int) -> nn.Sequential:
    """Blocks of a 3x3 Conv2d (``model.kernel_size``), BatchNorm and ``model.activation`` placed by ``model.bn`` as
    for the MLP, 2x2 max-pooling and dropout after the activation, one block per ``model.channels`` entry; then a Linear head."""
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
    return scale_init(nn.Sequential(*layers), cfg.init_scale)


# ------------------------------------------------------------------------------------ a model of yours
def load_class(target: str) -> type:
    """``my_models.SmallResNet`` or ``my_models:SmallResNet`` -> the class (the module importable from the working
    directory or the Python path)."""
    module_name, name = split_target(target)
    if not module_name:
        raise ConfigValueError(f"model.target={target!r} names no module: give module.Class or module:Class.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigValueError(f"model.target={target}: cannot import {module_name} ({err}). Run from the folder "
                               f"that holds it, or put it on PYTHONPATH.") from err
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigValueError(f"model.target={target}: {module_name} has no nn.Module class {name}.")
    return cls


FACTORS = ("bn", "dropout", "activation")  # the switches a custom model receives when they are set


def declared_factors(cfg: CustomConfig) -> dict[str, Any]:
    """The ablation factors set for a custom model, as its constructor receives them."""
    factors = {name: getattr(getattr(cfg, name), "value", getattr(cfg, name)) for name in FACTORS
               if getattr(cfg, name) is not None}
    return {**factors, **cfg.kwargs}


def check_custom(cfg: CustomConfig) -> None:
    """The contract, before any data is read: the class exists, takes in_shape and n_classes, and takes every
    factor that is set (a switch it ignored would silently do nothing)."""
    cls = load_class(cfg.target)
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in ("in_shape", "n_classes"):
        if name not in params and not takes_any:
            raise ConfigValueError(f"{cfg.target} does not take `{name}`: its constructor must accept in_shape "
                                   f"(the sample shape, e.g. (1, 28, 28)) and n_classes.")
    for name in declared_factors(cfg):
        if name not in params and not takes_any:
            where = f"model.{name}" if name in FACTORS else f"model.kwargs.{name}"
            raise ConfigValueError(f"{cfg.target} does not take `{name}`: add a `{name}` parameter, or drop `{where}`.")


def build_custom(cfg: CustomConfig, in_shape: Sequence[int], n_classes: int) -> nn.Module:
    cls = load_class(cfg.target)
    kwargs = {"in_shape": tuple(in_shape), "n_classes": n_classes, **declared_factors(cfg)}
    try:
        model = cls(**kwargs)
    except Exception as err:
        where = user_frame(err, cls)
        raise ConfigValueError(f"{cfg.target}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                               f"{type(err).__name__}: {err}" + (f" (at {where})" if where else "") +
                               "; fix the constructor, or the arguments it is given (model.*, model.kwargs).") from err
    return scale_init(model, cfg.init_scale)


# ---------------------------------------------------------------------------------------- the families
BUILDERS = {MLPConfig: lambda cfg, shape, n: build_mlp(cfg, math.prod(shape), n), CNNConfig: build_cnn,
            CustomConfig: build_custom}


def build(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> nn.Module:
    """The readable definition of any family's model (seed it first: initialisation draws from torch's generator)."""
    return BUILDERS[type(cfg)](cfg, tuple(in_shape), n_classes)


def family(cfg: ModelConfig) -> str:
    return type(cfg).family


def check(cfg: ModelConfig) -> None:
    """What can be checked before any data is read: a custom model's contract."""
    if isinstance(cfg, CustomConfig):
        check_custom(cfg)


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
    device where it is too large to allocate; on the CPU also where its constructor cannot run on meta."""
    try:
        with torch.device("meta"):
            model = build(cfg, in_shape, n_classes)
    except Exception:  # noqa: BLE001 - whatever the meta device cannot do, the CPU can (or says why not)
        return build(cfg, in_shape, n_classes), "cpu"
    if sum(p.numel() for p in model.parameters()) <= SMALL_ENOUGH_TO_BUILD:
        return build(cfg, in_shape, n_classes), "cpu"
    return model, "meta"


def per_member(cfg: ModelConfig) -> frozenset[str]:
    """The model keys a population may vary member by member; the rest is the architecture members share.

    The MLP's stacked path varies dropout p itself; the CNN's Dropout keeps p in a buffer; a custom model's
    constructor may use p any way it likes, so there p is part of the architecture."""
    return frozenset({"init_scale", "dropout"} if isinstance(cfg, (MLPConfig, CNNConfig)) else {"init_scale"})


def architecture(cfg: ModelConfig) -> tuple:
    """What members of one population must share: the family and its settings but the per-member ones."""
    shared = {k: v for k, v in asdict(cfg).items() if k not in per_member(cfg)}
    return family(cfg), repr(sorted(shared.items()))


def describe(cfg: ModelConfig) -> str:
    """One line for the console: the family and its factors."""
    if isinstance(cfg, CustomConfig):
        factors = ", ".join(f"{k}={v}" for k, v in declared_factors(cfg).items())
        return f"{cfg.target}({factors})"
    shape = f"hidden {cfg.hidden}" if isinstance(cfg, MLPConfig) else f"channels {cfg.channels}"
    return f"{family(cfg).upper()} {shape}, bn={cfg.bn.value}, {cfg.activation.value}, dropout={cfg.dropout:g}"


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


# --------------------------------------------------------------------------------------- a layer table
def layer_table(model: nn.Module, in_shape: Sequence[int], device: str = "meta") -> list[tuple[str, str, str, int]]:
    """(name, layer, output shape, parameters) of every leaf module on a batch of one."""
    rows: list[tuple[str, str, str, int]] = []
    hooks = [module.register_forward_hook(
        lambda m, _, out, name=name: rows.append((name, _layer_text(m), "[B, " + ", ".join(map(str, out.shape[1:])) + "]",
                                                  sum(p.numel() for p in m.parameters(recurse=False)))))
             for name, module in model.named_modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape, device=device))
    except Exception:  # noqa: BLE001 - a forward that cannot run here: the table lists its layers unshaped
        rows = [(n, _layer_text(m), "?", sum(p.numel() for p in m.parameters(recurse=False)))
                for n, m in model.named_modules() if not list(m.children())]
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def _layer_text(module: nn.Module) -> str:
    text = repr(module) if not isinstance(module, Dropout) else "Dropout(p per member)"
    return text.replace("\n", " ")


def summary(cfg: ModelConfig, in_shape: Sequence[int] | int, n_classes: int) -> str:
    """A layer table with output shapes and parameter counts, like torchinfo's, for the run's artifacts.

    The model is built on the meta device (shapes, no memory): even one too large to train is described, and its
    run then fails in training, where the failure is recorded.
    """
    in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
    model, device = built(cfg, in_shape, n_classes)
    lines = [f"{describe(cfg)} on samples of shape {list(in_shape)}", f"{'layer':<48}{'output':>20}{'params':>14}"]
    lines += [f"{f'{name}: {text}':<48.48}{shape:>20}{count:>14,}" for name, text, shape, count in
              layer_table(model, in_shape, device)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(f"Trainable params: {trainable:,}")
    return "\n".join(lines)


def activations_per_sample(cfg: ModelConfig, in_shape: Sequence[int], n_classes: int) -> tuple[int, int]:
    """(parameters, activation elements of one sample through every leaf layer), from the meta device."""
    model, device = built(cfg, in_shape, n_classes)
    total = 0

    def count(_, __, out):
        nonlocal total
        total += out[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in model.parameters()), total

