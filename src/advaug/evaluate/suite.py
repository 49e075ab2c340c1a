"""The evaluation protocol applied to every classifier: one dict of metrics, each with its
protocol line (split, sample count, attack settings, seed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advaug.attacks import UnrestrictedConfig, UnrestrictedResult
from advaug.config import EvalConfig, StudyConfig
from advaug.data.types import class_balanced_subset
from advaug.evaluate.accuracy import accuracy, pack_outcomes, predict
from advaug.evaluate.gan_quality import gan_test_outcomes
from advaug.evaluate.robustness import robustness
from advaug.evaluate.uae import (
    attack_protocol,
    check_out,
    run_uae,
    targeted_pairs,
    uae_measures,
)
from advaug.log import get_logger

log = get_logger(__name__)


def metric(value: float | None, protocol: str, n: int | None = None) -> dict[str, Any]:
    """One metric: its value, its protocol line and, for a rate, ``n``: the count it is a share
    of (the report gives every rate with an ``n`` its Wilson 95 % interval)."""
    if value is not None and isinstance(value, float) and math.isnan(value):
        value = None
    out: dict[str, Any] = {"value": value, "protocol": protocol}
    if n is not None:
        out["n"] = int(n)
    return out


#: The UAE measures of :func:`advaug.evaluate.uae.uae_measures` as metrics: key, protocol.
UAE_METRICS = {
    "success_correct": "the attack's success among the codes f classified correctly at z⁰ "
    "(n = those codes)",
    "success": "success over all codes, those f already misclassified at z⁰ included",
    "clean_wrong_rate": "share of codes f already misclassified at z⁰, before any update",
    "legit": "share of the successes that the independent reference classifier labels as "
    "the source class (n = successes)",
    "legit_clean": "the reference classifier's accuracy on the clean G(z⁰, s) of all codes: "
    "the baseline of uae_legit",
    "ac_agree_success": "share of the successes whose AC-head class is the source (1 by the "
    "success definition)",
    "ac_agree_clean": "share of the clean G(z⁰, s) whose AC-head class is the source",
    **{
        f"dz_{kind}_p{q}": f"{q}th percentile over successes of the {what} |z − z⁰| per code"
        for kind, what in (("rms", "RMS over coordinates of"), ("max", "max over coordinates of"))
        for q in (50, 90, 99)
    },
}


#: Offset of the GAN-sample accuracy's stream from the study's seed (its own fixed samples).
GAN_ACC_STREAM = 99


def evaluate_model(
    model: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: EvalConfig,
    *,
    dataset: str,
    gan: Any = None,
    reference: nn.Module | None = None,
    transfer: UnrestrictedResult | None = None,
    transfer_from: str = "",
    seed: int = 0,
    train_attack: UnrestrictedConfig | None = None,
    gan_batch: int | None = None,
) -> dict[str, Any]:
    """All metrics of the protocol for one model (in eval mode on its own device).

    ``train_attack``: the unrestricted technique's training attack; the UAE protocol lines
    name every setting in which the evaluation's attack differs from it.

    Returns ``metrics`` (value, protocol and, for rates, ``n``), ``per_class_top1`` and
    ``per_image``: for each rate over a fixed item list (the same test images, subset, GAN
    samples and latent codes for every model of a study), its per-item outcomes packed by
    :func:`advaug.evaluate.accuracy.pack_outcomes`, for the report's paired intervals.
    ``gan_batch`` is the batch the GAN trained with (the GAN samples are generated in shuffled
    batches of that size; default ``cfg.batch_size``).
    """
    device = next(model.parameters()).device
    model.eval()
    out: dict[str, Any] = {}
    outcomes: dict[str, torch.Tensor] = {}
    n = test_x.shape[0]
    clean = accuracy(model, test_x, test_y, cfg.batch_size)
    out["clean_top1"] = metric(clean["top1"], f"{dataset} test split, {n} images", n)
    out["clean_top5"] = metric(clean["top5"], f"{dataset} test split, {n} images", n)
    outcomes["clean_top1"], outcomes["clean_top5"] = clean["hits1"], clean["hits5"]
    rx, ry = test_x, test_y
    if cfg.robust_samples and cfg.robust_samples < n:
        sub = class_balanced_subset(test_x, test_y, cfg.robust_samples, seed=0)
        rx, ry = sub.x, sub.y
    out.update(
        robustness(
            model,
            rx,
            ry,
            fgsm_eps=cfg.fgsm_eps,
            pgd_eps=cfg.pgd_eps,
            pgd_alpha=cfg.pgd_alpha,
            pgd_steps=cfg.pgd_steps,
            pgd_restarts=cfg.pgd_restarts,
            autoattack=cfg.autoattack,
            autoattack_backend=cfg.autoattack_backend,
            batch_size=cfg.batch_size,
            device=device,
            split=f"{dataset} test (class-balanced)",
            seed=seed,
            outcomes=outcomes,
        )
    )
    if gan is not None and cfg.gan_samples_per_class:
        batch = gan_batch or cfg.batch_size
        _, ok = gan_test_outcomes(
            model, gan.generator, cfg.gan_samples_per_class, batch, seed + GAN_ACC_STREAM
        )
        outcomes["gan_acc"] = ok
        out["gan_acc"] = metric(
            ok.double().mean().item(),
            f"clean AC-GAN samples, {cfg.gan_samples_per_class} per class ({ok.shape[0]}), "
            f"generated in shuffled mixed-class batches of {batch}, fixed latents seed {seed}",
            ok.shape[0],
        )
    if gan is not None and cfg.uae_samples:
        uae, outcomes["uae_success"] = _uae_metrics(model, gan, reference, cfg, seed, train_attack)
        out.update(uae)
    if transfer is not None and len(transfer.successes()):
        ok = transfer.successes()
        acc = (predict(model, ok.images, cfg.batch_size).argmax(1) == ok.source.cpu()).double()
        out["transfer_uae_acc"] = metric(
            acc.mean().item(),
            f"accuracy (label = source) on {len(ok)} UAEs made against {transfer_from}",
            len(ok),
        )
        outcomes["transfer_uae_acc"] = acc.bool()
    return {
        "metrics": out,
        "per_class_top1": clean["per_class"],
        "per_image": {k: pack_outcomes(v) for k, v in outcomes.items()},
    }


def _uae_metrics(
    model: nn.Module,
    gan: Any,
    reference: nn.Module | None,
    cfg: EvalConfig,
    seed: int,
    train_attack: UnrestrictedConfig | None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """The UAE block: decomposed success, legitimacy with its baseline, AC agreement, latent
    distance, steps and (with ``uae_targeted_per_pair``) targeted success per pair; and the
    per-code success (the same codes for every model of a study: the paired intervals' items)."""
    attack = cfg.uae_attack()
    res = run_uae(gan.generator, gan.critic, model, cfg.uae_samples, attack, seed=seed)
    proto = attack_protocol(attack, cfg.uae_samples, seed, train_attack)
    out: dict[str, Any] = {}
    measures = uae_measures(res, gan.generator, reference, cfg.batch_size)
    for key, what in UAE_METRICS.items():
        if key in measures:
            m = measures[key]
            out[f"uae_{key}"] = metric(m["value"], f"{what}; {proto}", m["n"])
    out["uae_steps_p50"] = metric(res.steps_percentiles((50,))[50], proto, int(res.success.sum()))
    if cfg.uae_targeted_per_pair:
        tp = targeted_pairs(
            gan.generator, gan.critic, model, cfg.uae_targeted_per_pair,
            cfg.uae_attack(targeted=True), seed=seed,
        )  # fmt: skip
        t_proto = (
            f"targeted success per (source, target) pair over all {tp['pairs']} pairs, "
            f"{tp['per_pair']} codes each ({tp['n']} in all); worst pair {tp['min_pair']}, "
            f"best {tp['max_pair']}; "
            + attack_protocol(cfg.uae_attack(targeted=True), tp["n"], seed, None)
        )
        out["uae_targeted_success_mean"] = metric(tp["mean"], f"mean of the {t_proto}", tp["n"])
        # The worst and best pair rest on one pair's codes each and are picked from all the
        # pairs: an interval over all the codes would be far too narrow, and one over the pair's
        # own codes would ignore the selection. They are given without one.
        for stat in ("min", "max"):
            out[f"uae_targeted_success_{stat}"] = metric(
                tp[stat], f"{stat} of the {t_proto}; no interval: one pair's codes, selected"
            )
    return out, res.success.cpu()


#: RobustBench's CIFAR L∞ budget and test-set size.
ROBUSTBENCH_EPS, ROBUSTBENCH_TEST_IMAGES = 8 / 255, 10_000


def robustbench_comparability(cfg: StudyConfig, test_images: int) -> dict[str, Any]:
    """Whether this evaluation's AutoAttack number can stand beside RobustBench's leaderboard.

    RobustBench (Croce et al., 2021) reports, for CIFAR-10 and CIFAR-100 L∞, the robust accuracy
    under the *standard* AutoAttack of Croce & Hein's code at ε = 8/255 on all 10,000 test
    images, beside the clean accuracy on the same images. Each condition this config misses is
    named in ``reasons``; ``comparable`` is true only when there are none. The ``robustbench``
    preset sets every condition (``advaug evaluate RUN --preset robustbench data.root=...``).
    What no config can show is listed in ``assumes``: RobustBench also expects a deterministic
    model (advaug's are, in eval mode) that never saw the test images in training (advaug trains
    on the train split only).
    """
    e, d = cfg.evaluate, cfg.data
    reasons = []
    if d.name not in ("cifar10", "cifar100"):
        reasons.append(f"RobustBench has no leaderboard for {d.name} (only cifar10, cifar100)")
    if test_images != ROBUSTBENCH_TEST_IMAGES or d.test_limit:
        reasons.append(
            f"evaluated on {test_images} test images, not all {ROBUSTBENCH_TEST_IMAGES} "
            "(set data.test_limit=0)"
        )
    if e.robust_samples and e.robust_samples < test_images:
        reasons.append(
            f"attacks ran on {e.robust_samples} images, not the whole test set "
            "(set evaluate.robust_samples=0)"
        )
    if not e.autoattack:
        reasons.append("AutoAttack did not run (set evaluate.autoattack=true)")
    elif _backend_or_none(e.autoattack_backend) != "reference":
        reasons.append(
            "AutoAttack did not run through the reference code RobustBench uses "
            "(pip install 'advaug[autoattack]'; evaluate.autoattack_backend=reference)"
        )
    if abs(e.pgd_eps - ROBUSTBENCH_EPS) > 1e-9:
        reasons.append(f"ε={e.pgd_eps:.6g}, not 8/255 (set evaluate.pgd_eps to 8/255)")
    return {
        "comparable": not reasons,
        "reasons": reasons,
        "assumes": "a deterministic model that never saw the test images in training",
        "protocol": "RobustBench L∞: AutoAttack standard (reference code), ε = 8/255, all "
        "10,000 CIFAR-10/100 test images, reported beside clean accuracy on the same images",
    }


def _backend_or_none(backend: str) -> str | None:
    from advaug.attacks import MissingDependencyError
    from advaug.attacks.autoattack_reference import resolve_backend

    try:
        return resolve_backend(backend)
    except MissingDependencyError:
        return None


def format_evaluation(res: dict[str, Any]) -> str:
    lines = []
    for key, m in res["metrics"].items():
        v = m["value"]
        shown = "n/a" if v is None else (f"{v:.4f}" if "steps" not in key else f"{v:.1f}")
        lines.append(f"{key:>22}  {shown:>8}   {m['protocol']}")
    rb = res.get("robustbench")
    if rb is not None:
        if rb["comparable"]:
            lines.append(f"RobustBench: comparable to the leaderboard ({rb['protocol']})")
        else:
            why = "; ".join(rb["reasons"])
            lines.append(f"RobustBench: not comparable to the leaderboard: {why}")
    return "\n".join(lines)


def evaluate_checkpoint(
    checkpoint: str, cfg: StudyConfig, *, gan: str | None = None, out: str | None = None
) -> dict[str, Any]:
    """``advaug evaluate``: load a classifier, evaluate it on the preset's data and protocol.

    Everything that can be checked is checked before the evaluation runs: the output folder,
    the checkpoint, the GAN, and that both were made for the dataset's classes.
    """
    import json

    from advaug.data.splits import load_splits
    from advaug.loading import check_same_classes, load_classifier, load_gan
    from advaug.runtime import make_runtime
    from advaug.runtime.checkpoint import atomic_write_text

    out_dir = check_out(out, "--out") if out else None
    rt = make_runtime(cfg.runtime)
    model = load_classifier(checkpoint, rt.device)
    pair = load_gan(gan, rt.device) if gan else None
    splits = load_splits(cfg.data)
    check_same_classes(f"checkpoint {checkpoint}", model.classes or model.num_classes,
                       f"dataset {cfg.data.name}", splits.classes,
                       "evaluate it on the dataset it was trained on")  # fmt: skip
    if pair is not None:
        check_same_classes(f"the GAN {gan}", pair.classes or pair.generator.num_classes,
                           f"dataset {cfg.data.name}", splits.classes,
                           "give the GAN trained on this dataset")  # fmt: skip
    res = evaluate_model(
        model,
        splits.test.x,
        splits.test.y,
        cfg.evaluate,
        dataset=cfg.data.name,
        gan=pair,
        seed=cfg.seed,
        gan_batch=cfg.gan.batch_size,
    )
    res["checkpoint"] = str(checkpoint)
    res["robustbench"] = robustbench_comparability(cfg, len(splits.test))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "evaluation.json", json.dumps(res, indent=2))
    return res


def find_run_config(checkpoint: str | Path) -> Path | None:
    """The config that made a classifier checkpoint: its study's ``config.yaml`` (data and
    evaluation protocol) when the run is a study's, else its run's; None for a bare file."""
    from advaug.runtime.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    study = run.parent.parent
    if (study / "study.json").is_file() and (study / "config.yaml").is_file():
        return study / "config.yaml"
    return run / "config.yaml" if (run / "config.yaml").is_file() else None
