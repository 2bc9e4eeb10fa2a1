"""``hydra/sweeper=ablate`` (the default in conf/config.yaml): Hydra's basic grid sweeper, minus a cost.

Before launching, the basic sweeper composes every job's config to check it is legal: a few hundred
milliseconds each, minutes for a large grid. Jobs that choose the same config groups differ only in values,
which the typed schema checks when they are applied, so one composition per distinct set of group choices
checks the same thing.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class AblateSweeperConf:
    _target_: str = "hydra_plugins.ablate_launchers.sweeper.AblateSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="ablate", node=AblateSweeperConf, provider="ablate")


_parser = OverridesParser.create()
_is_group: dict[str, bool] = {}  # asking the config repository costs ~100 ms; the answer does not change


def split_overrides(loader: Any, overrides: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[str, Any]]]:
    """Overrides that shape the composition (group choices, +/~ edits, hydra's own) and plain value
    assignments (key, typed value) that can be merged into an already composed config."""
    groups, values = [], []
    for override in _parser.parse_overrides(list(overrides)):
        key = override.key_or_group
        if key not in _is_group:
            _is_group[key] = key.startswith("hydra") or bool(loader.get_group_options(key))
        if override.is_add() or override.is_delete() or _is_group[key]:
            groups.append(override.input_line)
        else:
            values.append((key, override.value()))
    return tuple(sorted(groups)), values


class AblateSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from omegaconf import OmegaConf

        from ablate.config import typed_node

        loader = self.hydra_context.config_loader
        checked: dict[tuple[str, ...], tuple[Any, set[str]]] = {}
        for overrides in batch:
            groups, values = split_overrides(loader, overrides)
            if groups not in checked:
                checked[groups] = typed_node(loader.load_sweep_config(self.config, list(groups))), set()
            node, seen = checked[groups]
            for key, value in values:
                if f"{key}={value!r}" not in seen:  # each distinct value once: the schema rejects a wrong
                    seen.add(f"{key}={value!r}")  # type, a wrong choice or an unknown key
                    OmegaConf.update(node, key, value, merge=True)
