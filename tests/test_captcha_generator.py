import os

import cv2
import numpy as np
import pytest

from conftest import run_script
from lstm_ocr import arithmetic
from lstm_ocr.captcha_generator import CaptchaGen, check_text, describe, find_fonts
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.images import to_network_input
from lstm_ocr.labelled_data import folder_items

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def test_network_input_is_80_steps_of_30_pixels_in_unit_range(font):
    image = CaptchaGen([font], Hyperparams()).image("0089")
    assert image.shape == (80, 30) and image.dtype == np.float32
    assert 0.0 <= image.min() < image.max() <= 1.0


def test_network_input_is_the_transposed_resized_grayscale(font):
    hp = Hyperparams()
    rgb = np.asarray(CaptchaGen([font], hp).render("123"))
    assert rgb.shape == (60, 160, 3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    expected = cv2.resize(gray, (80, 30)).T
    assert np.abs(to_network_input(gray, hp).astype(int) - expected).max() == 0


def test_random_texts_are_3_or_4_digits(font):
    gen = CaptchaGen([font], Hyperparams(), seed=1)
    texts = [gen.random_text() for _ in range(200)]
    assert {len(t) for t in texts} == {3, 4}
    assert set("".join(texts)) == set("0123456789")


def test_random_texts_follow_the_alphabet_and_length_range(font):
    gen = CaptchaGen([font], Hyperparams(chars=ALNUM, min_len=4, max_len=6), seed=1)
    texts = [gen.random_text() for _ in range(300)]
    assert {len(t) for t in texts} == {4, 5, 6}
    assert set("".join(texts)) == set(ALNUM)


def test_case_fold_draws_letters_in_both_cases_labelled_in_the_alphabets(font):
    gen = CaptchaGen([font], Hyperparams(chars=ALNUM, case="fold", min_len=4, max_len=6), seed=2)
    drawn = [gen.cased(gen.random_text()) for _ in range(300)]
    letters = [text for text in drawn if sum(c.isalpha() for c in text) >= 2]
    assert any(t.isupper() for t in letters) and any(t.islower() for t in letters)
    assert any(not t.isupper() and not t.islower() for t in letters)  # mixed case in one image
    assert CaptchaGen([font], Hyperparams(chars=ALNUM), seed=2).cased("a7kz") == "a7kz"


def test_case_fold_checks_the_fonts_for_both_cases():
    hp = Hyperparams(chars="0a", case="fold")
    assert hp.drawn_chars == "0aA"
    assert find_fonts("font/DejaVuSans.ttf", hp.drawn_chars) == ["font/DejaVuSans.ttf"]


def test_digit_alphabets_describe_as_the_examples_list():
    assert describe("0089", Hyperparams()) == "digits [0, 0, 8, 9]"
    assert describe("a7k2", Hyperparams(chars=ALNUM)) == "text 'a7k2'"


def test_text_outside_alphabet_or_length_is_refused():
    hp = Hyperparams()
    with pytest.raises(InputError, match="outside the alphabet"):
        check_text("12a4", hp)
    with pytest.raises(InputError, match="3 to 4"):
        check_text("12345", hp)


def test_find_fonts_accepts_a_file_or_folder(font, tmp_path):
    assert find_fonts(font, "0123456789") == [font]
    (tmp_path / "b.ttf").write_bytes(open(font, "rb").read())
    (tmp_path / "a.TTF").write_bytes(open(font, "rb").read())
    (tmp_path / "notes.txt").write_text("not a font")
    assert [os.path.basename(p) for p in find_fonts(str(tmp_path), "0")] == ["a.TTF", "b.ttf"]


@pytest.mark.parametrize("make, message", [
    (lambda d: str(d / "missing.ttf"), "does not exist"),
    (lambda d: str(d), "no .ttf font in folder"),
    (lambda d: (d / "fake.ttf").write_text("hello") and str(d / "fake.ttf"), "is not a TrueType font"),
])
def test_find_fonts_refuses_bad_paths(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        find_fonts(make(tmp_path), "0")


def test_script_writes_the_given_digits(font, tmp_path):
    out = tmp_path / "sample.jpg"
    result = run_script("captcha_generator.py", font, str(out), "--num", "0089")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Captcha image with digits [0, 0, 8, 9] written to {out}\n"
    assert cv2.imread(str(out)).shape == (60, 160, 3)


def test_script_writes_the_given_text_of_another_alphabet(font, tmp_path):
    out = tmp_path / "sample.png"
    result = run_script("captcha_generator.py", font, str(out), "--chars", ALNUM, "--min_len", "4",
                        "--max_len", "6", "--num", "a7k2x")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Captcha image with text 'a7k2x' written to {out}\n"
    assert cv2.imread(str(out)).shape == (60, 160, 3)


def test_script_draws_random_text_of_the_alphabet_and_length(font, tmp_path):
    out = tmp_path / "sample.png"
    result = run_script("captcha_generator.py", font, str(out), "--chars", "xyz", "--min_len", "5", "--max_len", "6")
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("'")[1]
    assert result.stdout.startswith("Captcha image with text '") and len(text) in (5, 6) and set(text) <= set("xyz")
    assert out.exists()


def test_script_draws_random_digits(font, tmp_path):
    out = tmp_path / "sample.png"
    result = run_script("captcha_generator.py", font, str(out))
    digits = result.stdout.split("[")[1].split("]")[0].split(", ")
    assert result.returncode == 0 and len(digits) in (3, 4) and out.exists()


@pytest.mark.parametrize("args, message", [
    (["--num", "12a4"], "outside the alphabet"),
    (["--num", "12345"], "has 5 characters"),
    (["--num", ""], "has 0 characters"),
    (["--chars", "abc", "--num", "abd"], "'d' outside the alphabet 'abc'"),
    (["--chars", "abc", "--min_len", "4", "--max_len", "6", "--num", "abc"], "the model reads 4 to 6"),
    (["--chars", "abc", "--max_len", "6", "--num", "abcabca"], "has 7 characters"),
    (["--chars", "abca"], "repeated character"),
    (["--chars", ""], "--chars must not be empty"),
    (["--min_len", "5"], "--min_len 5 exceeds --max_len 4"),
    (["--max_len", "0"], "--max_len must be positive"),
])
def test_script_refuses_bad_text(font, tmp_path, args, message):
    result = run_script("captcha_generator.py", font, str(tmp_path / "x.png"), *args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_script_refuses_missing_output_folder(font, tmp_path):
    result = run_script("captcha_generator.py", font, str(tmp_path / "no" / "x.png"))
    assert result.returncode != 0 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_count_writes_labelled_images(font, tmp_path):
    folder = tmp_path / "set"
    result = run_script("captcha_generator.py", "--count", "5", font, str(folder))
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(folder))
    assert len(names) == 5 and [n[:5] for n in names] == ["0000_", "0001_", "0002_", "0003_", "0004_"]
    for name in names:
        digits = name[5:-4]
        assert name.endswith(".png") and digits.isdigit() and len(digits) in (3, 4)


def test_count_must_be_positive_and_write_into_a_folder(font, tmp_path):
    result = run_script("captcha_generator.py", "--count", "0", font, str(tmp_path / "set"))
    assert result.returncode == 2 and "--count must be between 1 and 1000000" in result.stderr
    (tmp_path / "file.png").write_text("")
    result = run_script("captcha_generator.py", "--count", "2", font, str(tmp_path / "file.png"))
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr


def test_a_font_without_a_glyph_for_the_alphabet_is_named(font, tmp_path):
    from fontTools import subset

    partial = str(tmp_path / "no_seven.ttf")
    options = subset.Options()
    options.notdef_outline = True
    font_subset = subset.Subsetter(options)
    loaded = subset.load_font(font, options)
    font_subset.populate(text="012345689")
    font_subset.subset(loaded)
    subset.save_font(loaded, partial, options)
    with pytest.raises(InputError, match=r"no_seven.ttf has no glyph for '7' of --chars '0123456789'"):
        find_fonts(partial, "0123456789")
    assert find_fonts(partial, "0123") == [partial]
    result = run_script("captcha_generator.py", str(tmp_path), str(tmp_path / "x.png"))
    assert result.returncode == 2 and "has no glyph for '7'" in result.stderr and result.stderr.count("\n") == 1


def test_count_never_mixes_two_sets_and_labels_any_alphabet_exactly(font, tmp_path):
    folder = tmp_path / "set"
    assert run_script("captcha_generator.py", "--count", "2", font, str(folder)).returncode == 0
    again = run_script("captcha_generator.py", "--count", "2", font, str(folder))
    assert again.returncode == 2 and "already holds 2 files" in again.stderr and len(os.listdir(folder)) == 2
    other = tmp_path / "other"  # names cannot hold / or _: NNNN.png, and the texts in labels.csv
    slash = run_script("captcha_generator.py", "--count", "6", "--chars", "0/1_", "--seed", "3", font, str(other))
    assert slash.returncode == 0, slash.stderr
    items = folder_items(str(other))
    assert [os.path.basename(path) for path, _ in items] == [f"{k:04d}.png" for k in range(6)]
    assert all(set(text) <= set("0/1_") for _, text in items) and any(set(text) & set("/_") for _, text in items)


def test_a_folder_that_cannot_be_written_is_one_line(font, tmp_path, monkeypatch):
    from lstm_ocr import captcha_generator

    gen = captcha_generator.CaptchaGen([font], Hyperparams())

    def read_only(path, exist_ok=False):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(captcha_generator.os, "makedirs", read_only)
    with pytest.raises(InputError, match="cannot create folder .*new: Permission denied"):
        captcha_generator.write_labelled(gen, 2, str(tmp_path / "new"))
    monkeypatch.undo()
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(captcha_generator.os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match="cannot write into folder .*locked"):
        captcha_generator.write_labelled(gen, 2, str(tmp_path / "locked"))
    monkeypatch.undo()
    for args in (["--count", "2", font, "/proc/captchas"], ["--count", str(10 ** 9), font, str(tmp_path / "many")],
                 ["--seed", "-1", font, str(tmp_path / "one.png")]):
        result = run_script("captcha_generator.py", *args)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
            result.stderr


def test_arithmetic_style_draws_sums_in_its_own_alphabet(font, tmp_path):
    hp = Hyperparams(**arithmetic.TEXT_DEFAULTS)
    gen = CaptchaGen([font], hp, seed=3, style="arithmetic")
    texts = [gen.random_text() for _ in range(300)]
    assert all(arithmetic.answer(t) is not None and "=" in t for t in texts)
    assert set("".join(texts)) == set(arithmetic.ALPHABET)
    assert np.asarray(gen.render(texts[0])).ndim == 3
    with pytest.raises(InputError, match=r"--style arithmetic draws '\*\+-/=\?x×÷', outside the alphabet"):
        CaptchaGen([font], Hyperparams(), style="arithmetic")
    folder = tmp_path / "sums"  # no --chars: the style's alphabet; named by answer, texts in labels.csv
    result = run_script("captcha_generator.py", "--style", "arithmetic", "--count", "4", "--seed", "3", font,
                        str(folder))
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in (folder / "labels.csv").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["file", "text"] and len(rows) == 5
    assert sorted(os.listdir(folder)) == sorted([name for name, _ in rows[1:]] + ["labels.csv"])
    assert [name for name, _ in rows[1:]] == [f"{i:04d}_{arithmetic.answer(t)}.png" for i, (_, t) in
                                              enumerate(rows[1:])]
    one = run_script("captcha_generator.py", "--style", "arithmetic", "--num", "6÷3=?", font, str(tmp_path / "s.png"))
    assert one.returncode == 0 and "'6÷3=?'" in one.stdout, one.stderr


def test_arithmetic_style_checks_the_fonts_for_its_operators(font, tmp_path):
    from fontTools import subset

    partial = str(tmp_path / "no_times.ttf")
    options = subset.Options()
    options.notdef_outline = True
    font_subset = subset.Subsetter(options)
    loaded = subset.load_font(font, options)
    font_subset.populate(text="0123456789+-*x÷/=?")
    font_subset.subset(loaded)
    subset.save_font(loaded, partial, options)
    result = run_script("captcha_generator.py", "--style", "arithmetic", partial, str(tmp_path / "x.png"))
    assert result.returncode == 2 and "has no glyph for '×'" in result.stderr and result.stderr.count("\n") == 1
