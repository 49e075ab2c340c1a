"""DeviceLoader: determinism, crop/flip correctness, sharding, resume, layout and memory checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import advaug.data.loader as loader_mod
from advaug.data.loader import DeviceLoader, crop_flip, ensure_fits, mix_seed
from advaug.errors import ConfigError, DataError

N = 60


@pytest.fixture(scope="module")
def data():
    """Random uint8 images whose label is their index, so every output traces to its input."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N, 3, 8, 8), generator=g, dtype=torch.uint8)
    return x, torch.arange(N)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b)
    )


# ----------------------------------------------------------------------------- basics


def test_plain_batches_are_the_scaled_inputs(data):
    x, y = data
    loader = DeviceLoader(x, y, 16, seed=1)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 3  # 60 // 16, the remainder dropped
    seen = torch.cat([yb for _, yb in batches])
    assert len(set(seen.tolist())) == 48
    for xb, yb in batches:
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert torch.equal(xb, x[yb].float() / 255)


def test_no_drop_last_covers_every_image_once(data):
    x, y = data
    loader = DeviceLoader(x, y, 16, drop_last=False)
    batches = _epoch(loader)
    assert len(loader) == 4 and [len(b[1]) for b in batches] == [16, 16, 16, 12]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(N))


def test_no_shuffle_keeps_order(data):
    x, y = data
    batches = _epoch(DeviceLoader(x, y, 20, shuffle=False))
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.arange(N))


def test_same_seed_same_batches_other_seed_differs(data):
    x, y = data
    kw = dict(crop_pad=2, flip=True)
    a = _epoch(DeviceLoader(x, y, 10, seed=5, **kw))
    b = _epoch(DeviceLoader(x, y, 10, seed=5, **kw))
    c = _epoch(DeviceLoader(x, y, 10, seed=6, **kw))
    assert _same(a, b) and not _same(a, c)


def test_epochs_differ_and_do_not_depend_on_history(data):
    x, y = data
    a = DeviceLoader(x, y, 10, seed=3, crop_pad=2, flip=True)
    e0, e1, e2 = _epoch(a), _epoch(a), _epoch(a)  # each full pass moves to the next epoch
    assert a.state_dict() == {"epoch": 3, "batch": 0}
    assert not _same(e0, e1)
    b = DeviceLoader(x, y, 10, seed=3, crop_pad=2, flip=True)
    b.set_epoch(2)
    assert _same(_epoch(b), e2)


# ----------------------------------------------------------------------------- augmentation


