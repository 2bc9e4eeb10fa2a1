"""The update maths against torch.optim and autograd; weight decay on weights only."""

import pytest
import torch
import torch.nn.functional as F

from ablate.config import L2Mode, OptimName
from ablate.engine.families.mlp import build_mlp
from ablate.engine.models import decayed_weights
from ablate.engine.optim import Optimizer, member_hyperparameters as hyper
from ablate.engine.optim import FactoredGradient
from ablate.engine.stacked_mlp import StackedMLP
from tests.conftest import make_config


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("l2", list(L2Mode))
def test_plain_sgd_adds_the_weight_gradient_straight_into_the_weights(k, l2):
    """The fused update (x^T dy added into w by one matmul) equals the update from the multiplied-out gradient."""
    cfgs = [make_config("optim.momentum=0", "optim.weight_decay=0.01", f"optim.l2={l2.value}", f"optim.lr={lr}")
            for lr in [0.1, 0.05, 0.2][:k]]
    fused = torch.randn(k, 8, 5, dtype=torch.float64)
    general, before = fused.clone(), fused.clone()
    x, dy = torch.randn(k, 16, 8, dtype=torch.float64), torch.randn(k, 16, 5, dtype=torch.float64)
    gradient = FactoredGradient(x, dy).into(torch.empty_like(fused))
    assert torch.allclose(gradient, x.transpose(1, 2) @ dy, atol=1e-12)
    for params, grad in [(fused, FactoredGradient(x, dy)), (general, gradient)]:
        optimizer = Optimizer(OptimName.sgd, [params], [True], hyper(cfgs, torch.device("cpu"), torch.float64))
        assert optimizer.fuses
        optimizer.step([grad])
    assert torch.allclose(fused, general, atol=1e-12)
    lr = torch.tensor([0.1, 0.05, 0.2][:k], dtype=torch.float64).view(-1, 1, 1)
    shrink = 1 - lr * (2 * 0.01 if l2 == L2Mode.penalty else 0.01)
    assert torch.allclose(fused, shrink * before - lr * gradient, atol=1e-12)  # the update, written out


def _step_with_zero_grads(l2: L2Mode, kind: OptimName):
    """One step with zero gradients on the trainer's own network and decay mask: only decay can move a tensor."""
    cfg = make_config(f"optim={'sgd' if kind == OptimName.sgd else 'adam'}", "optim.weight_decay=0.1",
                      f"optim.l2={l2.value}")
    net = StackedMLP([cfg.model], [0], [0], 8, 3, torch.device("cpu"), torch.float32)
    before = [p.clone() for p in net.params]
    Optimizer(cfg.optim.name, net.params, net.decayed, hyper([cfg], torch.device("cpu"), torch.float32)).step(
        [torch.zeros_like(p) for p in net.params])
    return [(d, not torch.equal(b, p)) for d, b, p in zip(net.decayed, before, net.params)]


@pytest.mark.parametrize("l2", list(L2Mode))
@pytest.mark.parametrize("kind", list(OptimName))
def test_weight_decay_moves_weight_matrices_only(l2, kind):
    moved = _step_with_zero_grads(l2, kind)
    assert all(changed == decayed for decayed, changed in moved)  # biases and BN gamma/beta untouched
    assert sum(d for d, _ in moved) == 3


def test_penalty_update_is_the_gradient_of_lambda_sum_w2():
    """l2=penalty: the step equals SGD on loss + lambda * sum(w**2), differentiated by autograd."""
    cfg = make_config("optim.weight_decay=0.01", "optim.l2=penalty", "model.dropout=0")
    torch.manual_seed(0)
    model, x, y = build_mlp(cfg.model, 8, 3), torch.randn(16, 8), torch.randint(0, 3, (16,))
    reference = build_mlp(cfg.model, 8, 3)
    reference.load_state_dict(model.state_dict())
    params, weights = list(model.parameters()), decayed_weights(model)
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    Optimizer(cfg.optim.name, params, [any(p is w for w in weights) for p in params],
              hyper([cfg], torch.device("cpu"), torch.float32)).step(grads)
    loss = F.cross_entropy(reference(x), y) + 0.01 * sum(w.pow(2).sum() for w in decayed_weights(reference))
    loss.backward()
    with torch.no_grad():
        for p, q in zip(params, reference.parameters()):
            assert torch.allclose(p, q - 0.1 * q.grad, atol=1e-7)


@pytest.mark.parametrize("overrides, make_torch_opt", [
    (["optim.momentum=0.9"], lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    (["optim.momentum=0.9", "optim.nesterov=true"], lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)),
    (["optim=adam"], lambda ps: torch.optim.Adam(ps, lr=1e-3)),
    (["optim=adamw"], lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2)),
])
def test_optimizer_matches_torch_optim(overrides, make_torch_opt):
    """Our update is torch.optim's (AdamW: weight matrices only, so only they are given decay there)."""
    cfg = make_config("model.dropout=0", "model.bn=none", *overrides)
    torch.manual_seed(0)
    ours, theirs = build_mlp(cfg.model, 8, 3), build_mlp(cfg.model, 8, 3)
    theirs.load_state_dict(ours.state_dict())
    weights = decayed_weights(theirs)
    others = [p for p in theirs.parameters() if all(p is not w for w in weights)]
    torch_opt = make_torch_opt([{"params": weights}, {"params": others, "weight_decay": 0.0}])
    params = list(ours.parameters())
    decayed = [any(p is w for w in decayed_weights(ours)) for p in params]
    optimizer = Optimizer(cfg.optim.name, params, decayed, hyper([cfg], torch.device("cpu"), torch.float32))
    for step in range(5):
        x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
        optimizer.step(torch.autograd.grad(F.cross_entropy(ours(x), y), params))
        torch_opt.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        torch_opt.step()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
