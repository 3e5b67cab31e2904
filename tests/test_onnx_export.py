"""ONNX export: every network reads 1,000 captchas as MXNet does, probabilities within 1e-4."""

import os
from dataclasses import replace

import mxnet as mx
import numpy as np
import onnx
import pytest
from PIL import Image

from conftest import SHIPPED, run_script
from lstm_ocr import checkpoint, onnx_export
from lstm_ocr.captcha_generator import CaptchaGen
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.lstm import initial_params, lstm_ocr
from lstm_ocr.onnx_export import UNROLLED_TO_ONNX_GATES, fused_layers
from lstm_ocr.reader import Reader

CAPTCHAS = 1000
TOLERANCE = 1e-4
PRETRAINED = os.path.join(SHIPPED, "ocr")


@pytest.fixture(scope="module")
def captchas(font_path) -> np.ndarray:
    """1,000 fresh captchas as network inputs (uint8, width x height), drawn once for the module."""
    gen = CaptchaGen([font_path], Hyperparams(), seed=5)
    return np.stack([gen.image_u8(gen.random_text()) for _ in range(CAPTCHAS)])


@pytest.fixture(scope="module")
def font_path() -> str:
    import captcha
    return os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")


def tiny_checkpoint(folder, network: str, hp: Hyperparams, seed: int = 0, loss: str = "ctc") -> str:
    """An untrained checkpoint at epoch 1; a crnn's batch-norm statistics are random, not 0 and 1."""
    mx.random.seed(seed)
    prefix = str(folder / network / "ocr")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    aux = {}
    hp = replace(hp, network=network, loss=loss)
    if network == "crnn":
        symbol = lstm_ocr(hp, training=False)
        _, _, shapes = symbol.infer_shape(data=(1, hp.image_width, hp.image_height))
        rng = np.random.default_rng(seed)
        aux = {name: mx.nd.array(rng.uniform(0.5, 1.5, shape) if name.endswith("var") else rng.normal(0, 0.1, shape))
               for name, shape in zip(symbol.list_auxiliary_states(), shapes, strict=True)}
    checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), aux, hp)
    return prefix


# (network, hyperparameters, seed of the untrained weights: one whose readings differ between captchas)
NETWORKS = [("fused", Hyperparams(num_hidden=16), 0),
            ("unrolled", Hyperparams(num_hidden=12), 0),
            ("crnn", Hyperparams(num_hidden=16, num_lstm_layer=2, chars="0123456789abc", fit="pad"), 0),
            ("crnn", Hyperparams(num_hidden=16, num_lstm_layer=1, fit="pad", crnn_blocks=3), 1)]


def _export(prefix: str, epoch: int, out: str) -> None:
    result = run_script("lstm.py", "--prefix", prefix, "--epoch", str(epoch), "--to", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"exported as ONNX {out}\n")


def _decisive(probabilities: np.ndarray) -> np.ndarray:
    """Per image and step (of batch x steps x classes): whether the most probable class leads the next by
    more than 2 * TOLERANCE, so that outputs within TOLERANCE of these must pick the same class there.
    (An untrained model's near-ties would otherwise flip with the last bits of the arithmetic.)"""
    best_two = np.sort(probabilities, axis=-1)[..., -2:]
    return best_two[..., 1] - best_two[..., 0] > 2 * TOLERANCE


def _same_readings(prefix: str, epoch: int, out: str, captchas: np.ndarray) -> None:
    mxnet_reader, onnx_reader = Reader(prefix, epoch), Reader.onnx(out)
    inputs = captchas.astype(np.float32) / 255
    largest, decisive = 0.0, []
    for start in range(0, len(inputs), 250):
        batch = inputs[start:start + 250]
        expected, found = mxnet_reader.model.probabilities(batch), onnx_reader.model.probabilities(batch)
        assert found.shape == expected.shape
        largest = max(largest, float(np.abs(found - expected).max()))
        steps = _decisive(expected)
        assert (found.argmax(-1) == expected.argmax(-1))[steps].all()  # the same best path, step by step
        decisive.append(steps)
    assert largest <= TOLERANCE, largest
    steps = np.concatenate(decisive)
    assert steps.mean() > 0.8, steps.mean()  # the paths compared are most steps (untrained: 0.91-1.0)
    expected_texts = [r.text for r in mxnet_reader.read_inputs(captchas)]
    found_texts = [r.text for r in onnx_reader.read_inputs(captchas)]
    whole = steps.all(axis=1)  # and where every step decides, the very same text
    assert [t for t, keep in zip(found_texts, whole, strict=True) if keep] == \
        [t for t, keep in zip(expected_texts, whole, strict=True) if keep]
    assert len(set(expected_texts)) > 1  # the comparison says something: the readings differ between images


