"""``model=custom model.target=my_models.Net``: your own ``nn.Module``, built with ``in_shape``, ``n_classes`` and the
ablation factors its constructor declares. The factors are a checked contract: a factor set that the constructor
does not take is an error before any data is read, so a switch never silently does nothing."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from ablate.config.run import MISSING, SWITCHES, ModelConfig, split_target
from ablate.engine.families.registry import Family, register_family
from ablate.errors import ConfigValueError, user_frame


@dataclass
class CustomConfig(ModelConfig):
    """``model=custom model.target=my_models.Net``: your nn.Module, built as ``Net(in_shape=..., n_classes=...,
    bn=..., dropout=..., **kwargs)`` with only the factors that are set; one it does not take is an error."""

    family: ClassVar[str] = "custom"
    switches: ClassVar[frozenset[str]] = frozenset(SWITCHES)  # passed when set; the constructor must take them
    target: str = MISSING  # module.Class or module:Class, importable from the working directory
    kwargs: dict[str, Any] = field(default_factory=dict)  # more constructor arguments: +model.kwargs.width=64


def load_class(target: str) -> type:
    """``my_models.SmallResNet`` or ``my_models:SmallResNet`` -> the class (the module importable from the working
    directory or the Python path)."""
    from torch import nn

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


def declared_factors(cfg: CustomConfig) -> dict[str, Any]:
    """The ablation factors set for a custom model, as its constructor receives them."""
    factors = {name: getattr(getattr(cfg, name), "value", getattr(cfg, name)) for name in SWITCHES
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
            where = f"model.{name}" if name in SWITCHES else f"model.kwargs.{name}"
            raise ConfigValueError(f"{cfg.target} does not take `{name}`: add a `{name}` parameter, or drop `{where}`.")


def build_custom(cfg: CustomConfig, in_shape: Sequence[int], n_classes: int):
    cls = load_class(cfg.target)
    kwargs = {"in_shape": tuple(in_shape), "n_classes": n_classes, **declared_factors(cfg)}
    try:
        return cls(**kwargs)
    except Exception as err:
        where = user_frame(err, cls)
        raise ConfigValueError(f"{cfg.target}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                               f"{type(err).__name__}: {err}" + (f" (at {where})" if where else "") +
                               "; fix the constructor, or the arguments it is given (model.*, model.kwargs).") from err


def describe(cfg: CustomConfig) -> str:
    return f"{cfg.target}({', '.join(f'{k}={v}' for k, v in declared_factors(cfg).items())})"


# A constructor may use p any way it likes: there p is part of the architecture, not a per-member value.
register_family(Family(CustomConfig, build=build_custom, describe=describe, check=check_custom))
