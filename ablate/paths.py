"""Where ablate's own files are: its configs (``conf/``) and default data (``data/``) sit at the top of a checkout
(the design card's layout) and ship inside the package in a wheel (``ablate/_shipped/``). One rule finds them. And
how its commands are called where a hint names one: as the user invoked ablate (set by the entry point)."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # ablate's sources
_WHEEL = PACKAGE / "_shipped"  # the build maps conf/ and data/ here (pyproject.toml, tool.setuptools.package-dir)
SHIPPED = _WHEEL if (_WHEEL / "conf").is_dir() else PACKAGE.parent  # holds conf/ and data/
CONF = SHIPPED / "conf"
INVOKED_AS = ["ablate"]  # "python -m ablate" where the entry point was run so


def command(*words: str) -> str:
    """An ablate command as the user calls them: ``command("report")`` -> ``ablate report``."""
    return " ".join([INVOKED_AS[0], *words])
