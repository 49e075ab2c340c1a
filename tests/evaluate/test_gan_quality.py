"""Generator-quality metrics against independent computations and hand-made point sets."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advaug.errors import AdvaugError, ConfigError, DataError
from advaug.evaluate.gan_quality import (
    INCEPTION_WEIGHTS_URL,
    ClassifierFeatures,
    FeatureNet,
    InceptionFeatures,
    ac_accuracy,
    diversity,
    extract_features,
    feature_stats,
    fid,
    frechet_distance,
    gan_test_accuracy,
    generator_quality,
    inception_score,
    intra_class_fid,
    per_class_precision_recall,
    precision_recall,
    quality_with_baseline,
    real_halves,
)

# ----------------------------------------------------------------------------------------------
# Fréchet distance / FID


def _numpy_frechet(mu1, s1, mu2, s2) -> float:
    """tr((Σ1 Σ2)^½) as the sum of the square roots of the eigenvalues of the *non-symmetric*
    product Σ1 Σ2 (LAPACK's general eigensolver): independent of our symmetric route."""
    eig = np.linalg.eigvals(s1 @ s2)
    tr_covmean = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(1, 12))
def test_frechet_distance_matches_a_general_eigensolver(seed, d):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(d, d + 3)), rng.normal(size=(d, d + 3))
    s1, s2 = a @ a.T / d, b @ b.T / d
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ours = frechet_distance(*(torch.from_numpy(t) for t in (mu1, s1, mu2, s2)))
    assert ours == pytest.approx(_numpy_frechet(mu1, s1, mu2, s2), rel=1e-6, abs=1e-8)


def test_fid_matches_torchmetrics_on_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Identity(nn.Module):
        num_features = 8

        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(200, 8, generator=g, dtype=torch.float64) * 1.3 + 0.2
    metric = FrechetInceptionDistance(feature=Identity())
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert fid(real, fake) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_adds_its_squared_norm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 16, generator=g)
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)
    delta = torch.zeros(16)
    values = []
    for s in (0.5, 1.0, 2.0):
        delta[0], delta[3] = s, -s
        values.append(fid(x, x + delta))
        # the covariances are equal, so FID is exactly ‖δ‖²
        assert values[-1] == pytest.approx(float(delta.square().sum()), rel=1e-4, abs=1e-6)
    assert values[0] < values[1] < values[2]


def test_feature_stats_checks_inputs():
    with pytest.raises(ConfigError):
        feature_stats(torch.randn(1, 4))
    with pytest.raises(AdvaugError):
        feature_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))


