"""The cost of one classifier training epoch under each augmentation technique, as ratios.

One run, one model, one data set: the ``demo`` preset (DenseNet-BC-22 on the embedded digits,
batch 64, half of each batch from the technique) with a small AC-GAN trained first for a few
iterations with ``train_gan`` (its weights barely matter: the attack's cost does not depend on
them, and the seed-faithful mode never stops early). Techniques:

- ``none`` (plain training on the whole batch: ``prop`` 0), ``fgsm``, ``gan``;
- ``unrestricted-pooled``: the default pooled mode (pool filled in the first epoch, a share of
  it re-attacked every ``refresh_every`` steps);
- ``unrestricted-seed``: the seed's schedule (``classifier.augment.unrestricted.mode=seed``,
  500 SGD-with-noise latent steps for the batch's n_a codes at *every* training step). Far too
  slow for a whole epoch: ``--seed-steps`` training steps are timed and the epoch is
  extrapolated (``"extrapolated": true`` in the JSON).

Every technique trains a fresh model from the same seed for ``--epochs`` epochs with the
training step of ``train_classifier``: :func:`run_epoch` builds the run with its
``build_state`` and calls the same :func:`~advaug.train.steps.classifier_step` (the tests check
that it gives bit-identical weights). The steady-state epoch
(the mean of the epochs after the first) is what the ratios use; the first epoch, which holds
the pool fill for the pooled mode, is reported beside it. Wall and CPU-time ratios are both
given: on a shared machine the CPU-time ones are the steadier.

    python benchmarks/bench_techniques.py                # demo sizes, several minutes on a CPU
    python benchmarks/bench_techniques.py --quick        # smoke sizes, seconds; no JSON by default
    python benchmarks/bench_techniques.py --set classifier.model.name=densenet-bc-40 --device cuda

The issue's goal (DESIGN §6): the pooled epoch at most 10x the FGSM epoch; the seed's schedule
was estimated at about 1,300x FGSM on CIFAR-100 (DenseNet-BC-100, a 256-wide GAN).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "src", ROOT / "benchmarks"):  # run from a checkout without installing
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from advaug.augment import Technique  # noqa: E402
from advaug.config import StudyConfig, build_config, to_dict  # noqa: E402
from advaug.data.splits import Splits, load_splits  # noqa: E402
from advaug.loading import GANPair, load_gan  # noqa: E402
from advaug.runtime import Runtime, make_runtime  # noqa: E402
from advaug.train.classifier import ClassifierJob, build_state  # noqa: E402
from advaug.train.gan import GANJob, train_gan  # noqa: E402
from advaug.train.schedule import lr_at, set_lr  # noqa: E402
from advaug.train.steps import classifier_step, mixed_forward  # noqa: E402
from common import (  # noqa: E402
    RESULTS,
    SHARED_CPU_NOTE,
    load_average,
    machine_info,
    markdown_table,
    ratio,
    sync,
    write_json,
)

#: technique row name -> config overrides under classifier.augment (``none`` trains on the
#: whole batch whatever ``prop`` says: :attr:`AugmentConfig.batch_share`).
TECHNIQUES: dict[str, dict[str, Any]] = {
    "none": {"technique": "none"},
    "fgsm": {"technique": "fgsm"},
    "gan": {"technique": "gan"},
    "unrestricted-pooled": {"technique": "unrestricted", "unrestricted": {"mode": "pooled"}},
    "unrestricted-seed": {
        "technique": "unrestricted",
        # the seed's settings, given here since mode=seed honours the section's
        "unrestricted": {
            "mode": "seed",
            "steps": 500,
            "optimizer": "sgd-noise",
            "lr": 0.1,
            "noise_eps": 0.05,
        },
    },
}
EXTRAPOLATED = ("unrestricted-seed",)
POOLED_GOAL_VS_FGSM = 10.0  # DESIGN §6 / the issue: pooled epoch <= 10x the FGSM epoch
SEED_ESTIMATE_VS_FGSM = 1300.0  # the estimate for the seed's schedule on CIFAR-100


class _Timed:
    """A technique that also adds up the wall seconds spent in it (synchronised)."""

    def __init__(self, technique: Technique, device: torch.device) -> None:
        self.technique, self.device, self.seconds = technique, device, 0.0

    def __call__(self, *args: Any) -> Any:
        t = time.perf_counter()
        out = self.technique(*args)
        sync(self.device)
        self.seconds += time.perf_counter() - t
        return out


class Trainer:
    """A classifier run's state, built by ``train_classifier``'s own :func:`build_state`."""

    def __init__(self, job: ClassifierJob, splits: Splits, gan: GANPair | None) -> None:
        self.job, self.cfg = job, job.classifier
        self.rt: Runtime = make_runtime(job.runtime)
        self.state = build_state(job, self.rt, splits, gan=gan)
        self.technique: Technique = self.state.technique
        self.forward = self.rt.maybe_compile(mixed_forward(self.state.net, self.cfg))

    @property
    def model(self) -> torch.nn.Module:
        return self.state.model

    @property
    def steps_per_epoch(self) -> int:
        return len(self.state.loader)

    def run_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, Any]:
        """One epoch (or its first ``max_steps`` steps) of ``train_classifier``'s inner loop,
        through the same :func:`classifier_step`.

        Returns wall and CPU seconds, the seconds spent inside the technique, per-step wall
        times, and how many latent codes the unrestricted technique attacked.
        """
        st, cfg, dev = self.state, self.cfg, self.rt.device
        attacked0 = _attacked(self.technique)
        timed = _Timed(self.technique, dev)
        st.loader.set_epoch(epoch)
        st.model.train()
        step_s: list[float] = []
        used = torch.zeros((), dtype=torch.long, device=dev)
        sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        for x, y in st.loader:
            ts = time.perf_counter()
            set_lr(st.opt, lr_at(cfg.optim, st.step, self.steps_per_epoch, cfg.epochs))
            stats = classifier_step(
                st.net, st.opt, timed, x, y, st.step, cfg=cfg, rt=self.rt, ema=st.ema,
                forward=self.forward,
            )  # fmt: skip
            used += stats["aug_n"]
            st.step += 1
            sync(dev)
            step_s.append(time.perf_counter() - ts)
            if max_steps is not None and len(step_s) >= max_steps:
                break
        return {
            "steps": len(step_s),
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0,
            "aug_seconds": timed.seconds,
            "step_seconds": step_s,
            "attacked": _attacked(self.technique) - attacked0,
            "augmented_used": int(used),
        }


def _attacked(t: Technique) -> int:
    stats = getattr(t, "stats", None)
    return int(stats["attacked"]) if isinstance(stats, dict) else 0


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def bench_technique(
    name: str,
    cfg: StudyConfig,
    splits: Splits,
    gan: GANPair | None,
    *,
    epochs: int,
    seed_steps: int,
    seed_latent_steps: int = 500,
) -> dict[str, Any]:
    """Time one technique: ``epochs`` whole epochs, or ``seed_steps`` steps if extrapolated.

    ``seed_latent_steps`` replaces the seed mode's 500 latent steps (for smoke runs only).
    """
    aug = copy.deepcopy(cfg.classifier.augment)
    over = TECHNIQUES[name]
    aug.technique = over["technique"]
    aug.prop = over.get("prop", aug.prop)
    for k, v in over.get("unrestricted", {}).items():
        setattr(aug.unrestricted, k, v)
    if name == "unrestricted-seed":
        aug.unrestricted.steps = seed_latent_steps
    clf = copy.deepcopy(cfg.classifier)
    clf.augment, clf.epochs = aug, epochs
    job = ClassifierJob(data=cfg.data, runtime=cfg.runtime, classifier=clf, seed=cfg.seed)
    tr = Trainer(job, splits, gan)
    spe = tr.steps_per_epoch
    row: dict[str, Any] = {
        "technique": aug.technique,
        "steps_per_epoch": spe,
        "images_per_epoch": spe * clf.batch_size,
        "augmented_per_step": int(aug.batch_share * clf.batch_size),
    }
    if aug.technique == "unrestricted":
        row["unrestricted"] = to_dict(aug.unrestricted)
    if name in EXTRAPOLATED:
        ep = tr.run_epoch(0, max_steps=seed_steps)
        per_step = _mean(ep["step_seconds"])
        cpu_per_step = ep["cpu_seconds"] / ep["steps"]
        row.update(
            extrapolated=True,
            timed_steps=ep["steps"],
            step_seconds=ep["step_seconds"],
            epoch_seconds=per_step * spe,
            epoch_cpu_seconds=cpu_per_step * spe,
            aug_seconds=ep["aug_seconds"] / ep["steps"] * spe,
            first_epoch_seconds=per_step * spe,
            attacked_per_epoch=ep["attacked"] / ep["steps"] * spe,
            augmented_used_per_step=ep["augmented_used"] / ep["steps"],
        )
        aug_total, attacked = ep["aug_seconds"], ep["attacked"]
    else:
        eps = [tr.run_epoch(e) for e in range(epochs)]
        steady = eps[1:] or eps
        row.update(
            extrapolated=False,
            epochs_timed=epochs,
            epoch_seconds=_mean([e["seconds"] for e in steady]),
            epoch_cpu_seconds=_mean([e["cpu_seconds"] for e in steady]),
            aug_seconds=_mean([e["aug_seconds"] for e in steady]),
            first_epoch_seconds=eps[0]["seconds"],
            first_epoch_aug_seconds=eps[0]["aug_seconds"],
            epochs_seconds=[e["seconds"] for e in eps],
            attacked_per_epoch=_mean([e["attacked"] for e in steady]),
            first_epoch_attacked=eps[0]["attacked"],
            augmented_used_per_step=_mean([e["augmented_used"] / e["steps"] for e in steady]),
        )
        aug_total = sum(e["aug_seconds"] for e in eps)
        attacked = sum(e["attacked"] for e in eps)
    if aug.technique == "unrestricted":
        # latent codes attacked per second of time spent in the technique (pool fill included)
        row["attack_examples_per_s"] = attacked / aug_total if aug_total > 0 else None
        row["technique_metrics"] = tr.technique.metrics()
    return row


def _with_ratios(rows: dict[str, dict[str, Any]]) -> None:
    for base in ("none", "fgsm"):
        b = rows.get(base)
        for r in rows.values():
            r[f"vs_{base}"] = ratio(r["epoch_seconds"], b and b["epoch_seconds"])
            r[f"vs_{base}_cpu"] = ratio(r["epoch_cpu_seconds"], b and b["epoch_cpu_seconds"])
            r[f"first_epoch_vs_{base}"] = ratio(
                r["first_epoch_seconds"], b and b["first_epoch_seconds"]
            )


def make_config(preset: str, overrides: list[str], device: str) -> StudyConfig:
    """The preset with the benchmark's runtime settings, then the user's overrides."""
    base = [f"runtime.device={device}", "runtime.progress=false", "data.val_size=0"]
    return build_config(preset, base + overrides)


def run_benchmark(
    cfg: StudyConfig,
    *,
    techniques: list[str],
    epochs: int = 2,
    seed_steps: int = 2,
    seed_latent_steps: int = 500,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Train the small GAN, time every technique, return a JSON-ready dict."""
    splits = load_splits(cfg.data, seed=cfg.seed)
    gan, gan_info = None, None
    if any(TECHNIQUES[t]["technique"] in ("gan", "unrestricted") for t in techniques):
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            job = GANJob(data=cfg.data, runtime=cfg.runtime, gan=cfg.gan, seed=cfg.seed)
            res = train_gan(job, Path(tmp) / "gan", splits=splits)
            gan = load_gan(Path(tmp) / "gan", make_runtime(cfg.runtime).device)
        gan_info = {
            "iters": res["iters"],
            "train_seconds": res["train_seconds"],
            "ac_test_top1": res["ac_test_top1"],
            "width": cfg.gan.width,
            "z_dim": cfg.gan.z_dim,
            "params_G": sum(p.numel() for p in gan.generator.parameters()),
            "params_D": sum(p.numel() for p in gan.critic.parameters()),
        }
    rows: dict[str, dict[str, Any]] = {}
    for name in techniques:
        rows[name] = bench_technique(
            name,
            cfg,
            splits,
            gan,
            epochs=epochs,
            seed_steps=seed_steps,
            seed_latent_steps=seed_latent_steps,
        )
        r = rows[name]
        print(
            f"{name:<20} epoch {r['epoch_seconds']:9.2f} s"
            f"{' (extrapolated)' if r['extrapolated'] else ''}",
            flush=True,
        )
    _with_ratios(rows)
    pooled, seed = rows.get("unrestricted-pooled"), rows.get("unrestricted-seed")
    goal: dict[str, Any] = {
        "pooled_vs_fgsm_max": POOLED_GOAL_VS_FGSM,
        "pooled_vs_fgsm": pooled and pooled.get("vs_fgsm"),
        "pooled_vs_fgsm_cpu": pooled and pooled.get("vs_fgsm_cpu"),
        "pooled_first_epoch_vs_fgsm": pooled and pooled.get("first_epoch_vs_fgsm"),
        "seed_vs_fgsm": seed and seed.get("vs_fgsm"),
        "seed_vs_fgsm_cpu": seed and seed.get("vs_fgsm_cpu"),
        "seed_vs_fgsm_issue_estimate": SEED_ESTIMATE_VS_FGSM,
        "seed_vs_pooled": ratio(seed and seed["epoch_seconds"], pooled and pooled["epoch_seconds"]),
    }
    if goal["pooled_vs_fgsm"] is not None:
        goal["pooled_goal_met"] = goal["pooled_vs_fgsm"] <= POOLED_GOAL_VS_FGSM
    clf = cfg.classifier
    return {
        "benchmark": "techniques-epoch-cost",
        "what": "seconds of one classifier training epoch per augmentation technique, same "
        "model, data and seed; the steady-state epoch (mean of epochs after the first) is the "
        "basis of the ratios; unrestricted-seed is extrapolated from timed steps",
        "settings": {
            "data": f"{cfg.data.name}: train {len(splits.train)} images, "
            f"{splits.num_classes} classes",
            "classifier": clf.model.name,
            "batch_size": clf.batch_size,
            "prop": clf.augment.prop,
            "mode": clf.augment.mode,
            "bn": clf.augment.bn,
            "fgsm": to_dict(clf.augment.fgsm),
            "epochs_timed": epochs,
            "seed_steps_timed": seed_steps,
            "seed_latent_steps": seed_latent_steps,
            "runtime": make_runtime(cfg.runtime).describe(),
        },
        "gan": gan_info,
        "techniques": rows,
        "goal": goal,
    }


