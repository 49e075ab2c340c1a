from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advaug.attacks import UnrestrictedResult
from advaug.evaluate.uae import (
    balanced_sources,
    legitimacy,
    nearest_neighbours,
    summarize,
    within_class_spread,
)


def _result(n: int, success: list[bool], source: list[int]) -> UnrestrictedResult:
    return UnrestrictedResult(
        images=torch.rand(n, 3, 32, 32),
        z=torch.zeros(n, 4),
        z0=torch.zeros(n, 4),
        source=torch.tensor(source),
        target=torch.full((n,), -1),
        success=torch.tensor(success),
        steps=torch.tensor([3] * n),
        clf_pred=torch.zeros(n, dtype=torch.long),
        ac_pred=torch.tensor(source),
    )


class _Const(nn.Module):
    """Predicts a fixed class for every input."""

    def __init__(self, k: int, c: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.k, self.c = k, c

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.k) + self.w
        out[:, self.c] = 1
        return out


def test_legitimacy_counts_successes_kept_in_source_class():
    res = _result(4, [True, True, False, True], [2, 1, 2, 2])
    # the reference always says class 2: successes have sources 2, 1, 2 -> 2 of 3 legitimate
    assert legitimacy(res, _Const(3, 2)) == pytest.approx(2 / 3)
    assert math.isnan(legitimacy(_result(2, [False, False], [0, 1]), _Const(3, 2)))


def test_nearest_neighbours_in_pixel_space_by_hand():
    train = torch.zeros(5, 3, 2, 2, dtype=torch.uint8)
    for i in range(5):
        train[i] = i * 50
    q = torch.full((2, 3, 2, 2), 101 / 255)  # closest to image 2 (100/255)
    q[1] = 1.0  # closest to image 4 (200/255)
    idx, dist = nearest_neighbours(q, train, k=2, chunk=2)
    assert idx[:, 0].tolist() == [2, 4]
    assert idx[0, 1].item() in (1, 3)
    assert dist[0, 0].item() == pytest.approx(math.sqrt(12) * 1 / 255, rel=1e-4)


