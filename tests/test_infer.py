"""The inference script: the example's output line, and a clear one-line error for every bad input."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import mxnet as mx
import pytest
from PIL import Image

from conftest import PYTHON, ROOT, SHIPPED, one_line_error, run_script
from lstm_ocr import arithmetic, checkpoint
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.infer import format_text
from lstm_ocr.lstm import initial_params, lstm_ocr


def test_prints_the_examples_digits_line(model, sample):
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", sample)
    assert result.returncode == 0, result.stderr
    # the untrained model may read any number of digits; a length outside its 3-4 is marked
    assert re.fullmatch(r"Digits: \[[0-9, ]*\]( untrained_length \(trained on 3-4\))?\n", result.stdout)


def test_color_images_of_other_sizes_are_resized(model, sample, tmp_path):
    big = tmp_path / "big.jpg"
    Image.open(sample).resize((400, 90)).save(big)
    gray = tmp_path / "gray.png"
    Image.open(sample).convert("L").save(gray)
    for path in (big, gray):
        result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(path))
        assert result.returncode == 0 and result.stdout.startswith("Digits: ["), result.stderr


def test_bad_images(model, sample, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    data = open(sample, "rb").read()
    jpeg = tmp_path / "whole.jpg"
    Image.open(sample).save(jpeg)
    (tmp_path / "cut.jpg").write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name, words in [("missing.png", ["does not exist"]), ("empty.png", ["empty"]),
                        ("text.jpg", ["not a readable image"]), ("cut.jpg", ["truncated"]),
                        ("cut.png", ["cut.png"])]:
        one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(tmp_path / name)),
                        *words)


def test_missing_checkpoint_lists_the_saved_epochs(model, sample):
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "7", sample),
                    "ocr-0007.params", "saved epochs: 3")
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model + "x", "--epoch", "3", sample),
                    "no checkpoint has prefix")


def test_corrupt_or_mismatched_params(model, sample, tmp_path):
    prefix = str(tmp_path / "ocr")
    shutil.copy(model + "-symbol.json", prefix + "-symbol.json")
    data = open(checkpoint.params_path(model, 3), "rb").read()
    open(checkpoint.params_path(prefix, 1), "wb").write(data[:100])
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", sample), "corrupt")
    other = Hyperparams(num_hidden=8)  # a params file of another network size
    mx.nd.save(checkpoint.params_path(prefix, 2),
               {f"arg:{k}": v for k, v in initial_params(other, mx.init.Xavier()).items()})
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "2", sample), "does not fit")


def test_many_images_and_folders_print_paths_and_accuracy(model, tmp_path, font):
    folder = tmp_path / "set"
    result = run_script("captcha_generator.py", "--count", "12", "--seed", "1", font, str(folder))
    assert result.returncode == 0, result.stderr
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 13
    names = sorted(os.listdir(folder))
    for line, name in zip(lines, names, strict=False):
        assert line.startswith(f"{folder / name} Digits: [")
    assert lines[-1].startswith("accuracy=") and lines[-1].endswith(" images=12")
    accuracy = float(lines[-1].split()[0].split("=")[1])
    lcs = float(lines[-1].split()[1].split("=")[1])
    assert 0.0 <= accuracy <= lcs <= 1.0


def test_accuracy_line_counts_right_and_wrong_names(model, tmp_path, font, sample):
    one = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", sample)
    predicted = one.stdout.split("[")[1].split("]")[0].replace(", ", "")
    wrong = "1111" if predicted != "1111" else "2222"
    by_name, by_file = tmp_path / "by_name", tmp_path / "by_file"
    by_name.mkdir()
    by_file.mkdir()
    shutil.copy(sample, by_name / f"0000_{predicted}x.png")  # the untrained model's reading may be empty
    shutil.copy(sample, by_name / f"0001_{wrong}.png")
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(by_name))
    assert result.stdout.splitlines()[-1].startswith("accuracy=0.0000 "), result.stderr
    # the summary says why: a label the model can never read, and a set too small to trust (stderr)
    assert "note: 1 of 2 labels use characters outside the model's alphabet '0123456789' ('x')" in result.stderr
    assert f"0000_{predicted}x.png" in result.stderr and "note: the accuracy counts only 2 labelled" in result.stderr
    shutil.copy(sample, by_file / "right.png")
    shutil.copy(sample, by_file / "wrong.png")
    (by_file / "labels.csv").write_text(f"file,text\nright.png,{predicted}\nwrong.png,{wrong}\n")
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(by_file))
    assert result.stdout.splitlines()[-1].startswith("accuracy=0.5000 "), result.stderr
    unlabelled = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", sample, sample)
    assert len(unlabelled.stdout.splitlines()) == 2  # no accuracy line without labels in the names
    scans = tmp_path / "scans"  # names with `_` and digits that are not labels
    scans.mkdir()
    for name in ("scan_2023.png", "scan_2024.png"):
        shutil.copy(sample, scans / name)
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(scans))
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2 and "accuracy=" not in result.stdout


def test_hostile_inputs_are_one_line_each(model, sample, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(fifo), timeout=60),
                    "not a regular file")
    os.remove(fifo)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 50 kB on disk, 400 megapixels decoded
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(bomb)),
                    "400000000 pixels, over the limit")  # Pillow's own check, kept on
    with open(checkpoint.meta_path(model), encoding="utf-8") as file:
        meta = file.read()
    try:
        for broken in ("[]", '{"chars": 12}'):
            with open(checkpoint.meta_path(model), "w") as file:
                file.write(broken)
            one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", sample),
                            "ocr-meta.json is not a valid checkpoint meta file")
    finally:
        with open(checkpoint.meta_path(model), "w") as file:
            file.write(meta)


def test_reading_into_head_ends_quietly(model, sample, tmp_path):
    """`lstm_ocr_infer.py ... | head -2`: two lines, then a quiet exit (no traceback, no error line)."""
    folder = tmp_path / "many"
    folder.mkdir()
    padding = "x" * 200  # 300 lines of over 200 bytes: more than a pipe holds, so a write outlives `head`
    for index in range(300):
        os.link(sample, folder / f"{index:04d}{padding}.png")
    command = f"set -o pipefail; {PYTHON} {ROOT}/lstm_ocr_infer.py --prefix {model} --epoch 3 {folder} | head -2"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert result.stdout.startswith(str(folder / f"0000{padding}.png")) and len(result.stdout.splitlines()) == 2
    assert result.stderr == "" and result.returncode == 141  # cut off by head (SIGPIPE's status), quietly


def test_digit_models_print_the_examples_list():
    assert format_text(Hyperparams().text([1, 1, 9, 10]), Hyperparams()) == "Digits: [0, 0, 8, 9]"
    assert format_text("", Hyperparams()) == "Digits: []"


@pytest.mark.parametrize("chars, classes, expected", [
    ("0123456789abcdefghijklmnopqrstuvwxyz", [11, 8, 21, 3, 36], "Text: a7k2z"),
    ("ABC", [3, 1], "Text: CA"),
    ("ABC", [], "Text: "),
])
def test_other_alphabets_print_their_characters(chars, classes, expected):
    hp = Hyperparams(chars=chars)
    assert format_text(hp.text(classes), hp) == expected


def _shipped_model_accuracy(name: str, folder: str) -> float:
    """The accuracy line of shipped model NAME's last epoch on a folder of labelled captchas, read by its
    bare name from another folder."""
    epoch = checkpoint.saved_epochs(os.path.join(SHIPPED, name))[-1]
    result = run_script("lstm_ocr_infer.py", "--prefix", name, "--epoch", str(epoch), os.path.abspath(folder),
                        cwd=os.path.dirname(os.path.abspath(folder)))
    assert result.returncode == 0, result.stderr
    return float(result.stdout.splitlines()[-1].split()[0].split("=")[1])


def test_the_shipped_model_reads_fresh_captchas(tmp_path, font):
    """The shipped ocr works on a fresh clone: its last epoch reads new captchas (it scores about 0.98-0.99)."""
    folder = tmp_path / "set"
    assert run_script("captcha_generator.py", "--count", "60", font, str(folder)).returncode == 0
    assert _shipped_model_accuracy("ocr", str(folder)) >= 0.9


def test_the_shipped_general_model_reads_the_varied_style(tmp_path, font):
    """The shipped general reads varied captchas of 3-6 digits in one font (0.59 of these 100 since the
    style gained the families of issue 31, which general never saw; 0.80 before; some a person cannot
    read either); the shipped ocr, which never saw the varied style, 0.30 (mostly the 45 % of them in
    the example's look)."""
    folder = tmp_path / "varied"
    written = run_script("captcha_generator.py", "--style", "varied", "--seed", "3", "--count", "100",
                         "--min_len", "3", "--max_len", "6", font, str(folder))
    assert written.returncode == 0, written.stderr
    assert _shipped_model_accuracy("general", str(folder)) >= 0.5
    assert _shipped_model_accuracy("ocr", str(folder)) < 0.45


def test_the_shipped_arith_model_answers_fresh_sums(tmp_path, font):
    """The shipped arith answers sums in the arithmetic look in one font (0.75 of these 100, some of
    which a person cannot read either); the digit reader general answers none (no operators)."""
    folder = tmp_path / "sums"
    written = run_script("captcha_generator.py", "--style", "arithmetic", "--seed", "3", "--count", "100", font,
                         str(folder))
    assert written.returncode == 0, written.stderr
    for name, least, most in (("arith", 0.5, 1.0), ("general", 0.0, 0.0)):
        result = run_script("lstm_ocr_infer.py", "--prefix", name, "--answer", str(folder), cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr
        line = result.stdout.splitlines()[-1]
        assert line.startswith("answer_accuracy=") and line.endswith(" images=100"), line
        assert least <= float(line.split()[0].split("=")[1]) <= most, line


def test_a_meta_file_that_does_not_fit_the_params_is_refused(model, sample, tmp_path):
    prefix = str(tmp_path / "ocr")
    for suffix in ("-symbol.json", "-0003.params"):
        shutil.copy(model + suffix, prefix + suffix)
    open(checkpoint.meta_path(prefix), "w").write('{"chars": "abc"}')
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "3", sample),
                    "has 3 characters but", "has 10")


