"""End to end: train a tiny model with each loss and network, then read a generated image with it."""

import json
import os
import re
import shutil

import mxnet as mx
import pytest

from conftest import run_script
from lstm_ocr import arithmetic, checkpoint
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.train import DMLC_ENV, contexts, data_seed, parse_args, resolve

TINY = ["--num_epoch", "2", "--train_epoch_size", "256", "--eval_epoch_size", "64", "--batch_size", "32",
        "--num_hidden", "32", "--pool_size", "128", "--num_proc", "1"]


@pytest.mark.parametrize("loss, network", [("ctc", "fused"), ("warpctc", "unrolled")])
def test_train_checkpoint_and_infer(font, tmp_path, loss, network):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--loss", loss, "--network", network, "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert "Speed:" not in log  # 8 batches an epoch: the first speed line comes at batch 50
    for line in ("Epoch[1] Train-accuracy=", "Epoch[1] Time cost=", 'Saved checkpoint to "' + prefix + '-0001.params"',
                 "Epoch[1] Validation-accuracy=", "Epoch[2] Validation-accuracy=", "Epoch[2] done: epoch 2/2"):
        assert line in log  # epochs numbered as the files are
    history = json.load(open(f"{prefix}-history.json"))  # the last line reads with the best epoch
    top = max(history, key=lambda record: (record["val_accuracy"], -record["val_loss"]))["epoch"]
    assert f"Read with: python lstm_ocr_infer.py --prefix {prefix} --epoch {top} " in result.stdout
    meta = json.load(open(f"{prefix}-meta.json"))
    assert (meta["network"], meta["loss"], meta["options"]["num_proc"]) == (network, loss, 1)
    for name in ("ocr-symbol.json", "ocr-meta.json", "ocr-0001.params", "ocr-0002.params", "ocr-0002.states"):
        assert os.path.isfile(tmp_path / name)
    image = str(tmp_path / "sample.jpg")
    assert run_script("captcha_generator.py", font, image, "--num", "0089").returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "2", image)
    assert result.returncode == 0, result.stderr
    # an untrained model may read any number of digits; a length outside its 3-4 is marked
    assert re.fullmatch(r"Digits: \[[0-9, ]*\]( untrained_length \(trained on 3-4\))?\n", result.stdout)


def test_another_alphabet_trains_and_infers_its_characters_without_flags(font, tmp_path):
    alnum = "0123456789abcdefghijklmnopqrstuvwxyz"
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--chars", alnum, "--min_len", "4",
                        "--max_len", "6", "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    assert "Epoch[1] Validation-accuracy=" in result.stderr
    meta = json.load(open(tmp_path / "ocr-meta.json"))
    assert (meta["chars"], meta["min_len"], meta["max_len"]) == (alnum, 4, 6)
    image = str(tmp_path / "sample.png")
    written = run_script("captcha_generator.py", font, image, "--chars", alnum, "--max_len", "6", "--num", "k7a2zq")
    assert written.returncode == 0, written.stderr
    result = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Text: [0-9a-z]*( untrained_length \(trained on 4-6\))?\n", result.stdout)


def test_a_crnn_refuses_more_characters_than_its_steps_can_hold(font, tmp_path):
    prefix = ["--prefix", str(tmp_path / "ocr")]
    with pytest.raises(InputError, match="--network crnn reads 20 steps .* too few for --max_len 10"):
        resolve(["--network", "crnn", "--max_len", "10", *prefix, font])
    assert resolve(["--network", "crnn", "--max_len", "9", *prefix, font]).hp.max_len == 9


