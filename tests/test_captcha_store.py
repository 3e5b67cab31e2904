"""A store of captchas drawn once: it round-trips, refuses what does not fit, and trains a model."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from conftest import run_module, run_script
from lstm_ocr import captcha_store
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams

HP = Hyperparams(chars="0123456789abc", min_len=3, max_len=5, seq_length=48, image_height=20, fit="pad")
TEXT = ["--chars", "0123456789abc", "--min_len", "3", "--max_len", "5", "--seq_length", "48",
        "--image_height", "20", "--fit", "pad"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    import captcha
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    folder = str(tmp_path_factory.mktemp("stores") / "s")
    result = run_module("lstm_ocr.captcha_store", "--out", folder, "--count", "70", "--style", "varied", "--seed", "4",
                        "--num_proc", "1", *TEXT, font)
    assert result.returncode == 0, result.stderr
    assert f"70 captchas (0 MB) drawn into {folder}" in result.stdout
    return folder


def test_a_store_round_trips_its_samples_and_what_drew_them(store):
    loaded = captcha_store.load(store, HP, "varied")
    assert len(loaded) == 70 and loaded.images.shape == (70, 48, 20) and loaded.images.dtype == np.uint8
    assert loaded.meta["style"] == "varied" and loaded.meta["seed"] == 4 and loaded.meta["chars"] == HP.chars
    lengths = (loaded.labels > 0).sum(axis=1)
    assert lengths.min() >= 3 and lengths.max() <= 5 and loaded.labels.max() <= len(HP.chars)
    assert loaded.images.std() > 0  # drawn, not blank
    assert not os.path.exists(store + ".partial")


def test_a_sampler_gives_every_sample_once_a_pass(store):
    loaded = captcha_store.load(store, HP, "varied")
    sampler = captcha_store.StoreSampler(loaded, seed=1)
    seen = [sampler.sample(14) for _ in range(10)]  # two passes over the 70 samples
    assert sampler.passes == 2 and all(images.shape == (14, 48, 20) for images, _ in seen)
    drawn = [row.tobytes() for images, _ in seen for row in images.reshape(14, -1)]
    stored = [row.tobytes() for row in loaded.images.reshape(70, -1)]
    assert sorted(drawn) == sorted(stored * 2)
    assert drawn[:70] != stored  # in a random order


@pytest.mark.parametrize("change, style, words", [
    ({"chars": "0123456789"}, "varied", "drawn with --chars '0123456789abc'"),
    ({"image_height": 30}, "varied", "drawn with --image_height 20"),
    ({}, "example", "drawn in --style varied"),
])
def test_a_store_that_does_not_fit_the_run_is_refused(store, change, style, words):
    with pytest.raises(InputError, match=words):
        captcha_store.load(store, replace(HP, **change), style)


def test_a_broken_store_is_one_clear_error(store, tmp_path):
    with pytest.raises(InputError, match="not a captcha store"):
        captcha_store.load(str(tmp_path), HP, "varied")
    broken = tmp_path / "broken"
    broken.mkdir()
    meta = json.load(open(os.path.join(store, captcha_store.META)))
    (broken / captcha_store.META).write_text(json.dumps(meta))
    (broken / captcha_store.IMAGES).write_bytes(b"not an npy file")
    np.save(broken / captcha_store.LABELS, np.zeros((70, 5), np.int32))
    with pytest.raises(InputError, match="cannot be read"):
        captcha_store.load(str(broken), HP, "varied")
    np.save(broken / captcha_store.IMAGES, np.zeros((70, 48, 21), np.uint8))
    with pytest.raises(InputError, match="are not 70 samples"):
        captcha_store.load(str(broken), HP, "varied")
    np.save(broken / captcha_store.IMAGES, np.zeros((70, 48, 20), np.uint8))
    np.save(broken / captcha_store.LABELS, np.full((70, 5), 99, np.int32))
    with pytest.raises(InputError, match="labels outside"):
        captcha_store.load(str(broken), HP, "varied")


def test_drawing_refuses_an_existing_folder(store, font):
    result = run_module("lstm_ocr.captcha_store", "--out", store, "--count", "5", *TEXT, font)
    assert result.returncode == 2 and result.stderr.startswith("error: --out") and "Traceback" not in result.stderr


def test_a_compact_crnn_trains_on_a_store_and_its_checkpoint_reads_back(store, font, tmp_path):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", "--recipe", "fast", "--crnn_shape", "compact", "--crnn_blocks", "3",
                        *TEXT, "--style", "varied", "--store", store, "--num_epoch", "1", "--train_epoch_size", "96",
                        "--eval_epoch_size", "32", "--batch_size", "16", "--num_hidden", "16", "--num_proc", "1",
                        "--seed", "2", "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    assert f"Training on the 70 captchas of the store {store}" in result.stderr
    meta = json.load(open(f"{prefix}-meta.json"))
    assert meta["crnn_shape"] == "compact" and meta["options"]["store"] == store
    image = str(tmp_path / "sample.png")
    assert run_script("captcha_generator.py", font, image, *TEXT[:6], "--num", "ab12").returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Text: ")


@pytest.mark.parametrize("args, words", [
    (["--train_dir", "somewhere"], "--store trains on stored captchas, --train_dir on a folder"),
    (["--style", "example"], "drawn in --style varied"),
    (["--style", "varied", "--chars", "0123456789"], "drawn with --chars"),
])
def test_store_options_that_cannot_work_are_one_clear_line(store, font, tmp_path, args, words):
    result = run_script("lstm_ocr_train.py", "--recipe", "fast", *TEXT, "--store", store, *args,
                        "--prefix", str(tmp_path / "ocr"), font)
    assert result.returncode == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr
