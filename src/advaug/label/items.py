"""The items of a labelling set: UAEs mixed with two kinds of control, in a seeded order.

For every successful UAE (source class s, latent code z* found from z⁰) the set holds

- the UAE itself, G(z*, s) (with any pixel noise), kind ``uae``;
- the clean GAN sample of the same starting code, G(z⁰, s), kind ``gan``;
- a real test image of class s, kind ``real`` (drawn without replacement within the class while
  the class has enough, seeded),

so all three kinds have the same class mix and a rater cannot guess a kind from the class.
Item ids are a seeded shuffle of all of them; the rater is never told the kind.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from advaug.errors import ConfigError
from advaug.imaging import to_pil
from advaug.label.store import Item


def png_bytes(image: Tensor) -> bytes:
    """One [C, H, W] image (float in [0, 1] or uint8) as PNG bytes, without metadata."""
    if image.dtype == torch.uint8:
        image = image.float() / 255
    buf = io.BytesIO()
    to_pil(image.cpu()).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def pick_real(sources: Tensor, labels: Tensor, seed: int) -> Tensor:
    """For each source class, the index of a real image of that class: without replacement while
    the class has images left, then again from the start of a fresh shuffle."""
    rng = random.Random(seed)
    pools: dict[int, list[int]] = {}
    out = []
    for s in sources.tolist():
        if not pools.get(s):
            idx = (labels == s).nonzero().flatten().tolist()
            if not idx:
                raise ConfigError(
                    f"the real test split has no image of class {s}; the GAN and the data differ"
                )
            rng.shuffle(idx)
            pools[s] = idx
        out.append(pools[s].pop())
    return torch.tensor(out, dtype=torch.long)


@dataclass
class Pieces:
    """What a set is made of, row-aligned: ``uae``/``clean`` [n, C, H, W] float in [0, 1],
    ``real`` [n, C, H, W] (uint8 or float) of classes ``source``. ``proxy`` holds the automatic
    proxy's prediction for each kind (any may be ``None``); ``uae_index`` is each UAE's row in
    its file and ``real_index`` each real image's row in the test split."""

    uae: Tensor
    clean: Tensor
    real: Tensor
    source: Tensor
    target: Tensor
    clf_pred: Tensor
    uae_index: Tensor
    real_index: Tensor
    proxy: dict[str, Tensor | None]

    def __post_init__(self) -> None:
        n = self.source.shape[0]
        for name in ("uae", "clean", "real", "target", "clf_pred", "uae_index", "real_index"):
            if getattr(self, name).shape[0] != n:
                raise ConfigError(f"pieces of a labelling set differ in length ({name})")


def _opt(t: Tensor | None, i: int) -> int | None:
    return None if t is None else int(t[i])


def assemble(
    p: Pieces, seed: int, progress: Callable[[int], None] | None = None
) -> list[tuple[Item, bytes]]:
    """Every item with its PNG, ids shuffled with ``seed``."""
    n = p.source.shape[0]
    rows = []
    for kind, images, index in (
        ("uae", p.uae, p.uae_index),
        ("gan", p.clean, p.uae_index),
        ("real", p.real, p.real_index),
    ):
        for i in range(n):
            rows.append((kind, i, images[i], int(index[i])))
    ids = list(range(len(rows)))
    random.Random(seed).shuffle(ids)
    out = []
    for new_id, (kind, i, image, origin) in zip(ids, rows):
        item = Item(
            id=new_id,
            kind=kind,
            source=int(p.source[i]),
            target=int(p.target[i]) if kind == "uae" else -1,
            origin_index=origin,
            proxy_pred=_opt(p.proxy.get(kind), i),
            clf_pred=int(p.clf_pred[i]) if kind == "uae" else None,
        )
        out.append((item, png_bytes(image)))
        if progress is not None:
            progress(1)
    out.sort(key=lambda r: r[0].id)
    return out
