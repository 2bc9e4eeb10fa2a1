"""The plan of a sweep: made once from its configs, printed as its first lines, executed by every launcher (this
process, Ray tasks, SLURM jobs, the claims, a search's rounds). The runner executes it; nothing after it decides
any of this.

It says where the variants train (the device), which train together (a population: variants that agree on every
config key that decides training and is not per member, ``population_key``), how each population trains
(vectorised or one member at a time, per family and device, as measured) and how many members fit in memory. Before
any run opens it also reads the data and checks each model against it, so that a bad file or a model that does not
fit its data fails here, recording nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ablate.config.identity import flatten, role
from ablate.config.launch import PopulationSettings
from ablate.config.run import RunConfig
from ablate.engine import augment, models
from ablate.engine.data import cached_splits
from ablate.engine.device import resolve_device
from ablate.engine.families import family_of
from ablate.engine.memory import DataSize, bytes_per_member, free_bytes, members_that_fit, shared_bytes
from ablate.engine.trainer import batch_starts, step_seconds
from ablate.errors import UserError


def population_key(cfg: RunConfig) -> tuple:
    """What members of one population share: every key of the config that decides training, but those members may
    differ in (``run.PER_MEMBER``, and the model keys the family varies per member), and what the family keeps
    apart (``Family.splits``). Derived from the fields, so a new field splits populations by itself."""
    per_member = family_of(cfg.model).per_member
    shared = tuple((key, repr(value)) for key, value in sorted(flatten(cfg).items())
                   if role(cfg, key) not in ("per_member", "not_training")
                   and not (key.startswith("model.") and key[len("model."):] in per_member))
    return shared + tuple((name, repr(value)) for name, value in family_of(cfg.model).splits(cfg))


@dataclass(frozen=True)
class PlannedPopulation:
    cfgs: tuple[RunConfig, ...]
    vectorised: bool  # members in one pass; else one member at a time


@dataclass
class Plan:
    populations: list[PlannedPopulation]
    device: torch.device
    where: str  # "in this process", "as ray tasks, each asking for ..."
    memory_checked: bool  # False: each worker checks its own device's memory before it trains
    memory_fraction: float  # of the device's free memory a population may take
    lines: list[str] = field(default_factory=list)  # what the sweep prints first

    @property
    def cfgs(self) -> list[RunConfig]:
        return [cfg for population in self.populations for cfg in population.cfgs]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def data_sizes(cfgs: Sequence[RunConfig]) -> dict[str, DataSize]:
    """Each data context's size (its splits read and checked), by its rows' config; every model checked against its
    data's shape before any run opens."""
    for model in {repr(c.model): c.model for c in cfgs}.values():
        models.check(model)  # a custom model's contract, before any data is read
    sizes = {}
    for key, data in {repr(c.data.rows()): c.data.rows() for c in cfgs}.items():
        sizes[key] = DataSize.of(cached_splits(data))
    for cfg in {repr((c.model, c.data)): c for c in cfgs}.values():
        size = sizes[repr(cfg.data.rows())]
        models.check_shapes(cfg.model, size.in_shape, size.n_classes)
        augment.check(cfg.data, size.in_shape)
    return sizes


def make_plan(cfgs: Sequence[RunConfig], settings: PopulationSettings, device: Optional[torch.device] = None,
              where: str = "in this process") -> Plan:
    """The plan of these variants. ``device``: where they will train when that is not here (a remote worker's, as
    its task asks for it): memory is then checked by each worker on its own device."""
    if not cfgs:
        raise UserError("no variants to train: the sweep's values expand to nothing (an empty range or list?); "
                        "give each swept key at least one value.")
    sizes = data_sizes(cfgs)
    local = device is None
    device = device or resolve_device(cfgs[0].trainer.device)
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(population_key(cfg), []).append(cfg)
    populations = []
    for members in groups.values():
        vectorised = settings.vectorised
        if vectorised is None:
            vectorised = family_of(members[0].model).vectorised_by_default(device.type)
        size = settings.max_size
        if local:
            size = max(1, min(size, members_that_fit(members[0], sizes[repr(members[0].data.rows())],
                                                     settings.memory_fraction)))
        populations += [PlannedPopulation(tuple(members[i:i + size]), vectorised) for i in range(0, len(members), size)]
    plan = Plan(populations, device, where, memory_checked=local, memory_fraction=settings.memory_fraction)
    plan.lines = _lines(plan, settings, list(groups), sizes)
    return plan


