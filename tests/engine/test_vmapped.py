"""The generic path does the same maths as a plain PyTorch loop, as the MLP's hand-written path, and as single
runs, member by member."""

import logging

import pytest
import torch
import torch.nn.functional as F

from ablate.engine.data import cached_splits
from ablate.engine.models import build, decayed_weights
from ablate.engine.trainer import batch_starts, fit, fit_population, generic_population
from tests.conftest import DEVICES, make_config, on
from tests.engine.test_members import NEIGHBOURS, member_differs

SMALL = ("data=digits", "data.limit=600", "trainer.device=cpu", "trainer.dtype=float64", "model.dropout=0")
CNN = (*SMALL, "model=cnn", "model.channels=[4,8]")


def states_differ(a, b):
    """The largest difference between two modules' parameters and buffers."""
    return max((x.double() - y.double()).abs().max().item() for x, y in
               zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point())


def history_differs(a, b, metrics=("train_loss", "train_acc", "val_loss", "val_acc", "weight_norm")):
    assert len(a.epochs) == len(b.epochs)
    return max(abs(x[m] - y[m]) for x, y in zip(a.epochs, b.epochs) for m in metrics)


def plain_loop(cfg, splits, make_optimizer):
    """The textbook loop: the same module, initialisation and batch order, torch.optim, autograd."""
    torch.manual_seed(cfg.seed)
    model = build(cfg.model, splits.in_shape, splits.n_classes).double()
    weights = decayed_weights(model)
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    optimizer = make_optimizer([{"params": weights}, {"params": others, "weight_decay": 0.0}])
    order = torch.Generator().manual_seed(cfg.seed)
    x, y = splits.train.x.double(), splits.train.y
    for _ in range(cfg.trainer.epochs):
        perm = torch.randperm(len(y), generator=order)
        for start in batch_starts(len(y), cfg.trainer.batch_size):
            idx = perm[start:start + cfg.trainer.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model.train()(x[idx]), y[idx]).backward()
            optimizer.step()
    return model


@pytest.mark.parametrize("overrides, make_optimizer", [
    # an L2 penalty lambda * sum(w**2) is torch's weight_decay 2 * lambda
    (["optim.momentum=0.9", "optim.weight_decay=1e-3"],
     lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=2e-3)),
    (["optim.momentum=0.9", "optim.nesterov=true"], lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)),
    (["optim=adamw"], lambda groups: torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-2)),
])
def test_a_cnn_run_is_a_plain_pytorch_loop_with_torch_optim(overrides, make_optimizer):
    cfg = make_config(*CNN, "trainer.epochs=2", "seed=3", *overrides)
    splits = cached_splits(cfg.data)
    _, trained = fit_population([cfg], splits)
    assert states_differ(trained.member(0), plain_loop(cfg, splits, make_optimizer)) <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bn", ["pre", "post", "none"])
@pytest.mark.parametrize("l2", ["penalty", "decoupled"])
def test_the_generic_path_on_the_mlp_is_the_hand_written_path(bn, l2, device):
    cfgs = [make_config(*on(device, SMALL), "trainer.epochs=3", f"model.bn={bn}", "model.hidden=[32,16]", f"optim.l2={l2}",
                        f"seed={s}", f"optim.lr={lr}", "optim.weight_decay=1e-3") for s, lr in [(1, 0.1), (2, 0.05)]]
    splits = cached_splits(cfgs[0].data)
    by_hand, stacked = fit_population(cfgs, splits)
    generic, modules = fit_population(cfgs, splits, vectorise=True, build=generic_population)
    for k in range(2):
        assert history_differs(by_hand[k].history, generic[k].history) <= 1e-9
        assert states_differ(stacked.member(k), modules.member(k)) <= 1e-9


@pytest.mark.parametrize("bn", ["pre", "post", "none"])
@pytest.mark.parametrize("l2", ["penalty", "decoupled"])
def test_cnn_population_members_are_their_single_runs(bn, l2):
    cfgs = [make_config(*CNN, "trainer.epochs=3", f"model.bn={bn}", f"optim.l2={l2}", f"seed={s}", *o) for s, o in
            [(1, ["optim.lr=0.1"]), (2, ["optim.lr=0.05", "optim.weight_decay=1e-3", "optim.momentum=0.9"]),
             (3, ["optim.lr=0.2", "optim.weight_decay=2e-3", "model.init_scale=0.5"])]]
    splits = cached_splits(cfgs[0].data)
    members, population = fit_population(cfgs, splits, vectorise=True)
    assert type(population).__name__ == "ModulePopulation" and population.k == 3
    for k, cfg in enumerate(cfgs):
        [single], alone = fit_population([cfg], splits)
        assert history_differs(members[k].history, single.history) <= 1e-9
        assert states_differ(population.member(k), alone.member(0)) <= 1e-9


def test_members_of_a_users_model_are_their_single_runs():
    cfgs = [make_config(*SMALL, "model=custom", "model.target=tests.user_models.Tiny", "model.bn=post",
                        "trainer.epochs=3", f"seed={s}", f"optim.lr={lr}") for s, lr in [(4, 0.1), (5, 0.02)]]
    splits = cached_splits(cfgs[0].data)
    members, population = fit_population(cfgs, splits, vectorise=True)
    for k, cfg in enumerate(cfgs):
        assert history_differs(members[k].history, fit(cfg, splits)) <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("neighbours", NEIGHBOURS, ids=["alone", "other-seeds", "other-p-and-lr"])
