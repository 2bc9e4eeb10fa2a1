"""Each member's random draws are its own: the same whatever trains beside it, in either generator."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablate.nn import Dropout, key_streams
from ablate.engine.streams import DROPOUT, MemberUniform, counter_uniform, stream_key

CPU = torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_members_draws_are_its_single_runs_whatever_its_neighbours(dtype):
    alone = MemberUniform([7], DROPOUT, CPU, dtype)
    crowd = MemberUniform([3, 7, 11, 7000], DROPOUT, CPU, dtype)
    for shape in [(32, 128), (32, 64), (5, 128)]:  # two layers a step, then a short last batch
        mine = alone.uniform(shape)[0]
        assert torch.equal(crowd.uniform(shape)[1], mine)  # by value, in float32 too
    assert not torch.equal(crowd.uniform((4, 4))[0], crowd.uniform((4, 4))[2])


def test_streams_for_other_seeds_purposes_and_layers_differ():
    keys = {stream_key(s, p, i) for s in range(20) for p in range(3) for i in range(3)}
    assert len(keys) == 180 and all(0 <= k < 2**62 for k in keys)


def test_the_counter_hash_is_uniform_and_without_correlation():
    """Its draws against numpy's: a Kolmogorov-Smirnov test of uniformity, and neighbours (in index, in step, in key)
    uncorrelated within what 200,000 independent draws would show."""
    key, step = torch.tensor(stream_key(1, DROPOUT)), torch.tensor(5)
    u = counter_uniform(key, step, (200, 1000), torch.float64).flatten().numpy()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert u.min() >= 0 and u.max() < 1
    bound = 5 / np.sqrt(len(u))  # five standard errors of a correlation of independent draws
    others = [counter_uniform(key, step + 1, (200, 1000), torch.float64), counter_uniform(key + 1, step, (200, 1000),
                                                                                       torch.float64)]
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < bound
    for other in others:
        assert abs(np.corrcoef(u, other.flatten().numpy())[0, 1]) < bound
    keep = (u < 0.7).mean()
    assert keep == pytest.approx(0.7, abs=5 * np.sqrt(0.21 / len(u)))


def test_a_keyed_dropout_draws_the_same_masks_alone_and_under_vmap():
    members = [key_streams(nn.Sequential(Dropout(0.5), nn.Linear(6, 6), Dropout(0.5)), seed) for seed in (1, 2, 3)]
    params, buffers = stack_module_state(members)
    template = nn.Sequential(Dropout(0.5), nn.Linear(6, 6), Dropout(0.5)).to("meta")
    template.apply(lambda m: setattr(m, "keyed", True) if isinstance(m, Dropout) else None)
    x = torch.ones(40, 6)
    batched = vmap(lambda p, b: functional_call(template, (p, b), (x,)), randomness="different")
    for _ in range(2):  # two steps: the step counters advance per member
        together = batched(params, buffers)
        for k, member in enumerate(members):
            assert torch.equal(together[k], member.train()(x))
    assert not torch.equal(together[0], together[1])


def test_key_streams_replaces_torchs_dropout_and_keys_each_layer():
    model = key_streams(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.25), nn.Sequential(nn.Dropout(0.1))), seed=4)
    layers = [m for m in model.modules() if isinstance(m, Dropout)]
    assert [m.p.item() for m in layers] == pytest.approx([0.25, 0.1]) and not any(
        type(m) is nn.Dropout for m in model.modules())
    assert [m.key.item() for m in layers] == [stream_key(4, DROPOUT, 0), stream_key(4, DROPOUT, 1)]


def test_an_unkeyed_dropout_follows_torchs_global_generator():
    drop, x = Dropout(0.5).train(), torch.ones(1000)
    torch.manual_seed(0)
    first = drop(x)
    torch.manual_seed(0)
    assert torch.equal(drop(x), first) and not torch.equal(drop(x), first)
