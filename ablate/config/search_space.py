"""The search's settings and the grammar of its space: ``search.space`` declares, per config key, how Optuna samples
it (``optim.lr: {type: log_uniform, low: 1e-3, high: 1}``); a declaration is checked when the config is."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from ablate.errors import ConfigValueError, require


class PrunerName(str, Enum):
    median = "median"  # stop a trial whose validation accuracy is below the median of earlier trials' at that epoch
    hyperband = "hyperband"
    none = "none"


class Distribution(str, Enum):
    uniform = "uniform"  # low..high
    log_uniform = "log_uniform"  # low..high on a log scale (both positive)
    categorical = "categorical"  # one of choices
    off_or_log_uniform = "off_or_log_uniform"  # 0 (off), or log-uniform in low..high: a log scale cannot reach 0


@dataclass
class SearchedKey:
    """One config key the search samples, e.g. ``optim.lr: {type: log_uniform, low: 1e-3, high: 1}``."""

    type: Distribution
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[list[Any]] = None

    def check(self, key: str) -> None:
        where = f"search.space.{key}"
        if self.type == Distribution.categorical:
            require(bool(self.choices), where, self.choices, "given choices: [a, b, ...] for type categorical")
            return
        require(self.low is not None and self.high is not None and self.low < self.high, where,
                [self.low, self.high], "given low < high for type " + self.type.value)
        if self.type != Distribution.uniform:
            require(self.low > 0, where, [self.low, self.high], "positive low and high (a log scale)")


def searched_keys(space: dict[str, Any], prefix: str = "") -> dict[str, SearchedKey]:
    """The space's nested declarations as dotted config keys (a node with a ``type`` is one declaration)."""
    found: dict[str, SearchedKey] = {}
    for name, node in space.items():
        key = f"{prefix}{name}"
        if not isinstance(node, dict):
            raise ConfigValueError(f"search.space.{key}={node!r} is not a declaration: give "
                                   f"{{type: uniform|log_uniform|categorical|off_or_log_uniform, low: .., high: ..}} "
                                   f"or {{type: categorical, choices: [..]}}.")
        if "type" not in node:
            found.update(searched_keys(node, f"{key}."))
            continue
        unknown = set(node) - {"type", "low", "high", "choices"}
        require(not unknown, f"search.space.{key}", sorted(unknown), "made of type, low, high, choices only")
        try:
            declared = SearchedKey(Distribution(node["type"]), node.get("low"), node.get("high"), node.get("choices"))
        except ValueError as err:
            raise ConfigValueError(f"search.space.{key}.type={node['type']!r} is not allowed: type must be one of "
                                   f"{', '.join(d.value for d in Distribution)}.") from err
        declared.check(key)
        found[key] = declared
    return found


@dataclass
class SearchConfig:
    study: str = "ablate"
    storage: Optional[str] = None  # None: a journal file studies/<study>.journal; or postgresql://user@host/db
    n_trials: int = 20  # the study's budget: COMPLETE + PRUNED trials, over every worker
    batch: int = 4  # trials asked at once and trained as one population
    seeds_per_trial: int = 1  # a trial's value: its seeds' mean validation accuracy (seed, seed + 1, ...)
    sampler_seed: int = 0
    pruner: PrunerName = PrunerName.median
    pruner_startup_trials: int = 4  # trials that finish before any is pruned
    pruner_warmup_epochs: int = 2  # epochs a trial runs before it can be pruned
    retry_dead: bool = True  # re-run a dead worker's trial with the same params (else only mark it FAIL)
    final_seeds: int = 3  # the best config retrained with this many seeds, evaluated once on the test split
    finalize: bool = True  # false for extra workers: only one process reports, retrains and exports
    space: dict[str, Any] = field(default_factory=dict)  # conf/search/default.yaml: dotted config keys -> SearchedKey

    def __post_init__(self) -> None:
        require(self.n_trials >= 0, "search.n_trials", self.n_trials, "0 or more")
        require(self.batch >= 1, "search.batch", self.batch, "at least 1")
        require(self.seeds_per_trial >= 1, "search.seeds_per_trial", self.seeds_per_trial, "at least 1")
        require(self.final_seeds >= 0, "search.final_seeds", self.final_seeds, "0 or more")
        searched_keys(self.space)  # each declaration checked


def storage_url(cfg: SearchConfig) -> str:
    """Where a study lives: ``search.storage``, else its journal file studies/<study>.journal."""
    return cfg.storage or f"studies/{cfg.study}.journal"