def test_a_cnn_member_with_dropout_is_its_single_run_whatever_trains_beside_it(neighbours, device):
    """Each Dropout layer draws from the member's own keyed stream, under vmap as alone: float64 to 1e-9."""
    base = on(device, (*CNN, "trainer.epochs=2", "model.dropout=0.3"))
    assert member_differs(base, ["seed=3"], neighbours, vectorise=True) <= 1e-9


def test_a_users_model_with_torchs_own_dropout_trains_its_members_as_single_runs():
    base = (*[o for o in SMALL if not o.startswith("model.dropout")], "model=custom",
            "model.target=tests.user_models.TorchDropout", "trainer.epochs=2")
    assert member_differs(base, ["seed=3"], ["seed=0", "seed=1"], vectorise=True) <= 1e-9


def test_a_cnn_members_own_p_comes_from_its_dropout_buffer():
    cfgs = [make_config(*CNN, "trainer.epochs=1", f"model.dropout={p}", f"seed={s}") for s, p in [(0, 0.3), (1, 0.6)]]
    _, population = fit_population(cfgs, cached_splits(cfgs[0].data), vectorise=True)
    ps = [m.p.item() for m in population.member(1).modules() if type(m).__name__ == "Dropout"]
    assert ps == pytest.approx([0.6, 0.6])


def test_a_diverging_cnn_member_fails_alone_and_its_neighbours_are_their_single_runs():
    cfgs = [make_config(*CNN, "trainer.epochs=2", "model.bn=none", f"seed={s}", f"optim.lr={lr}")
            for s, lr in [(1, 0.1), (2, 1e200), (3, 0.05)]]
    splits = cached_splits(cfgs[0].data)
    members, _ = fit_population(cfgs, splits, vectorise=True)
    assert members[1].error is not None and not members[1].history.final
    for k in (0, 2):
        assert members[k].error is None
        assert members[k].history.final["test_acc"] == pytest.approx(fit(cfgs[k], splits).final["test_acc"], abs=1e-12)


def test_a_model_vmap_cannot_take_trains_member_by_member_as_the_one_by_one_path_does(caplog):
    cfgs = [make_config(*SMALL, "model=custom", "model.target=tests.user_models.DataDependent", "model.dropout=0.3",
                        "trainer.epochs=2", f"seed={s}") for s in (1, 2)]
    splits = cached_splits(cfgs[0].data)
    with caplog.at_level(logging.INFO, logger="ablate"):
        forced, _ = fit_population(cfgs, splits, vectorise=True)
    [line] = [r.message for r in caplog.records if "one by one" in r.message]
    assert line.startswith("2 members train one by one: vmap cannot take this model (")
    one_by_one, _ = fit_population(cfgs, splits, vectorise=False)
    for a, b in zip(forced, one_by_one):
        assert a.history.final["test_acc"] == b.history.final["test_acc"]  # identical, dropout masks too
        assert [m["train_loss"] for m in a.history.epochs] == [m["train_loss"] for m in b.history.epochs]
    for cfg, member in zip(cfgs, forced):  # and each is its single run
        assert [m["train_loss"] for m in member.history.epochs] == [m["train_loss"] for m in fit(cfg, splits).epochs]


def test_on_a_cpu_the_generic_family_trains_one_by_one_unless_told_otherwise():
    cfgs = [make_config(*CNN, "trainer.epochs=1", f"seed={s}") for s in (1, 2)]
    splits = cached_splits(cfgs[0].data)
    assert type(fit_population(cfgs, splits)[1]).__name__ == "OneByOne"  # measured faster here (bench/families.py)
    assert type(fit_population(cfgs, splits, vectorise=True)[1]).__name__ == "ModulePopulation"
    mlp = [make_config(*SMALL, "trainer.epochs=1", f"seed={s}") for s in (1, 2)]
    assert type(fit_population(mlp, splits)[1]).__name__ == "StackedMLP"


@pytest.mark.parametrize("l2", ["penalty", "decoupled"])
@pytest.mark.parametrize("model", [["model=cnn", "model.channels=[4,8]"],
                                   ["model=custom", "model.target=tests.user_models.WithCustomLayer"]])
@pytest.mark.parametrize("k", [1, 2])
def test_weight_decay_moves_every_weight_of_dimension_2_or_more_and_nothing_else(l2, model, k):
    """One step with zero gradients through the trainer's own population and optimiser: only decay can move a
    tensor, and it moves the conv kernels, the head and a custom layer's own weight; never a bias, a BatchNorm
    parameter or the custom layer's scale."""
    from ablate.engine.optim import Optimizer, member_hyperparameters

    common = [o for o in SMALL if not o.startswith("model.dropout")]  # WithCustomLayer takes no dropout
    cfgs = [make_config(*common, *model, "optim.weight_decay=0.1", f"optim.l2={l2}", f"seed={s}") for s in range(k)]
    splits = cached_splits(cfgs[0].data)
    population = generic_population(cfgs, splits.in_shape, splits.n_classes, torch.device("cpu"), torch.float64)
    before = [p.clone() for p in population.params]
    Optimizer(cfgs[0].optim.name, population.params, population.decayed,
              member_hyperparameters(cfgs, torch.device("cpu"), torch.float64)).step(
        [torch.zeros_like(p) for p in population.params])
    moved = {name for name, b, p in zip(population.names, before, population.params) if not torch.equal(b, p)}
    expected = {"0.0.weight", "1.0.weight", "3.weight"} if "model=cnn" in model else {"body.1.weight", "body.4.weight"}
    assert moved == expected
