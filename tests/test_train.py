import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ablate.config import BN, L2Mode, ModelConfig, OptimName
from ablate.model import build_mlp, decayed_weights
from ablate.data import cached_splits
from ablate.model import DropoutMasks, Outer, StackedMLP
from ablate.train import Diverged, Optimizer, batch_starts, cross_entropy, epochs_to_reach, fit, fit_population, hyper
from tests.conftest import QUICK, make_config


def test_bn_uses_batch_statistics_in_train_mode_and_running_averages_in_eval():
    torch.manual_seed(0)
    model = build_mlp(ModelConfig(dropout=0.0), 8, 3)
    x = torch.randn(64, 8) * 5 + 2
    model.train()
    model(x)  # one training forward updates the running averages
    bn = model[1]
    assert not torch.allclose(bn.running_mean, torch.zeros(bn.num_features))
    model.eval()
    one_row = model(x[:1])
    in_batch = model(x)[:1]
    assert torch.allclose(one_row, in_batch, atol=1e-6)  # eval: a row's output does not depend on its batch
    model.train()
    assert not torch.allclose(model(x[:2])[:1], model(x)[:1])  # train: it does (batch statistics)


def test_dropout_is_random_in_train_mode_and_off_in_eval():
    torch.manual_seed(0)
    model = build_mlp(ModelConfig(bn=BN.none, dropout=0.5), 8, 3)
    x = torch.randn(16, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("bn", list(BN))
def test_the_stacked_network_computes_what_build_mlp_computes(bn):
    """The trainer's [K, ...] network vs the readable nn.Sequential, in train mode (dropout 0) and eval mode."""
    cfgs = [ModelConfig(bn=bn, dropout=0.0), ModelConfig(bn=bn, dropout=0.0)]
    net = StackedMLP(cfgs, [3, 4], 8, 3, torch.device("cpu"), torch.float64)
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
    net = StackedMLP([ModelConfig(dropout=0.5)], [0], 8, 3, torch.device("cpu"), torch.float32)
    masks = DropoutMasks(0, torch.device("cpu"), torch.float32)
    x = torch.randn(1, 64, 8) * 5 + 2
    net.forward(x, train=True, masks=masks)  # a training step moves the running averages
    assert torch.equal(net.forward(x[0], train=False), net.forward(x[0], train=False))  # no dropout
    assert torch.allclose(net.forward(x[0, :1], train=False)[0], net.forward(x[0], train=False)[0, :1], atol=1e-6)
    first, second = net.forward(x, train=True, masks=masks), net.forward(x, train=True, masks=masks)
    assert not torch.equal(first, second)  # dropout is random in training


@pytest.mark.parametrize("bn", list(BN))
def test_backward_by_hand_is_autograds_gradient(bn):
    """StackedMLP.backward vs autograd on build_mlp's network, member by member, with the same dropout masks;
    member 1 has p = 0 (it keeps every unit of the template's Dropout layers)."""
    cfgs = [ModelConfig(bn=bn, dropout=0.3), ModelConfig(bn=bn, dropout=0.0)]
    cpu = torch.device("cpu")
    net = StackedMLP(cfgs, [3, 4], 8, 3, cpu, torch.float64)
    x, y = torch.randn(2, 16, 8, dtype=torch.float64), torch.randint(0, 3, (2, 16))
    tape: list = []
    losses, grad = cross_entropy(net.forward(x, train=True, masks=DropoutMasks(0, cpu, torch.float64), tape=tape), y)
    grads = {}
    net.backward(tape, grad, lambda i, g: grads.setdefault(i, g.into(torch.empty_like(net.params[i]))
                                                           if isinstance(g, Outer) else g))
    dropout_masks = [m for layer, m in zip(net.layers, tape) if isinstance(layer, torch.nn.Dropout)]
    assert len(dropout_masks) == 2 and all(torch.all(m[1] == 1) for m in dropout_masks)
    for k in range(2):
        torch.manual_seed(3 + k)
        plain = build_mlp(replace(cfgs[k], dropout=0.3), 8, 3).double().train()  # the template's layers
        h = x[k]
        for layer, saved in zip(plain, tape):
            h = h * saved[k] if isinstance(layer, torch.nn.Dropout) else layer(h)
        loss = F.cross_entropy(h, y[k])
        assert torch.allclose(losses[k], loss, atol=1e-12)
        for i, expected in enumerate(torch.autograd.grad(loss, list(plain.parameters()))):
            ours = grads[i][k].t() if expected.dim() == 2 else grads[i][k]  # weights are stored [in, out]
            assert torch.allclose(ours, expected, atol=1e-12), i


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("l2", list(L2Mode))
def test_plain_sgd_adds_the_weight_gradient_straight_into_the_weights(k, l2):
    """The fused update (x^T dy added into w by one matmul) equals the update from the multiplied-out gradient."""
    cfgs = [make_config("optim.momentum=0", "optim.weight_decay=0.01", f"optim.l2={l2.value}", f"optim.lr={lr}")
            for lr in [0.1, 0.05, 0.2][:k]]
    fused = torch.randn(k, 8, 5, dtype=torch.float64)
    general, before = fused.clone(), fused.clone()
    x, dy = torch.randn(k, 16, 8, dtype=torch.float64), torch.randn(k, 16, 5, dtype=torch.float64)
    gradient = Outer(x, dy).into(torch.empty_like(fused))
    assert torch.allclose(gradient, x.transpose(1, 2) @ dy, atol=1e-12)
    for params, grad in [(fused, Outer(x, dy)), (general, gradient)]:
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
    net = StackedMLP([cfg.model], [0], 8, 3, torch.device("cpu"), torch.float32)
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


def test_same_seed_same_metrics_on_cpu():
    cfg = make_config(*QUICK)
    splits = cached_splits(cfg.data)

    def run(seed):
        return fit(replace(cfg, seed=seed), splits)

    a, b, c = run(1), run(1), run(2)
    assert a.epochs == [{**m, "epoch_seconds": a.epochs[i]["epoch_seconds"]} for i, m in enumerate(b.epochs)]
    assert a.final["test_acc"] == b.final["test_acc"]
    assert a.epochs[-1]["train_loss"] != c.epochs[-1]["train_loss"]


def test_metrics_per_epoch_and_final():
    cfg = make_config(*QUICK)
    splits = cached_splits(cfg.data)
    seen = []
    history = fit(cfg, splits, on_epoch=seen.append)
    assert seen == history.epochs and [m["epoch"] for m in seen] == [1.0, 2.0]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "weight_norm", "epoch_seconds"} <= set(seen[0])
    assert 0.5 < history.final["test_acc"] <= 1.0 and history.final["test_loss"] > 0