def _windows(img: torch.Tensor, pad: int, mode: str) -> list[torch.Tensor]:
    """Every H x W window of the padded image (reference built with float F.pad)."""
    h, w = img.shape[-2:]
    p = F.pad(img.float()[None], (pad,) * 4, mode="reflect" if mode == "reflect" else "constant")[0]
    return [p[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


def test_flip_only_gives_input_or_mirror_both_occur(data):
    x, y = data
    kinds = []
    for xb, yb in DeviceLoader(x, y, 20, flip=True, seed=2):
        for out, i in zip(xb, yb):
            src = x[i].float() / 255
            same, mirror = torch.equal(out, src), torch.equal(out, src.flip(2))
            assert same or mirror
            kinds.append("mirror" if mirror and not same else "same")
    assert 15 < kinds.count("mirror") < 45  # about half


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_crop_only_gives_a_window_of_the_padded_input(data, mode):
    x, y = data
    found = set()
    for xb, yb in DeviceLoader(x, y, 20, crop_pad=2, pad_mode=mode, seed=4):
        for out, i in zip(xb, yb):
            wins = _windows(x[i], 2, mode)
            hits = [k for k, w in enumerate(wins) if torch.equal(out * 255, w)]
            assert hits, "output is not a window of the padded image"
            found.add(hits[0])
    assert len(found) > 10  # offsets vary over the 25 possible windows


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_crop_and_flip_gives_a_possibly_mirrored_window(data, mode):
    x, y = data
    for xb, yb in DeviceLoader(x, y, 30, crop_pad=3, pad_mode=mode, flip=True, seed=9):
        for out, i in zip(xb, yb):
            wins = _windows(x[i], 3, mode)
            assert any(torch.equal(out * 255, w) or torch.equal(out * 255, w.flip(2)) for w in wins)


def test_crop_flip_by_hand():
    img = torch.arange(9, dtype=torch.uint8).reshape(1, 1, 3, 3)  # rows 012 / 345 / 678
    two = img.expand(2, 1, 3, 3)
    off = torch.tensor([[0, 0], [2, 2]])
    refl = crop_flip(two, off, None, 1, "reflect")
    assert refl[0, 0].tolist() == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    assert refl[1, 0].tolist() == [[4, 5, 4], [7, 8, 7], [4, 5, 4]]
    zeros = crop_flip(two, off, None, 1, "zeros")
    assert zeros[0, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 3, 4]]
    assert zeros[1, 0].tolist() == [[4, 5, 0], [7, 8, 0], [0, 0, 0]]
    centre = crop_flip(two, torch.tensor([[1, 1], [1, 1]]), None, 1, "reflect")
    assert torch.equal(centre, two)
    flips = torch.tensor([True, False])
    assert crop_flip(two, None, flips)[:, 0].tolist() == [
        [[2, 1, 0], [5, 4, 3], [8, 7, 6]],
        [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
    ]
    # crop then mirror: the zero columns move with the image
    both = crop_flip(two, off, flips, 1, "zeros")
    assert both[0, 0].tolist() == [[0, 0, 0], [1, 0, 0], [4, 3, 0]]
    assert both[1, 0].tolist() == [[4, 5, 0], [7, 8, 0], [0, 0, 0]]


def test_channels_last_output(data):
    x, y = data
    kw = dict(crop_pad=2, flip=True, seed=7)
    a = _epoch(DeviceLoader(x, y, 12, channels_last=True, **kw))
    b = _epoch(DeviceLoader(x, y, 12, **kw))
    assert all(xb.is_contiguous(memory_format=torch.channels_last) for xb, _ in a)
    assert all(xb.is_contiguous() for xb, _ in b)
    assert _same(a, b)
    plain = next(iter(DeviceLoader(x, y, 12, channels_last=True)))[0]
    assert plain.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- sharding


def test_shards_are_disjoint_equal_and_match_the_global_batches(data):
    x, y = data
    x, y = x[:59], y[:59]  # 59 = 3 * 19 + 2: two images dropped
    world, bs = 3, 5
    ranks = [
        _epoch(DeviceLoader(x, y, bs, seed=11, rank=r, world_size=world)) for r in range(world)
    ]
    assert [len(r) for r in ranks] == [3, 3, 3]  # 19 per rank -> 3 batches of 5
    shard_sets = [set(torch.cat([b[1] for b in r]).tolist()) for r in ranks]
    assert all(len(s) == 15 for s in shard_sets)
    assert not (shard_sets[0] & shard_sets[1] or shard_sets[0] & shard_sets[2])
    assert not shard_sets[1] & shard_sets[2]
    # the union of the ranks' b-th batches is the b-th batch of size W * bs of the shared order
    whole = DeviceLoader(x, y, world * bs, seed=11)
    for b, (_, yb) in enumerate(whole):
        assert set(yb.tolist()) == set().union(*(set(r[b][1].tolist()) for r in ranks))
    # whole shards (no batch dropped): 19 each, together the epoch permutation minus its last 2
    shards = [
        torch.cat(
            [
                b[1]
                for b in DeviceLoader(x, y, bs, seed=11, rank=r, world_size=world, drop_last=False)
            ]
        )
        for r in range(world)
    ]
    assert [len(s) for s in shards] == [19, 19, 19]
    perm = next(iter(DeviceLoader(x, y, 59, seed=11)))[1]
    assert sorted(torch.cat(shards).tolist()) == sorted(perm[:57].tolist())
    assert torch.equal(shards[1], perm[1:57:3])  # rank r takes every W-th entry from r


# ----------------------------------------------------------------------------- resume


def test_resume_mid_epoch_reproduces_the_remaining_batches(data):
    x, y = data
    kw = dict(crop_pad=2, flip=True, seed=13)
    ref = DeviceLoader(x, y, 8, **kw)
    ref.set_epoch(4)
    expected = _epoch(ref)

    run = DeviceLoader(x, y, 8, **kw)
    run.set_epoch(4)
    it = iter(run)
    for _ in range(3):
        next(it)
    state = run.state_dict()
    assert state == {"epoch": 4, "batch": 3}
    del it

    resumed = DeviceLoader(x, y, 8, **kw)
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # the usual per-epoch call keeps the restored position
    rest = _epoch(resumed)
    assert _same(rest, expected[3:])
    assert resumed.state_dict() == {"epoch": 5, "batch": 0}


def test_breaking_out_and_iterating_again_continues(data):
    x, y = data
    loader = DeviceLoader(x, y, 10, seed=1)
    expected = _epoch(DeviceLoader(x, y, 10, seed=1))
    first = []
    for batch in loader:
        first.append(batch)
        if len(first) == 2:
            break
    assert loader.state_dict() == {"epoch": 0, "batch": 2}
    assert _same(first + _epoch(loader), expected)
    loader.set_epoch(7)
    assert loader.state_dict() == {"epoch": 7, "batch": 0}


@pytest.mark.parametrize(
    "state", [{"epoch": 0}, {"epoch": 0, "batch": 99}, {"epoch": -1, "batch": 0}]
)
def test_bad_state_is_refused(data, state):
    x, y = data
    with pytest.raises(DataError, match="loader state"):
        DeviceLoader(x, y, 10).load_state_dict(state)


# ----------------------------------------------------------------------------- checks


def test_ensure_fits(monkeypatch):
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: 100 * 2**20)
    ensure_fits(50 * 2**20, "cpu")
    with pytest.raises(DataError, match=r"needs 150\.0 MiB on cpu but only 100\.0 MiB"):
        ensure_fits(150 * 2**20, "cpu")


def test_loader_refuses_data_that_does_not_fit(data, monkeypatch):
    x, y = data
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: 1000)
    with pytest.raises(DataError, match="MiB on meta"):
        DeviceLoader(x, y, 10, device="meta")


