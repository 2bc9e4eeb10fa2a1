"""The families' readable definitions: the MLP of the notebook, the CNN, a user's model under the contract."""

from pathlib import Path

import pytest
import torch
from torch import nn

from ablate.config import BN, Activation
from ablate.engine.families import family_of
from ablate.engine.families.cnn import CNNConfig, build_cnn
from ablate.engine.families.custom import CustomConfig
from ablate.engine.families.mlp import MLPConfig, build_mlp
from ablate.engine.models import build, check, check_shapes, decayed_weights, summary
from ablate.errors import ConfigValueError
from ablate.nn import Dropout
from tests import user_models
from tests.conftest import REPO


def kinds(model):
    return [type(m).__name__ for m in model]


@pytest.mark.parametrize("bn, block", [
    (BN.pre, ["Linear", "BatchNorm1d", "ReLU", "Dropout"]),
    (BN.post, ["Linear", "ReLU", "BatchNorm1d", "Dropout"]),
    (BN.none, ["Linear", "ReLU", "Dropout"]),
])
def test_bn_placement_per_mode(bn, block):
    assert kinds(build_mlp(MLPConfig(bn=bn), 784, 10)) == ["Flatten"] + block * 2 + ["Linear"]  # flattens images itself


@pytest.mark.parametrize("activation, kind", [(Activation.sigmoid, "Sigmoid"), (Activation.tanh, "Tanh"),
                                              (Activation.gelu, "GELU")])
def test_the_activation_takes_relus_place_in_every_placement_and_family(activation, kind):
    assert kinds(build_mlp(MLPConfig(bn=BN.post, activation=activation), 784, 10))[2] == kind
    cnn = build_cnn(CNNConfig(bn=BN.pre, channels=[4], activation=activation), (1, 8, 8), 10)
    assert kinds(cnn[0])[2] == kind


def test_seed_model_has_109770_parameters_like_the_notebook():
    model = build_mlp(MLPConfig(), 784, 10)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 109_770
    assert "Trainable params: 109,770" in summary(MLPConfig(), 784, 10)
    # built on the meta device: a model far too large to allocate is still described
    assert "Trainable params: 3,000,000,000,001" in summary(MLPConfig(hidden=[10**12], bn=BN.none), 1, 1)


def test_no_dropout_layer_at_p0_and_hidden_sizes_configurable():
    model = build_mlp(MLPConfig(hidden=[32, 16, 8], dropout=0.0, bn=BN.none), 20, 3)
    assert "Dropout" not in kinds(model)
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [32, 16, 8, 3]


def test_bn_hyperparameters_reach_the_layers():
    model = build_mlp(MLPConfig(bn_eps=1e-3, bn_momentum=0.05), 784, 10)
    norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    assert all(n.eps == 1e-3 and n.momentum == 0.05 for n in norms)


def test_decayed_weights_are_the_linear_matrices_only():
    model = build_mlp(MLPConfig(), 784, 10)
    decayed = decayed_weights(model)
    assert [tuple(w.shape) for w in decayed] == [(128, 784), (64, 128), (10, 64)]
    others = [p for p in model.parameters() if all(p is not w for w in decayed)]
    assert all(p.dim() == 1 for p in others) and len(others) == 7  # 3 biases, 2 BN gammas, 2 BN betas


def test_init_scale_scales_weights_not_biases():
    torch.manual_seed(0)
    base = build(MLPConfig(), (784,), 10)
    torch.manual_seed(0)
    scaled = build(MLPConfig(init_scale=3.0), (784,), 10)
    assert torch.allclose(scaled[1].weight, 3 * base[1].weight) and torch.equal(scaled[1].bias, base[1].bias)


# ------------------------------------------------------------------------------------------------ the CNN


@pytest.mark.parametrize("bn, blocks", [
    (BN.pre, ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout"]),
    (BN.post, ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "Dropout"]),
    (BN.none, ["Conv2d", "ReLU", "MaxPool2d", "Dropout"]),
])
def test_the_cnn_places_bn_as_the_mlp_does_then_pools_then_drops(bn, blocks):
    model = build_cnn(CNNConfig(bn=bn, channels=[4, 8], dropout=0.2), (1, 8, 8), 10)
    assert [kinds(b) for b in list(model)[:2]] == [blocks, blocks]
    assert kinds(list(model)[2:]) == ["Flatten", "Linear"] and model[3].in_features == 8 * 2 * 2
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [4, 8]
    assert all(isinstance(m, Dropout) and m.p.item() == pytest.approx(0.2) for m in model.modules()
               if type(m).__name__ == "Dropout")
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_the_cnn_keeps_its_dropout_layers_at_p0_so_members_may_differ_in_p():
    layers = [type(m).__name__ for m in build_cnn(CNNConfig(dropout=0.0), (1, 8, 8), 10).modules()]
    assert layers.count("Dropout") == 2 and "dropout" in family_of(CNNConfig()).per_member


