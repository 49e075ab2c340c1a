"""Unrestricted adversarial examples as a measurement: success, legitimacy, diversity, neighbours.

No peer library measures whether a UAE still shows its source class. We use automatic proxies:

- **success, decomposed** by f's verdict on the clean G(z⁰, s): the attack's own success among
  the codes f classified correctly before any update, and the share f already got wrong (its
  error on clean GAN samples, which the raw success rate blends in);
- **legitimacy**: the share of successes that an *independent* classifier (another
  architecture, trained on real data) still puts in the source class, next to its baseline, the
  same classifier's accuracy on the clean G(z⁰, s) of the same codes; and the AC head's agreement
  on both (on successes it is 1 by the success definition, unless pixel noise is on);
- **latent distance**: percentiles of the RMS and the max |z − z⁰| per success;
- **targeted success** per (source, target) pair, as Song et al. report it;
- **nearest training images** in pixel and in feature space (the seed's broken ``get_closest``):
  a UAE that is a near-copy of a training image is memorisation, not generation;
- **diversity**: mean pairwise feature distance within each class, relative to clean GAN samples
  and to real images of the same class (1.0 = as diverse as real data).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advaug.attacks import UnrestrictedAttack, UnrestrictedConfig, UnrestrictedResult
from advaug.config import unrestricted_preset
from advaug.errors import ConfigError
from advaug.evaluate.accuracy import predict, to_float
from advaug.imaging import save_grid
from advaug.log import get_logger
from advaug.runtime.checkpoint import atomic_write_text

log = get_logger(__name__)


def balanced_sources(n: int, num_classes: int, seed: int, device: torch.device) -> torch.Tensor:
    """n source labels, classes as equal as possible, in a seeded order."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    return labels[torch.randperm(n, generator=g)].to(device)


#: The attack's codes z⁰ are drawn from ``seed + ATTACK_STREAM``, apart from the stream ``seed``
#: that orders the sources, so that changing one does not shift the other.
ATTACK_STREAM = 1


def run_uae(
    generator: nn.Module,
    critic: nn.Module,
    classifier: nn.Module,
    n: int,
    attack: UnrestrictedConfig | str = "fast",
    *,
    seed: int = 0,
    **changes: Any,
) -> UnrestrictedResult:
    """Attack ``n`` fresh codes (balanced sources, seeded) against ``classifier``.

    ``attack`` is the settings, or a preset name; ``changes`` replace some of them
    (``steps=20``). A targeted attack aims at t = (s + 1) mod K.
    """
    cfg = unrestricted_preset(attack) if isinstance(attack, str) else attack
    cfg = cfg.replace(**changes)
    device = next(generator.parameters()).device
    k = generator.num_classes
    src = balanced_sources(n, k, seed, device)
    tgt = (src + 1) % k if cfg.targeted else None
    rng = torch.Generator(device=device).manual_seed(seed + ATTACK_STREAM)
    atk = UnrestrictedAttack.from_config(generator, critic, classifier, cfg, rng=rng)
    return atk(src, tgt)


def attack_protocol(
    cfg: UnrestrictedConfig, n: int, seed: int, train: UnrestrictedConfig | None = None
) -> str:
    """The protocol line of an evaluation attack: its settings, and where they differ from
    ``train`` (the attack the unrestricted technique trains with)."""
    kind = "targeted" if cfg.targeted else "untargeted"
    text = (
        f"{kind} latent attack: {cfg.optimizer} lr {cfg.lr:g}, λ1 {cfg.lambda1:g}, "
        f"λ2 {cfg.lambda2:g}, z_eps {cfg.z_eps:g} ({cfg.z_proximity}, projection "
        f"{cfg.z_project}), pixel noise {cfg.noise_eps:g}, {cfg.steps} steps"
        f"{', early stop' if cfg.early_stop else ''}; {n} balanced sources, seed {seed}; "
        "success = f wrong and AC = source"
    )
    if train is not None:
        names = ("optimizer", "lr", "lambda1", "lambda2", "z_eps", "z_project", "noise_eps",
                 "steps", "early_stop")  # fmt: skip
        diff = [
            f"{k} {getattr(train, k)} vs {getattr(cfg, k)}"
            for k in names
            if getattr(train, k) != getattr(cfg, k)
        ]
        text += (
            f"; differs from the training attack: {', '.join(diff)} (training vs evaluation)"
            if diff
            else "; the same settings as the training attack"
        )
    return text


