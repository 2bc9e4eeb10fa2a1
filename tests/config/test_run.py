import dataclasses

import pytest
from omegaconf import OmegaConf

from ablate.config import (BN, Augment, DataConfig, L2Mode, OptimConfig, OptimName, Probe, RunConfig, SearchConfig,
                           TrackingConfig, config_hash, flatten, with_values)
from ablate.engine.families.cnn import CNNConfig
from ablate.engine.families.custom import CustomConfig
from ablate.engine.families.mlp import MLPConfig
from ablate.errors import ConfigValueError
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


GROUPS = {"data": DataConfig, "optim": OptimConfig, "tracking": TrackingConfig, "search": SearchConfig}


def _schema_default(schema, dotted):
    """(known, default) of a dotted key in a dataclass schema; a dict field takes any key below it."""
    node = schema
    for part in dotted.split("."):
        if isinstance(node, dict):
            return True, None
        known = {f.name: f for f in dataclasses.fields(node)}
        if part not in known:
            return False, None
        f = known[part]
        value = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        node = value if dataclasses.is_dataclass(value) or isinstance(value, dict) else None
        if node is None:
            return True, None if value == "???" else getattr(value, "value", value)
    return True, None


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_option_sets_what_its_file_says_and_only_what_differs_from_the_schema(group):
    for option in sorted((REPO / "conf" / group).glob("*.yaml")):
        chosen = _leaves(OmegaConf.to_container(OmegaConf.load(option), resolve=True))
        given = [f"{group}.{key}=given" for key, value in chosen.items() if value == "???"]  # the user must set these
        composed = flatten(make_config(f"{group}={option.stem}", *given), with_search=True)
        assert chosen, f"{option} sets nothing"
        for key, value in chosen.items():
            if value == "???":
                assert composed[f"{group}.{key}"] == "given"
                continue
            known, default = _schema_default(GROUPS[group], key)
            assert known, f"{option}: {key} is not a key of {GROUPS[group].__name__}"
            assert value != default, f"{option}: {key}={value!r} repeats the schema's default"
            assert composed[f"{group}.{key}"] == value, f"{option}: {key}"


def test_experiments_and_the_main_config_set_only_what_composition_does_not_already_give():
    defaults = flatten(make_config(), with_search=True)
    for path in [REPO / "conf" / "config.yaml", *sorted((REPO / "conf" / "experiment").glob("*.yaml"))]:
        chosen = _leaves(OmegaConf.to_container(OmegaConf.load(path)))
        for key, value in chosen.items():
            if key.startswith("hydra."):
                continue
            known, default = _schema_default(RunConfig, key)
            assert known, f"{path.name}: {key} is not a config key"
            assert defaults.get(key, default) != value, f"{path.name}: {key}={value!r} is what the config has anyway"


def test_the_model_options_are_the_typed_families():
    assert [type(make_config(f"model={name}", *extra).model) for name, extra in
            [("mlp", []), ("cnn", []), ("custom", ["model.target=my.Net"])]] == [MLPConfig, CNNConfig, CustomConfig]
    assert make_config("model=cnn").model.channels == [16, 32]
    with pytest.raises(ConfigValueError, match=r"model.hidden is not a setting ablate has.*channels"):
        make_config("model=cnn", "model.hidden=[4]")  # a family's keys only


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
    ("model.activation=swish", "model.activation", "relu, sigmoid, tanh, gelu"),
    ("model.bn_stats=exact", "model.bn_stats", "running, precise"),
    ("trainer.probes=[landscape,curvature]", "trainer.probes", "activations, covariate_shift, landscape"),
])
def test_bad_choice_fails_at_composition_in_one_line_naming_key_and_choices(override, key, allowed):
    with pytest.raises(ConfigValueError) as err:
        make_config(override)
    message = str(err.value)
    assert message.startswith(f"{override} is not allowed: {key} must be one of ") and allowed in message
    assert "\n" not in message


