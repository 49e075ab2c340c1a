"""From what ``advaug label SOURCE`` names to a labelling set on disk.

SOURCE may be

- a folder written by ``advaug attack unrestricted`` (``uae.safetensors`` + ``summary.json``) or
  the ``.safetensors`` file itself: the set goes to ``<folder>/labels/<stem>.sqlite``; the GAN is
  the one named in the file's meta (``--gan`` when it moved), the automatic proxy the reference
  classifier named by ``--reference`` or in the meta, else the GAN's AC head;
- a study folder (``study.json``): its one saved UAE set, ``eval/transfer-uae.safetensors`` (the
  UAEs made against the baseline ``none`` model, the same set behind ``transfer_uae_acc``), with
  the study's ``gan/`` and ``reference/`` runs; the set goes to ``<study>/labels/``, where the
  report looks for it;
- a labelling set (``.sqlite``) itself.

The set is built once: clean samples are regenerated from the GAN, real images taken from the test
split of the data in the GAN run's ``config.yaml``, and the proxy's predictions computed, all
stored in the file, so that serving needs neither torch models nor the data again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advaug.errors import ConfigError
from advaug.label.store import LabelStore
from advaug.log import get_logger

if TYPE_CHECKING:  # torch is imported when a set is built, not to serve or analyse one
    import torch
    from torch import Tensor

log = get_logger(__name__)

STUDY_UAE = Path("eval") / "transfer-uae.safetensors"
LABELS_DIR = "labels"


@dataclass
class Source:
    """A resolved SOURCE: the UAE file (``None`` for a ready set), where its set lives, and the
    GAN and reference runs to use (``None``: take them from the UAE file's meta)."""

    kind: str  # "attack" | "study" | "set"
    db: Path
    uae: Path | None = None
    gan: str | None = None
    reference: str | None = None


def resolve_source(source: str, gan: str | None = None, reference: str | None = None) -> Source:
    """Where the UAEs and the labelling set of ``source`` are (see the module docstring)."""
    p = Path(source)
    if p.suffix == ".sqlite":
        if not p.is_file():
            raise ConfigError(f"no labelling set at {p}; pass a UAE folder or study to build one")
        return Source("set", p)
    if p.is_dir() and (p / "study.json").is_file():
        uae = p / STUDY_UAE
        if not uae.is_file():
            raise ConfigError(
                f"the study {p} has no {STUDY_UAE} (it needs technique none and "
                "evaluate.uae_samples > 0); run `advaug attack unrestricted` and label that folder"
            )
        ref = p / "reference"
        return Source(
            "study",
            p / LABELS_DIR / f"{uae.stem}.sqlite",
            uae,
            gan or str(p / "gan"),
            reference or (str(ref) if ref.is_dir() else None),
        )
    if p.is_dir():
        uae = p / "uae.safetensors"
        if not uae.is_file():
            raise ConfigError(
                f"{p} holds no uae.safetensors; pass the --out folder of "
                "`advaug attack unrestricted`, its .safetensors file, or a study folder"
            )
    elif p.is_file() and p.suffix == ".safetensors":
        uae = p
    else:
        raise ConfigError(
            f"{p} is not a UAE set, a study folder or a labelling set; pass the --out folder of "
            "`advaug attack unrestricted` or a study folder"
        )
    return Source("attack", uae.parent / LABELS_DIR / f"{uae.stem}.sqlite", uae, gan, reference)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- loaders (injectable for tests) -----------------------------------------------------------


def _run_config(run: str) -> dict[str, Any]:
    """The ``config.yaml`` of the run that ``run`` (a folder or checkpoint) belongs to."""
    import yaml

    from advaug.runtime.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(run)
    for folder in (ckpt.parent.parent, ckpt.parent):
        if (folder / "config.yaml").is_file():
            return yaml.safe_load((folder / "config.yaml").read_text()) or {}
    raise ConfigError(
        f"no config.yaml beside the GAN checkpoint {ckpt}, so the data it was trained on is "
        "unknown; pass the GAN run folder with --gan"
    )


def real_test_split(gan_run: str) -> tuple[Tensor, Tensor, str]:
    """The test split (uint8 images, labels, a description) of the data the GAN was trained on."""
    from advaug.config import DataConfig, from_dict
    from advaug.data.splits import load_splits

    data = _run_config(gan_run).get("data") or {}
    splits = load_splits(from_dict(DataConfig, data))
    return splits.test.x, splits.test.y, f"{splits.name} test split ({len(splits.test)} images)"


def _load_gan(path: str, device: torch.device) -> Any:
    from advaug.loading import load_gan

    return load_gan(path, device)


def _load_classifier(path: str, device: torch.device) -> Any:
    from advaug.loading import load_classifier

    return load_classifier(path, device)


@dataclass
class Loaders:
    """How a build gets its GAN (``GANPair``-like: generator, critic, classes), the reference
    classifier and the real test images; tests pass stand-ins."""

    gan: Callable[[str, torch.device], Any] = _load_gan
    classifier: Callable[[str, torch.device], Any] = _load_classifier
    real: Callable[[str], tuple[Tensor, Tensor, str]] = real_test_split


# -- building ---------------------------------------------------------------------------------


@dataclass
class BuildOptions:
    seed: int = 0
    max_uae: int | None = None
    device: str = "cpu"
    loaders: Loaders = field(default_factory=Loaders)


def open_or_build(src: Source, opts: BuildOptions | None = None) -> LabelStore:
    """The source's labelling set: opened if it exists (and still matches its UAE file), built
    otherwise."""
    opts = opts or BuildOptions()
    if src.db.is_file():
        store = LabelStore(src.db)
        if src.uae is not None and store.meta.get("source_sha256") != sha256(src.uae):
            raise ConfigError(
                f"{src.uae} changed since its labelling set {src.db} was built (the answers "
                "belong to the old images); move that file aside to build a new set"
            )
        return store
    if src.uae is None:
        raise ConfigError(f"no labelling set at {src.db}")
    return build_set(src, opts)


def _gan_path(src: Source, meta: dict[str, Any]) -> str:
    gan = src.gan or meta.get("gan")
    if not gan:
        raise ConfigError(f"{src.uae} does not name the GAN that made it; pass --gan GAN_RUN")
    if not Path(gan).exists():
        raise ConfigError(f"the GAN that made {src.uae} ({gan}) is not there; pass --gan GAN_RUN")
    return str(gan)


def _predict(model: Any, x: Tensor) -> Tensor:
    from advaug.evaluate.accuracy import predict

    return predict(model, x).argmax(1).cpu()


def _ac_predict(critic: Any, x: Tensor, device: torch.device) -> Tensor:
    """The AC head's class for each image (critic in eval mode, restored afterwards)."""
    import torch

    from advaug.evaluate.accuracy import to_float

    was = critic.training
    critic.eval()
    try:
        with torch.no_grad():
            out = [critic(to_float(x[i : i + 256], device))[1].argmax(1).cpu()
                   for i in range(0, len(x), 256)]  # fmt: skip
    finally:
        critic.train(was)
    return torch.cat(out)


def build_set(src: Source, opts: BuildOptions) -> LabelStore:
    """Build the labelling set of ``src`` (see the module docstring) and open it."""
    import torch

    from advaug.attacks import UnrestrictedResult
    from advaug.label.items import Pieces, assemble, pick_real
    from advaug.models.gan import sample
    from advaug.runtime import resolve_device

    assert src.uae is not None
    device = resolve_device(opts.device)
    res = UnrestrictedResult.load(src.uae)
    rows = res.success.nonzero().flatten()
    if rows.numel() == 0:
        raise ConfigError(f"{src.uae} has no successful UAE: nothing to label")
    if opts.max_uae is not None:
        if opts.max_uae < 1:
            raise ConfigError(f"--max-uae must be >= 1, got {opts.max_uae}")
        g = torch.Generator().manual_seed(opts.seed)
        keep = torch.randperm(rows.numel(), generator=g)[: opts.max_uae]
        rows = rows[keep.sort().values]
    ok = res.select(rows)
    gan_path = _gan_path(src, res.meta)
    pair = opts.loaders.gan(gan_path, device)
    k = int(pair.generator.num_classes)
    if int(ok.source.max()) >= k or ok.z0.shape[1] != int(pair.generator.z_dim):
        raise ConfigError(
            f"the GAN {gan_path} does not fit {src.uae} (classes or latent size differ); "
            "pass the GAN that made it with --gan"
        )
    log.info("labelling set: %d UAE successes of %d; regenerating clean samples", len(ok), len(res))
    clean = sample(pair.generator, ok.source.to(device), z=ok.z0.to(device)).cpu()
    real_x, real_y, real_desc = opts.loaders.real(gan_path)
    real_index = pick_real(ok.source.cpu(), real_y.cpu(), opts.seed)
    real = real_x[real_index]
    if real.shape[1:] != ok.images.shape[1:]:
        raise ConfigError(
            f"the real test images ({tuple(real.shape[1:])}) and the UAEs "
            f"({tuple(ok.images.shape[1:])}) differ in shape; the GAN's data config is not theirs"
        )
    reference = src.reference or res.meta.get("reference")
    if reference:
        model = opts.loaders.classifier(str(reference), device)
        arch = getattr(model, "arch_name", type(model).__name__)
        proxy_name = f"reference classifier {arch} ({reference})"
        proxy = {kind: _predict(model, x) for kind, x in (("uae", ok.images), ("gan", clean),
                                                            ("real", real))}  # fmt: skip
    else:
        proxy_name = "AC head of the GAN (it agrees with the source on every UAE success)"
        proxy = {
            "uae": ok.ac_pred.cpu(),
            "gan": _ac_predict(pair.critic, clean, device),
            "real": _ac_predict(pair.critic, real, device),
        }
    pieces = Pieces(
        uae=ok.images.cpu(),
        clean=clean,
        real=real,
        source=ok.source.cpu(),
        target=ok.target.cpu(),
        clf_pred=ok.clf_pred.cpu(),
        uae_index=rows,
        real_index=real_index,
        proxy=proxy,
    )
    classes = list(pair.classes) if getattr(pair, "classes", None) else [str(i) for i in range(k)]
    settings = {key: res.meta[key] for key in ("attack", "steps", "targeted", "classifier", "seed")
                if key in res.meta}  # fmt: skip
    meta = {
        "classes": classes,
        "seed": opts.seed,
        "source": str(src.uae),
        "source_kind": src.kind,
        "source_sha256": sha256(src.uae),
        "gan": gan_path,
        "proxy": proxy_name,
        "proxy_kind": "reference" if reference else "ac",
        "real": real_desc,
        "uae_total": len(res),
        "uae_successes": int(res.success.sum()),
        "per_kind": len(ok),
        "attack": settings,
    }
    store = LabelStore.create(src.db, assemble(pieces, opts.seed), meta)
    log.info("labelling set written to %s (%d items)", src.db, store.num_items)
    return store
