"""``ablate [key=value ...]``, the default command: compose the config (Hydra), train one variant, record it in MLflow;
with ``-m``, a sweep through ablate's sweeper and the launcher chosen (``hydra/launcher=population``)."""

from __future__ import annotations

import os
import sys

from omegaconf import DictConfig, OmegaConf


def task(cfg: DictConfig) -> float:
    """One variant; returns its validation accuracy (test where there is no validation split), NaN if it failed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ablate.cli import user_errors_end_the_command
    from ablate.config.adapter import to_run_config
    from ablate.execution.runner import Outcome, train_and_log
    from ablate.execution.scale import job_threads
    from ablate.tracking.tracker import SweepRef

    threads = job_threads(OmegaConf.to_container(HydraConfig.get().launcher), len(os.sched_getaffinity(0)))
    if threads:
        import torch

        torch.set_num_threads(threads)  # jobs side by side share the cores (each would take them all)
    with user_errors_end_the_command():  # here, not as Hydra reports a job's error (a line more)
        run_cfg = to_run_config(cfg)  # range checks, before any data is read
        result = train_and_log(run_cfg, sweep=SweepRef.of(run_cfg.tracking))  # a sweep's job joins it by its config
    if result.outcome == Outcome.failed and HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(1)  # its error is logged and recorded; a sweep counts its failed runs at the end instead
    return result.value


def main() -> None:
    """Hydra's entry point on ablate's configs (a project's ``conf/`` joins them), with the command line's overrides."""
    import hydra

    from ablate.paths import CONF
    from ablate.execution.compose import register_configs

    register_configs()
    hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")(task)()
