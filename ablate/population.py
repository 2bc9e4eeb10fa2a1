"""Populations: which variants can train together, and how many fit in memory at once.

The trainer (``train.fit_population``) trains any list of configs that share a ``population_key``; this module
turns a sweep's variants into such populations, each no larger than ``max_size`` and the free memory allow.
(All the variants passed at once are assumed to share the data's shape; ``population_key`` keeps data apart.)
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch

from ablate.config import MLPConfig, PopulationSettings, RunConfig
from ablate.data import Splits
from ablate.models import activations_per_sample, architecture
from ablate.optim import plain_sgd
from ablate.train import resolve_device, torch_dtype


def population_key(cfg: RunConfig) -> tuple:
    """What members of one population must share: the family and its architecture (``models.architecture``: all
    but the per-member keys, so BN's evaluation statistics too), the data's rows (not its augmentation, which is
    per member), the trainer (its probes too), the optimiser kind; for the MLP's stacked path also plain SGD apart
    from SGD with momentum (the two round differently, see ``optim.Optimizer``).

    Everything else (seed, dropout p where the family stacks it, init scale, lr, momentum, betas, weight decay and
    its mode) is per member.
    """
    t = cfg.trainer
    key = (architecture(cfg.model), repr(cfg.data.rows()), t.epochs, t.batch_size, t.device, t.dtype, t.tf32,
           t.eval_batch_size, t.target_val_acc, tuple(t.probes), t.probe_every, t.probe_rows, cfg.optim.name)
    return key + (plain_sgd(cfg.optim),) if isinstance(cfg.model, MLPConfig) else key


@dataclass(frozen=True)
class DataSize:
    """What the memory plan needs of the data: a sample's shape, the classes and the rows."""

    in_shape: tuple[int, ...]
    n_classes: int
    train_rows: int  # each member draws a batch order over them every epoch
    eval_rows: int  # the largest split evaluated at once
    rows: int  # of every split: the data lives on the device once per population

    @classmethod
    def of(cls, splits: Splits) -> "DataSize":
        parts = [p for p in (splits.train, splits.val, splits.test) if p is not None]
        return cls(splits.in_shape, splits.n_classes, len(splits.train), max(len(p) for p in parts),
                   sum(len(p) for p in parts))


_sizes: dict[str, tuple[int, int]] = {}  # a model's (parameters, activations per sample): the same for a sweep


def bytes_per_member(cfg: RunConfig, data: DataSize) -> int:
    """A generous estimate of one member's working memory, from its model built on the meta device: parameters
    with their gradients and two optimiser states, a training batch with what the backward pass keeps, the
    evaluation activations, and its batch order (int64 row indices)."""
    key = repr((cfg.model, data.in_shape, data.n_classes))
    if key not in _sizes:
        _sizes[key] = activations_per_sample(cfg.model, data.in_shape, data.n_classes)
    n_params, per_sample = _sizes[key]
    rows = cfg.trainer.batch_size * 6 + min(data.eval_rows, cfg.trainer.eval_batch_size)
    return _width(cfg) * (4 * n_params + rows * per_sample) + 8 * data.train_rows


def shared_bytes(cfg: RunConfig, data: DataSize) -> int:
    """What a population holds once, whatever its size: the data (samples and int64 labels) on its device."""
    return data.rows * (_width(cfg) * math.prod(data.in_shape) + 8)


def _width(cfg: RunConfig) -> int:
    return torch.finfo(torch_dtype(cfg.trainer.dtype)).bits // 8


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: assume 8 GiB
        return 8 << 30


def by_population_key(cfgs: Sequence[RunConfig], max_size: int) -> list[list[RunConfig]]:
    """The variants by ``population_key`` (first-seen order), each population cut to at most ``max_size`` members."""
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(population_key(cfg), []).append(cfg)
    return [members[i:i + max_size] for members in groups.values() for i in range(0, len(members), max_size)]


def members_that_fit(cfg: RunConfig, data: DataSize, memory_fraction: float) -> int:
    """How many members like ``cfg`` fit in ``memory_fraction`` of its device's free memory now, beside the data
    they share (above 1: no limit, the check skipped on purpose)."""
    if memory_fraction > 1:
        return sys.maxsize
    room = memory_fraction * free_bytes(resolve_device(cfg.trainer.device)) - shared_bytes(cfg, data)
    return max(0, int(room // bytes_per_member(cfg, data)))


def require_memory(cfg: RunConfig, data: DataSize, memory_fraction: float) -> None:
    """Checked before a population starts: a model that cannot fit fails its own runs with this message."""
    if members_that_fit(cfg, data, memory_fraction) < 1:
        need = bytes_per_member(cfg, data) + shared_bytes(cfg, data)
        raise MemoryError(f"one model and its data need about {need / 2**20:.0f} MiB, more than {memory_fraction:.0%} "
                          f"of the free memory on {resolve_device(cfg.trainer.device)}; lower trainer.batch_size or "
                          f"the model's size (model.hidden, model.channels).")


def populations(cfgs: Sequence[RunConfig], settings: PopulationSettings, data: DataSize) -> list[list[RunConfig]]:
    """``by_population_key``, each population also cut to what fits in ``settings.memory_fraction`` of the device's free
    memory (at least one member: ``require_memory`` fails a model that fits nowhere)."""
    chunks = []
    for members in by_population_key(cfgs, len(cfgs)):
        fits = members_that_fit(members[0], data, settings.memory_fraction)
        size = max(1, min(settings.max_size, fits))
        chunks += [members[i:i + size] for i in range(0, len(members), size)]
    return chunks
