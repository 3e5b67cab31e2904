"""lstm_ocr/models: the shipped models found by their bare names from any folder, with MXNet or (their
ONNX exports) without; a prefix found nowhere says where it was looked for."""

import io
import os
import subprocess

import captcha
import pytest

from conftest import ROOT, SHIPPED, one_line_error, run_script
from lstm_ocr import Reader, arithmetic, checkpoint, models
from lstm_ocr.captcha_generator import CaptchaGen
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams

ONNX_PYTHON = os.path.join(ROOT, ".venv-onnx", "bin", "python")
NAMES = ("alnum", "arith", "general", "ocr")


def test_the_shipped_models_are_named_and_each_has_its_onnx_export():
    assert tuple(models.shipped()) == NAMES
    assert models.FOLDER == SHIPPED
    for name in NAMES:
        assert os.path.getsize(models.onnx_path(name)) > 1_000_000, name


def test_a_checkpoint_here_comes_before_a_shipped_model(tmp_path, monkeypatch, model):
    monkeypatch.chdir(tmp_path)
    assert models.resolve("general") == os.path.join(SHIPPED, "general")
    assert models.resolve("general", 38) == os.path.join(SHIPPED, "general")
    assert models.resolve(model) == model
    for suffix in ("-symbol.json", "-0003.params"):
        os.symlink(model + suffix, tmp_path / f"general{suffix}")
    assert models.resolve("general") == "general" and not models.is_shipped("general")


def test_a_prefix_found_nowhere_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as refused:
        models.resolve("mine/genral")
    message = str(refused.value)
    assert f"no genral-NNNN.params in {tmp_path / 'mine'}" in message
    assert SHIPPED in message and "alnum, arith, general, ocr" in message
    with pytest.raises(InputError, match="the shipped model general in .* has epoch 38 only"):
        models.resolve("general", 7)


def test_the_scripts_read_a_shipped_model_by_name_from_any_folder(tmp_path, font):
    image = str(tmp_path / "c.png")
    assert run_script("captcha_generator.py", font, image, "--num", "0089").returncode == 0
    found = run_script("lstm_ocr_infer.py", "--prefix", "general", "c.png", cwd=str(tmp_path))
    assert found.returncode == 0 and found.stdout.startswith("Digits: ["), found.stderr
    missing = run_script("lstm_ocr_infer.py", "--prefix", "genral", "c.png", cwd=str(tmp_path))
    one_line_error(missing, "no checkpoint has prefix 'genral'", str(tmp_path), SHIPPED, "general")


def _images(name: str, count: int = 6) -> list[bytes]:
    """Captchas in the look the shipped model `name` was trained on."""
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    hp = checkpoint.load_hyperparams(os.path.join(SHIPPED, name))
    style = {"arith": "arithmetic", "ocr": "example"}.get(name, "varied")
    text_hp = Hyperparams(**arithmetic.TEXT_DEFAULTS) if name == "arith" else hp
    gen = CaptchaGen([font], text_hp, seed=11, style=style)
    found = []
    for _ in range(count):
        buffer = io.BytesIO()
        gen.render(gen.random_text()).save(buffer, format="PNG")
        found.append(buffer.getvalue())
    return found


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_onnx_export_reads_as_its_checkpoint(name):
    """The committed ONNX file is the checkpoint's export: the same texts, the same confidences within
    float32 rounding, on captchas of the model's own look."""
    images = _images(name)
    with_checkpoint = Reader(name).read_many(images)
    with_onnx = Reader.onnx(models.onnx_path(name)).read_many(images)
    assert [r.text for r in with_onnx] == [r.text for r in with_checkpoint]
    assert all(abs(a.confidence - b.confidence) < 1e-3 for a, b in zip(with_onnx, with_checkpoint, strict=True))
    assert sum(r.text != "" for r in with_checkpoint) >= len(images) - 1  # it reads something: not a dead model


def test_without_mxnet_a_shipped_name_reads_its_onnx_export(tmp_path):
    """In the ONNX venv (no MXNet), from another folder: Reader("general") is the shipped ONNX export."""
    if not os.path.exists(ONNX_PYTHON):
        pytest.fail("no .venv-onnx: `make onnx-venv` (a dependency of `make test`) creates it")
    images = _images("general", 4)
    for i, data in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(data)
    code = ("import sys; from lstm_ocr import Reader; reader = Reader('general'); print(reader.name); "
            "print(' '.join(r.text for r in reader.read_many([f'{i}.png' for i in range(4)]))); "
            "print('mxnet' in sys.modules)")
    result = subprocess.run([ONNX_PYTHON, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=os.environ | {"PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    name, texts, mxnet_loaded = result.stdout.splitlines()
    assert name == "general (shipped, its ONNX export)" and mxnet_loaded == "False"
    assert texts.split(" ") == [r.text for r in Reader("general").read_many(images)]
