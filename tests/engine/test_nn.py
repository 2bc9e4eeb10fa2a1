"""The building blocks give a factor one meaning in every model: BatchNorm's placement, dropout's p per member."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablate.nn import Dropout, block, norm_act


def kinds(modules):
    return [type(m).__name__ for m in modules]


@pytest.mark.parametrize("layer, norm", [(nn.Linear(4, 6), "BatchNorm1d"), (nn.Conv2d(1, 6, 3), "BatchNorm2d"),
                                         (nn.Conv1d(1, 6, 3), "BatchNorm1d")])
def test_bn_placement_means_the_same_for_linear_and_conv_layers(layer, norm):
    assert kinds(norm_act("pre", layer)) == [norm, "ReLU"]
    assert kinds(norm_act("post", layer)) == ["ReLU", norm]
    assert kinds(norm_act("none", layer)) == ["ReLU"]
    assert norm_act("pre", layer)[0].num_features == 6


def test_a_block_is_layer_norm_activation_pooling_then_dropout():
    conv = nn.Conv2d(1, 4, 3, padding=1)
    assert kinds(block(conv, "post", 0.2, nn.MaxPool2d(2))) == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "Dropout"]
    assert kinds(block(nn.Linear(3, 5), "pre")) == ["Linear", "BatchNorm1d", "ReLU"]  # no dropout asked: none
    assert block(nn.Linear(3, 5), "pre", eps=1e-3, momentum=0.2)[1].eps == 1e-3
    with pytest.raises(TypeError, match="Linear or Conv"):
        norm_act("pre", nn.ReLU())
    with pytest.raises(ValueError, match="none, pre, post"):
        block(nn.Linear(3, 5), "middle")


def test_dropout_keeps_a_share_1_minus_p_rescaled_in_training_and_is_the_identity_in_evaluation():
    torch.manual_seed(0)
    drop, x = Dropout(0.3), torch.ones(200_000, dtype=torch.float64)
    kept = drop.train()(x)
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.7])  # kept units scaled by 1 / (1 - p)
    assert (kept > 0).double().mean().item() == pytest.approx(0.7, abs=0.005)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_each_member_of_a_vmapped_population_drops_with_its_own_p():
    members = [nn.Sequential(Dropout(p)) for p in (0.0, 0.5, 0.9)]
    params, buffers = stack_module_state(members)
    template = members[0].to("meta")
    x = torch.ones(20_000)
    out = vmap(lambda b, x: functional_call(template, (params, b), (x,)), in_dims=(0, None),
               randomness="different")(buffers, x)
    kept = (out > 0).double().mean(1)
    assert kept.tolist() == pytest.approx([1.0, 0.5, 0.1], abs=0.02)
    assert out[1].max().item() == pytest.approx(2.0) and out[2].max().item() == pytest.approx(10.0)
