"""The pooled unrestricted technique: pool fill, refresh cadence, valid-only sampling, resume."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from advaug.attacks.unrestricted_result import UnrestrictedResult
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


class _FlatPair:
    """A stand-in GAN pair: only the attributes the technique reads before attacking."""

    def __init__(self, z_dim: int = 4, k: int = 2):
        self.generator = nn.Module()
        self.generator.z_dim, self.generator.num_classes = z_dim, k
        self.critic = nn.Module()


def _every_attack_succeeds(t: UnrestrictedTechnique, z: torch.Tensor) -> None:
    """Replace the latent search by one whose every code succeeds with latent ``z[i]``."""

    def attack(model, labels):
        n = labels.shape[0]
        return SimpleNamespace(
            images=torch.rand(n, 3, 2, 2), z=z[:n].clone(), success=torch.ones(n, dtype=bool)
        )

    t._attack = attack


def test_dedup_invalidates_the_later_of_two_close_same_class_entries():
    cfg = UnrestrictedAugConfig(pool_size=7, dedup_threshold=0.5)
    t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
    # RMS distance per latent dimension (z_dim 4): a step of c in every coordinate is c
    t.z = torch.tensor([0.0, 0.25, 0.25, 2.0, 0.0, 0.75, 5.0])[:, None].expand(7, 4).clone()
    t.labels = torch.tensor([0, 0, 1, 0, 0, 1, 1])
    t.valid = torch.tensor([True, True, True, True, False, True, True])
    t._dedup()
    # 1 is 0.25 from entry 0 (same class; its L2 distance is 0.5): dropped, 0 kept; 2 is as close
    # but of class 1; 3 is far; 4 was invalid already; 5 lies exactly 0.5 from 2 (the threshold
    # is strict); 6 is far
    assert t.valid.tolist() == [True, False, True, True, False, True, True]


def test_dedup_of_exactly_two_valid_entries_and_of_fewer():
    cfg = UnrestrictedAugConfig(pool_size=3, dedup_threshold=0.5)
    t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
    t.z = torch.zeros(3, 4)
    t.labels = torch.zeros(3, dtype=torch.long)
    t.valid = torch.tensor([True, False, True])
    t._dedup()
    assert t.valid.tolist() == [True, False, False]
    t._dedup()  # one valid entry: nothing to compare
    assert t.valid.tolist() == [True, False, False]


def test_refresh_dedups_the_pool_when_a_threshold_is_set():
    for threshold, valid in ((0.5, 2), (0.0, 8)):
        cfg = UnrestrictedAugConfig(pool_size=8, dedup_threshold=threshold)
        t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
        _every_attack_succeeds(t, torch.zeros(8, 4))  # every code collapses onto one latent
        t._refresh(nn.Identity(), step=0)
        # with the threshold one entry per class (2 classes) is left, and n_valid counts it
        assert int(t.valid.sum()) == t.n_valid == valid
        if threshold:
            assert sorted(t.labels[t.valid].tolist()) == [0, 1]


def test_metrics_report_the_attacks_and_the_pool_by_hand():
    t = _known_pool(recheck=True)
    t.stats = {"attacked": 8, "succeeded": 2, "steps_sum": 20}
    t.valid[:] = False
    t.valid[:2] = True
    m = t.metrics()
    assert m == {
        "uae_success": 0.25,
        "uae_mean_steps": 2.5,
        "uae_attacked": 8,
        "pool_valid": 0.25,
        "pool_draws": 0,
    }


def test_metrics_before_the_pool_is_filled_and_in_seed_mode_have_no_pool_figures():
    pooled = UnrestrictedTechnique(
        UnrestrictedAugConfig(pool_size=8), _FlatPair(), seed=0, device=torch.device("cpu")
    )
    assert pooled.metrics() == {}  # no attack yet, no pool yet
    seed = UnrestrictedTechnique(
        UnrestrictedAugConfig(mode="seed", steps=1), _Pair(), seed=0, device=torch.device("cpu")
    )
    seed(_clf(), torch.rand(4, 3, 32, 32), torch.arange(4), step=0)
    seed.images = torch.zeros(4, 3, 32, 32)  # even with images held, seed mode has no pool
    assert set(seed.metrics()) == {"uae_success", "uae_mean_steps", "uae_attacked"}


def test_state_round_trip_restores_every_part_and_the_stream():
    cfg = UnrestrictedAugConfig(pool_size=8, refresh_every=2, steps=1)
    a = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    model, x, y = _Says(0), torch.rand(16, 3, 32, 32), torch.arange(16) % 4
    a(_clf(), x, y, step=0)
    a.valid[:] = True
    a.n_valid = 8
    a(model, x, y, step=3)  # a refresh at step 3, then a re-checked draw
    a.uses[5] = 7  # use counts and ages no default could reproduce
    state = a.state_dict()
    b = UnrestrictedTechnique(cfg, _Pair(), seed=1, device=torch.device("cpu"))
    b.load_state_dict(state)
    for name in ("images", "labels", "z", "valid", "born", "uses"):
        assert torch.equal(getattr(b, name), getattr(a, name)), name
    assert (a.born == 3).any() and {k: int(v) for k, v in b.window.items()} == {
        k: int(v) for k, v in a.window.items()
    }
    assert int(b.window["draws"]) > 0 and b.stats == a.stats and b.stats is not a.stats
    assert (b.pointer, b.last_refresh) == (a.pointer, a.last_refresh) == (2, 3)
    assert b.n_valid == int(a.valid.sum())  # recounted (a's host copy lags its re-checks)
    assert torch.equal(b.rng.get_state(), a.rng.get_state())
    assert b.metrics() == a.metrics()


def test_a_state_from_before_the_recheck_and_another_devices_stream_still_load():
    cfg = UnrestrictedAugConfig(pool_size=8, steps=1)
    a = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    a(_clf(), torch.rand(4, 3, 32, 32), torch.arange(4), step=0)
    state = a.state_dict()
    for name in ("born", "uses", "window"):  # keys older checkpoints lack
        del state[name]
    state["rng"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's Philox state
    b = UnrestrictedTechnique(cfg, _Pair(), seed=5, device=torch.device("cpu"))
    b.load_state_dict(state)
    assert not b.born.any() and not b.uses.any()  # ages and use counts start at 0
    assert {k: int(v) for k, v in b.window.items()} == dict.fromkeys(b.window, 0)
    # the stream restarts from the technique's own seed
    fresh = UnrestrictedTechnique(cfg, _Pair(), seed=5, device=torch.device("cpu"))
    assert torch.equal(b.rng.get_state(), fresh.rng.get_state())


def test_pool_labels_are_balanced_and_drawn_from_the_techniques_own_stream():
    from advaug.augment.unrestricted import technique_seed

    cfg = UnrestrictedAugConfig(pool_size=8)
    labels = []
    for global_seed in (1, 2):
        t = UnrestrictedTechnique(cfg, _FlatPair(k=4), seed=3, device=torch.device("cpu"))
        _every_attack_succeeds(t, torch.zeros(8, 4))
        torch.manual_seed(global_seed)  # the global stream must not matter
        t._refresh(nn.Identity(), step=0)
        labels.append(t.labels.tolist())
    g = torch.Generator().manual_seed(technique_seed(3))
    assert labels[0] == labels[1] == (torch.randperm(8, generator=g) % 4).tolist()


def test_refreshes_walk_the_pool_oldest_first_and_wrap_around():
    cfg = UnrestrictedAugConfig(pool_size=8, refresh_fraction=0.375)  # 3 entries a refresh
    t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
    _every_attack_succeeds(t, torch.zeros(8, 4))
    t._refresh(nn.Identity(), step=0)
    t.uses[:] = torch.arange(8)
    t.metrics()  # a fresh record window
    t._refresh(nn.Identity(), step=1)
    t._refresh(nn.Identity(), step=2)
    t._refresh(nn.Identity(), step=3)
    assert t.born.tolist() == [3, 1, 1, 2, 2, 2, 3, 3] and t.pointer == 1
    # the three refreshes fall in one record: 9 entries retired, with 0+1+...+7 uses, and 0
    # for entry 0 the second time (its count restarted at its step-1 refresh)
    assert t.metrics()["pool_reuse_mean"] == sum(range(8)) / 9


def test_a_small_refresh_fraction_re_attacks_one_entry():
    for fraction in (0.01, 0.1):  # 0.08 and 0.8 entries of 8: at least one, rounded
        cfg = UnrestrictedAugConfig(pool_size=8, refresh_fraction=fraction)
        t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
        _every_attack_succeeds(t, torch.zeros(8, 4))
        t._refresh(nn.Identity(), step=0)
        t._refresh(nn.Identity(), step=1)
        assert t.born.tolist() == [1] + [0] * 7 and t.pointer == 1


def test_seed_mode_attacks_fresh_codes_for_each_batchs_own_labels():
    cfg = UnrestrictedAugConfig(mode="seed", pool_size=64, steps=1)
    t = UnrestrictedTechnique(cfg, _Pair(), seed=0, device=torch.device("cpu"))
    y = torch.tensor([1, 2, 2, 1, 1, 2])  # two of the four classes
    seen, real = [], t._attack
    t._attack = lambda model, labels: seen.append(labels) or real(model, labels)
    for step in range(2):
        before = t.z.clone()
        out = t(_clf(), torch.rand(6, 3, 32, 32, dtype=torch.float64), y, step=step)
        assert out is not None and len(out) == 2  # no re-check mask: fresh codes fool f
        assert out[0].dtype == torch.float64  # in the batch's dtype
        assert set(out[1].tolist()) <= {1, 2}
        assert t.images.numel() == 0 and torch.equal(t.z, before)  # no pool is kept
    assert len(seen) == 2 and all(torch.equal(s, y) for s in seen)
    assert t.stats["attacked"] == 12


def test_pooled_draws_come_from_the_techniques_stream_in_the_batchs_dtype():
    picks = []
    for global_seed in (1, 2):
        t = _known_pool(recheck=False)
        t.images = torch.arange(8, dtype=torch.float32)[:, None, None, None].expand(8, 3, 2, 2)
        torch.manual_seed(global_seed)  # the global stream must not matter
        out = t(_Says(0), torch.rand(16, 3, 2, 2, dtype=torch.float64), torch.zeros(16), step=1)
        assert out is not None and out[0].dtype == torch.float64
        picks.append(out[0][:, 0, 0, 0].tolist())
    assert picks[0] == picks[1] and len(set(picks[0])) > 1


def test_the_draw_counts_stay_exact_past_float32s_integers():
    t = _known_pool(recheck=False)
    t.window["draws"] += 2**24  # float32 holds integers exactly only up to 2^24
    t(_Says(0), torch.rand(3, 3, 32, 32), torch.zeros(3), step=1)
    assert t.metrics()["pool_draws"] == 2**24 + 3


def test_the_stream_seeds_are_the_published_offsets():
    from advaug.augment.unrestricted import technique_seed

    assert technique_seed(0) == 303 and technique_seed(5, rank=2) == 5 + 303 + 2 * 7919


class _FakeAttack:
    """Stands in for the latent search: runs out of memory above ``limit`` rows per batch,
    else fools on every other row (one step each); records how it was built."""

    limit = 1_000
    built: list = []

    def __init__(self, cfg, rng, show_progress):
        self.cfg = cfg
        _FakeAttack.built.append((cfg.batch_size, rng, show_progress))

    @classmethod
    def from_config(cls, g, d, model, cfg, *, rng=None, show_progress=True):
        return cls(cfg, rng, show_progress)

    def __call__(self, labels):
        if self.cfg.batch_size > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
        n = labels.shape[0]
        return UnrestrictedResult(
            images=torch.rand(n, 3, 2, 2), z=torch.zeros(n, 4), z0=torch.zeros(n, 4),
            source=labels, target=torch.full((n,), -1), success=torch.arange(n) % 2 == 0,
            steps=torch.arange(n) + 1, clf_pred=(labels + 1) % 2, ac_pred=labels,
        )  # fmt: skip


def test_attack_batches_halve_after_out_of_memory_and_stats_accumulate(monkeypatch, caplog):
    monkeypatch.setattr("advaug.augment.unrestricted.UnrestrictedAttack", _FakeAttack)
    monkeypatch.setattr(_FakeAttack, "limit", 1)
    monkeypatch.setattr(_FakeAttack, "built", [])
    cfg = UnrestrictedAugConfig(mode="seed", attack_batch=8)
    t = UnrestrictedTechnique(cfg, _FlatPair(), seed=0, device=torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="advaug"):
        t._attack(nn.Identity(), torch.tensor([0, 1, 1]))
    assert [b for b, _, _ in _FakeAttack.built] == [8, 4, 2, 1] and t.attack_batch == 1
    assert all(type(b) is int for b, _, _ in _FakeAttack.built)  # a batch size, not 4.0
    assert all(rng is t.rng and not show for _, rng, show in _FakeAttack.built)
    assert [r.getMessage() for r in caplog.records] == [
        f"the unrestricted attack ran out of device memory at batch {b}; using {b // 2} "
        "(lower classifier.augment.unrestricted.attack_batch to avoid the retry)"
        for b in (8, 4, 2)
    ]
    t._attack(nn.Identity(), torch.tensor([1, 0, 1, 0]))  # at batch 1 from now on
    assert _FakeAttack.built[-1][0] == 1
    # successes rows 0 and 2 of each call, steps 1+2+3 and 1+2+3+4
    assert t.stats == {"attacked": 7, "succeeded": 4, "steps_sum": 16}
    monkeypatch.setattr(_FakeAttack, "limit", 0)  # no batch fits: the error reaches the caller
    with pytest.raises(torch.OutOfMemoryError):
        t._attack(nn.Identity(), torch.tensor([0]))


def test_each_ranks_pool_share_and_stream():
    from advaug.augment.unrestricted import technique_seed

    cfg = UnrestrictedAugConfig(pool_size=8)
    t = UnrestrictedTechnique(cfg, _FlatPair(), 0, torch.device("cpu"), rank=2, world_size=2)
    assert t.size == 4 and t.rng.initial_seed() == technique_seed(0, 2)
    cfg = UnrestrictedAugConfig(pool_size=2)
    t = UnrestrictedTechnique(cfg, _FlatPair(), 0, torch.device("cpu"), rank=3, world_size=4)
    assert t.size == 1 and t.labels.shape == (1,)  # at least one entry per rank


def test_seed_mode_logs_its_attack_settings_once(caplog):
    with caplog.at_level(logging.INFO, logger="advaug"):
        for mode in ("pooled", "seed"):
            UnrestrictedTechnique(
                UnrestrictedAugConfig(mode=mode), _FlatPair(), 0, torch.device("cpu")
            )
    seed_cfg = UnrestrictedAugConfig(mode="seed").attack_config()
    assert [r.getMessage() for r in caplog.records] == [
        f"unrestricted technique, mode seed: attack {seed_cfg}"
    ]


def test_the_pool_and_its_counters_are_built_on_the_techniques_device(generator_devices):
    """Every buffer the technique allocates up front (the stream, the pool, the counters, the
    draw window) lives on the device it was given (meta for a GPU). A tensor left on the CPU
    would cost a copy per draw on a GPU."""
    meta = torch.device("meta")
    t = UnrestrictedTechnique(UnrestrictedAugConfig(pool_size=8), _Pair(), seed=0, device=meta)
    assert generator_devices == [meta]
    for name in ("images", "labels", "z", "valid", "born", "uses"):
        assert getattr(t, name).device == meta, name
    assert {v.device for v in t.window.values()} == {meta}
    assert (t.labels.dtype, t.valid.dtype, t.born.dtype, t.uses.dtype) == (
        torch.long, torch.bool, torch.long, torch.long,
    )  # fmt: skip
