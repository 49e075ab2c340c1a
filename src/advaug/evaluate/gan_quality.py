"""Generator-quality metrics: FID, intra-class FID, IS, precision/recall, diversity, GAN-test.

Every number depends on its protocol (how many samples, which real split, which feature network,
which seed), so :func:`generator_quality` returns the numbers together with a protocol dict and a
one-line protocol string in StudioGAN's spirit, e.g.
``FID[classifier-features:densenet-bc-40] 5000 fake vs 5000 real (test split), seed 0``.

Feature networks (images in [0, 1] in, ``(features [N, D], logits [N, K])`` out):

- :class:`ClassifierFeatures` wraps any advaug classifier with ``.features(x)`` (penultimate
  features). Its "classifier-feature FID" needs nothing from the network, but is only comparable
  between runs that use the same classifier checkpoint.
- :class:`InceptionFeatures` is the standard FID Inception-v3 (torch-fidelity's
  ``FeatureExtractorInceptionV3``, 2048-d pool features and the 1008-way unbiased logits used for
  IS) loaded from a local weights file. torch-fidelity is an optional dependency imported lazily.

The Fréchet distance is computed here in float64 on precomputed features, so that FID and the 100
per-class FIDs share one formula; the tests check it against scipy's ``sqrtm`` and against
torchmetrics' ``FrechetInceptionDistance``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advaug.errors import AdvaugError, ConfigError, DataError, NumericalError
from advaug.log import get_logger, progress
from advaug.models.gan import Generator, sample

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "ClassifierFeatures",
    "FeatureNet",
    "InceptionFeatures",
    "ac_accuracy",
    "diversity",
    "extract_features",
    "feature_stats",
    "fid",
    "frechet_distance",
    "gan_test_accuracy",
    "gan_test_outcomes",
    "generator_quality",
    "inception_score",
    "intra_class_fid",
    "per_class_precision_recall",
    "precision_recall",
    "quality_with_baseline",
    "real_halves",
]

log = get_logger(__name__)

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
)


# ----------------------------------------------------------------------------------------------
# feature networks


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


class FeatureNet(nn.Module):
    """A feature network: ``forward(x in [0, 1]) -> (features [N, D], logits [N, K])``."""

    name: str = "features"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class ClassifierFeatures(FeatureNet):
    """Penultimate features (``classifier.features(x)``) and logits (``classifier(x)``).

    ``name`` defaults to ``classifier-features:<arch_name>`` with the classifier's ``arch_name``
    (or its class name).
    """

    def __init__(self, classifier: nn.Module, name: str | None = None) -> None:
        super().__init__()
        if not callable(getattr(classifier, "features", None)):
            raise ConfigError(
                f"{type(classifier).__name__} has no .features(x) method: use a classifier that "
                "exposes its penultimate features"
            )
        self.classifier = classifier
        arch = getattr(classifier, "arch_name", None) or type(classifier).__name__.lower()
        self.name = name or f"classifier-features:{arch}"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.classifier.features(x).flatten(1), self.classifier(x)


class InceptionFeatures(FeatureNet):
    """The standard FID Inception-v3 through torch-fidelity, from a local weights file.

    Images in [0, 1] are quantised to uint8 by rounding (``round(255·x)``, which maps real
    CIFAR images, stored as k/255, back to exactly k) before the extractor, which resizes to
    299×299 itself. One-channel images (MNIST, Fashion-MNIST) are repeated to three grey
    channels, as the standard FID code does for greyscale images. Pass ``extractor`` to use
    another module with the same contract (uint8 NCHW in, ``(features, logits)`` out), e.g. in
    tests; the weights file is then not needed.
    """

    name = "inception-v3-compat:torch-fidelity"

    def __init__(
        self, weights_path: str | Path | None = None, *, extractor: nn.Module | None = None
    ) -> None:
        super().__init__()
        if extractor is None:
            extractor = _load_torch_fidelity_inception(weights_path)
        self.extractor = extractor
        self.eval()

    def train(self, mode: bool = True) -> InceptionFeatures:
        """The Inception network always stays in eval mode (fixed BN statistics)."""
        super().train(mode)
        self.extractor.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u8 = (x.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        feats, logits = self.extractor(u8)
        return feats.float(), logits.float()


def _load_torch_fidelity_inception(weights_path: str | Path | None) -> nn.Module:
    """torch-fidelity's FID Inception with local weights, or a one-line error naming the fix."""
    if weights_path is None:
        raise ConfigError(
            f"InceptionFeatures needs weights_path: download {INCEPTION_WEIGHTS_URL} and pass "
            "its local path"
        )
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise DataError(
            f"FID Inception weights not found at {path}: download {INCEPTION_WEIGHTS_URL} "
            f"and place it at that path (torch-fidelity's pt_inception-2015-12-05 weights)"
        )
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:
        raise AdvaugError(
            "Inception FID needs torch-fidelity, which is not importable here "
            f"({type(exc).__name__}): pip install torch-fidelity (it needs torchvision matching "
            "your torch)"
        ) from exc
    return FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
    )


