"""advaug: data augmentation with generative models under adversarial training."""

from advaug._version import __version__

__all__ = ["__version__"]