def test_within_class_spread_by_hand():
    feats = torch.tensor([[0.0, 0], [3, 4], [0, 0], [0, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: distance 5; class 1: distance 0 -> mean 2.5
    assert within_class_spread(feats, labels) == pytest.approx(2.5)


def test_balanced_sources_and_summary():
    src = balanced_sources(20, 10, seed=0, device=torch.device("cpu"))
    assert torch.bincount(src, minlength=10).tolist() == [2] * 10
    res = _result(4, [True, False, True, True], [0, 0, 1, 1])
    s = summarize(res, 2, ["a", "b"])
    assert s["success_rate"] == 0.75
    assert s["per_class_success"] == {"a": 0.5, "b": 1.0}
    assert s["steps_p50"] == 3


# ------------------------------------------------------------ decomposed success, baselines


class _StepG(nn.Module):
    """Two classes; every pixel is sigmoid(z₀)."""

    z_dim, num_classes = 2, 2

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, z, y):
        return torch.sigmoid(z[:, :1] + self.w).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)


class _MeanF(nn.Module):
    """Predicts class 0 iff the mean pixel exceeds 0.5 (iff z₀ > 0)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        m = x.flatten(1).mean(1)
        return torch.stack([self.scale * (m - 0.5), torch.zeros_like(m)], dim=1)


class _ConstD(nn.Module):
    """An AC head that always says class ``c``."""

    def __init__(self, c: int):
        super().__init__()
        self.c, self.w = c, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        m = x.flatten(1).mean(1) * self.w
        return m, torch.stack([m, m], 1) + 5 * nn.functional.one_hot(torch.tensor(self.c), 2)


def _toy_result() -> UnrestrictedResult:
    """Source 1 for three codes: code 0 starts misclassified (z₀ > 0), code 1 is fooled after
    one Adam step of 0.1, code 2 never."""
    from advaug.attacks import UnrestrictedAttack

    atk = UnrestrictedAttack(
        _StepG(), _ConstD(1), _MeanF(), steps=5, lr=0.1, lambda1=0.0, show_progress=False
    )
    return atk(torch.ones(3, dtype=torch.long), z=torch.tensor([[1.0, 0], [-0.03, 0], [-100, 0]]))


def test_measures_separate_the_attack_from_codes_already_misclassified():
    from advaug.evaluate.uae import uae_measures

    r = _toy_result()
    m = uae_measures(r, _StepG(), reference=_MeanF())
    assert m["success"] == {"value": pytest.approx(2 / 3), "n": 3}  # the blend
    assert m["success_correct"] == {"value": 0.5, "n": 2}  # the attack's own success
    assert m["clean_wrong_rate"] == {"value": pytest.approx(1 / 3), "n": 3}
    # the reference (here f itself) gets both successes wrong, and 2 of 3 clean G(z⁰, s) right
    assert m["legit"] == {"value": 0.0, "n": 2}
    assert m["legit_clean"] == {"value": pytest.approx(2 / 3), "n": 3}
    assert m["ac_agree_clean"] == {"value": 1.0, "n": 3}
    assert m["ac_agree_success"] == {"value": 1.0, "n": 2}
    # successes moved 0 (code 0) and 0.1 in one of two coordinates (code 1)
    assert m["dz_max_p50"]["value"] == pytest.approx(0.05, abs=1e-6)
    assert m["dz_max_p99"]["value"] == pytest.approx(0.099, abs=1e-5)
    assert m["dz_rms_p90"]["value"] == pytest.approx(0.09 / 2**0.5, abs=1e-5)
    assert m["dz_rms_p50"]["n"] == 2


def test_summary_reports_the_decomposition_and_latent_percentiles():
    s = summarize(_toy_result(), 2, None)
    assert s["decomposed"]["correct_at_z0"] == 2 and s["successes"] == 2
    assert s["latent_distance_over_successes"]["max_p50"] == pytest.approx(0.05, abs=1e-6)


def test_targeted_pairs_reports_every_ordered_pair():
    from advaug.attacks import FAST
    from advaug.evaluate.uae import targeted_pairs

    # the AC head always says 1: every 0 → 1 code fails; 1 → 0 succeeds when f can be moved
    tp = targeted_pairs(
        _StepG(), _ConstD(1), _MeanF(), 3, FAST.replace(steps=30, lr=0.5, lambda1=0.0), seed=0
    )
    assert (tp["pairs"], tp["per_pair"], tp["n"]) == (2, 3, 6)
    assert tp["matrix"][0][0] is None and tp["matrix"][0][1] == 0.0
    assert tp["min"] == 0.0 and tp["min_pair"] == [0, 1]
    assert tp["max_pair"] == [1, 0] and tp["max"] == tp["matrix"][1][0] > 0
    assert tp["mean"] == pytest.approx((tp["min"] + tp["max"]) / 2)


def test_protocol_names_the_settings_that_differ_from_training():
    from advaug.config import EvalConfig, UnrestrictedAugConfig
    from advaug.evaluate.uae import attack_protocol

    ev, tr = EvalConfig().uae_attack(), UnrestrictedAugConfig().attack_config()
    line = attack_protocol(ev, 200, 0, tr)
    assert "lambda1 0.1 vs 1.0" in line and "lambda2 0.1 vs 1.0" in line
    assert "lr " not in line.split("differs")[1] and "\n" not in line
    same = attack_protocol(ev, 200, 0, ev)
    assert same.endswith("the same settings as the training attack")
    assert "projection none" in attack_protocol(ev, 200, 0)


def test_evaluate_model_reports_every_uae_measure_with_its_count():
    from advaug.config import EvalConfig
    from advaug.evaluate.suite import evaluate_model

    class Pair:
        generator, critic = _StepG(), _ConstD(1)

    cfg = EvalConfig(
        fgsm_eps=[], pgd_steps=1, robust_samples=4, gan_samples_per_class=0, uae_samples=6,
        uae_steps=3, uae_targeted_per_pair=2, batch_size=8,
    )  # fmt: skip
    x, y = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    res = evaluate_model(
        _MeanF(), x, y, cfg, dataset="toy", gan=Pair(), reference=_MeanF(), seed=0,
        train_attack=cfg.uae_attack().replace(lambda1=0.1),
    )  # fmt: skip
    m = res["metrics"]
    for key in ("uae_success_correct", "uae_clean_wrong_rate", "uae_legit", "uae_legit_clean",
                "uae_ac_agree_clean", "uae_dz_rms_p99", "uae_dz_max_p50",
                "uae_targeted_success_mean"):  # fmt: skip
        assert key in m and "n" in m[key], key
    assert m["uae_success"]["n"] == m["uae_legit_clean"]["n"] == 6
    assert m["uae_targeted_success_mean"]["n"] == 4  # 2 pairs x 2 codes
    # the worst and best pair: one pair's codes, picked from all pairs, so no interval
    for key in ("uae_targeted_success_min", "uae_targeted_success_max"):
        assert "n" not in m[key] and "no interval" in m[key]["protocol"], key
    assert "lambda1 0.1 vs 1.0" in m["uae_success"]["protocol"]


# ------------------------------------------------------------ the command's parts, by hand


def test_check_out_refuses_unwritable_folders_before_any_work(tmp_path):
    from advaug.errors import ConfigError
    from advaug.evaluate.uae import check_out

    assert check_out(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"  # made later
    assert not (tmp_path / "a").exists()
    assert check_out(str(tmp_path), "--out") == tmp_path
    f = tmp_path / "file.txt"
    f.write_text("x")
    cases = [
        ("  ", "--out is empty; give a folder to write into"),
        (f, f"--out {f} is a file, not a folder; give a folder to write into"),
        (f / "sub", f"cannot create --out folder {f / 'sub'}: {f} is a file; choose another"),
    ]
    for out, message in cases:
        with pytest.raises(ConfigError) as info:
            check_out(out, "--out")
        assert str(info.value) == message


def test_check_out_refuses_a_read_only_parent(tmp_path, monkeypatch):
    import os

    from advaug.errors import ConfigError
    from advaug.evaluate import uae

    asked = []
    monkeypatch.setattr(uae.os, "access", lambda p, mode: asked.append((p, mode)) or False)
    with pytest.raises(ConfigError) as info:
        uae.check_out(tmp_path / "new", "--dir")
    assert str(info.value) == (
        f"cannot write --dir folder {tmp_path / 'new'}: {tmp_path} is not writable"
    )
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]


def test_summary_lines_show_the_decomposed_success_first():
    from advaug.evaluate.uae import _pct, _summary_lines, uae_measures

    assert _pct({"value": 0.25, "n": 8}) == "25.0% of 8"
    assert _pct({"value": None, "n": 0}) == "n/a of 0"
    assert _pct({"value": math.nan, "n": 0}) == "n/a of 0"
    r = _toy_result()
    s = summarize(r, 2, None)
    s["measures"] = uae_measures(r)
    lines = _summary_lines(s, 3)
    assert lines[0] == "attack success (codes f classified correctly at z⁰): 50.0% of 2"
    assert lines[1] == "already misclassified at z⁰: 33.3% of 3; success over all 3 codes: 66.7%"
    assert lines[2].startswith("steps to success: p50 ")
    assert lines[3].startswith("|z − z⁰| over successes: RMS p50/p90/p99 0.0354/")
    assert lines[4] == "AC head agrees with the source: clean 100.0% of 3, successes 100.0% of 2"
    assert len(lines) == 5
    s["measures"] = uae_measures(r, _StepG(), reference=_MeanF())
    lines = _summary_lines(s, 3)
    assert lines[5] == (
        "legitimacy (independent classifier keeps source): 0.0% of 2 successes; "
        "baseline on the clean G(z⁰, s): 66.7% of 3"
    )


class _Rows(nn.Module):
    """Logits = the first pixel of each of K channels (so row i predicts its brightest channel);
    records the batch sizes it sees."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return x[:, :, 0, 0] * self.w


class _Feat(_Rows):
    """Features = the first pixel of each channel, read in eval mode; counts its batches."""

    def features(self, x):
        assert not self.training
        return self(x)


def test_features_are_batched_in_eval_mode_from_uint8_or_float():
    from advaug.evaluate.uae import features

    m = _Feat().train()
    x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    f = features(m, x, batch_size=2)
    assert m.batches == [2, 2, 1] and m.training
    torch.testing.assert_close(f, x[:, :, 0, 0].float() / 255)
    assert features(m, x[:0]).numel() == 0


def test_diversity_is_the_uae_spread_relative_to_gan_and_real():
    from advaug.evaluate.uae import diversity_report

    # successes: two of class 0 whose first pixels differ by (0.3, 0.4, 0) -> spread 0.5
    res = _result(3, [True, True, False], [0, 0, 1])
    res.images[:, :, 0, 0] = torch.tensor([[0.0, 0, 0], [0.3, 0.4, 0], [1, 1, 1]])
    gan = torch.zeros(2, 3, 2, 2)
    gan[1, 0, 0, 0] = 2.0  # spread 2.0
    real = torch.zeros(4, 3, 2, 2)
    real[1, 0, 0, 0], real[3, 1, 0, 0] = 0.25, 0.25  # two classes, each spread 0.25
    d = diversity_report(res, gan, torch.tensor([1, 1]), real, torch.tensor([0, 0, 1, 1]), _Feat())
    assert d == pytest.approx(
        {"uae_spread": 0.5, "gan_spread": 2.0, "real_spread": 0.25, "uae_vs_gan": 0.25,
         "uae_vs_real": 2.0}
    )  # fmt: skip
    flat = diversity_report(res, torch.zeros(2, 3, 2, 2), torch.tensor([1, 1]), real[:2] * 0,
                            torch.tensor([0, 0]), _Feat())  # fmt: skip
    assert math.isnan(flat["uae_vs_gan"]) and math.isnan(flat["uae_vs_real"])
    one = diversity_report(_result(2, [True, False], [0, 0]), gan, torch.tensor([1, 1]), real,
                           torch.tensor([0, 0, 1, 1]), _Feat())  # fmt: skip
    assert set(one) == {"uae_spread", "uae_vs_gan", "uae_vs_real"}
    assert all(math.isnan(v) for v in one.values())


def test_run_uae_attacks_balanced_seeded_codes(monkeypatch):
    from advaug.attacks import FAST
    from advaug.evaluate import uae

    calls = []

    class Spy:
        @classmethod
        def from_config(cls, g, d, f, cfg, rng):
            calls.append((g, d, f, cfg, rng.initial_seed()))
            return lambda src, tgt: (src, tgt)

    monkeypatch.setattr(uae, "UnrestrictedAttack", Spy)
    g, d, f = _StepG(), _ConstD(1), _MeanF()
    src, tgt = uae.run_uae(g, d, f, 6, FAST, seed=3, steps=7)
    assert torch.equal(src, uae.balanced_sources(6, 2, 3, torch.device("cpu"))) and tgt is None
    assert calls == [(g, d, f, FAST.replace(steps=7), 3 + uae.ATTACK_STREAM)]
    src, tgt = uae.run_uae(g, d, f, 4, "fast", seed=0, targeted=True)
    assert torch.equal(tgt, (src + 1) % 2)
    assert calls[-1][3] == FAST.replace(targeted=True) and uae.ATTACK_STREAM == 1
    g3 = _StepG()
    g3.num_classes = 3
    src, tgt = uae.run_uae(g3, d, f, 6, targeted=True)  # the defaults: "fast", seed 0
    assert torch.equal(tgt, (src + 1) % 3) and sorted(src.tolist()) == [0, 0, 1, 1, 2, 2]
    assert calls[-1][3] == FAST.replace(targeted=True) and calls[-1][4] == 1


def test_summary_names_classes_past_the_list_by_number_and_empty_ones_none():
    res = _result(4, [True, False, True, True], [0, 0, 1, 1])
    s = summarize(res, 3, ["a"])
    assert s["n"] == 4
    assert s["per_class_success"] == {"a": 0.5, "1": 1.0, "2": None}


def test_within_class_spread_divides_by_the_ordered_pairs():
    feats = torch.tensor([[0.0], [3.0], [6.0], [1.0]])
    # class 0: distances 3, 6, 3 over 3 pairs, each counted twice over 3 * 2 ordered pairs: 4
    assert within_class_spread(feats, torch.tensor([0, 0, 0, 1])) == pytest.approx(4.0)
    assert math.isnan(within_class_spread(feats[:2], torch.tensor([0, 1])))


def test_rate_of_nothing_is_nan():
    from advaug.evaluate.uae import _rate

    value, n = _rate(torch.zeros(0, dtype=torch.bool))
    assert math.isnan(value) and n == 0
    assert _rate(torch.tensor([True, False, False, True])) == (0.5, 4)


# ------------------------------------------------------------ the mutation pass's survivors


def test_attack_protocol_line_whole():
    from advaug.attacks import FAST
    from advaug.evaluate.uae import attack_protocol

    cfg = FAST.replace(targeted=True, early_stop=True, lr=0.05, steps=7)
    head = (
        f"latent attack: {cfg.optimizer} lr 0.05, λ1 {cfg.lambda1:g}, λ2 {cfg.lambda2:g}, "
        f"z_eps {cfg.z_eps:g} ({cfg.z_proximity}, projection {cfg.z_project}), pixel noise "
        f"{cfg.noise_eps:g}, 7 steps"
    )
    tail = "; 12 balanced sources, seed 4; success = f wrong and AC = source"
    assert attack_protocol(cfg, 12, 4) == f"targeted {head}, early stop{tail}"
    plain = cfg.replace(targeted=False, early_stop=False)
    assert attack_protocol(plain, 12, 4) == f"untargeted {head}{tail}"
    assert attack_protocol(plain, 12, 4, cfg) == (
        f"untargeted {head}{tail}; differs from the training attack: "
        "early_stop True vs False (training vs evaluation)"
    )
    # two settings differ: both named, joined by a comma, after the whole line
    other = cfg.replace(steps=9)
    assert attack_protocol(plain, 12, 4, other) == (
        f"untargeted {head}{tail}; differs from the training attack: steps 9 vs 7, "
        "early_stop True vs False (training vs evaluation)"
    )


def test_balanced_sources_land_on_the_device():
    """The "meta" device stands in for a GPU on a CPU-only machine."""
    meta = torch.device("meta")
    assert balanced_sources(4, 2, 0, meta).device == meta


def _onehot_images(classes: list[int], k: int = 3) -> torch.Tensor:
    x = torch.zeros(len(classes), k, 1, 1)
    x[torch.arange(len(classes)), torch.tensor(classes)] = 1.0
    return x


def test_legitimacy_reads_each_rows_prediction_in_batches():
    res = _result(3, [True, True, True], [0, 1, 2])
    res.images = _onehot_images([0, 1, 0])  # the reference keeps sources 0 and 1, not 2
    ref = _Rows()
    assert legitimacy(res, ref, batch_size=2) == pytest.approx(2 / 3)
    assert ref.batches == [2, 1]
    big = _result(258, [True] * 258, [0] * 258)
    big.images = _onehot_images([0] * 258)
    ref = _Rows()
    assert legitimacy(big, ref) == 1.0 and ref.batches == [256, 2]  # the default batch


def test_nearest_neighbours_defaults_to_one_neighbour_as_long_indices():
    train = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 1, 1) * 50
    idx, dist = nearest_neighbours(torch.zeros(2, 3, 1, 1), train)
    assert idx.shape == dist.shape == (2, 1) and idx.dtype == torch.long
    assert idx.tolist() == [[0], [0]] and dist.tolist() == [[0.0], [0.0]]
    # every chunk is searched, the first one included
    idx, _ = nearest_neighbours(torch.zeros(1, 3, 1, 1), train, k=2, chunk=2)
    assert idx.tolist() == [[0, 1]]