def test_conv_blocks_go_with_a_crnn_tall_enough_for_them(font, tmp_path):
    prefix = ["--prefix", str(tmp_path / "ocr")]
    with pytest.raises(InputError, match="--crnn_blocks sizes the crnn's .* --network fused has none"):
        resolve(["--crnn_blocks", "3", *prefix, font])
    with pytest.raises(InputError, match="--crnn_first_channels sizes the crnn's .* --network fused has none"):
        resolve(["--crnn_first_channels", "16", *prefix, font])
    with pytest.raises(InputError, match="--image_height 7 is too low for --crnn_blocks 3: .* at least 8 rows"):
        resolve(["--network", "crnn", "--crnn_blocks", "3", "--image_height", "7", *prefix, font])
    run = resolve(["--recipe", "fast", "--crnn_blocks", "3", "--image_height", "8", *prefix, font])
    assert (run.hp.network, run.hp.crnn_blocks) == ("crnn", 3)


def test_options_resolve_from_the_command_line_over_the_recipe_over_the_defaults(font, tmp_path):
    run = resolve(["--recipe", "fast", "--num_hidden", "50", "--prefix", str(tmp_path / "ocr"), font])
    assert (run.hp.network, run.hp.optimizer, run.hp.num_hidden, run.hp.num_epoch) == ("crnn", "adam", 50, 12)
    assert run.args.given == {"recipe", "num_hidden", "prefix", "font_path"} and run.args.num_proc == 2
    assert resolve(["--prefix", str(tmp_path / "ocr"), font]).hp == Hyperparams()


def test_speed_lines_use_the_examples_format(font, tmp_path):
    args = ["--num_epoch", "1", "--train_epoch_size", "1632", "--eval_epoch_size", "32", "--batch_size", "32",
            "--num_hidden", "16", "--pool_size", "128", "--num_proc", "1", "--prefix", str(tmp_path / "ocr"), font]
    result = run_script("lstm_ocr_train.py", *args)
    assert result.returncode == 0, result.stderr
    assert "Epoch[1] Batch [50]\tSpeed: " in result.stderr and " samples/sec\taccuracy=" in result.stderr


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
    (["--prefix", "FILE/ocr"], ["cannot create the checkpoint folder", "FILE"]),
    (["--load_epoch", "3"], ["no checkpoint", "no checkpoint has prefix"]),
])
def test_bad_options_are_one_clear_line(font, tmp_path, args, words):
    (tmp_path / "FILE").write_text("a file, not a folder")
    args = [arg.replace("FILE", str(tmp_path / "FILE")) for arg in args]
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
    assert resumed.returncode == 0 and "Epoch[2] Validation-accuracy=" in resumed.stderr, resumed.stderr
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
    with pytest.raises(InputError, match=message):
        resolve(["--kv_store", kv_store, "--prefix", str(tmp_path / "ocr"), "font"])


def test_a_worker_environment_passes_the_checks(monkeypatch, tmp_path):
    for name in ("DMLC_ROLE", *DMLC_ENV):
        monkeypatch.setenv(name, "worker" if name == "DMLC_ROLE" else "1")
    assert resolve(["--kv_store", "dist_sync", "--prefix", str(tmp_path / "ocr"), "font"]).args.kv_store == "dist_sync"


def test_each_rank_draws_different_data_and_rank_0_keeps_the_seed():
    assert data_seed(None, 3) is None
    assert data_seed(7, 0) == 7
    assert len({data_seed(7, rank) for rank in range(4)}) == 4


