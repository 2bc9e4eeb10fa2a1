"""One run and a population through the trainer: modes, seeds, metrics, divergence."""

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from torch.optim.swa_utils import update_bn

from ablate.config import BN, BNStats
from ablate.engine.families.mlp import MLPConfig
from ablate.engine.data import cached_splits
from ablate.engine.families.mlp import build_mlp
from ablate.engine.models import decayed_weights
from ablate.engine.vmapped import BATCH_NORMS
from ablate.nn import Dropout
from ablate.engine.trainer import (Diverged, batch_starts, build_population, epochs_to_reach, fit, fit_population, precise_bn, start, train_epoch)
from tests.conftest import QUICK, make_config


def test_bn_uses_batch_statistics_in_train_mode_and_running_averages_in_eval():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(dropout=0.0), 8, 3)
    x = torch.randn(64, 8) * 5 + 2
    model.train()
    model(x)  # one training forward updates the running averages
    bn = model[2]  # after Flatten and the first Linear
    assert not torch.allclose(bn.running_mean, torch.zeros(bn.num_features))
    model.eval()
    one_row = model(x[:1])
    in_batch = model(x)[:1]
    assert torch.allclose(one_row, in_batch, atol=1e-6)  # eval: a row's output does not depend on its batch
    model.train()
    assert not torch.allclose(model(x[:2])[:1], model(x)[:1])  # train: it does (batch statistics)


def test_dropout_is_random_in_train_mode_and_off_in_eval():
    torch.manual_seed(0)
    model = build_mlp(MLPConfig(bn=BN.none, dropout=0.5), 8, 3)
    x = torch.randn(16, 8)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


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
    """The notebook reached 0.82-0.85 on this file over three seeds. One seed's final test accuracy spreads widely
    (0.68-0.84 over seeds 0-7: BN's running averages under dropout), so the default is judged over 8 seeds: their
    mean in 0.76-0.86, and the best of them where the notebook's were."""
    cfgs = [make_config("trainer.device=cpu", f"seed={seed}") for seed in range(8)]
    members, _ = fit_population(cfgs, cached_splits(cfgs[0].data))
    accuracies = np.array([m.history.final["test_acc"] for m in members])
    assert 0.76 <= accuracies.mean() <= 0.86
    assert accuracies.max() >= 0.82


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


@pytest.mark.slow
def test_the_cnn_learns_the_shipped_images_in_two_epochs():
    """Two epochs of the CNN (16/32 channels, BN pre, dropout 0.3, SGD 0.1) reached 0.725-0.793 test accuracy over
    seeds 0-4 here (ten epochs: 0.858); the default seed must land in 0.70-0.85."""
    cfg = make_config("model=cnn", "trainer.epochs=2", "trainer.device=cpu")
    history = fit(cfg, cached_splits(cfg.data))
    assert 0.70 <= history.final["test_acc"] <= 0.85


def test_tf32_is_set_explicitly_while_a_fit_trains_and_the_processs_own_setting_is_back_after():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for tf32 in (True, False):
        seen = []
        fit(make_config(*QUICK, "trainer.epochs=1", "data.limit=200", f"trainer.tf32={tf32}"),
            cached_splits(make_config(*QUICK, "data.limit=200").data),
            on_epoch=lambda m: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)))
        assert seen == [(tf32, tf32)]
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# ------------------------------------------------------------------------ BatchNorm's test-time statistics
def _update_bn_by_torch(member: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.nn.Module:
    """torch.optim.swa_utils.update_bn on a copy of a member with its dropout layers taken out (PreciseBN's
    "dropout off"), over the batches the trainer uses."""
    model = copy.deepcopy(member)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, torch.nn.Identity())
    update_bn([x[s:s + batch_size] for s in batch_starts(len(x), batch_size)], model)
    return model