def test_available_bytes_on_cpu_is_positive():
    free = loader_mod.available_bytes(torch.device("cpu"))
    assert free is None or free > 0


@pytest.mark.parametrize(
    "kwargs,err",
    [
        (dict(batch_size=0), ConfigError),
        (dict(batch_size=61), ConfigError),
        (dict(pad_mode="edge", crop_pad=2), ConfigError),
        (dict(crop_pad=8), ConfigError),
        (dict(rank=2, world_size=2), ConfigError),
        (dict(seed=-1), ConfigError),
    ],
)
def test_bad_arguments(data, kwargs, err):
    x, y = data
    kwargs = {"batch_size": 10, **kwargs}
    with pytest.raises(err):
        DeviceLoader(x, y, **kwargs)


def test_bad_tensors(data):
    x, y = data
    with pytest.raises(DataError, match="uint8"):
        DeviceLoader(x.float(), y, 10)
    with pytest.raises(DataError, match="one integer label per image"):
        DeviceLoader(x, y[:-1], 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data):
    x, y = data
    kw = dict(crop_pad=2, flip=True, seed=21, channels_last=True)
    cpu = _epoch(DeviceLoader(x, y, 12, **kw))
    gpu = _epoch(DeviceLoader(x, y, 12, device="cuda", **kw))
    assert all(xb.is_cuda and yb.is_cuda for xb, yb in gpu)
    assert _same(cpu, [(xb.cpu(), yb.cpu()) for xb, yb in gpu])


# ----------------------------------------------------------------------------- mutation tests
# Added for the mutation run (docs/MUTATION.md): each pins a behaviour that the tests above
# only compared loader with loader, or checked with a loose match.


