import os

import captcha.image as captcha_image
import numpy as np
import pytest

from conftest import ROOT, run_script
from lstm_ocr import hyperparameters
from lstm_ocr.captcha_generator import CaptchaGen, find_fonts
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import DIGITS, VARIED_MAX_SIZE, VARIED_MIN_SIZE, Hyperparams
from lstm_ocr.images import to_network_input
from lstm_ocr.multiproc_data import MPData
from lstm_ocr.styles import VariedCaptcha, _seeded_captcha

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def fonts() -> list[str]:
    """Every font of font/ (filled by `make fonts`)."""
    return find_fonts(os.path.join(ROOT, "font"), DIGITS)


def pixels(gen: CaptchaGen, count: int) -> list[np.ndarray]:
    return [np.asarray(gen.render(gen.random_text())) for _ in range(count)]


def test_the_same_seed_draws_the_same_images_and_another_seed_others(fonts):
    hp = Hyperparams(min_len=3, max_len=6)
    first, again = (pixels(CaptchaGen(fonts, hp, seed=11, style="varied"), 40) for _ in range(2))
    other = pixels(CaptchaGen(fonts, hp, seed=12, style="varied"), 40)
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True)) == 0


def test_the_example_share_is_seeded_too_and_leaves_the_captcha_package_as_it_was(font):
    import random
    before = captcha_image.secrets
    gen = captcha_image.ImageCaptcha(fonts=[font])
    with _seeded_captcha(random.Random(3)):
        first = np.asarray(gen.generate_image("123"))
    with _seeded_captcha(random.Random(3)):
        again = np.asarray(gen.generate_image("123"))
    assert np.array_equal(first, again) and captcha_image.secrets is before


def test_sizes_cover_the_range_and_text_stands_out(fonts):
    gen = CaptchaGen(fonts, Hyperparams(min_len=3, max_len=6), seed=5, style="varied")
    images = pixels(gen, 300)
    widths = np.array([image.shape[1] for image in images])
    heights = np.array([image.shape[0] for image in images])
    (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
    assert widths.min() >= min_w and widths.max() <= max_w and heights.min() >= min_h and heights.max() <= max_h
    assert widths.min() <= 70 and widths.max() >= 250 and heights.min() <= 25 and heights.max() >= 85
    aspect = widths / heights
    assert aspect.min() < 1.8 and aspect.max() > 4.5
    assert all(image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 for image in images)
    gray = [image.mean(axis=2) for image in images]
    assert min(np.percentile(g, 99) - np.percentile(g, 1) for g in gray) > 50  # never a blank image
    assert 0.05 < np.mean([g.mean() < 110 for g in gray]) < 0.35  # some light text on dark, most not


def test_varied_network_input_has_the_networks_shape(fonts):
    hp = Hyperparams()
    gen = CaptchaGen(fonts, hp, seed=1, style="varied")
    for _ in range(20):
        image = gen.image(gen.random_text())
        assert image.shape == (80, 30) and image.dtype == np.float32 and 0 <= image.min() < image.max() <= 1


def test_the_varied_look_does_not_depend_on_the_networks_input_size(fonts):
    """The example's share is the captcha package's 160x60 look for a larger network too (drawn at
    the network's size, its pixel-sized glyphs would shrink: a look no held-out set has)."""
    small, large = (CaptchaGen(fonts, Hyperparams(seq_length=w, image_height=h), seed=8, style="varied")
                    for w, h in ((80, 30), (96, 36)))
    texts = [small.random_text() for _ in range(60)]
    drawn = [(np.asarray(small.render(text)), np.asarray(large.render(text))) for text in texts]
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in drawn)
    assert sum(a.shape == (60, 160, 3) for a, _ in drawn) >= 5  # some of them are the example's own


def test_letters_with_descenders_and_repeats_draw_in_every_font(fonts):
    for path in fonts:
        gen = VariedCaptcha([path], seed=2)
        for text in ("gjpqy0", "0000"):
            gray = np.asarray(gen.render(text).convert("L"), dtype=np.float32)
            assert gray.shape[0] >= 20 and gray.shape[1] >= 50 and gray.std() > 5


def test_every_font_in_font_folder_has_every_digit():
    assert len(find_fonts(os.path.join(ROOT, "font"), DIGITS)) >= 1


