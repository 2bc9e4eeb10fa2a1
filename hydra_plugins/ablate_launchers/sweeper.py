"""``hydra/sweeper=ablate`` (the default in conf/config.yaml): a sweep's grid, checked whole before anything is written.

It expands the grid as Hydra's basic sweeper does (the command line's sweeps and ``hydra.sweeper.params``, in the
same order), composes every job once per distinct set of group choices and checks each distinct value
(``runs.compose.ComposeCache``: Hydra's sweeper would compose each job, seconds to minutes for a large grid), reads
the data and checks each model against it; only then does the sweep's MLflow parent run open. The population
launcher then trains the checked configs; any other launcher (basic, joblib, Ray, submitit) runs one job per
variant, each job told its sweep through its overrides (``tracking.sweep_id``, ``tracking.parent_run_id``).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class AblateSweeperConf:
    _target_: str = "hydra_plugins.ablate_launchers.sweeper.AblateSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="ablate", node=AblateSweeperConf, provider="ablate")


class AblateSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None) -> None:
        self.max_batch_size, self.params = max_batch_size, params or {}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from ablate.execution.compose import ComposeCache
        from ablate.execution.sweeps import grid, sweep_definition
        from hydra_plugins.ablate_launchers.population_launcher import PopulationLauncher

        loader = self.hydra_context.config_loader
        jobs, factors = grid([f"{k}={v}" for k, v in self.params.items()] + list(arguments), loader)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        cache = ComposeCache.for_sweep(loader, self.config)
        cfgs = [cache.run_config(job) for job in jobs]  # a bad value ends the sweep here, nothing written
        definition = sweep_definition(self.config)
        if isinstance(self.launcher, PopulationLauncher):
            return self.launcher.launch_sweep(jobs, cfgs, definition, factors, cache)
        return self._one_job_per_variant(jobs, cfgs, definition, factors)

    def _one_job_per_variant(self, jobs: Sequence[List[str]], cfgs: Sequence[Any], definition: List[str],
                             factors: List[str]) -> Any:
        from ablate.config.launch import PopulationSettings
        from ablate.engine.plan import data_sizes, make_plan
        from ablate.execution.runner import announce_estimate
        from ablate.errors import UserError
        from ablate.execution.sweeps import Sweep, end_with_failures
        from ablate.tracking.tracker import RunKind, Tracker
        from hydra_plugins.ablate_launchers.callback import AblateCallback

        if not cfgs:
            raise UserError("no variants to train: the sweep's values expand to nothing (an empty range or list?); "
                            "give each swept key at least one value.")
        data_sizes(cfgs)  # the data read, each model checked against it, before the parent run opens
        if type(self.launcher).__name__ == "RayLauncher":  # Ray joined before the sweep opens, a failure one line
            from ablate.execution.scale import start_ray

            start_ray(OmegaConf.to_container(self.config.hydra.launcher.ray.init, resolve=True))
        sweep = Sweep(Tracker(cfgs[0].tracking), definition, len(cfgs), factors)
        sweep.announce(f"plan: {len(cfgs)} variants, one {type(self.launcher).__name__} job each")
        if type(self.launcher).__name__ == "BasicLauncher":  # one after another in this process: their sum
            found = sweep.tracker.finished(cfgs, sweep.sweep_id, RunKind.train)
            todo = [c for c in cfgs if found.reusable(c) is None]  # a resumed sweep: what is left
            if todo:
                announce_estimate(make_plan(todo, PopulationSettings(max_size=1)), todo, sweep.announce)
        AblateCallback.follow(self.hydra_context.callbacks, sweep)
        size = self.max_batch_size or len(jobs)
        with sweep.lifecycle():
            returns = [self.launcher.launch([[*job, *sweep.ref.as_overrides()] for job in jobs[i:i + size]],
                                            initial_job_idx=i) for i in range(0, len(jobs), size)]
            failed = sweep.close()
        end_with_failures(sweep, failed)
        return returns
