"""``python -m ablate [overrides]`` and the ``ablate`` command: compose the config, train one variant, record it;
``ablate init DIR`` starts a project of your own; ``ablate claims|report|search|ui|server ...`` hand over to those
commands."""

from __future__ import annotations

import os
import runpy
import sys
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ablate.cli import run_interruptible, user_errors_end_the_command
from ablate.config import to_run_config
from ablate.paths import CONF
from ablate.schemas import register_configs

register_configs()
COMMANDS = {"claims": "ablate.claims", "report": "ablate.report", "search": "ablate.search", "ui": "ablate.ui",
            "server": "ablate.server"}  # ablate <command> [args]: the other entry points, from the same command
# conf/hydra/launcher/{ray,submitit_*}.yaml refine the launcher plugins' own configs of the same name, and Hydra
# checks them against those plugins' schemas; that check is wanted, the notice about it is not.
warnings.filterwarnings("ignore", message=".*is validated against ConfigStore schema with the same name")


@hydra.main(config_path=str(CONF), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Returns the validation accuracy (test where there is no validation split), NaN for a failed run."""
    with user_errors_end_the_command():
        run_cfg = to_run_config(cfg)  # range checks, before any data is read
        from ablate.runner import Outcome, train_and_log  # imported late: `--help` and config errors stay instant
        from ablate.tracking import SweepRef

        result = train_and_log(run_cfg, SweepRef.from_env(os.environ))  # a job of a sweep learns which here
    if result.outcome == Outcome.failed and not HydraConfig.get().mode == RunMode.MULTIRUN:
        sys.exit(1)  # its error is logged and recorded; a sweep counts its failed runs at the end instead
    return result.value


def cli() -> None:
    """``python -m ablate`` and the ``ablate`` command (``ablate init DIR``: a project of your own)."""
    if sys.path[0] != os.getcwd():  # the ablate command, unlike python -m, would not import your modules from here
        sys.path.insert(0, os.getcwd())
    if sys.argv[1:2] == ["init"]:
        from ablate.init import main as init

        return run_interruptible(lambda: init(sys.argv[2:]), "nothing more was written.")
    if sys.argv[1:2] and sys.argv[1] in COMMANDS:  # ablate claims ... is python -m ablate.claims ...
        module = COMMANDS[sys.argv[1]]
        sys.argv = [module, *sys.argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    run_interruptible(main, "finished runs stay recorded and the interrupted ones are marked KILLED; "
                            "the same command resumes where this one stopped.")


if __name__ == "__main__":
    cli()