@torch.no_grad()
def extract_features(
    net: nn.Module, images: Tensor, batch_size: int = 500
) -> tuple[Tensor, Tensor]:
    """Run a feature net over images in [0, 1] in eval mode, batched; returns (feats, logits)
    as float32 on the net's device. The net's mode is restored."""
    device = _device_of(net)
    feats, logits = [], []
    was_training = net.training
    net.eval()
    try:
        for i in range(0, images.shape[0], batch_size):
            f, lg = net(images[i : i + batch_size].to(device))
            feats.append(f.float())
            logits.append(lg.float())
    finally:
        net.train(was_training)
    return torch.cat(feats), torch.cat(logits)


# ----------------------------------------------------------------------------------------------
# Fréchet distance and Inception score


def feature_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D], in float64."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ConfigError(
            f"feature statistics need a [N, D] tensor with N >= 2, got {tuple(feats.shape)}"
        )
    f = feats.double()
    if not torch.isfinite(f).all():
        raise NumericalError("features contain NaN or inf: check the generator and feature net")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: Tensor) -> Tensor:
    evals, evecs = torch.linalg.eigh(s)
    return (evecs * evals.clamp(min=0).sqrt()) @ evecs.T


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """‖μ1 - μ2‖² + tr(Σ1) + tr(Σ2) - 2·tr((Σ1 Σ2)^½), in float64.

    tr((Σ1 Σ2)^½) is computed as the trace of the square root of the symmetric PSD matrix
    Σ1^½ Σ2 Σ1^½ (same eigenvalues), which avoids complex round-off from a non-symmetric sqrtm.
    """
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, s1, s2))
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    m = (m + m.T) * 0.5
    tr_covmean = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum()
    d = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2.0 * tr_covmean
    value = float(d)
    if not math.isfinite(value):
        raise NumericalError("Fréchet distance is not finite: check the feature statistics")
    return max(value, 0.0)


def fid(real_feats: Tensor, fake_feats: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D]."""
    return frechet_distance(*feature_stats(real_feats), *feature_stats(fake_feats))


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) per split; returns (mean, population std) over splits."""
    if splits < 1 or logits.shape[0] < splits:
        raise ConfigError(
            f"inception_score needs 1 <= splits <= N, got splits={splits}, N={logits.shape[0]}"
        )
    logp = F.log_softmax(logits.double(), dim=1)
    scores = []
    for part in torch.tensor_split(logp, splits):
        log_py = torch.logsumexp(part, dim=0) - math.log(part.shape[0])
        kl = (part.exp() * (part - log_py)).sum(1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False))


# ----------------------------------------------------------------------------------------------
# precision / recall (Kynkäänniemi et al. 2019)


