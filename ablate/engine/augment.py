"""Augmentation on the device (``data.augment=[crop,flip]``): each member's training batch changed sample by sample
inside the population's step, where the batch already is (no host round trip, no DataLoader workers).

Each member draws from its own stream (``streams.counter_uniform`` keyed by its seed and the step), so members of
one population may differ in what they apply, and a member's samples are its single run's. Evaluation never
augments. Images only: samples [channels, height, width].
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ablate.config.run import Augment, DataConfig, RunConfig, Source
from ablate.errors import ConfigValueError
from ablate.engine.streams import AUGMENT, counter_uniform, stream_key


def check(data: DataConfig, in_shape: Sequence[int]) -> None:
    """Once the data's shape is known, before any run opens: augmentation needs images."""
    if data.augment and len(in_shape) != 3:
        raise ConfigValueError(f"data.augment={[a.value for a in data.augment]} works on images [channels, height, "
                               f"width]; data={data.name} gives samples of shape {list(in_shape)}. Drop data.augment, "
                               f"or give the data its image shape (a CSV of images: data.shape=[1,28,28]).")


class Augmenter:
    """The population's augmentation: per member whether it crops and flips, and its stream's key."""

    def __init__(self, cfgs: Sequence[RunConfig], device: torch.device) -> None:
        def flags(kind: Augment) -> torch.Tensor:
            return torch.tensor([kind in c.data.augment for c in cfgs], device=device)

        self.crop, self.flip = flags(Augment.crop), flags(Augment.flip)
        self.any_crop, self.any_flip = bool(self.crop.any()), bool(self.flip.any())
        self.keys = torch.tensor([stream_key(c.seed_of(Source.noise), AUGMENT) for c in cfgs], dtype=torch.int64,
                                 device=device)
        self.padding = cfgs[0].data.crop_padding  # shared: part of the data's rows (DataConfig.rows)

    @classmethod
    def of(cls, cfgs: Sequence[RunConfig], device: torch.device) -> Optional["Augmenter"]:
        """None when no member augments: training then pays nothing for it."""
        return cls(cfgs, device) if any(c.data.augment for c in cfgs) else None

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """x [K, B, C, H, W], member k's batch -> the same, each sample shifted and flipped as member k draws."""
        k, b, channels, height, width = x.shape
        at = torch.tensor(step, dtype=torch.int64, device=x.device)
        u = torch.vmap(lambda key: counter_uniform(key, at, (b, 3), torch.float32))(self.keys)  # [K, B, 3]
        if self.any_crop:
            p = self.padding
            offsets = (u[..., :2] * (2 * p + 1)).long().clamp_(max=2 * p)  # [K, B, 2]: where the crop starts
            offsets = torch.where(self.crop[:, None, None], offsets, p)  # p: the image as it was
            padded = F.pad(x, (p, p, p, p))
            rows = offsets[..., 0, None] + torch.arange(height, device=x.device)  # [K, B, H]
            columns = offsets[..., 1, None] + torch.arange(width, device=x.device)  # [K, B, W]
            x = padded.gather(3, rows[:, :, None, :, None].expand(k, b, channels, height, width + 2 * p))
            x = x.gather(4, columns[:, :, None, None, :].expand(k, b, channels, height, width))
        if self.any_flip:
            flipped = self.flip[:, None] & (u[..., 2] < 0.5)  # [K, B]
            x = torch.where(flipped[..., None, None, None], x.flip(-1), x)
        return x
