"""The MLP's hand-written stacked path computes what build_mlp's nn.Sequential computes, gradients included."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.config import BN, Activation
from ablate.engine.families.mlp import MLPConfig
from ablate.engine.families.mlp import build_mlp
from ablate.nn import Dropout
from ablate.engine.optim import FactoredGradient
from ablate.engine.stacked_mlp import StackedMLP, cross_entropy

CPU = torch.device("cpu")


def dropout_masks_of(net, x):
    tape: list = []
    net.forward(x, train=True, masks=net.masks, tape=tape)
    return [saved for layer, saved in zip(net.layers, tape) if isinstance(layer, Dropout)]


def test_dropout_keeps_a_share_1_minus_p_of_units_rescaled_by_1_over_1_minus_p():
    ps = [0.3, 0.6, 0.0]
    net = StackedMLP([MLPConfig(bn=BN.none, dropout=p) for p in ps], [0, 1, 2], [0, 1, 2], 8, 3, CPU, torch.float64)
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
    net = StackedMLP([MLPConfig(dropout=0.5), MLPConfig(dropout=0.2)], [3, 4], [3, 4], 8, 3, CPU, torch.float64)
    x = torch.randn(2, 64, 8, dtype=torch.float64) * 3 + 1
    net.forward(x, train=True, masks=net.masks)  # moves BN's running averages
    evaluated = net.forward(x[0], train=False)
    for k in range(2):
        assert torch.allclose(evaluated[k], net.member(k).eval()(x[0]), atol=1e-12)


@pytest.mark.parametrize("bn", list(BN))
def test_the_trainers_decay_mask_is_the_linear_weights_only(bn):
    net = StackedMLP([MLPConfig(bn=bn)], [0], [0], 8, 3, CPU, torch.float32)
    names = [name for name, _ in build_mlp(MLPConfig(bn=bn), 8, 3).named_parameters()]
    decayed = {name for name, flag in zip(names, net.decayed) if flag}
    linear = {f"{i}.weight" for i, m in enumerate(build_mlp(MLPConfig(bn=bn), 8, 3)) if isinstance(m, nn.Linear)}
    assert decayed == linear and len(decayed) == 3  # never a bias, nor BatchNorm's gamma or beta


@pytest.mark.parametrize("bn", list(BN))
@pytest.mark.parametrize("activation", list(Activation))
def test_the_stacked_network_computes_what_build_mlp_computes(bn, activation):
    """The trainer's [K, ...] network vs the readable nn.Sequential, in train mode (dropout 0) and eval mode."""
    cfgs = [MLPConfig(bn=bn, dropout=0.0, activation=activation), MLPConfig(bn=bn, dropout=0.0, activation=activation)]
    net = StackedMLP(cfgs, [3, 4], [3, 4], 8, 3, torch.device("cpu"), torch.float64)
    x = torch.randn(2, 16, 8, dtype=torch.float64)
    out = net.forward(x, train=True)
    for k in range(2):
        torch.manual_seed(3 + k)
        plain = build_mlp(cfgs[k], 8, 3).double()
        assert torch.allclose(out[k], plain.train()(x[k]), atol=1e-12)  # same init from the same seed
        exported = net.member(k).state_dict()  # weights and the running averages the forward just updated
        for name, value in plain.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                assert torch.allclose(exported[name], value, atol=1e-12), name
        assert torch.allclose(net.forward(x[k], train=False)[k], net.member(k).eval()(x[k]), atol=1e-12)


def test_stacked_eval_uses_running_averages_and_no_dropout():
    net = StackedMLP([MLPConfig(dropout=0.5)], [0], [0], 8, 3, torch.device("cpu"), torch.float32)
    masks = net.masks
    x = torch.randn(1, 64, 8) * 5 + 2
    net.forward(x, train=True, masks=masks)  # a training step moves the running averages
    assert torch.equal(net.forward(x[0], train=False), net.forward(x[0], train=False))  # no dropout
    assert torch.allclose(net.forward(x[0, :1], train=False)[0], net.forward(x[0], train=False)[0, :1], atol=1e-6)
    first, second = net.forward(x, train=True, masks=masks), net.forward(x, train=True, masks=masks)
    assert not torch.equal(first, second)  # dropout is random in training


@pytest.mark.parametrize("bn", list(BN))
@pytest.mark.parametrize("activation", list(Activation))
def test_backward_by_hand_is_autograds_gradient(bn, activation):
    """StackedMLP.backward vs autograd on build_mlp's network, member by member, with the same dropout masks;
    member 1 has p = 0 (it keeps every unit of the template's Dropout layers)."""
    cfgs = [MLPConfig(bn=bn, dropout=0.3, activation=activation), MLPConfig(bn=bn, dropout=0.0, activation=activation)]
    cpu = torch.device("cpu")
    net = StackedMLP(cfgs, [3, 4], [3, 4], 8, 3, cpu, torch.float64)
    x, y = torch.randn(2, 16, 8, dtype=torch.float64), torch.randint(0, 3, (2, 16))
    tape: list = []
    losses, grad = cross_entropy(net.forward(x, train=True, masks=net.masks, tape=tape), y)
    grads = {}
    net.backward(tape, grad, lambda i, g: grads.setdefault(i, g.into(torch.empty_like(net.params[i]))
                                                           if isinstance(g, FactoredGradient) else g))
    dropout_masks = [m for layer, m in zip(net.layers, tape) if isinstance(layer, Dropout)]
    assert len(dropout_masks) == 2 and all(torch.all(m[1] == 1) for m in dropout_masks)
    for k in range(2):
        torch.manual_seed(3 + k)
        plain = build_mlp(replace(cfgs[k], dropout=0.3), 8, 3).double().train()  # the template's layers
        h = x[k]
        for layer, saved in zip(plain, tape):
            h = h * saved[k] if isinstance(layer, Dropout) else layer(h)
        loss = F.cross_entropy(h, y[k])
        assert torch.allclose(losses[k], loss, atol=1e-12)
        for i, expected in enumerate(torch.autograd.grad(loss, list(plain.parameters()))):
            ours = grads[i][k].t() if expected.dim() == 2 else grads[i][k]  # weights are stored [in, out]
            assert torch.allclose(ours, expected, atol=1e-12), i