# ----------------------------------------------------------------------------------------------
# Inception score


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(torch.zeros(100, 10), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 7, 100])
def test_inception_score_of_confident_balanced_predictions_is_k(k):
    labels = torch.arange(4 * k) % k  # every split holds every class equally often
    logits = torch.nn.functional.one_hot(labels, k).double() * 60.0
    mean, std = inception_score(logits, splits=4)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_between_one_and_k_for_half_confident():
    # p(y|x) = (1/2, 1/2) on two of four classes, classes balanced: KL = log 4 - log 2, IS = 2
    logits = torch.full((4, 4), -1e9, dtype=torch.float64)
    for i, (a, b) in enumerate([(0, 1), (2, 3), (0, 1), (2, 3)]):
        logits[i, a] = logits[i, b] = 0.0
    assert inception_score(logits, splits=1)[0] == pytest.approx(2.0, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# precision / recall


def test_precision_recall_on_hand_made_points():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    # k=1: each real ball has radius 1 -> 0.5 is inside, 10 is not -> precision 1/2.
    # each fake ball has radius 9.5 (the other fake) -> every real point is covered -> recall 1.
    p, r = precision_recall(real, fake, k=1)
    assert (p, r) == (0.5, 1.0)
    # k=2 around fakes is impossible (only 2 fakes): a clear error
    with pytest.raises(ConfigError):
        precision_recall(real, fake, k=2)


def test_precision_recall_two_dimensional_hand_case():
    real = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    fake = torch.tensor([[0.5, 0.5], [0.5, 0.6], [5.0, 5.0], [5.0, 5.5]])
    # real k=1 radius 1 -> both fakes near the square are in, the far two are out: precision 0.5
    # fake k=1 radii: 0.1, 0.1, 0.5, 0.5 -> no real point lies within 0.1 of (0.5, 0.5): recall 0
    assert precision_recall(real, fake, k=1) == (0.5, 0.0)
    assert precision_recall(real, real, k=1) == (1.0, 1.0)


def test_per_class_precision_recall():
    g = torch.Generator().manual_seed(0)
    r0 = torch.randn(20, 2, generator=g)
    r1 = torch.randn(20, 2, generator=g) + 5
    real = torch.cat([r0, r1])
    real_y = torch.tensor([0] * 20 + [1] * 20)
    fake = torch.cat([r0, r1 + 100])  # class 0 perfect, class 1 far away
    fake_y = real_y.clone()
    out = per_class_precision_recall(real, real_y, fake, fake_y, k=3, num_classes=3)
    torch.testing.assert_close(out["per_class_precision"][:2], torch.tensor([1.0, 0.0]).double())
    torch.testing.assert_close(out["per_class_recall"][:2], torch.tensor([1.0, 0.0]).double())
    assert torch.isnan(out["per_class_precision"][2])  # class 2 has no samples
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)


def test_intra_class_fid_by_hand():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g)
    real = torch.cat([a, b])
    y = torch.tensor([0] * 50 + [1] * 50)
    delta = torch.tensor([2.0, 0.0, 0.0])
    fake = torch.cat([a, b + delta])
    mean, per = intra_class_fid(real, y, fake, y)
    assert per[0] == pytest.approx(0.0, abs=1e-6)
    assert per[1] == pytest.approx(4.0, rel=1e-5)
    assert mean == pytest.approx(2.0, rel=1e-5)