def test_unknown_key_fails_at_composition_with_the_nearest_key():
    with pytest.raises(ConfigValueError) as err:
        make_config("model.dropuot=0.1")
    assert str(err.value).startswith("model.dropuot is not a setting ablate has, so nothing would read it (did you mean "
                                     "model.dropout? the settings under model: bn, dropout,")


@pytest.mark.parametrize("override, message", [
    ("+trainer.epoch=5", "trainer.epoch is not a setting ablate has, so nothing would read it (did you mean "
                         "trainer.epochs?"),
    ("+model.droput=0.2", "model.droput is not a setting ablate has, so nothing would read it (did you mean "
                          "model.dropout?"),
    ("+foo=1", "foo is not a setting ablate has, so nothing would read it (the settings at the top: data, model,"),
])
def test_a_key_added_with_plus_that_nothing_reads_is_refused_naming_the_setting_meant(override, message):
    """Hydra refuses trainer.epoch=5 and suggests +trainer.epoch=5; that must not train silently with the default."""
    with pytest.raises(ConfigValueError) as err:
        make_config(override)
    assert message in str(err.value)


def test_free_form_settings_take_added_keys():
    cfg = make_config("model=custom", "model.target=tests.user_models.Tiny", "+model.kwargs.width=32",
                      "+search.space.optim.momentum={type: uniform, low: 0, high: 0.9}")
    assert cfg.model.kwargs == {"width": 32} and "momentum" in cfg.search.space["optim"]


@pytest.mark.parametrize("override, key", [
    ("model.dropout=1.5", "model.dropout"), ("optim.lr=-1", "optim.lr"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("trainer.epochs=0", "trainer.epochs"), ("data.val_fraction=0.9", "data.val_fraction + data.test_fraction"),
    ("optim.nesterov=true", "optim.nesterov"), ("model.hidden=[]", "model.hidden"), ("seed=-1", "seed"),
    ("data.split_seed=-1", "data.split_seed"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigValueError, match=key.replace("+", r"\+")):
        make_config(override)


def test_values_set_on_a_composed_config_are_typed_and_checked_together():
    cfg = make_config()
    changed = with_values(cfg, {"tracking.heartbeat_s": 600, "tracking.dead_after_s": 1200, "optim.lr": 1,
                                "model.bn": "post"})
    assert (changed.tracking.heartbeat_s, changed.tracking.dead_after_s, changed.model.bn) == (600, 1200, BN.post)
    assert type(changed.optim.lr) is float and changed.optim.lr == 1.0 and cfg.optim.lr == 0.1  # cfg is untouched
    with pytest.raises(ConfigValueError, match="tracking.dead_after_s"):  # alone, it breaks the check across fields
        with_values(cfg, {"tracking.heartbeat_s": 600})
    with pytest.raises(ConfigValueError, match="model.dropuot is not a config key"):
        with_values(cfg, {"model.dropuot": 0.1})
    listed = with_values(cfg, {"trainer.probes": ["landscape", "norms"], "data.augment": ["flip"]})
    assert listed.trainer.probes == [Probe.landscape, Probe.norms] and listed.data.augment == [Augment.flip]
    with pytest.raises(ConfigValueError, match="trainer.probes"):  # each element checked as its type
        with_values(cfg, {"trainer.probes": ["curvature"]})


def test_config_hash_is_stable_and_tracks_what_changes_results():
    base = config_hash(make_config())
    assert base == config_hash(make_config())
    assert base != config_hash(make_config("model.bn=post"))
    assert base != config_hash(make_config("seed=1"))
    assert base == config_hash(make_config("tracking.uri=sqlite:///elsewhere.db"))  # where it goes is not what it is


def test_float64_on_mps_is_refused_at_composition_with_the_fix():
    """Apple's MPS has no float64: refused before anything runs, not a crash inside the first step."""
    with pytest.raises(ConfigValueError, match=r"trainer.dtype='float64' is not allowed: .*float32 on trainer.device=mps "
                                               r".*use trainer.device=cpu for float64"):
        make_config("trainer.device=mps", "trainer.dtype=float64")
    assert make_config("trainer.device=mps").trainer.dtype.value == "float32"  # composing does not need the device
