"""Unrestricted-adversarial augmentation, made cheap with a cached latent pool.

``pooled`` (default): a pool of ``pool_size`` (z, y) codes is attacked against the current
classifier once, then ``refresh_fraction`` of it (oldest first) is re-attacked every
``refresh_every`` steps, with a step budget and per-sample early stopping. Each training batch
draws its n_a augmented examples from the pool entries that are *valid*: the attack succeeded
(f is fooled) and the AC head still sees the source class. Optionally (``dedup_threshold``)
entries whose latents collapse onto another entry of the same class are re-drawn at the next
refresh, which keeps the pool diverse.

``seed``: the seed's schedule for comparison: every batch attacks fresh codes for the batch's
labels with the seed's optimiser (SGD with annealed gradient noise) for ``steps`` steps. The
seed's bugs stay fixed: fresh z⁰ per batch, and only successful, AC-agreeing samples are used.

The attack's settings come from :meth:`~advaug.config.UnrestrictedAugConfig.attack_config`. In
``seed`` mode only ``steps`` and ``attack_batch`` are read from the section; everything else is
the ``seed`` preset's (sgd-noise, lr 0.1, λ1 = λ2 = 0.1, z_eps 0.1, pixel noise 0.05,
grad_div 32, no early stop), whatever ``optimizer``, ``lr``, ``lambda1``, ``lambda2``,
``z_eps`` and ``noise_eps`` say.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advaug.attacks.unrestricted import UnrestrictedAttack
from advaug.augment.base import Technique
from advaug.config import UnrestrictedAugConfig
from advaug.log import get_logger
from advaug.runtime import restore_generator

log = get_logger(__name__)

#: The technique's random stream (pool labels, fresh codes z⁰, sgd-noise, pool sampling) must not
#: coincide with the other streams seeded from the same run seed (the FGSM technique uses
#: seed + 101 and + 102, the GAN technique seed + 202), so it starts at an offset of its own.
#: Each rank adds a prime stride, so that ranks attack their pool shares with independent codes.
#: Both numbers are part of every unrestricted run's results: changing them changes the runs.
STREAM_OFFSET = 303
RANK_STRIDE = 7919


def technique_seed(seed: int, rank: int = 0) -> int:
    """The seed of rank ``rank``'s unrestricted-technique stream, for the run seed ``seed``."""
    return seed + STREAM_OFFSET + RANK_STRIDE * rank


