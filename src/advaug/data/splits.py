"""From a :class:`DataConfig` to the train / validation / test splits a run uses."""

from __future__ import annotations

from dataclasses import dataclass

from advaug.config import DataConfig
from advaug.data.datasets import load_dataset, resolve_fallback
from advaug.data.types import Split, class_balanced_subset, train_val_split
from advaug.errors import ConfigError


@dataclass
class Splits:
    name: str
    train: Split
    val: Split | None
    test: Split
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        val = f", val {len(self.val)}" if self.val is not None else ""
        return f"{self.name}: train {len(self.train)}{val}, test {len(self.test)}"


def load_splits(cfg: DataConfig, seed: int = 0) -> Splits:
    """Load the dataset, then (seeded, stratified) hold out validation and take subsets.

    The validation split is carved from the full training set first, so it does not depend on
    ``train_limit``; subsets are class-balanced. A ``cfg.fallback`` is honoured (see
    :func:`advaug.data.datasets.resolve_fallback`; a study resolves it before this, to record it).
    """
    cfg, _ = resolve_fallback(cfg)
    data = load_dataset(
        cfg.name,
        cfg.root,
        download=cfg.download,
        verify=cfg.verify,
        check_sizes=cfg.check_sizes,
        checksums=cfg.checksums or None,
    )
    train = data.train_split()
    val = None
    if cfg.val_size:
        if cfg.val_size >= len(train):
            raise ConfigError(
                f"invalid config value data.val_size={cfg.val_size}: the training split has only "
                f"{len(train)} images"
            )
        train, val = train_val_split(train.x, train.y, cfg.val_size, seed=1234)
    if cfg.train_limit and cfg.train_limit < len(train):
        train = class_balanced_subset(train.x, train.y, cfg.train_limit, seed=seed)
    test = data.test_split()
    if cfg.test_limit and cfg.test_limit < len(test):
        test = class_balanced_subset(test.x, test.y, cfg.test_limit, seed=0)
    return Splits(data.name, train, val, test, list(data.classes))
