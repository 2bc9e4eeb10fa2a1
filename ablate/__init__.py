"""ablate: reproducible ablation studies of PyTorch networks (BatchNorm, dropout, L2, learning rate, ...).

The public surface, for notebooks and scripts: ``run``, ``sweep``, ``runs``, ``judge`` (``ablate.api``), the
building blocks in ``ablate.nn``, model families (``ablate.engine.families.register_family``) and ``UserError``.
Everything else is internal and may change. Importing ``ablate`` costs nothing: each name is imported when first
used (PEP 562).

The layers, each a subpackage whose ``__init__`` says what it may import: ``config`` (what a run is), ``engine``
(training), ``tracking`` (MLflow), ``analysis`` (tables, statistics, plots), ``execution`` (executing plans); the
commands sit on top (``__main__``, ``train``, ``claims``, ``report``, ``search``, ``ui``, ``server``, ``init``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["UserError", "judge", "run", "runs", "sweep", "__version__"]
_LAZY = {"judge": "ablate.api", "run": "ablate.api", "runs": "ablate.api", "sweep": "ablate.api",
         "UserError": "ablate.errors"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ablate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
