"""Training on folders of labelled images: from --train_dir to --finetune, and every bad input of a
user who brings their own captchas, each refused with one error line before any training."""

import json
import os
import shutil

import pytest

from conftest import SHIPPED, run_script
from lstm_ocr import models
from lstm_ocr import train as lstm_ocr_train
from lstm_ocr.captcha_generator import CaptchaGen, write_image
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams

PRETRAINED = os.path.join(SHIPPED, "ocr")
TINY = ["--num_epoch", "1", "--train_epoch_size", "64", "--batch_size", "16", "--num_hidden", "16",
        "--pool_size", "64", "--num_proc", "1"]


def draw(folder, texts: list[str], font: str, chars: str = "0123456789", max_len: int = 4,
         names: str = "{i:04d}_{text}.png") -> list[str]:
    """Captchas of `texts` in `folder`, named as `names` says."""
    os.makedirs(folder, exist_ok=True)
    gen = CaptchaGen([font], Hyperparams(chars=chars, max_len=max_len))
    paths = []
    for i, text in enumerate(texts):
        paths.append(os.path.join(folder, names.format(i=i, text=text)))
        write_image(gen.render(text), paths[-1])
    return paths


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> str:
    """20 labelled digit captchas, named NNNN_TEXT.png."""
    import captcha
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    folder = str(tmp_path_factory.mktemp("digits"))
    draw(folder, [f"{i * 37 % 1000:03d}" if i % 2 else f"{i * 7 + 1000}" for i in range(20)], font)
    return folder


def test_from_train_dir_to_finetune_on_another_alphabet(digits, font, tmp_path):
    prefix = str(tmp_path / "first" / "ocr")
    os.makedirs(os.path.dirname(prefix))
    result = run_script("lstm_ocr_train.py", *TINY, "--train_dir", digits, "--prefix", prefix, "--seed", "1")
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert f"Training on 18 labelled images of {digits}, validating on 2 held out of it" in log
    assert "Epoch[1] Validation-accuracy=" in log and "crnn network" in log  # folders: the fast recipe's network
    meta = json.load(open(f"{prefix}-meta.json"))
    assert (meta["chars"], meta["min_len"], meta["max_len"], meta["eval_epoch_size"]) == ("0123456789", 3, 4, 2)

    resumed = run_script("lstm_ocr_train.py", *TINY, "--num_epoch", "2", "--train_dir", digits, "--prefix", prefix,
                         "--load_epoch", "1")  # what the run was started with comes from its meta file
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in resumed.stderr and os.path.isfile(f"{prefix}-0002.params")

    letters = tmp_path / "letters"  # names without NNNN_ and a labels.csv that overrides them
    paths = draw(letters, ["ab1", "b2c9", "c3a", "a4bb", "1abc"], font, chars="0123456789abc",
                 names="img{i}.png")
    (letters / "labels.csv").write_text("file,text\n" + "".join(
        f"{os.path.basename(p)},{t}\n" for p, t in zip(paths, ["ab1", "b2c9", "c3a", "a4bb", "1abc"], strict=True)))
    val = tmp_path / "val"
    draw(val, ["cab", "12a"], font, chars="0123456789abc")
    tuned = str(tmp_path / "tuned")
    result = run_script("lstm_ocr_train.py", "--train_dir", str(letters), "--val_dir", str(val), "--finetune",
                        f"{prefix}:1", "--prefix", tuned, "--num_epoch", "1", "--train_epoch_size", "32",
                        "--batch_size", "16", "--num_proc", "1", "--augment", "0")
    assert result.returncode == 0, result.stderr
    log = result.stderr
    assert f"validating on 2 of {val}" in log and "Training on 5 labelled images" in log
    assert log.count("every layer but pred_fc is kept, pred_fc starts fresh") == 1
    assert f"Fine-tuning from {prefix}:1 (crnn network)" in log
    meta = json.load(open(f"{tuned}-meta.json"))
    assert (meta["chars"], meta["num_hidden"], meta["max_len"]) == ("12349abc", 16, 4)  # the size follows the start
    read = run_script("lstm_ocr_infer.py", "--prefix", tuned, "--epoch", "1", str(val))
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines()[-1].endswith("images=2")


def check(argv: list[str]) -> None:
    """What main does before it starts any process: resolve every option (and refuse what cannot work)."""
    lstm_ocr_train.resolve(argv)