@pytest.mark.parametrize("network, hp, seed", NETWORKS, ids=["fused", "unrolled", "crnn", "crnn-3-blocks"])
def test_every_network_reads_as_mxnet_does(network, hp, seed, captchas, tmp_path):
    prefix = tiny_checkpoint(tmp_path, network, hp, seed)
    out = str(tmp_path / f"{network}.onnx")
    _export(prefix, 1, out)
    _same_readings(prefix, 1, out, captchas)
    metadata = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert metadata["network"] == network and metadata["chars"] == hp.chars
    assert (metadata["image_width"], metadata["image_height"]) == ("80", "30")
    assert (metadata["min_len"], metadata["max_len"]) == (str(hp.min_len), str(hp.max_len))
    assert Reader.onnx(out).hp == checkpoint.load_hyperparams(prefix)  # every hyperparameter travels, fit too
    wide = tmp_path / "wide.png"  # not the network's aspect ratio: `fit` decides how it becomes the input
    Image.fromarray(np.tile(captchas[0].T, (2, 5))).save(wide)
    assert np.array_equal(Reader.onnx(out).network_input(str(wide)), Reader(prefix, 1).network_input(str(wide)))


def test_a_warpctc_checkpoint_exports_its_softmax(captchas, tmp_path):
    prefix = tiny_checkpoint(tmp_path, "fused", Hyperparams(num_hidden=16), loss="warpctc")
    _export(prefix, 1, str(tmp_path / "warpctc.onnx"))
    _same_readings(prefix, 1, str(tmp_path / "warpctc.onnx"), captchas[:200])


def test_the_shipped_model_reads_as_mxnet_does(captchas, tmp_path):
    out = str(tmp_path / "pretrained.onnx")
    _export(PRETRAINED, 12, out)
    _same_readings(PRETRAINED, 12, out, captchas)


def test_a_bidirectional_multi_layer_vector_is_cut_in_order():
    """fused_layers cuts the vector as MXNet lays it out: every W_ih, W_hh per layer and direction, then biases."""
    hidden, inputs, layers = 2, 3, 2
    sizes = [4 * hidden * inputs, 4 * hidden * hidden] * 2 + [4 * hidden * 2 * hidden, 4 * hidden * hidden] * 2
    flat = np.concatenate([np.full(size, k, np.float32) for k, size in enumerate(sizes)]
                          + [np.full(4 * hidden, 10 + k, np.float32) for k in range(8)])
    cut = fused_layers(flat, inputs, hidden, layers, bidirectional=True)
    values = [[tuple(float(np.unique(m)[0]) for m in direction) for direction in layer] for layer in cut]
    assert values == [[(0, 1, 10, 11), (2, 3, 12, 13)], [(4, 5, 14, 15), (6, 7, 16, 17)]]
    with pytest.raises(ValueError, match="need"):
        fused_layers(flat[:-1], inputs, hidden, layers, bidirectional=True)


def test_gate_orders_map_onto_onnx():
    """ONNX wants (i, o, f, c); the unrolled cell has (i, g, f, o)."""
    assert [("i", "g", "f", "o")[k] for k in UNROLLED_TO_ONNX_GATES] == ["i", "o", "f", "g"]


def test_export_errors_are_one_line(tmp_path):
    result = run_script("lstm.py", "--prefix", PRETRAINED, "--epoch", "7", "--to", "onnx", "--out",
                        str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and result.stderr.startswith("error: no checkpoint") and "saved epochs: 12" in \
        result.stderr
    result = run_script("lstm.py", "--prefix", PRETRAINED, "--epoch", "12", "--to", "onnx", "--out",
                        str(tmp_path / "missing" / "m.onnx"))
    assert result.returncode == 2 and result.stderr.startswith("error: cannot write") and not os.listdir(tmp_path)
    prefix = tiny_checkpoint(tmp_path, "fused", Hyperparams(num_hidden=4))
    result = run_script("lstm.py", "--prefix", prefix, "--epoch", "1", "--to", "onnx", "--out", prefix + "-symbol.json")
    assert result.returncode == 2 and "file of the checkpoint itself" in result.stderr
    assert mx.sym.load(prefix + "-symbol.json") is not None


def test_export_never_replaces_an_existing_file_unless_told(tmp_path):
    prefix = tiny_checkpoint(tmp_path, "fused", Hyperparams(num_hidden=4))
    other_run = tmp_path / "other-0001.params"
    other_run.write_bytes(b"another run's weights")
    for script in (("lstm.py", "--to", "onnx"), ("onnx_export.py",)):
        result = run_script(*script, "--prefix", prefix, "--epoch", "1", "--out", str(other_run))
        assert result.returncode == 2 and "already exists" in result.stderr and "--overwrite" in result.stderr
        assert other_run.read_bytes() == b"another run's weights"
    link = tmp_path / "link.onnx"
    os.symlink(other_run, link)
    with pytest.raises(InputError, match="already exists"):
        onnx_export.export_command(prefix, 1, str(link), overwrite=False)
    onnx_export.export_command(prefix, 1, str(link), overwrite=True)  # replaces the link, not what it names
    assert other_run.read_bytes() == b"another run's weights" and onnx.load(str(link)).graph.node
