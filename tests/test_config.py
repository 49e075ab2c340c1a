from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.config import (
    TECHNIQUES,
    AugmentConfig,
    ClassifierConfig,
    DataConfig,
    EvalConfig,
    FGSMAugConfig,
    GANAugConfig,
    GANConfig,
    ModelConfig,
    OptimConfig,
    PGDAugConfig,
    RuntimeConfig,
    StudyConfig,
    UnrestrictedAugConfig,
    UnrestrictedConfig,
    _coerce,
    _from_dict,
    _is_finite,
    _is_int,
    build_config,
    config_hash,
    from_dict,
    list_presets,
    parse_overrides,
    to_dict,
    validate,
)
from advaug.errors import ConfigError


def test_every_preset_loads_and_validates():
    names = list_presets()
    assert {"smoke", "demo", "quick", "paper", "modern"} <= set(names)
    for name in names:
        cfg = build_config(name)
        assert isinstance(cfg, StudyConfig)


def test_paper_preset_carries_the_seed_settings():
    cfg = build_config("paper")
    c = cfg.classifier
    assert c.model.name == "densenet-bc-100-seed"
    assert (c.optim.lr, c.optim.weight_decay, c.optim.nesterov) == (1e-4, 1e-4, True)
    assert c.optim.schedule == "step" and c.optim.milestones == [0.5, 0.75]
    assert (c.batch_size, c.epochs) == (64, 100)
    assert (c.augment.prop, c.augment.adv_weight, c.augment.mode, c.augment.bn) == (
        0.5,
        0.3,
        "replace",
        "separate",
    )
    assert c.augment.fgsm.kind == "step-ll"
    g = cfg.gan
    assert (g.width, g.z_dim, g.n_critic, g.ac_scale_g, g.ac_dropout) == (256, 256, 5, 0.1, 0.5)
    assert (g.beta1, g.beta2, g.gp_weight, g.g_batch_mult) == (0.0, 0.9, 10.0, 2)


def test_overrides_nest_and_parse_yaml_values():
    cfg = build_config("smoke", ["classifier.epochs=7", "classifier.optim.lr=0.5", "seeds=[1,2]"])
    assert cfg.classifier.epochs == 7
    assert cfg.classifier.optim.lr == 0.5
    assert cfg.seeds == [1, 2]
    # untouched preset values stay
    assert cfg.classifier.model.name == "tiny-cnn"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("classifier.epochs=-1", "classifier.epochs"),
        ("classifier.epochs=abc", "classifier.epochs"),
        ("classifier.augment.prop=1.5", "classifier.augment.prop"),
        ("classifier.augment.fgsm.eps_min=-0.1", "eps_min"),
        ("classifier.augment.technique=mixup", "mixup"),
        ("classifier.nope=1", "classifier.nope"),
        ("data.pad_mode=circular", "data.pad_mode"),
        ("runtime.device=tpu", "runtime.device"),
        ("techniques=[none,cutmix]", "cutmix"),
        ("noequals", "key=value"),
        ("=3", "empty key"),
        ("gan.lr_g=.nan", "gan.lr_g"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as e:
        build_config("smoke", [override])
    msg = str(e.value)
    assert fragment in msg
    assert "\n" not in msg


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="smoke"):
        build_config("no-such-preset")


def test_hash_is_stable_and_sensitive():
    a, b = build_config("smoke"), build_config("smoke")
    assert config_hash(a) == config_hash(b)
    c = build_config("smoke", ["classifier.epochs=3"])
    assert config_hash(a) != config_hash(c)


def test_round_trip_through_dict():
    cfg = build_config("demo")
    assert from_dict(StudyConfig, to_dict(cfg)) == cfg


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(
        [
            "classifier.epochs",
            "classifier.batch_size",
            "classifier.augment.prop",
            "gan.iters",
            "evaluate.pgd_eps",
            "data.train_limit",
        ]
    ),
    value=st.one_of(
        st.integers(-1000, 1000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=3),
    ),
)
def test_fuzzed_values_either_validate_or_raise_config_error(key, value):
    override = {}
    node = override
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    try:
        from_dict(StudyConfig, override)
    except ConfigError as e:
        assert "\n" not in str(e)


