"""The installable package (pyproject.toml): a wheel built from the repository, installed with no index
into a fresh venv without MXNet (the ONNX venv's packages made visible to it), reads and serves the
shipped models from a folder that is not the repository; and it installs nothing but `lstm_ocr`."""

import email
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import captcha
import pytest
from test_serve import Service

import lstm_ocr
from conftest import PYTHON, ROOT
from lstm_ocr import Reader
from lstm_ocr.captcha_generator import CaptchaGen
from lstm_ocr.hyperparameters import Hyperparams

ONNX_VENV = os.path.join(ROOT, ".venv-onnx")
SITE = os.path.relpath(sysconfig.get_path("purelib"), sys.prefix)  # lib/python3.X/site-packages


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    """The wheel of a copy of the repository's package (so that no stale build/ folder leaks into it)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "lstm_ocr"), source / "lstm_ocr",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([PYTHON, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
                            "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (path,) = glob.glob(str(out / "lstm_ocr-*.whl"))
    return path


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> str:
    """A new venv holding only the installed wheel; the ONNX venv's site-packages visible through a .pth
    file (the runtime packages, without MXNet). Its bin/ folder."""
    onnx_python = os.path.join(ONNX_VENV, "bin", "python")
    if not os.path.exists(onnx_python):
        pytest.fail("no .venv-onnx: `make onnx-venv` (a dependency of `make test`) creates it")
    venv = tmp_path_factory.mktemp("venv")
    made = subprocess.run([onnx_python, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True,
                          timeout=120)
    assert made.returncode == 0, made.stderr
    (venv / SITE / "onnx-venv.pth").write_text(os.path.join(ONNX_VENV, SITE) + "\n")
    installed = subprocess.run([PYTHON, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                                "--no-deps", "--no-index", wheel], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    return str(venv / "bin")


def test_the_wheel_holds_one_package_and_what_a_reader_needs(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {name.split("/")[0] for name in names} == {"lstm_ocr", f"lstm_ocr-{lstm_ocr.__version__}.dist-info"}
    for model in ("general-0038.params", "general-symbol.json", "general-meta.json", "general.onnx", "ocr.onnx"):
        assert f"lstm_ocr/models/{model}" in names
    assert not [name for name in names if name.endswith(("-history.json", "-curves.png"))]
    requires = metadata.get_all("Requires-Dist")
    base = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("onnxruntime") for r in base) and not any(r.startswith("mxnet") for r in base)
    assert any(r.startswith("mxnet==1.9.1") and "extra == \"train\"" in r for r in requires)
    for command in ("lstm-ocr-read", "lstm-ocr-train", "lstm-ocr-serve", "lstm-ocr-export", "lstm-ocr-generate"):
        assert f"{command} = " in entry_points


def _captcha(folder) -> tuple[str, str]:
    """A captcha of the varied look drawn here, and what the shipped general reads in it with MXNet."""
    path = str(folder / "c.png")
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    CaptchaGen([font], Hyperparams(min_len=4, max_len=4), seed=4, style="varied").render("3715").save(path)
    return path, Reader("general").read(path).text


def test_the_installed_package_reads_without_mxnet_from_any_folder(fresh_venv, tmp_path):
    image, expected = _captcha(tmp_path)
    code = ("import sys, lstm_ocr; from lstm_ocr import Reader; print(Reader('general').read('c.png').text); "
            "print(lstm_ocr.__file__); print('mxnet' in sys.modules)")
    result = subprocess.run([os.path.join(fresh_venv, "python"), "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env=os.environ | {"PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    text, location, mxnet_loaded = result.stdout.splitlines()
    assert text == expected and mxnet_loaded == "False"
    assert location.startswith(os.path.dirname(fresh_venv)) and ROOT not in location
    read = subprocess.run([os.path.join(fresh_venv, "lstm-ocr-read"), "--prefix", "general", "c.png"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert read.returncode == 0 and read.stdout == f"Digits: {[int(c) for c in expected]}\n", read.stderr
    train = subprocess.run([os.path.join(fresh_venv, "lstm-ocr-train"), "font/"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert train.returncode == 2 and train.stderr.startswith("error: lstm-ocr-train needs") and "mxnet" in train.stderr
    assert "pip install '.[train]'" in train.stderr and "Traceback" not in train.stderr


def test_the_installed_service_answers(fresh_venv, tmp_path):
    image, expected = _captcha(tmp_path)
    running = Service("--prefix", "general", command=[os.path.join(fresh_venv, "lstm-ocr-serve")], cwd=str(tmp_path))
    try:
        status, health, _ = running.request("GET", "/health")
        assert status == 200 and health["model"].startswith("general") and "ONNX" in health["model"], health
        with open(image, "rb") as file:
            status, found, _ = running.request("POST", "/read", file.read())
        assert status == 200 and found["readings"][0]["text"] == expected, found
    finally:
        code, _ = running.stop()
    assert code == 0
