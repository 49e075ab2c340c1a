"""The pooled unrestricted technique: pool fill, refresh cadence, valid-only sampling, resume."""

from __future__ import annotations

import torch
from torch import nn

from advaug.augment.unrestricted import UnrestrictedTechnique
from advaug.config import UnrestrictedAugConfig
from advaug.models.gan import Critic, Generator


class _Pair:
    def __init__(self):
        torch.manual_seed(0)
        self.generator = Generator(z_dim=8, width=8, num_classes=4).eval()
        self.critic = Critic(width=8, num_classes=4).eval()


def _clf():
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))


def test_pool_fills_then_refreshes_a_fraction_and_samples_only_valid_entries():
    cfg = UnrestrictedAugConfig(pool_size=16, refresh_every=3, refresh_fraction=0.25, steps=3)
    t = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    model = _clf()
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 4
    t(model, x, y, step=0)
    assert t.stats["attacked"] == 16  # the whole pool at first
    assert t.n_valid == int(t.valid.sum())
    t(model, x, y, step=1)
    assert t.stats["attacked"] == 16  # no refresh before refresh_every steps
    t(model, x, y, step=3)
    assert t.stats["attacked"] == 20  # a quarter of the pool
    # force a known validity pattern and check that sampling never picks an invalid entry
    t.valid[:] = False
    t.valid[[2, 5]] = True
    t.n_valid = 2
    t.images[2], t.images[5] = 0.25, 0.75
    out = t.generate(model, x, y, step=4)
    assert out is not None
    imgs, labels = out
    assert set(imgs.flatten(1)[:, 0].tolist()) <= {0.25, 0.75}
    assert set(labels.tolist()) <= {t.labels[2].item(), t.labels[5].item()}
    t.valid[:] = False
    t.n_valid = 0
    assert t.generate(model, x, y, step=5) is None


def test_state_round_trip_restores_the_pool_and_its_valid_count():
    cfg = UnrestrictedAugConfig(pool_size=8, steps=2)
    a = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    a(_clf(), torch.rand(4, 3, 32, 32), torch.arange(4), step=0)
    b = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.images, b.images) and torch.equal(a.valid, b.valid)
    assert b.n_valid == a.n_valid and b.pointer == a.pointer


def test_pool_images_take_the_shape_of_the_generator_output():
    from tests.attacks.toys import K, TinyD, ToyG

    class ToyPair:  # a generator of 3x8x8 images, not CIFAR's 3x32x32
        generator, critic = ToyG().eval(), TinyD().eval()

    t = UnrestrictedTechnique(
        UnrestrictedAugConfig(pool_size=8, steps=1), ToyPair(), seed=0, device=torch.device("cpu")
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, K))
    t(model, torch.rand(4, 3, 8, 8), torch.arange(4) % K, step=0)
    assert t.images.shape == (8, 3, 8, 8)


def test_every_rank_has_its_own_stream():
    from advaug.augment.unrestricted import technique_seed

    seeds = {technique_seed(s, r) for s in range(3) for r in range(4)}
    assert len(seeds) == 12  # no two (run seed, rank) pairs share a stream
    assert all(technique_seed(s, 0) != s for s in range(3))  # nor the run seed's own stream


def _check_labels_are_the_source_classes(t, model, x, y, step):
    """Each drawn example carries the class its generator was conditioned on: the AC head (which
    the attack requires to agree with the source) sees that class, and the model, which the
    example fools when it is made, does not."""
    out = t(model, x, y, step=step)
    assert out is not None
    imgs, labels = out
    pair = t.g, t.d
    with torch.no_grad():
        ac = pair[1](imgs)[1].argmax(1)
        pred = model(imgs).argmax(1)
    assert torch.equal(ac, labels)
    assert not (pred == labels).any()
    return labels


def test_pooled_and_seed_mode_label_each_example_with_its_source_class():
    model = _clf()
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 4
    pooled = UnrestrictedTechnique(
        UnrestrictedAugConfig(pool_size=32, steps=10, lr=0.2), _Pair(), 0, torch.device("cpu")
    )
    _check_labels_are_the_source_classes(pooled, model, x, y, step=0)
    seed_cfg = UnrestrictedAugConfig(mode="seed", steps=30)
    seed = UnrestrictedTechnique(seed_cfg, _Pair(), 0, torch.device("cpu"))
    labels = _check_labels_are_the_source_classes(seed, model, x, y, step=0)
    # seed mode attacks the batch's own labels: every kept example has one of them
    assert set(labels.tolist()) <= set(y.tolist())