def test_parse_overrides_builds_nested_dicts():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_exponent_without_a_dot_is_a_float():
    # YAML 1.1 reads "4e-4" as a string; users write it that way on the command line
    assert build_config("smoke", ["gan.lr_g=4e-4"]).gan.lr_g == 4e-4


def test_same_config_tolerates_new_fields_but_not_changed_values():
    import yaml

    from advaug.config import dump_yaml, same_config

    cfg = build_config("smoke")
    stored = yaml.safe_load(dump_yaml(cfg))
    del stored["runtime"]["sync_bn"]  # a field added to advaug after the run was made
    assert same_config(yaml.safe_dump(stored), cfg)
    stored["classifier"]["epochs"] = 99
    assert not same_config(yaml.safe_dump(stored), cfg)
    assert not same_config("{not: [valid", cfg)
    stored = yaml.safe_load(dump_yaml(cfg))
    stored["runtime"]["removed_field"] = 1
    assert not same_config(yaml.safe_dump(stored), cfg)


def test_empty_data_root_is_refused():
    with pytest.raises(ConfigError, match="data.root"):
        build_config("smoke", ["data.root="])


# --------------------------------------------------------------------------------------------
# Every validator at its boundaries, with its whole message (the mutation run, docs/MUTATION.md)
# --------------------------------------------------------------------------------------------

GE0 = "must be >= 0"
GE1 = "must be >= 1"
GT0 = "must be > 0"
IN01 = "must be in [0, 1)"
EPS_RANGE = "is outside [0, 1] (budgets are in [0,1] units)"
ALPHA_RANGE = "is outside (0, 1]; use a step such as eps / 4"
PROJECTS = ("none", "linf", "l2")
UNKNOWN_MIXUP = "unknown technique 'mixup'; choose one of none, fgsm, pgd, gan, unrestricted"

