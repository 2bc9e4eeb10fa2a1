"""The Hydra callback behind every ``python -m ablate`` and ``ablate.search`` command (conf/config.yaml).

Before Hydra writes its run folder (``.hydra/config.yaml``, ``overrides.yaml``, ``hydra.yaml``), a password given in
clear on the command line is refused with the fix (``ablate.store.refuse_clear_passwords``). Each multirun is an
``ablate.sweeps.Sweep``: jobs that run in other processes (joblib, Ray, submitit) get the sweep's identity in their
environment, where ``python -m ablate`` reads it; the population launcher asks this callback for it directly.
"""

import os
from typing import Any, Optional

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class AblateCallback(Callback):
    def __init__(self) -> None:
        self.sweep = None  # the Sweep, in the sweep's own process only
        self.ref = None  # its SweepRef, which travels with the pickled callback to other processes

    def __getstate__(self) -> dict:
        """Launchers that run jobs in other processes pickle their callbacks: the sweep (its progress bar, its
        MLflow client) stays in the sweep's own process; its identity travels along."""
        return {"sweep": None, "ref": self.ref}

    @staticmethod
    def sweep_of(callbacks: Any) -> Optional[Any]:
        """The SweepRef of the multirun Hydra is running, from its callbacks (None if there is no such callback)."""
        return next((c.ref for c in getattr(callbacks, "callbacks", []) if isinstance(c, AblateCallback)), None)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._refuse_clear_passwords(config)

    @staticmethod
    def _refuse_clear_passwords(config: DictConfig) -> None:
        from ablate.cli import user_errors_end_the_command
        from ablate.store import refuse_clear_passwords

        with user_errors_end_the_command():
            refuse_clear_passwords(OmegaConf.to_container(OmegaConf.masked_copy(
                config, [k for k in config if k != "hydra"]), resolve=False))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self.ref is not None:
            os.environ.update(self.ref.as_env())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from ablate.cli import user_errors_end_the_command
        from ablate.config import to_run_config
        from ablate.sweeps import Sweep, grid_shape, sweep_definition
        from ablate.tracking import Tracker

        self._refuse_clear_passwords(config)
        with user_errors_end_the_command():  # what the swept keys leave as it is (+trainer.epoch=5), checked
            tracking = to_run_config(config).tracking  # before the parent run opens

        definition = sweep_definition(config)
        factors, total = grid_shape(definition)
        self.sweep = Sweep(Tracker(tracking), definition, total, factors)
        self.ref = self.sweep.ref

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from ablate.sweeps import announce

        if self.sweep is not None:  # None in a launcher's worker process: the bar lives in the sweep's process
            self.sweep.job_done()
            if job_return.status == JobStatus.FAILED:
                try:
                    job_return.return_value  # raises the job's exception
                except Exception as err:  # noqa: BLE001 - reported, whatever it is
                    announce(f"job failed: {type(err).__name__}: {err}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.sweep is not None and (failed := self.sweep.close()):
            raise SystemExit(f"{failed} run(s) of sweep {self.sweep.sweep_id} failed "
                             f"(their errors are in MLflow, tag ablate.error); the others are recorded.")