def test_nearest_neighbours_compares_pixels_on_the_cpu_in_chunks_of_2048(monkeypatch):
    from advaug.evaluate import uae

    devices, widths = [], []
    real_to_float, real_cdist = uae.to_float, torch.cdist

    def spy_to_float(x, device, *a):
        devices.append(device)
        return real_to_float(x, device, *a)

    def spy_cdist(a, b, *rest, **kw):
        widths.append(b.shape[0])
        return real_cdist(a, b, *rest, **kw)

    monkeypatch.setattr(uae, "to_float", spy_to_float)
    monkeypatch.setattr(torch, "cdist", spy_cdist)
    train = torch.zeros(2050, 1, 1, 1, dtype=torch.uint8)
    train[2049] = 255
    idx, dist = nearest_neighbours(torch.ones(1, 1, 1, 1), train)
    assert idx.tolist() == [[2049]] and dist.tolist() == [[0.0]]
    assert widths == [2048, 2]
    assert devices == [torch.device("cpu")] * 3  # the queries, then each chunk


def test_nearest_neighbours_in_feature_space_by_hand():
    # features = the first pixel of each channel: image i has features (i, 0, 0)
    train = torch.zeros(5, 3, 2, 2)
    train[:, 0, 0, 0] = torch.arange(5.0)
    q = torch.zeros(2, 3, 2, 2)
    q[0, 0, 0, 0], q[1, 0, 0, 0] = -0.25, 3.75  # nearest 0 then 1; nearest 4 then 3
    q[:, :, 1, 1] = 9.0  # pixels the features ignore
    m = _Feat()
    idx, dist = nearest_neighbours(q, train, k=2, feature_model=m, chunk=2)
    assert idx.tolist() == [[0, 1], [4, 3]] and idx.dtype == torch.long
    torch.testing.assert_close(dist, torch.tensor([[0.25, 1.25], [0.25, 0.75]]))
    assert m.batches == [2, 5]  # the queries, then the training images