# (section, the key its validate hook gets, field, values that pass, a value that fails, the
# message after "invalid config value <key>.<field>: "); a None message: the default one below
BOUNDS = [
    (DataConfig, "data", "root", [None, "x"], "  ", "is empty; give a path"),
    (DataConfig, "data", "root", [None], "", "is empty; give a path"),
    *[(DataConfig, "data", n, [0, 1], -1, GE0) for n in ("val_size", "train_limit", "test_limit")],
    (DataConfig, "data", "crop_pad", [0, 4], -1, GE0),
    (RuntimeConfig, "runtime", "threads", [0], -1, GE0),
    (RuntimeConfig, "runtime", "ckpt_every_min", [1e-9], 0.0, GT0),
    (RuntimeConfig, "runtime", "keep_last", [1], 0, GE1),
    (OptimConfig, "optim", "lr", [1e-9], 0.0, GT0),
    (OptimConfig, "optim", "momentum", [0.0, 0.999], 1.0, IN01),
    (OptimConfig, "optim", "momentum", [], -0.1, IN01),
    (OptimConfig, "optim", "weight_decay", [0.0], -1e-9, GE0),
    (OptimConfig, "optim", "warmup_epochs", [0.0], -1.0, GE0),
    (OptimConfig, "optim", "milestones", [[], [0.01, 0.99]], [0.5, 1.0], "fractions in (0,1)"),
    (OptimConfig, "optim", "milestones", [], [0.0, 0.5], "fractions in (0,1)"),
    (OptimConfig, "optim", "label_smoothing", [0.0, 0.99], 1.0, IN01),
    (OptimConfig, "optim", "label_smoothing", [], -0.1, IN01),
    (OptimConfig, "optim", "ema_decay", [0.0, 0.999], 1.0, IN01),
    (OptimConfig, "optim", "ema_decay", [], -0.1, IN01),
    (FGSMAugConfig, "fgsm", "eps_min", [0.0], -0.01, GE0),
    (GANAugConfig, "gan", "min_confidence", [0.0, 1.0], 1.01, "must be in [0, 1]"),
    (GANAugConfig, "gan", "min_confidence", [], -0.01, "must be in [0, 1]"),
    (PGDAugConfig, "pgd", "eps", [0.0, 1.0], 1.5, f"1.5 {EPS_RANGE}"),
    (PGDAugConfig, "pgd", "eps", [], -0.1, f"-0.1 {EPS_RANGE}"),
    (PGDAugConfig, "pgd", "alpha", [1e-9, 1.0], 0.0, f"0.0 {ALPHA_RANGE}"),
    (PGDAugConfig, "pgd", "alpha", [], 1.5, f"1.5 {ALPHA_RANGE}"),
    (PGDAugConfig, "pgd", "steps", [1], 0, "0 is not >= 1"),
    *[
        (UnrestrictedAugConfig, "u", n, [1], 0, GE1)
        for n in ("pool_size", "refresh_every", "steps", "attack_batch")
    ],
    (UnrestrictedAugConfig, "u", "refresh_fraction", [1e-9, 1.0], 0.0, "must be in (0, 1]"),
    (UnrestrictedAugConfig, "u", "refresh_fraction", [], 1.01, "must be in (0, 1]"),
    (UnrestrictedAugConfig, "u", "lr", [1e-9], 0.0, GT0),
    *[
        (UnrestrictedAugConfig, "u", n, [0.0], -1e-9, GE0)
        for n in ("lambda1", "lambda2", "z_eps", "noise_eps", "dedup_threshold")
    ],
    (UnrestrictedAugConfig, "u", "z_project", list(PROJECTS), "l1", f"choose one of {PROJECTS}"),
    (AugmentConfig, "aug", "technique", list(TECHNIQUES), "mixup", UNKNOWN_MIXUP),
    (AugmentConfig, "aug", "prop", [0.0, 1.0], 1.5, "1.5 is outside [0, 1]"),
    (AugmentConfig, "aug", "prop", [], -0.5, "-0.5 is outside [0, 1]"),
    (AugmentConfig, "aug", "adv_weight", [0.0], -0.1, GE0),
    *[(ClassifierConfig, "c", n, [1], 0, GE1) for n in ("epochs", "batch_size", "eval_batch_size")],
    *[
        (GANConfig, "gan", n, [1], 0, GE1)
        for n in (
            "z_dim", "width", "iters", "batch_size", "g_batch_mult", "n_critic", "sample_every",
            "eval_every", "ckpt_every", "standing_batches",
        )
    ],
    (GANConfig, "gan", "ac_dropout", [0.0, 0.99], 1.0, IN01),
    (GANConfig, "gan", "ac_dropout", [], -0.1, IN01),
    (GANConfig, "gan", "ema_decay", [0.0, 0.999], 1.0, IN01),
    (GANConfig, "gan", "ema_decay", [], -0.1, IN01),
    (GANConfig, "gan", "gp_weight", [0.0], -1.0, GE0),
    (EvalConfig, "ev", "fgsm_eps", [[], [0.0, 0.1]], [0.1, -0.1], "every eps must be >= 0"),
    (EvalConfig, "ev", "pgd_eps", [0.0], -0.1, GE0),
    *[
        (EvalConfig, "ev", n, [1], 0, GE1)
        for n in ("pgd_steps", "pgd_restarts", "uae_steps", "batch_size")
    ],
    *[
        (EvalConfig, "ev", n, [0], -1, GE0)
        for n in ("robust_samples", "gan_samples_per_class", "uae_samples", "uae_targeted_per_pair")
    ],
    (EvalConfig, "ev", "uae_z_project", list(PROJECTS), "box", f"choose one of {PROJECTS}"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "key", "name", "good", "bad", "message"),
    BOUNDS,
    ids=[f"{c.__name__}.{n}={b!r}" for c, _, n, _, b, _ in BOUNDS],
)
def test_each_validator_accepts_its_bounds_and_names_what_is_allowed(
    cls, key, name, good, bad, message
):
    for value in good:
        cls(**{name: value}).validate(key)
    with pytest.raises(ConfigError) as info:
        cls(**{name: bad}).validate(key)
    assert str(info.value) == f"invalid config value {key}.{name}: {message}"


