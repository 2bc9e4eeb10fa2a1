"""What a run is: the typed schema of its config (``run``), the search's space (``search_space``), how variants are
launched (``launch``), the commands' settings (``commands``), the operations on a config (``identity``: its dotted
form, its hash, the role of each key), and the adapter to Hydra and OmegaConf (``adapter``).

May import: ``ablate.errors`` and ``ablate.paths``; the dataclasses use the standard library only, and only
``adapter`` imports Hydra or OmegaConf. Every layer above reads configs; nothing here reads data or trains.
"""

from ablate.config.identity import config_hash, flatten, to_dict, with_values
from ablate.config.launch import LauncherSettings, PopulationSettings
from ablate.config.run import (BN, Activation, Augment, BNStats, BuiltinModelConfig, DataConfig, DataSource, Device,
                               DType, L2Mode, ModelConfig, OptimConfig, OptimName, Probe, RunConfig, SeedSources,
                               Source, TrackingConfig, TrainerConfig)
from ablate.config.search_space import SearchConfig

__all__ = ["BN", "Activation", "Augment", "BNStats", "BuiltinModelConfig", "DType", "DataConfig", "DataSource",
           "Device", "L2Mode", "LauncherSettings", "ModelConfig", "OptimConfig", "OptimName", "PopulationSettings",
           "Probe", "RunConfig", "SearchConfig", "SeedSources", "Source", "TrackingConfig", "TrainerConfig",
           "config_hash", "flatten", "to_dict", "with_values"]
