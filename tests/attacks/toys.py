"""Tiny stand-ins for the attack tests: a separable 4-class toy problem on 3x8x8 images, a small
CNN trained on it in a couple of seconds, and a tiny generator and critic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

K = 4
SHAPE = (3, 8, 8)


PATTERNS = torch.randint(0, 2, (K, *SHAPE), generator=torch.Generator().manual_seed(0)) * 2 - 1


def toy_batch(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Images 0.5 + 0.05·P_y + small noise (P_y a fixed ±1 pattern per class), clipped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    x = 0.5 + 0.05 * PATTERNS[y].float() + 0.1 * torch.randn(n, *SHAPE, generator=g)
    return x.clamp(0, 1), y


class ToyNet(nn.Module):
    """Normalises its [0, 1] input, then conv-BN-ReLU, dropout and a linear head."""

    def __init__(self, k: int = K) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8 * 8 * 8, k)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn(self.conv((x - 0.5) / 0.25)))
        return self.fc(self.drop(h.flatten(1)))


def train_toy(steps: int = 150) -> ToyNet:
    """A ToyNet trained to (near) 100% accuracy on the toy problem, returned in train mode."""
    torch.manual_seed(0)
    model = ToyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = toy_batch(1024, seed=1)
    for i in range(steps):
        sl = slice((i * 64) % 1024, (i * 64) % 1024 + 64)
        loss = F.cross_entropy(model(x[sl]), y[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.train()


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Eval-mode accuracy, leaving the model's mode as it was."""
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc


class ToyG(nn.Module):
    """G(z, y) = clip(0.5 + 0.05·P_y + 0.1·BN(Wz), 0, 1): toy-class images whose details z sets.

    W is random and BN has fixed, non-trivial running statistics (so eval mode matters).
    """

    def __init__(self, z_dim: int = 64, num_classes: int = K, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim = z_dim
        self.num_classes = num_classes
        self.fc = nn.Linear(z_dim, 3 * 8 * 8)
        self.bn = nn.BatchNorm1d(3 * 8 * 8)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.1, 0.1)
            self.bn.running_var.uniform_(0.5, 1.5)
        self.register_buffer("patterns", PATTERNS[:num_classes].float())

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.bn(self.fc(z)).view(-1, *SHAPE)
        return (0.5 + 0.05 * self.patterns[y] + 0.1 * h).clamp(0, 1)


class TinyD(nn.Module):
    """D(x) -> (score [B], AC logits [B, K]) from a small conv trunk with BN."""

    def __init__(self, num_classes: int = K, seed: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.score = nn.Linear(4 * 8 * 8, 1)
        self.ac = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.bn(self.conv(x * 2 - 1))).flatten(1)
        return self.score(h).squeeze(1), self.ac(h)


def train_critic(steps: int = 100) -> TinyD:
    """A TinyD whose AC head learned the toy classes (as an AC-GAN critic would), in train mode."""
    d = TinyD()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    x, y = toy_batch(1024, seed=7)
    for i in range(steps):
        sl = slice((i * 64) % 1024, (i * 64) % 1024 + 64)
        loss = F.cross_entropy(d(x[sl])[1], y[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in d.parameters():
        p.grad = None
    return d.train()


class NaNModel(nn.Module):
    """Logits that are NaN (a broken checkpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :3] * self.w * float("nan")