def _message(check) -> str:
    with pytest.raises(ConfigError) as info:
        check()
    return str(info.value)


def test_data_fallback_must_name_another_dataset():
    DataConfig(name="mnist", fallback="digits").validate("data")
    DataConfig(fallback=None).validate("data")
    assert _message(lambda: DataConfig(name="mnist", fallback="mnist").validate("data")) == (
        "invalid config value data.fallback: is the dataset itself (mnist); name another one, "
        "or remove it"
    )


def test_runtime_device_names():
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        RuntimeConfig(device=device).validate("runtime")
    assert _message(lambda: RuntimeConfig(device="tpu").validate("rt")) == (
        "invalid config value rt.device: 'tpu' is not auto, cpu, cuda or cuda:N"
    )


def test_fgsm_budget_order_and_range():
    FGSMAugConfig(eps_min=0.1, eps_max=0.1).validate("f")
    FGSMAugConfig(eps_min=0.0, eps_max=1.0).validate("f")
    assert _message(lambda: FGSMAugConfig(eps_min=0.2, eps_max=0.1).validate("f")) == (
        "invalid config value f.eps_max: must be >= eps_min"
    )
    assert _message(lambda: FGSMAugConfig(eps_max=1.01).validate("f")) == (
        "invalid config value f.eps_max: must be <= 1 (budgets are in [0,1] units)"
    )


def test_gan_learning_rates_are_checked_each():
    GANConfig(lr_g=1e-9, lr_d=1e-9).validate("gan")
    for bad in (dict(lr_g=0.0), dict(lr_d=0.0)):
        assert _message(lambda bad=bad: GANConfig(**bad).validate("gan")) == (
            "invalid config value gan.lr_g/lr_d: must be > 0"
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(techniques=["none", "cutmix"]), "techniques: unknown technique 'cutmix'; choose "
         "from none, fgsm, pgd, gan, unrestricted"),
        (dict(techniques=[]), "techniques: needs at least one technique"),
        (dict(seeds=[]), "seeds: needs at least one seed"),
        (dict(seed=-1), "seed: -1 is negative; seeds are >= 0"),
        (dict(seeds=[0, -1]), "seeds: [0, -1] has a negative seed"),
        (dict(reference_epochs=-1), "reference_epochs: must be >= 0"),
    ],
)  # fmt: skip
def test_study_checks_name_the_top_level_key(changes, message):
    StudyConfig(techniques=list(TECHNIQUES), seed=0, seeds=[0, 1], reference_epochs=0).validate("")
    StudyConfig(techniques=["none"], seeds=[0]).validate("")  # one of each is enough
    assert _message(lambda: StudyConfig(**changes).validate("")) == (
        f"invalid config value {message}"
    )


def test_validate_walks_every_section_with_its_dotted_key():
    cfg = StudyConfig()
    assert validate(cfg) is cfg
    cfg.classifier.optim.lr = 0.0
    assert (
        _message(lambda: validate(cfg)) == "invalid config value classifier.optim.lr: must be > 0"
    )
    assert _message(lambda: validate(cfg, "study")) == (
        "invalid config value study.classifier.optim.lr: must be > 0"
    )
    cfg = StudyConfig(seeds=[])  # the top-level hook runs too, after the sections
    assert _message(lambda: validate(cfg)) == "invalid config value seeds: needs at least one seed"


