from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from advaug.augment.base import forward_mixed, mixed_loss, split_batch


def test_mixed_loss_matches_the_seed_formula_by_hand():
    # seed defaults: B=64, prop=0.5 -> n_a=n_c=32, lambda=0.3: (Lc + 0.3 La) / 1.3
    lc, la = torch.tensor(2.0), torch.tensor(5.0)
    got = mixed_loss(lc, la, 32, 32, 0.3)
    assert got.item() == pytest.approx((32 * 2.0 + 0.3 * 32 * 5.0) / (32 + 0.3 * 32))
    assert got.item() == pytest.approx((2.0 + 0.3 * 5.0) / 1.3)


def test_mixed_loss_edge_cases():
    lc, la = torch.tensor(1.5), torch.tensor(4.0)
    assert mixed_loss(lc, None, 10, 0, 1.0).item() == 1.5
    assert mixed_loss(lc, la, 10, 0, 1.0).item() == 1.5
    assert mixed_loss(lc, la, 0, 5, 1.0).item() == 4.0
    # lambda = 1 is the plain mean over all examples
    assert mixed_loss(lc, la, 3, 1, 1.0).item() == pytest.approx((3 * 1.5 + 4.0) / 4)


@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 64), prop=st.floats(0, 1), mode=st.sampled_from(["replace", "append"]))
def test_split_sizes(b, prop, mode):
    x = torch.arange(b).float()[:, None]
    y = torch.arange(b)
    s = split_batch(x, y, prop, mode)
    n_a = math.floor(prop * b)
    assert s.x_src.shape[0] == n_a
    if mode == "replace":
        assert s.x_clean.shape[0] == b - n_a
        # the replaced examples are not also used clean
        assert set(s.y_src.tolist()).isdisjoint(s.y_clean.tolist())
    else:
        assert s.x_clean.shape[0] == b


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    )


def test_forward_mixed_equals_hand_computation_in_joint_mode():
    model = _tiny().train()
    xc, yc = torch.randn(6, 3, 2, 2), torch.randint(3, (6,))
    xa, ya = torch.randn(2, 3, 2, 2), torch.randint(3, (2,))
    loss, stats = forward_mixed(model, xc, yc, (xa, ya), weight=0.3, bn="joint")
    logits = model(torch.cat([xc, xa]))
    lc = F.cross_entropy(logits[:6], yc)
    la = F.cross_entropy(logits[6:], ya)
    assert loss.item() == pytest.approx(((6 * lc + 0.3 * 2 * la) / (6 + 0.6)).item(), rel=1e-6)
    assert stats["clean_n"].item() == 6 and stats["aug_n"].item() == 2


def test_separate_mode_uses_separate_batch_statistics():
    model = _tiny().train()
    xc, yc = torch.randn(6, 3, 2, 2), torch.randint(3, (6,))
    xa, ya = torch.randn(4, 3, 2, 2) * 5 + 3, torch.randint(3, (4,))
    joint, _ = forward_mixed(model, xc, yc, (xa, ya), weight=1.0, bn="joint")
    sep, _ = forward_mixed(model, xc, yc, (xa, ya), weight=1.0, bn="separate")
    hand = (6 * F.cross_entropy(model(xc), yc) + 4 * F.cross_entropy(model(xa), ya)) / 10
    assert sep.item() == pytest.approx(hand.item(), rel=1e-6)
    assert abs(joint.item() - sep.item()) > 1e-4


def test_technique_call_skips_an_empty_batch_and_defaults_are_empty():
    from advaug.augment.base import Technique

    calls = []

    class Echo(Technique):
        def generate(self, model, x, y, step):
            calls.append(step)
            return x + 1, y

    x, y = torch.zeros(2, 3, 2, 2), torch.tensor([0, 1])
    assert Echo()(None, x[:0], y[:0], step=3) is None and calls == []
    out = Echo()(None, x, y, step=4)
    assert calls == [4] and torch.equal(out[0], x + 1) and torch.equal(out[1], y)
    base = Technique()
    assert base(None, x, y, 0) is None
    assert (base.name, base.needs_gan, base.state_dict(), base.metrics()) == ("none", False, {}, {})


def _ce(logits, y, smoothing=0.0):
    return F.cross_entropy(logits, y, label_smoothing=smoothing)


@pytest.mark.parametrize("bn", ["joint", "separate"])
def test_forward_mixed_without_augmented_rows_is_the_clean_loss(bn):
    """aug None or empty: the clean CE alone, zero augmented counts, no forward of an empty batch
    (BatchNorm in train mode refuses one)."""
    model = _tiny().train()
    xc, yc = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        expect = _ce(model(xc), yc, 0.1)
        correct = (model(xc).argmax(1) == yc).sum()
    for aug in (None, (xc[:0], yc[:0])):
        loss, stats = forward_mixed(model, xc, yc, aug, weight=0.3, bn=bn, label_smoothing=0.1)
        assert loss.item() == pytest.approx(expect.item(), rel=1e-6)
        assert stats["aug_n"].item() == 0 and stats["aug_correct"].item() == 0
        assert stats["clean_n"].item() == 6 and stats["clean_correct"].item() == correct.item()


