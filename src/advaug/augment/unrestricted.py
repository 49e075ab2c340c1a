"""Unrestricted-adversarial augmentation, made cheap with a cached latent pool.

``pooled`` (default): a pool of ``pool_size`` (z, y) codes is attacked against the current
classifier once, then ``refresh_fraction`` of it (oldest first) is re-attacked every
``refresh_every`` steps, with a step budget and per-sample early stopping. An entry is *valid*
when its attack succeeded (f fooled, the AC head still sees the source class). Each training
batch draws its n_a examples from the valid entries.

An entry lives ``refresh_every / refresh_fraction`` steps (200 by default) while the model
learns, so it may stop fooling the model long before it is re-attacked. With ``recheck`` (the
default) every draw is re-checked against the current model in one eval-mode forward (its mode
restored, no gradient): only the entries f still gets wrong carry loss (the ``keep`` mask of
:mod:`advaug.augment.base`, fixed shapes and no host sync), and those f now gets right are
marked invalid, so they are not drawn again until their refresh re-attacks them. Filtering,
rather than re-attacking at once, costs one forward per step instead of a latent search, and
trains only on current adversarial examples; the price is a smaller n_a when the pool goes
stale, which the log shows. The AC head's verdict needs no re-check: the GAN does not change.

The technique logs, per epoch record (``metrics.jsonl``): ``pool_valid`` (share of the pool
valid now), ``pool_still_adv`` (share of the drawn valid entries that still fooled the model),
``pool_age_mean`` / ``pool_age_max`` (steps since the attack of the entries trained on),
``pool_reuse_mean`` (times an entry was trained on before its refresh, over the entries
refreshed in the record's window) and ``pool_draws``.

Optionally (``dedup_threshold``) entries whose latents collapse onto another entry of the same
class are re-drawn at the next refresh, which keeps the pool diverse.

``seed``: the seed's schedule for comparison: every batch attacks fresh codes for the batch's
labels (no early stop, the seed preset's grad_div and gradient noise) and uses the successful,
AC-agreeing ones, which fool the current model by construction. The section's optimizer, lr,
lambda1, lambda2, z_eps, z_project and noise_eps hold in both modes (``paper`` sets the seed's).

The attack's settings come from :meth:`~advaug.config.UnrestrictedAugConfig.attack_config`.
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
        self.born = torch.zeros(self.size, dtype=torch.long, device=device)  # step attacked
        self.uses = torch.zeros(self.size, dtype=torch.long, device=device)  # times trained on
        self.window = self._empty_window()
        self.n_valid = 0  # host copy of valid.sum(), refreshed only when the pool changes
        self.pointer = 0  # next pool entry to refresh
        self.last_refresh = -1
        self.stats = {"attacked": 0, "succeeded": 0, "steps_sum": 0}
        self.attack_batch = cfg.attack_batch  # lowered if the device runs out of memory
        if cfg.mode == "seed":
            log.info("unrestricted technique, mode seed: attack %s", cfg.attack_config())

    def _empty_window(self) -> dict[str, torch.Tensor]:
        """The draw statistics since the last record, as device tensors (no host sync)."""
        z = torch.zeros((), dtype=torch.long, device=self.device)
        return {
            "draws": z.clone(),  # drawn entries that were valid
            "kept": z.clone(),  # of those, still fooling the model
            "age_sum": z.clone(),  # summed age of the kept ones
            "age_max": z.clone(),
            "retired": z.clone(),  # entries re-attacked at refreshes
            "retired_uses": z.clone(),  # their summed use counts
        }

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
        first = self.images.numel() == 0
        if not first:
            self.window["retired"] += idx.numel()
            self.window["retired_uses"] += self.uses[idx].sum()
        res = self._attack(model, self.labels[idx])
        if first:  # images shaped like the generator's output
            self.images = torch.zeros((self.size, *res.images.shape[1:]), device=self.device)
        self.born[idx] = step
        self.uses[idx] = 0
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
        # (re-checks may have invalidated every entry since n_valid was counted: then draw
        # uniformly, and the keep mask drops them all)
        w = self.valid.float()
        w = w + (w.sum() == 0).float()
        pick = torch.multinomial(w, n, replacement=True, generator=self.rng)
        images, labels = self.images[pick].to(x.dtype), self.labels[pick]
        valid = self.valid[pick]
        if not self.cfg.recheck:
            self._account(pick, valid, valid, step)
            return images, labels
        keep = self._recheck(model, images, labels) & valid
        # duplicates in pick carry equal values (same image, same model), so scatter is exact
        self.valid.scatter_(0, pick, keep)
        self._account(pick, valid, keep, step)
        return images, labels, keep

    @staticmethod
    @torch.no_grad()
    def _recheck(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Which drawn images the current model still gets wrong: one eval-mode forward, no
        gradient, the model's mode restored."""
        was = model.training
        model.eval()
        try:
            return model(images).argmax(1) != labels
        finally:
            model.train(was)

    @torch.no_grad()
    def _account(
        self, pick: torch.Tensor, valid: torch.Tensor, keep: torch.Tensor, step: int
    ) -> None:
        """Count the uses of the kept entries and the draw statistics (device ops only)."""
        self.uses.index_add_(0, pick, keep.long())
        age = (step - self.born[pick]) * keep
        win = self.window
        win["draws"] += valid.sum()
        win["kept"] += keep.sum()
        win["age_sum"] += age.sum()
        win["age_max"] = torch.maximum(win["age_max"], age.max())
        return keep

    # -- bookkeeping ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.get_state(),
            "images": self.images,
            "labels": self.labels,
            "z": self.z,
            "valid": self.valid,
            "born": self.born,
            "uses": self.uses,
            "window": dict(self.window),
            "pointer": self.pointer,
            "last_refresh": self.last_refresh,
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore_generator(self.rng, state["rng"], int(self.rng.initial_seed()))
        for name in ("images", "labels", "z", "valid"):
            setattr(self, name, state[name].to(self.device))
        # checkpoints from before the re-check lack the ages and use counts: they start at 0
        for name in ("born", "uses"):
            if name in state:
                setattr(self, name, state[name].to(self.device))
        self.window = self._empty_window()
        for name, value in state.get("window", {}).items():
            self.window[name] = value.to(self.device)
        self.n_valid = int(self.valid.sum())
        self.pointer, self.last_refresh = state["pointer"], state["last_refresh"]
        self.stats = dict(state["stats"])

    def metrics(self) -> dict[str, float]:
        """The attack's running numbers, and the pool's since the last call (one record);
        ``pool_still_adv`` only with ``recheck`` (without it every valid draw is used)."""
        s = self.stats
        out: dict[str, float] = {}
        if s["attacked"]:
            out["uae_success"] = s["succeeded"] / s["attacked"]
            out["uae_mean_steps"] = s["steps_sum"] / s["attacked"]
            out["uae_attacked"] = s["attacked"]
        if self.cfg.mode == "pooled" and self.images.numel():
            out["pool_valid"] = self.valid.float().mean().item()
            w = {k: int(v) for k, v in self.window.items()}
            self.window = self._empty_window()
            out["pool_draws"] = w["draws"]
            if w["draws"] and self.cfg.recheck:
                out["pool_still_adv"] = w["kept"] / w["draws"]
            if w["kept"]:
                out["pool_age_mean"] = w["age_sum"] / w["kept"]
                out["pool_age_max"] = w["age_max"]
            if w["retired"]:
                out["pool_reuse_mean"] = w["retired_uses"] / w["retired"]
        return out
