"""Model families: the registry (``registry``) and ablate's own, one file each (``mlp``, ``cnn``, ``custom``: a
user's ``nn.Module``). A family of your own is one more file with a ``register_family`` call: see ``registry``.

May import: ``ablate.config``, ``ablate.errors``; torch only inside the builders, so that composing a config (which
needs the families' configs) imports no torch.
"""

from ablate.engine.families.registry import Family, describe_fields, families, family_of, register_family
from ablate.engine.families import cnn, custom, mlp  # noqa: E402, F401 - ablate's own, registered on import

__all__ = ["Family", "describe_fields", "families", "family_of", "register_family"]
