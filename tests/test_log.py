"""advaug.log: progress as plain lines outside a terminal, and log files that stay."""

from __future__ import annotations

import logging

import pytest

from advaug import log


class _Err:
    """What the test's stderr received (pytest's capture: a stream that is not a terminal)."""

    def __init__(self, capsys):
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def plain_stderr(monkeypatch, capsys):
    """stderr as a batch job sees it: not a terminal; a progress line at every update."""
    assert not log._is_terminal(log.sys.stderr)
    monkeypatch.setattr(log, "PLAIN_EVERY_S", 0.0)
    log.setup_logging(logging.INFO, show_progress=True)
    yield _Err(capsys)
    log.set_progress(True)
    logging.getLogger("advaug").handlers.clear()
    logging.getLogger("advaug").propagate = True


def test_progress_outside_a_terminal_is_periodic_plain_lines(plain_stderr):
    with log.progress(total=4, desc="train none", unit="step") as bar:
        for _ in range(4):
            bar.update(1)
            bar.set_postfix(loss="0.5")
    for _ in log.progress(range(3), desc="PGD-10 8/255", unit="batch"):
        pass
    text = plain_stderr.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert "train none: 4/4 step (100%)" in text and "loss=0.5" in text and "ETA" in text
    assert "PGD-10 8/255: 3/3 batch" in text


def test_quiet_means_no_progress_lines_either(plain_stderr):
    log.set_progress(False)
    with log.progress(total=2, desc="quiet") as bar:
        bar.update(2)
    assert "quiet" not in plain_stderr.getvalue()


def test_log_to_file_keeps_the_lines_but_not_the_progress(tmp_path, plain_stderr):
    logger = log.get_logger("advaug.test")
    with log.log_to_file(tmp_path / "outer.txt"):
        logger.info("study line")
        with log.log_to_file(tmp_path / "inner.txt"), log.progress(total=1, desc="bar") as bar:
            logger.info("run line")
            bar.update(1)
        logger.debug("not at INFO")
    logger.info("after the block")
    outer = (tmp_path / "outer.txt").read_text()
    inner = (tmp_path / "inner.txt").read_text()
    assert "study line" in outer and "run line" in outer and "run line" in inner
    assert "study line" not in inner and "after the block" not in outer
    assert "bar:" not in outer + inner and "bar:" in plain_stderr.getvalue()
    assert "not at INFO" not in outer


def test_log_to_file_without_any_logging_setup(tmp_path):
    """A library caller that set up no logging still gets the run's lines in its log file."""
    root = logging.getLogger("advaug")
    root.handlers.clear()
    root.setLevel(logging.NOTSET)
    with log.log_to_file(tmp_path / "log.txt"):
        log.get_logger("advaug.x").info("epoch 1/2")
    assert "epoch 1/2" in (tmp_path / "log.txt").read_text()
    assert root.level == logging.NOTSET


def test_durations_read_as_people_write_them():
    assert [log.fmt_seconds(s) for s in (4.25, 42, 185, 7600)] == [
        "4.2 s",
        "42 s",
        "3 min 05 s",
        "2 h 06 min",
    ]
