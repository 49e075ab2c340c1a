"""The unrestricted (latent-space) attack: objective terms by hand, update rules, per-sample early
stopping, the success definition, model safety, the result object and its safetensors file."""

from __future__ import annotations

import dataclasses
import math
import zipfile

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from advaug.attacks import (
    FAST,
    SEED,
    SONG,
    AttackInputError,
    UnrestrictedAttack,
    UnrestrictedResult,
)
from advaug.attacks.unrestricted import (
    ac_loss,
    project_z,
    proximity_loss,
    targeted_loss,
    untargeted_loss,
)
from advaug.errors import DataError

from .toys import K, TinyD, ToyG, train_critic

# the presets' settings by name, as the attack's attributes carry them
SEED_PRESET, SONG_PRESET, FAST_PRESET = (dataclasses.asdict(p) for p in (SEED, SONG, FAST))


@pytest.fixture(scope="module")
def critic() -> TinyD:
    return train_critic()


def lse(row: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in row))


# ----------------------------------------------------------------------------- objective terms


def test_untargeted_loss_masks_the_source_even_when_it_is_largest() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, 5.0, 1.0], [0.0, 4.0, 1.0, 2.0]])
    source = torch.tensor([0, 2, 3])
    got = untargeted_loss(logits, source)
    # row 0/1: the source logit is the largest, the min over the others uses the runner-up
    want = [lse([3, 1, 0, -1]) - 1, lse([0, 2, 5, 1]) - 2, lse([0, 4, 1, 2]) - 4]
    assert torch.allclose(got, torch.tensor(want))
    # without masking, row 0 would give CE(source) = lse - 3, which is smaller
    assert got[0] > lse([3, 1, 0, -1]) - 3 + 1.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 7))
def test_untargeted_loss_is_min_over_other_classes(seed: int, k: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, k, generator=g) * 3
    source = torch.randint(0, k, (5,), generator=g)
    brute = torch.stack(
        [
            min(
                F.cross_entropy(logits[i : i + 1], torch.tensor([c])).item()
                for c in range(k)
                if c != source[i]
            )
            * torch.ones(())
            for i in range(5)
        ]
    )
    assert torch.allclose(untargeted_loss(logits, source), brute, atol=1e-5)


def test_targeted_and_ac_losses_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    want = torch.tensor([lse([1, 2, 3]) - 1, lse([0.5, -0.5, 0.0]) - 0.0])
    assert torch.allclose(targeted_loss(logits, torch.tensor([0, 2])), want)
    assert torch.allclose(ac_loss(logits, torch.tensor([0, 2])), want)


def test_proximity_hinge_and_l2ball_by_hand() -> None:
    z0 = torch.zeros(1, 3)
    z = torch.tensor([[0.05, 0.2, -0.3]])  # squares 0.0025, 0.04, 0.09; z_eps² = 0.01
    assert torch.allclose(proximity_loss(z, z0, 0.1, "hinge"), torch.tensor([0.11 / 3]))
    assert torch.allclose(proximity_loss(z, z0, 0.1, "l2ball"), torch.tensor([0.1325 / 3 - 0.01]))
    assert proximity_loss(z * 0.1, z0, 0.1, "hinge").item() == 0.0  # inside the box: no cost
    # per row, around a z⁰ other than 0; the hinge is the default
    z0 = torch.tensor([[1.0, -1.0, 2.0], [0.5, 0.5, 0.5]])
    z = z0 + torch.tensor([[0.05, 0.2, -0.3], [0.0, 0.0, 0.4]])
    hinge = torch.tensor([0.11 / 3, 0.15 / 3])
    assert torch.allclose(proximity_loss(z, z0, 0.1), hinge, atol=1e-6)
    l2ball = torch.tensor([0.1325 / 3 - 0.01, 0.16 / 3 - 0.01])
    assert torch.allclose(proximity_loss(z, z0, 0.1, "l2ball"), l2ball, atol=1e-6)
    with pytest.raises(AttackInputError):
        proximity_loss(z, z0, 0.1, "l1")