def _lines(plan: Plan, settings: PopulationSettings, keys: list[tuple], sizes: dict[str, DataSize]) -> list[str]:
    """The plan in words: how many, where, how, what keeps populations apart, and the memory."""
    largest = max(len(p.cfgs) for p in plan.populations)
    lines = [f"plan: {len(plan.cfgs)} variants in {len(plan.populations)} population(s) of up to {largest} on "
             f"{plan.device} {plan.where}"]
    for name in dict.fromkeys(type(p.cfgs[0].model).family for p in plan.populations):
        at_once = next(p.vectorised for p in plan.populations if type(p.cfgs[0].model).family == name)
        why = (f"hydra.launcher.vectorise={str(settings.vectorise).lower()}" if settings.vectorised is not None else
               f"auto: measured faster {'vectorised' if at_once else 'one by one'} for {name} on {plan.device.type}")
        lines.append(f"  {name}: {'vectorised' if at_once else 'one member at a time'} ({why})")
    differ = sorted({k for k, _ in set().union(*map(set, keys))} - {k for k, _ in set.intersection(*map(set, keys))}
                    if len(keys) > 1 else set())
    lines.append(f"  populations differ in: {', '.join(differ)}" if differ else
                 "  one population key: members differ only in per-member keys (seed, optim.*, ...)")
    cfg = plan.populations[0].cfgs[0]
    size = sizes[repr(cfg.data.rows())]
    if plan.memory_checked and settings.memory_fraction <= 1:
        lines.append(f"  memory: about {bytes_per_member(cfg, size) / 2**20:.1f} MiB a member beside "
                     f"{shared_bytes(cfg, size) / 2**20:.1f} MiB of data; "
                     f"{members_that_fit(cfg, size, settings.memory_fraction):,} fit in "
                     f"{settings.memory_fraction:.0%} of the free {free_bytes(plan.device) / 2**30:.1f} GiB")
    elif not plan.memory_checked:
        lines.append(f"  memory: about {bytes_per_member(cfg, size) / 2**20:.1f} MiB a member; each worker "
                     f"checks its own device before it trains")
    return lines


def seconds_to_train(plan: Plan, todo: Sequence[RunConfig]) -> float:
    """About how long the plan's variants in ``todo`` take to train here. Per kind of population (family, data, batch
    size, together or one by one) one population's step is timed (``trainer.step_seconds``) and taken per member;
    each population then costs its members' batches over its epochs, and its evaluations at a third of a step's cost
    per row (a forward pass: validation every epoch, then train and test). Recording and probes are not counted."""
    left = {id(c) for c in todo}
    per_member_step: dict[tuple, float] = {}
    total = 0.0
    for population in plan.populations:
        members = [c for c in population.cfgs if id(c) in left]
        if not members:
            continue
        cfg = members[0]
        trainer, splits = cfg.trainer, cached_splits(cfg.data.rows())
        kind = (family_of(cfg.model).name, repr(cfg.data.rows()), trainer.batch_size, population.vectorised)
        if kind not in per_member_step:
            per_member_step[kind] = step_seconds(members, splits, population.vectorised) / len(members)
        step = per_member_step[kind] * len(members)
        evaluated = sum(len(part) for part in (splits.val, splits.train, splits.test) if part is not None)
        val = len(splits.val) if splits.val is not None else 0
        forward_rows = trainer.epochs * val + evaluated
        total += step * (trainer.epochs * len(batch_starts(len(splits.train), trainer.batch_size))
                         + forward_rows / trainer.batch_size / 3)
    return total


def duration(seconds: float) -> str:
    """A duration as a person says it: 40 s, 6 min, 1.5 h."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