def test_a_non_finite_loss_stops_training_and_keeps_the_last_finite_checkpoint(tmp_path):
    """Epoch 1 trains on sound images, epoch 2 on NaN ones: the run stops with Diverged (one `error:` line
    in main), epoch 1's checkpoint stays, and no NaN checkpoint of epoch 2 is written."""
    import numpy as np

    from lstm_ocr import checkpoint
    from lstm_ocr import train as lstm_ocr_train
    from lstm_ocr.lstm import initial_params, lstm_ocr
    from lstm_ocr.ocr_iter import data_descs

    hp = Hyperparams(num_hidden=8, batch_size=4, train_epoch_size=8, eval_epoch_size=4, num_epoch=3)
    mod = mx.mod.Module(lstm_ocr(hp), data_names=["data"], label_names=["label"], context=mx.cpu())
    mod.bind(*data_descs(hp))
    mod.init_params(arg_params=initial_params(hp, mx.init.Xavier()), allow_missing=True)
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.001})

    class Batches:
        num_batches, epoch = 2, 0

        def reset(self):
            self.epoch += 1

        def __iter__(self):
            fill = np.nan if self.epoch == 2 else 0.5
            for _ in range(self.num_batches):
                yield mx.io.DataBatch([mx.nd.full((4, hp.image_width, hp.image_height), fill)],
                                      [mx.nd.array(np.tile([1, 2, 3, 0], (4, 1)))])

    prefix = str(tmp_path / "ocr")
    with pytest.raises(lstm_ocr_train.Diverged, match="training loss became nan at epoch 2, batch 1"):
        lstm_ocr_train.fit(mod, Batches(), lambda: {"accuracy": 0.0, "loss": 1.0}, hp, prefix, 0)
    assert checkpoint.saved_epochs(prefix) == [1]
    _, arg_params, _ = checkpoint.load(prefix, 1)
    assert all(np.isfinite(value.asnumpy()).all() for value in arg_params.values())
    assert lstm_ocr_train.last_checkpoint(prefix).endswith("ocr-0001.params")


def tiny_module(hp: Hyperparams):
    from lstm_ocr.lstm import initial_params, lstm_ocr
    from lstm_ocr.ocr_iter import data_descs

    mod = mx.mod.Module(lstm_ocr(hp), data_names=["data"], label_names=["label"], context=mx.cpu())
    mod.bind(*data_descs(hp))
    mod.init_params(arg_params=initial_params(hp, mx.init.Xavier()), allow_missing=True)
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.001})
    return mod


def test_a_run_stops_when_validation_stops_improving_and_keeps_the_best_and_last_epochs(tmp_path):
    """Validation best at epoch 2, then worse: with patience 2 the run stops after epoch 4 of 10, and
    with --keep_epochs 1 only epochs 2 (the best) and 4 (the last) keep their files."""
    import numpy as np

    from lstm_ocr import checkpoint
    from lstm_ocr import train as lstm_ocr_train

    hp = Hyperparams(num_hidden=8, batch_size=4, train_epoch_size=8, eval_epoch_size=4, num_epoch=10)
    batch = mx.io.DataBatch([mx.nd.full((4, hp.image_width, hp.image_height), 0.5)],
                            [mx.nd.array(np.tile([1, 2, 3, 0], (4, 1)))])

    class Batches:
        num_batches = 2

        def reset(self):
            pass

        def __iter__(self):
            return iter([batch] * self.num_batches)

    scores = iter([(0.5, 1.0), (0.7, 0.5), (0.6, 0.6), (0.6, 0.7), (0.9, 0.1)])
    prefix = str(tmp_path / "ocr")
    validate = lambda: dict(zip(("accuracy", "loss"), next(scores), strict=True))  # noqa: E731
    history = lstm_ocr_train.fit(tiny_module(hp), Batches(), validate, hp, prefix, 0, patience=2, keep_epochs=1,
                                 validation_images=100)
    assert [record.epoch for record in history] == [1, 2, 3, 4]
    assert checkpoint.saved_epochs(prefix) == [2, 4]
    assert [os.path.exists(checkpoint.states_path(prefix, epoch)) for epoch in (1, 2, 3, 4)] == [False, True, False,
                                                                                                  True]


