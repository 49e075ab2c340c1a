from __future__ import annotations

import pytest
import torch
from torch import nn

from advaug.config import EvalConfig
from advaug.evaluate.accuracy import accuracy_from_logits
from advaug.evaluate.robustness import eps_label
from advaug.evaluate.suite import evaluate_model, format_evaluation


def test_accuracy_from_logits_by_hand():
    logits = torch.tensor(
        [[9.0, 1, 2, 3, 4, 5], [5, 9, 1, 2, 3, 4], [1, 2, 3, 4, 5, 9], [9, 1, 2, 3, 4, 5]]
    )
    y = torch.tensor([0, 0, 0, 1])
    acc = accuracy_from_logits(logits, y)
    assert acc["top1"] == 0.25  # only the first row
    assert acc["top5"] == 0.5  # rows 0 and 1 (class 0 second in row 1); rows 2, 3 rank y last
    assert acc["per_class"][0] == pytest.approx(1 / 3) and acc["per_class"][1] == 0


def test_eps_label():
    assert eps_label(8 / 255) == "8/255" and eps_label(0.1) == "0.1"


def test_evaluate_model_has_every_metric_with_a_protocol():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(40) % 10
    cfg = EvalConfig(fgsm_eps=[2 / 255, 8 / 255], pgd_steps=2, robust_samples=20, batch_size=16)
    res = evaluate_model(model, x, y, cfg, dataset="toy")
    keys = set(res["metrics"])
    assert {"clean_top1", "clean_top5", "fgsm@2/255", "fgsm@8/255", "pgd2@8/255"} <= keys
    assert all(m["protocol"] for m in res["metrics"].values())
    assert "20 toy test (class-balanced) images" in res["metrics"]["pgd2@8/255"]["protocol"]
    assert res["metrics"]["pgd2@8/255"]["value"] <= res["metrics"]["clean_top1"]["value"] + 0.5
    assert len(res["per_class_top1"]) == 10
    assert "clean_top1" in format_evaluation(res)
