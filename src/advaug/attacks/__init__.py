"""Adversarial attacks, torchattacks-style: ``atk = PGD(model, eps=8/255); x_adv = atk(x, y)``.

Images are float NCHW in [0, 1]; budgets are in the same units. Every attack runs its models in
eval mode with frozen parameters and restores their exact state afterwards.
"""

from advaug.attacks.autoattack import AutoAttack, MissingDependencyError, torchattacks_available
from advaug.attacks.base import Attack, AttackInputError, frozen
from advaug.attacks.fgsm import FFGSM, FGSM, StepLL
from advaug.attacks.pgd import PGD
from advaug.attacks.unrestricted import (
    FAST_PRESET,
    PRESETS,
    SEED_PRESET,
    SONG_PRESET,
    UnrestrictedAttack,
    UnrestrictedResult,
)

__all__ = [
    "FAST_PRESET",
    "FFGSM",
    "FGSM",
    "PGD",
    "PRESETS",
    "SEED_PRESET",
    "SONG_PRESET",
    "Attack",
    "AttackInputError",
    "AutoAttack",
    "MissingDependencyError",
    "StepLL",
    "UnrestrictedAttack",
    "UnrestrictedResult",
    "frozen",
    "torchattacks_available",
]
