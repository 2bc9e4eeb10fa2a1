"""Composing configs: Hydra's compose API on ablate's ``conf/`` (``composing``, ``compose_run``), and many configs
from one composition, which the population launcher, the sweeper, the claims and ``ablate.sweep`` share.

Composing a config costs Hydra a few hundred milliseconds, far more than training a member's share of a
population. Configs that choose the same config groups differ only in values, so each distinct set of group
choices is composed once; each value override (``model.dropout=0.3``) is checked once against the typed schema,
by OmegaConf as a single composition would, and set on the composed config with ``config.with_values``. A job
whose config refers to its own keys (``data.split_seed=${seed}``) is composed whole instead, so that every launcher
and the claims resolve it as a single composition does.
"""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.config import adapter
from ablate.config.adapter import composition_error, to_run_config, typed_node
from ablate.config.identity import with_values
from ablate.config.run import RunConfig
from ablate.engine.families import families
from ablate.errors import ConfigValueError
from ablate.paths import CONF


def register_configs() -> None:
    """The run's and the commands' schemas, and every registered family's config, in Hydra's ConfigStore."""
    adapter.register_configs(family.config for family in families().values())


@contextlib.contextmanager
def composing(config_dir: Path = CONF) -> Iterator[Any]:
    """Hydra's compose API on ablate's configs (and a project's ``conf/``) within the block, yielding its config
    loader; whatever Hydra held before (a notebook's own initialisation) is back afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    register_configs()
    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            yield GlobalHydra.instance().config_loader()
    finally:
        restore_gh_from_backup(backup)


def compose(config_name: str, overrides: Sequence[str], **options: Any) -> DictConfig:
    """One composition inside ``composing``; its errors as one line (``adapter.composition_error``)."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException as OmegaConfError

    try:
        return hydra_compose(config_name, overrides=list(overrides), **options)
    except (HydraException, OmegaConfError) as err:
        raise ConfigValueError(composition_error(err)) from err


def compose_run(*overrides: str) -> RunConfig:
    """The typed run config of these overrides, exactly as ``ablate`` builds it (inside ``composing``)."""
    return to_run_config(compose("config", overrides))

_parser = OverridesParser.create()
_KEY_REFERENCE = re.compile(r"\$\{\s*\.*[A-Za-z_][\w.\[\]]*\s*\}")  # ${seed}, ${..model.bn}: not ${oc.env:...}