def test_targeted_pairs_seed_their_own_attack_stream(monkeypatch):
    from advaug.attacks import FAST
    from advaug.evaluate import uae

    seeds = []

    class Spy:
        @classmethod
        def from_config(cls, g, d, f, cfg, rng):
            seeds.append((cfg.targeted, rng.initial_seed()))
            return lambda src, tgt: _result(len(src), [True] * len(src), src.tolist())

    monkeypatch.setattr(uae, "UnrestrictedAttack", Spy)
    tp = uae.targeted_pairs(_StepG(), _ConstD(1), _MeanF(), 2, FAST)
    assert tp["mean"] == 1.0 and tp["n"] == 4
    uae.targeted_pairs(_StepG(), _ConstD(1), _MeanF(), 2, FAST, seed=3)
    assert seeds == [(True, 0 + uae.ATTACK_STREAM), (True, 3 + uae.ATTACK_STREAM)]


class _RowsG(nn.Module):
    """Two classes; G(z, y) is the one-hot image of y over K = 2 channels; records batches."""

    z_dim, num_classes = 2, 2

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.batches: list[int] = []

    def forward(self, z, y):
        self.batches.append(z.shape[0])
        return nn.functional.one_hot(y, 2).float().view(-1, 2, 1, 1) * self.w


def _coded(n: int, ac_pred0: list[int] | None = None) -> UnrestrictedResult:
    res = _result(n, [True] * n, [i % 2 for i in range(n)])
    res.images = _onehot_images([i % 2 for i in range(n)], 2)
    res.clf_pred0 = torch.tensor([1 - i % 2 for i in range(n)])
    if ac_pred0 is not None:
        res.ac_pred0 = torch.tensor(ac_pred0)
    return res


