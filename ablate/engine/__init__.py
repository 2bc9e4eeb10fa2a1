"""The engine trains: data (``data``), model families (``families``, ``models``), the building blocks that give a
switch one meaning in every model (``nn``), a member's own randomness (``streams``, ``augment``), the update maths
(``optim``), the populations' two paths (``stacked_mlp``, ``vmapped``), the trainer (``trainer``), the probes
(``probes``), and the plan that says what trains together, where and how (``plan``, with ``memory`` and ``device``).

May import: ``ablate.config``, ``ablate.errors``, ``ablate.paths``; torch, numpy, scikit-learn (digits). Never MLflow,
Optuna, Hydra, OmegaConf or pandas: training knows nothing of where its results go; it calls back once per epoch.
"""
