"""Tiny labelling sets for the tests: a stand-in GAN, critic and real test split (8×8 images,
three classes), UAE files built from ``UnrestrictedResult`` tensors directly. Every answer in
these tests is scripted; no human numbers come from here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from advaug.attacks import UnrestrictedResult
from advaug.label import BuildOptions, LabelStore, Loaders, open_or_build, resolve_source

K = 3
CLASSES = ["cat", "dog", "<b>owl</b>"]  # the third name tests escaping on every page
Z = 4
SIZE = 8


class ToyG(nn.Module):
    """G(z, y): a flat colour from z (first three coordinates) with class y's stripe."""

    z_dim = Z
    num_classes = K

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.scale * z[:, :3]).view(-1, 3, 1, 1).expand(-1, 3, SIZE, SIZE)
        x = x.clone()
        for i, c in enumerate(y.tolist()):
            x[i, :, c * 2] = 1.0
        return x


class ToyCritic(nn.Module):
    """(score, AC logits): the AC head reads the row of the brightest stripe."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.mean(dim=(1, 3))[:, [0, 2, 4]]
        return x.mean(dim=(1, 2, 3)), self.w * rows * 10


class ConstClassifier(nn.Module):
    """A 'reference classifier' that always says class ``c``."""

    arch_name = "const"

    def __init__(self, c: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], K) + self.w
        out[:, self.c] = 1.0
        return out


class Pair:
    def __init__(self) -> None:
        self.generator, self.critic, self.classes = ToyG().eval(), ToyCritic().eval(), CLASSES


def real_split(_: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """20 uint8 'test images' per class, each with its class's stripe."""
    y = torch.arange(K).repeat_interleave(20)
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, 200, (len(y), 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    for i, c in enumerate(y.tolist()):
        x[i, :, c * 2] = 255
    return x, y, f"toy test split ({len(y)} images)"


def loaders(reference_class: int | None = None) -> Loaders:
    return Loaders(
        gan=lambda path, device: Pair(),
        classifier=lambda path, device: ConstClassifier(reference_class or 0),
        real=real_split,
    )


def make_uae(n: int = 6, seed: int = 0, fail_every: int = 0) -> UnrestrictedResult:
    """n rows, sources cycling over the classes; every ``fail_every``-th row a failure."""
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, Z, generator=g)
    z = z0 + 0.5 * torch.randn(n, Z, generator=g)
    source = torch.arange(n) % K
    success = torch.ones(n, dtype=torch.bool)
    if fail_every:
        success[::fail_every] = False
    return UnrestrictedResult(
        images=ToyG()(z, source).detach(),
        z=z,
        z0=z0,
        source=source,
        target=torch.full((n,), -1),
        success=success,
        steps=torch.full((n,), 3),
        clf_pred=(source + 1) % K,
        ac_pred=source.clone(),
        meta={"attack": "unrestricted", "steps": 5, "gan": "gan-run", "seed": seed},
    )


def write_attack_folder(folder: Path, uae: UnrestrictedResult, gan: Path | None = None) -> Path:
    """An `advaug attack unrestricted` output folder (uae.safetensors + summary.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    gan = gan or folder.parent / "gan-run"
    gan.mkdir(exist_ok=True)
    uae.meta["gan"] = str(gan)
    uae.save(folder / "uae.safetensors")
    (folder / "summary.json").write_text(f'{{"n": {len(uae)}}}')
    return folder


def build(folder: Path, n: int = 6, reference: int | None = None, **kw) -> LabelStore:
    write_attack_folder(folder, make_uae(n, fail_every=kw.pop("fail_every", 0)))
    src = resolve_source(str(folder), reference="ref" if reference is not None else None)
    return open_or_build(src, BuildOptions(loaders=loaders(reference), **kw))


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    """6 UAEs + 6 clean + 6 real = 18 items; proxy = the AC head."""
    return build(tmp_path / "uae")