def format_table(res: dict[str, Any]) -> str:
    """The per-technique results as a markdown table."""
    headers = ["technique", "epoch s", "CPU s", "in T s", "x none", "x fgsm", "x fgsm (CPU)"]
    headers += ["1st epoch s", "attack ex/s", "extrapolated"]
    body = [
        [
            name,
            r["epoch_seconds"],
            r["epoch_cpu_seconds"],
            r["aug_seconds"],
            r.get("vs_none"),
            r.get("vs_fgsm"),
            r.get("vs_fgsm_cpu"),
            r["first_epoch_seconds"],
            r.get("attack_examples_per_s"),
            "yes" if r["extrapolated"] else "no",
        ]
        for name, r in res["techniques"].items()
    ]
    return markdown_table(headers, body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo", help="config preset (default demo)")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="config override, repeatable (e.g. classifier.model.name=densenet-bc-40)",
    )  # fmt: skip
    ap.add_argument("--techniques", default=",".join(TECHNIQUES))
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per technique")
    ap.add_argument("--seed-steps", type=int, default=2, help="steps timed for the seed mode")
    ap.add_argument("--gan-iters", type=int, default=5, help="AC-GAN iterations trained first")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="smoke sizes, seconds; no JSON by default")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default results/techniques-DEV)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    techniques = [t for t in a.techniques.split(",") if t]
    unknown = [t for t in techniques if t not in TECHNIQUES]
    if unknown:
        ap.error(f"unknown technique {unknown[0]!r}; choose from {', '.join(TECHNIQUES)}")
    preset, seed_steps, latent_steps, gan_iters = a.preset, a.seed_steps, 500, a.gan_iters
    small_gan: list[str] = []
    if a.quick:
        preset, seed_steps, latent_steps, gan_iters = "smoke", 1, 5, 2
        small_gan = ["gan.width=8", "gan.z_dim=8"]
    # one checkpoint, sample grid and AC evaluation, at the end only (the committed train_gan
    # also failed to write final.pt when no checkpoint had created checkpoints/ before it)
    gan = [f"gan.{k}={gan_iters}" for k in ("iters", "ckpt_every", "sample_every", "eval_every")]
    overrides = [*gan, *small_gan, *a.overrides]
    cfg = make_config(preset, overrides, a.device)
    load_before = load_average()
    res = run_benchmark(
        cfg,
        techniques=techniques,
        epochs=a.epochs,
        seed_steps=seed_steps,
        seed_latent_steps=latent_steps,
    )
    res["settings"].update(preset=preset, overrides=overrides, quick=a.quick)
    dev = torch.device(a.device).type
    res["note"] = SHARED_CPU_NOTE if dev == "cpu" else ""
    res["machine"] = {**machine_info(a.device), "load_avg_before": load_before}
    print()
    print(format_table(res))
    g = res["goal"]
    if g.get("pooled_vs_fgsm") is not None:
        print(
            f"\npooled / FGSM epoch: {g['pooled_vs_fgsm']:.2f}x "
            f"(goal <= {POOLED_GOAL_VS_FGSM:g}x: {'met' if g['pooled_goal_met'] else 'NOT met'})"
        )
    if g.get("seed_vs_fgsm") is not None:
        print(
            f"seed-faithful / FGSM epoch: {g['seed_vs_fgsm']:.0f}x (extrapolated; the issue "
            f"estimated ~{SEED_ESTIMATE_VS_FGSM:,.0f}x on CIFAR-100)"
        )
    out = a.out or (None if a.quick else RESULTS / f"techniques-{dev}.json")
    if out is not None:
        print(f"wrote {write_json(out, res)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
