"""Memory: how many members of a population fit on its device beside the data they share, estimated from the model
built once (parameters, activations per sample), never by trying."""

from __future__ import annotations

import collections
import math
import os
import sys
from dataclasses import dataclass

import torch

from ablate.config.run import ModelConfig, RunConfig
from ablate.engine.data import Splits
from ablate.engine.device import resolve_device, torch_dtype
from ablate.engine.models import activations_per_sample


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


_sizes: collections.OrderedDict = collections.OrderedDict()  # the last models' (parameters, activations per sample)


def _model_size(cfg: ModelConfig, in_shape: tuple[int, ...], n_classes: int) -> tuple[int, int]:
    """(parameters, activations per sample) of a model: built once a sweep (the last 64 models are kept)."""
    key = (repr(cfg), in_shape, n_classes)
    if key not in _sizes:
        _sizes[key] = activations_per_sample(cfg, in_shape, n_classes)
        if len(_sizes) > 64:
            _sizes.popitem(last=False)
    return _sizes[key]


def bytes_per_member(cfg: RunConfig, data: DataSize) -> int:
    """A generous estimate of one member's working memory: parameters with their gradients and two optimiser
    states, a training batch with what the backward pass keeps, the evaluation activations, and its batch order
    (int64 row indices)."""
    n_params, per_sample = _model_size(cfg.model, data.in_shape, data.n_classes)
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


def cut_to_memory(members: list[RunConfig], data: DataSize, memory_fraction: float) -> list[list[RunConfig]]:
    """A population cut into parts that each fit in ``memory_fraction`` of its device's free memory now (at least
    one member a part: ``require_memory`` fails a model that fits nowhere)."""
    size = max(1, min(len(members), members_that_fit(members[0], data, memory_fraction)))
    return [members[i:i + size] for i in range(0, len(members), size)]
