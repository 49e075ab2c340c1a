from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.config import (
    StudyConfig,
    build_config,
    config_hash,
    from_dict,
    list_presets,
    parse_overrides,
    to_dict,
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