def test_objective_weights_the_terms(trained, critic) -> None:
    atk = UnrestrictedAttack(ToyG(), critic, trained, lambda1=2.0, lambda2=3.0, z_eps=0.1)
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    ac = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    z, z0 = torch.tensor([[0.05, 0.2, -0.3]]), torch.zeros(1, 3)
    terms = atk.objective(logits, ac, z, z0, torch.tensor([0]))
    adv, prox, acl = lse([3, 1, 0, -1]) - 1, 0.11 / 3, lse([0, 1, 0, 0]) - 0
    assert terms["adv"].item() == pytest.approx(adv, rel=1e-5)
    assert terms["z"].item() == pytest.approx(prox, rel=1e-5)
    assert terms["ac"].item() == pytest.approx(acl, rel=1e-5)
    assert terms["total"].item() == pytest.approx(adv + 2 * prox + 3 * acl, rel=1e-5)
    atk.z_proximity = "l2ball"  # the configured kind, not the default hinge
    terms = atk.objective(logits, ac, z, z0, torch.tensor([0]))
    assert terms["z"].item() == pytest.approx(0.1325 / 3 - 0.01, rel=1e-5)


# ----------------------------------------------------------------------------- update rules


def reference_grad(atk: UnrestrictedAttack, z: Tensor, source: Tensor) -> Tensor:
    """∇_z of the summed per-sample objective, computed directly (no attack loop)."""
    for m in (atk.generator, atk.critic, atk.classifier):
        m.eval()
    z = z.clone().requires_grad_(True)
    x = atk.generator(z, source)
    terms = atk.objective(atk.classifier(x), atk.critic(x)[1], z, z.detach(), source)
    (g,) = torch.autograd.grad(terms["total"].sum(), z)
    for m in (atk.generator, atk.critic, atk.classifier):
        m.train()
    return g


def test_adam_first_step_moves_each_coordinate_by_lr(trained, critic) -> None:
    g_, source = ToyG(), torch.tensor([0, 1, 2, 3])
    z = torch.randn(4, g_.z_dim, generator=torch.Generator().manual_seed(0))
    atk = UnrestrictedAttack(g_, critic, trained, steps=1, lr=0.05, early_stop=False)
    grad = reference_grad(atk, z, source)
    r = atk(source, z=z)
    assert torch.allclose(r.z, z - 0.05 * grad / (grad.abs() + 1e-8), atol=1e-6)
    assert torch.equal(r.z0, z) and (r.steps == 1).all()


def test_sgd_step_without_noise_is_gradient_over_grad_div(trained, critic) -> None:
    g_, source = ToyG(), torch.tensor([3, 2, 1])
    z = torch.randn(3, g_.z_dim, generator=torch.Generator().manual_seed(1))
    atk = UnrestrictedAttack(
        g_, critic, trained, steps=1, lr=0.5, optimizer="sgd-noise", eta0=0.0, grad_div=4.0,
        early_stop=False,
    )  # fmt: skip
    grad = reference_grad(atk, z, source)
    assert torch.allclose(atk(source, z=z).z, z - 0.5 * grad / 4.0, atol=1e-6)


class FlatG(nn.Module):
    """Images that do not depend on z (0·z keeps z in the graph): z moves by noise alone."""

    def __init__(self, z_dim: int = 64) -> None:
        super().__init__()
        self.z_dim, self.num_classes = z_dim, K
        self.level = nn.Parameter(torch.tensor(0.5))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        base = self.level + 0.02 * (y.float() - 1.5)
        return (base.view(-1, 1, 1, 1) + 0 * z.sum(1).view(-1, 1, 1, 1)).expand(-1, 3, 8, 8)


@pytest.mark.parametrize("steps", [1, 2])
def test_annealed_gradient_noise_has_the_seed_schedule(trained, critic, steps) -> None:
    n, lr, eta0, gamma = 2000, 0.5, 0.01, 0.55
    atk = UnrestrictedAttack(
        FlatG(), critic, trained, steps=steps, lr=lr, optimizer="sgd-noise", eta0=eta0,
        gamma=gamma, lambda1=0.0, early_stop=False, rng=torch.Generator().manual_seed(0),
        show_progress=False,
    )  # fmt: skip
    r = atk(torch.zeros(n, dtype=torch.long))
    var = sum(lr**2 * eta0 / (1 + t) ** gamma for t in range(steps))  # σ_t² = η0/(1+t)^γ
    assert (r.z - r.z0).std().item() == pytest.approx(math.sqrt(var), rel=0.03)
    assert abs((r.z - r.z0).mean().item()) < 0.01 * math.sqrt(var) * 10