def _knn_radii(feats: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each point to its k-th nearest other point of the same set."""
    if feats.shape[0] <= k:
        raise ConfigError(f"k-NN radii need more than k={k} points, got {feats.shape[0]}")
    out = []
    for i in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[i : i + chunk], feats)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0 is the point itself
    return torch.cat(out)


def _coverage(query: Tensor, ref: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """Fraction of query points inside at least one ball (ref_i, radii_i)."""
    inside = []
    for i in range(0, query.shape[0], chunk):
        d = torch.cdist(query[i : i + chunk], ref)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).float().mean()


def precision_recall(
    real_feats: Tensor, fake_feats: Tensor, k: int = 3, chunk: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall: k-NN balls around each real (fake) point form the manifold.

    Precision = share of fake points inside the real manifold; recall = share of real points
    inside the fake manifold. Distances in float64 on the features' device, so that TF32
    matmuls on a GPU cannot move a point across a ball's edge.
    """
    real = real_feats.double()
    fake = fake_feats.double().to(real.device)
    r_real = _knn_radii(real, k, chunk)
    r_fake = _knn_radii(fake, k, chunk)
    precision = _coverage(fake, real, r_real, chunk)
    recall = _coverage(real, fake, r_fake, chunk)
    return float(precision), float(recall)


def _classes(num_classes: int | None, *labels: Tensor) -> int:
    if num_classes is not None:
        return num_classes
    return int(max(int(lab.max()) for lab in labels if lab.numel())) + 1


def per_class_precision_recall(
    real_feats: Tensor,
    real_labels: Tensor,
    fake_feats: Tensor,
    fake_labels: Tensor,
    k: int = 3,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Precision/recall within each class; classes with <= k samples on either side are NaN.

    Returns ``precision`` and ``recall`` (means over the classes that have a value) and the
    per-class tensors ``per_class_precision`` and ``per_class_recall`` [K].
    """
    K = _classes(num_classes, real_labels, fake_labels)
    real_labels, fake_labels = real_labels.cpu(), fake_labels.cpu()
    prec = torch.full((K,), float("nan"), dtype=torch.float64)
    rec = torch.full((K,), float("nan"), dtype=torch.float64)
    for c in range(K):
        r = real_feats[(real_labels == c).to(real_feats.device)]
        f = fake_feats[(fake_labels == c).to(fake_feats.device)]
        if r.shape[0] > k and f.shape[0] > k:
            prec[c], rec[c] = precision_recall(r, f, k=k)
    if torch.isnan(prec).all():
        log.warning("per-class precision/recall: no class has more than k=%d samples", k)
    return {
        "precision": float(prec.nanmean()),
        "recall": float(rec.nanmean()),
        "per_class_precision": prec,
        "per_class_recall": rec,
    }


def intra_class_fid(
    real_feats: Tensor,
    real_labels: Tensor,
    fake_feats: Tensor,
    fake_labels: Tensor,
    num_classes: int | None = None,
) -> tuple[float, Tensor]:
    """Mean over classes of the FID between the real and fake features of that class.

    Returns (mean over classes with >= 2 samples on both sides, per-class tensor [K] with NaN
    for the others).
    """
    K = _classes(num_classes, real_labels, fake_labels)
    real_labels, fake_labels = real_labels.cpu(), fake_labels.cpu()
    per = torch.full((K,), float("nan"), dtype=torch.float64)
    for c in range(K):
        r = real_feats[(real_labels == c).to(real_feats.device)]
        f = fake_feats[(fake_labels == c).to(fake_feats.device)]
        if r.shape[0] >= 2 and f.shape[0] >= 2:
            per[c] = fid(r, f)
    return float(per.nanmean()), per


# ----------------------------------------------------------------------------------------------
# diversity


def _mean_pairwise(feats: Tensor, labels: Tensor, K: int) -> Tensor:
    out = torch.full((K,), float("nan"), dtype=torch.float64)
    labels = labels.cpu()
    for c in range(K):
        f = feats[(labels == c).to(feats.device)].double()
        if f.shape[0] >= 2:
            out[c] = torch.pdist(f).mean()
    return out


def diversity(
    feats: Tensor,
    labels: Tensor,
    *,
    real_feats: Tensor | None = None,
    real_labels: Tensor | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Mean pairwise feature distance within each class (a mode-collapse score).

    ``per_class`` [K] and ``overall`` (mean over classes) for ``feats``. With real features, also
    ``real_per_class``, ``ratio_per_class`` = fake / real per class and ``ratio`` = the mean of the
    per-class ratios: 1 means as diverse as the real class, near 0 means a collapsed class.
    Classes with fewer than 2 samples are NaN and left out of the means.
    """
    extra = (real_labels,) if real_labels is not None else ()
    K = _classes(num_classes, labels, *extra)
    per = _mean_pairwise(feats, labels, K)
    out: dict[str, Any] = {"per_class": per, "overall": float(per.nanmean())}
    if real_feats is not None:
        if real_labels is None:
            raise ConfigError("diversity: real_feats given without real_labels")
        real_per = _mean_pairwise(real_feats, real_labels, K)
        ratio = per / real_per
        out.update(real_per_class=real_per, ratio_per_class=ratio, ratio=float(ratio.nanmean()))
    return out


# ----------------------------------------------------------------------------------------------
# classifier-based scores


def _balanced_labels(n: int, num_classes: int, rng: torch.Generator) -> Tensor:
    """n labels, as equal per class as possible, in a random order (mixed-class batches)."""
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=rng)]


