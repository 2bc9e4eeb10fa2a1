"""Populations: which variants can train together, and how many fit in memory at once.

The trainer (``train.fit_population``) trains any list of configs that share a ``group_key``; this module
turns a sweep's variants into such groups, each no larger than ``max_size`` and the free memory allow.
(All the variants passed at once are assumed to share the data's shape; ``group_key`` keeps data apart.)
"""

from __future__ import annotations

import os
from typing import Sequence

import torch

from ablate.config import PopulationSettings, RunConfig
from ablate.train import plain_sgd, resolve_device, torch_dtype


def group_key(cfg: RunConfig) -> tuple:
    """What members of one population must share: the data, the architecture, the trainer, the optimiser kind
    (plain SGD apart from SGD with momentum: the two round differently, see ``train.Optimizer``).

    Everything else (seed, dropout p, init scale, lr, momentum, betas, weight decay and its mode) is per member.
    """
    m, t = cfg.model, cfg.trainer
    return (repr(cfg.data), tuple(m.hidden), m.bn, m.bn_eps, m.bn_momentum, t.epochs, t.batch_size, t.device,
            t.dtype, t.eval_batch_size, t.target_val_acc, cfg.optim.name, plain_sgd(cfg.optim))


def bytes_per_member(cfg: RunConfig, n_features: int, n_classes: int, n_eval_rows: int) -> int:
    """A generous estimate of one member's working memory: parameters with their gradients and two optimiser
    states, a training batch with the activations the backward pass keeps, and the evaluation activations."""
    widths = [n_features, *cfg.model.hidden, n_classes]
    n_params = sum(a * b + b for a, b in zip(widths, widths[1:])) + 4 * sum(cfg.model.hidden)
    rows = cfg.trainer.batch_size * 6 + min(n_eval_rows, cfg.trainer.eval_batch_size)
    return torch.finfo(torch_dtype(cfg.trainer.dtype)).bits // 8 * (4 * n_params + rows * sum(widths))


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: assume 8 GiB
        return 8 << 30


def grouped(cfgs: Sequence[RunConfig], max_size: int) -> list[list[RunConfig]]:
    """Group by ``group_key`` (first-seen order), each group cut to at most ``max_size`` members."""
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in cfgs:
        groups.setdefault(group_key(cfg), []).append(cfg)
    return [members[i:i + max_size] for members in groups.values() for i in range(0, len(members), max_size)]


def members_that_fit(cfg: RunConfig, n_features: int, n_classes: int, n_eval_rows: int,
                     memory_fraction: float) -> int:
    """How many members like ``cfg`` fit in ``memory_fraction`` of its device's free memory now."""
    need = bytes_per_member(cfg, n_features, n_classes, n_eval_rows)
    return int(memory_fraction * free_bytes(resolve_device(cfg.trainer.device)) // need)


def require_memory(cfg: RunConfig, n_features: int, n_classes: int, n_eval_rows: int, memory_fraction: float) -> None:
    """Checked before a group starts: a model that cannot fit fails its own runs with this message."""
    if members_that_fit(cfg, n_features, n_classes, n_eval_rows, memory_fraction) < 1:
        need = bytes_per_member(cfg, n_features, n_classes, n_eval_rows)
        raise MemoryError(f"one model needs about {need / 2**20:.0f} MiB, more than {memory_fraction:.0%} of the "
                          f"free memory on {resolve_device(cfg.trainer.device)}; lower trainer.batch_size or "
                          f"model.hidden.")


def populations(cfgs: Sequence[RunConfig], settings: PopulationSettings, n_features: int, n_classes: int,
                n_eval_rows: int) -> list[list[RunConfig]]:
    """``grouped``, with each group also cut to what fits in ``settings.memory_fraction`` of the device's free
    memory (at least one member: ``require_memory`` fails a model that fits nowhere)."""
    chunks = []
    for members in grouped(cfgs, len(cfgs)):
        fits = members_that_fit(members[0], n_features, n_classes, n_eval_rows, settings.memory_fraction)
        size = max(1, min(settings.max_size, fits))
        chunks += [members[i:i + size] for i in range(0, len(members), size)]
    return chunks
