"""DDP on the CPU: two gloo ranks, through torchrun and through two plain processes.

One torchrun launch trains the tiny classifier and GAN of ``ddp_worker.py`` on 2 ranks; five
more launches start the two ranks directly (``RANK``/``WORLD_SIZE``/``MASTER_*``, as torchrun
sets them) so that every rank's own exit code can be read. Together they are the repeated runs of
the clean-shutdown check (ending normally instead of with :func:`advaug.runtime.ddp.exit_process`,
2 of 20 runs of this worker aborted with SIGABRT after finishing).

Tolerance of "2 ranks with batch B/2 follow 1 process with batch B": the model has no batch norm,
the images are not augmented and the union of the ranks' b-th batches is the b-th batch of the
one-process run, so the two runs compute the same gradients up to floating-point summation order
(DDP averages two half-batch means where one process takes one full-batch mean). After 18 SGD
steps the weights must agree to ``atol=1e-5, rtol=1e-4`` and the per-epoch training losses to
``rel 1e-5``; the one-process run with batch B/2 (no averaging over ranks) misses that by orders
of magnitude, which the test also checks.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advaug.runtime import Runtime, ddp, update_ema
from advaug.runtime.checkpoint import load_file
from advaug.train.classifier import train_classifier
from advaug.train.loop import loader_position

from .ddp_worker import classifier_job

WORKER = Path(__file__).with_name("ddp_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT = 240


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(out: Path, *args: str) -> tuple[list[int], str]:
    """One torchrun launch of 2 ranks: ([torchrun's exit code], output). torchrun exits 0 only
    when every rank did. On a timeout the whole launch (agent and ranks) is killed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    p = subprocess.Popen(
        [*cmd, str(WORKER), str(out), *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        output, _ = p.communicate()
    return [p.returncode], output


def _two_ranks(out: Path, *args: str) -> tuple[list[int], str]:
    """Start ranks 0 and 1 directly: ([exit code of each rank], their output)."""
    port = str(_free_port())
    procs = []
    for r in range(2):
        env = _env(
            RANK=str(r),
            LOCAL_RANK=str(r),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(out), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    codes, text = [], ""
    for p in procs:
        try:
            output, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            output, _ = p.communicate()
        codes.append(p.returncode)
        text += output
    return codes, text


@pytest.fixture(scope="module")
def launches(tmp_path_factory) -> list[tuple[Path, list[int], str]]:
    """Six 2-rank runs of a classifier and then a GAN in the same processes: torchrun, then five
    direct launches (with a 2-iteration GAN; the first one's classifier is interrupted after 4
    steps, for the resume test)."""
    base = tmp_path_factory.mktemp("ddp")
    out = []
    codes, text = _torchrun(base / "run0")
    out.append((base / "run0", codes, text))
    for i in range(1, 6):
        extra = ["--stop-after", "4"] if i == 1 else []
        codes, text = _two_ranks(base / f"run{i}", "--gan-iters", "2", *extra)
        out.append((base / f"run{i}", codes, text))
    return out


def test_every_rank_exits_0_in_repeated_runs(launches):
    for folder, codes, text in launches:
        assert codes == [0] * len(codes), f"{folder.name}: exit codes {codes}\n{text[-3000:]}"
        assert "terminate called" not in text, text[-3000:]
        for r in range(2):
            assert (folder / f"rank{r}.json").is_file(), f"{folder.name}: rank {r} did not finish"


def test_replicas_stay_identical_and_only_rank0_writes(launches):
    folder = launches[0][0]
    res = [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]
    for kind, global_batch in (("classifier", 32), ("gan", 64)):
        assert res[0][kind]["replica_max_abs_diff"] == 0.0
        assert res[0][kind]["global_batch"] == global_batch
        assert res[0][kind]["runtime"]["world_size"] == 2
    assert res[0]["classifier"]["test_top1"] == res[1]["classifier"]["test_top1"]
    assert res[0]["gan"]["ac_test_top1"] == res[1]["gan"]["ac_test_top1"]
    # one writer: each step is logged once, and the checkpoint keeps both ranks' RNG states
    recs = [json.loads(x) for x in (folder / "gan" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in recs if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 6
    last = sorted((folder / "gan" / "checkpoints").glob("step-*.pt"))[-1]
    state = load_file(last)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert not torch.equal(state["ranks"][0]["gen_rng"], state["ranks"][1]["gen_rng"])


def _train_losses(folder: Path) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def test_two_ranks_with_half_batch_follow_one_process(launches, tmp_path):
    two = launches[0][0] / "classifier"
    train_classifier(classifier_job(32), tmp_path / "one")
    train_classifier(classifier_job(16), tmp_path / "half")  # batch B/2 without the other rank
    w2 = load_file(two / "checkpoints" / "final.pt")["model"]
    w1 = load_file(tmp_path / "one" / "checkpoints" / "final.pt")["model"]
    wh = load_file(tmp_path / "half" / "checkpoints" / "final.pt")["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=1e-5, rtol=1e-4)
    assert max((wh[k] - w1[k]).abs().max().item() for k in w1) > 1e-3  # the check can fail
    l2, l1 = _train_losses(two), _train_losses(tmp_path / "one")
    assert len(l2) == len(l1) == 2
    for a, b in zip(l2, l1, strict=True):
        assert abs(a - b) <= 1e-5 * abs(b)


def test_resume_under_another_world_size(launches, caplog):
    folder = launches[1][0] / "classifier"
    state = load_file(sorted((folder / "checkpoints").glob("step-*.pt"))[-1])
    assert state["step"] == 4 and state["world_size"] == 2
    assert state["loader"] == {"epoch": 0, "batch": 4}
    with caplog.at_level(logging.INFO, logger="advaug"):
        res = train_classifier(classifier_job(16), folder)  # one process, same per-rank batch
    # 4 batches of 2 ranks = 8 batches of one rank: resumed at step 8 of 18 per epoch
    assert "at step 8 (epoch 0)" in caplog.text
    assert res["steps"] == 2 * (300 // 16)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    epochs = [r["epoch"] for r in map(json.loads, lines) if r["split"] == "train"]
    assert epochs == [1, 2]


def test_two_rank_resume_with_dropout_is_bit_identical(tmp_path):
    """Dropout draws from every rank's own random stream: an interrupted 2-rank run must
    restore each rank's stream to end with the uninterrupted run's weights."""
    args = ("--jobs", "classifier", "--dropout", "0.5")
    runs = [_two_ranks(tmp_path / "full", *args)]
    runs.append(_two_ranks(tmp_path / "cut", *args, "--stop-after", "5"))
    runs.append(_two_ranks(tmp_path / "cut", *args))
    for codes, text in runs:
        assert codes == [0, 0], text[-3000:]
    assert json.loads((tmp_path / "cut" / "rank1.json").read_text())["classifier"] != "interrupted"
    full = load_file(tmp_path / "full" / "classifier" / "checkpoints" / "final.pt")["model"]
    cut = load_file(tmp_path / "cut" / "classifier" / "checkpoints" / "final.pt")["model"]
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_loader_position_converts_through_images_consumed():
    s = {"loader": {"epoch": 3, "batch": 5}, "world_size": 2}
    assert loader_position(s, 2, 100) == {"epoch": 3, "batch": 5}
    assert loader_position(s, 1, 100) == {"epoch": 3, "batch": 10}
    assert loader_position(s, 4, 100) == {"epoch": 3, "batch": 2}  # 10 rank-batches: floor(10/4)
    assert loader_position(s, 1, 7) == {"epoch": 3, "batch": 7}  # clamped to the epoch's end
    assert loader_position({"loader": {"epoch": 0, "batch": 3}}, 3, 100)["batch"] == 1


def test_rank_seeds_differ_and_rank0_keeps_the_seed():
    assert ddp.rank_seed(7, 0) == 7
    seeds = {ddp.rank_seed(7, r) for r in range(1, 8)}
    assert len(seeds) == 7 and 7 not in seeds
    assert ddp.rank_seed(7, 3) == ddp.rank_seed(7, 3)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize("use_buffers", [True, False])
def test_update_ema_equals_averaged_model(use_buffers):
    decay = 0.9
    net = _bn_net()
    ref = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
    ours = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
    w = []
    for i in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * (i + 1))
        net(torch.randn(5, 3))  # moves the BN buffers
        w.append(net[0].weight.detach().clone())
        ref.update_parameters(net)
        update_ema(ours, net, decay)
    for a, b in zip(ref.state_dict().values(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # by hand: copy, then lerp by 1 - decay
    expect = decay * (decay * w[0] + (1 - decay) * w[1]) + (1 - decay) * w[2]
    torch.testing.assert_close(ours.module[0].weight, expect)
    assert ours.n_averaged.device.type == "cpu" and int(ours.n_averaged) == 3


def test_helpers_are_identities_without_a_process_group():
    assert not ddp.initialized()
    sums = ddp.all_sum({"loss": torch.tensor(2.5), "n": torch.tensor(3)})
    assert sums == {"loss": 2.5, "n": 3.0}
    assert ddp.agree(True) is True and ddp.agree(False) is False
    assert ddp.gather_to_main({"a": 1}) == [{"a": 1}]
    net = nn.Linear(2, 2)
    rt = Runtime(torch.device("cpu"), None, False, False)
    assert ddp.wrap(net, rt) is net and ddp.unwrap(net) is net
    assert ddp.replica_difference(net) == 0.0


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [("return 3", 3, ""), ("raise ValueError('boom')", 1, "ValueError: boom")],
)
def test_run_worker_exits_with_the_code_of_main(body, code, text):
    prog = (
        "from advaug.runtime.ddp import run_worker\n"
        f"def main():\n    {body}\n"
        "run_worker(main)\n"
        "print('not reached')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", prog], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert p.returncode == code
    assert text in p.stderr and "not reached" not in p.stdout