def _reference(x, y, bs, *, seed, epoch, pad=0, mode="reflect", flip=False, rank=0, world=1):
    """One epoch built the way the module docstring describes it, with F.pad for the crop."""
    n_all = x.shape[0]
    per_rank = n_all // world
    g = torch.Generator().manual_seed(mix_seed(seed, epoch, 0))
    idx = torch.randperm(n_all, generator=g)[: per_rank * world][rank::world]
    g_aug = torch.Generator().manual_seed(mix_seed(seed, epoch, 1, rank))
    offsets = torch.randint(0, 2 * pad + 1, (per_rank, 2), generator=g_aug) if pad else None
    flips = torch.rand(per_rank, generator=g_aug) < 0.5 if flip else None
    h, w = x.shape[-2:]
    out = []
    for k, i in enumerate(idx.tolist()):
        img = x[i].float()
        if pad:
            padded = F.pad(
                img[None], (pad,) * 4, mode="reflect" if mode == "reflect" else "constant"
            )
            r, c = offsets[k].tolist()
            img = padded[0, :, r : r + h, c : c + w]
        if flip and flips[k]:
            img = img.flip(2)
        out.append(img / 255)
    xs, ys = torch.stack(out), y[idx]
    return [(xs[b : b + bs], ys[b : b + bs]) for b in range(0, per_rank - bs + 1, bs)]


@pytest.mark.parametrize(
    "kw",
    [
        dict(seed=3, epoch=0),
        dict(seed=3, epoch=2, pad=2, mode="reflect", flip=True),
        dict(seed=5, epoch=1, pad=3, mode="zeros", flip=True, rank=1, world=2),
        dict(seed=0, epoch=0, pad=1, mode="zeros"),
        # seed and epoch of two 32-bit words each: SeedSequence pads short entropy with zeros
        # to 4 words, so only past 4 words does every word of (seed, epoch, 0) count
        dict(seed=2**40, epoch=2**33, pad=1, flip=True),
    ],
)
def test_batches_follow_the_documented_recipe(data, kw):
    """The permutation, the crop offsets and the flips come from the documented seeds."""
    x, y = data
    opts = dict(
        seed=kw["seed"], crop_pad=kw.get("pad", 0), pad_mode=kw.get("mode", "reflect"),
        flip=kw.get("flip", False), rank=kw.get("rank", 0), world_size=kw.get("world", 1),
    )  # fmt: skip
    loader = DeviceLoader(x, y, 7, **opts)
    loader.set_epoch(kw["epoch"])
    got = _epoch(loader)
    expected = _reference(x, y, 7, **kw)
    assert len(got) == len(expected) == len(loader)
    for (xg, yg), (xe, ye) in zip(got, expected):
        assert torch.equal(yg, ye)
        assert torch.equal(xg, xe)


@settings(deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4))
def test_mix_seed_is_the_seed_sequences_first_63_bits(values):
    words = np.random.SeedSequence(values).generate_state(2, dtype=np.uint32)
    expected = int.from_bytes(words.astype("<u4").tobytes(), "little") % 2**63
    assert loader_mod.mix_seed(*values) == expected


def test_mix_seed_reads_negative_values_as_64_bit_words():
    assert loader_mod.mix_seed(-1, 3) == loader_mod.mix_seed(2**64 - 1, 3)
    assert loader_mod.mix_seed(2**64 + 5) == loader_mod.mix_seed(5)


def test_available_bytes_reads_memavailable(monkeypatch):
    text = "MemTotal:       9999 kB\nMemFree:  77 kB\nMemAvailable:   12 kB\n"

    def fake_open(path):
        if path != "/proc/meminfo":
            raise FileNotFoundError(path)
        return io.StringIO(text)

    monkeypatch.setattr(loader_mod, "open", fake_open, raising=False)
    monkeypatch.setattr(loader_mod.os, "sysconf", lambda name: 1)  # not reached
    assert loader_mod.available_bytes(torch.device("cpu")) == 12 * 1024


def _no_proc(path):
    """``open`` on a machine without ``/proc``."""
    raise FileNotFoundError(path)


