"""Self-training on unlabelled images (lstm_ocr/adapt.py, `lstm_ocr_train.py --unlabelled_dir`): the
trusted readings become the labels, --val_dir is never trained on, the estimate is logged each round,
an unreadable look and a bad folder are each refused in one line."""

import csv
import hashlib
import os
import random

import captcha
import pytest

from conftest import one_line_error, run_script
from lstm_ocr import adapt
from lstm_ocr.captcha_generator import CaptchaGen, write_image
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.reader import Constraints, Reading

TINY = ["--num_epoch", "1", "--train_epoch_size", "32", "--batch_size", "16", "--num_proc", "1", "--augment", "0"]


def draw(folder, count: int, seed: int, named: bool) -> list[tuple[str, str]]:
    """`count` captchas of 4 digits in the example's look; named NNNN_TEXT.png if `named`, else imgN.png."""
    font = os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")
    gen, rng = CaptchaGen([font], Hyperparams(chars="0123456789", max_len=4)), random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    items = []
    for i in range(count):
        text = "".join(rng.choice("0123456789") for _ in range(4))
        items.append((os.path.join(folder, f"{i:04d}_{text}.png" if named else f"img{i}.png"), text))
        write_image(gen.render(text), items[-1][0])
    return items


def digest(path: str) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapt")
    draw(root / "unlabelled", 80, seed=1, named=False)
    draw(root / "val", 12, seed=2, named=True)
    draw(root / "labelled", 5, seed=3, named=True)
    return {name: str(root / name) for name in ("unlabelled", "val", "labelled")}


def test_trusted_keeps_confident_readings_only():
    readings = [Reading("1234", 0.95, []), Reading("1243", 0.5, []), Reading("", 0.0, [], error="unreadable"),
                Reading("4321", 0.9, [])]  # every character is trusted in 2 of its 3 readings already
    assert adapt.trusted(["a", "b", "c", "d"], readings, 0.9) == [("a", "1234"), ("d", "4321")]
    assert adapt.estimate(readings) == pytest.approx((0.95 + 0.5 + 0.9) / 4)  # a failed reading counts 0


def test_trusted_readings_are_balanced_by_character():
    """A third of the readings are trusted, so a third of those holding `l` are too: the surest of them,
    though below the threshold; `2` is trusted in half of its readings already, so its unsure one stays out."""
    readings = [Reading("1111", 0.99, []), Reading("1121", 0.98, []), Reading("l111", 0.5, []),
                Reading("l1l1", 0.3, []), Reading("l11", 0.2, []), Reading("2222", 0.4, [])]
    chosen = adapt.trusted(list("abcdef"), readings, 0.9)
    assert chosen == [("a", "1111"), ("b", "1121"), ("c", "l111")]


def test_the_estimate_share_is_fixed_and_apart(folders):
    images = adapt.unlabelled_images(folders["unlabelled"])
    train, held = adapt.split(images)
    assert set(adapt.split(list(reversed(images)))[1]) == set(held)  # by name, not by order
    assert not set(train) & set(held) and len(held) == round(adapt.ESTIMATE_SHARE * len(images))


def test_rounds_train_on_trusted_readings_never_on_val_dir(folders, tmp_path):
    prefix = str(tmp_path / "site" / "ocr")
    result = run_script("lstm_ocr_train.py", "--unlabelled_dir", folders["unlabelled"], "--val_dir", folders["val"],
                        "--train_dir", folders["labelled"], "--allowed", "0123456789", "--length", "4",
                        "--finetune", "general", "--prefix", prefix, "--rounds", "2", *TINY)
    assert result.returncode == 0, result.stderr
    rounds = [line for line in result.stderr.splitlines() if " Round " in line]
    assert "Round 0: general epoch" in rounds[0] and "--val_dir accuracy" in rounds[0]
    assert any("Round 1: trained on" in line for line in rounds)
    assert all("estimate 0." in line or "estimate 1." in line for line in rounds)
    work = os.path.join(f"{prefix}-unlabelled", "round1")
    with open(os.path.join(work, "labels.csv")) as file:
        rows = list(csv.reader(file))[1:]
    used = int(rounds[1].split("trained on ")[1].split(" of ")[0])
    assert len(rows) == used + 5  # the trusted readings and the labelled images
    val = {digest(os.path.join(folders["val"], name)) for name in os.listdir(folders["val"])}
    held = {digest(path) for path in adapt.split(adapt.unlabelled_images(folders["unlabelled"]))[1]}
    copied = {digest(os.path.join(work, name)) for name, _ in rows}
    assert not copied & val and not copied & held
    texts = {digest(os.path.join(work, name)): text for name, text in rows}
    truth = {digest(os.path.join(folders["labelled"], name)): name[5:9] for name in os.listdir(folders["labelled"])}
    assert all(texts[key] == text for key, text in truth.items())
    assert all(len(text) == 4 and text.isdigit() for text in texts.values())
    last = result.stdout.splitlines()[-1]
    assert last.startswith("Read with: python lstm_ocr_infer.py --prefix ") and "(estimate " in last


