"""The config's meeting point with Hydra and OmegaConf: the schemas registered in Hydra's ConfigStore, a composed
config turned into its dataclasses (refusing keys nothing reads), and any composition error said in one line.

The only module of ``ablate.config`` that imports Hydra or OmegaConf; the dataclasses themselves need neither.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import warnings
from dataclasses import fields, is_dataclass
from typing import Any, Iterable, Iterator

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ablate.config.commands import JudgeConfig, ReportConfig, UIConfig
from ablate.config.identity import unknown_key
from ablate.config.run import ModelConfig, RunConfig
from ablate.errors import ConfigValueError


def register_configs(model_configs: Iterable[type[ModelConfig]]) -> None:
    """Register the schema that conf/config.yaml starts from (every group option is validated against it) and the
    model families' configs, whose typed nodes are the ``model`` group's options."""
    store = ConfigStore.instance()
    # conf/config.yaml starts from schema=run; conf/judge.yaml overrides it with schema=judge, so that the judge's
    # type is set before the groups type their nodes (model=mlp then types ``model`` as MLPConfig).
    store.store(group="schema", name="run", node=RunConfig, package="_global_")
    store.store(group="schema", name="judge", node=JudgeConfig, package="_global_")
    store.store(name="report_schema", node=ReportConfig)
    store.store(name="ui_schema", node=UIConfig)
    for config in model_configs:
        store.store(group="model", name=config.family, node=config)


@contextlib.contextmanager
def launcher_schema_notes_quiet() -> Iterator[None]:
    """conf/hydra/launcher/{ray,submitit_local,submitit_slurm}.yaml are ablate's settings for the plugins' launchers,
    named as the plugins name them, so Hydra checks each against the plugin's schema of the same name. Hydra 1.3
    still does, and says per composition (four times a sweep) that this matching is deprecated; the note is quiet
    for the block, the check kept."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema with the "
                                          r"same name", UserWarning)
        yield


def typed_node(cfg: DictConfig) -> DictConfig:
    """The app's part of a composed config (without Hydra's own ``hydra`` node), typed by the schema."""
    if "hydra" not in cfg:
        return cfg
    return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Composed DictConfig -> RunConfig; range checks run here (dataclass __post_init__)."""
    if isinstance(cfg, RunConfig):
        return cfg
    return typed_object(typed_node(cfg))


def typed_object(node: DictConfig) -> Any:
    """A composed config as its dataclasses, refusing a key its schema does not have. Hydra refuses
    ``trainer.epoch=5``, suggesting ``+trainer.epoch=5``, which it accepts: OmegaConf would then set an attribute
    nothing reads, and the run would train with the default as if nothing were wrong."""
    from omegaconf.errors import MissingMandatoryValue

    for key, known in _unknown_keys(node):
        raise ConfigValueError(unknown_key(key, known))
    try:
        return OmegaConf.to_object(node)
    except MissingMandatoryValue as err:
        key = err.full_key or "a setting"
        group = key.split(".")[0]
        family = getattr(OmegaConf.get_type(node, group), "family", "") if group in node else ""
        choice = f"{group}={family}" if family else "this config"
        raise ConfigValueError(f"{key} is not set, and {choice} needs it: give {key}=...") from None


def _unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(dotted key, the settings its schema has there) for each key a typed node holds beyond its dataclass;
    free-form dicts (``search.space``, ``model.kwargs``) take any key."""
    schema = OmegaConf.get_type(node)
    known = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key in node.keys():
        if known is not None and key not in known:
            yield f"{prefix}{key}", known
            continue
        if not OmegaConf.is_missing(node, key) and isinstance(child := node[key], DictConfig):  # None: no node
            yield from _unknown_keys(child, f"{prefix}{key}.")


_OVERRIDE = re.compile(r"(?:Error merging override|Could not override) '?([^'\s]+?)'?\.?(?:\n|$)")
_CHOICES = re.compile(r"expected one of \[(.*)\]")
_CONVERT = re.compile(r"could not be converted to (\w+)")
_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^'/]+)'")
_SOURCE = re.compile(r"In '([^']+)': ")  # a config file's own error: which file
_VALUE = re.compile(r"(?:Invalid value|Value) '([^']*)'")


def composition_error(err: BaseException) -> str:
    """One line for an error Hydra or OmegaConf raised while composing (an unknown key, a bad value, an option that
    does not exist, an override that cannot be read): the key, what is allowed, the nearest key where one is near."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = err.__cause__ or err.__context__ or err
    text = str(err)
    source = _SOURCE.match(text)
    where = f" (in {source.group(1)})" if source else ""
    if isinstance(err, MissingConfigException) and (found := _MISSING_OPTION.search(text)):
        group, option = found.groups()
        options = list(getattr(err, "options", None) or [])
        close = difflib.get_close_matches(option, options, n=1)
        return (f"{group}={option} is not an option: {group} is one of {', '.join(options) or '(none)'}"
                f"{f' (did you mean {group}={close[0]}?)' if close else ''}.")
    if isinstance(err, OverrideParseException):
        return (f"an override could not be read ({text.splitlines()[0]}): each is key=value, e.g. model.bn=post; "
                f"quote a list or a comma: 'model.hidden=[64,32]'.")
    key = getattr(cause, "full_key", None)
    override = _OVERRIDE.search(text)
    value = override.group(1).split("=", 1)[1] if override and "=" in override.group(1) else None
    if value is None and (found := _VALUE.search(str(cause))):
        value = found.group(1)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        schema = getattr(cause, "object_type", None)
        if is_dataclass(schema):
            return unknown_key(key, [f.name for f in fields(schema)], where)
        return f"{key} is a new key of a free-form setting: give it with a '+' (+{key}={value if value else '...'})."
    if isinstance(cause, ValidationError) and key:
        key = key.split("[", 1)[0]  # a list's element: the list's key
        detail = str(cause).splitlines()[0]
        if choices := _CHOICES.search(detail):
            allowed = f"one of {choices.group(1)}"
        elif "not a valid bool" in detail:
            allowed = "true or false"
        elif kind := _CONVERT.search(detail):
            allowed = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}.get(
                kind.group(1), f"a value of type {kind.group(1)}")
        else:
            allowed = detail
        return f"{key}={value if value is not None else '...'} is not allowed{where}: {key} must be {allowed}."
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    extra = str(cause).splitlines()[0] if cause is not err and str(cause) else ""
    return "; ".join([*lines[:1], *([extra] if extra else [])])
