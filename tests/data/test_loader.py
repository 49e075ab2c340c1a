"""DeviceLoader: determinism, crop/flip correctness, sharding, resume, layout and memory checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import advaug.data.loader as loader_mod
from advaug.data.loader import DeviceLoader, crop_flip, ensure_fits
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
