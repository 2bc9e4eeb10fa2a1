"""Augmentation on the device: a crop is a shift with zeros coming in, a flip a mirror, each member draws its own,
a member's samples are its single run's, and data without an image shape is refused in one line."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ablate.engine.augment import Augmenter, check
from ablate.config import Augment
from ablate.errors import ConfigValueError
from ablate.engine.data import cached_splits
from ablate.engine.trainer import fit, fit_population
from tests.conftest import DEVICES, QUICK, make_config, on


def configs(*augments, seeds=None):
    base = make_config(*QUICK)
    seeds = seeds or range(len(augments))
    return [replace(base, seed=s, data=replace(base.data, augment=list(a))) for s, a in zip(seeds, augments)]


def shifted(image: torch.Tensor, dy: int, dx: int, p: int) -> torch.Tensor:
    """The crop at offset (dy, dx) of the image padded with p zeros, by hand."""
    return F.pad(image, (p, p, p, p))[..., dy:dy + image.shape[-2], dx:dx + image.shape[-1]]


def test_a_crop_is_a_shift_within_the_padding_and_a_flip_a_mirror():
    x = torch.rand(1, 64, 1, 8, 8)
    [crop] = configs([Augment.crop])
    p = crop.data.crop_padding
    out = Augmenter([crop], torch.device("cpu"))(x, step=3)[0]
    offsets = set()
    for sample, image in zip(out, x[0]):
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(sample, shifted(image, dy, dx, p))]
        assert found, "each crop is one of the (2p+1)^2 shifts"
        offsets.add(found[0])
    assert len(offsets) > 10  # drawn per sample
    [flip] = configs([Augment.flip])
    flipped = Augmenter([flip], torch.device("cpu"))(x, step=3)[0]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x[0])]
    assert all(m or torch.equal(a, b) for m, a, b in zip(mirrored, flipped, x[0])) and 16 < sum(mirrored) < 48


def test_members_draw_their_own_and_a_member_is_its_single_run():
    x = torch.rand(3, 32, 1, 8, 8)
    cfgs = configs([Augment.crop, Augment.flip], [], [Augment.crop], seeds=[5, 6, 7])
    together = Augmenter(cfgs, torch.device("cpu"))(x, step=11)
    for k, cfg in enumerate(cfgs):
        assert torch.equal(together[k], Augmenter([cfg], torch.device("cpu"))(x[k:k + 1], step=11)[0])
    assert torch.equal(together[1], x[1])  # no augmentation for the member that asks for none
    assert not torch.equal(Augmenter(cfgs, torch.device("cpu"))(x, step=12)[0], together[0])  # a new draw a step
    assert Augmenter.of(configs([], []), torch.device("cpu")) is None  # off: nothing to pay


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_a_member_with_augmentation_trains_as_its_single_run(family, device):
    base = make_config(*on(device, QUICK), f"model={family}", "trainer.dtype=float64", "trainer.epochs=1",
                       *(["model.channels=[4]"] if family == "cnn" else []))
    cfgs = [replace(base, seed=s, data=replace(base.data, augment=a)) for s, a in [(0, [Augment.crop, Augment.flip]),
                                                                                    (1, [])]]
    splits = cached_splits(cfgs[0].data)
    members, _ = fit_population(cfgs, splits, vectorise=True)
    alone = fit(cfgs[0], splits)
    assert members[0].history.final["test_loss"] == pytest.approx(alone.final["test_loss"], abs=1e-9)
    assert members[0].history.final["test_loss"] != members[1].history.final["test_loss"]


def test_data_without_an_image_shape_is_refused_in_one_line():
    with pytest.raises(ConfigValueError) as err:
        check(configs([Augment.flip])[0].data, (64,))
    assert "works on images" in str(err.value) and "\n" not in str(err.value)
    check(configs([Augment.flip])[0].data, (1, 8, 8))
