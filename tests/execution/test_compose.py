"""The compose cache (population launcher, sweeper, claims) gives every job the config one composition gives it."""

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ablate.execution.compose import ComposeCache
from ablate.config.adapter import to_run_config
from tests.conftest import REPO

GRID = [[f"seed={seed}", "data=digits", "data.split_seed=${seed}", f"model.dropout={p}", "optim.lr=${model.dropout}"]
        for seed in (0, 1, 2) for p in (0.1, 0.3)] + [["seed=5", "model=cnn", "trainer.epochs=3"],
                                                      ["seed=6", "trainer.epochs=${seed}"], ["optim=adam", "seed=3"]]


def test_every_job_of_a_grid_with_interpolations_is_its_own_composition():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cache = ComposeCache(lambda groups: compose("config", overrides=list(groups)),
                             GlobalHydra.instance().config_loader())
        for overrides in GRID:
            assert cache.run_config(overrides) == to_run_config(compose("config", overrides=overrides)), overrides
        assert [cache.run_config(o).data.split_seed for o in GRID[:6:2]] == [0, 1, 2]
        assert cache.run_config(GRID[-2]).trainer.epochs == 6