class ComposeCache:
    """``compose(group_overrides)`` -> a composed DictConfig (Hydra's config loader in a sweep, its compose API in
    the claims); ``loader``, Hydra's config loader, says which keys name a config group."""

    def __init__(self, compose: Callable[[list[str]], DictConfig], loader: Any) -> None:
        self._compose, self._loader = compose, loader
        self._groups: dict[str, bool] = {}  # asking the config repository costs ~100 ms; the answer does not change
        self._overrides: dict[str, Any] = {}  # Hydra's parse of each override (~1 ms each; a sweep repeats them)
        self._composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}
        self._templates: dict[tuple, RunConfig] = {}
        self._jobs: dict[tuple[str, ...], RunConfig] = {}
        self._checked: dict[tuple[tuple[str, ...], str, str], Any] = {}
        self._interpolating: dict[tuple[str, ...], bool] = {}

    @classmethod
    def for_sweep(cls, loader: Any, config: DictConfig) -> "ComposeCache":
        """The jobs of a multirun whose primary config is ``config`` (the launcher's and the sweeper's)."""
        return cls(lambda groups: loader.load_sweep_config(config, list(groups)), loader)

    def split(self, overrides: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Overrides that shape the composition (group choices, +/~ edits, hydra's own) and plain value
        assignments (dotted key -> parsed value) that can be set on an already composed config."""
        groups, values = [], {}
        for override in map(self._parsed, overrides):
            key = override.key_or_group
            if key not in self._groups:
                self._groups[key] = key.startswith("hydra") or bool(self._loader.get_group_options(key))
            if override.is_add() or override.is_delete() or self._groups[key]:
                groups.append(override.input_line)
            else:
                values[key] = override.value()
        return tuple(sorted(groups)), values

    def _parsed(self, override: str) -> Any:
        if override not in self._overrides:
            self._overrides[override] = _parser.parse_override(override)
        return self._overrides[override]

    def composed(self, groups: tuple[str, ...]) -> tuple[DictConfig, DictConfig]:
        """(the full composed config with Hydra's node, its typed app part) of these group choices."""
        if groups not in self._composed:
            config = self._compose(list(groups))
            self._composed[groups] = config, typed_node(config)
        return self._composed[groups]

    def check(self, overrides: Sequence[str]) -> None:
        """Fail as composing these overrides would (a wrong type, an unknown key, a choice not in the enum)."""
        self.run_config(overrides)

    def run_config(self, overrides: Sequence[str]) -> RunConfig:
        """The run config of one job (remembered: the sweeper checks every job, then the launcher runs it)."""
        key = tuple(overrides)
        if key not in self._jobs:
            self._jobs[key] = self._run_config(overrides)
        return self._jobs[key]

    def _run_config(self, overrides: Sequence[str]) -> RunConfig:
        groups, values = self.split(overrides)
        node = self.composed(groups)[1]
        if self._interpolates(groups) or any(isinstance(v, str) and "${" in v for v in values.values()):
            # a key that refers to another (data.split_seed=${seed}) resolves only once every value is set: the
            # job composed whole, as Hydra would, not set on a template resolved with another seed
            filled = copy.deepcopy(node)
            for key, value in values.items():
                self._typed(groups, key, value)  # a wrong value fails as composition would
                OmegaConf.update(filled, key, value, merge=True)
            return to_run_config(filled)
        # a value the composition leaves mandatory (model.target of model=custom) is part of the template
        required = {k: v for k, v in values.items() if _is_missing(node, k)}
        template_key = (groups, repr(sorted(required.items())))
        if template_key not in self._templates:
            filled = copy.deepcopy(node) if required else node
            for key, value in required.items():
                OmegaConf.update(filled, key, value, merge=True)
            self._templates[template_key] = to_run_config(filled)
        rest = {k: self._typed(groups, k, v) for k, v in values.items() if k not in required}
        return with_values(self._templates[template_key], rest)

    def _interpolates(self, groups: tuple[str, ...]) -> bool:
        """Whether the composed config refers to one of its own keys (``${seed}``; resolvers such as ``${oc.env:..}``
        alone do not)."""
        if groups not in self._interpolating:
            raw = OmegaConf.to_container(self.composed(groups)[1], resolve=False)
            self._interpolating[groups] = bool(_KEY_REFERENCE.search(repr(raw)))
        return self._interpolating[groups]

    def job(self, overrides: Sequence[str]) -> tuple[DictConfig, RunConfig]:
        """The composed config (with Hydra's node, for the job's record) and the run config of one job."""
        groups, _ = self.split(overrides)
        return self.composed(groups)[0], self.run_config(overrides)

    def _typed(self, groups: tuple[str, ...], key: str, value: Any) -> Any:
        """The value as the schema types it (an enum, a float), checked by OmegaConf once per distinct value."""
        memo = (groups, key, repr(value))
        if memo not in self._checked:
            node = copy.deepcopy(self.composed(groups)[1])  # nested nodes too: the cached one stays as it was
            try:
                OmegaConf.update(node, key, value, merge=True)  # fails as composition would
            except OmegaConfBaseException as err:  # one line, not a traceback from the sweeper
                raise ConfigValueError(composition_error(_Merging(f"Error merging override {key}={value}", err))) \
                    from None
            typed = OmegaConf.select(node, key)
            self._checked[memo] = OmegaConf.to_object(typed) if OmegaConf.is_config(typed) else typed
        return self._checked[memo]


def _is_missing(node: DictConfig, key: str) -> bool:
    """Whether a dotted key is mandatory and unset (``???``) in a composed config."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(node, parent_key) if parent_key else node
    return OmegaConf.is_config(parent) and OmegaConf.is_missing(parent, leaf)  # ("in" is False for ???)


class _Merging(Exception):
    """An override's merge failing, as Hydra reports it (the OmegaConf error as its cause)."""

    def __init__(self, text: str, cause: BaseException) -> None:
        super().__init__(text)
        self.__cause__ = cause
