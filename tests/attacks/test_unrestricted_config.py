"""The unrestricted attack's one settings schema: validation, presets, and the single mappings
from the technique section, the evaluation protocol and the command line."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from advaug.attacks import FAST, PRESETS, SEED, AttackInputError, UnrestrictedAttack
from advaug.config import (
    EvalConfig,
    UnrestrictedAugConfig,
    UnrestrictedConfig,
    unrestricted_preset,
)
from advaug.errors import ConfigError

from .toys import K, ToyG, train_critic

BAD = [
    ("optimizer", "sgd"),
    ("z_proximity", "box"),
    ("steps", -1),
    ("steps", 2.5),
    ("batch_size", 0),
    ("lr", 0.0),
    ("grad_div", -1.0),
    ("lambda1", -1.0),
    ("z_eps", float("nan")),
    ("noise_lr", -0.1),
    ("betas", (0.9, 1.0)),
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_bad_settings_are_one_line_errors_naming_the_key(name, value) -> None:
    cfg = UnrestrictedConfig().replace(**{name: value})
    with pytest.raises(ConfigError, match=rf"attack\.{name}:") as info:
        cfg.validate("attack")
    assert "\n" not in str(info.value)
    with pytest.raises(AttackInputError, match=name):  # the attack refuses them too
        UnrestrictedAttack(ToyG(), torch.nn.Identity(), torch.nn.Identity(), cfg)


def test_every_preset_validates_and_the_defaults_are_fast() -> None:
    for cfg in PRESETS.values():
        cfg.validate()
    assert UnrestrictedConfig() == FAST == PRESETS["fast"]
    assert SEED.noise_eps == 0.05 and SEED.grad_div == 32.0 and not SEED.early_stop


def test_presets_are_immutable_and_replace_names_unknown_settings() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SEED.steps = 3  # type: ignore[misc]
    assert SEED.replace(steps=3).steps == 3 and SEED.steps == 500
    with pytest.raises(ConfigError, match="'stpes'"):
        SEED.replace(stpes=3)
    with pytest.raises(ConfigError, match="unknown unrestricted-attack preset 'nope'"):
        unrestricted_preset("nope")


def test_numbers_are_normalised_as_the_attack_uses_them() -> None:
    cfg = UnrestrictedConfig(lr=1, lambda1=2, noise_lr=3, betas=[0, 0.5])  # type: ignore[arg-type]
    assert (cfg.lr, cfg.lambda1, cfg.noise_lr, cfg.betas) == (1.0, 2.0, 3.0, (0.0, 0.5))
    assert isinstance(cfg.lr, float) and isinstance(cfg.betas, tuple)
    assert cfg.effective_noise_lr == 3.0 and FAST.effective_noise_lr == FAST.lr


def test_technique_section_maps_to_attack_settings() -> None:
    sec = UnrestrictedAugConfig(
        steps=7, optimizer="sgd-noise", lr=0.2, lambda1=0.3, lambda2=0.4, z_eps=0.5,
        noise_eps=0.01, attack_batch=9,
    )  # fmt: skip
    assert sec.attack_config() == FAST.replace(
        steps=7, optimizer="sgd-noise", lr=0.2, lambda1=0.3, lambda2=0.4, z_eps=0.5,
        noise_eps=0.01, batch_size=9, early_stop=True,
    )  # fmt: skip
    # seed mode: the seed preset's schedule with every setting of the section honoured
    seed = dataclasses.replace(sec, mode="seed").attack_config()
    assert seed == SEED.replace(
        steps=7, optimizer="sgd-noise", batch_size=9, lr=0.2, lambda1=0.3, lambda2=0.4,
        z_eps=0.5, noise_eps=0.01,
    )  # fmt: skip
    adam = UnrestrictedAugConfig(mode="seed", optimizer="adam", z_project="l2").attack_config()
    assert (adam.optimizer, adam.z_project, adam.lr, adam.noise_eps) == ("adam", "l2", 0.05, 0.0)
    assert (adam.early_stop, adam.grad_div) == (False, 32.0)  # the seed's schedule


def test_paper_preset_keeps_the_seed_attack_settings() -> None:
    from advaug.config import build_config

    sec = build_config("paper").classifier.augment.unrestricted
    cfg = sec.attack_config()
    assert sec.mode == "seed"
    assert cfg == SEED.replace(steps=cfg.steps, batch_size=cfg.batch_size)


def test_evaluation_protocol_maps_to_the_fast_preset() -> None:
    assert EvalConfig(uae_steps=13).uae_attack() == FAST.replace(steps=13)
    e = EvalConfig(uae_steps=13, uae_z_project="linf")
    assert e.uae_attack(targeted=True) == FAST.replace(steps=13, z_project="linf", targeted=True)


def test_from_config_and_keywords_give_the_same_attack(trained) -> None:
    g, d = ToyG(), train_critic(steps=5)
    cfg = SEED.replace(steps=3, noise_eps=0.02)
    a = UnrestrictedAttack.from_config(g, d, trained, cfg, rng=torch.Generator().manual_seed(0))
    b = UnrestrictedAttack(
        g, d, trained, rng=torch.Generator().manual_seed(0), **dataclasses.asdict(cfg)
    )
    assert a.cfg == b.cfg and a.settings() == b.settings()
    src = torch.arange(6) % K
    ra, rb = a(src), b(src)
    assert torch.equal(ra.images, rb.images) and torch.equal(ra.z, rb.z)


def test_assigning_a_setting_revalidates_it(trained) -> None:
    atk = UnrestrictedAttack(ToyG(), train_critic(steps=5), trained)
    atk.steps = 3
    assert atk.cfg.steps == 3 and atk.cfg == FAST.replace(steps=3)
    with pytest.raises(AttackInputError, match="steps"):
        atk.steps = -1
    assert atk.steps == 3