def test_defaults_follow_the_folder_and_the_checkpoint(digits, tmp_path):
    run = lstm_ocr_train.resolve(["--train_dir", digits, "--finetune", f"{PRETRAINED}:12",
                                  "--prefix", str(tmp_path / "ocr")])
    hp = run.hp
    assert hp.network == "crnn" and hp.num_lstm_layer == 1 and hp.chars == "0123456789"
    assert (hp.optimizer, hp.lr_schedule, hp.batch_size) == ("adam", "cosine", 64)
    rules = lstm_ocr_train.hyperparameters.folder_schedule(18, finetune=True)  # 18: 20 less the hold-out
    assert (hp.num_epoch, hp.train_epoch_size, hp.learning_rate) == (
        rules["num_epoch"], rules["train_epoch_size"], rules["learning_rate"])
    latest = lstm_ocr_train.resolve(["--train_dir", digits, "--finetune", PRETRAINED,
                                     "--prefix", str(tmp_path / "ocr")])
    assert latest.start.arg_params.keys() == run.start.arg_params.keys()  # PREFIX alone: its latest epoch, 12
    assert all((latest.start.arg_params[name] == run.start.arg_params[name]).asnumpy().all()
               for name in run.start.arg_params)
    explicit = lstm_ocr_train.resolve(["--train_dir", digits, "--num_epoch", "3", "--learning_rate", "0.01",
                                       "--prefix", str(tmp_path / "ocr")]).hp
    scratch = lstm_ocr_train.hyperparameters.folder_schedule(18, finetune=False)  # no --finetune: from scratch
    assert (explicit.num_epoch, explicit.learning_rate, explicit.train_epoch_size) == (3, 0.01,
                                                                                       scratch["train_epoch_size"])


def test_a_case_folding_checkpoint_folds_the_folders_labels(tmp_path, font):
    import mxnet as mx

    from lstm_ocr import checkpoint
    from lstm_ocr.lstm import initial_params, lstm_ocr

    hp = Hyperparams(num_hidden=8, num_lstm_layer=1, chars="0123456789abc", case="fold")
    prefix = str(tmp_path / "fold")
    checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    folder = tmp_path / "mixed"
    draw(folder, ["aB1", "Cab2", "ab3", "AbC4", "1ba", "c2a", "ab12", "2cC", "bA3", "a1b2"], font,
         chars="0123456789abcABC", max_len=5)
    run = lstm_ocr_train.resolve(["--train_dir", str(folder), "--finetune", f"{prefix}:1",
                                  "--prefix", str(tmp_path / "ocr")])
    assert run.hp.chars == hp.chars and run.hp.case == "fold"
    assert all(text == text.lower() for _, text in run.plan.items)


@pytest.mark.parametrize("make, extra, words", [
    (lambda d: None, [], "is empty"),
    (lambda d: (d / "x.txt").write_text("x"), [], "has no image files"),
    (lambda d: shutil.copy(f"{PRETRAINED}-curves.png",
                           d / "x_.png"), [], "has no labelled images"),
    (lambda d: (d / "labels.csv").write_text("0000_123.png,12\nmissing.png,1\n"), ["COPY"],
     "names files that are not in .*missing.png"),
    (lambda d: (d / "labels.csv").write_text("../0000_123.png,12\n"), [], "is not a file inside"),
    (None, ["--chars", "012345678"], "characters '9' outside --chars '012345678'"),
    (None, ["--max_len", "3"], "longer than the 3 characters of --max_len 3"),
    (None, ["--finetune", f"{PRETRAINED}:12", "--num_hidden", "50"],
     "checkpoint .*models/ocr:12 does not fit .* this network's"),
    (None, ["--finetune", f"{PRETRAINED}:12", "--network", "fused"], "is a crnn network; --network fused cannot"),
    (None, ["--finetune", f"{PRETRAINED}:0"], "--finetune takes PREFIX or PREFIX:EPOCH"),
    (None, ["--finetune", f"{PRETRAINED}-none"], "no checkpoint has prefix .*ocr-none"),
    (None, ["--finetune", f"{PRETRAINED}:3"], "models/ocr-0003.params"),
    (None, ["--synthetic", "0.5"], "--synthetic draws captchas: give a font"),
    (None, ["--synthetic", "2", "FONT"], "--synthetic is a fraction"),
])
def test_bad_input_is_refused_before_training(digits, font, tmp_path, make, extra, words):
    folder = tmp_path / "data"
    if make is None:
        folder = digits
    else:
        folder.mkdir()
        if "COPY" in extra:
            shutil.copy(os.path.join(digits, "0000_1000.png"), folder / "0000_123.png")
        make(folder)
    extra = [font if word == "FONT" else word for word in extra if word != "COPY"]
    with pytest.raises(InputError, match=words):
        check(["--train_dir", str(folder), "--prefix", str(tmp_path / "ocr"), *extra])


