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
    # 0.2 is 51/255 exactly, but a budget given as a short decimal reads as one
    assert [eps_label(e) for e in (0.2, 0.3, 0.0, 1.0)] == ["0.2", "0.3", "0", "1"]
    assert [eps_label(k / 255) for k in (1, 2, 4, 16)] == ["1/255", "2/255", "4/255", "16/255"]
    assert eps_label(0.0078) == "0.0078"  # neither


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


class BatchStatGenerator(nn.Module):
    """Normalises its class codes with the statistics of the batch, like ``bn_stats="batch"``:
    a one-class batch turns into zeros (a grey image), a mixed batch keeps each class apart."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.num_classes, self.z_dim, self.bn_stats = k, 4, "batch"
        self.dummy = nn.Parameter(torch.zeros(()))
        self.batches: list[torch.Tensor] = []

    def forward(self, z, y):
        self.batches.append(y.cpu())
        h = torch.nn.functional.one_hot(y, self.num_classes).float()
        h = (h - h.mean(0)) / (h.std(0, unbiased=False) + 1e-5)  # batch statistics
        x = torch.sigmoid(h.repeat_interleave(3 * 32 * 32 // self.num_classes + 1, 1))
        return (x[:, : 3 * 32 * 32] + 0 * self.dummy + 0 * z[:, :1]).view(-1, 3, 32, 32)


class Pair:
    def __init__(self, g):
        self.generator, self.critic = g, None


def test_gan_acc_uses_shuffled_training_size_batches_and_not_the_label_order():
    k, batch = 10, 16
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, k))
    x = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(20) % k
    cfg = EvalConfig(fgsm_eps=[], pgd_steps=1, robust_samples=10, gan_samples_per_class=5,
                     uae_samples=0, batch_size=64)  # fmt: skip
    g = BatchStatGenerator(k)
    res = evaluate_model(model, x, y, cfg, dataset="toy", gan=Pair(g), gan_batch=batch)
    m = res["metrics"]["gan_acc"]
    assert m["n"] == 50 and "batches of 16" in m["protocol"]
    # every batch has the GAN's training size (the last one is filled up) and mixes classes
    assert [b.shape[0] for b in g.batches] == [batch] * 4
    assert all(len(b.unique()) >= 6 for b in g.batches)
    # the labels of the 50 scored samples: 5 per class, in a shuffled order
    scored = torch.cat(g.batches)[:50]
    assert torch.bincount(scored, minlength=k).tolist() == [5] * k
    assert not torch.equal(scored, scored.sort().values)
    # the same samples for every model (fixed seed): the result repeats exactly
    g.batches.clear()
    again = evaluate_model(model, x, y, cfg, dataset="toy", gan=Pair(g), gan_batch=batch)
    assert again["metrics"]["gan_acc"]["value"] == m["value"]
    assert again["per_image"]["gan_acc"] == res["per_image"]["gan_acc"]


def test_every_rate_carries_its_count_and_per_image_outcomes():
    from advaug.report.stats import unpack_outcomes

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(40) % 10
    cfg = EvalConfig(fgsm_eps=[8 / 255], pgd_steps=2, robust_samples=20, batch_size=16)
    res = evaluate_model(model, x, y, cfg, dataset="toy")
    ms, per = res["metrics"], res["per_image"]
    assert ms["clean_top1"]["n"] == 40 and ms["pgd2@8/255"]["n"] == 20
    for key in ("clean_top1", "clean_top5", "fgsm@8/255", "pgd2@8/255"):
        bits = unpack_outcomes(per[key])
        assert bits.shape == (ms[key]["n"],)
        assert bits.mean() == pytest.approx(ms[key]["value"])