@torch.no_grad()
def clean_images(generator: nn.Module, result: UnrestrictedResult, batch_size: int = 256):
    """The clean G(z⁰, s) of the result's codes, on the CPU (the generator in eval mode)."""
    was = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    try:
        out = []
        for i in range(0, len(result), batch_size):
            z, y = result.z0[i : i + batch_size], result.source[i : i + batch_size]
            out.append(generator(z.to(device), y.to(device)).float().cpu())
    finally:
        generator.train(was)
    return torch.cat(out)


def _rate(hits: torch.Tensor) -> tuple[float, int]:
    """(share of True, count); nan when empty."""
    n = int(hits.numel())
    return (float(hits.double().mean()) if n else math.nan), n


def uae_measures(
    result: UnrestrictedResult,
    generator: nn.Module | None = None,
    reference: nn.Module | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Every UAE measure of one attack, each as ``{"value", "n"}`` (n = the rows behind it).

    ``success`` (all codes), ``success_correct`` (codes f got right at z⁰: the attack's own
    success), ``clean_wrong_rate`` (codes f got wrong at z⁰), ``ac_agree_clean`` and
    ``ac_agree_success`` (the AC head says the source on the clean G(z⁰, s) / on the successes),
    the latent percentiles ``dz_rms_p50`` … ``dz_max_p99`` over successes, and with a
    ``reference`` (and the ``generator``): ``legit`` (on the successes) and ``legit_clean``
    (on the clean G(z⁰, s) of all codes).
    """
    ok = result.success.cpu()
    src = result.source.cpu()
    n_ok = int(ok.sum())
    dec = result.decomposed_success()
    out: dict[str, Any] = {"success": {"value": result.success_rate, "n": len(result)}}
    out["success_correct"] = {"value": dec["success_given_correct"], "n": dec["correct_at_z0"]}
    out["clean_wrong_rate"] = {"value": dec["share_wrong_at_z0"], "n": dec["n"]}
    known = bool((result.ac_pred0 >= 0).all())
    agree0 = _rate(result.ac_pred0.cpu() == src) if known else (None, 0)
    out["ac_agree_clean"] = {"value": agree0[0], "n": agree0[1]}
    agree = _rate(result.ac_pred.cpu()[ok] == src[ok])
    out["ac_agree_success"] = {"value": agree[0], "n": agree[1]}
    pct = result.latent_percentiles((50, 90, 99))
    for kind in ("rms", "max"):
        for q in (50, 90, 99):
            out[f"dz_{kind}_p{q}"] = {"value": pct[kind][q], "n": n_ok}
    if reference is not None:
        out["legit"] = {"value": legitimacy(result, reference, batch_size), "n": n_ok}
        if generator is not None:
            pred = predict(reference, clean_images(generator, result, batch_size), batch_size)
            rate, n = _rate(pred.argmax(1) == src)
            out["legit_clean"] = {"value": rate, "n": n}
    return out


def targeted_pairs(
    generator: nn.Module,
    critic: nn.Module,
    classifier: nn.Module,
    per_pair: int,
    attack: UnrestrictedConfig,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Targeted UAEs for every ordered (source, target) pair, ``per_pair`` codes each (Song et
    al.'s table): success per pair and its mean, min and max over the K·(K−1) pairs."""
    k = generator.num_classes
    device = next(generator.parameters()).device
    pairs = torch.tensor([(s, t) for s in range(k) for t in range(k) if s != t])
    src = pairs[:, 0].repeat_interleave(per_pair).to(device)
    tgt = pairs[:, 1].repeat_interleave(per_pair).to(device)
    rng = torch.Generator(device=device).manual_seed(seed + ATTACK_STREAM)
    atk = UnrestrictedAttack.from_config(
        generator, critic, classifier, attack.replace(targeted=True), rng=rng
    )
    res = atk(src, tgt)
    hits = res.success.cpu().view(len(pairs), per_pair).double().mean(1)
    matrix = torch.full((k, k), math.nan, dtype=torch.float64)
    matrix[pairs[:, 0], pairs[:, 1]] = hits
    lo, hi = int(hits.argmin()), int(hits.argmax())
    return {
        "mean": float(hits.mean()),
        "min": float(hits[lo]),
        "max": float(hits[hi]),
        "min_pair": pairs[lo].tolist(),
        "max_pair": pairs[hi].tolist(),
        "pairs": len(pairs),
        "per_pair": per_pair,
        "n": len(res),
        "matrix": [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()],
    }


def legitimacy(result: UnrestrictedResult, reference: nn.Module, batch_size: int = 256) -> float:
    """Share of successes that the independent ``reference`` classifier labels as the source."""
    ok = result.successes()
    if len(ok) == 0:
        return math.nan
    pred = predict(reference, ok.images, batch_size).argmax(1)
    return (pred == ok.source.cpu()).double().mean().item()


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = [
        model.features(to_float(x[i : i + batch_size], device)).float().cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def nearest_neighbours(
    queries: torch.Tensor,
    train_x: torch.Tensor,
    k: int = 1,
    *,
    feature_model: nn.Module | None = None,
    chunk: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and distances of the ``k`` nearest training images, by L2 in pixel space ([0,1]
    units) or, with ``feature_model``, in its penultimate-feature space."""
    if feature_model is None:
        q = to_float(queries, torch.device("cpu")).flatten(1)
        ref_batches = (
            (i, to_float(train_x[i : i + chunk], torch.device("cpu")).flatten(1))
            for i in range(0, train_x.shape[0], chunk)
        )
    else:
        q = features(feature_model, queries)
        ref_feats = features(feature_model, train_x)
        ref_batches = ((i, ref_feats[i : i + chunk]) for i in range(0, ref_feats.shape[0], chunk))
    best_d = torch.full((q.shape[0], k), math.inf)
    best_i = torch.zeros((q.shape[0], k), dtype=torch.long)
    for start, ref in ref_batches:
        d = torch.cdist(q, ref)
        d_all = torch.cat([best_d, d], 1)
        i_all = torch.cat([best_i, torch.arange(start, start + ref.shape[0]).expand_as(d)], 1)
        best_d, pos = d_all.topk(k, dim=1, largest=False)
        best_i = i_all.gather(1, pos)
    return best_i, best_d


def within_class_spread(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance within classes (averaged over classes with ≥ 2 items)."""
    vals = []
    for c in labels.unique():
        f = feats[labels == c]
        if f.shape[0] >= 2:
            d = torch.cdist(f, f)
            vals.append(d.sum() / (f.shape[0] * (f.shape[0] - 1)))
    return torch.stack(vals).mean().item() if vals else math.nan


def diversity_report(
    uae: UnrestrictedResult,
    clean_gan: torch.Tensor,
    clean_labels: torch.Tensor,
    real_x: torch.Tensor,
    real_y: torch.Tensor,
    feature_model: nn.Module,
) -> dict[str, float]:
    """Within-class spread of the successful UAEs relative to clean GAN samples and real data."""
    ok = uae.successes()
    if len(ok) < 2:
        return {"uae_spread": math.nan, "uae_vs_gan": math.nan, "uae_vs_real": math.nan}
    s_uae = within_class_spread(features(feature_model, ok.images), ok.source.cpu())
    s_gan = within_class_spread(features(feature_model, clean_gan), clean_labels.cpu())
    s_real = within_class_spread(features(feature_model, real_x), real_y.cpu())
    return {
        "uae_spread": s_uae,
        "gan_spread": s_gan,
        "real_spread": s_real,
        "uae_vs_gan": s_uae / s_gan if s_gan else math.nan,
        "uae_vs_real": s_uae / s_real if s_real else math.nan,
    }


@torch.no_grad()
def pair_grid(generator: nn.Module, result: UnrestrictedResult, path: Path, pairs: int = 16):
    """Clean G(z⁰, s) above adversarial x̂, column by column, for the first successes."""
    ok = result.successes()
    if len(ok) == 0:
        return None
    ok = ok.select(torch.arange(min(pairs, len(ok))))
    clean = clean_images(generator, ok)
    n = clean.shape[0]
    return save_grid(torch.cat([clean, ok.images.cpu()]), path, nrow=n)


def summarize(result: UnrestrictedResult, num_classes: int, classes: list[str] | None) -> dict:
    """Counts, rates, step and latent-distance percentiles and per-class success of a result."""
    pct = result.steps_percentiles((50, 90, 99))
    per = result.per_class_success(num_classes)
    dz = result.latent_percentiles((50, 90, 99))
    return {
        "n": len(result),
        "success_rate": result.success_rate,
        "successes": int(result.success.sum()),
        "decomposed": result.decomposed_success(),
        "steps_p50": pct[50],
        "steps_p90": pct[90],
        "steps_p99": pct[99],
        "latent_distance_over_successes": {
            f"{kind}_p{q}": dz[kind][q] for kind in ("rms", "max") for q in (50, 90, 99)
        },
        "per_class_success": {
            (classes[i] if classes and i < len(classes) else str(i)): None if math.isnan(v) else v
            for i, v in enumerate(per.tolist())
        },
    }


def attack_command(
    checkpoint: str,
    *,
    gan: str,
    num: int,
    steps: int,
    preset: str,
    targeted: bool,
    reference: str | None,
    seed: int,
    out: Path,
    device: str,
) -> str:
    """``advaug attack unrestricted``: generate, save (safetensors), grid, summary text.

    Every input is loaded and checked before the attack runs: the output folder, the
    classifier, the GAN, the reference classifier and the training split; the classifier, GAN
    and reference must share their classes.
    """
    from advaug.loading import check_same_classes, load_classifier, load_gan
    from advaug.runtime import resolve_device

    if num < 1 or steps < 0:
        raise ConfigError("--num must be >= 1 and --steps >= 0")
    out = check_out(out, "--out")
    dev = resolve_device(device)
    model = load_classifier(checkpoint, dev)
    pair = load_gan(gan, dev)
    classes = model.classes or model.num_classes
    check_same_classes(f"the GAN {gan}", pair.classes or pair.generator.num_classes,
                       f"the classifier {checkpoint}", classes,
                       "use a GAN trained on the same dataset")  # fmt: skip
    ref, train = None, None
    if reference:
        ref = load_classifier(reference, dev)
        check_same_classes(f"the reference {reference}", ref.classes or ref.num_classes,
                           f"the classifier {checkpoint}", classes,
                           "give a reference classifier trained on the same dataset")  # fmt: skip
        train = _run_train_split(checkpoint)
    attack = unrestricted_preset(preset, steps=steps, targeted=targeted)
    result = run_uae(pair.generator, pair.critic, model, num, attack, seed=seed)
    result.meta.update({"classifier": str(checkpoint), "gan": str(gan), "seed": seed})
    data_path = result.save(out / "uae.safetensors")
    grid = pair_grid(pair.generator, result, out / "pairs.png")
    summary = summarize(result, model.num_classes, pair.classes)
    summary["protocol"] = (
        f"preset {preset}, {attack_protocol(attack, num, seed)}"
        f"{' (t = s+1)' if targeted else ''}, against {checkpoint}"
    )
    summary["measures"] = uae_measures(result, pair.generator, ref)
    if ref is not None:
        summary["legitimacy"] = summary["measures"]["legit"]["value"]
        summary["legitimacy_protocol"] = (
            f"share of successes that {reference} labels as source; baseline legit_clean: its "
            "accuracy on the clean G(z⁰, s) of all codes"
        )
        ok = result.successes()
        if len(ok) and train is not None:
            train_x = train.x
            _, d_px = nearest_neighbours(ok.images[:256], train_x)
            _, d_ft = nearest_neighbours(ok.images[:256], train_x, feature_model=ref)
            summary["nn_pixel_l2_median"] = d_px[:, 0].median().item()
            summary["nn_feature_l2_median"] = d_ft[:, 0].median().item()
            clean = clean_images(pair.generator, result)
            summary["diversity"] = diversity_report(
                result, clean, result.source, train_x, train.y, ref
            )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=float))
    lines = [*_summary_lines(summary, num)]
    worst = sorted(((v, k) for k, v in summary["per_class_success"].items() if v is not None))[:5]
    lines.append("hardest classes: " + ", ".join(f"{k} {v:.0%}" for v, k in worst))
    lines.append(f"protocol: {summary['protocol']}")
    lines.append(f"wrote {data_path}" + (f" and {grid}" if grid else ""))
    return "\n".join(lines)


def _pct(m: dict[str, Any]) -> str:
    v = m["value"]
    return f"{'n/a' if v is None or math.isnan(v) else f'{v:.1%}'} of {m['n']}"


def _summary_lines(summary: dict[str, Any], num: int) -> list[str]:
    """The human lines of ``advaug attack unrestricted``: the decomposed success first."""
    m = summary["measures"]
    dz = summary["latent_distance_over_successes"]
    lines = [
        f"attack success (codes f classified correctly at z⁰): {_pct(m['success_correct'])}",
        f"already misclassified at z⁰: {_pct(m['clean_wrong_rate'])}; "
        f"success over all {num} codes: {summary['success_rate']:.1%}",
        f"steps to success: p50 {summary['steps_p50']:.0f}, p90 {summary['steps_p90']:.0f}, "
        f"p99 {summary['steps_p99']:.0f}",
        f"|z − z⁰| over successes: RMS p50/p90/p99 {dz['rms_p50']:.3g}/{dz['rms_p90']:.3g}/"
        f"{dz['rms_p99']:.3g}, max {dz['max_p50']:.3g}/{dz['max_p90']:.3g}/{dz['max_p99']:.3g}",
        f"AC head agrees with the source: clean {_pct(m['ac_agree_clean'])}, "
        f"successes {_pct(m['ac_agree_success'])}",
    ]
    if "legit" in m:
        lines.append(
            f"legitimacy (independent classifier keeps source): {_pct(m['legit'])} successes; "
            f"baseline on the clean G(z⁰, s): {_pct(m['legit_clean'])}"
        )
    return lines


def check_out(out: str | Path, flag: str) -> Path:
    """Refuse, before any work, an output folder that could not be written: empty, a file, or
    under a file or a folder without write permission. Nothing is created here."""
    path = Path(out)
    if not str(out).strip():
        raise ConfigError(f"{flag} is empty; give a folder to write into")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; give a folder to write into")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {flag} folder {path}: {parent} is a file; choose another")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {flag} folder {path}: {parent} is not writable")
    return path


def _run_train_split(checkpoint: str):
    """The training split of the run that made ``checkpoint`` (from its config.yaml)."""
    from advaug.config import DataConfig, from_dict, read_config_file
    from advaug.data.splits import load_splits
    from advaug.runtime.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    for folder in (ckpt.parent.parent, ckpt.parent):
        cfg = folder / "config.yaml"
        if cfg.is_file():
            data = read_config_file(cfg)[0].get("data", {})
            return load_splits(from_dict(DataConfig, data)).train
    return None
