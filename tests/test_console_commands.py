"""The console commands pyproject installs (`lstm-ocr-read`, `-train`, `-serve`, `-export`, `-generate`):
each the same program as its root script, and working from a folder that is not the repository."""

import os
import subprocess

import pytest

from conftest import PYTHON, run_script

COMMANDS = {"lstm-ocr-read": "lstm_ocr_infer.py", "lstm-ocr-train": "lstm_ocr_train.py",
            "lstm-ocr-serve": "lstm_ocr_serve.py", "lstm-ocr-export": "onnx_export.py",
            "lstm-ocr-generate": "captcha_generator.py"}
WIDE = os.environ | {"COLUMNS": "1000"}  # argparse wraps its help to the terminal: one line per option


def command(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    path = os.path.join(os.path.dirname(PYTHON), name)
    assert os.path.exists(path), f"{name} is not installed beside {PYTHON}: `make setup` installs the project"
    return subprocess.run([path, *args], capture_output=True, text=True, cwd=cwd, env=WIDE, timeout=300)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_is_its_root_scripts_program(name, tmp_path):
    installed = command(name, "--help", cwd=tmp_path)
    root = subprocess.run([PYTHON, os.path.join(os.path.dirname(os.path.dirname(__file__)), COMMANDS[name]),
                           "--help"], capture_output=True, text=True, cwd=tmp_path, env=WIDE, timeout=300)
    assert installed.returncode == 0 and root.returncode == 0, installed.stderr + root.stderr
    assert installed.stdout.startswith(f"usage: {name} ")
    assert _usage_and_options(installed.stdout, name) == _usage_and_options(root.stdout, COMMANDS[name])


def _usage_and_options(help_text: str, prog: str) -> tuple[str, str]:
    """The usage line and the options of a --help (the description's examples name the root script)."""
    usage = help_text.split("\n", 1)[0].replace(prog, "PROG")
    return usage, help_text.split("\noptions:\n", 1)[1]


def test_generate_export_and_read_from_another_folder(tmp_path, font, model):
    """A real job with the commands alone, in an empty folder: draw a captcha, export the checkpoint,
    read the captcha with both; the readings agree with the root script's."""
    assert command("lstm-ocr-generate", font, "c.png", "--num", "0089", cwd=tmp_path).returncode == 0
    exported = command("lstm-ocr-export", "--prefix", model, "--epoch", "3", "--out", "m.onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    with_checkpoint = command("lstm-ocr-read", "--prefix", model, "--epoch", "3", "c.png", cwd=tmp_path)
    with_onnx = command("lstm-ocr-read", "--onnx", "m.onnx", "c.png", cwd=tmp_path)
    root = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", "c.png", cwd=str(tmp_path))
    assert with_checkpoint.returncode == 0, with_checkpoint.stderr
    assert with_checkpoint.stdout.startswith("Digits: [")
    assert with_checkpoint.stdout == with_onnx.stdout == root.stdout


def test_a_refusal_is_one_error_line(tmp_path):
    result = command("lstm-ocr-read", "--prefix", str(tmp_path / "nothing"), "--epoch", "1", "x.png", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
