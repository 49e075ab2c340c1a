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


# ----------------------------------------------------------------------------------------------
# the mutation pass's survivors: boundaries, defaults, messages and the bundles' wiring


def test_device_of_a_module_without_tensors_is_the_cpu():
    from advaug.evaluate.gan_quality import _device_of

    assert _device_of(nn.Identity()) == torch.device("cpu")
    holder = nn.Module()
    holder.register_buffer("b", torch.zeros(1, device="meta"))
    assert _device_of(holder) == torch.device("meta")


def test_classifier_features_name_and_refusal_whole():
    class Tiny(nn.Module):
        def features(self, x):
            return x

    assert ClassifierFeatures(Tiny()).name == "classifier-features:tiny"
    assert ClassifierFeatures(Tiny(), name="mine").name == "mine"
    with pytest.raises(ConfigError) as info:
        ClassifierFeatures(nn.Linear(2, 2))
    assert str(info.value) == (
        "Linear has no .features(x) method: use a classifier that exposes its penultimate features"
    )


def test_inception_features_clip_to_the_pixel_range_and_train_keeps_eval():
    ext = StandInInception()
    net = InceptionFeatures(extractor=ext)
    net(torch.tensor([-0.5, 1.5, 2.5, 0.2]).view(1, 1, 2, 2))
    assert ext.seen[0][0, 0].flatten().tolist() == [0, 255, 255, 51]
    assert net.train() is net and net.training and not ext.training


def test_inception_loader_messages_and_extractor_arguments(tmp_path, monkeypatch):
    import types

    with pytest.raises(ConfigError) as info:
        InceptionFeatures()
    assert str(info.value) == (
        f"InceptionFeatures needs weights_path: download {INCEPTION_WEIGHTS_URL} and pass its "
        "local path"
    )
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    with pytest.raises(ImportError) as why:
        import torch_fidelity.feature_extractor_inceptionv3  # noqa: F401
    with pytest.raises(AdvaugError) as info:
        InceptionFeatures(weights)
    assert str(info.value) == (
        "Inception FID needs torch-fidelity, which is not importable here "
        f"({type(why.value).__name__}): pip install torch-fidelity (it needs torchvision "
        "matching your torch)"
    )
    calls = []

    class Extractor(StandInInception):
        def __init__(self, *args, **kwargs):
            super().__init__()
            calls.append((args, kwargs))

    fake = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    fake.FeatureExtractorInceptionV3 = Extractor
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", fake)
    net = InceptionFeatures(weights)
    assert isinstance(net.extractor, Extractor)
    assert calls == [
        (
            ("inception-v3-compat", ["2048", "logits_unbiased"]),
            {"feature_extractor_weights_path": str(weights)},
        )
    ]


def test_feature_stats_of_two_rows_and_messages_whole():
    mu, cov = feature_stats(torch.tensor([[0.0], [2.0]]))
    assert mu.tolist() == [1.0] and cov.tolist() == [[2.0]] and cov.dtype == torch.float64
    with pytest.raises(ConfigError) as info:
        feature_stats(torch.zeros(1, 3))
    assert str(info.value) == "feature statistics need a [N, D] tensor with N >= 2, got (1, 3)"
    with pytest.raises(AdvaugError) as info:
        feature_stats(torch.tensor([[0.0], [math.inf]]))
    assert str(info.value) == "features contain NaN or inf: check the generator and feature net"
    one = torch.ones(1, 1, dtype=torch.float64)
    with pytest.raises(AdvaugError) as info:
        frechet_distance(torch.tensor([math.inf]), one, torch.zeros(1), one)
    assert str(info.value) == "Fréchet distance is not finite: check the feature statistics"


