"""End to end: train a tiny model with each loss and network, then read a generated image with it."""

import json
import os

import pytest

from captcha_generator import InputError
from conftest import run_script
from hyperparameters import Hyperparams
from lstm_ocr_train import check_args, parse_args

TINY = ["--num_epoch", "2", "--train_epoch_size", "256", "--eval_epoch_size", "64", "--batch_size", "32",
        "--num_hidden", "32", "--pool_size", "128", "--num_proc", "1"]


@pytest.mark.parametrize("loss, network", [("ctc", "fused"), ("warpctc", "unrolled")])
def test_train_checkpoint_and_infer(font, tmp_path, loss, network):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--loss", loss, "--network", network, "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "Epoch[0] Batch [" not in log or "Speed:" in log
    for line in ("Epoch[0] Train-accuracy=", "Epoch[0] Time cost=", 'Saved checkpoint to "' + prefix + '-0001.params"',
                 "Epoch[0] Validation-accuracy=", "Epoch[1] Validation-accuracy="):
        assert line in log
    for name in ("ocr-symbol.json", "ocr-meta.json", "ocr-0001.params", "ocr-0002.params", "ocr-0002.states"):
        assert os.path.isfile(tmp_path / name)
    image = str(tmp_path / "sample.jpg")
    assert run_script("captcha_generator.py", font, image, "--num", "0089").returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "2", image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Digits: [") and result.stdout.endswith("]\n")
    digits = result.stdout[len("Digits: ["):-2]
    assert all(d.strip().isdigit() for d in digits.split(",") if d.strip())


def test_another_alphabet_trains_and_infers_its_characters_without_flags(font, tmp_path):
    alnum = "0123456789abcdefghijklmnopqrstuvwxyz"
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--chars", alnum, "--min_len", "4",
                        "--max_len", "6", "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    assert "Epoch[0] Validation-accuracy=" in result.stderr
    meta = json.load(open(tmp_path / "ocr-meta.json"))
    assert (meta["chars"], meta["min_len"], meta["max_len"]) == (alnum, 4, 6)
    image = str(tmp_path / "sample.png")
    written = run_script("captcha_generator.py", font, image, "--chars", alnum, "--max_len", "6", "--num", "k7a2zq")
    assert written.returncode == 0, written.stderr
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Text: ") and result.stdout.endswith("\n")
    assert set(result.stdout[len("Text: "):-1]) <= set(alnum)


def test_a_crnn_refuses_more_characters_than_its_steps_can_hold(font):
    args = parse_args(["--network", "crnn", "--max_len", "10", font])
    with pytest.raises(InputError, match="--network crnn reads 20 steps .* too few for --max_len 10"):
        check_args(args, Hyperparams(max_len=10))
    check_args(parse_args(["--network", "crnn", "--max_len", "9", font]), Hyperparams(max_len=9))


def test_speed_lines_use_the_examples_format(font, tmp_path):
    args = ["--num_epoch", "1", "--train_epoch_size", "1632", "--eval_epoch_size", "32", "--batch_size", "32",
            "--num_hidden", "16", "--pool_size", "128", "--num_proc", "1", "--prefix", str(tmp_path / "ocr"), font]
    result = run_script("lstm_ocr_train.py", *args)
    assert result.returncode == 0, result.stderr
    assert "Epoch[0] Batch [50]\tSpeed: " in result.stderr and " samples/sec\taccuracy=" in result.stderr


def test_gpu_on_a_cpu_only_build_is_one_clear_line(font, tmp_path):
    result = run_script("lstm_ocr_train.py", "--gpu", "1", "--prefix", str(tmp_path / "ocr"), font)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "CUDA" in result.stderr and "mxnet-cu" in result.stderr
