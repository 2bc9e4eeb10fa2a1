"""Each probe against a computation of its own (numpy by hand, a quadratic whose landscape is known), a member's
probes against its single run's, and training untouched by probing."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from ablate.engine.families.mlp import MLPConfig
from ablate.config import Probe
from ablate.engine.data import cached_splits
from ablate.engine.families.mlp import build_mlp
from ablate.engine.probes import activation_stats, landscape, measure, summary
from ablate.engine.trainer import fit, fit_population
from tests.conftest import DEVICES, QUICK, make_config, on

ALL = list(Probe)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_covariate_shift_and_norms_are_the_gradients_worked_by_hand():
    """Two bias-free Linear layers, cross-entropy: G2 before and after W1 took its SGD step, in numpy."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    x, y, lr = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)), 0.7
    w1, w2, xs, onehot = model[0].weight.detach().numpy(), model[1].weight.detach().numpy(), x.numpy(), np.eye(2)[y]

    def grads(w1):
        h = xs @ w1.T
        dz = (softmax(h @ w2.T) - onehot) / len(xs)
        return (dz @ w2).T @ xs, dz.T @ h  # G1, G2

    g1, g2 = grads(w1)
    _, g2_moved = grads(w1 - lr * g1)
    out = measure(model, [Probe.covariate_shift, Probe.norms], x, y, lr, None, len(x))
    assert out["covariate_shift/2/l2"] == pytest.approx(np.linalg.norm(g2 - g2_moved), rel=1e-9)
    cos = (g2 * g2_moved).sum() / np.linalg.norm(g2) / np.linalg.norm(g2_moved)
    assert out["covariate_shift/2/cos"] == pytest.approx(cos, rel=1e-9)
    assert out["norms/1/grad"] == pytest.approx(np.linalg.norm(g1), rel=1e-9)
    assert out["norms/2/weight"] == pytest.approx(np.linalg.norm(w2), rel=1e-9)
    assert "covariate_shift/1/l2" not in out  # no layer before the first


def test_the_landscape_of_a_quadratic_is_known_in_closed_form():
    """L(w) = w'Aw / 2: g = Aw, L(w - eta g) in closed form, g(w - eta g) - g(w) = -eta A g, so beta = |Ag| / |g|."""
    a = np.diag([1.0, 4.0, 10.0])
    w = np.array([1.0, -2.0, 0.5])
    params = {"w": torch.tensor(w)}
    g = a @ w
    loss_at = lambda p: 0.5 * p["w"] @ torch.tensor(a) @ p["w"]  # noqa: E731
    lr = 0.05
    out = landscape(loss_at, params, {"w": torch.tensor(g)}, lr)
    losses = [0.5 * (w - f * lr * g) @ a @ (w - f * lr * g) for f in (0.5, 1, 2, 4)]
    assert out["landscape/loss_min"] == pytest.approx(min(losses), rel=1e-12)
    assert out["landscape/loss_max"] == pytest.approx(max(losses), rel=1e-12)
    assert out["landscape/grad_change_max"] == pytest.approx(4 * lr * np.linalg.norm(a @ g), rel=1e-12)
    assert out["landscape/grad_change_min"] == pytest.approx(0.5 * lr * np.linalg.norm(a @ g), rel=1e-12)
    assert out["landscape/beta_smoothness"] == pytest.approx(np.linalg.norm(a @ g) / np.linalg.norm(g), rel=1e-12)


def test_activation_percentiles_and_variance_shift_are_numpys():
    torch.manual_seed(1)
    model = build_mlp(MLPConfig(dropout=0.3), 6, 3).double()
    model.train()(torch.randn(64, 6, dtype=torch.float64) * 2 + 1)  # running averages that differ from the data's
    x, val = torch.randn(32, 6, dtype=torch.float64), torch.randn(50, 6, dtype=torch.float64) * 3
    before = model[1](x).detach().numpy()  # the first BN's input: Flatten, Linear; BN then normalises by the batch
    normalised = (before - before.mean(0)) / np.sqrt(before.var(0) + 1e-5) * model[2].weight.detach().numpy() \
        + model[2].bias.detach().numpy()
    bn_input = model[1](val).detach().numpy()
    v = bn_input.var(0, ddof=1)
    running = model[2].running_var.numpy().copy()
    out = measure(model, [Probe.activations, Probe.variance_shift], x, torch.zeros(32, dtype=torch.long), 0.1,
                  val, eval_batch_size=16)  # the validation split in batches: the variance is of all of it
    for q in (15, 50, 85):
        assert out[f"activations/1/p{q}"] == pytest.approx(np.percentile(normalised, q), rel=1e-9)
    assert out["activations/1/std"] == pytest.approx(normalised.std(ddof=1), rel=1e-9)
    assert out["variance_shift/1"] == pytest.approx(np.maximum(v / running, running / v).mean(), rel=1e-9)
    assert torch.equal(model[2].running_var, torch.tensor(running))  # probing moved no running average
    stats = activation_stats(torch.arange(101.0))
    assert (stats["p15"], stats["p50"], stats["p85"]) == (15.0, 50.0, 85.0)


def probed(*overrides, device="cpu"):
    return make_config(*on(device, QUICK), "trainer.dtype=float64", "trainer.probes=[" + ",".join(p.value for p in ALL) + "]",
                       "trainer.probe_every=25", *overrides)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_a_members_probes_are_its_single_runs(family, device):
    cfg = probed(f"model={family}", *(["model.channels=[4,8]"] if family == "cnn" else []), device=device)
    splits = cached_splits(cfg.data)
    cfgs = [replace(cfg, seed=s, model=replace(cfg.model, dropout=p)) for s, p in [(0, 0.3), (1, 0.0)]]
    members, _ = fit_population(cfgs, splits, vectorise=True)
    for cfg_k, member in zip(cfgs, members):
        alone = fit(cfg_k, splits)
        assert [s for s, _ in member.history.probes] == [s for s, _ in alone.probes] == [0, 25, 50, 74]
        for (_, ours), (_, theirs) in zip(member.history.probes, alone.probes):
            assert ours.keys() == theirs.keys() and len(ours) > 20
            for key in ours:
                assert ours[key] == pytest.approx(theirs[key], rel=1e-7, abs=1e-9), key
        assert member.history.final["covariate_shift_l2"] == pytest.approx(alone.final["covariate_shift_l2"], rel=1e-7)


def test_probing_changes_no_number_of_training_and_its_summaries_are_means_of_its_probes():
    cfg = probed()
    splits = cached_splits(cfg.data)
    on = fit(cfg, splits)
    off = fit(replace(cfg, trainer=replace(cfg.trainer, probes=[])), splits)
    assert not off.probes and "beta_smoothness" not in off.final
    for a, b in zip(on.epochs, off.epochs):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {k: v for k, v in b.items() if k != "epoch_seconds"}
    assert on.final["test_acc"] == off.final["test_acc"]
    betas = [m["landscape/beta_smoothness"] for _, m in on.probes]
    assert on.final["beta_smoothness"] == pytest.approx(np.mean(betas), rel=1e-12)
    last = on.probes[-1][1]
    assert on.final["variance_shift"] == pytest.approx(np.mean([last["variance_shift/1"], last["variance_shift/2"]]))
    assert summary([]) == {} and math.isfinite(on.final["covariate_shift_cos"])
    every_epoch = fit(replace(cfg, trainer=replace(cfg.trainer, probes=[Probe.norms], probe_every=37)), splits)
    assert [step for step, _ in every_epoch.probes] == [0, 37, 74]  # 37 steps an epoch: the end is probed too
