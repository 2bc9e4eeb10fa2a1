"""Where ablate's own files are: its configs (``conf/``) and default data (``data/``) sit at the top of a checkout
(the design card's layout) and ship inside the package in a wheel (``ablate/_shipped/``). One rule finds them."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # ablate's sources
_WHEEL = PACKAGE / "_shipped"  # the build maps conf/ and data/ here (pyproject.toml, tool.setuptools.package-dir)
SHIPPED = _WHEEL if (_WHEEL / "conf").is_dir() else PACKAGE.parent  # holds conf/ and data/
CONF = SHIPPED / "conf"