def test_a_nan_loss_stops_the_run_as_diverged():
    cfg = make_config(*QUICK, "model.bn=none", "model.init_scale=50", "optim.lr=50")
    splits = cached_splits(cfg.data)
    with pytest.raises(Diverged, match="lower optim.lr"):
        fit(cfg, splits)


def test_batches_never_leave_a_single_row_for_batchnorm():
    assert batch_starts(65, 32) == [0, 32]  # rows 64..64 would be a batch of one
    assert batch_starts(66, 32) == [0, 32, 64]


def test_epochs_to_reach_target():
    history = [{"epoch": 1.0, "val_acc": 0.5}, {"epoch": 2.0, "val_acc": 0.81}, {"epoch": 3.0, "val_acc": 0.9}]
    assert epochs_to_reach(history, 0.8) == 2.0 and math.isnan(epochs_to_reach(history, 0.95))


@pytest.mark.slow
def test_seed_configuration_reaches_the_notebooks_accuracy_on_the_shipped_file():
    """The notebook reached 0.82-0.85 on this file over three seeds; ablate's default must land in 0.80-0.89."""
    cfg = make_config("trainer.device=cpu")
    splits = cached_splits(cfg.data)
    history = fit(cfg, splits)
    assert 0.80 <= history.final["test_acc"] <= 0.89


def test_final_metrics_recomputed_from_the_trained_members():
    """train_eval_acc, val_acc_auc and weight_norm, recomputed independently from member(k) and the history."""
    cfgs = [make_config(*QUICK, "model.dropout=0.3", f"seed={s}", "optim.weight_decay=1e-3") for s in (0, 1)]
    splits = cached_splits(cfgs[0].data)
    results, net = fit_population(cfgs, splits)
    for k, result in enumerate(results):
        member = net.member(k).eval()
        with torch.no_grad():
            train_acc = (member(splits.train.x).argmax(1) == splits.train.y).double().mean().item()
        final, epochs = result.history.final, result.history.epochs
        assert final["train_eval_acc"] == pytest.approx(train_acc, abs=1e-6)
        assert final["val_acc_auc"] == pytest.approx(sum(m["val_acc"] for m in epochs) / len(epochs), abs=1e-12)
        norm = torch.sqrt(sum(w.pow(2).sum() for w in decayed_weights(member))).item()
        assert epochs[-1]["weight_norm"] == pytest.approx(norm, rel=1e-5)
