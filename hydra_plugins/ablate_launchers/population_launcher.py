"""``hydra/launcher=population``: a sweep's variants trained as populations in this process; with
``dispatch: ray`` or ``dispatch: submitit`` (presets ``population_ray``, ``population_slurm``,
``population_submitit_local``) each population group is one Ray task or one submitit job instead (``ablate.scale``).

Hydra finds launchers only under the ``hydra_plugins`` package, so this thin adapter lives here; the work is
``ablate.runner.train_and_log_all``: skip finished variants, group the rest by what they must share, cut the
groups to ``max_size`` members and to the free memory, train each group at once, log every member as its own
MLflow run. Each member is reported to Hydra's callbacks as a finished job (progress bar, summary).

Composing a config costs Hydra a few hundred milliseconds, far more than training a member's share of a
population, so a config is composed once per distinct set of config-group choices and each job's value
overrides (``model.dropout=0.3``) are merged into it, checked by the same typed schema (``sweeper.py``).
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.ablate_launchers.sweeper import split_overrides


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.ablate_launchers.population_launcher.PopulationLauncher"
    max_size: int = 144  # members trained at once, at most (fewer where memory is short)
    memory_fraction: float = 0.5  # of the device's free memory a population may take
    dispatch: str = "local"  # local (this process), ray (a Ray task per group), submitit (a job per group)
    ray: Dict[str, Any] = field(default_factory=lambda: {"init": {"address": None}, "remote": {"num_cpus": 1}})
    submitit: Dict[str, Any] = field(default_factory=lambda: {"folder": "${hydra.sweep.dir}/.submitit/%j",
                                                              "cluster": "local", "parameters": {}})


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="ablate")


class PopulationLauncher(Launcher):
    def __init__(self, max_size: int = 144, memory_fraction: float = 0.5, dispatch: str = "local",
                 ray: Any = None, submitit: Any = None) -> None:
        self.max_size, self.memory_fraction, self.dispatch = max_size, memory_fraction, dispatch
        self.options = {"ray": ray, "submitit": submitit}.get(dispatch)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra prints any exception from a launcher as a traceback: a problem the user fixes (a bad value, a
        missing data file, a device this machine lacks) ends the sweep with its one-line message instead."""
        from ablate import user_errors_end_the_command

        with user_errors_end_the_command():
            return self._launch(job_overrides)

    def _launch(self, job_overrides: Sequence[Sequence[str]]) -> Sequence[JobReturn]:
        from ablate.config import require, typed_node
        from ablate.runner import train_and_log_all

        # Checked here, not in __init__, where Hydra would wrap the error in its own report.
        require(self.max_size >= 1, "hydra.launcher.max_size", self.max_size, "at least 1")
        require(self.memory_fraction > 0, "hydra.launcher.memory_fraction", self.memory_fraction,
                "positive (above 1 lets groups past the memory check)")
        require(self.dispatch in ("local", "ray", "submitit"), "hydra.launcher.dispatch", self.dispatch,
                "one of local, ray, submitit")
        setup_globals()  # the sweep's progress bar and summary report; errors still reach the console
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        loader = self.hydra_context.config_loader
        composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}
        jobs: list[tuple[list[str], DictConfig, Any]] = []
        for overrides in job_overrides:
            groups, values = split_overrides(loader, overrides)
            if groups not in composed:
                sweep_config = loader.load_sweep_config(self.config, list(groups))
                composed[groups] = sweep_config, typed_node(sweep_config)
            sweep_config, node = composed[groups]
            patch = OmegaConf.create()
            for key, value in values:
                OmegaConf.update(patch, key, value, force_add=True)
            jobs.append((list(overrides), sweep_config, OmegaConf.to_object(OmegaConf.merge(node, patch))))
        by_cfg = {id(cfg): (overrides, sweep_config) for overrides, sweep_config, cfg in jobs}
        returns: dict[int, JobReturn] = {}

        def on_result(cfg: Any, result: Any) -> None:
            overrides, sweep_config = by_cfg[id(cfg)]
            job_return = JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=sweep_config,
                                   working_dir=str(self.config.hydra.sweep.dir), task_name="ablate",
                                   status=JobStatus.COMPLETED,
                                   _return_value=result.metrics.get("val_acc", math.nan))
            returns[id(cfg)] = job_return
            self.hydra_context.callbacks.on_job_end(config=sweep_config, job_return=job_return)

        cfgs = [cfg for _, _, cfg in jobs]
        if self.dispatch == "local":
            train_and_log_all(cfgs, self.max_size, on_result, self.memory_fraction)
        else:
            from ablate.population import grouped
            from ablate.scale import dispatch

            options = OmegaConf.to_container(self.options, resolve=True) if OmegaConf.is_config(self.options) \
                else dict(self.options or {})
            dispatch(grouped(cfgs, self.max_size), self.dispatch, options, self.max_size, self.memory_fraction,
                     lambda group, results: [on_result(cfg, result) for cfg, result in zip(group, results)])
        return [returns[id(cfg)] for _, _, cfg in jobs]