# --- ONNX, confidences, JSON, the Python API ---------------------------------------------------

ONNX_PYTHON = os.path.join(ROOT, ".venv-onnx", "bin", "python")


def _in_onnx_venv(*args: str) -> subprocess.CompletedProcess:
    if not os.path.exists(ONNX_PYTHON):
        pytest.fail("no .venv-onnx: `make onnx-venv` (a dependency of `make test`) creates it")
    return subprocess.run([ONNX_PYTHON, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_onnx_path_runs_without_mxnet_and_prints_the_same_lines(model, onnx_model, tmp_path, font, sample):
    assert "No module named 'mxnet'" in _in_onnx_venv("-c", "import mxnet").stderr
    assert _in_onnx_venv("-c", "import numpy; print(numpy.__version__)").stdout.startswith("2.")
    folder = tmp_path / "set"
    assert run_script("captcha_generator.py", "--count", "12", "--seed", "2", font, str(folder)).returncode == 0
    for images in ([sample], [str(folder)], [str(folder), "--json"]):
        expected = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", *images)
        found = _in_onnx_venv(os.path.join(ROOT, "lstm_ocr_infer.py"), "--onnx", onnx_model, *images)
        assert expected.returncode == 0 and found.returncode == 0, found.stderr
        if "--json" not in images:
            assert found.stdout == expected.stdout
            continue
        mine_lines, their_lines = found.stdout.splitlines(), expected.stdout.splitlines()
        for mine, theirs in zip(map(json.loads, mine_lines), map(json.loads, their_lines), strict=True):
            assert mine["path"] == theirs["path"] and mine["text"] == theirs["text"]
            assert abs(mine["confidence"] - theirs["confidence"]) <= 1e-4


def test_json_lines_carry_confidence_and_character_probabilities(onnx_model, tmp_path, font):
    folder = tmp_path / "set"
    assert run_script("captcha_generator.py", "--count", "6", "--seed", "3", font, str(folder)).returncode == 0
    result = run_script("lstm_ocr_infer.py", "--onnx", onnx_model, "--json", str(folder))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 6 and [line["path"] for line in lines] == sorted(str(p) for p in folder.iterdir())
    for line in lines:
        assert set(line) == {"path", "text", "confidence", "chars", "untrained_length", "label", "correct"}
        assert line["label"] == line["path"].rsplit("_", 1)[1][:-4]
        assert line["correct"] == (line["text"] == line["label"])
        assert "".join(c["char"] for c in line["chars"]) == line["text"]
        assert 0 <= line["confidence"] <= 1 and all(0 < c["probability"] <= 1 for c in line["chars"])
    threshold = sorted(line["confidence"] for line in lines)[3]
    marked = run_script("lstm_ocr_infer.py", "--onnx", onnx_model, "--json", "--min_confidence", str(threshold),
                        str(folder))
    rejected = [json.loads(line)["rejected"] for line in marked.stdout.splitlines()]
    assert rejected == [line["confidence"] < threshold for line in lines] and sum(rejected) == 3
    text = run_script("lstm_ocr_infer.py", "--onnx", onnx_model, "--min_confidence", str(threshold), str(folder))
    assert sum(" rejected confidence=" in line for line in text.stdout.splitlines()) == 3


def test_without_mxnet_what_needs_it_is_one_line_naming_the_way(model, sample):
    for script, args in (("lstm_ocr_infer.py", ["--prefix", model, sample]), ("lstm_ocr_train.py", ["font/"]),
                         ("onnx_export.py", ["--prefix", model, "--out", "x.onnx"]),
                         ("captcha_generator.py", ["font/", "x.png"]), ("lstm.py", ["--epoch", "3", "--to", "onnx"])):
        result = _in_onnx_venv(os.path.join(ROOT, script), *args)
        assert result.returncode != 0 and result.stdout == "", (script, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (script, result.stderr)
        assert ".venv" in result.stderr and "--onnx FILE" in result.stderr


def test_constrained_reading_from_the_command_line(model, sample, tmp_path, font):
    folder = tmp_path / "set"
    assert run_script("captcha_generator.py", "--count", "8", "--seed", "4", font, str(folder)).returncode == 0
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--allowed", "0123", "--length", "4", "--json",
                        str(folder))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 8 and all(len(line["text"]) == 4 and set(line["text"]) <= set("0123") for line in lines)
    assert result.stderr.startswith("accuracy=")  # the accuracy line leaves stdout to the JSON
    text = run_script("lstm_ocr_infer.py", "--prefix", model, "--length", "6", sample)
    assert text.returncode == 0 and text.stdout.endswith(" untrained_length (trained on 3-4)\n"), text.stdout
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--length", "4-2", sample), "--length")
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--allowed", "0a", sample), "'a'")
    broken = run_script("lstm_ocr_infer.py", "--prefix", model, "--allowed", "7", "--length", "41", sample)
    assert broken.returncode == 1 and broken.stderr.startswith("error: ") and "80 output steps" in broken.stderr


def test_misreads_say_what_was_expected(model, tmp_path, sample):
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copy(sample, folder / "0000_0089.png")
    reading = run_script("lstm_ocr_infer.py", "--prefix", model, str(folder))  # --epoch: the latest, 3
    line = reading.stdout.splitlines()[0]
    assert reading.returncode == 0 and (line.endswith(" misread, expected 0089") or "Digits: [0, 0, 8, 9]" in line)


def test_bad_options_and_models_are_one_line(model, onnx_model, sample, tmp_path):
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", onnx_model, "--epoch", "3", sample), "not both")
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", onnx_model, "--min_confidence", "2", sample),
                    "between 0 and 1")
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", checkpoint.params_path(model, 3), sample),
                    "not a readable ONNX model")
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", str(tmp_path / "none.onnx"), sample), "none.onnx")
    import onnx
    stripped = onnx.load(onnx_model)
    del stripped.metadata_props[:]
    onnx.save(stripped, str(tmp_path / "other.onnx"))
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", str(tmp_path / "other.onnx"), sample),
                    "not one `onnx_export.py` wrote")
    broken = onnx.load(onnx_model)
    for prop in broken.metadata_props:
        if prop.key == "hyperparameters":
            prop.value = '{"chars": 12}'
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", str(tmp_path / "broken.onnx"), sample),
                    "unusable metadata")


