"""Provenance: what decides a run's numbers besides its config (ablate's code, the user's model and data code, the
data files), so that a result is reused only where all of it is the same, and a reader can tell what made it."""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib
import inspect
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional

from ablate.config.run import split_target
from ablate.paths import PACKAGE

PACKAGES = ("torch", "mlflow", "optuna", "hydra-core", "numpy")  # recorded as tags beside every run


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:12]


@functools.cache
def code_version() -> str:
    """ablate's version and a digest of its source files: the same in a checkout and in an installed wheel, and it
    changes with any edit of the package (and only then: a commit of the README trains nothing again)."""
    from ablate import __version__

    sources = sorted(PACKAGE.rglob("*.py"))
    return f"{__version__}+{_digest([str(p.relative_to(PACKAGE)).encode() + p.read_bytes() for p in sources])}"


@functools.cache
def git_commit() -> Optional[str]:
    """The checkout's commit, for display beside a run (None where ablate is installed, not checked out)."""
    try:
        return subprocess.run(["git", "-C", str(PACKAGE.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()[:12] or None
    except (OSError, subprocess.CalledProcessError):
        return None


_files: collections.OrderedDict = collections.OrderedDict()  # (path, size, mtime in ns) -> digest: the last 256


def file_digest(path: Path) -> str:
    """A digest of a file's bytes, computed once per (path, size, mtime); ``missing`` where there is none, ``a
    folder`` for a folder (the data check names it)."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    if path.is_dir():
        return "a folder"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _files:
        try:
            _files[key] = _digest([path.read_bytes()])
        except OSError:
            return "unreadable"
        if len(_files) > 256:
            _files.popitem(last=False)
    return _files[key]


def source_digest(target: Optional[str]) -> str:
    """The digest of the source file of ``module.name`` / ``module:name`` (a user's model class or data function):
    its module's file, where the code a run executes lives. Empty for no target."""
    if not target:
        return ""
    try:
        source = inspect.getsourcefile(importlib.import_module(split_target(target)[0]))
    except (ImportError, TypeError, ValueError):
        return "unreadable"
    return f"{Path(source).name}:{file_digest(Path(source))}" if source else "unreadable"


def inputs(model_target: Optional[str], data_target: Optional[str], data_files: list[Path]) -> dict[str, str]:
    """What a run reads besides its config and ablate's code, by part: the user's model code, data code and data
    files (each part's digests; an empty part is left out)."""
    parts = {"model_code": source_digest(model_target), "data_code": source_digest(data_target),
             "data": ",".join(f"{p.name}:{file_digest(p)}" for p in data_files)}
    return {name: value for name, value in parts.items() if value}


def inputs_digest(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


@functools.cache
def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers (``torch``: 2.13.0+cpu, ...)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name.removesuffix("-core")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
