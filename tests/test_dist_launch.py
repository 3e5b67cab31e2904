"""Distributed training on 127.0.0.1: 1 scheduler, 1 server and 2 workers, and every way it ends."""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, ROOT, assert_all_exit, descendants_of, run_module, run_script
from lstm_ocr import checkpoint

TINY = ["--num_epoch", "1", "--train_epoch_size", "128", "--eval_epoch_size", "32", "--batch_size", "32",
        "--num_hidden", "16", "--pool_size", "64", "--num_proc", "1"]
ENDLESS = [*TINY[:2], "--train_epoch_size", "10000000", *TINY[4:]]  # trains until stopped
TIMEOUT = 240  # seconds for a whole run on a busy 2-core machine
DIGEST = re.compile(r"\[rank (\d)\] Parameters sha256=([0-9a-f]{64})$", re.MULTILINE)


def launch(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """Start dist_launch.py with 2 workers and 1 server, its output going to a log file."""
    log = str(tmp_path / "launch.log")
    with open(log, "w") as out:
        launcher = subprocess.Popen([PYTHON, "-m", "lstm_ocr.dist_launch", "-n", "2", "-s", "1", *args],
                                    stdout=out, stderr=subprocess.STDOUT, text=True)
    return launcher, log


def watch(launcher: subprocess.Popen, log: str, until: list[str] | None = None) -> set[int]:
    """Every process seen below the launcher while waiting until its log has each of `until`
    (None: until it exits); the launcher is killed if that takes longer than TIMEOUT."""
    seen: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            seen |= descendants_of(launcher.pid)
            with open(log) as file:
                text = file.read()
            if launcher.poll() is not None or until and all(line in text for line in until):
                return seen
            time.sleep(0.2)
        pytest.fail(f"dist_launch.py did not get there in {TIMEOUT} s:\n{text}")
    except BaseException:
        launcher.kill()  # its children die with it (PR_SET_PDEATHSIG)
        launcher.wait()
        raise


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def training_started(tmp_path, *args: str) -> tuple[subprocess.Popen, str, set[int]]:
    """A launcher whose two workers are both past their 50th batch, and every process below it."""
    launcher, log = launch(tmp_path, *ENDLESS, "--prefix", str(tmp_path / "ocr"), *args)
    seen = watch(launcher, log, [f"[rank {rank}] Epoch[1] Batch [50]" for rank in (0, 1)])
    assert launcher.poll() is None, open(log).read()
    return launcher, log, seen | descendants_of(launcher.pid)


def test_two_workers_end_with_identical_parameters_and_rank_0_checkpoints(font, tmp_path):
    prefix = str(tmp_path / "ocr")
    launcher, log = launch(tmp_path, *TINY, "--seed", "3", "--prefix", prefix, font)
    seen = watch(launcher, log)
    text = open(log).read()
    assert launcher.returncode == 0, text
    assert len(seen) >= 6  # scheduler, server, 2 workers and their generators
    assert_all_exit(seen)

    digests = dict(DIGEST.findall(text))
    _, arg_params, _ = checkpoint.load(prefix, 1)
    assert digests.keys() == {"0", "1"} and digests["0"] == digests["1"] == checkpoint.params_digest(arg_params)
    assert f'[rank 0] Saved checkpoint to "{prefix}-0001.params"' in text and "[rank 1] Saved" not in text
    assert not os.path.exists(checkpoint.states_path(prefix, 1))  # the servers hold the optimizer
    image = str(tmp_path / "sample.jpg")
    assert run_script("captcha_generator.py", font, image).returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert result.returncode == 0 and result.stdout.startswith("Digits: ["), result.stderr


def test_sigterm_stops_every_process(font, tmp_path):
    launcher, log, seen = training_started(tmp_path, font)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(TIMEOUT) == 130
    assert "stopped by SIGTERM; stopped every process the launcher started" in open(log).read()
    assert_all_exit(seen)


def test_a_killed_worker_stops_every_process_and_sets_the_exit_code(font, tmp_path):
    launcher, log, seen = training_started(tmp_path, font)
    worker = next(pid for pid in seen if "lstm_ocr.train" in command_line(pid))
    os.kill(worker, signal.SIGKILL)
    assert launcher.wait(TIMEOUT) == 128 + signal.SIGKILL
    assert re.search(r"^error: worker \d exited with code 137; stopped every process", open(log).read(), re.M)
    assert_all_exit(seen)


def test_bad_launcher_option_is_one_line():
    result = run_module("lstm_ocr.dist_launch", "-n", "0", "font")
    assert result.returncode == 2 and result.stderr.startswith("error: --num_workers must be between 1 and ")


def test_the_launcher_needs_neither_opencv_nor_captcha_nor_mxnet():
    code = "import sys, lstm_ocr.dist_launch; sys.exit(bool({'cv2', 'captcha', 'mxnet'} & set(sys.modules)))"
    assert subprocess.run([PYTHON, "-c", code], cwd=ROOT, timeout=120).returncode == 0
