"""Randomness that belongs to the member: every draw a member makes comes from streams keyed by its own seed, never
by the population it trains in, its position there, or the launcher.

- Initialisation: the generator seeded with the seed while the member's model is built (``models.seeded``).
- Batch order: a ``torch.Generator`` seeded with the seed, on the data's device (``trainer.start``).
- Augmentation: ``counter_uniform`` keyed by the seed, counting steps (``augment.Augmenter``).
- Dropout masks, two generators with the same rule:
  - ``MemberUniform`` (the MLP's stacked path): one generator per member, each drawing its own slice of a [K, ...]
    tensor; numpy's PCG64 on the CPU (three times as fast as torch's Mersenne Twister), torch's Philox elsewhere.
    Measured on a 2-core CPU: 1.1x the cost of one shared draw for the whole population.
  - ``counter_uniform`` (``ablate.nn.Dropout``, so any model, inside ``vmap`` too): a counter-based hash
    (splitmix64's finaliser) of (the layer's key, its step, the element's index), in int64 tensor ops. ``vmap``
    cannot call a generator per member; a hash of per-member buffers needs none. About 2x torch.rand on a CPU,
    paid only by the generic path (measured there: 4-15% of a small CNN's or MLP's step, bench/families.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

DROPOUT = 1  # the purpose a stream serves, mixed into its key: streams for different purposes never overlap
AUGMENT = 2  # data.augment's crops and flips (ablate/augment.py)


def stream_key(seed: int, purpose: int, index: int = 0) -> int:
    """A 62-bit key for one stream of one member (``index``: which layer), from numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, purpose, index]).generate_state(1, np.uint64)[0] >> np.uint64(2))


class MemberUniform:
    """Uniform [0, 1) draws for K members, member k's slice from its own generator: a member's draws are those of
    its single run, whatever else trains beside it."""

    def __init__(self, seeds: Sequence[int], purpose: int, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        keys = [stream_key(seed, purpose) for seed in seeds]
        if device.type == "cpu":
            self.numpy = [np.random.default_rng(key) for key in keys]
            self.numpy_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
        else:
            self.torch = [torch.Generator(device=device).manual_seed(key) for key in keys]

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        """[K, *shape]: each member's own draw of ``shape``."""
        if self.device.type == "cpu":
            out = np.empty((len(self.numpy), *shape), dtype=self.numpy_dtype)
            for generator, row in zip(self.numpy, out):
                generator.random(tuple(shape), dtype=self.numpy_dtype, out=row)
            return torch.from_numpy(out)
        out = torch.empty((len(self.torch), *shape), device=self.device, dtype=self.dtype)
        for generator, row in zip(self.torch, out):
            row.uniform_(generator=generator)
        return out


_GOLDEN, _MIX1, _MIX2 = -7046029254386353131, -4658895280553007687, -7723592293110705685  # splitmix64, as int64


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's is arithmetic: the sign bit would spread)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _finalise(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's output function: every input bit moves every output bit."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def counter_uniform(key: torch.Tensor, step: torch.Tensor, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """Uniform [0, 1) values of ``shape``, a pure function of (key, step, element index): splitmix64 over a counter
    whose start is a hash of (key, step), each 64-bit output giving two values of 24 bits (a hash costs more than
    the split: 22% faster than one value a hash). ``key`` and ``step`` are int64 scalars (per member under ``vmap``);
    24 bits a value, so the same draws are exact in float32 and float64."""
    n = int(np.prod(shape))
    start = _finalise(_finalise(key + _GOLDEN) + step * _GOLDEN)
    z = _finalise(start + torch.arange(1, (n + 1) // 2 + 1, device=key.device, dtype=torch.int64) * _GOLDEN)
    bits = torch.stack([_shift_right(z, 40), (z >> 16) & 0xFFFFFF], -1).flatten()[:n]
    return bits.to(dtype).view(*shape) * (1.0 / (1 << 24))
