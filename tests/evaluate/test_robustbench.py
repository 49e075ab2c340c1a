"""The RobustBench protocol preset and the comparability verdict beside every evaluation."""

from __future__ import annotations

import pytest

from advaug.config import build_config
from advaug.evaluate.suite import format_evaluation, robustbench_comparability


def test_the_preset_is_the_protocol() -> None:
    cfg = build_config("robustbench")
    e = cfg.evaluate
    assert (cfg.data.name, cfg.data.test_limit, e.robust_samples) == ("cifar100", 0, 0)
    assert e.autoattack and e.autoattack_backend == "reference" and e.pgd_eps == 8 / 255
    verdict = robustbench_comparability(cfg, 10_000)
    assert verdict == {**verdict, "comparable": True, "reasons": []}
    assert robustbench_comparability(build_config("robustbench", ["data.name=cifar10"]), 10_000)[
        "comparable"
    ]


@pytest.mark.parametrize(
    "overrides, images, fragment",
    [
        (["data.name=digits"], 10_000, "no leaderboard for digits"),
        (["data.test_limit=1000"], 1000, "not all 10000"),
        ([], 9999, "not all 10000"),
        (["evaluate.robust_samples=1000"], 10_000, "evaluate.robust_samples=0"),
        (["evaluate.autoattack=false"], 10_000, "AutoAttack did not run"),
        (["evaluate.autoattack_backend=torchattacks"], 10_000, "reference code"),
        (["evaluate.pgd_eps=0.0156862745"], 10_000, "not 8/255"),
    ],
)
def test_each_missed_condition_is_named(overrides, images, fragment) -> None:
    verdict = robustbench_comparability(build_config("robustbench", overrides), images)
    assert not verdict["comparable"]
    assert len(verdict["reasons"]) == 1 and fragment in verdict["reasons"][0]


def test_the_verdict_is_printed_with_the_metrics() -> None:
    metrics = {"clean_top1": {"value": 0.5, "protocol": "p"}}
    yes = robustbench_comparability(build_config("robustbench"), 10_000)
    no = robustbench_comparability(build_config("smoke"), 100)
    assert "RobustBench: comparable" in format_evaluation({"metrics": metrics, "robustbench": yes})
    text = format_evaluation({"metrics": metrics, "robustbench": no})
    assert "RobustBench: not comparable" in text and "digits" in text
    assert text.count("\n") == 1  # one line for the verdict


def test_the_autoattack_protocol_line_names_the_reference_code() -> None:
    pytest.importorskip("pyautoattack")
    import torch

    from advaug.evaluate.robustness import robustness
    from advaug.models import build_model

    model = build_model("tiny-cnn", 10, width=4).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    settings = {"pgd_eps": 32 / 255, "pgd_alpha": 8 / 255, "pgd_steps": 2, "pgd_restarts": 1}
    cpu = torch.device("cpu")
    out = robustness(model, x, y, fgsm_eps=[], **settings, autoattack=True, batch_size=4,
                     device=cpu, split="toy", autoattack_backend="reference")  # fmt: skip
    line = out["autoattack@32/255"]["protocol"]
    assert "reference code, pyautoattack" in line and "4 toy images" in line
