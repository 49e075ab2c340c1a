"""Madry et al.'s MNIST CNN (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks"), the target of their PGD-trained MNIST model and of Song et al.'s MNIST
experiment (``models/madry_mnist.py`` of ermongroup/generative_adversary, read, not copied).

conv 32 5x5 (same padding) → ReLU → max-pool 2 → conv 64 5x5 (same padding) → ReLU → max-pool 2
→ FC 1024 → ReLU → FC K. For 1x28x28 images and K = 10 it has 3,274,634 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from advaug.errors import ConfigError
from advaug.models.normalize import NormalizeSpec, make_normalize
from advaug.models.registry import register_model


@register_model("madry-mnist")
class MadryCNN(nn.Module):
    """Madry et al.'s MNIST CNN; input NCHW in [0, 1] of ``in_channels`` x ``image_size``².

    ``normalize`` defaults to ``"identity"``: Madry et al. feed the raw [0, 1] pixels. Weights
    use PyTorch's default initialisation (theirs: truncated normal, std 0.1, biases 0.1).
    ``features`` are the 1024 ReLU units of the hidden FC layer.

    Examples::

        >>> import torch
        >>> net = MadryCNN()
        >>> net(torch.rand(2, 1, 28, 28)).shape, sum(p.numel() for p in net.parameters())
        (torch.Size([2, 10]), 3274634)
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        normalize: NormalizeSpec = "identity",
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or image_size < 4 or image_size % 4:
            raise ConfigError(
                f"madry-mnist needs num_classes >= 1, in_channels >= 1 and an image_size that "
                f"is a positive multiple of 4, got {num_classes}, {in_channels}, {image_size}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.normalize = make_normalize(normalize)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (image_size // 4) ** 2, 1024),
            nn.ReLU(inplace=True),
        )
        self.num_features = 1024
        self.fc = nn.Linear(1024, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The hidden FC layer's 1024 ReLU units (N, 1024)."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if tuple(x.shape[1:]) != expected:
            raise ConfigError(
                f"madry-mnist was built for images {expected}, got {tuple(x.shape[1:])}; build "
                "it with the data's in_channels and image_size"
            )
        return self.body(self.normalize(x))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images (N, in_channels, image_size, image_size)."""
        return self.fc(self.features(x))
