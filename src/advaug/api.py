"""advaug as a library: the small surface a notebook or a script needs.

Everything here is re-exported by the package (``advaug.make_config``, ``advaug.train_classifier``,
...), imported on first use so that ``import advaug`` stays fast. Attacks live in
:mod:`advaug.attacks` (``advaug.attacks.PGD``, ``advaug.attacks.UnrestrictedAttack``, ...).

- ``make_config``: a preset with overrides → a validated :class:`~advaug.config.StudyConfig`
- ``run_study``: the whole comparison (GAN, classifiers, evaluation, report), resumable
- ``train_classifier``: one classifier with one technique, in a run folder, resumable
- ``train_gan``: the AC-GAN of a config, in a run folder, resumable
- ``load_classifier``: a run folder, checkpoint or exported folder → ``nn.Module`` (eval mode)
- ``load_gan``: a GAN run → :class:`~advaug.loading.GANPair` (generator, critic)
- ``evaluate_classifier``: the config's evaluation protocol on one model → metrics with protocols
- ``export``: a classifier run → ``model.safetensors`` + ``config.json`` for other tools

Images are float NCHW tensors in [0, 1] everywhere; classifiers normalise inside.

Examples::

    >>> import tempfile, torch
    >>> import advaug
    >>> cfg = advaug.make_config("smoke", classifier={"epochs": 1})
    >>> out = tempfile.mkdtemp()
    >>> result = advaug.train_classifier(cfg, f"{out}/fgsm", technique="fgsm")
    >>> model = advaug.load_classifier(f"{out}/fgsm")
    >>> atk = advaug.attacks.PGD(model, eps=8 / 255, steps=5)
    >>> x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    >>> bool((atk(x, y) - x).abs().max() <= 8 / 255 + 1e-6)
    True
    >>> metrics = advaug.evaluate_classifier(model, cfg)["metrics"]
    >>> sorted(metrics)[:3]
    ['clean_top1', 'clean_top5', 'fgsm@8/255']
    >>> metrics["clean_top1"]["protocol"]
    'digits test split, 100 images'
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from advaug.config import StudyConfig, build_config, from_dict, to_dict
from advaug.loading import GANPair, export_classifier, load_classifier, load_gan

if TYPE_CHECKING:
    from advaug.report import Report

__all__ = [
    "evaluate_classifier",
    "export",
    "load_classifier",
    "load_gan",
    "make_config",
    "run_study",
    "train_classifier",
    "train_gan",
]


def make_config(preset: str | None = "demo", *overrides: str, **sections: Any) -> StudyConfig:
    """A validated config: preset ``preset`` (a name from ``advaug presets`` or a YAML path;
    ``None`` for the defaults), then ``key=value`` strings, then keyword sections merged into it.

    A keyword is a top-level field of :class:`~advaug.config.StudyConfig`; a section's value is a
    dict (merged key by key) or a dataclass of that section. Errors name the key.

    Examples::

        >>> cfg = make_config("smoke", "classifier.optim.lr=0.01", classifier={"epochs": 3})
        >>> cfg.classifier.epochs, cfg.classifier.optim.lr, cfg.classifier.batch_size
        (3, 0.01, 32)
        >>> make_config("smoke", seeds=[0, 1, 2]).seeds
        [0, 1, 2]
        >>> make_config("smoke", classifier={"epochs": 0})
        Traceback (most recent call last):
        ...
        advaug.errors.ConfigError: invalid config value classifier.epochs: must be >= 1
    """
    plain = {k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in sections.items()}
    return build_config(preset, list(overrides), plain)


def _config(cfg: StudyConfig | str) -> StudyConfig:
    return make_config(cfg) if isinstance(cfg, str) else cfg


def run_study(cfg: StudyConfig | str, out: str | Path) -> Report:
    """Run (or resume) every stage of ``cfg`` in folder ``out`` and write the report.

    Returns the :class:`~advaug.report.Report`: ``index_html``, ``results_md`` and
    ``table_text``. Finished stages with the same config are reused; see :mod:`advaug.study`.

    Examples::

        >>> import tempfile
        >>> cfg = make_config("smoke", techniques=["none", "fgsm"], gan={"iters": 2},
        ...                   classifier={"epochs": 1}, evaluate={"uae_samples": 0})
        >>> report = run_study(cfg, tempfile.mkdtemp())
        >>> report.index_html.name, "fgsm" in report.table_text
        ('index.html', True)
    """
    from advaug.study import run_study as _run_study

    return _run_study(_config(cfg), out)


def train_classifier(
    cfg: StudyConfig | str,
    out: str | Path,
    *,
    technique: str | None = None,
    seed: int | None = None,
    gan: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or resume) one classifier of ``cfg`` in run folder ``out``; returns its result.

    ``technique`` overrides ``cfg.classifier.augment.technique`` (none, fgsm, gan,
    unrestricted); ``seed`` defaults to the config's first seed; ``gan`` is the GAN run the
    gan and unrestricted techniques sample from. The run folder holds ``config.yaml``,
    ``metrics.jsonl``, checkpoints, ``final.pt`` and ``result.json``.

    Examples::

        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> result = train_classifier("smoke", f"{out}/none", technique="none", seed=3)
        >>> result["technique"], result["seed"], 0 <= result["test_top1"] <= 1
        ('none', 3, True)
        >>> again = train_classifier("smoke", f"{out}/none", technique="none", seed=3)  # finished
        >>> again["test_top1"] == result["test_top1"]
        True
    """
    from advaug.train.classifier import ClassifierJob
    from advaug.train.classifier import train_classifier as _train

    cfg = _config(cfg)
    if technique is not None:
        d = to_dict(cfg)
        d["classifier"]["augment"]["technique"] = technique
        cfg = from_dict(StudyConfig, d)
    job = ClassifierJob(
        data=cfg.data,
        runtime=cfg.runtime,
        classifier=cfg.classifier,
        seed=cfg.seeds[0] if seed is None else seed,
        gan=None if gan is None else str(gan),
    )
    return _train(job, out)


