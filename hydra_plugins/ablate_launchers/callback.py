"""The Hydra callback behind every ``ablate`` and ``ablate search`` command (conf/config.yaml).

Before Hydra writes its run folder (``.hydra/config.yaml``, ``overrides.yaml``, ``hydra.yaml``), a password given in
clear on the command line is refused with the fix (``ablate.tracking.store.refuse_clear_passwords``). Under a
one-variant-per-job launcher it counts the sweep's jobs as they end and names a failed one. Hydra only warns of an
exception in a callback: a problem found here ends the command itself (exit 2).
"""

from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class AblateCallback(Callback):
    def __init__(self) -> None:
        self.sweep = None  # the sweep this process runs (ablate's sweeper sets it), not pickled to workers

    def __getstate__(self) -> dict:
        """Launchers that run jobs in other processes pickle their callbacks: the sweep (its progress bar, its
        MLflow client) stays in the sweep's own process."""
        return {"sweep": None}

    @classmethod
    def follow(cls, callbacks: Any, sweep: Any) -> None:
        """Let this process's callback count ``sweep``'s jobs as they end."""
        for callback in getattr(callbacks, "callbacks", []):
            if isinstance(callback, cls):
                callback.sweep = sweep

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._refuse_clear_passwords(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._refuse_clear_passwords(config)

    @staticmethod
    def _refuse_clear_passwords(config: DictConfig) -> None:
        from ablate.cli import user_errors_end_the_command
        from ablate.tracking.store import refuse_clear_passwords

        with user_errors_end_the_command():
            refuse_clear_passwords(OmegaConf.to_container(OmegaConf.masked_copy(
                config, [k for k in config if k != "hydra"]), resolve=False))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from ablate.execution.sweeps import announce

        if self.sweep is None:  # a worker's process, or the population launcher (its progress is in member-epochs)
            return
        self.sweep.job_done()
        if job_return.status == JobStatus.FAILED:
            try:
                job_return.return_value  # raises the job's exception
            except Exception as err:  # noqa: BLE001 - reported, whatever it is
                announce(f"job failed: {type(err).__name__}: {err}")
