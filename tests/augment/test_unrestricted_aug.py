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
    imgs, labels = out[:2]
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
    imgs, labels = out[:2]
    if len(out) == 3:  # the pooled re-check's mask: fresh entries all still fool the model
        assert out[2].all()
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


class _Says(nn.Module):
    """Predicts class ``c`` for every image; records its mode at each call."""

    def __init__(self, c: int):
        super().__init__()
        self.c, self.w, self.modes = c, nn.Parameter(torch.zeros(())), []

    def forward(self, x):
        self.modes.append(self.training)
        out = torch.zeros(x.shape[0], 4) + self.w
        out[:, self.c] = 5.0
        return out


def _known_pool(recheck: bool) -> UnrestrictedTechnique:
    """A filled pool of 8 valid entries, labels 0..3 twice, attacked at step 0."""
    cfg = UnrestrictedAugConfig(pool_size=8, refresh_every=100, steps=1, recheck=recheck)
    t = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    t(_clf(), torch.rand(4, 3, 32, 32), torch.arange(4), step=0)
    t.labels = torch.arange(8) % 4
    t.valid[:] = True
    t.n_valid = 8
    t.uses[:] = 0
    t.metrics()  # start a fresh record window
    return t


def test_pooled_recheck_drops_entries_that_no_longer_fool_the_model():
    t = _known_pool(recheck=True)
    model = _Says(2).train()  # the model now gets every class-2 entry right
    x, y = torch.rand(64, 3, 32, 32), torch.arange(64) % 4
    out = t(model, x, y, step=10)
    assert out is not None and len(out) == 3
    imgs, labels, keep = out
    assert torch.equal(keep, labels != 2)  # only the still-adversarial entries carry loss
    assert (labels == 2).any() and keep.any()
    assert model.modes == [False] and model.training  # one eval-mode forward, mode restored
    # the class-2 entries (all drawn among 64 draws from 8) are invalid now; the others valid
    assert not t.valid[t.labels == 2].any() and t.valid[t.labels != 2].all()
    assert int(t.uses.sum()) == int(keep.sum()) and not t.uses[t.labels == 2].any()
    m = t.metrics()
    assert m["pool_draws"] == 64 and m["pool_still_adv"] == keep.float().mean().item()
    assert m["pool_age_mean"] == 10 and m["pool_age_max"] == 10
    # the dropped entries are not drawn again
    out = t(model, x, y, step=11)
    assert out is not None and not (out[1] == 2).any() and out[2].all()
    assert t.metrics()["pool_still_adv"] == 1.0


def test_without_recheck_stale_entries_are_trained_on():
    t = _known_pool(recheck=False)
    out = t(_Says(2), torch.rand(64, 3, 32, 32), torch.arange(64) % 4, step=10)
    assert out is not None and len(out) == 2 and (out[1] == 2).any()
    assert t.valid.all() and "pool_still_adv" not in t.metrics()


def test_a_pool_the_recheck_emptied_yields_an_all_false_mask():
    t = _known_pool(recheck=True)
    t.valid[:] = False  # as if every entry had been dropped since the last refresh
    out = t(_Says(0), torch.rand(8, 3, 32, 32), torch.arange(8) % 4, step=5)
    assert out is not None and not out[2].any()


def test_reuse_counts_reach_the_log_at_refresh_and_survive_a_resume():
    t = _known_pool(recheck=True)
    model = _Says(0)
    x, y = torch.rand(32, 3, 32, 32), torch.arange(32) % 4
    t(model, x, y, step=1)
    uses = t.uses.clone()
    b = UnrestrictedTechnique(t.cfg, _Pair(), seed=0, device=torch.device("cpu"))
    b.load_state_dict(t.state_dict())
    assert torch.equal(b.uses, uses) and torch.equal(b.born, t.born)
    t._refresh(_clf(), step=2)  # re-attacks the 2 oldest entries (a quarter of 8)
    m = t.metrics()
    assert m["pool_reuse_mean"] == uses[:2].float().mean().item()
    assert (t.uses[:2] == 0).all() and (t.born[:2] == 2).all()


def test_seed_mode_attacks_with_the_configured_settings():
    cfg = UnrestrictedAugConfig(mode="seed", steps=2, optimizer="adam", lr=0.3, z_eps=0.2)
    t = UnrestrictedTechnique(cfg, _Pair(), 0, torch.device("cpu"))
    res = t._attack(_clf(), torch.arange(4))
    assert (res.meta["optimizer"], res.meta["lr"], res.meta["z_eps"]) == ("adam", 0.3, 0.2)
    assert res.meta["noise_eps"] == 0.0 and not res.meta["early_stop"]
