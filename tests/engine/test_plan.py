"""The plan: which variants train together (the population key, derived from the config's fields), how many fit in
memory, and what the sweep is told first."""

from dataclasses import dataclass, field, replace

import pytest
import torch
from mlflow import MlflowClient

from ablate.config import PopulationSettings, TrainerConfig
from ablate.engine import memory
from ablate.engine.data import cached_splits
from ablate.engine.memory import DataSize
from ablate.engine import plan as planning
from ablate.engine.plan import duration, make_plan, population_key, seconds_to_train
from ablate.engine.trainer import fit_population, step_seconds
from ablate.errors import UserError
from ablate.execution.runner import Outcome
from tests.conftest import make_config, train_all

DIGITS = ("data=digits", "trainer.device=cpu")


def groups_of(cfgs, settings):
    return [list(p.cfgs) for p in make_plan(cfgs, settings).populations]


def test_groups_share_what_must_be_shared_and_respect_the_size_limit():
    cfgs = [make_config(*DIGITS, f"model.bn={bn}", f"seed={s}", f"optim.lr={lr}")
            for bn in ("pre", "post") for s in range(3) for lr in (0.1, 0.01)]
    groups = groups_of(cfgs, PopulationSettings(max_size=4))
    assert sorted(len(g) for g in groups) == [2, 2, 4, 4]
    assert all(len({population_key(c) for c in g}) == 1 for g in groups)
    assert sorted(id(c) for g in groups for c in g) == sorted(id(c) for c in cfgs)
    momentum = [make_config(*DIGITS, f"optim.momentum={m}") for m in (0.5, 0.9)]
    assert population_key(momentum[0]) == population_key(momentum[1]) != population_key(cfgs[0])  # plain SGD trains apart
    apart = [make_config(*DIGITS, "trainer.probes=[norms]"), make_config(*DIGITS, "model.bn_stats=precise")]
    assert len({population_key(c) for c in [cfgs[0], *apart]}) == 3  # probes and BN's evaluation: the whole population's


DIGITS_SIZE = DataSize((1, 8, 8), 10, train_rows=1167, eval_rows=1167, rows=1797)  # data=digits' splits


def test_the_memory_plan_reads_its_sizes_off_the_splits():
    assert DataSize.of(cached_splits(make_config(*DIGITS).data)) == DIGITS_SIZE


def test_memory_check_shrinks_groups_before_they_start(monkeypatch):
    cfg = make_config(*DIGITS)
    need, shared = memory.bytes_per_member(cfg, DIGITS_SIZE), memory.shared_bytes(cfg, DIGITS_SIZE)
    assert shared == 1797 * (64 * 4 + 8)  # the data, once: every row's float32 pixels and int64 label
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * (shared + 3 * need))  # half: the data and 3
    groups = groups_of([replace(cfg, seed=s) for s in range(7)], PopulationSettings(max_size=100))
    assert [len(g) for g in groups] == [3, 3, 1]
    bigger = DataSize((1, 8, 8), 10, train_rows=100_000, eval_rows=1167, rows=1797)
    assert memory.bytes_per_member(cfg, bigger) - need == 8 * (100_000 - 1167)  # each member's batch order
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * (shared + need) - 1)
    with pytest.raises(MemoryError, match="trainer.batch_size"):
        memory.require_memory(cfg, DIGITS_SIZE, 0.5)


def test_a_model_that_cannot_fit_fails_its_own_run_and_the_others_train(tracking_uri, monkeypatch):
    small = make_config(*DIGITS, "trainer.epochs=1")
    big = make_config(*DIGITS, "trainer.epochs=1", "model.hidden=[4096,4096]")
    data = DataSize((1, 8, 8), 10, train_rows=1167, eval_rows=10**6, rows=1797)
    room = 4 * memory.bytes_per_member(small, data) + 2 * memory.shared_bytes(small, data)  # small fits
    # twice in half of it, beside the data; big nowhere
    assert memory.bytes_per_member(big, data) > room
    monkeypatch.setattr(memory, "free_bytes", lambda device: room)
    results = train_all([small, big], PopulationSettings(max_size=2))
    assert [r.outcome for r in results] == [Outcome.finished, Outcome.failed]
    failed = MlflowClient(tracking_uri).get_run(results[1].run_id)
    assert failed.info.status == "FAILED" and "model.hidden" in failed.data.tags["ablate.error"]