class UnrestrictedTechnique(Technique):
    name = "unrestricted"
    needs_gan = True

    def __init__(
        self,
        cfg: UnrestrictedAugConfig,
        gan: Any,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.cfg = cfg
        self.g, self.d = gan.generator, gan.critic
        self.k = self.g.num_classes
        self.device = device
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(technique_seed(seed, rank))
        self.size = max(1, cfg.pool_size // world_size)
        self.images = torch.zeros(0, device=device)
        self.labels = torch.zeros(self.size, dtype=torch.long, device=device)
        self.z = torch.zeros(self.size, self.g.z_dim, device=device)
        self.valid = torch.zeros(self.size, dtype=torch.bool, device=device)
        self.n_valid = 0  # host copy of valid.sum(), refreshed only when the pool changes
        self.pointer = 0  # next pool entry to refresh
        self.last_refresh = -1
        self.stats = {"attacked": 0, "succeeded": 0, "steps_sum": 0}
        self.attack_batch = cfg.attack_batch  # lowered if the device runs out of memory

    def _attack(self, model: nn.Module, labels: torch.Tensor):
        """Attack ``labels``' codes; an attack batch the device has no memory for is halved
        (once and for all, with a warning) until it fits."""
        cfg = self.cfg.attack_config()
        while True:
            cfg = cfg.replace(batch_size=min(cfg.batch_size, self.attack_batch))
            atk = UnrestrictedAttack.from_config(
                self.g, self.d, model, cfg, rng=self.rng, show_progress=False
            )
            try:
                res = atk(labels)
                break
            except torch.OutOfMemoryError:
                if cfg.batch_size <= 1:
                    raise
                self.attack_batch = cfg.batch_size // 2
                log.warning(
                    "the unrestricted attack ran out of device memory at batch %d; using %d "
                    "(lower classifier.augment.unrestricted.attack_batch to avoid the retry)",
                    cfg.batch_size,
                    self.attack_batch,
                )
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        self.stats["attacked"] += len(res)
        self.stats["succeeded"] += int(res.success.sum())
        self.stats["steps_sum"] += int(res.steps.sum())
        return res

    # -- pooled ---------------------------------------------------------------------------------
    def _refresh(self, model: nn.Module, step: int) -> None:
        if self.images.numel() == 0:  # first call: fill the whole pool, classes balanced
            idx = torch.arange(self.size, device=self.device)
            perm = torch.randperm(self.size, generator=self.rng, device=self.device)
            self.labels = (perm % self.k).long()
        else:
            n = max(1, int(round(self.cfg.refresh_fraction * self.size)))
            idx = (self.pointer + torch.arange(n, device=self.device)) % self.size
            self.pointer = int((self.pointer + n) % self.size)
        res = self._attack(model, self.labels[idx])
        if self.images.numel() == 0:  # images shaped like the generator's output
            self.images = torch.zeros((self.size, *res.images.shape[1:]), device=self.device)
        self.images[idx] = res.images.to(self.images.dtype)
        self.z[idx] = res.z.to(self.z.dtype)
        self.valid[idx] = res.success.to(self.device)
        if self.cfg.dedup_threshold > 0:
            self._dedup()
        self.n_valid = int(self.valid.sum())  # the attack has synchronised already
        self.last_refresh = step

    def _dedup(self) -> None:
        """Invalidate entries whose latent lies within the threshold of an earlier same-class
        entry (RMS distance per latent dimension); they are re-attacked at a later refresh."""
        v = self.valid.nonzero()[:, 0]
        if v.numel() < 2:
            return
        z, y = self.z[v], self.labels[v]
        dist = torch.cdist(z, z) / self.g.z_dim**0.5
        same = y[:, None] == y[None, :]
        close = same & (dist < self.cfg.dedup_threshold)
        close = torch.triu(close, diagonal=1)
        dup = close.any(0)
        self.valid[v[dup]] = False

    def generate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int):
        n = y.shape[0]
        if self.cfg.mode == "seed":
            res = self._attack(model, y).successes()
            return res.images.to(x.dtype), res.source.to(y.device)
        if self.images.numel() == 0 or step - self.last_refresh >= self.cfg.refresh_every:
            self._refresh(model, step)
        if self.n_valid == 0:
            return None
        # uniform over valid entries, drawn on the device: no host sync in the training step
        pick = torch.multinomial(self.valid.float(), n, replacement=True, generator=self.rng)
        return self.images[pick].to(x.dtype), self.labels[pick]

    # -- bookkeeping ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.get_state(),
            "images": self.images,
            "labels": self.labels,
            "z": self.z,
            "valid": self.valid,
            "pointer": self.pointer,
            "last_refresh": self.last_refresh,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.rng, state["rng"], int(self.rng.initial_seed()))
        for name in ("images", "labels", "z", "valid"):
            setattr(self, name, state[name].to(self.device))
        self.n_valid = int(self.valid.sum())
        self.pointer, self.last_refresh = state["pointer"], state["last_refresh"]
        self.stats = dict(state["stats"])

    def metrics(self) -> dict[str, float]:
        s = self.stats
        out: dict[str, float] = {}
        if s["attacked"]:
            out["uae_success"] = s["succeeded"] / s["attacked"]
            out["uae_mean_steps"] = s["steps_sum"] / s["attacked"]
            out["uae_attacked"] = s["attacked"]
        if self.cfg.mode == "pooled" and self.images.numel():
            out["pool_valid"] = self.valid.float().mean().item()
        return out