# ---------------------------------------------------------------- the unrestricted attack's


def test_is_int_and_is_finite():
    assert _is_int(3) and _is_int(-1) and not _is_int(True) and not _is_int(3.0)
    assert not _is_int("3") and not _is_int(None)
    assert _is_finite(3) and _is_finite(-2.5) and not _is_finite(True) and not _is_finite("1")
    assert not _is_finite(float("nan")) and not _is_finite(float("inf")) and not _is_finite(None)


U_BAD = [
    ("optimizer", "sgd", "choose one of ('adam', 'sgd-noise'), got 'sgd'"),
    ("z_proximity", "box", "choose one of ('hinge', 'l2ball'), got 'box'"),
    ("z_project", "l1", "choose one of ('none', 'linf', 'l2'), got 'l1'"),
    ("steps", -1, "must be an integer >= 0, got -1"),
    ("steps", 2.5, "must be an integer >= 0, got 2.5"),
    ("steps", True, "must be an integer >= 0, got True"),
    ("batch_size", 0, "must be an integer >= 1, got 0"),
    ("batch_size", 4.0, "must be an integer >= 1, got 4.0"),
    ("lr", 0.0, "must be > 0, got 0.0"),
    ("lr", float("inf"), "must be > 0, got inf"),
    ("lr", True, "must be > 0, got True"),
    ("grad_div", -1.0, "must be > 0, got -1.0"),
    ("grad_div", float("nan"), "must be > 0, got nan"),
    *[(n, -1e-9, "must be >= 0, got -1e-09")
      for n in ("lambda1", "lambda2", "z_eps", "noise_eps", "eta0", "gamma", "noise_lr")],
    ("z_eps", float("nan"), "must be >= 0, got nan"),
    ("eta0", "1", "must be >= 0, got '1'"),
    ("betas", (0.9, 1.0), "must be two numbers in [0, 1), got (0.9, 1.0)"),
    ("betas", (-0.1, 0.5), "must be two numbers in [0, 1), got (-0.1, 0.5)"),
    ("betas", (0.9,), "must be two numbers in [0, 1), got (0.9,)"),
    ("betas", (0.1, 0.2, 0.3), "must be two numbers in [0, 1), got (0.1, 0.2, 0.3)"),
    ("betas", (float("nan"), 0.5), "must be two numbers in [0, 1), got (nan, 0.5)"),
    ("betas", (True, 0.5), "must be two numbers in [0, 1), got (True, 0.5)"),
    ("betas", "ab", "must be two numbers in [0, 1), got 'ab'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "message"), U_BAD, ids=[str(b[:2]) for b in U_BAD])
def test_unrestricted_settings_name_the_setting_and_the_value(name, value, message):
    cfg = UnrestrictedConfig(**{name: value})
    assert _message(lambda: cfg.validate("attack")) == (
        f"invalid config value attack.{name}: {message}"
    )
    assert _message(cfg.validate) == f"invalid config value {name}: {message}"  # no key


def test_unrestricted_bounds_that_pass():
    for changes in (
        dict(optimizer="adam", z_proximity="hinge", z_project="none"),
        dict(optimizer="sgd-noise", z_proximity="l2ball", z_project="linf"),
        dict(z_project="l2", steps=0, batch_size=1, lr=1e-9, grad_div=1e-9),
        dict(lambda1=0.0, lambda2=0.0, z_eps=0.0, noise_eps=0.0, eta0=0.0, gamma=0.0),
        dict(noise_lr=None, betas=(0.0, 0.999)),
        dict(noise_lr=0.0, betas=[0, 0.5]),
    ):
        UnrestrictedConfig(**changes).validate("attack")


def test_unrestricted_numbers_are_normalised():
    cfg = UnrestrictedConfig(lr=1, lambda1=2, noise_lr=3, steps=4, batch_size=5, betas=[0, 1])
    assert (cfg.lr, cfg.lambda1, cfg.noise_lr, cfg.betas) == (1.0, 2.0, 3.0, (0.0, 1.0))
    assert all(type(v) is float for v in (cfg.lr, cfg.lambda1, cfg.noise_lr, *cfg.betas))
    assert type(cfg.steps) is int and type(cfg.batch_size) is int  # int fields stay ints
    assert UnrestrictedConfig(noise_lr=None).noise_lr is None
    assert UnrestrictedConfig(lr=True).lr is True  # a bool is not a number: validate refuses it
    odd = UnrestrictedConfig(betas=(1, "a", float("inf")))
    assert odd.betas == (1.0, "a", float("inf")) and type(odd.betas[0]) is float
    assert UnrestrictedConfig(betas="ab").betas == "ab"
    flags = UnrestrictedConfig(targeted=1, early_stop=0)
    assert flags.targeted is True and flags.early_stop is False


def test_unrestricted_replace_and_the_noise_step():
    base = UnrestrictedConfig()
    changed = base.replace(steps=3, noise_lr=0.2)
    assert (changed.steps, changed.noise_lr, base.steps) == (3, 0.2, 50)
    assert changed.effective_noise_lr == 0.2 and base.effective_noise_lr == base.lr == 0.05
    known = ", ".join(f.name for f in dataclasses.fields(UnrestrictedConfig))
    assert _message(lambda: base.replace(steps=3, stpes=3)) == (
        f"unknown unrestricted-attack setting 'stpes'; known: {known}"
    )


def test_technique_section_maps_to_the_attack_settings_by_hand():
    sec = UnrestrictedAugConfig(
        steps=7, optimizer="sgd-noise", lr=0.2, lambda1=0.3, lambda2=0.4, z_eps=0.5,
        z_project="linf", noise_eps=0.01, attack_batch=9,
    )  # fmt: skip
    mine = dict(
        optimizer="sgd-noise", lr=0.2, lambda1=0.3, lambda2=0.4, z_eps=0.5, z_project="linf",
        noise_eps=0.01, steps=7, batch_size=9,
    )  # fmt: skip
    assert sec.attack_config() == UnrestrictedConfig(early_stop=True, **mine)
    seed = dataclasses.replace(sec, mode="seed").attack_config()
    assert seed == UnrestrictedConfig(
        targeted=False, z_proximity="hinge", eta0=0.01, gamma=0.55, grad_div=32.0,
        early_stop=False, **mine,
    )  # fmt: skip


def test_batch_share_is_zero_without_a_technique():
    assert AugmentConfig(technique="none", prop=0.5).batch_share == 0.0
    assert AugmentConfig(technique="fgsm", prop=0.3).batch_share == 0.3


# ---------------------------------------------------------------- reading values


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        ("zeros", Literal["reflect", "zeros"], "zeros"),
        (None, str | None, None),
        ("x", str | None, "x"),
        (3, float | None, 3.0),
        ([1, 2.0], list[int], [1, 2]),
        ((0.5,), list[float], [0.5]),
        (True, bool, True),
        (False, bool, False),
        (3, int, 3),
        (3.0, int, 3),
        ("4e-4", float, 4e-4),
        (2, float, 2.0),
        ("s", str, "s"),
        ({"a": 1}, Any, {"a": 1}),
    ],
)
def test_coerce_accepts_and_converts(value, tp, expected):
    got = _coerce(value, tp, "k")
    assert got == expected and type(got) is type(expected)


