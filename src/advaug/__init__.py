"""advaug: data augmentation with generative models under adversarial training."""

__version__ = "0.1.0"
