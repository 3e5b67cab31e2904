"""Shared fixtures: a font every machine has, small hyperparameters, and process checks."""

import os
import subprocess
import sys

import captcha
import pytest

from hyperparameters import Hyperparams

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


@pytest.fixture
def font() -> str:
    """The captcha package's bundled DroidSansMono.ttf."""
    return os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")


@pytest.fixture
def tiny_hp() -> Hyperparams:
    return Hyperparams(batch_size=16, train_epoch_size=64, eval_epoch_size=32, num_epoch=1, num_hidden=16)


def run_script(script: str, *args: str, cwd: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run one of the project's scripts with the test interpreter."""
    return subprocess.run([PYTHON, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def processes_with(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                cmdline = file.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
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


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