def test_an_unreadable_look_is_refused_and_nothing_is_trained(folders, model, tmp_path):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", "--unlabelled_dir", folders["unlabelled"], "--finetune", f"{model}:3",
                        "--prefix", prefix, *TINY)
    one_line_error(result, "cannot read this look", "nothing was trained")
    assert not os.path.exists(f"{prefix}-unlabelled") and not os.path.exists(f"{prefix}-round1-meta.json")


@pytest.mark.parametrize("extra, words", [
    (["--val_dir", "UNLABELLED"], ["--val_dir shares files with --unlabelled_dir"]),
    (["--no_such_option"], ["unrecognized arguments: --no_such_option"]),
    (["--finetune", "general:0"], ["--finetune takes PREFIX or PREFIX:EPOCH"]),
    (["--min_confidence", "1.5"], ["--min_confidence must be above 0 and at most 1"]),
    (["--allowed", "0123456789!"], ["--allowed has '!'"]),
])
def test_bad_options_are_one_error_line_before_any_work(folders, tmp_path, extra, words):
    extra = [folders["unlabelled"] if arg == "UNLABELLED" else arg for arg in extra]
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", "--unlabelled_dir", folders["unlabelled"], "--prefix", prefix, *extra)
    one_line_error(result, *words)
    assert not os.path.exists(f"{prefix}-unlabelled")


def test_starting_model_reads_finetune_as_training_does():
    assert adapt.starting_model("general:38") == adapt.Model("general", 38)
    assert adapt.starting_model("runs/a:b") == adapt.Model("runs/a:b", None)


@pytest.mark.parametrize("make, words", [
    (lambda path: None, "does not exist"),
    (lambda path: os.makedirs(path), "has 0 image files"),
    (lambda path: open(path, "w").close(), "is a file"),
])
def test_a_bad_unlabelled_dir_is_one_error_line(tmp_path, make, words):
    folder = str(tmp_path / "site")
    make(folder)
    result = run_script("lstm_ocr_train.py", "--unlabelled_dir", folder, "--prefix", str(tmp_path / "ocr"))
    one_line_error(result, "--unlabelled_dir", words)


class FakeReader:
    """A Reader whose every reading of model PREFIX has the confidence ESTIMATES[PREFIX]."""

    estimates: dict[str, float] = {}

    def __init__(self, prefix: str, epoch: int | None = None):
        self.name, self.hp = f"{prefix} epoch {epoch}", Hyperparams()
        self.confidence = self.estimates[os.path.basename(prefix)]

    def constraints(self, allowed=None, length=None) -> Constraints:
        return Constraints(allowed, None)

    def read_each(self, sources, allowed=None, length=None):
        return (Reading("1234", self.confidence, []) for _ in sources)