def test_coerce_copies_mappings_and_builds_sections():
    given_map = {"a": "b"}
    got = _coerce(given_map, dict[str, str], "k")
    assert got == given_map and got is not given_map
    model = _coerce({"name": "tiny-cnn"}, ModelConfig, "m")
    assert model == ModelConfig(name="tiny-cnn")
    names = ", ".join(sorted(f.name for f in dataclasses.fields(ModelConfig)))
    assert _message(lambda: _coerce({"nope": 1}, ModelConfig, "m")) == (
        f"unknown config key 'm.nope'; known keys here: {names}"
    )


@pytest.mark.parametrize(
    ("value", "tp", "message"),
    [
        ("circular", Literal["reflect", "zeros"], "k='circular': choose one of reflect, zeros"),
        (None, int | str, "k: null is not allowed"),
        (3, ModelConfig, "k: expected a mapping, got 3"),
        (3, list[int], "k=3: expected a list"),
        ([1, "a"], list[int], "k[1]='a': expected an integer"),
        ([1], dict[str, str], "k=[1]: expected a mapping"),
        (1, bool, "k=1: expected true or false"),
        ("yes", bool, "k='yes': expected true or false"),
        (True, int, "k=True: expected an integer"),
        (3.5, int, "k=3.5: expected an integer"),
        ("3", int, "k='3': expected an integer"),
        ("abc", float, "k='abc': expected a number"),
        (True, float, "k=True: expected a number"),
        (None, float, "k=None: expected a number"),
        (float("nan"), float, "k=nan: expected a finite number"),
        ("inf", float, "k=inf: expected a finite number"),
        (float("-inf"), float, "k=-inf: expected a finite number"),
        (3, str, "k=3: expected a string"),
        (3, str | None, "k=3: expected a string"),  # the key reaches the inner type
        (1, bytes, "k: unsupported type bytes"),
    ],
)
def test_coerce_refusals_name_the_key_and_what_is_expected(value, tp, message):
    assert _message(lambda: _coerce(value, tp, "k")) == f"invalid config value {message}"


