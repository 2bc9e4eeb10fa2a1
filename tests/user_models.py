"""Models of the kind a user writes, for the contract tests (the examples/ model is tested too)."""

import os
import signal
import time

import torch
from torch import nn

from ablate.nn import Dropout, block


class Tiny(nn.Module):
    """Takes bn, dropout and activation: a conv block and a head."""

    def __init__(self, in_shape, n_classes, bn="pre", dropout=0.0, activation="relu"):
        super().__init__()
        self.body = nn.Sequential(block(nn.Conv2d(in_shape[0], 4, 3, padding=1), bn, dropout, nn.MaxPool2d(2),
                                        activation=activation),
                                  nn.Flatten(), nn.Linear(4 * (in_shape[1] // 2) * (in_shape[2] // 2), n_classes))

    def forward(self, x):
        return self.body(x)


class NoDropout(nn.Module):
    """Declares bn only: setting model.dropout must be an error, never a silent no-op."""

    def __init__(self, in_shape, n_classes, bn="pre"):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), *block(nn.Linear(int(torch.tensor(in_shape).prod()), 8), bn),
                                  nn.Linear(8, n_classes))

    def forward(self, x):
        return self.body(x)


class ScaledLinear(nn.Module):
    """A custom layer holding its own parameters: a [out, in] weight (decayed) and a [out] scale (never)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.scale = nn.Parameter(torch.ones(n_out))

    def forward(self, x):
        return (x @ self.weight.t()) * self.scale


class WithCustomLayer(nn.Module):
    def __init__(self, in_shape, n_classes, width=6):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), ScaledLinear(int(torch.tensor(in_shape).prod()), width), nn.ReLU(),
                                  nn.BatchNorm1d(width), nn.Linear(width, n_classes))

    def forward(self, x):
        return self.body(x)


class WrongOutput(nn.Module):
    def __init__(self, in_shape, n_classes):
        super().__init__()
        self.head = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes + 1)

    def forward(self, x):
        return self.head(x.flatten(1))


class Raises(nn.Module):
    def __init__(self, in_shape, n_classes, bn="pre"):
        super().__init__()
        raise ValueError("needs at least 3 channels")


class DataDependent(nn.Module):
    """Control flow on the data's values: vmap cannot take it, so its members train one by one."""

    def __init__(self, in_shape, n_classes, dropout=0.0):
        super().__init__()
        self.head = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        h = self.head(self.dropout(x.flatten(1)))
        return h if h.sum() > float("-inf") else -h  # a Python bool of a tensor: always h, but vmap must refuse


class TorchDropout(nn.Module):
    """Dropout from torch itself (``nn.Dropout``), as most users' models have it."""

    def __init__(self, in_shape, n_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), 16), nn.ReLU(),
                                  nn.Dropout(0.4), nn.Linear(16, n_classes))

    def forward(self, x):
        return self.body(x)


class OutOfMemoryUnderVmap(nn.Module):
    """The contract's check (the first forward on a batch of two in the process) passes; the next such forward,
    vmap's probe, runs out of memory, as a large population on a GPU would. Tests reset ``forwards``."""

    forwards = 0  # of the class: the check's instance and the population's template are different objects

    def __init__(self, in_shape, n_classes):
        super().__init__()
        self.head = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes)

    def forward(self, x):
        if x.shape[0] == 2:
            OutOfMemoryUnderVmap.forwards += 1
            if OutOfMemoryUnderVmap.forwards > 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.head(x.flatten(1))


class KillsItself(nn.Module):
    """After ``kill_after`` training steps its process dies as a lost node's would (SIGKILL: nothing cleaned up);
    after ``crash_after`` steps it asks for memory no machine has (a real allocation error, raised inside the
    worker's population, past the contract's check); 0 never."""

    def __init__(self, in_shape, n_classes, kill_after=200, crash_after=0):
        super().__init__()
        self.head = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes)
        self.kill_after, self.crash_after, self.steps = kill_after, crash_after, 0

    def forward(self, x):
        if self.training:
            self.steps += 1
            if self.steps == self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.steps == self.crash_after:
                torch.empty(10**14, dtype=torch.uint8)  # 100 TB
        return self.head(x.flatten(1))


class Slow(nn.Module):
    """A linear head that takes ``step_s`` seconds a training step, asleep: long training at no CPU (a remote task's
    progress reports, seen before it ends)."""

    def __init__(self, in_shape, n_classes, step_s=0.01):
        super().__init__()
        self.head = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes)
        self.step_s = step_s

    def forward(self, x):
        if self.training:
            time.sleep(self.step_s)
        return self.head(x.flatten(1))
