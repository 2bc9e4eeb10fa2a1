"""How variants are launched: how many train at once (``PopulationSettings``: the population launcher's
``hydra.launcher.*``, the claims' ``judge.population``, these defaults for searches), and where the population
launcher sends them (``LauncherSettings``: this process, Ray tasks or submitit jobs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from ablate.errors import require


@dataclass
class PopulationSettings:
    """How many variants train at once."""

    max_size: int = 144  # members trained at once, at most (fewer where memory is short)
    memory_fraction: float = 0.5  # of the device's free memory a population may take; above 1 skips the check
    vectorise: Any = "auto"  # true: members in one vectorised pass; false: one by one; auto: where measured faster

    def __post_init__(self) -> None:
        require(self.vectorise in (True, False, "auto"), "hydra.launcher.vectorise", self.vectorise,
                "true, false or auto")
        require(self.max_size >= 1, "hydra.launcher.max_size", self.max_size, "at least 1")
        require(self.memory_fraction > 0, "hydra.launcher.memory_fraction", self.memory_fraction,
                "positive (above 1 lets populations past the memory check)")

    @property
    def vectorised(self) -> Optional[bool]:
        """True or False as set; None for auto (the plan decides per family and device, as measured)."""
        return None if self.vectorise == "auto" else self.vectorise


class Dispatch(str, Enum):
    local = "local"  # this process
    ray = "ray"  # a Ray task per population
    submitit = "submitit"  # a submitit job per population (SLURM, or local processes)


@dataclass
class LauncherSettings(PopulationSettings):
    """``hydra/launcher=population`` and its presets (conf/hydra/launcher/population_*.yaml)."""

    dispatch: Dispatch = Dispatch.local
    # GPUs a remote task asks for when its runs are on CUDA (trainer.device=cuda, or auto where this machine has one):
    # Ray takes fractions (0.25: four populations share a GPU); a SLURM job asks for ceil(gpus_per_task) GPUs
    gpus_per_task: float = 1.0
    ray: dict[str, Any] = field(default_factory=lambda: {"init": {"address": None}, "remote": {"num_cpus": 1}})
    submitit: dict[str, Any] = field(default_factory=lambda: {"folder": "${hydra.sweep.dir}/.submitit/%j",
                                                              "cluster": "local", "parameters": {}})

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.dispatch in {d.value for d in Dispatch}, "hydra.launcher.dispatch", self.dispatch,
                f"one of {', '.join(d.value for d in Dispatch)}")
        self.dispatch = Dispatch(self.dispatch)
        require(self.gpus_per_task >= 0, "hydra.launcher.gpus_per_task", self.gpus_per_task, "0 or more")

    def population(self) -> PopulationSettings:
        return PopulationSettings(self.max_size, self.memory_fraction, self.vectorise)