def test_the_cnn_says_why_it_cannot_take_the_data():
    with pytest.raises(ConfigValueError, match=r"halves a 8x8 image 4 times, to nothing"):
        build_cnn(CNNConfig(channels=[2, 2, 2, 2]), (1, 8, 8), 10)
    with pytest.raises(ConfigValueError, match=r"model=cnn needs images \[channels, height, width\].*\[784\]"):
        build_cnn(CNNConfig(), (784,), 10)


def test_weight_decay_and_init_scale_act_on_every_weight_of_dimension_2_or_more():
    torch.manual_seed(0)
    base = build(CNNConfig(), (1, 8, 8), 10)
    torch.manual_seed(0)
    scaled = build(CNNConfig(init_scale=2.0), (1, 8, 8), 10)
    decayed = {name for name, p in base.named_parameters() if any(p is w for w in decayed_weights(base))}
    assert decayed == {"0.0.weight", "1.0.weight", "3.weight"}  # the conv kernels and the head, no bias, no BN
    for name, p in scaled.named_parameters():
        assert torch.allclose(p, (2.0 if name in decayed else 1.0) * dict(base.named_parameters())[name])


# ----------------------------------------------------------------------------------- a model of yours
def custom(target, **fields):
    return CustomConfig(target=f"tests.user_models.{target}", **fields)


def test_a_custom_model_is_built_with_its_shape_classes_and_only_the_factors_that_are_set():
    model = build(custom("Tiny", bn=BN.post, dropout=0.25), (1, 8, 8), 10)
    assert kinds(model.body[0]) == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "Dropout"]
    assert kinds(build(custom("Tiny", activation=Activation.tanh), (1, 8, 8), 10).body[0])[2] == "Tanh"
    assert model.body[0][4].p.item() == pytest.approx(0.25)
    check(custom("NoDropout", bn=BN.none))  # dropout not set: not passed, no error
    assert build(custom("WithCustomLayer", kwargs={"width": 3}), (1, 8, 8), 10).body[1].weight.shape == (3, 64)
    assert build(CustomConfig(target="tests.user_models:Tiny"), (1, 8, 8), 10) is not None  # module:Class too


@pytest.mark.parametrize("cfg, message", [
    (custom("NoDropout", dropout=0.2),
     "tests.user_models.NoDropout does not take `dropout`: add a `dropout` parameter, or drop `model.dropout`."),
    (custom("NoDropout", activation=Activation.gelu),
     "tests.user_models.NoDropout does not take `activation`: add a `activation` parameter, or drop "
     "`model.activation`."),
    (custom("Tiny", kwargs={"width": 8}),
     "tests.user_models.Tiny does not take `width`: add a `width` parameter, or drop `model.kwargs.width`."),
    (CustomConfig(target="no_such_module.Net"), "model.target=no_such_module.Net: cannot import no_such_module"),
    (custom("Nothing"), "model.target=tests.user_models.Nothing: tests.user_models has no nn.Module class Nothing."),
    (CustomConfig(target="Net"), "names no module"),
])
def test_the_contract_is_checked_before_any_data_is_read(cfg, message):
    with pytest.raises(ConfigValueError) as err:
        check(cfg)
    assert message in str(err.value)


RAISES_LINE = next(i for i, line in enumerate(Path(user_models.__file__).read_text().splitlines(), 1)
                   if 'raise ValueError("needs at least 3 channels")' in line)


@pytest.mark.parametrize("cfg, message", [
    (custom("Raises", bn=BN.pre), "tests.user_models.Raises(in_shape=(1, 8, 8), n_classes=10, bn='pre') raised "
                                  f"ValueError: needs at least 3 channels (at user_models.py:{RAISES_LINE}: raise "
                                  "ValueError(\"needs at least 3 channels\")); fix the constructor"),
    (custom("WrongOutput"), "returns [2, 11] for a batch of [2, 1, 8, 8]: its forward must return [batch, n_classes] "
                            "= [2, 10]."),
    (custom("Tiny"), None),
])
def test_a_constructor_that_raises_or_a_forward_of_the_wrong_shape_is_one_line(cfg, message):
    if message is None:
        check_shapes(cfg, (1, 8, 8), 10)
        return
    with pytest.raises(ConfigValueError) as err:
        check_shapes(cfg, (1, 8, 8), 10)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_decay_acts_on_a_custom_layers_own_weight_never_on_its_scale_or_bn():
    model = build(custom("WithCustomLayer"), (1, 8, 8), 10)
    decayed = {name for name, p in model.named_parameters() if any(p is w for w in decayed_weights(model))}
    assert decayed == {"body.1.weight", "body.4.weight"}  # ScaledLinear's weight and the head's; not its scale


def test_the_examples_model_summary_counts_fewer_parameters_without_bn():
    import sys

    sys.path.insert(0, str(REPO / "examples"))
    try:
        texts = {bn: summary(CustomConfig(target="my_models.SmallResNet", bn=bn), (1, 28, 28), 10)
                 for bn in (BN.pre, BN.none)}
    finally:
        sys.path.remove(str(REPO / "examples"))
    count = {bn: int(text.rsplit("Trainable params: ", 1)[1].replace(",", "")) for bn, text in texts.items()}
    assert count[BN.none] < count[BN.pre] and "[B, 16, 28, 28]" in texts[BN.pre]
