"""A model family is one file: a family registered here, from a test file, with config keys of its own, composes
(``model=toy``), trains alone, as a vectorised population and in a sweep, and is described, without a line of
ablate changed. A switch it does not honour is an error; a key of its own splits populations."""

import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hydra.core.config_store import ConfigStore
from mlflow import MlflowClient

import ablate
from ablate.config import PopulationSettings
from ablate.config.run import ModelConfig
from ablate.engine.data import cached_splits
from ablate.engine.families import Family, families, family_of, register_family, registry
from ablate.engine.models import describe, summary
from ablate.engine.plan import make_plan, population_key
from ablate.engine.trainer import fit, fit_population
from ablate.errors import ConfigValueError
from tests.conftest import make_config


@dataclass
class ToyConfig(ModelConfig):
    """``model=toy``: a one-hidden-layer net with a width and a depth of its own; it honours dropout only."""

    family: ClassVar[str] = "toy"
    switches: ClassVar[frozenset[str]] = frozenset({"dropout"})
    dropout: float = 0.1
    width: int = 8
    depth: int = 1


def build_toy(cfg: ToyConfig, in_shape, n_classes):
    from torch import nn

    from ablate.nn import Dropout

    layers, width = [nn.Flatten()], math.prod(in_shape)
    for _ in range(cfg.depth):
        layers += [nn.Linear(width, cfg.width), nn.ReLU(), Dropout(cfg.dropout)]
        width = cfg.width
    return nn.Sequential(*layers, nn.Linear(width, n_classes))


@pytest.fixture
def toy(monkeypatch):
    """The family registered for one test, and gone after (the registry and Hydra's ConfigStore as they were)."""
    monkeypatch.setitem(registry._FAMILIES, "toy", None)  # restored (removed) when the test ends
    family = register_family(Family(ToyConfig, build=build_toy, per_member=frozenset({"init_scale", "dropout"})))
    yield family
    ConfigStore.instance().repo["model"].pop("toy.yaml", None)


QUICK = ("model=toy", "data=digits", "trainer.epochs=2", "trainer.device=cpu")


def test_a_registered_family_composes_with_its_own_keys_and_is_described(toy):
    cfg = make_config(*QUICK, "model.width=16", "model.depth=2")
    assert type(cfg.model) is ToyConfig and (cfg.model.width, cfg.model.depth) == (16, 2)
    assert family_of(cfg.model) is toy and "toy" in families()
    assert describe(cfg.model) == "toy dropout=0.1, width=16, depth=2"
    assert "Trainable params: 1,482" in summary(cfg.model, (1, 8, 8), 10)  # 64*16+16 + 16*16+16 + 16*10+10
    with pytest.raises(ConfigValueError, match=r"model=toy does not honour model.bn \(it takes model.dropout\)"):
        make_config(*QUICK, "model.bn=pre")


def test_it_trains_alone_and_as_a_population_whose_members_are_their_single_runs(toy):
    cfgs = [make_config(*QUICK, f"seed={s}", f"model.dropout={p}") for s, p in [(0, 0.0), (1, 0.3)]]
    splits = cached_splits(cfgs[0].data)
    assert len({population_key(c) for c in cfgs}) == 1  # dropout and seed per member, as the family declares
    members, _ = fit_population(cfgs, splits, vectorise=True)
    for cfg, member in zip(cfgs, members):
        single = fit(cfg, splits)
        assert member.history.final["test_acc"] == pytest.approx(single.final["test_acc"], abs=1e-6)
    wider = make_config(*QUICK, "model.width=4")
    assert population_key(wider) != population_key(cfgs[0])  # its own key splits populations by itself
    assert [len(p.cfgs) for p in make_plan([*cfgs, wider], PopulationSettings()).populations] == [2, 1]


def test_it_sweeps_and_its_runs_record_its_keys(toy, tracking_uri):
    sweep_id = ablate.sweep([*QUICK, "model.width=4,8", "seed=0,1"], quiet=True, vectorise=True)
    frame = ablate.runs(sweep_id)
    assert len(frame) == 4 and sorted(frame["model.width"]) == [4, 4, 8, 8]
    assert set(frame["model.family"]) == {"toy"}
    client = MlflowClient(tracking_uri)
    statuses = {r.info.status for r in client.search_runs([e.experiment_id for e in client.search_experiments()])}
    assert statuses == {"FINISHED"}


def test_a_family_without_a_name_is_refused():
    @dataclass
    class Nameless(ModelConfig):
        pass

    with pytest.raises(ValueError, match="names no family"):
        register_family(Family(Nameless, build=build_toy))
