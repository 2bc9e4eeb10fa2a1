"""``ablate.nn``: the building blocks that give an ablation switch the same meaning in your model as in ablate's
own (``block``, ``norm_act``, ``Dropout``). The public name of ``ablate.engine.nn``, where they live."""

from ablate.engine.nn import ACTIVATIONS, Dropout, block, key_streams, norm_act

__all__ = ["ACTIVATIONS", "Dropout", "block", "key_streams", "norm_act"]