def train_gan(cfg: StudyConfig | str, out: str | Path) -> dict[str, Any]:
    """Train (or resume) the AC-GAN of ``cfg`` in run folder ``out``; returns its result.

    Load the trained pair with :func:`load_gan`.

    Examples::

        >>> import tempfile, torch
        >>> out = tempfile.mkdtemp()
        >>> result = train_gan(make_config("smoke", gan={"iters": 2}), f"{out}/gan")
        >>> pair = load_gan(f"{out}/gan")
        >>> y = torch.tensor([0, 1, 2])
        >>> pair.generator(torch.randn(3, pair.generator.z_dim), y).shape
        torch.Size([3, 3, 32, 32])
    """
    from advaug.train.gan import GANJob
    from advaug.train.gan import train_gan as _train

    cfg = _config(cfg)
    job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
    return _train(job, out, collapse_threshold=cfg.evaluate.collapse_threshold)


def evaluate_classifier(
    model: nn.Module | str | Path,
    cfg: StudyConfig | str = "demo",
    *,
    gan: GANPair | str | Path | None = None,
    reference: nn.Module | str | Path | None = None,
) -> dict[str, Any]:
    """The evaluation protocol of ``cfg`` (``cfg.evaluate``) on ``model``, on the test split of
    ``cfg.data``.

    ``model`` is a classifier module or anything :func:`load_classifier` reads. With ``gan``
    the result adds GAN-sample accuracy and unrestricted-attack success; with ``reference`` (an
    independent classifier) the legitimacy of those examples. Returns ``{"metrics": {name:
    {"value", "protocol"}}, "per_class_top1": [...], "robustbench": {...}}``.

    Examples::

        >>> from advaug.models import build_model
        >>> untrained = build_model("tiny-cnn", 10, width=4)
        >>> res = evaluate_classifier(untrained, "smoke")
        >>> res["metrics"]["pgd3@8/255"]["protocol"].startswith("PGD-3")
        True
        >>> res["robustbench"]["comparable"], res["robustbench"]["reasons"][0]
        (False, 'RobustBench has no leaderboard for digits (only cifar10, cifar100)')
    """
    from advaug.data.splits import load_splits
    from advaug.evaluate.suite import evaluate_model, robustbench_comparability
    from advaug.runtime import make_runtime

    cfg = _config(cfg)
    if not isinstance(model, nn.Module):
        model = load_classifier(model, make_runtime(cfg.runtime).device)
    device = next(model.parameters()).device
    if gan is not None and not isinstance(gan, GANPair):
        gan = load_gan(gan, device)
    if reference is not None and not isinstance(reference, nn.Module):
        reference = load_classifier(reference, device)
    splits = load_splits(cfg.data, seed=cfg.seed)
    res = evaluate_model(
        model,
        splits.test.x,
        splits.test.y,
        cfg.evaluate,
        dataset=cfg.data.name,
        gan=gan,
        reference=reference,
        seed=cfg.seed,
    )
    res["robustbench"] = robustbench_comparability(cfg, len(splits.test))
    return res


def export(run: str | Path, out: str | Path, format: str = "safetensors") -> Path:
    """Write the classifier of ``run`` to folder ``out`` as ``model.safetensors`` +
    ``config.json``; :func:`load_classifier` reads the folder back (see
    :func:`advaug.loading.export_classifier`).

    Examples::

        >>> import json, tempfile
        >>> out = tempfile.mkdtemp()
        >>> _ = train_classifier(make_config("smoke", classifier={"epochs": 1}), f"{out}/run")
        >>> folder = export(f"{out}/run", f"{out}/exported")
        >>> json.loads((folder / "config.json").read_text())["input"]["range"]
        [0.0, 1.0]
        >>> load_classifier(folder).num_classes
        10
    """
    return export_classifier(run, out, format)
