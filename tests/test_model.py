import pytest
import torch
from torch import nn

from ablate.config import BN, ModelConfig
from ablate.model import DropoutMasks, StackedMLP, build_mlp, decayed_weights, summary


def kinds(model):
    return [type(m).__name__ for m in model]


@pytest.mark.parametrize("bn, block", [
    (BN.pre, ["Linear", "BatchNorm1d", "ReLU", "Dropout"]),
    (BN.post, ["Linear", "ReLU", "BatchNorm1d", "Dropout"]),
    (BN.none, ["Linear", "ReLU", "Dropout"]),
])
def test_bn_placement_per_mode(bn, block):
    assert kinds(build_mlp(ModelConfig(bn=bn), 784, 10)) == block * 2 + ["Linear"]


def test_seed_model_has_109770_parameters_like_the_notebook():
    model = build_mlp(ModelConfig(), 784, 10)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 109_770
    assert "Trainable params: 109,770" in summary(ModelConfig(), 784, 10)
    # built on the meta device: a model far too large to allocate is still described
    assert "Trainable params: 3,000,000,000,001" in summary(ModelConfig(hidden=[10**12], bn=BN.none), 1, 1)


def test_no_dropout_layer_at_p0_and_hidden_sizes_configurable():
    model = build_mlp(ModelConfig(hidden=[32, 16, 8], dropout=0.0, bn=BN.none), 20, 3)
    assert "Dropout" not in kinds(model)
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [32, 16, 8, 3]


def test_bn_hyperparameters_reach_the_layers():
    model = build_mlp(ModelConfig(bn_eps=1e-3, bn_momentum=0.05), 784, 10)
    norms = [m for m in model if isinstance(m, nn.BatchNorm1d)]
    assert all(n.eps == 1e-3 and n.momentum == 0.05 for n in norms)


def test_decayed_weights_are_the_linear_matrices_only():
    model = build_mlp(ModelConfig(), 784, 10)
    decayed = decayed_weights(model)
    assert [tuple(w.shape) for w in decayed] == [(128, 784), (64, 128), (10, 64)]
    others = [p for p in model.parameters() if all(p is not w for w in decayed)]
    assert all(p.dim() == 1 for p in others) and len(others) == 7  # 3 biases, 2 BN gammas, 2 BN betas


def test_init_scale_scales_weights_not_biases():
    torch.manual_seed(0)
    base = build_mlp(ModelConfig(), 784, 10)
    torch.manual_seed(0)
    scaled = build_mlp(ModelConfig(init_scale=3.0), 784, 10)
    assert torch.allclose(scaled[0].weight, 3 * base[0].weight) and torch.equal(scaled[0].bias, base[0].bias)


CPU = torch.device("cpu")


def dropout_masks_of(net, x, seed=0):
    tape: list = []
    net.forward(x, train=True, masks=DropoutMasks(seed, CPU, x.dtype), tape=tape)
    return [saved for layer, saved in zip(net.layers, tape) if isinstance(layer, nn.Dropout)]


def test_dropout_keeps_a_share_1_minus_p_of_units_rescaled_by_1_over_1_minus_p():
    ps = [0.3, 0.6, 0.0]
    net = StackedMLP([ModelConfig(bn=BN.none, dropout=p) for p in ps], [0, 1, 2], 8, 3, CPU, torch.float64)
    masks = dropout_masks_of(net, torch.randn(3, 4096, 8, dtype=torch.float64))
    assert len(masks) == 2  # one per hidden layer
    for mask in masks:
        for k, p in enumerate(ps):
            values = set(mask[k].unique().tolist())
            assert values <= {0.0, 1 / (1 - p)} and 1 / (1 - p) in values  # kept units rescaled, the rest zero
            kept = (mask[k] > 0).double().mean().item()
            assert kept == pytest.approx(1 - p, abs=0.01)  # over 4096 x width draws: sd < 0.002
    assert not torch.equal(masks[0][0], masks[0][1][:, :128])  # members draw their own masks


def test_evaluation_of_a_member_with_dropout_equals_its_plain_module_in_eval_mode():
    net = StackedMLP([ModelConfig(dropout=0.5), ModelConfig(dropout=0.2)], [3, 4], 8, 3, CPU, torch.float64)
    x = torch.randn(2, 64, 8, dtype=torch.float64) * 3 + 1
    net.forward(x, train=True, masks=DropoutMasks(0, CPU, torch.float64))  # moves BN's running averages
    evaluated = net.forward(x[0], train=False)
    for k in range(2):
        assert torch.allclose(evaluated[k], net.member(k).eval()(x[0]), atol=1e-12)


@pytest.mark.parametrize("bn", list(BN))
def test_the_trainers_decay_mask_is_the_linear_weights_only(bn):
    net = StackedMLP([ModelConfig(bn=bn)], [0], 8, 3, CPU, torch.float32)
    names = [name for name, _ in build_mlp(ModelConfig(bn=bn), 8, 3).named_parameters()]
    decayed = {name for name, flag in zip(names, net.decayed) if flag}
    linear = {f"{i}.weight" for i, m in enumerate(build_mlp(ModelConfig(bn=bn), 8, 3)) if isinstance(m, nn.Linear)}
    assert decayed == linear and len(decayed) == 3  # never a bias, nor BatchNorm's gamma or beta