@pytest.mark.parametrize("estimates, best", [
    ({"start": 0.5, "ocr-round1": 0.6, "ocr-round2": 0.55}, "ocr-round1 --epoch 1"),
    ({"start": 0.5, "ocr-round1": 0.45}, "start "),  # never a round whose estimate fell below the start's
    ({"start": 0.5, "ocr-round1": 0.6, "ocr-round2": 0.7}, "ocr-round2 --epoch 1"),  # --rounds 2 reached
])
def test_the_rounds_stop_once_the_estimate_stops_rising(folders, tmp_path, monkeypatch, capsys, estimates, best):
    trained = []
    monkeypatch.setattr(FakeReader, "estimates", estimates)
    monkeypatch.setattr(adapt, "Reader", FakeReader)
    monkeypatch.setattr(adapt, "train_round", lambda passed, work, start, prefix: trained.append(prefix)
                        or adapt.Model(prefix, 1))
    prefix = str(tmp_path / "ocr")
    adapt.run(["--unlabelled_dir", folders["unlabelled"], "--finetune", str(tmp_path / "start"), "--prefix", prefix,
               "--rounds", "2", "--min_confidence", "0.4"])
    assert capsys.readouterr().out.split("--prefix ")[1].startswith(os.path.join(str(tmp_path), best))
    assert len(trained) == min(2, len(estimates) - 1)


def test_too_few_trusted_readings_train_nothing(folders, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setattr(FakeReader, "estimates", {"start": 0.5})
    monkeypatch.setattr(adapt, "Reader", FakeReader)
    monkeypatch.setattr(adapt, "train_round", lambda *args: pytest.fail("trained on untrusted readings"))
    caplog.set_level("INFO")
    adapt.run(["--unlabelled_dir", folders["unlabelled"], "--finetune", str(tmp_path / "start"),
               "--prefix", str(tmp_path / "ocr"), "--min_confidence", "0.9"])
    assert "Only 0 of 64 readings have confidence >= 0.90" in caplog.text
    assert "--prefix " + str(tmp_path / "start") + " " in capsys.readouterr().out


def test_an_earlier_runs_rounds_are_never_replaced_without_overwrite(folders, tmp_path):
    prefix = str(tmp_path / "ocr")
    os.makedirs(os.path.join(f"{prefix}-unlabelled", "round1"))
    result = run_script("lstm_ocr_train.py", "--unlabelled_dir", folders["unlabelled"], "--finetune", "general",
                        "--prefix", prefix)
    one_line_error(result, f"{prefix}-unlabelled already exist from an earlier run", "--overwrite")
    assert os.listdir(f"{prefix}-unlabelled") == ["round1"]


def test_overwrite_replaces_an_earlier_runs_work_folders_whole(folders, tmp_path, monkeypatch, capsys):
    prefix = str(tmp_path / "ocr")
    os.makedirs(os.path.join(f"{prefix}-unlabelled", "round7"))  # a round of an earlier, longer run
    monkeypatch.setattr(FakeReader, "estimates", {"start": 0.5, "ocr-round1": 0.4})
    monkeypatch.setattr(adapt, "Reader", FakeReader)
    monkeypatch.setattr(adapt, "train_round", lambda passed, work, start, prefix: adapt.Model(prefix, 1))
    adapt.run(["--unlabelled_dir", folders["unlabelled"], "--finetune", str(tmp_path / "start"), "--prefix", prefix,
               "--min_confidence", "0.4", "--overwrite"])
    assert os.listdir(f"{prefix}-unlabelled") == ["round1"]


def test_reader_adapt_runs_the_rounds_and_returns_the_chosen_model(folders, tmp_path, capsys):
    from lstm_ocr import Reader

    start = Reader("general")
    prefix = str(tmp_path / "api" / "ocr")
    adapted = start.adapt(folders["unlabelled"], prefix, allowed="0123456789", length=4,
                          options=["--rounds", "1", *TINY])
    assert os.path.isfile(os.path.join(f"{prefix}-unlabelled", "round1", "labels.csv"))  # a round was trained
    assert adapted.checkpoint in {start.checkpoint, (f"{prefix}-round1", 1)}
    named = capsys.readouterr().out.splitlines()[-1].split("--prefix ")[1]  # the command's own last line
    assert named.startswith(f"{adapted.checkpoint[0]} ")
    assert adapted.read(os.path.join(folders["val"], sorted(os.listdir(folders["val"]))[0])).error is None


def test_reader_adapt_of_an_onnx_model_is_refused(folders, tmp_path):
    from lstm_ocr import Reader, models
    from lstm_ocr.cli import InputError

    with pytest.raises(InputError, match="ONNX model"):
        Reader.onnx(models.onnx_path("general")).adapt(folders["unlabelled"], str(tmp_path / "ocr"))
    assert not os.path.exists(tmp_path / "ocr-unlabelled")
