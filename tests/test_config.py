import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from omegaconf import OmegaConf

from ablate.config import BN, ConfigValueError, L2Mode, OptimName, config_hash, flatten
from tests.conftest import REPO, make_config


def test_defaults_are_the_seed_notebook():
    cfg = make_config()
    assert (cfg.model.hidden, cfg.model.bn, cfg.model.dropout) == ([128, 64], BN.pre, 0.3)
    assert (cfg.optim.name, cfg.optim.lr, cfg.trainer.batch_size, cfg.trainer.epochs) == (OptimName.sgd, 0.1, 32, 10)
    assert cfg.data.path.endswith("fmnist_small.csv.gz") and cfg.data.split_seed == 20


def _leaves(node, prefix=""):
    """A nested dict's leaves as dotted keys (lists are leaves)."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    return {k: v for key, value in node.items() if key != "defaults" for k, v in _leaves(value, f"{prefix}{key}.").items()}


@pytest.mark.parametrize("group", ["data", "model", "optim", "trainer", "tracking"])
def test_every_group_option_sets_what_its_file_says(group):
    for option in sorted((REPO / "conf" / group).glob("*.yaml")):
        composed = flatten(make_config(f"{group}={option.stem}"))
        chosen = _leaves(OmegaConf.to_container(OmegaConf.load(option), resolve=True))
        assert chosen, f"{option} sets nothing"
        for key, value in chosen.items():
            assert composed[f"{group}.{key}"] == value, f"{option}: {key}"


def test_experiments_compose():
    for option in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        assert make_config(f"+experiment={option.stem}").experiment_name == option.stem


def test_adamw_is_adam_with_decoupled_decay():
    cfg = make_config("optim=adamw")
    assert (cfg.optim.name, cfg.optim.l2) == (OptimName.adam, L2Mode.decoupled) and cfg.optim.weight_decay > 0


@pytest.mark.parametrize("override, key, allowed", [
    ("model.bn=foo", "model.bn", "none, pre, post"),
    ("trainer.device=tpu", "trainer.device", "auto, cpu, cuda, mps"),
    ("optim.l2=l1", "optim.l2", "penalty, decoupled"),
])
def test_bad_choice_fails_at_composition_naming_key_and_choices(override, key, allowed):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        make_config(override)
    message = str(err.value) + str(err.value.__cause__)
    assert key in message and allowed in message


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException) as err:
        make_config("model.dropuot=0.1")
    assert "dropuot" in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize("override, key", [
    ("model.dropout=1.5", "model.dropout"), ("optim.lr=-1", "optim.lr"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("trainer.epochs=0", "trainer.epochs"), ("data.val_fraction=0.9", "data.val_fraction + data.test_fraction"),
    ("optim.nesterov=true", "optim.nesterov"), ("model.hidden=[]", "model.hidden"), ("seed=-1", "seed"),
    ("data.split_seed=-1", "data.split_seed"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigValueError, match=key.replace("+", r"\+")):
        make_config(override)


def test_config_hash_is_stable_and_tracks_what_changes_results():
    base = config_hash(make_config())
    assert base == config_hash(make_config())
    assert base != config_hash(make_config("model.bn=post"))
    assert base != config_hash(make_config("seed=1"))
    assert base == config_hash(make_config("tracking.uri=sqlite:///elsewhere.db"))  # where it goes is not what it is