def test_inception_score_bounds_default_population_std_and_no_warnings():
    import warnings

    with pytest.raises(ConfigError) as info:
        inception_score(torch.zeros(3, 2), splits=4)
    assert str(info.value) == "inception_score needs 1 <= splits <= N, got splits=4, N=3"
    with pytest.raises(ConfigError):
        inception_score(torch.zeros(3, 2), splits=0)
    assert inception_score(torch.zeros(3, 2), splits=3) == (1.0, 0.0)  # splits = N is allowed
    assert inception_score(torch.zeros(10, 2)) == (1.0, 0.0)  # 10 splits by default
    # split 1 uniform (IS 1), split 2 confident over two classes (IS 2): std over splits 0.5
    logits = torch.tensor([[0.0, 0], [0, 0], [60, 0], [0, 60]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the softmax dimension is explicit
        mean, std = inception_score(logits, splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)


def test_precision_recall_edges_chunks_and_defaults(monkeypatch):
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # k=1: real radii 1; the fake at 4 lies exactly on the edge of 3's ball, so inside
    assert precision_recall(real, torch.tensor([[4.0], [9.0]]), k=1) == (0.5, 1.0)
    # chunks smaller than the sets give the same answer
    fake = torch.tensor([[0.5], [10.0], [2.5]])
    assert precision_recall(real, fake, k=1, chunk=2) == precision_recall(real, fake, k=1)
    with pytest.raises(ConfigError) as info:
        precision_recall(real, fake, k=3)
    assert str(info.value) == "k-NN radii need more than k=3 points, got 3"
    # k = 3 by default: real radii 2 (around 1 and 2) and 3 (around 0 and 3); fakes radii 4
    pts = torch.tensor([[0.0], [1.0], [2.0], [3.0], [6.5]])
    assert precision_recall(pts[:4], pts) == precision_recall(pts[:4], pts, k=3)
    assert precision_recall(pts[:4], pts) == pytest.approx((0.8, 1.0))
    widths = []
    cdist = torch.cdist
    monkeypatch.setattr(torch, "cdist", lambda a, b: widths.append(a.shape[0]) or cdist(a, b))
    precision_recall(torch.zeros(1025, 1), torch.zeros(4, 1))
    assert widths[:2] == [1024, 1]  # the default chunk


def test_per_class_precision_recall_counts_classes_and_warns(caplog):
    import logging

    r = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # class 0: 4 real, 4 fake; class 1: 4 real, 3 fake (= k); class 2: 3 real, 4 fake
    real = torch.cat([r, r, r[:3]])
    fake = torch.cat([r, r[:3], r])
    ry = torch.tensor([0] * 4 + [1] * 4 + [2] * 3)
    fy = torch.tensor([0] * 4 + [1] * 3 + [2] * 4)
    out = per_class_precision_recall(real, ry, fake, fy, k=3)
    assert out["per_class_precision"].shape == (3,) and out["precision"] == 1.0
    assert torch.isnan(out["per_class_precision"][1:]).all()
    assert torch.isnan(out["per_class_recall"][1:]).all()
    # the classes come from both sides: 3 only among the reals, or only among the fakes
    one = torch.tensor([3])
    only_real = per_class_precision_recall(real[:5], torch.cat([ry[:4], one]), fake[:4], fy[:4])
    only_fake = per_class_precision_recall(real[:4], ry[:4], fake[:5], torch.cat([fy[:4], one]))
    assert only_real["per_class_recall"].shape == only_fake["per_class_recall"].shape == (4,)
    # k is passed on: with k=1, two points a class suffice, and 0 and 10 are far apart
    two = torch.tensor([[0.0], [1.0]])
    out = per_class_precision_recall(two, torch.zeros(2), two + 10, torch.zeros(2), k=1)
    assert out["precision"] == 0.0
    with caplog.at_level(logging.WARNING, logger="advaug"):
        per_class_precision_recall(two, torch.zeros(2), two, torch.zeros(2))
    assert [rec.getMessage() for rec in caplog.records] == [
        "per-class precision/recall: no class has more than k=3 samples"
    ]


def test_intra_class_fid_boundaries_one_feature_and_classes():
    # one feature: FID = (mu1 - mu2)^2 + (sd1 - sd2)^2; class 0: [0, 2] vs [3, 5] -> 9
    real = torch.tensor([[0.0], [2.0], [0.0], [1.0], [5.0], [7.0]])
    fake = torch.tensor([[3.0], [5.0], [0.0], [1.0], [4.0], [5.0]])
    ry = torch.tensor([0, 0, 1, 1, 1, 2])  # class 1: 3 real, 1 fake; class 2: 1 real, 3 fake
    fy = torch.tensor([0, 0, 1, 2, 2, 2])
    mean, per = intra_class_fid(real, ry, fake, fy, num_classes=4)
    assert mean == pytest.approx(9.0) and per.dtype == torch.float64 and per.shape == (4,)
    assert torch.isnan(per[1:]).all()
    # without num_classes, K is the largest label on either side, plus one
    only_real = torch.tensor([0, 0, 1, 1, 1, 3])
    assert intra_class_fid(real, only_real, fake, fy)[1].shape == (4,)
    assert intra_class_fid(real, ry, fake, only_real)[1].shape == (4,)


def test_diversity_classes_and_refusal_whole():
    fake, fy = torch.tensor([[0.0], [2.0]]), torch.tensor([0, 0])
    assert diversity(fake, fy)["per_class"].tolist() == [2.0]
    assert diversity(fake, fy, num_classes=3)["per_class"].shape == (3,)
    out = diversity(fake, fy, real_feats=fake, real_labels=torch.tensor([0, 2]))
    assert out["per_class"].shape == (3,)  # class 2 from the real labels
    with pytest.raises(ConfigError) as info:
        diversity(fake, fy, real_feats=fake)
    assert str(info.value) == "diversity: real_feats given without real_labels"


class BatchToyGenerator(ToyGenerator):
    """ToyGenerator that records the batch sizes it is called with."""

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self.batches: list[int] = []

    def forward(self, z, y):
        self.batches.append(z.shape[0])
        return super().forward(z, y)


def test_sampling_runs_in_the_asked_batches_under_a_named_bar(monkeypatch):
    from advaug.evaluate import gan_quality

    bars = []
    real_progress = gan_quality.progress

    def spy(it, **kw):
        bars.append(kw)
        return real_progress(it, **kw)

    monkeypatch.setattr(gan_quality, "progress", spy)
    gen = BatchToyGenerator(3)
    gan_quality.gan_test_outcomes(ToyClassifier(3), gen, num_per_class=3, batch_size=4)
    assert gen.batches == [4, 4, 4]  # 9 samples filled up to 12
    assert bars == [{"total": 3, "desc": "sampling", "unit": "batch"}]
    gen = BatchToyGenerator(2)  # a batch above sample()'s own default (1024) stays whole
    gan_quality.gan_test_outcomes(ToyClassifier(2), gen, num_per_class=1, batch_size=1100)
    assert gen.batches == [1100]


def test_gan_test_accuracy_passes_its_batch_and_seed(monkeypatch):
    from advaug.evaluate import gan_quality

    calls = []

    def outcomes(clf, gen, n, batch_size=1, seed=99):
        calls.append((n, batch_size, seed))
        return torch.tensor([0, 1]), torch.tensor([True, False])

    monkeypatch.setattr(gan_quality, "gan_test_outcomes", outcomes)
    assert gan_test_accuracy(None, ToyGenerator(2), 1)[0] == 0.5
    gan_test_accuracy(None, ToyGenerator(2), 1, 7, 5)
    assert calls == [(1, 500, 0), (1, 7, 5)]


class BatchMeans(MeanFeatures):
    """MeanFeatures that records its batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return super().forward(x)


def _spied_metrics(monkeypatch):
    """Replace the metrics generator_quality and quality_with_baseline call by recorders that
    return distinct numbers, so that the bundles' wiring can be read off."""
    from advaug.evaluate import gan_quality

    calls: dict[str, list] = {}

    def spy(name, value):
        def f(*args, **kwargs):
            calls.setdefault(name, []).append(kwargs)
            return value

        monkeypatch.setattr(gan_quality, name, f)

    spy("fid", 1.0)
    spy("precision_recall", (2.0, 3.0))
    spy("inception_score", (4.0, 5.0))
    spy("diversity", {"overall": 6.0, "ratio": 7.0, "ratio_per_class": "ratio per class"})
    spy("intra_class_fid", (8.0, "intra per class"))
    per_class = {"per_class_precision": "p", "per_class_recall": "r"}
    spy("per_class_precision_recall", {"precision": 9.0, "recall": 10.0, **per_class})
    return calls


def test_generator_quality_wiring_defaults_and_protocol_whole(monkeypatch):
    calls = _spied_metrics(monkeypatch)
    gen, net = ToyGenerator(2), BatchMeans()
    out = generator_quality(gen, torch.rand(3, 3, 4, 4), torch.tensor([0, 1, 0]), net, 4)
    assert net.batches == [3, 4]  # the reals, then one batch of fakes
    base = "4 fake vs 3 real (test split), seed 0"
    assert out == {
        "fid": 1.0, "precision": 2.0, "recall": 3.0, "is_mean": 4.0, "is_std": 5.0,
        "diversity": 6.0, "diversity_ratio": 7.0, "intra_fid": 8.0, "intra_precision": 9.0,
        "intra_recall": 10.0,
        "per_class": {"diversity_ratio": "ratio per class", "intra_fid": "intra per class",
                      "precision": "p", "recall": "r"},
        "protocol": {"num_fake": 4, "num_real": 3, "reference_split": "test",
                     "feature_net": "toy-means", "seed": 0, "k": 3, "is_splits": 10,
                     "fake_labels": "balanced", "batch_size": 500, "bn_stats": "running"},
        "protocol_line": f"FID[toy-means] {base}",
        "protocol_lines": {
            "fid": f"FID[toy-means] {base}",
            "intra_fid": f"intra-FID[toy-means] {base}, per class",
            "is": "IS[toy-means] 4 fake, 10 splits, seed 0",
            "precision_recall": f"P/R[toy-means, k=3] {base}",
            "diversity": f"diversity[toy-means] mean pairwise distance per class, fake/real, "
            f"{base}",
        },
    }  # fmt: skip
    assert calls["precision_recall"] == [{"k": 3}] and calls["inception_score"] == [{"splits": 10}]
    for name in ("diversity", "intra_class_fid"):
        assert calls[name][0]["num_classes"] == 2, name
    assert calls["per_class_precision_recall"] == [{"k": 3, "num_classes": 2}]
    net = BatchMeans()
    gen.bn_stats = None
    del gen.bn_stats
    out = generator_quality(gen, torch.rand(3, 3, 4, 4), torch.tensor([0, 1, 0]), net, 2,
                            batch_size=2, k=1, intra_class=False)  # fmt: skip
    assert net.batches == [2, 1, 2] and out["protocol"]["bn_stats"] is None
    assert "intra_fid" not in out and set(out["per_class"]) == {"diversity_ratio"}
    net = BatchMeans()  # fakes above extract_features' own default batch (500) stay whole
    generator_quality(gen, torch.rand(3, 3, 4, 4), torch.tensor([0, 1, 0]), net, 501,
                      batch_size=501)  # fmt: skip
    assert net.batches == [3, 501]
    with pytest.raises(ConfigError) as info:
        generator_quality(gen, torch.rand(3, 3, 4, 4), torch.tensor([0, 1, 0]), net, 1)
    assert str(info.value) == "generator_quality needs num_samples >= 2, got 1"


def test_real_halves_depend_on_the_seed_alone():
    y = torch.arange(40) % 4
    torch.manual_seed(1)
    a = real_halves(y)
    torch.manual_seed(2)
    assert all(torch.equal(u, v) for u, v in zip(a, real_halves(y, seed=0)))
    assert not torch.equal(a[0], real_halves(y, seed=1)[0])


def test_count_range_counts_absent_classes():
    from advaug.evaluate.gan_quality import _count_range

    assert _count_range(torch.tensor([0, 0, 1, 1]), 3) == "0–2"
    assert _count_range(torch.tensor([0, 1, 1]), 2) == "1–2"
    assert _count_range(torch.tensor([0, 1]), 2) == "1"


def test_quality_with_baseline_wiring_defaults_and_lines_whole(monkeypatch):
    from advaug.evaluate import gan_quality

    calls = _spied_metrics(monkeypatch)
    asked = []

    def quality(generator, x, y, net, n, **kw):
        asked.append((x, y, n, kw))
        return {"fid": 0.5}

    monkeypatch.setattr(gan_quality, "generator_quality", quality)
    x, y, net = torch.rand(9, 3, 2, 2), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1]), BatchMeans()
    out = quality_with_baseline(ToyGenerator(3), x, y, net)
    a, b = real_halves(y, 0)
    ((xa, ya, n, kw),) = asked
    assert torch.equal(xa, x[a]) and torch.equal(ya, y[a]) and n == 4
    feats, logits = kw.pop("real_features")
    assert torch.equal(feats, net(x[a])[0]) and torch.equal(logits, net(x[a])[1])
    assert kw == {"batch_size": 500, "seed": 0, "k": 3, "reference_split": "test half A",
                  "is_splits": 10}  # fmt: skip
    assert net.batches[0] == 9
    assert out["generator"] == {"fid": 0.5}
    assert out["real"] == {"fid": 1.0, "precision": 2.0, "recall": 3.0, "intra_fid": 8.0,
                           "diversity_ratio": 7.0}  # fmt: skip
    assert calls["precision_recall"] == [{"k": 3}]
    assert calls["intra_class_fid"] == [{"num_classes": 3}]
    assert calls["diversity"][0]["num_classes"] == 3
    assert out["counts"] == {"per_half": 4, "per_class_real_a": "0–2",
                             "per_class_real_b": "0–2", "per_class_fake": "1–2"}  # fmt: skip
    per_class = "per class 1–2 fake or 0–2 real (half B) vs 0–2 real (half A)"
    assert out["protocol_lines"] == {
        "fid": "FID[toy-means] 4 vs 4: 4 generated vs real half A; baseline: real half B vs half "
        "A (two disjoint class-stratified halves of the test split), seed 0",
        "intra_fid": f"intra-FID[toy-means] mean over 3 classes, {per_class}; baseline: half B "
        "vs half A of the test split, seed 0",
        "precision_recall": "P/R[toy-means, k=3] 4 vs 4: generated (baseline: real half B) vs "
        "real half A of the test split, seed 0",
        "diversity": "diversity[toy-means] mean pairwise distance per class, fake/real half A "
        f"(baseline: half B / half A), {per_class}, seed 0",
    }  # fmt: skip
    # the seed reaches the halves, and the features are batched as asked
    asked.clear()
    net = BatchMeans()
    quality_with_baseline(ToyGenerator(3), x, y, net, seed=1, batch_size=4, reference_split="val")
    assert torch.equal(asked[0][0], x[real_halves(y, 1)[0]]) and net.batches == [4, 4, 1]
    assert not torch.equal(real_halves(y, 1)[0], a)
    assert asked[0][3]["reference_split"] == "val half A"
    # halves of two images are enough; of one, a one-line error
    quality_with_baseline(ToyGenerator(1), x[:4], torch.zeros(4, dtype=torch.long), net)
    with pytest.raises(ConfigError) as info:
        quality_with_baseline(ToyGenerator(1), x[:3], torch.zeros(3, dtype=torch.long), net)
    assert str(info.value) == (
        "the real-vs-real baseline needs at least 2 images per half, got 1: use a larger "
        "reference split"
    )
