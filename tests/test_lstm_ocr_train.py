"""End to end: train a tiny model with each loss and network, then read a generated image with it."""

import json
import os

import mxnet as mx
import pytest

import hyperparameters
from cli import InputError
from conftest import run_script
from hyperparameters import Hyperparams
from lstm_ocr_train import DMLC_ENV, check_args, contexts, data_seed, parse_args

TINY = ["--num_epoch", "2", "--train_epoch_size", "256", "--eval_epoch_size", "64", "--batch_size", "32",
        "--num_hidden", "32", "--pool_size", "128", "--num_proc", "1"]


@pytest.mark.parametrize("loss, network", [("ctc", "fused"), ("warpctc", "unrolled")])
def test_train_checkpoint_and_infer(font, tmp_path, loss, network):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--loss", loss, "--network", network, "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "Speed:" not in log  # 8 batches an epoch: the first speed line comes at batch 50
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


def test_conv_blocks_go_with_a_crnn_tall_enough_for_them(font):
    with pytest.raises(InputError, match="--crnn_blocks sizes the crnn's .* --network fused has none"):
        check_args(parse_args(["--crnn_blocks", "3", font]), Hyperparams(crnn_blocks=3))
    with pytest.raises(InputError, match="--crnn_first_channels sizes the crnn's .* --network fused has none"):
        check_args(parse_args(["--crnn_first_channels", "16", font]), Hyperparams(crnn_first_channels=16))
    with pytest.raises(InputError, match="--image_height 7 is too low for --crnn_blocks 3: .* at least 8 rows"):
        check_args(parse_args(["--network", "crnn", "--crnn_blocks", "3", font]), Hyperparams(crnn_blocks=3,
                                                                                            image_height=7))
    check_args(parse_args(["--network", "crnn", "--crnn_blocks", "3", font]), Hyperparams(crnn_blocks=3,
                                                                                        image_height=8))


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


@pytest.mark.parametrize("args, words", [
    (["--loss", "foo"], ["--loss: invalid choice: 'foo'", "'ctc', 'warpctc'"]),
    (["--network", "gru"], ["--network: invalid choice: 'gru'"]),
    (["--optimizer", "rmsprop"], ["--optimizer: invalid choice: 'rmsprop'"]),
    (["--style", "fancy"], ["--style: invalid choice: 'fancy'"]),
    (["--num_proc", "500"], ["--num_proc must be between 1 and"]),
    (["--prefix", "/proc/ocr"], ["cannot write checkpoint file", "/proc/ocr"]),
    (["--prefix", "ocr" + "x" * 300], ["cannot write checkpoint file", "File name too long"]),
    (["--batch_size", "0"], ["--batch_size must be positive"]),
    (["--num_epoch", "-1"], ["--num_epoch must be positive"]),
    (["--num_proc", "0"], ["--num_proc must be between 1 and"]),
    (["--prefix", "/nonexistent/dir/ocr"], ["checkpoint folder", "does not exist"]),
    (["--load_epoch", "3"], ["no checkpoint", "no checkpoint has prefix"]),
])
def test_bad_options_are_one_clear_line(font, tmp_path, args, words):
    result = run_script("lstm_ocr_train.py", "--prefix", str(tmp_path / "ocr"), *args, font)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
        result.stderr
    for word in words:
        assert word in result.stderr


def test_bad_font_paths_are_one_clear_line(tmp_path):
    (tmp_path / "fake.ttf").write_text("not a font")
    (tmp_path / "empty").mkdir()
    for path, word in [(tmp_path / "missing.ttf", "does not exist"), (tmp_path / "empty", "no .ttf font"),
                       (tmp_path / "fake.ttf", "not a TrueType font")]:
        result = run_script("lstm_ocr_train.py", "--prefix", str(tmp_path / "ocr"), str(path))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and word in result.stderr, result.stderr


def test_cpu_n_splits_the_batch_over_n_cpu_contexts():
    assert contexts(parse_args(["--cpu", "2", "font"])) == [mx.cpu(0), mx.cpu(1)]
    assert contexts(parse_args(["font"])) == [mx.cpu(0)]


@pytest.mark.parametrize("kv_store", ["local", "device"])
def test_two_cpu_contexts_train_and_checkpoint(font, tmp_path, kv_store):
    prefix = str(tmp_path / "ocr")
    args = ["--cpu", "2", "--kv_store", kv_store, "--num_epoch", "1", "--train_epoch_size", "128",
            "--eval_epoch_size", "32", "--batch_size", "32", "--num_hidden", "16", "--pool_size", "64",
            "--num_proc", "1", "--prefix", prefix, font]
    result = run_script("lstm_ocr_train.py", *args)
    assert result.returncode == 0, result.stderr
    assert "[rank" not in result.stderr
    for name in ("ocr-symbol.json", "ocr-0001.params", "ocr-0001.states"):
        assert os.path.isfile(tmp_path / name)
    resumed = run_script("lstm_ocr_train.py", *args[:4], "--num_epoch", "2", "--load_epoch", "1", *args[6:])
    assert resumed.returncode == 0 and "Epoch[1] Validation-accuracy=" in resumed.stderr, resumed.stderr
    assert "No optimizer state" not in resumed.stderr
    image = str(tmp_path / "sample.jpg")
    assert run_script("captcha_generator.py", font, image).returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert result.returncode == 0 and result.stdout.startswith("Digits: ["), result.stderr


@pytest.mark.parametrize("kv_store, env, message", [
    ("dist_sync", {}, "needs the environment of an MXNet worker"),
    ("dist_async", {"DMLC_ROLE": "worker"}, "needs the environment of an MXNet worker"),
    ("local", {"DMLC_ROLE": "worker"}, "DMLC_ROLE=worker needs --kv_store dist_sync or dist_async"),
])
def test_kv_store_must_fit_the_environment(monkeypatch, tmp_path, kv_store, env, message):
    for name in ("DMLC_ROLE", *DMLC_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = parse_args(["--kv_store", kv_store, "--prefix", str(tmp_path / "ocr"), "font"])
    with pytest.raises(InputError, match=message):
        check_args(args, hyperparameters.from_args(args))


def test_a_worker_environment_passes_the_checks(monkeypatch, tmp_path):
    for name in ("DMLC_ROLE", *DMLC_ENV):
        monkeypatch.setenv(name, "worker" if name == "DMLC_ROLE" else "1")
    args = parse_args(["--kv_store", "dist_sync", "--prefix", str(tmp_path / "ocr"), "font"])
    check_args(args, hyperparameters.from_args(args))


def test_each_rank_draws_different_data_and_rank_0_keeps_the_seed():
    assert data_seed(None, 3) is None
    assert data_seed(7, 0) == 7
    assert len({data_seed(7, rank) for rank in range(4)}) == 4
