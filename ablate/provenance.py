"""Provenance: which code and which packages produced a run, so that a result is reused only for the same code
and a reader can tell what made it."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout the code runs from (its data/, conf/)
PACKAGES = ("torch", "mlflow", "optuna", "hydra-core", "numpy")  # recorded as tags beside every run


@functools.cache
def code_version() -> str:
    """The git commit of the code, plus a digest of uncommitted changes: runs are reused only for equal code."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout

    try:
        commit, diff = git("rev-parse", "HEAD").strip(), git("diff", "HEAD", "--", "ablate")
    except (OSError, subprocess.CalledProcessError):
        from ablate import __version__

        return f"ablate-{__version__}"
    return commit[:12] + (f"+dirty.{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else "")


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