def test_available_bytes_falls_back_to_sysconf(monkeypatch):
    sizes = {"SC_AVPHYS_PAGES": 3, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(loader_mod.os, "sysconf", lambda name: sizes[name])
    # no MemAvailable line (old kernels), then no /proc at all
    monkeypatch.setattr(
        loader_mod, "open", lambda path: io.StringIO("MemFree: 5 kB\n"), raising=False
    )
    assert loader_mod.available_bytes(torch.device("cpu")) == 3 * 4096

    monkeypatch.setattr(loader_mod, "open", _no_proc, raising=False)
    assert loader_mod.available_bytes(torch.device("cpu")) == 3 * 4096


@pytest.mark.parametrize("error", [ValueError, OSError, AttributeError])
def test_available_bytes_is_none_when_nothing_can_be_measured(monkeypatch, error):
    def fails(name):
        raise error(name)

    monkeypatch.setattr(loader_mod, "open", _no_proc, raising=False)
    monkeypatch.setattr(loader_mod.os, "sysconf", fails)
    assert loader_mod.available_bytes(torch.device("cpu")) is None
    assert loader_mod.available_bytes(torch.device("meta")) is None


def test_ensure_fits_allows_nine_tenths_of_the_free_memory(monkeypatch):
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: 1000)
    ensure_fits(900, "cpu")  # exactly the default fraction fits
    ensure_fits(1000, "cpu", max_fraction=1.0)
    message = (
        "the dataset needs 0.0 MiB on cpu but only 0.0 MiB are free; train on a smaller "
        "subset, free memory, or keep the data on another device (e.g. device='cpu')"
    )
    with pytest.raises(DataError) as info:
        ensure_fits(901, "cpu")
    assert str(info.value) == message
    monkeypatch.setattr(loader_mod, "available_bytes", lambda device: None)
    ensure_fits(10**15, "cpu")  # unknown free memory: no check


def test_loader_asks_for_the_images_and_the_int64_labels(data, monkeypatch):
    x, y = data
    asked = []
    monkeypatch.setattr(loader_mod, "ensure_fits", lambda n, device: asked.append((n, device)))
    DeviceLoader(x, y, 10, device="meta")
    assert asked == [(x.numel() + 8 * N, torch.device("meta"))]
    DeviceLoader(x, y, 10)  # already on the device: nothing to move, nothing asked
    assert len(asked) == 1


def test_labels_become_int64(data):
    x, y = data
    _, yb = next(iter(DeviceLoader(x, y.int(), 10, shuffle=False)))
    assert yb.dtype == torch.int64 and torch.equal(yb, torch.arange(10))


def test_boundary_arguments_are_accepted(data):
    x, y = data
    assert len(DeviceLoader(x, y, 1)) == N
    assert len(DeviceLoader(x, y, 60)) == 1
    assert len(DeviceLoader(x, y, 20, drop_last=False)) == 3  # no partial batch to add
    assert len(DeviceLoader(x, y, 7, crop_pad=7)) == 8  # reflect: up to min(h, w) - 1
    zeros = DeviceLoader(x, y, 10, crop_pad=12, pad_mode="zeros", seed=0)
    xb, _ = next(iter(zeros))
    assert xb.shape == (10, 3, 8, 8)  # zero padding allows any pad
    assert len(DeviceLoader(x, y, 10, rank=1, world_size=2)) == 3
    loader = DeviceLoader(x, y, 10, seed=0)
    loader.set_epoch(0)
    assert loader.state_dict() == {"epoch": 0, "batch": 0}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(batch_size=0), "batch_size must be >= 1, got 0"),
        (
            dict(batch_size=61),
            "no batch: 60 images per rank with batch_size=61 and drop_last=True; lower the "
            "batch size or pass drop_last=False",
        ),
        (dict(pad_mode="edge"), "pad_mode must be 'reflect' or 'zeros', got 'edge'"),
        (
            dict(crop_pad=8),
            "crop_pad=8 must be in [0, 7] for 8x8 images (reflect padding); 4 is typical for 32x32",
        ),
        (
            dict(crop_pad=-1, pad_mode="zeros"),
            "crop_pad=-1 must be >= 0 (zero padding); 4 is typical for 32x32",
        ),
        (
            dict(crop_pad=-1),
            "crop_pad=-1 must be in [0, 7] for 8x8 images (reflect padding); 4 is typical for "
            "32x32",
        ),
        (dict(rank=-1, world_size=2), "rank=-1 must be in [0, world_size=2)"),
        (dict(rank=0, world_size=0), "rank=0 must be in [0, world_size=0)"),
        (dict(seed=-1), "seed must be >= 0, got -1"),
    ],
)
def test_bad_arguments_say_what_is_allowed(data, kwargs, message):
    x, y = data
    kwargs = {"batch_size": 10, **kwargs}
    with pytest.raises(ConfigError) as info:
        DeviceLoader(x, y, **kwargs)
    assert str(info.value) == message