def test_diversity_by_hand():
    fake = torch.tensor([[0.0], [2.0], [5.0], [5.0], [5.0]])
    fake_y = torch.tensor([0, 0, 1, 1, 1])
    real = torch.tensor([[0.0], [1.0], [2.0], [4.0], [6.0]])
    real_y = torch.tensor([0, 0, 0, 1, 1])
    out = diversity(fake, fake_y, real_feats=real, real_labels=real_y)
    # class 0: fake pairs {2} -> 2; real pairs {1, 2, 1} -> 4/3; ratio 1.5
    # class 1: fakes collapsed -> 0; real pair {2} -> 2; ratio 0
    torch.testing.assert_close(out["per_class"], torch.tensor([2.0, 0.0]).double())
    torch.testing.assert_close(out["real_per_class"], torch.tensor([4 / 3, 2.0]).double())
    torch.testing.assert_close(out["ratio_per_class"], torch.tensor([1.5, 0.0]).double())
    assert out["overall"] == pytest.approx(1.0) and out["ratio"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------------------------
# feature networks


class StandInInception(nn.Module):
    """Takes uint8 NCHW like torch-fidelity's extractor; returns (per-channel means, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 5)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        assert x.dtype == torch.uint8
        self.seen.append(x)
        f = x.float().mean(dim=(2, 3))
        return f, self.proj(f)


def test_inception_features_with_injected_extractor_quantises_exactly():
    ext = StandInInception()
    net = InceptionFeatures(extractor=ext)
    k = torch.arange(256).float()
    x = (k / 255).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    feats, logits = extract_features(net, x, batch_size=1)
    assert len(ext.seen) == 2
    torch.testing.assert_close(ext.seen[0][0, 0].flatten().long(), torch.arange(256))
    assert feats.shape == (2, 3) and logits.shape == (2, 5)
    torch.testing.assert_close(feats, torch.full((2, 3), 127.5))
    assert net.name.startswith("inception-v3")
    net.train()
    assert not ext.training  # the Inception network never leaves eval mode


def test_inception_features_repeat_one_channel_images_to_three():
    """MNIST-like 1x28x28 images reach the 3-channel extractor as three equal grey channels."""
    ext = StandInInception()
    x = torch.rand(4, 1, 28, 28)
    feats, _ = extract_features(InceptionFeatures(extractor=ext), x)
    assert ext.seen[0].shape == (4, 3, 28, 28)
    assert torch.equal(ext.seen[0][:, 0], ext.seen[0][:, 2])
    torch.testing.assert_close(feats[:, 0], feats[:, 1])


def test_inception_features_missing_weights_file_names_path_and_url(tmp_path):
    missing = tmp_path / "nowhere" / "pt_inception.pth"
    with pytest.raises(DataError) as info:
        InceptionFeatures(missing)
    msg = str(info.value)
    assert str(missing) in msg and INCEPTION_WEIGHTS_URL in msg and "\n" not in msg


def test_inception_features_missing_torch_fidelity_names_pip_install(tmp_path, monkeypatch):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(AdvaugError) as info:
        InceptionFeatures(weights)
    assert "pip install torch-fidelity" in str(info.value) and "\n" not in str(info.value)


class ToyClassifier(nn.Module):
    """Predicts class round(mean pixel · K - 0.5), except that class 2 is read as class 0."""

    arch_name = "toy-net"

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(()))

    def features(self, x):
        return x.mean(dim=(2, 3))

    def forward(self, x):
        c = (x.mean(dim=(1, 2, 3)) * self.k - 0.5).round().long().clamp(0, self.k - 1)
        c = torch.where(c == 2, torch.zeros_like(c), c)
        return nn.functional.one_hot(c, self.k).float() + 0 * self.dummy


class ToyGenerator(nn.Module):
    """Paints class y as grey level (y + 0.5) / K, plus a little z-dependent tint."""

    def __init__(self, k: int, z_dim: int = 4) -> None:
        super().__init__()
        self.num_classes, self.z_dim = k, z_dim
        self.dummy = nn.Parameter(torch.zeros(()))
        self.bn_stats = "running"

    def forward(self, z, y):
        level = (y.float() + 0.5) / self.num_classes
        tint = 0.02 * torch.tanh(z[:, :3])
        x = level[:, None] + tint + self.dummy
        return x[:, :, None, None].expand(-1, 3, 8, 8).clamp(0, 1)


def test_classifier_features_wraps_features_and_logits():
    clf = ToyClassifier(4)
    net = ClassifierFeatures(clf)
    assert net.name == "classifier-features:toy-net"
    x = torch.rand(3, 3, 8, 8)
    f, lg = net(x)
    torch.testing.assert_close(f, x.mean(dim=(2, 3)))
    assert lg.shape == (3, 4)
    with pytest.raises(ConfigError):
        ClassifierFeatures(nn.Linear(2, 2))


def test_gan_test_accuracy_per_class():
    k = 5
    overall, per = gan_test_accuracy(
        ToyClassifier(k), ToyGenerator(k), num_per_class=6, batch_size=7, seed=0
    )
    torch.testing.assert_close(per, torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0]).double())
    assert overall == pytest.approx(0.8)


def test_ac_accuracy_and_mode_restored():
    class ToyCritic(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            assert not self.training
            c = (x.mean(dim=(1, 2, 3)) > 0.5).long()
            return x.mean(dim=(1, 2, 3)), nn.functional.one_hot(c, 2).float()

    critic = ToyCritic().train()
    x = torch.cat([torch.zeros(3, 3, 4, 4), torch.ones(5, 3, 4, 4)])
    y = torch.tensor([0, 0, 1, 1, 1, 1, 1, 0])  # 2 of 8 wrong
    assert ac_accuracy(critic, x, y, batch_size=3) == pytest.approx(6 / 8)
    assert critic.training


class MeanFeatures(FeatureNet):
    name = "toy-means"

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)

    def forward(self, x):
        f = x.mean(dim=(2, 3))
        return f, self.proj(f)


def test_generator_quality_bundle_and_protocol():
    k = 4
    gen = ToyGenerator(k)
    net = MeanFeatures()
    real_y = torch.arange(80) % k
    from advaug.models.gan import sample

    real_x = sample(gen, real_y, rng=torch.Generator().manual_seed(123))
    out = generator_quality(
        gen, real_x, real_y, net, num_samples=120, batch_size=50, seed=0, k=3, is_splits=2
    )
    assert out["protocol_line"] == "FID[toy-means] 120 fake vs 80 real (test split), seed 0"
    assert out["protocol"]["num_fake"] == 120 and out["protocol"]["feature_net"] == "toy-means"
    # same generator on both sides: small FID, good P/R, diversity ratio near 1
    assert out["fid"] < 1e-3
    assert out["precision"] > 0.8 and out["recall"] > 0.8
    assert 0.7 < out["diversity_ratio"] < 1.4
    assert out["per_class"]["intra_fid"].shape == (k,)
    real_feats, _ = extract_features(net, real_x)
    again = generator_quality(
        gen,
        real_x,
        real_y,
        net,
        num_samples=120,
        batch_size=50,
        seed=0,
        k=3,
        is_splits=2,
        real_features=(real_feats, None),
    )
    assert again["fid"] == out["fid"]  # deterministic given the seed, real side reusable
    # a generator that paints every class with the wrong grey level is far away
    shifted = ToyGenerator(k)
    with torch.no_grad():
        shifted.dummy.fill_(0.3)
    bad = generator_quality(
        shifted, real_x, real_y, net, num_samples=120, batch_size=50, is_splits=2
    )
    assert bad["fid"] > 100 * max(out["fid"], 1e-6) and bad["precision"] < out["precision"]


def test_real_halves_are_disjoint_stratified_and_the_same_size():
    y = torch.tensor([0] * 7 + [1] * 4 + [2] * 10)
    a, b = real_halves(y, seed=3)
    assert len(set(a.tolist()) & set(b.tolist())) == 0 and a.shape == b.shape == (3 + 2 + 5,)
    for c, half in ((0, 3), (1, 2), (2, 5)):
        assert int((y[a] == c).sum()) == int((y[b] == c).sum()) == half


def test_quality_with_baseline_puts_real_data_beside_the_generator():
    k = 4
    torch.manual_seed(0)
    y = torch.arange(400) % k
    # real images painted like ToyGenerator's (grey level by class, small noise): the generator
    # is nearly perfect, so its numbers should be close to the real-vs-real scale
    x = ((y.float() + 0.5) / k)[:, None, None, None] + 0.02 * torch.randn(400, 3, 8, 8)
    out = quality_with_baseline(
        ToyGenerator(k), x.clamp(0, 1), y, ClassifierFeatures(ToyClassifier(k)),
        batch_size=64, seed=0, is_splits=2,
    )  # fmt: skip
    gen, real, counts = out["generator"], out["real"], out["counts"]
    assert counts == {"per_half": 200, "per_class_real_a": "50", "per_class_real_b": "50",
                      "per_class_fake": "50"}  # fmt: skip
    assert gen["protocol"]["num_fake"] == gen["protocol"]["num_real"] == 200
    for key in ("fid", "intra_fid", "precision", "recall", "diversity_ratio"):
        assert math.isfinite(real[key]), key
    assert real["fid"] < 0.01 and real["precision"] > 0.8
    lines = out["protocol_lines"]
    assert "200 vs 200" in lines["fid"] and "half B vs half A" in lines["fid"]
    assert "per class 50 fake or 50 real (half B) vs 50 real (half A)" in lines["intra_fid"]
