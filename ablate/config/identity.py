"""Operations on a typed config: its plain and dotted forms, its identity (what resume compares), the role of each
key (``run.PER_MEMBER``, ...), and dotted keys set on it as a sweep's jobs and a search's trials are made."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import typing
from dataclasses import fields, is_dataclass, replace
from enum import Enum
from typing import Any

from ablate.errors import ConfigValueError


def to_dict(cfg: Any, with_search: bool = False) -> dict[str, Any]:
    """Nested plain values (enums as their names), without the search's own settings: what a run is."""
    plain = _plain(cfg)
    if not with_search:
        plain.pop("search", None)
    return plain


def _plain(value: Any) -> Any:
    """A copy in plain values; ``dataclasses.asdict`` would deep-copy every leaf, at a sweep's scale a cost."""
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def flatten(cfg: Any, with_search: bool = False) -> dict[str, Any]:
    """Dotted names -> plain values (``model.bn`` -> ``pre``): MLflow params and config hashing use these."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node

    walk("", to_dict(cfg, with_search))
    return {"model.family": type(cfg.model).family, **flat}


@functools.lru_cache(maxsize=256)
def _fields_of(cls: type) -> dict[str, Any]:
    return {f.name: f for f in fields(cls)}


def role(cfg: Any, key: str) -> str:
    """The role a dotted key's field declares (``run.PER_MEMBER``, ...), read on the config's own classes (a
    family's or a subclass's fields have theirs); a field inside one with a role takes that role; ``decides``
    where none says otherwise: the key decides a run's numbers and what its population shares."""
    node = cfg
    for part in key.split("."):
        found = _fields_of(type(node)).get(part) if is_dataclass(node) else None
        if found is None:
            break
        if (declared := found.metadata.get("ablate")) is not None:
            return declared
        node = getattr(node, part)
    return "decides"


def config_hash(cfg: Any) -> str:
    """A stable hash of what determines a run's result: resume and dedup compare runs by it."""
    identity = {k: v for k, v in flatten(cfg).items() if role(cfg, k) not in ("not_training", "same_numbers")
                and not (k.startswith("seeds.") and v is None)}  # unset: the run's seed decides, as before they were
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def is_config_key(cfg: Any, key: str) -> bool:
    """Whether a dotted key names a field of this config (any key below a dict field, such as model.kwargs)."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict):
            return True
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return False
        node = getattr(node, part)
    return True


def unknown_key(key: str, known: list[str], source: str = "") -> str:
    """One line for a key no schema has: the nearest one there, and the settings there (``source``: the file)."""
    where, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    hint = f"did you mean {where + '.' if where else ''}{close[0]}? " if close else ""
    return (f"{key} is not a setting ablate has, so nothing would read it ({hint}the settings "
            f"{'under ' + where if where else 'at the top'}: {', '.join(known)}){source}.")


def missing_key(cfg: Any, key: str) -> str:
    """One line for a dotted key that is no field of ``cfg``: where its path leaves the schema, and the nearest key."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        known = list(_fields_of(type(node))) if is_dataclass(node) else []
        if part not in known:
            return unknown_key(".".join(parts[:i + 1]), known)
        node = getattr(node, part)
    return f"{key} is a setting"


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """``cfg`` with dotted keys set (``{"optim.lr": 0.05}``), each value converted to its field's type and every
    range check run again: how a sweep's jobs and a search's trials are made from one composed config. Each
    config object is rebuilt once with all its new values, so a check across fields (``tracking.dead_after_s`` at
    least twice ``tracking.heartbeat_s``) sees them together."""
    return _set(cfg, {tuple(key.split(".")): (key, value) for key, value in values.items()})


def _set(node: Any, values: dict[tuple[str, ...], tuple[str, Any]]) -> Any:
    """``values``: path below ``node`` -> (its dotted key, for messages; the value)."""
    below: dict[str, dict[tuple[str, ...], tuple[str, Any]]] = {}
    for path, item in values.items():
        below.setdefault(path[0], {})[path[1:]] = item
    if isinstance(node, dict):
        return {**node, **{name: rest[()][1] if () in rest else _set(node.get(name, {}), rest)
                           for name, rest in below.items()}}
    changes = {}
    for name, rest in below.items():
        key = next(iter(rest.values()))[0]
        if not is_dataclass(node) or name not in {f.name for f in fields(node)}:
            raise ConfigValueError(f"{key} is not a config key (there is no {name!r} there).")
        changes[name] = _convert(rest[()][1], _field_types(type(node))[name], key) if () in rest else \
            _set(getattr(node, name), rest)
    return replace(node, **changes)


@functools.lru_cache(maxsize=256)
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, kind: Any, key: str) -> Any:
    """A value as its field's type: an enum from its name, a float from an int (as OmegaConf converts them)."""
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        if value is None:
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if isinstance(kind, type) and issubclass(kind, Enum):
            return kind(value.value if isinstance(value, Enum) else value)
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (int, bool, str) and not isinstance(value, kind):
            raise ValueError(f"expected {kind.__name__}")
    except ValueError as err:
        allowed = ", ".join(e.value for e in kind) if isinstance(kind, type) and issubclass(kind, Enum) else kind
        raise ConfigValueError(f"{key}={value!r} is not allowed: {key} must be {allowed}.") from err
    if typing.get_origin(kind) is list:  # each element as the list's type (trainer.probes: [landscape] -> Probe)
        element = typing.get_args(kind)[0] if typing.get_args(kind) else None
        return [v if element is None or element is typing.Any else _convert(v, element, key) for v in value]
    return value
