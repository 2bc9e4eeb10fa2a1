"""Executing plans: composing many configs at once (``compose``), the runner that trains and records a plan
(``runner``), sweeps with their parent run and progress (``sweeps``), populations sent to Ray or SLURM (``scale``),
the Optuna search (``search``) and the claims' experiment (``claims``).

May import: ``ablate.engine``, ``ablate.tracking``, ``ablate.analysis``, ``ablate.config``, ``ablate.errors``,
``ablate.paths``; Hydra's compose API and override grammar, Optuna, tqdm, Ray and submitit. Not MLflow itself (the
tracker speaks to it), and nothing of the commands above.
"""
