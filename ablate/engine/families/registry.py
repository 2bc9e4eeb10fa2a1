"""The registry of model families (the pattern of timm's ``register_model``): one entry says everything ablate needs
to know about a kind of model, and every part that needs it (the configs Hydra validates, ``describe``, the plan, the
trainer) reads it here. A family is one file: its config, its builder, and a ``register_family`` call.

    @dataclass
    class ToyConfig(ModelConfig):
        family: ClassVar[str] = "toy"
        switches: ClassVar[frozenset[str]] = frozenset({"dropout"})   # honoured; model.bn=... is then an error
        width: int = 8

    register_family(Family(ToyConfig, build=lambda cfg, in_shape, n_classes: ...))

Nothing here imports torch: a family's builder imports it when it builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Optional

from ablate.config.run import ModelConfig, RunConfig, SWITCHES
from ablate.errors import ConfigValueError


def describe_fields(cfg: ModelConfig) -> str:
    """A family's one line by default: its name, the switches set, then its own settings."""
    own = [f.name for f in fields(cfg) if f.name not in {g.name for g in fields(ModelConfig)}]
    parts = [f"{name}={_text(getattr(cfg, name))}" for name in (*SWITCHES, *own) if getattr(cfg, name) is not None]
    return f"{cfg.family} " + ", ".join(parts) if parts else cfg.family


def _text(value: Any) -> str:
    return getattr(value, "value", value) if not isinstance(value, float) else f"{value:g}"


@dataclass(frozen=True)
class Family:
    """What ablate needs to know about one kind of model.

    - ``config``: its ModelConfig subclass (``family`` names it: ``model=<name>``; ``switches``: what it honours).
    - ``build(cfg, in_shape, n_classes)``: the readable ``nn.Module`` (ablate seeds it and scales its weights).
    - ``describe(cfg)``: one line for the console.
    - ``stack(cfgs, init_seeds, noise_seeds, in_shape, n_classes, device, dtype)``: a population path of its own
      (each member initialised from its init seed, its dropout masks from its noise seed; the MLP's
      hand-written ``StackedMLP``); None: the generic one (``engine.vmapped``: any module under ``torch.func``).
    - ``per_member``: model keys that members of one population may differ in (the rest is the architecture).
    - ``check(cfg)``: what can be checked before any data is read (a custom model's contract).
    - ``splits(cfg)``: what else keeps members apart, as (name, value) pairs (the MLP's fused plain-SGD update
      rounds differently from the unfused one).
    """

    config: type[ModelConfig]
    build: Callable[..., Any]
    describe: Callable[[Any], str] = describe_fields
    stack: Optional[Callable[..., Any]] = None
    per_member: frozenset[str] = field(default_factory=lambda: frozenset({"init_scale"}))
    check: Optional[Callable[[Any], None]] = None
    splits: Callable[[RunConfig], tuple] = lambda cfg: ()

    @property
    def name(self) -> str:
        return self.config.family

    def vectorised_by_default(self, device_type: str) -> bool:
        """Whether K members train faster as one population than one by one, as measured (bench/families.py): a
        family's own stacked path everywhere; the generic path on CUDA, where small kernels are launch-bound, not on
        a CPU."""
        return self.stack is not None or device_type == "cuda"


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add (or replace) a family: ``model=<family.name>`` then composes to its config and trains with it."""
    if not family.config.family:
        raise ValueError(f"{family.config.__name__} names no family: give it `family: ClassVar[str] = \"...\"`")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family by name (ablate's own are registered when ``ablate.engine.families`` is imported)."""
    return dict(_FAMILIES)


def family_of(cfg: ModelConfig) -> Family:
    found = _FAMILIES.get(type(cfg).family)
    if found is None or not isinstance(cfg, found.config):
        raise ConfigValueError(f"model={type(cfg).family or type(cfg).__name__} is not a registered family "
                               f"(known: {', '.join(sorted(_FAMILIES))}): register it with "
                               f"ablate.engine.families.register_family before composing.")
    return found