def test_a_label_longer_than_the_network_can_emit(font, tmp_path):
    draw(tmp_path / "long", ["1234567890", "123"], font, max_len=10)
    with pytest.raises(InputError, match="longer than the 9 characters --network crnn reads in its 20 steps"):
        check(["--train_dir", str(tmp_path / "long"), "--prefix", str(tmp_path / "ocr")])


def test_val_dir_sharing_files_with_train_dir(digits, tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(os.path.join(digits, "0001_037.png"), val / "renamed_037.png")
    with pytest.raises(InputError, match="--val_dir shares files with --train_dir .*renamed_037.png = "):
        check(["--train_dir", digits, "--val_dir", str(val), "--prefix", str(tmp_path / "ocr")])
    with pytest.raises(InputError, match="--val_dir shares files"):
        check(["--train_dir", digits, "--val_dir", digits, "--prefix", str(tmp_path / "ocr")])


def test_options_that_need_a_folder_or_a_font(tmp_path):
    with pytest.raises(InputError, match="give a font"):
        check(["--prefix", str(tmp_path / "ocr")])
    with pytest.raises(InputError, match="--val_dir goes with --train_dir"):
        check(["--val_dir", str(tmp_path), "font"])
    with pytest.raises(InputError, match="--augment goes with --train_dir"):
        check(["--augment", "0", "font"])


def test_unreadable_images_are_named_and_counted_or_skipped(digits, font, tmp_path):
    folder = tmp_path / "some_bad"
    shutil.copytree(digits, folder)
    for i in range(7):
        (folder / f"bad{i}_123.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", *TINY, "--train_dir", str(folder), "--prefix", prefix)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: unreadable images (pass --skip_bad") and "bad0_123.png" in last
    assert "and 2 more (7 in all)" in last
    assert not os.path.exists(f"{prefix}-0001.params")
    result = run_script("lstm_ocr_train.py", *TINY, "--train_dir", str(folder), "--prefix", prefix, "--skip_bad",
                        "--synthetic", "0.5", font)
    assert result.returncode == 0, result.stderr
    assert "Skipped 7 unreadable images (--skip_bad)" in result.stderr
    assert os.path.isfile(f"{prefix}-0001.params")


def test_a_folder_holding_an_image_twice_is_reported(digits, tmp_path, caplog):
    folder = tmp_path / "twice"
    shutil.copytree(digits, folder)
    for name in os.listdir(digits):
        shutil.copy(os.path.join(digits, name), folder / f"copy{name}")
    with caplog.at_level("WARNING"):
        plan = lstm_ocr_train.resolve(["--train_dir", str(folder), "--prefix", str(tmp_path / "ocr")]).plan
    assert len(plan.val) == 4 and "holds the same image twice" in caplog.text


def test_a_fused_checkpoint_is_followed_or_converted(digits, tmp_path):
    import mxnet as mx

    from lstm_ocr import checkpoint
    from lstm_ocr.lstm import initial_params, lstm_ocr

    hp = Hyperparams(num_hidden=8, num_lstm_layer=1)
    prefix = str(tmp_path / "fused")
    checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    for extra, network, names in (([], "fused", {"lstm_parameters"}),
                                  (["--network", "unrolled"], "unrolled", {"l0_i2h_weight", "l0_h2h_bias"})):
        run = lstm_ocr_train.resolve(["--train_dir", digits, "--finetune", f"{prefix}:1",
                                      "--prefix", str(tmp_path / "ocr"), *extra])
        assert run.hp.network == network and (run.hp.num_hidden, run.hp.num_lstm_layer) == (8, 1)
        arg_params, _ = lstm_ocr_train.fitted_params(run.start, run.hp)
        assert names <= set(arg_params) and "pred_fc_weight" in arg_params  # same alphabet: pred_fc kept


def test_a_crnn_checkpoint_fixes_its_conv_blocks(digits, tmp_path):
    import mxnet as mx

    from lstm_ocr import checkpoint
    from lstm_ocr.lstm import initial_params, lstm_ocr

    hp = Hyperparams(num_hidden=8, num_lstm_layer=1, crnn_blocks=3, crnn_first_channels=16, fit="pad", network="crnn")
    prefix = str(tmp_path / "crnn")
    symbol = lstm_ocr(hp)
    _, _, aux_shapes = symbol.infer_shape(data=(1, hp.image_width, hp.image_height), label=(1, hp.num_label))
    aux = {name: mx.nd.ones(shape) for name, shape in zip(symbol.list_auxiliary_states(), aux_shapes, strict=True)}
    checkpoint.save(prefix, 1, symbol, initial_params(hp, mx.init.Xavier()), aux, hp)
    base = ["--train_dir", digits, "--finetune", f"{prefix}:1", "--prefix", str(tmp_path / "ocr")]
    for extra, refusal in (([], None),
                           (["--crnn_blocks", "2"], "--crnn_blocks 2.*it has c2_conv_weight"),
                           (["--crnn_first_channels", "32"],
                            "--crnn_first_channels 32.*its c0_conv_weight is \\(16, 1, 3, 3\\)")):
        if refusal is None:
            run = lstm_ocr_train.resolve(base + extra)
            assert run.hp.crnn_blocks == 3 and run.hp.crnn_first_channels == 16
            weights = lstm_ocr_train.fitted_params(run.start, run.hp)[0]
            assert weights["c0_conv_weight"].shape[0] == 16 and "c2_conv_weight" in weights
        else:
            with pytest.raises(InputError, match=refusal):
                lstm_ocr_train.resolve(base + extra)


@pytest.mark.parametrize("texts, chars, shipped, why", [
    (["1234", "5678", "9012"], "0123456789", "general", "the labels are digits only"),
    (["ab12", "Cd34", "x9y8"], "0123456789abcdxyCABD", "alnum", "the labels have letters"),
    (["7+3=?", "9x2=", "8-1=?"], "0123456789+-x=?", "arith", "the labels are sums"),
])
def test_finetune_auto_picks_the_shipped_model_that_fits_the_labels(tmp_path, font, caplog, texts, chars,
                                                                     shipped, why):
    folder = tmp_path / "mine"
    draw(folder, texts * 4, font, chars=chars, max_len=6, names="{i:04d}_{text}.png")
    with caplog.at_level("INFO"):
        run = lstm_ocr_train.resolve(["--train_dir", str(folder), "--finetune", "auto",
                                      "--prefix", str(tmp_path / "ocr")])
    assert run.args.finetune.endswith(os.path.join("lstm_ocr", "models", shipped))
    assert f"--finetune auto: starting from the shipped {shipped}, because {why}" in caplog.text
    assert os.path.basename(run.start.name) == shipped


def test_finetune_auto_needs_a_folder(font, tmp_path):
    with pytest.raises(InputError, match="--finetune auto picks the shipped model that fits a folder's labels"):
        check(["--finetune", "auto", "--prefix", str(tmp_path / "ocr"), font])


def test_folding_case_and_a_start_that_cannot_read_the_labels_are_each_one_line(tmp_path, font, caplog):
    folder = tmp_path / "mixed"
    draw(folder, ["aB12", "Cab2", "ab34", "AbC4"] * 3, font, chars="0123456789abcABC", max_len=5)
    with caplog.at_level("INFO"):
        lstm_ocr_train.resolve(["--train_dir", str(folder), "--finetune", "auto", "--prefix", str(tmp_path / "a")])
    folded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Labels folded")]
    assert len(folded) == 1 and "12 characters in 9 of 12 labels changed" in folded[0] and "--case keep" in folded[0]
    caplog.clear()
    with caplog.at_level("INFO"):
        run = lstm_ocr_train.resolve(["--train_dir", str(folder), "--finetune", "auto", "--case", "keep",
                                      "--prefix", str(tmp_path / "b")])
    assert "Labels folded" not in caplog.text and set(run.hp.chars) >= set("ABC")  # both cases kept
    caplog.clear()
    general = os.path.join(models.FOLDER, "general")
    with caplog.at_level("INFO"):
        run = lstm_ocr_train.resolve(["--train_dir", str(folder), "--finetune", general,
                                      "--prefix", str(tmp_path / "c")])
    line = next(r.getMessage() for r in caplog.records if "reads only" in r.getMessage())
    assert f"{general} reads only '0123456789', but 12 of 12 labels also use 'ABCab'" in line
    assert "--finetune auto picks" in line
    assert "Validation holds only 1 labelled images" in caplog.text and "--val_dir" in caplog.text


def test_a_run_whose_misreads_are_mostly_of_case_says_so_at_its_end(caplog):
    hp = Hyperparams(chars="0123456789abcABC")
    with caplog.at_level("INFO"):
        lstm_ocr_train.summarize(hp, 100, [("ab1", "AB1"), ("Ca2", "ca2"), ("123", "124")] + [("a", "a")] * 97)
    assert "2 of the 3 misreads differ from their label only in letter case" in caplog.text
    assert "--case fold" in caplog.text and "Validation holds only" not in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        lstm_ocr_train.summarize(hp, 20, [("123", "124")] + [("a", "a")] * 19)
    assert "letter case" not in caplog.text and "Validation holds only 20 labelled images" in caplog.text
