"""``hydra/launcher=population``: a sweep's variants trained as populations in this process; with
``dispatch: ray`` or ``dispatch: submitit`` (presets ``population_ray``, ``population_slurm``,
``population_submitit_local``) each population is one Ray task or one submitit job instead.

Hydra finds launchers only under the ``hydra_plugins`` package, so this adapter lives here; the work is
``ablate.sweeps.launch_populations``, and each job's config comes from ``ablate.compose.ComposeCache``. Each
member is reported to Hydra's callbacks as a finished job (progress bar, summary).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ablate.config import PopulationSettings


@dataclass
class PopulationLauncherConf(PopulationSettings):
    _target_: str = "hydra_plugins.ablate_launchers.population_launcher.PopulationLauncher"
    dispatch: str = "local"  # local (this process), ray (a Ray task per population), submitit (a job per population)
    # GPUs a remote task asks for when its runs are on CUDA (trainer.device=cuda, or auto where this machine has one):
    # Ray takes fractions (0.25: four populations share a GPU); a SLURM job asks for ceil(gpus_per_task) GPUs
    gpus_per_task: float = 1.0
    ray: Dict[str, Any] = field(default_factory=lambda: {"init": {"address": None}, "remote": {"num_cpus": 1}})
    submitit: Dict[str, Any] = field(default_factory=lambda: {"folder": "${hydra.sweep.dir}/.submitit/%j",
                                                              "cluster": "local", "parameters": {}})


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="ablate")


class PopulationLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # PopulationLauncherConf's fields; checked at launch, where errors end cleanly

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from ablate.compose import ComposeCache

        self.hydra_context, self.config = hydra_context, config
        self.compose_cache = ComposeCache.for_sweep(hydra_context.config_loader, config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra prints any exception from a launcher as a traceback: a problem the user fixes (a bad value, a
        missing data file, a device this machine lacks) ends the sweep with its one-line message instead."""
        from pathlib import Path

        from ablate.cli import user_errors_end_the_command
        from ablate.sweeps import launch_populations
        from hydra_plugins.ablate_launchers.callback import AblateCallback

        with user_errors_end_the_command():
            setup_globals()  # the sweep's progress bar and summary report; errors still reach the console
            sweep_dir = str(self.config.hydra.sweep.dir)
            Path(sweep_dir).mkdir(parents=True, exist_ok=True)
            jobs = [(list(overrides), *self.compose_cache.job(overrides)) for overrides in job_overrides]
            returns: dict[int, JobReturn] = {}

            def on_result(cfg: Any, result: Any) -> None:
                overrides, composed = by_cfg[id(cfg)]
                returns[id(cfg)] = JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=composed, task_name="ablate",
                                             working_dir=sweep_dir,
                                             status=JobStatus.COMPLETED, _return_value=result.value)
                self.hydra_context.callbacks.on_job_end(config=composed, job_return=returns[id(cfg)])

            by_cfg = {id(cfg): (overrides, composed) for overrides, composed, cfg in jobs}
            settings = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
                        for key, value in self.settings.items()}  # ${hydra.sweep.dir} resolved where it lives
            sweep = AblateCallback.sweep_of(self.hydra_context.callbacks)
            launch_populations([cfg for _, _, cfg in jobs], settings, sweep, on_result)
            return [returns[id(cfg)] for _, _, cfg in jobs]
