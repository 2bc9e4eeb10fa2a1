"""``hydra/launcher=population``: a sweep's variants planned once and trained as populations in this process; with
``dispatch: ray`` or ``dispatch: submitit`` (presets ``population_ray``, ``population_slurm``,
``population_submitit_local``) each population is one Ray task or one submitit job instead.

Hydra finds launchers only under the ``hydra_plugins`` package, so this adapter lives here; the work is
``ablate.execution.sweeps.run_sweep`` on the configs ablate's sweeper composed and checked.
"""

from dataclasses import dataclass
from typing import Any, List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from ablate.config.launch import LauncherSettings


@dataclass
class PopulationLauncherConf(LauncherSettings):
    _target_: str = "hydra_plugins.ablate_launchers.population_launcher.PopulationLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="ablate")


class PopulationLauncher(Launcher):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # LauncherSettings' fields; checked at launch, where errors end in one line

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch_sweep(self, jobs: Sequence[List[str]], cfgs: Sequence[Any], definition: List[str],
                     factors: List[str], cache: Any) -> List[JobReturn]:
        """Train the checked configs of a sweep's jobs; each member is a finished job for Hydra."""
        from ablate.execution.sweeps import end_with_failures, run_sweep

        settings = LauncherSettings(**{key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value)
                                       else value for key, value in self.settings.items()})  # ${hydra.sweep.dir} here
        setup_globals()
        sweep, results, failed = run_sweep(cfgs, definition, factors, settings)
        returns = [JobReturn(overrides=list(job), cfg=cfg, hydra_cfg=cache.job(job)[0], task_name="ablate",
                             working_dir=str(self.config.hydra.sweep.dir), status=JobStatus.COMPLETED,
                             _return_value=result.value) for job, cfg, result in zip(jobs, cfgs, results)]
        end_with_failures(sweep, failed)
        return returns

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Under a sweeper other than ablate's: the jobs it hands over composed and trained the same way."""
        from ablate.execution.compose import ComposeCache
        from ablate.execution.sweeps import grid, sweep_definition

        cache = ComposeCache.for_sweep(self.hydra_context.config_loader, self.config)
        jobs = [list(job) for job in job_overrides]
        definition = sweep_definition(self.config)
        return self.launch_sweep(jobs, [cache.run_config(job) for job in jobs], definition, grid(definition)[1], cache)