@pytest.mark.parametrize("family, k", [("mlp", 1), ("mlp", 3), ("cnn", 1), ("cnn", 3)])
def test_precise_statistics_are_update_bns_member_by_member_and_training_keeps_the_running_ones(family, k):
    cfg = make_config(*QUICK, f"model={family}", "trainer.dtype=float64", "model.dropout=0.3",
                      *(["model.channels=[4]"] if family == "cnn" else []))
    splits = cached_splits(cfg.data)
    cfgs = [replace(cfg, seed=s) for s in range(k)]
    training = start(cfgs, splits, torch.device("cpu"), build_population)
    train_epoch(training)  # running averages that differ from the precise ones
    x = training.data.train.x
    running = [(m.clone(), v.clone()) for m, v in training.population.running_stats()]
    expected = [_update_bn_by_torch(training.population.member(i), x, cfg.trainer.batch_size) for i in range(k)]
    with precise_bn(training.population, x, cfg.trainer.batch_size):
        for i in range(k):
            ours = training.population.member(i)
            pairs = [(a, b) for a, b in zip(ours.modules(), expected[i].modules()) if isinstance(a, BATCH_NORMS)]
            assert len(pairs) == (2 if family == "mlp" else 1)
            for a, b in pairs:
                assert torch.allclose(a.running_mean, b.running_mean, atol=1e-12)
                assert torch.allclose(a.running_var, b.running_var, atol=1e-12)
            assert not torch.allclose(running[0][0][i], training.population.running_stats()[0][0][i])
    for (mean, var), (old_mean, old_var) in zip(training.population.running_stats(), running):
        assert torch.equal(mean, old_mean) and torch.equal(var, old_var)  # training goes on from its own


def test_precise_evaluation_measures_the_same_weights_and_keeps_the_running_twin():
    """bn_stats changes what evaluation normalises with, never training: the precise run's running_* metrics are
    the running run's own, and its val_acc is the same weights' accuracy under update_bn's statistics."""
    cfg = make_config(*QUICK, "trainer.dtype=float64", "model.dropout=0.3")
    splits = cached_splits(cfg.data)
    running = fit(cfg, splits)
    precise = fit(replace(cfg, model=replace(cfg.model, bn_stats=BNStats.precise)), splits)
    for r, p in zip(running.epochs, precise.epochs):
        assert p["train_loss"] == r["train_loss"] and p["running_val_acc"] == r["val_acc"]
        assert p["running_val_loss"] == r["val_loss"] and p["val_loss"] != r["val_loss"]
    assert precise.final["running_test_acc"] == running.final["test_acc"]
    assert "running_val_acc" not in running.epochs[0]
    [_], members = fit_population([replace(cfg, model=replace(cfg.model, bn_stats=BNStats.precise))], splits)
    model = _update_bn_by_torch(members.member(0), splits.train.x.double(), cfg.trainer.batch_size).eval()
    with torch.no_grad():
        accuracy = (model(splits.test.x.double()).argmax(1) == splits.test.y).double().mean().item()
    assert precise.final["test_acc"] == pytest.approx(accuracy, abs=1e-12)


@pytest.mark.parametrize("augment", [False, True])
def test_each_source_of_randomness_follows_its_own_seed(augment):
    """seeds.init / .order / .noise each decide one source: with all three set, ``seed`` changes nothing; changing
    one of them alone changes the run; a source set to the run's own seed is the run with it unset."""
    extra = ["data.augment=[crop]"] if augment else []

    def result(*overrides):
        cfg = make_config(*QUICK, "trainer.epochs=1", *extra, *overrides)
        [member], _ = fit_population([cfg], cached_splits(cfg.data.rows()))
        return member.history.epochs[-1]["train_loss"], member.history.final["test_acc"]

    fixed = ("seeds.init=7", "seeds.order=8", "seeds.noise=9")
    assert result("seed=1", *fixed) == result("seed=2", *fixed)
    for i, source in enumerate(("init", "order", "noise")):
        moved = [*fixed[:i], f"seeds.{source}=10", *fixed[i + 1:]]
        assert result("seed=1", *moved) != result("seed=1", *fixed), source
    assert result("seed=3", "seeds.init=3", "seeds.noise=3") == result("seed=3")


def test_a_held_init_starts_every_seed_from_the_same_weights_and_order_from_the_same_batches():
    cfgs = [make_config(*QUICK, f"seed={s}", "seeds.init=5") for s in (0, 1)]
    splits = cached_splits(cfgs[0].data.rows())
    t = start(cfgs, splits, torch.device("cpu"), build_population)
    assert all(torch.equal(p[0], p[1]) for p in t.population.params)  # the members' initial weights: one draw
    ordered = start([make_config(*QUICK, f"seed={s}", "seeds.order=5") for s in (0, 1)], splits,
                    torch.device("cpu"), build_population)
    assert torch.equal(ordered.orders[0].get_state(), ordered.orders[1].get_state())
    assert not all(torch.equal(p[0], p[1]) for p in ordered.population.params)