def test_bad_tensors_say_what_to_pass(data):
    x, y = data
    cases = [
        (
            (x.float(), y),
            "DeviceLoader needs uint8 images N x C x H x W, got torch.float32 (60, 3, 8, 8); "
            "pass the dataset's uint8 tensor, not a float one",
        ),
        (
            (x[0], y),
            "DeviceLoader needs uint8 images N x C x H x W, got torch.uint8 (3, 8, 8); "
            "pass the dataset's uint8 tensor, not a float one",
        ),
        (
            (x, y[:-1]),
            "DeviceLoader needs one integer label per image, got torch.int64 (59,) for 60 "
            "images; pass y.long()",
        ),
        ((x, y[:, None]), None),
        ((x, y.float()), None),
    ]
    for args, message in cases:
        with pytest.raises(DataError, match="one integer label per image|uint8 images") as info:
            DeviceLoader(*args, 10)
        if message is not None:
            assert str(info.value) == message


def test_set_epoch_refuses_a_negative_epoch(data):
    x, y = data
    with pytest.raises(ConfigError) as info:
        DeviceLoader(x, y, 10).set_epoch(-1)
    assert str(info.value) == "epoch must be >= 0, got -1"


def test_a_finished_epochs_state_resumes_at_the_next_epoch(data):
    x, y = data
    loader = DeviceLoader(x, y, 10, seed=2)
    loader.load_state_dict({"epoch": 1, "batch": 6})  # batch == len: epoch 1 was finished
    assert _epoch(loader) == [] and loader.state_dict() == {"epoch": 2, "batch": 0}
    expected = DeviceLoader(x, y, 10, seed=2)
    expected.set_epoch(2)
    assert _same(_epoch(loader), _epoch(expected))


@pytest.mark.parametrize(
    "state,why",
    [
        ({"epoch": 0}, "expected"),
        (None, "expected"),
        ({"epoch": "x", "batch": 0}, "expected"),
        ({"epoch": 0, "batch": 7}, "out of range"),
        ({"epoch": 0, "batch": -1}, "out of range"),
        ({"epoch": -1, "batch": 0}, "out of range"),
    ],
)
def test_bad_state_messages(data, state, why):
    x, y = data
    with pytest.raises(DataError) as info:
        DeviceLoader(x, y, 10).load_state_dict(state)
    if why == "expected":
        assert str(info.value) == (
            f"bad loader state {state!r}; expected {{'epoch': int, 'batch': int}} from "
            "DeviceLoader.state_dict()"
        )
    else:
        assert str(info.value) == (
            f"loader state {state!r} is out of range (epoch >= 0, 0 <= batch <= 6); the "
            "checkpoint was made with another dataset size or batch size"
        )


def test_available_bytes_asks_cuda_for_a_cuda_device(monkeypatch):
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return 123, 456

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    cuda = torch.device("cuda", 1)  # a device object needs no GPU
    assert loader_mod.available_bytes(cuda) == 123 and asked == [cuda]


def test_crop_flip_defaults_mean_no_padding_and_reflection():
    img = torch.arange(9, dtype=torch.uint8).reshape(1, 1, 3, 3).expand(2, 1, 3, 3)
    off = torch.tensor([[0, 0], [2, 2]])
    # pad 0 (the default): offsets in [0, 0], nothing moves
    assert torch.equal(crop_flip(img, torch.zeros(2, 2, dtype=torch.long), None), img)
    assert torch.equal(crop_flip(img, off, None, 1), crop_flip(img, off, None, 1, "reflect"))
    # a pad without offsets: only the flip
    flips = torch.tensor([True, False])
    assert torch.equal(crop_flip(img, None, flips, 1), crop_flip(img, None, flips))


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_everything_is_built_on_the_loaders_device(data, mode):
    """The meta device stands in for a GPU: an index or a plan left on the CPU fails there."""
    x, y = data
    loader = DeviceLoader(x, y, 10, device="meta", crop_pad=2, pad_mode=mode, flip=True)
    for xb, yb in loader:
        assert xb.device.type == yb.device.type == "meta"
        assert xb.shape == (10, 3, 8, 8) and xb.dtype == torch.float32
    meta = x[:4].to("meta")
    off = torch.tensor([[0, 0], [1, 2], [2, 2], [4, 0]], device="meta")
    flips = torch.tensor([True, False, True, False], device="meta")
    assert crop_flip(meta, off, flips, 2, mode).shape == (4, 3, 8, 8)
    assert crop_flip(meta, None, flips).device.type == "meta"