def _generate(
    generator: Generator,
    labels: Tensor,
    rng: torch.Generator,
    batch_size: int,
    consume: Callable[[Tensor, Tensor], None],
) -> None:
    """Generate in batches (z from rng) and hand each (images, labels) batch to ``consume``."""
    starts = range(0, labels.shape[0], batch_size)
    for i in progress(starts, total=len(starts), desc="sampling", unit="batch"):
        y = labels[i : i + batch_size]
        consume(sample(generator, y, batch_size=batch_size, rng=rng), y)


@torch.no_grad()
def gan_test_outcomes(
    classifier: nn.Module,
    generator: Generator,
    num_per_class: int,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Per sample: the label and whether ``classifier`` gets it right, for ``num_per_class``
    samples of every class (z and label order from ``seed``: the same samples for every
    classifier).

    Labels are shuffled so that every generator batch mixes classes, and every batch holds
    ``batch_size`` samples (the last one is filled up with extra random labels that are then
    dropped): with ``bn_stats="batch"`` the images depend on the batch, so ``batch_size`` should
    be the batch the GAN trained with. Returns (labels [N], correct [N] bool), on the CPU.
    """
    K = generator.num_classes
    rng = torch.Generator().manual_seed(seed)
    n = num_per_class * K
    labels = _balanced_labels(n, K, rng)
    fill = (-n) % batch_size
    padded = torch.cat([labels, torch.randint(0, K, (fill,), generator=rng)])
    device = _device_of(classifier)
    correct: list[Tensor] = []
    was_training = classifier.training
    classifier.eval()

    def consume(x: Tensor, y: Tensor) -> None:
        correct.append(classifier(x.to(device)).argmax(1).cpu() == y)

    try:
        _generate(generator, padded, rng, batch_size, consume)
    finally:
        classifier.train(was_training)
    return labels, torch.cat(correct)[:n]


def gan_test_accuracy(
    classifier: nn.Module,
    generator: Generator,
    num_per_class: int,
    batch_size: int = 500,
    seed: int = 0,
) -> tuple[float, Tensor]:
    """Top-1 of a (real-data) classifier on ``num_per_class`` samples of every class.

    The seed reported 89 % for this "GAN-test" accuracy. The samples are those of
    :func:`gan_test_outcomes` (shuffled labels, full batches). Returns (overall, per-class [K]
    float64).
    """
    K = generator.num_classes
    labels, ok = gan_test_outcomes(classifier, generator, num_per_class, batch_size, seed)
    per_class = torch.zeros(K, dtype=torch.float64).index_add_(0, labels, ok.double())
    per_class /= num_per_class
    return float(per_class.mean()), per_class


@torch.no_grad()
def ac_accuracy(critic: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Top-1 of the critic's AC head on real images (the seed's "Classifier True Accuracy")."""
    device = _device_of(critic)
    correct = 0
    was_training = critic.training
    critic.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            _, logits = critic(x[i : i + batch_size].to(device))
            correct += int((logits.argmax(1).cpu() == y[i : i + batch_size].cpu()).sum())
    finally:
        critic.train(was_training)
    return correct / max(x.shape[0], 1)


# ----------------------------------------------------------------------------------------------
# the bundle


def generator_quality(
    generator: Generator,
    real_x: Tensor,
    real_y: Tensor,
    feature_net: FeatureNet,
    num_samples: int,
    *,
    batch_size: int = 500,
    seed: int = 0,
    k: int = 3,
    reference_split: str = "test",
    is_splits: int = 10,
    intra_class: bool = True,
    real_features: tuple[Tensor, Tensor | None] | None = None,
) -> dict[str, Any]:
    """FID, intra-class FID, IS, precision/recall (overall and intra-class) and diversity.

    ``num_samples`` fakes with balanced, shuffled labels (z and label order from ``seed``) are
    compared with all of ``real_x`` (images in [0, 1]) from ``reference_split``. Pass
    ``real_features=(feats, logits)`` from :func:`extract_features` to reuse the real side.
    Returns a flat dict of numbers plus ``protocol`` (dict), ``protocol_line`` (str) and
    per-class tensors under ``per_class``.
    """
    K = generator.num_classes
    if num_samples < 2:
        raise ConfigError(f"generator_quality needs num_samples >= 2, got {num_samples}")
    if real_features is None:
        real_feats, _ = extract_features(feature_net, real_x, batch_size)
    else:
        real_feats = real_features[0]
    real_y = real_y.cpu().long()
    rng = torch.Generator().manual_seed(seed)
    fake_y = _balanced_labels(num_samples, K, rng)
    feats: list[Tensor] = []
    logits: list[Tensor] = []

    def consume(x: Tensor, _y: Tensor) -> None:
        f, lg = extract_features(feature_net, x, batch_size)
        feats.append(f)
        logits.append(lg)

    _generate(generator, fake_y, rng, batch_size, consume)
    fake_feats = torch.cat(feats).to(real_feats.device)
    fake_logits = torch.cat(logits)

    protocol = {
        "num_fake": num_samples,
        "num_real": int(real_x.shape[0]),
        "reference_split": reference_split,
        "feature_net": feature_net.name,
        "seed": seed,
        "k": k,
        "is_splits": is_splits,
        "fake_labels": "balanced",
        "batch_size": batch_size,
        "bn_stats": getattr(generator, "bn_stats", None),
    }
    base = (
        f"{num_samples} fake vs {protocol['num_real']} real ({reference_split} split), seed {seed}"
    )
    result: dict[str, Any] = {"fid": fid(real_feats, fake_feats)}
    result["precision"], result["recall"] = precision_recall(real_feats, fake_feats, k=k)
    result["is_mean"], result["is_std"] = inception_score(fake_logits, splits=is_splits)
    div = diversity(fake_feats, fake_y, real_feats=real_feats, real_labels=real_y, num_classes=K)
    result["diversity"] = div["overall"]
    result["diversity_ratio"] = div["ratio"]
    per_class: dict[str, Tensor] = {"diversity_ratio": div["ratio_per_class"]}
    if intra_class:
        result["intra_fid"], per_class["intra_fid"] = intra_class_fid(
            real_feats, real_y, fake_feats, fake_y, num_classes=K
        )
        pr = per_class_precision_recall(real_feats, real_y, fake_feats, fake_y, k=k, num_classes=K)
        result["intra_precision"], result["intra_recall"] = pr["precision"], pr["recall"]
        per_class["precision"], per_class["recall"] = (
            pr["per_class_precision"],
            pr["per_class_recall"],
        )
    name = feature_net.name
    result["protocol"] = protocol
    result["protocol_line"] = f"FID[{name}] {base}"
    result["protocol_lines"] = {
        "fid": f"FID[{name}] {base}",
        "intra_fid": f"intra-FID[{name}] {base}, per class",
        "is": f"IS[{name}] {num_samples} fake, {is_splits} splits, seed {seed}",
        "precision_recall": f"P/R[{name}, k={k}] {base}",
        "diversity": f"diversity[{name}] mean pairwise distance per class, fake/real, {base}",
    }
    result["per_class"] = per_class
    return result


# ----------------------------------------------------------------------------------------------
# scales: the same numbers for real data against real data


def real_halves(labels: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two disjoint, class-stratified halves of the same size: ``floor(n_c / 2)`` indices of
    every class c in each (an odd image out is left out), shuffled by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    a, b = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero()[:, 0]
        idx = idx[torch.randperm(idx.shape[0], generator=g)]
        half = idx.shape[0] // 2
        a.append(idx[:half])
        b.append(idx[half : 2 * half])
    return torch.cat(a).sort().values, torch.cat(b).sort().values


def _count_range(labels: Tensor, K: int) -> str:
    counts = torch.bincount(labels.cpu(), minlength=K)
    lo, hi = int(counts.min()), int(counts.max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def quality_with_baseline(
    generator: Generator,
    real_x: Tensor,
    real_y: Tensor,
    feature_net: FeatureNet,
    *,
    batch_size: int = 500,
    seed: int = 0,
    k: int = 3,
    reference_split: str = "test",
    is_splits: int = 10,
) -> dict[str, Any]:
    """Every FID-type number twice, at the same sample counts: generated against real, and real
    against real (the scale: what a perfect generator would score).

    The real images are cut into two disjoint class-stratified halves A and B of the same size
    (:func:`real_halves`). ``generator`` gives ``len(A)`` samples with balanced labels, compared
    with A (:func:`generator_quality`); B is compared with A by the same functions. FID and
    intra-class FID are biased by the sample count, so both sides use the same counts, and the
    per-class counts are in the protocol lines. Returns ``generator`` (the generator_quality
    dict), ``real`` (fid, intra_fid, precision, recall, diversity_ratio of B vs A),
    ``counts`` and ``protocol_lines``.
    """
    K = generator.num_classes
    real_y = real_y.cpu().long()
    feats, logits = extract_features(feature_net, real_x, batch_size)
    a, b = real_halves(real_y, seed)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ConfigError(
            f"the real-vs-real baseline needs at least 2 images per half, got {a.shape[0]}: "
            "use a larger reference split"
        )
    n = int(a.shape[0])
    q = generator_quality(
        generator, real_x[a], real_y[a], feature_net, n, batch_size=batch_size, seed=seed, k=k,
        reference_split=f"{reference_split} half A", is_splits=is_splits,
        real_features=(feats[a.to(feats.device)], logits[a.to(logits.device)]),
    )  # fmt: skip
    fa, fb = feats[a.to(feats.device)], feats[b.to(feats.device)]
    ya, yb = real_y[a], real_y[b]
    real: dict[str, Any] = {"fid": fid(fa, fb)}
    real["precision"], real["recall"] = precision_recall(fa, fb, k=k)
    real["intra_fid"], _ = intra_class_fid(fa, ya, fb, yb, num_classes=K)
    div = diversity(fb, yb, real_feats=fa, real_labels=ya, num_classes=K)
    real["diversity_ratio"] = div["ratio"]
    fake_y = _balanced_labels(n, K, torch.Generator().manual_seed(seed))
    counts = {
        "per_half": n,
        "per_class_real_a": _count_range(ya, K),
        "per_class_real_b": _count_range(yb, K),
        "per_class_fake": _count_range(fake_y, K),
    }
    name = feature_net.name
    split = f"{reference_split} split"
    side = f"{n} vs {n}"
    per_class = (
        f"per class {counts['per_class_fake']} fake or {counts['per_class_real_b']} real (half B) "
        f"vs {counts['per_class_real_a']} real (half A)"
    )
    lines = {
        "fid": f"FID[{name}] {side}: {n} generated vs real half A; baseline: real half B vs "
        f"half A (two disjoint class-stratified halves of the {split}), seed {seed}",
        "intra_fid": f"intra-FID[{name}] mean over {K} classes, {per_class}; baseline: half B "
        f"vs half A of the {split}, seed {seed}",
        "precision_recall": f"P/R[{name}, k={k}] {side}: generated (baseline: real half B) vs "
        f"real half A of the {split}, seed {seed}",
        "diversity": f"diversity[{name}] mean pairwise distance per class, fake/real half A "
        f"(baseline: half B / half A), {per_class}, seed {seed}",
    }
    return {"generator": q, "real": real, "counts": counts, "protocol_lines": lines}