def test_pixel_noise_is_a_normalised_step_and_is_returned(trained, critic) -> None:
    eps, noise_lr = 0.05, 3.0
    atk = UnrestrictedAttack(
        FlatG(), critic, trained, steps=1, optimizer="sgd-noise", eta0=0.0, noise_eps=eps,
        noise_lr=noise_lr, early_stop=False,
    )  # fmt: skip
    source = torch.tensor([0, 1, 2, 3])
    r = atk(source)
    clean = FlatG()(r.z, source)
    diff = r.images - clean
    assert diff.abs().max() > 0.005 and diff.abs().max() <= eps + 1e-6  # noise is in the images
    n = torch.atanh(diff / eps)  # recover the pre-tanh noise
    assert torch.allclose(n.flatten(1).norm(dim=1), torch.full((4,), noise_lr), atol=1e-3)


# ----------------------------------------------------------------------------- early stopping


class StepG(nn.Module):
    """Every pixel is sigmoid(z₀); two classes."""

    z_dim, num_classes = 2, 2

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.sigmoid(z[:, :1]).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)


class StepF(nn.Module):
    """Predicts class 0 iff the mean pixel exceeds 0.5 (iff z₀ > 0); records its batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        m = x.flatten(1).mean(1)
        return torch.stack([self.scale * (m - 0.5), torch.zeros_like(m)], dim=1)


class ConstD(nn.Module):
    """An AC head that always says ``cls``."""

    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = x.flatten(1).mean(1) * self.w
        logits = torch.stack([m, m], dim=1) + 5 * F.one_hot(torch.tensor(self.cls), 2)
        return m, logits


Z_STEP = torch.tensor([[1.0, 0.0], [-0.03, 0.0], [-100.0, 0.0]])


def step_attack(f: StepF, d: ConstD, early_stop: bool) -> UnrestrictedResult:
    atk = UnrestrictedAttack(
        StepG(), d, f, steps=5, lr=0.1, lambda1=0.0, early_stop=early_stop, show_progress=False
    )
    return atk(torch.ones(3, dtype=torch.long), z=Z_STEP)


def test_early_stop_compacts_finished_samples() -> None:
    f = StepF()
    r = step_attack(f, ConstD(1), early_stop=True)
    # sample 0 is fooled at once, sample 1 after one Adam step of exactly lr, sample 2 never
    assert r.success.tolist() == [True, True, False]
    assert r.steps.tolist() == [0, 1, 5]
    assert f.sizes == [3, 2, 1, 1, 1, 1]
    assert r.z[1, 0].item() == pytest.approx(0.07, abs=1e-6)  # recorded at its success step
    assert r.images[1].flatten()[0].item() == pytest.approx(torch.sigmoid(torch.tensor(0.07)))
    assert torch.equal(r.z[0], Z_STEP[0]) and r.clf_pred.tolist() == [0, 0, 1]


def test_without_early_stop_all_samples_run_all_steps() -> None:
    f = StepF()
    r = step_attack(f, ConstD(1), early_stop=False)
    assert f.sizes == [3] * 6 and r.steps.tolist() == [5, 5, 5]
    assert r.success.tolist() == [True, True, False]  # judged on the final images
    assert r.z[1, 0].item() > 0.07


def test_success_requires_ac_agreement() -> None:
    f = StepF()
    r = step_attack(f, ConstD(0), early_stop=True)  # C never says the source class (1)
    assert not r.success.any() and r.ac_pred.tolist() == [0, 0, 0]
    assert r.clf_pred[0].item() == 0  # f is fooled, yet it is no success
    assert f.sizes == [3] * 6 and r.steps.tolist() == [5, 5, 5]


class BatchStatsStepG(StepG):
    """StepG flagged like a generator whose eval-mode BN uses batch statistics."""

    bn_stats = "batch"


def test_batch_stats_generator_keeps_finished_samples_in_the_batch() -> None:
    f = StepF()
    atk = UnrestrictedAttack(
        BatchStatsStepG(), ConstD(1), f, steps=5, lr=0.1, lambda1=0.0, show_progress=False
    )
    r = atk(torch.ones(3, dtype=torch.long), z=Z_STEP)
    assert f.sizes == [3] * 6  # no compaction: batch statistics would change
    assert r.steps.tolist() == [0, 1, 5] and r.success.tolist() == [True, True, False]
    assert torch.equal(r.z[0], Z_STEP[0])  # frozen once done
    assert r.z[1, 0].item() == pytest.approx(0.07, abs=1e-6)
    f.sizes.clear()
    atk.compact = True  # explicit choice wins
    atk(torch.ones(3, dtype=torch.long), z=Z_STEP)
    assert f.sizes == [3, 2, 1, 1, 1, 1]


def test_steps_zero_evaluates_fresh_samples() -> None:
    f = StepF()
    atk = UnrestrictedAttack(StepG(), ConstD(1), f, steps=0, show_progress=False)
    r = atk(torch.ones(3, dtype=torch.long), z=Z_STEP)
    assert r.success.tolist() == [True, False, False] and f.sizes == [3]
    assert torch.equal(r.z, Z_STEP)


def test_predictions_at_z0_and_the_decomposed_success() -> None:
    # code 0 is misclassified before any update; codes 1 and 2 start correct, 1 is then fooled
    r = step_attack(StepF(), ConstD(1), early_stop=True)
    assert r.clf_pred0.tolist() == [0, 1, 1] and r.ac_pred0.tolist() == [1, 1, 1]
    d = r.decomposed_success()
    assert (d["n"], d["correct_at_z0"], d["wrong_at_z0"]) == (3, 2, 1)
    assert d["success_given_correct"] == 0.5 and d["successes_given_correct"] == 1
    assert d["share_wrong_at_z0"] == pytest.approx(1 / 3) and d["success_given_wrong"] == 1.0
    assert r.success_rate == pytest.approx(2 / 3)  # the blend the decomposition splits


def test_projection_holds_the_step_to_z_eps() -> None:
    f = StepF()
    atk = UnrestrictedAttack(
        StepG(), ConstD(1), f, steps=5, lr=0.1, lambda1=0.0, z_eps=0.05, z_project="linf",
        show_progress=False,
    )  # fmt: skip
    r = atk(torch.ones(3, dtype=torch.long), z=Z_STEP)
    # Adam's first step is lr = 0.1; the projection cuts it to z_eps = 0.05
    assert r.z[1, 0].item() == pytest.approx(-0.03 + 0.05, abs=1e-6)
    assert r.success.tolist() == [True, True, False]
    assert (r.z - r.z0).abs().max().item() <= 0.05 + 1e-6


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    z_eps=st.floats(0.001, 2.0),
    kind=st.sampled_from(["linf", "l2"]),
)
def test_project_z_lands_in_the_ball_and_keeps_points_inside(seed, z_eps, kind) -> None:
    g = torch.Generator().manual_seed(seed)
    z0, z = torch.randn(5, 7, generator=g), 3 * torch.randn(5, 7, generator=g)
    p = project_z(z, z0, z_eps, kind)
    d = (p - z0).double()
    size = d.abs().amax(1) if kind == "linf" else d.square().mean(1).sqrt()
    assert (size <= z_eps + 1e-5).all()  # float32 rounding of z⁰ + d − z⁰
    assert torch.allclose(project_z(p, z0, z_eps, kind), p, atol=1e-6)  # idempotent
    inside = z0 + (z - z0) * 1e-4 * z_eps
    assert torch.allclose(project_z(inside, z0, z_eps, kind), inside)


def test_project_z_none_is_the_identity_and_unknown_kinds_are_named() -> None:
    z, z0 = torch.randn(3, 4), torch.zeros(3, 4)
    assert project_z(z, z0, 0.01, "none") is z
    with pytest.raises(AttackInputError) as info:
        project_z(z, z0, 0.01, "box")
    assert str(info.value) == "z_project must be one of ('none', 'linf', 'l2'), got 'box'"
    with pytest.raises(AttackInputError) as info:
        proximity_loss(z, z0, 0.01, "l1")
    assert str(info.value) == "z_proximity must be one of ('hinge', 'l2ball'), got 'l1'"


@pytest.mark.parametrize("kind", ["linf", "l2"])
def test_latent_bound_holds_for_every_code_with_projection(trained, critic, kind) -> None:
    source = torch.arange(32) % K
    free = UnrestrictedAttack(ToyG(), critic, trained, lr=0.5, steps=8, early_stop=False)
    r_free = free(source, z=torch.randn(32, 64, generator=torch.Generator().manual_seed(2)))
    bound = UnrestrictedAttack(
        ToyG(), critic, trained, lr=0.5, steps=8, early_stop=False, z_project=kind
    )
    r = bound(source, z=r_free.z0)
    rms, mx = r.latent_distance()
    size = mx if kind == "linf" else rms
    assert float(size.max()) <= 0.1 * (1 + 1e-5)
    assert float((mx if kind == "linf" else r_free.latent_distance()[0]).min()) > 0
    free_size = r_free.latent_distance()[1 if kind == "linf" else 0]
    assert float(free_size.max()) > 0.1  # without it the soft L_z lets z leave the ball
    assert r.meta["z_project"] == kind


# ----------------------------------------------------------------------------- end to end


def check_consistent(r: UnrestrictedResult, f: nn.Module, d: nn.Module, targeted: bool) -> None:
    """Reported predictions are those of the returned images; success follows the definition."""
    f.eval(), d.eval()
    with torch.no_grad():
        assert torch.equal(r.clf_pred, f(r.images).argmax(1))
        assert torch.equal(r.ac_pred, d(r.images)[1].argmax(1))
    f.train(), d.train()
    fooled = r.clf_pred == r.target if targeted else r.clf_pred != r.source
    assert torch.equal(r.success, fooled & (r.ac_pred == r.source))


def test_untargeted_success_well_above_fresh_samples(trained, critic) -> None:
    g_, source = ToyG(), torch.arange(96) % K
    atk = UnrestrictedAttack(g_, critic, trained, rng=torch.Generator().manual_seed(0))
    r = atk(source)
    fresh = UnrestrictedAttack(g_, critic, trained, steps=0)(source, z=r.z0)
    assert fresh.success_rate < 0.1  # G's samples are recognised by f: the attack does the work
    assert r.success_rate > 0.8
    assert r.images.shape == (96, 3, 8, 8) and r.images.min() >= 0 and r.images.max() <= 1
    assert (r.target == -1).all() and r.meta["optimizer"] == "adam"
    check_consistent(r, trained, critic, targeted=False)


def test_targeted_attack(trained, critic) -> None:
    g_, source = ToyG(), torch.arange(64) % K
    target = (source + 1) % K
    atk = UnrestrictedAttack(g_, critic, trained, targeted=True, noise_eps=0.03)
    r = atk(source, target)
    assert torch.equal(r.target, target)
    assert r.success_rate > 0.5
    check_consistent(r, trained, critic, targeted=True)


def test_models_left_unchanged(trained, critic) -> None:
    g_ = ToyG().train()
    g_.fc.bias.requires_grad_(False)
    models = (g_, critic, trained)
    bufs = [b.clone() for m in models for b in m.buffers()]
    params = [p.clone() for m in models for p in m.parameters()]
    atk = UnrestrictedAttack(g_, critic, trained, steps=3, noise_eps=0.05, early_stop=False)
    atk(torch.arange(8) % K)
    assert all(m.training for mod in models for m in mod.modules())
    bufs_after = [b for m in models for b in m.buffers()]
    params_after = [p for m in models for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(bufs_after, bufs))
    assert all(torch.equal(a, b) for a, b in zip(params_after, params))
    assert all(p.grad is None for m in models for p in m.parameters())
    assert not g_.fc.bias.requires_grad and g_.fc.weight.requires_grad


def test_z0_is_the_initial_z_and_fresh_per_call(trained, critic) -> None:
    g_, source = ToyG(), torch.arange(6) % K
    atk = UnrestrictedAttack(g_, critic, trained, steps=2, rng=torch.Generator().manual_seed(5))
    r1, r2 = atk(source), atk(source)
    assert torch.equal(r1.z0, torch.randn(6, 64, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(r1.z0, r2.z0)
    z = torch.randn(6, 64)
    z_copy = z.clone()
    r3 = atk(source, z=z)
    assert torch.equal(r3.z0, z_copy) and torch.equal(z, z_copy)  # the caller's z is not changed


def test_chunking_gives_the_same_result(trained, critic) -> None:
    g_, source = ToyG(), torch.arange(10) % K
    z = torch.randn(10, 64, generator=torch.Generator().manual_seed(3))
    whole = UnrestrictedAttack(g_, critic, trained, steps=10, batch_size=16)(source, z=z)
    parts = UnrestrictedAttack(g_, critic, trained, steps=10, batch_size=3)(source, z=z)
    assert torch.equal(whole.steps, parts.steps) and torch.equal(whole.success, parts.success)
    assert torch.allclose(whole.images, parts.images, atol=1e-5)
    assert torch.allclose(whole.z, parts.z, atol=1e-5)


def test_input_validation(trained, critic) -> None:
    g_ = ToyG()
    atk = UnrestrictedAttack(g_, critic, trained)
    tgt = UnrestrictedAttack(g_, critic, trained, targeted=True)
    src = torch.tensor([0, 1])
    cases = [
        (lambda: atk(torch.tensor([0, K])), "classes in"),
        (lambda: atk(torch.tensor([0.0, 1.0])), "integer"),
        (lambda: atk(torch.tensor([], dtype=torch.long)), "empty"),
        (lambda: atk(src, torch.tensor([1, 0])), "targeted=True"),
        (lambda: tgt(src), "needs target"),
        (lambda: tgt(src, torch.tensor([0, 0])), "differ"),
        (lambda: atk(src, z=torch.zeros(2, 3)), "shape"),
        (lambda: UnrestrictedAttack(g_, critic, trained, optimizer="sgd"), "optimizer"),
        (lambda: UnrestrictedAttack(g_, critic, trained, z_proximity="box"), "z_proximity"),
        (lambda: UnrestrictedAttack(g_, critic, trained, z_project="box"), "z_project"),
        (lambda: UnrestrictedAttack(g_, critic, trained, lr=0.0), "lr"),
        (lambda: UnrestrictedAttack(g_, critic, trained, lambda1=-1.0), "lambda1"),
        (lambda: UnrestrictedAttack(g_, critic, trained, steps=-1), "steps"),
        (lambda: UnrestrictedAttack(nn.Linear(2, 2), critic, trained), "z_dim"),
        (lambda: UnrestrictedAttack.from_preset("nope", g_, critic, trained), "preset"),
    ]
    for call, match in cases:
        with pytest.raises(AttackInputError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_presets_match_the_spec(trained, critic) -> None:
    assert SEED_PRESET["lambda1"] == SEED_PRESET["lambda2"] == 0.1
    assert (SEED_PRESET["lr"], SEED_PRESET["steps"], SEED_PRESET["optimizer"]) == (
        0.1,
        500,
        "sgd-noise",
    )
    assert (SEED_PRESET["eta0"], SEED_PRESET["gamma"], SEED_PRESET["targeted"]) == (0.01, 0.55, 0)
    assert SONG_PRESET["lambda1"] == SONG_PRESET["lambda2"] == 100.0
    assert (SONG_PRESET["lr"], SONG_PRESET["steps"], SONG_PRESET["z_eps"]) == (1.0, 1000, 0.1)
    assert FAST_PRESET["optimizer"] == "adam" and FAST_PRESET["steps"] <= 50
    assert FAST_PRESET["early_stop"]
    atk = UnrestrictedAttack.from_preset("seed", ToyG(), critic, trained, steps=3)
    assert atk.steps == 3 and atk.optimizer == "sgd-noise" and atk.noise_eps == 0.05
    r = atk(torch.arange(4) % K)
    assert (r.steps == 3).all() and r.meta["lambda1"] == 0.1
    default = UnrestrictedAttack(ToyG(), critic, trained)
    assert all(getattr(default, k) == v for k, v in FAST_PRESET.items())


# ----------------------------------------------------------------------------- result object


def hand_result() -> UnrestrictedResult:
    n = 6
    return UnrestrictedResult(
        images=torch.rand(n, 3, 4, 4),
        z=torch.randn(n, 5),
        z0=torch.randn(n, 5),
        source=torch.tensor([0, 0, 1, 1, 1, 3]),
        target=torch.full((n,), -1),
        success=torch.tensor([True, False, True, True, False, False]),
        steps=torch.tensor([2, 10, 4, 6, 10, 10]),
        clf_pred=torch.tensor([1, 0, 2, 0, 1, 3]),
        ac_pred=torch.tensor([0, 0, 1, 1, 2, 3]),
        meta={"attack": "unrestricted", "lr": 0.05},
    )


def test_result_summaries_by_hand() -> None:
    r = hand_result()
    assert len(r) == 6 and r.success_rate == pytest.approx(0.5)
    assert r.successes().steps.tolist() == [2, 4, 6] and len(r.failures()) == 3
    assert r.steps_percentiles((0, 50, 100)) == {0: 2.0, 50: 4.0, 100: 6.0}
    assert r.steps_percentiles((50,), successes_only=False)[50] == 8.0
    rates = r.per_class_success(5)
    assert rates[:2].tolist() == [0.5, pytest.approx(2 / 3)] and rates[3].item() == 0.0
    assert math.isnan(rates[2].item()) and math.isnan(rates[4].item())
    assert math.isnan(r.failures().steps_percentiles((50,))[50])
    assert math.isnan(r.select(torch.zeros(6, dtype=torch.bool)).success_rate)


def test_safetensors_round_trip_without_pickle(tmp_path) -> None:
    r = hand_result()
    path = r.save(tmp_path / "sub" / "uae.safetensors")
    raw = path.read_bytes()
    assert raw[8:9] == b"{" and raw[:1] != b"\x80" and not zipfile.is_zipfile(path)
    back = UnrestrictedResult.load(path)
    for name in UnrestrictedResult._TENSORS:
        a, b = getattr(r, name), getattr(back, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert back.meta == r.meta
    assert [p.name for p in path.parent.iterdir()] == ["uae.safetensors"]  # no temp file left


def test_latent_percentiles_by_hand_and_version_1_files_read_back(tmp_path) -> None:
    r = hand_result()
    r.z0 = torch.zeros(6, 5)
    r.z = torch.zeros(6, 5)
    r.z[0, 0], r.z[2, :] = 2.0, -1.0  # successes: rows 0, 2, 3
    pct = r.latent_percentiles((0, 50, 100))
    assert pct["max"] == {0: 0.0, 50: 1.0, 100: 2.0}
    assert pct["rms"] == {0: 0.0, 50: pytest.approx(2 / 5**0.5), 100: 1.0}
    assert r.latent_percentiles((50,), successes_only=False)["max"][50] == 0.0
    from safetensors.torch import save

    # a file written before version 2: no z⁰ predictions; they read back as unknown
    cols = {k: getattr(r, k) for k in r._TENSORS if k not in ("clf_pred0", "ac_pred0")}
    header = {"format": "advaug.UnrestrictedResult", "version": 1, "meta": {}}
    path = tmp_path / "v1.safetensors"
    path.write_bytes(save(cols, metadata={"advaug": __import__("json").dumps(header)}))
    old = UnrestrictedResult.load(path)
    assert (old.clf_pred0 == -1).all() and old.decomposed_success()["correct_at_z0"] is None


def test_load_rejects_missing_and_foreign_files(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(DataError, match="no unrestricted-attack result"):
        UnrestrictedResult.load(tmp_path / "absent.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DataError, match="not an advaug"):
        UnrestrictedResult.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(DataError, match="not a readable"):
        UnrestrictedResult.load(tmp_path / "junk.safetensors")