def test_uae_measures_pass_their_batch_size_on():
    from advaug.evaluate.uae import uae_measures

    g, ref = _RowsG(), _Rows()
    m = uae_measures(_coded(3), g, reference=ref, batch_size=2)
    assert m["legit"] == {"value": 1.0, "n": 3} and m["legit_clean"] == {"value": 1.0, "n": 3}
    assert g.batches == [2, 1] and ref.batches == [2, 1, 2, 1]  # successes, then clean images
    g, ref = _RowsG(), _Rows()
    uae_measures(_coded(257), g, reference=ref)
    assert g.batches == [256, 1] and ref.batches == [256, 1, 256, 1]  # the default, 256


def test_uae_measures_ac_agreement_on_clean_codes_only_when_known():
    from advaug.evaluate.uae import uae_measures

    # class 0 is a known prediction (only -1 means unknown): agreement 2 of 3
    m = uae_measures(_coded(3, ac_pred0=[0, 1, 1]))
    assert m["ac_agree_clean"] == {"value": pytest.approx(2 / 3), "n": 3}
    assert uae_measures(_coded(2, ac_pred0=[0, 0]))["ac_agree_clean"]["value"] == 0.5
    # files of version 1 hold -1 (unknown): no value and no rows
    assert uae_measures(_coded(3))["ac_agree_clean"] == {"value": None, "n": 0}
    assert uae_measures(_coded(2, ac_pred0=[1, -1]))["ac_agree_clean"] == {"value": None, "n": 0}
