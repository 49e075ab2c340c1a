"""Adversarial attacks, torchattacks-style: ``atk = PGD(model, eps=8/255); x_adv = atk(x, y)``.

Images are float NCHW in [0, 1]; budgets are in the same units. Every attack runs its models in
eval mode with frozen parameters and restores their exact state afterwards.
"""

from advaug.attacks.autoattack import AutoAttack, MissingDependencyError, torchattacks_available
from advaug.attacks.autoattack_reference import (
    ReferenceAutoAttack,
    make_autoattack,
    reference_available,
)
from advaug.attacks.base import Attack, AttackInputError, frozen
from advaug.attacks.fgsm import FFGSM, FGSM, StepLL
from advaug.attacks.pgd import PGD
from advaug.attacks.unrestricted import (
    FAST,
    PRESETS,
    SEED,
    SONG,
    UnrestrictedAttack,
    UnrestrictedConfig,
)
from advaug.attacks.unrestricted_result import UnrestrictedResult

__all__ = [
    "FAST",
    "FFGSM",
    "FGSM",
    "PGD",
    "PRESETS",
    "ReferenceAutoAttack",
    "SEED",
    "SONG",
    "Attack",
    "AttackInputError",
    "AutoAttack",
    "MissingDependencyError",
    "StepLL",
    "UnrestrictedAttack",
    "UnrestrictedConfig",
    "UnrestrictedResult",
    "frozen",
    "make_autoattack",
    "reference_available",
    "torchattacks_available",
]