def _readme_snippet() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## A Python API"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def test_the_readme_snippet_runs(tmp_path, sample):
    """The README's Python example, as written there, run in a folder holding only a sample.png, with the
    installed package (no PYTHONPATH): the shipped model is found by its name."""
    gen = run_script("captcha_generator.py", os.path.join(ROOT, "font", "DejaVuSerif.ttf")
                     if os.path.exists(os.path.join(ROOT, "font", "DejaVuSerif.ttf")) else font_of_captcha(),
                     str(tmp_path / "sample.png"), "--num", "0089")
    assert gen.returncode == 0, gen.stderr
    result = subprocess.run([sys.executable, "-c", _readme_snippet()], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()  # the captcha's noise is random: its reading need not be 0089
    text, confidence, chars = first.split(" ", 2)
    assert 0.0 < float(confidence) <= 1.0 and len(text) >= 1, result.stdout
    assert "".join(char for char, _ in ast.literal_eval(chars)) == text
    texts, _, as_dict = second.partition("] ")
    assert ast.literal_eval(texts + "]") == [text, text]
    assert ast.literal_eval(as_dict)["text"] == text


def font_of_captcha() -> str:
    import captcha
    return os.path.join(os.path.dirname(captcha.__file__), "data", "DroidSansMono.ttf")


@pytest.fixture(scope="module")
def arith_model(tmp_path_factory) -> str:
    """An untrained checkpoint of the arithmetic alphabet at epoch 1 (arbitrary readings)."""
    hp = Hyperparams(num_hidden=16, chars=arithmetic.ALPHABET, min_len=4, max_len=9)
    prefix = str(tmp_path_factory.mktemp("arith") / "arith")
    checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    return prefix


def test_answers_are_printed_beside_the_readings_and_counted(arith_model, tmp_path, font):
    folder = tmp_path / "sums"
    made = run_script("captcha_generator.py", "--style", "arithmetic", "--count", "6", "--seed", "2", font,
                      str(folder))
    assert made.returncode == 0, made.stderr
    texts = dict(line.split(",") for line in (folder / "labels.csv").read_text().splitlines()[1:])
    assert all(name.split("_")[1] == f"{arithmetic.answer(text)}.png" for name, text in texts.items())
    # the untrained model's readings, held to 1, + and =, may parse (1+1=) or not (+1++): each line says which
    args = ("--prefix", arith_model, "--answer", "--allowed", "1+=", "--length", "4")
    lines = run_script("lstm_ocr_infer.py", *args, str(folder)).stdout.splitlines()
    found = [re.fullmatch(r"\S+ Text: (\S+) (?:Answer: (\d+)|no_answer \(does not parse\) confidence=0\.\d{4})"
                          r"( wrong answer, expected \d+)?", line) for line in lines[:-1]]
    assert len(found) == 6 and all(found), lines
    assert all(m.group(2) == (None if arithmetic.answer(m.group(1)) is None else str(arithmetic.answer(m.group(1))))
               for m in found)
    right = sum(m.group(3) is None for m in found)
    unparsed = sum(m.group(2) is None for m in found)
    assert lines[-1] == f"answer_accuracy={right / 6:.4f} no_answer={unparsed} images=6"
    objects = [json.loads(line) for line in run_script("lstm_ocr_infer.py", *args, "--json", str(folder)).stdout
               .splitlines()]
    assert [o["answer"] for o in objects] == [arithmetic.answer(o["text"]) for o in objects]
    assert [o["expected_answer"] for o in objects] == [arithmetic.answer(t) for t in texts.values()]
    by_name = tmp_path / "by_name"  # names NNNN_ANSWER alone: the same expected answers
    by_name.mkdir()
    for name in texts:
        shutil.copy(folder / name, by_name / name)
    again = run_script("lstm_ocr_infer.py", *args, "--json", str(by_name)).stdout.splitlines()
    assert [json.loads(line)["correct"] for line in again] == [o["correct"] for o in objects]
    one = run_script("lstm_ocr_infer.py", *args, str(folder / next(iter(texts))))
    assert one.returncode == 0 and re.fullmatch(r"Text: \S+ (Answer: \d+|no_answer .*)\n", one.stdout), one.stdout
    plain = run_script("lstm_ocr_infer.py", "--prefix", arith_model, "--json", str(by_name)).stdout.splitlines()
    assert all("answer" not in json.loads(line) for line in plain)
    (by_name / "labels.csv").write_text("file,text\n" + "".join(f"{name},seven\n" for name in texts))
    one_line_error(run_script("lstm_ocr_infer.py", *args, str(by_name)), "'seven'",
                   "neither an answer (an integer) nor an arithmetic expression")


def test_a_folder_is_read_in_batches_and_a_bad_file_is_its_own_line(model, sample, tmp_path, monkeypatch):
    """One unreadable file (a float-offset TIFF, a broken PNG) among many is its own
    `error:` line and exit 1, the others read; decoding goes a batch at a time."""
    from test_images import _tiff_with_float_strip_offsets

    from lstm_ocr import reader as reader_module

    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(5):
        shutil.copy(sample, folder / f"{index:04d}_0089.png")
    (folder / "0002_0089.tif").write_bytes(_tiff_with_float_strip_offsets())
    (folder / "0003_1234.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 8 and lines[-1].endswith("images=7")
    errors = [line for line in lines if " error: " in line]
    assert [line.split()[0] for line in errors] == [str(folder / "0002_0089.tif"), str(folder / "0003_1234.png")]
    assert "TypeError" in errors[0]
    reader = reader_module.Reader(model, 3, batch_size=2)
    decoded = []
    original = reader.network_input
    monkeypatch.setattr(reader, "network_input", lambda source: decoded.append(source) or original(source))
    passes = []
    inner = reader.read_inputs
    monkeypatch.setattr(reader, "read_inputs", lambda inputs, c: passes.append((len(decoded), len(inputs)))
                        or inner(inputs, c))
    readings = list(reader.read_each(sorted(str(p) for p in folder.iterdir())))
    assert [r.error is not None for r in readings] == [False, False, False, True, False, True, False]
    assert passes[0] == (2, 2)  # the first batch is read after two images are decoded, not seven
    with pytest.raises(InputError):
        reader.read_many(sorted(str(p) for p in folder.iterdir()))


def test_a_labels_file_that_cannot_be_read_is_one_line_before_any_reading(model, sample, tmp_path):
    """A moved labels folder leaves labels.csv dangling: the names must not become the labels."""
    folder = tmp_path / "set"
    folder.mkdir()
    for index in range(2):
        shutil.copy(sample, folder / f"{index:04d}_0089.png")
    (folder / "labels.csv").symlink_to(tmp_path / "moved" / "labels.csv")
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", model, "--epoch", "3", str(folder)),
                   "labels.csv cannot be read: a link to nothing")
