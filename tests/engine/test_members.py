"""Population training does the single run's maths, member by member: whatever trains beside a member, its
numbers are its single run's (float64 to 1e-9; float32 to rounding)."""

import numpy as np
import pytest

from ablate.engine.data import cached_splits
from ablate.engine.plan import population_key
from ablate.engine.trainer import fit, fit_population
from tests.conftest import DEVICES, make_config, on

DIGITS = ("data=digits", "trainer.device=cpu")
VARIED = [["seed=1"], ["seed=2", "optim.lr=0.05", "optim.weight_decay=1e-3"],
          ["seed=3", "optim.weight_decay=2e-3", "optim.l2=decoupled", "optim.momentum=0.9", "optim.nesterov=true"],
          ["seed=4", "optim.lr=0.2", "model.init_scale=0.5", "optim.weight_decay=5e-4", "optim.l2=penalty"],
          ["seed=5", "optim.lr=0.05", "optim.weight_decay=1e-3", "optim.momentum=0.5"]]  # momentum trains batched too


def compare(cfgs, epochs_checked=None):
    """Max difference of metrics and trained weights between each member and its single run; the members
    train in the populations ``population_key`` puts them in (VARIED: plain SGD, then SGD with momentum, two each)."""
    splits = cached_splits(cfgs[0].data)
    worst = 0.0
    groups = {population_key(c): [d for d in cfgs if population_key(d) == population_key(c)] for c in cfgs}.values()
    assert all(len(group) >= 2 for group in groups)  # every kind of update is compared inside a population
    for group in groups:
        worst = max(worst, _compare_group(group, splits, epochs_checked))
    return worst


def _compare_group(cfgs, splits, epochs_checked):
    members, net = fit_population(cfgs, splits)
    worst = 0.0
    for k, cfg in enumerate(cfgs):
        single_net = fit_population([cfg], splits)[1]
        single = fit(cfg, splits)
        assert len(members[k].history.epochs) == len(single.epochs) == cfg.trainer.epochs
        for a, b in zip(single.epochs, members[k].history.epochs[:epochs_checked]):
            worst = max(worst, *(abs(a[m] - b[m]) for m in ("train_loss", "train_acc", "val_loss", "val_acc",
                                                               "weight_norm")))
        for a, b in zip(single_net.member(0).state_dict().values(), net.member(k).state_dict().values()):
            worst = max(worst, (a.double() - b.double()).abs().max().item())
    return worst


@pytest.mark.parametrize("bn", ["pre", "post", "none"])
@pytest.mark.parametrize("l2", ["penalty", "decoupled"])
def test_float64_members_match_single_runs_after_3_epochs(bn, l2):
    cfgs = [make_config(*DIGITS, "trainer.epochs=3", "trainer.dtype=float64", "model.dropout=0", f"model.bn={bn}",
                        *o, f"optim.l2={l2}") for o in VARIED]
    assert compare(cfgs) <= 1e-9


@pytest.mark.parametrize("bn", ["pre", "post", "none"])
@pytest.mark.parametrize("l2", ["penalty", "decoupled"])
def test_float32_members_match_single_runs_after_one_epoch(bn, l2):
    cfgs = [make_config(*DIGITS, "trainer.epochs=1", "model.dropout=0", f"model.bn={bn}", *o, f"optim.l2={l2}")
            for o in VARIED]
    assert compare(cfgs) <= 1e-5


def test_adam_members_match_single_runs():
    cfgs = [make_config(*DIGITS, "trainer.epochs=3", "trainer.dtype=float64", "model.dropout=0", "optim=adam",
                        f"seed={s}", f"optim.lr={lr}") for s, lr in [(1, 1e-3), (2, 3e-3)]]
    assert compare(cfgs) <= 1e-9


NEIGHBOURS = [[], ["seed=0", "seed=1", "seed=2"],  # alone, beside other seeds, beside other p and lr
              ["seed=0 model.dropout=0.5", "seed=1 model.dropout=0 optim.lr=0.05", "seed=3 optim.lr=0.2"]]


def member_differs(base, mine, neighbours, vectorise=None):
    """The largest difference of any per-epoch metric between ``mine`` trained alone and trained as the second
    member of a population with ``neighbours`` (each a space-separated list of overrides)."""
    cfg = make_config(*base, *mine)
    splits = cached_splits(cfg.data)
    single = fit(cfg, splits)
    cfgs = [make_config(*base, *n.split()) for n in neighbours]
    members, _ = fit_population(cfgs[:1] + [cfg] + cfgs[1:], splits, vectorise=vectorise)
    return history_difference(single, members[1 if cfgs else 0].history)


def history_difference(a, b):
    assert len(a.epochs) == len(b.epochs)
    return max(abs(x[m] - y[m]) for x, y in zip(a.epochs + [a.final], b.epochs + [b.final]) for m in x
               if m not in ("epoch_seconds", "train_seconds") and not np.isnan(x[m]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("neighbours", NEIGHBOURS, ids=["alone", "other-seeds", "other-p-and-lr"])
def test_a_member_with_dropout_is_its_single_run_whatever_trains_beside_it(neighbours, device):
    """Dropout masks, batch order and initialisation come from the member's own seed: float64 to 1e-9."""
    base = on(device, (*DIGITS, "trainer.epochs=3", "trainer.dtype=float64", "model.dropout=0.3"))
    assert member_differs(base, ["seed=3"], neighbours) <= 1e-9


@pytest.mark.parametrize("device", DEVICES)
def test_in_float32_a_member_draws_its_single_runs_masks_and_differs_only_by_rounding(device):
    base = on(device, (*DIGITS, "trainer.epochs=3", "model.dropout=0.3"))
    assert member_differs(base, ["seed=3"], NEIGHBOURS[2]) <= 1e-5  # batched vs single matmuls may round apart


def test_a_diverging_member_fails_alone():
    cfgs = [make_config(*DIGITS, "trainer.epochs=2", "trainer.dtype=float64", "model.dropout=0", "model.bn=none",
                        f"seed={s}", f"optim.lr={lr}") for s, lr in [(1, 0.1), (2, 1e200), (3, 0.05)]]
    splits = cached_splits(cfgs[0].data)
    members, _ = fit_population(cfgs, splits)
    assert members[1].error is not None and not members[1].history.final
    for k in (0, 2):
        assert members[k].error is None
        assert members[k].history.final["test_acc"] == pytest.approx(fit(cfgs[k], splits).final["test_acc"], abs=1e-12)


def test_on_epoch_can_stop_one_member():
    cfgs = [make_config(*DIGITS, "trainer.epochs=3", f"seed={s}") for s in range(3)]
    members, _ = fit_population(cfgs, cached_splits(cfgs[0].data), on_epoch=lambda k, m: k == 1 and m["epoch"] == 1)
    assert [len(m.history.epochs) for m in members] == [3, 1, 3]
    assert members[1].stopped and not members[1].history.final and members[0].history.final


