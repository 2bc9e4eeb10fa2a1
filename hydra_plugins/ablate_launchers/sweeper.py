"""``hydra/sweeper=ablate`` (the default in conf/config.yaml): Hydra's basic grid sweeper, minus a cost.

Before launching, the basic sweeper composes every job's config to check it is legal: a few hundred
milliseconds each, minutes for a large grid. ``ablate.compose.ComposeCache`` checks the same once per distinct
set of group choices and once per distinct value, and hands its work to the population launcher.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


@dataclass
class AblateSweeperConf:
    _target_: str = "hydra_plugins.ablate_launchers.sweeper.AblateSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="ablate", node=AblateSweeperConf, provider="ablate")


class AblateSweeper(BasicSweeper):
    def setup(self, *args: Any, **kwargs: Any) -> None:
        from ablate.compose import ComposeCache

        super().setup(*args, **kwargs)
        self.compose_cache = getattr(self.launcher, "compose_cache", None) or ComposeCache.for_sweep(
            self.hydra_context.config_loader, self.config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """A bad value ends the sweep with its one-line message (Hydra would print a traceback)."""
        from ablate.cli import user_errors_end_the_command

        with user_errors_end_the_command():
            for overrides in batch:
                self.compose_cache.check(overrides)