def test_a_position_restored_during_a_pass_is_kept(data):
    """The pass ends where the restored position says, and does not advance past it."""
    x, y = data
    loader = DeviceLoader(x, y, 10, seed=1)
    for b, _ in enumerate(loader):
        if b == 1:
            loader.load_state_dict({"epoch": 5, "batch": 6})  # epoch 5, already finished
    assert loader.state_dict() == {"epoch": 5, "batch": 6}


def test_defaults_shuffle_with_seed_0_and_keep_the_pixels(data):
    x, y = data
    got = _epoch(DeviceLoader(x, y, 7))
    expected = _reference(x, y, 7, seed=0, epoch=0)
    assert all(torch.equal(a, b) for g, e in zip(got, expected) for a, b in zip(g, e))
    assert len(got) == len(expected) == 8


def test_non_square_images_bound_the_crop_by_their_shorter_side():
    x = torch.randint(0, 256, (12, 1, 6, 10), dtype=torch.uint8, generator=torch.Generator())
    y = torch.arange(12)
    xb, _ = next(iter(DeviceLoader(x, y, 4, crop_pad=5, flip=True)))
    assert xb.shape == (4, 1, 6, 10)
    with pytest.raises(ConfigError) as info:
        DeviceLoader(x, y, 4, crop_pad=6)
    assert str(info.value) == (
        "crop_pad=6 must be in [0, 5] for 6x10 images (reflect padding); 4 is typical for 32x32"
    )


def test_a_single_leftover_image_makes_a_last_batch(data):
    x, y = data
    assert len(DeviceLoader(x, y, 59, drop_last=False)) == 2
    assert len(DeviceLoader(x, y, 59)) == 1


def test_the_settings_are_kept_as_given(data):
    x, y = data
    loader = DeviceLoader(
        x, y, 9, shuffle=False, seed=4, crop_pad=3, pad_mode="zeros", flip=True,
        drop_last=False, channels_last=True, rank=1, world_size=2,
    )  # fmt: skip
    assert (loader.batch_size, loader.shuffle, loader.seed, loader.crop_pad) == (9, False, 4, 3)
    assert (loader.pad_mode, loader.flip, loader.drop_last, loader.channels_last) == (
        "zeros", True, False, True,
    )  # fmt: skip
    assert (loader.rank, loader.world_size, loader.num_samples) == (1, 2, 30)
    assert loader.device == torch.device("cpu")


class _Moved(Exception):
    """Raised by a fake ensure_fits: the loader was about to move its data to this device."""


def test_a_bare_cuda_device_means_the_current_one(data, monkeypatch):
    """Without a GPU: CUDA is faked up to the point where the data would move."""
    x, y = data

    def moved(nbytes, device):
        raise _Moved(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(loader_mod, "ensure_fits", moved)
    for device, expected in (
        ("cuda", torch.device("cuda", 3)),
        ("cuda:1", torch.device("cuda", 1)),
    ):
        with pytest.raises(_Moved) as info:
            DeviceLoader(x, y, 10, device=device)
        assert info.value.args == (expected,)
    assert DeviceLoader(x, y, 10).device == torch.device("cpu")  # a CPU loader stays there


def test_the_first_batch_of_epoch_0_is_a_valid_state(data):
    x, y = data
    loader = DeviceLoader(x, y, 10, seed=1)
    next(iter(loader))
    loader.load_state_dict({"epoch": 0, "batch": 0})  # what a fresh loader's state_dict gives
    assert loader.state_dict() == {"epoch": 0, "batch": 0}
    assert _same(_epoch(loader), _epoch(DeviceLoader(x, y, 10, seed=1)))
