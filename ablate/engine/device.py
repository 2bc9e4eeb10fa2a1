"""Where and in what numbers a run trains: the device ``trainer.device`` names, the dtype, and TF32, chosen
explicitly and restored after training (a notebook's own settings are its own)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ablate.config.run import Device, DType, RunConfig
from ablate.errors import ConfigValueError


def resolve_device(device: Device) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    available = {"cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                 "cpu": True}
    if device == Device.auto:
        return torch.device(next(name for name, ok in available.items() if ok))
    if not available[device.value]:
        raise ConfigValueError(f"trainer.device={device.value} is not available on this machine; "
                               f"use trainer.device=auto or trainer.device=cpu.")
    return torch.device(device.value)


def torch_dtype(dtype: DType) -> torch.dtype:
    return {DType.float32: torch.float32, DType.float64: torch.float64}[dtype]


def numeric_mode(cfg: RunConfig, device: torch.device) -> str:
    """What decides a run's rounding besides its config's numbers, as recorded with it: dtype, device, TF32 on CUDA,
    the threads on a CPU (they split a sum differently: losses differ in the 7th digit between 1 and 2 threads)."""
    if device.type == "cuda":
        return f"{cfg.trainer.dtype.value} on cuda, tf32 {'on' if cfg.trainer.tf32 else 'off'}"
    threads = f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else ""
    return f"{cfg.trainer.dtype.value} on {device.type}{threads}"


@contextlib.contextmanager
def numeric_mode_set(cfg: RunConfig) -> Iterator[None]:
    """TF32 chosen explicitly for matmuls and cuDNN convolutions within the block, never left to PyTorch's defaults
    (which differ: batched matmuls in FP32, cuDNN convolutions in TF32); the process's own settings afterwards."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.trainer.tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