@dataclass
class WarmupTrainer(TrainerConfig):
    """A trainer setting ablate does not have: a new field, as a contributor would add one."""

    warmup_epochs: int = 0


@dataclass
class LabelledTrainer(TrainerConfig):
    notes: list[str] = field(default_factory=list, metadata={"ablate": "per_member"})  # declared per member


def test_a_new_field_that_changes_training_splits_populations_by_itself_unless_declared_per_member():
    base = make_config(*DIGITS)
    warm = [replace(base, seed=s, trainer=WarmupTrainer(warmup_epochs=w)) for s in (0, 1) for w in (0, 2)]
    keys = {population_key(c) for c in warm}
    assert len(keys) == 2 and all(("trainer.warmup_epochs", repr(w)) in k for k, w in zip(sorted(keys), (0, 2)))
    labelled = [replace(base, seed=s, trainer=LabelledTrainer(notes=[str(s)])) for s in (0, 1)]
    assert len({population_key(c) for c in labelled}) == 1


def test_the_plan_is_printed_with_its_device_families_keys_and_memory():
    cfgs = [make_config(*DIGITS, f"model.bn={bn}", f"seed={s}") for bn in ("pre", "none") for s in range(3)]
    plan = make_plan(cfgs, PopulationSettings(max_size=2))
    assert [len(p.cfgs) for p in plan.populations] == [2, 1, 2, 1] and all(p.vectorised for p in plan.populations)
    text = str(plan)
    assert text.startswith("plan: 6 variants in 4 population(s) of up to 2 on cpu in this process")
    assert "mlp: vectorised (auto: measured faster vectorised for mlp on cpu)" in text
    assert "populations differ in: model.bn" in text and "MiB a member" in text
    one_by_one = make_plan(cfgs, PopulationSettings(vectorise=False))
    assert not any(p.vectorised for p in one_by_one.populations)
    assert "mlp: one member at a time (hydra.launcher.vectorise=false)" in str(one_by_one)


def test_an_empty_plan_is_an_error_not_a_sweep_of_nothing():
    with pytest.raises(UserError, match="no variants to train"):
        make_plan([], PopulationSettings())


def test_timing_a_step_trains_nothing_for_real_and_leaves_the_generators_alone():
    cfgs = [make_config(*DIGITS, f"seed={s}") for s in range(3)]
    splits = cached_splits(cfgs[0].data.rows())
    alone = fit_population(cfgs, splits, vectorise=True)[0]
    state = torch.get_rng_state()
    assert step_seconds(cfgs, splits, vectorised=True) > 0 and step_seconds(cfgs, splits, vectorised=False) > 0
    assert torch.equal(state, torch.get_rng_state())
    after = fit_population(cfgs, splits, vectorise=True)[0]
    def numbers(results):  # an epoch's metrics but its wall time
        return [[{k: v for k, v in e.items() if k != "epoch_seconds"} for e in r.history.epochs] for r in results]

    assert numbers(after) == numbers(alone)


def test_the_estimate_counts_each_populations_batches_and_evaluations_and_only_what_is_left(monkeypatch):
    """A step's time fixed (what is timed is the machine's), the count checked by hand: members x batches x epochs
    steps, and a third of a step per batch-sized block of rows evaluated."""
    monkeypatch.setattr(planning, "step_seconds", lambda cfgs, splits, vectorised: 0.01 * len(cfgs))
    cfgs = [make_config(*DIGITS, f"model.bn={bn}", f"seed={s}", "trainer.epochs=3", "trainer.batch_size=50")
            for bn in ("pre", "none") for s in range(2)]
    plan = make_plan(cfgs, PopulationSettings(max_size=2))
    splits = cached_splits(cfgs[0].data.rows())
    n_train, n_val, n_test = len(splits.train), len(splits.val), len(splits.test)
    batches = len([s for s in range(0, n_train, 50) if n_train - s >= 2])
    member = 0.01 * (3 * batches + (3 * n_val + n_train + n_val + n_test) / 50 / 3)
    assert seconds_to_train(plan, cfgs) == pytest.approx(4 * member)
    assert seconds_to_train(plan, cfgs[:1]) == pytest.approx(member)  # the finished ones take no time
    assert seconds_to_train(plan, []) == 0
    assert [duration(s) for s in (0.2, 40, 89.6, 360, 5399, 5400)] == ["1 s", "40 s", "90 s", "6 min", "90 min",
                                                                        "1.5 h"]