def test_script_writes_reproducible_labelled_sets_of_the_alphabet_and_lengths(fonts, tmp_path):
    args = ["--style", "varied", "--seed", "4", "--count", "12", "--chars", ALNUM[:16], "--min_len", "2",
            "--max_len", "5", os.path.join(ROOT, "font")]
    for name in ("a", "b"):
        result = run_script("captcha_generator.py", *args, str(tmp_path / name))
        assert result.returncode == 0 and "12 labelled captcha images" in result.stdout, result.stderr
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(os.listdir(tmp_path / "b")) and len(names) == 12
    hp = Hyperparams(chars=ALNUM[:16], min_len=2, max_len=5)
    for name in names:
        text = name[5:-4]
        assert 2 <= len(text) <= 5 and set(text) <= set(hp.chars)
        label = hp.encode(text)
        assert list(label[:len(text)]) == [hp.chars.index(c) + 1 for c in text] and not label[len(text):].any()
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_bad_style_is_one_error_line(font, tmp_path):  # the trainer's: tests/test_lstm_ocr_train.py
    result = run_script("captcha_generator.py", "--style", "fancy", font, str(tmp_path / "x.png"))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "--style: invalid choice: 'fancy'" in result.stderr and "'example', 'varied'" in result.stderr


def test_captcha_gen_refuses_an_unknown_style(font):
    with pytest.raises(InputError, match="--style must be one of example, varied"):
        CaptchaGen([font], Hyperparams(), style="fancy")


def test_workers_draw_the_varied_style_they_are_given(font):
    hp = Hyperparams(min_len=3, max_len=6)
    with MPData(1, [font], hp, block_size=8, pool_blocks=1, seed=3, style="varied") as data:
        images, labels = data.take_block()
    local = CaptchaGen([font], hp, seed=3000, style="varied")  # worker 0 of seed 3 draws with seed 3 * 1000
    for image, label in zip(images, labels, strict=True):
        text = local.random_text()
        assert np.array_equal(label, hp.encode(text)) and np.array_equal(image, local.image_u8(text))


@pytest.mark.parametrize("shape", [(20, 50), (100, 300), (60, 160), (100, 120), (30, 300)])
def test_pad_keeps_the_aspect_ratio_and_fills_with_the_border_gray(shape):
    hp = Hyperparams(fit="pad")
    gray = np.full(shape, 200, dtype=np.uint8)
    gray[shape[0] // 4:-(shape[0] // 4), shape[1] // 4:-(shape[1] // 4)] = 20
    out = to_network_input(gray, hp).T
    assert out.shape == (30, 80)
    dark = np.argwhere(out < 110)
    (top, left), (bottom, right) = dark.min(axis=0), dark.max(axis=0)
    scale = min(80 / shape[1], 30 / shape[0])
    assert abs((right - left + 1) - shape[1] / 2 * scale) <= 2 and abs((bottom - top + 1) - shape[0] / 2 * scale) <= 2
    assert out[0, 0] == 200 and out[-1, -1] == 200


def test_stretch_is_the_examples_resize():
    gray = np.random.default_rng(0).integers(0, 256, (60, 160), dtype=np.uint8)
    assert to_network_input(gray, Hyperparams()).shape == (80, 30)
    with pytest.raises(InputError, match="--fit must be one of stretch, pad"):
        Hyperparams(fit="crop").validate()


def test_the_fit_is_read_from_the_meta_file_and_older_meta_files_stretch():
    assert hyperparameters.from_saved({"fit": "pad"}).fit == "pad"
    assert hyperparameters.from_saved({"chars": DIGITS}).fit == "stretch"  # the shipped ocr's meta has no fit
    with pytest.raises(InputError, match="--fit must be one of"):
        hyperparameters.from_saved({"fit": "crop"})


def test_the_trainer_trains_on_the_varied_style_and_inference_follows_its_fit(font, tmp_path):
    prefix = str(tmp_path / "ocr")
    result = run_script("lstm_ocr_train.py", "--style", "varied", "--fit", "pad", "--network", "crnn", "--seed", "1",
                        "--num_epoch", "1", "--train_epoch_size", "128", "--eval_epoch_size", "32", "--batch_size",
                        "32", "--num_hidden", "16", "--pool_size", "64", "--num_proc", "1", "--prefix", prefix, font)
    assert result.returncode == 0, result.stderr
    assert '"fit": "pad"' in (tmp_path / "ocr-meta.json").read_text()
    image = str(tmp_path / "sample.png")
    assert run_script("captcha_generator.py", "--style", "varied", "--num", "0089", font, image).returncode == 0
    read = run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "1", image)
    assert read.returncode == 0 and read.stdout.startswith("Digits: ["), read.stderr
