"""Shared fixtures: a font every machine has, small hyperparameters, an untrained checkpoint, its ONNX
export and a sample captcha; running scripts, one-line errors and process checks."""

import os
import subprocess
import sys
import time

import captcha
import mxnet as mx
import pytest

from lstm_ocr import checkpoint
from lstm_ocr.captcha_generator import CaptchaGen
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.lstm import initial_params, lstm_ocr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "lstm_ocr", "models")  # the shipped models' folder (bare names resolve to it)
PYTHON = sys.executable


@pytest.fixture
def font() -> str:
    """The captcha package's bundled DroidSansMono.ttf."""
    return os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")


@pytest.fixture
def tiny_hp() -> Hyperparams:
    return Hyperparams(batch_size=16, train_epoch_size=64, eval_epoch_size=32, num_epoch=1, num_hidden=16)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """An untrained fused checkpoint at epoch 3 (its predictions are arbitrary digits)."""
    hp = Hyperparams(num_hidden=16)
    prefix = str(tmp_path_factory.mktemp("model") / "ocr")
    checkpoint.save(prefix, 3, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    return prefix


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> str:
    """A captcha of 0089 in the example's look."""
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    path = str(tmp_path_factory.mktemp("images") / "sample.png")
    CaptchaGen([font], Hyperparams()).render("0089").save(path)
    return path


def one_line_error(result, *words: str) -> None:
    """The script failed with one `error:` line holding every one of `words`, and nothing on stdout."""
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


@pytest.fixture(scope="module")
def onnx_model(model, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("onnx") / "model.onnx")
    result = run_script("lstm.py", "--prefix", model, "--epoch", "3", "--to", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def run_script(script: str, *args: str, cwd: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one of the project's scripts with the test interpreter."""
    return subprocess.run([PYTHON, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def run_module(module: str, *args: str, cwd: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one of the package's modules (`python -m lstm_ocr.NAME`) with the test interpreter."""
    return subprocess.run([PYTHON, "-m", module, *args], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=timeout)


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    stat = _state_and_parent(pid)
    return stat is not None and stat[0] != "Z"


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        stat = _state_and_parent(int(entry)) if entry.isdigit() else None
        if stat is not None and stat[1] == pid and stat[0] != "Z":
            found.append(int(entry))
    return found


def descendants_of(pid: int) -> set[int]:
    """Live processes below `pid`: children, their children, and so on."""
    found, todo = set(), [pid]
    while todo:
        children = children_of(todo.pop())
        found.update(children)
        todo += children
    return found


def assert_all_exit(pids, timeout: float = 10) -> None:
    """Every process of `pids` ends within `timeout` seconds (killed ones may take a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    assert not left, f"processes left behind: {left}"