def test_forward_mixed_one_augmented_row_counts():
    model = _tiny().eval()
    xc, yc = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    xa, ya = torch.randn(1, 3, 2, 2), torch.tensor([2])
    loss, stats = forward_mixed(model, xc, yc, (xa, ya), weight=0.5, bn="joint")
    with torch.no_grad():
        hand = (4 * _ce(model(xc), yc) + 0.5 * _ce(model(xa), ya)) / 4.5
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)
    assert stats["aug_n"].item() == 1


def test_forward_mixed_all_augmented_in_separate_mode():
    """n_c = 0 (prop 1): no clean forward (an empty batch), the loss is the augmented CE."""
    model = _tiny().train()
    xa, ya = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    empty = torch.zeros(0, 3, 2, 2)
    loss, stats = forward_mixed(model, empty, ya[:0], (xa, ya), weight=0.3, bn="separate")
    assert loss.item() == pytest.approx(_ce(model(xa), ya).item(), rel=1e-6)
    assert stats["clean_n"].item() == 0 and stats["clean_correct"].item() == 0


def test_forward_mixed_casts_augmented_images_to_the_clean_dtype():
    """A technique may hand back float64 (or bf16) images: they join the batch in its dtype."""
    model = _tiny().eval()
    xc, yc = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    xa, ya = torch.randn(2, 3, 2, 2), torch.tensor([2, 1])
    ref, _ = forward_mixed(model, xc, yc, (xa, ya), weight=0.3, bn="joint")
    got, _ = forward_mixed(model, xc, yc, (xa.double(), ya), weight=0.3, bn="joint")
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_forward_mixed_label_smoothing_reaches_both_parts():
    model = _tiny().eval()
    xc, yc = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    xa, ya = torch.randn(2, 3, 2, 2), torch.tensor([2, 1])
    loss, _ = forward_mixed(model, xc, yc, (xa, ya), weight=1.0, bn="separate", label_smoothing=0.2)
    with torch.no_grad():
        hand = (4 * _ce(model(xc), yc, 0.2) + 2 * _ce(model(xa), ya, 0.2)) / 6
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 16), prop=st.floats(0, 1), mode=st.sampled_from(["replace", "append"]))
def test_split_labels_follow_their_images(b, prop, mode):
    x, y = torch.arange(b).float()[:, None], torch.arange(b) + 100
    s = split_batch(x, y, prop, mode)
    assert torch.equal(s.y_src, s.x_src[:, 0].long() + 100)
    assert torch.equal(s.y_clean, s.x_clean[:, 0].long() + 100)


def test_mixed_loss_with_one_clean_example_and_a_missing_augmented_loss():
    lc, la = torch.tensor(1.5), torch.tensor(4.0)
    assert mixed_loss(lc, la, 1, 1, 1.0).item() == pytest.approx(2.75)
    assert mixed_loss(lc, None, 10, 5, 1.0).item() == 1.5  # nothing came back: clean alone


def _stats(stats):
    return {k: v.dtype for k, v in stats.items()}, {k: v.item() for k, v in stats.items()}


@pytest.mark.parametrize("n_c", [0, 4])
@pytest.mark.parametrize("kept", [[True, False, False], [True, False, True]])
def test_masked_forward_equals_the_forward_of_the_kept_rows(n_c, kept):
    """(x_a, y_a, keep) gives the loss and every stat of (x_a[keep], y_a[keep]), label smoothing
    included, with one kept row too; counts are int64 on both paths."""
    torch.manual_seed(1)
    model = _tiny().eval()
    xc, yc = torch.randn(n_c, 3, 2, 2), torch.arange(n_c) % 3
    xa, ya, keep = torch.randn(3, 3, 2, 2), torch.tensor([2, 1, 0]), torch.tensor(kept)
    kw = {"weight": 0.3, "bn": "separate", "label_smoothing": 0.1}
    masked, stats = forward_mixed(model, xc, yc, (xa, ya, keep), **kw)
    plain, ref = forward_mixed(model, xc, yc, (xa[keep], ya[keep]), **kw)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)
    (dtypes, values), (ref_dtypes, ref_values) = _stats(stats), _stats(ref)
    assert dtypes == ref_dtypes and values == pytest.approx(ref_values, rel=1e-6)
    with torch.no_grad():
        assert stats["aug_correct"].item() == ((model(xa).argmax(1) == ya) & keep).sum().item()
        if n_c:
            assert stats["clean_correct"].item() == (model(xc).argmax(1) == yc).sum().item()
    assert stats["clean_n"].dtype == stats["aug_n"].dtype == torch.long