@pytest.mark.parametrize("args, words", [
    (["--seed", "-1"], "--seed must be between 0 and"), (["--seed", str(2 ** 40)], "--seed must be between 0"),
    (["--batch_size", "100000"], "--batch_size must be at most 4096"),
    (["--num_hidden", "1000000"], "--num_hidden must be at most"),
    (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
    (["--pool_size", "10000000", "--train_epoch_size", "10000000"], "--pool_size 10000000 and --eval_epoch_size"),
    (["--cpu", "100000"], "--cpu must be between 1 and"), (["--gpu", "100000"], "--gpu must be at most"),
    (["--keep_epochs", "-1"], "--keep_epochs must not be negative"),
    (["--patience", "1000000"], "--patience must be at most 100000"),
])
def test_every_count_option_is_bounded(font, tmp_path, args, words):
    with pytest.raises(InputError, match=re.escape(words)):
        resolve(["--prefix", str(tmp_path / "ocr"), *args, font])


def test_the_arithmetic_style_sets_its_alphabet_and_trains(font, tmp_path, model):
    prefix = ["--prefix", str(tmp_path / "ocr")]
    hp = resolve(["--style", "arithmetic", *prefix, font]).hp
    assert (hp.chars, hp.min_len, hp.max_len) == (arithmetic.ALPHABET, arithmetic.MIN_LEN, arithmetic.MAX_LEN)
    tuned = resolve(["--style", "arithmetic", "--finetune", f"{model}:3", *prefix, font]).hp  # a digit reader
    assert (tuned.chars, tuned.max_len, tuned.num_hidden) == (arithmetic.ALPHABET, arithmetic.MAX_LEN, 16)
    assert resolve(["--style", "arithmetic", "--max_len", "7", *prefix, font]).hp.max_len == 7
    assert resolve(["--style", "varied", *prefix, font]).hp.chars == "0123456789"
    with pytest.raises(InputError, match="--style arithmetic draws '\\*\\+-/=\\?x×÷', outside the alphabet"):
        resolve(["--style", "arithmetic", "--chars", "0123456789", *prefix, font])
    with pytest.raises(InputError, match="--style arithmetic needs --max_len 4 at least, got 3"):
        resolve(["--style", "arithmetic", "--min_len", "3", "--max_len", "3", *prefix, font])
    result = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "1", "--style", "arithmetic", *prefix, font)
    assert result.returncode == 0, result.stderr
    meta = json.load(open(tmp_path / "ocr-meta.json"))
    assert (meta["chars"], meta["max_len"], meta["options"]["style"]) == (arithmetic.ALPHABET, 9, "arithmetic")


@pytest.mark.parametrize("options, words", [
    ({"font_path": ["a.ttf"]}, "option font_path"), ({"recipe": "nonsense"}, "option recipe"),
    (12, "options are int"), ({"augment": True}, "option augment"), ({"synthetic": "0.5"}, "option synthetic"),
])
def test_a_resumed_meta_file_with_options_of_the_wrong_types_is_one_line(model, tmp_path, options, words):
    """A hand-edited or hostile meta file: its saved options are checked as the command line's would be."""
    prefix = str(tmp_path / "ocr")
    for name in os.listdir(os.path.dirname(model)):
        shutil.copy(os.path.join(os.path.dirname(model), name), tmp_path / name)
    with open(checkpoint.meta_path(prefix), encoding="utf-8") as file:
        meta = json.load(file)
    meta["options"] = options
    with open(checkpoint.meta_path(prefix), "w", encoding="utf-8") as file:
        json.dump(meta, file)
    with pytest.raises(InputError, match=f"ocr-meta.json is not a valid checkpoint meta file: its {words}"):
        resolve(["--load_epoch", "3", "--prefix", prefix])


def test_the_letters_recipe_is_the_letters_models_command(font, tmp_path):
    alnum = "0123456789abcdefghijklmnopqrstuvwxyz"
    today = ["--recipe", "fast", "--style", "varied", "--fit", "pad", "--chars", alnum, "--case", "fold",
             "--min_len", "3", "--max_len", "6", "--crnn_blocks", "3", "--crnn_first_channels", "16",
             "--seq_length", "96", "--image_height", "36", "--num_hidden", "200", "--num_epoch", "48",
             "--eval_epoch_size", "2048", "--lr_schedule", "cosine"]  # docs/letters-model.md
    prefix = ["--prefix", str(tmp_path / "ocr"), font]
    recipe = resolve(["--recipe", "letters", "--style", "varied", "--num_epoch", "48", *prefix]).hp
    assert recipe == resolve([*today, *prefix]).hp and recipe.crnn_shape == "wide"