def test_from_dict_merges_sections_into_their_defaults_and_names_unknown_keys():
    cfg = _from_dict(StudyConfig, {"reference_model": {"kwargs": {"a": 1}}, "seed": 2.0})
    assert cfg.reference_model == ModelConfig(
        name="wrn-16-4", kwargs={"a": 1}
    )  # not the class default
    assert cfg.seed == 2 and type(cfg.seed) is int
    model = _from_dict(ModelConfig, {"name": "x"})
    assert model == ModelConfig(name="x")
    names = ", ".join(sorted(f.name for f in dataclasses.fields(ModelConfig)))
    assert _message(lambda: _from_dict(ModelConfig, {"nope": 1})) == (
        f"unknown config key 'nope'; known keys here: {names}"
    )
    assert _message(lambda: _from_dict(StudyConfig, {"reference_model": {"nope": 1}})) == (
        f"unknown config key 'reference_model.nope'; known keys here: {names}"
    )
    assert _message(lambda: _from_dict(StudyConfig, {"classifier": {"optim": {"lr": "x"}}})) == (
        "invalid config value classifier.optim.lr='x': expected a number"
    )
    assert _message(lambda: _from_dict(StudyConfig, {"reference_model": 3})) == (
        "invalid config value reference_model: expected a mapping, got 3"
    )


def test_parse_overrides_edge_cases():
    assert parse_overrides([" a.b = 1", "a.c=2", "d=x=y", "e=", "f= ", "g=[1,"]) == {
        "a": {"b": 1, "c": 2},
        "d": "x=y",
        "e": "",
        "f": "",
        "g": "[1,",  # not YAML: kept as text
    }
    assert parse_overrides(["a=1", "a=2"]) == {"a": 2}
    assert _message(lambda: parse_overrides(["noequals"])) == (
        "override 'noequals' is not key=value (e.g. classifier.epochs=5)"
    )
    for item in ("=3", " =3", "a..b=1", "a.=1"):
        assert _message(lambda item=item: parse_overrides([item])) == (
            f"override '{item}' has an empty key (e.g. classifier.epochs=5)"
        )
    assert _message(lambda: parse_overrides(["a=1", "a.b=2"])) == (
        "override 'a.b=2' conflicts with an earlier override"
    )
