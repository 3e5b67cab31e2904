import os

import captcha.image as captcha_image
import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script
from lstm_ocr import hyperparameters
from lstm_ocr.captcha_generator import CaptchaGen, find_fonts
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import DIGITS, VARIED_MAX_SIZE, VARIED_MIN_SIZE, Hyperparams
from lstm_ocr.images import to_network_input
from lstm_ocr.multiproc_data import MPData
from lstm_ocr.styles import FAMILY_SHARES, GLYPH_SIZE, VariedCaptcha, _seeded_captcha

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


# --- the families of distortion (styles.FAMILY_SHARES) -----------------------------------

NOISE_OFF = {family: 0.0 for family in ("example", "lines", "arcs", "curve", "stroke_curve", "dots", "speckle",
                                        "image_warp", "blur", "jpeg", "invert")}
PLAIN_GLYPHS = {family: 0.0 for family in ("font_per_char", "rotation", "slant", "glyph_warp", "crowded", "hollow",
                                           "baseline_wave", "text_warp")}


def test_an_unknown_family_is_refused(font):
    with pytest.raises(ValueError, match="unknown families \\['holow'\\]"):
        VariedCaptcha([font], seed=1, shares={"holow": 1.0})


def test_every_family_forced_on_at_once_still_draws_images_within_the_size_range(fonts):
    gen = VariedCaptcha(fonts, seed=4, shares={family: 1.0 for family in FAMILY_SHARES} | {"example": 0.0})
    (min_w, min_h), (max_w, max_h) = VARIED_MIN_SIZE, VARIED_MAX_SIZE
    for index in range(30):
        image = np.asarray(gen.render(ALNUM[index % 30:index % 30 + 3 + index % 4]))
        assert min_h <= image.shape[0] <= max_h and min_w <= image.shape[1] <= max_w and image.shape[2] == 3
        gray = image.mean(axis=2)
        assert np.percentile(gray, 99) - np.percentile(gray, 1) > 50


def test_forced_families_are_reproducible_from_the_seed(fonts):
    shares = {"small_text": 1.0, "hollow": 1.0, "speckle": 1.0, "image_warp": 1.0}
    first, again = ([np.asarray(VariedCaptcha(fonts, seed=6, shares=shares).render("a7k2")) for _ in range(1)]
                    for _ in range(2))
    assert np.array_equal(first[0], again[0])


def test_small_text_lies_anywhere_in_a_large_field_and_its_ink_in_its_box(fonts):
    gen = VariedCaptcha(fonts, seed=3, shares=NOISE_OFF | {"small_text": 1.0})
    centres, shares, ink_inside = [], [], []
    for index in range(40):
        image = np.asarray(gen.render(ALNUM[index % 30:index % 30 + 4]).convert("L"))
        height, width = image.shape
        left, top, right, bottom = gen.text_box
        assert height >= 40 and (bottom - top) <= 0.5 * height + 1 and (right - left) <= 0.7 * width + 1
        darkest = np.argsort(cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8), axis=None)[:20]
        rows, columns = np.unravel_index(darkest, image.shape)
        ink_inside.append(np.all((top - 2 <= rows) & (rows < bottom + 2) & (left - 2 <= columns)
                                 & (columns < right + 2)))
        centres.append(((left + right) / 2 / width, (top + bottom) / 2 / height))
        shares.append((bottom - top) / height)
    assert np.mean(ink_inside) >= 0.9  # the text is the darkest thing (but for a grainy or patterned background)
    xs, ys = np.array(centres).T
    assert xs.min() < 0.3 and xs.max() > 0.7 and ys.min() < 0.35 and ys.max() > 0.65  # anywhere on the canvas
    assert min(shares) < 0.35


def test_text_fills_most_of_its_canvas_without_small_text(fonts):
    gen = VariedCaptcha(fonts, seed=3, shares=NOISE_OFF | {"small_text": 0.0})
    for index in range(30):
        image = gen.render(ALNUM[index % 30:index % 30 + 4])
        left, top, right, bottom = gen.text_box
        assert bottom - top >= 0.4 * image.size[1] or bottom - top >= 11


def test_hollow_glyphs_are_an_outline_around_the_glyphs_shape_empty_or_filled(font):
    gen = VariedCaptcha([font], seed=1)
    mask, _ = gen.glyph(0, "8")
    text_color, fill = np.array([20.0, 20, 20], np.float32), np.array([200.0, 100, 100], np.float32)

    def glyph_in(drawn: np.ndarray) -> np.ndarray:
        """The glyph's coverage where `outline` put it (it pads its layer by the same width each side)."""
        pad = (drawn.shape[0] - mask.shape[0]) // 2
        padded = np.zeros(drawn.shape, np.float32)
        padded[pad:pad + mask.shape[0], pad:pad + mask.shape[1]] = mask
        return padded

    hollow, color = gen.outline(mask, None, text_color, None, GLYPH_SIZE, 3)
    assert color is None and hollow.shape[0] > mask.shape[0] and hollow.shape[1] > mask.shape[1]
    assert hollow[glyph_in(hollow) > 0.99].max() < 0.02  # inside the glyph: nothing drawn, the background shows
    assert (hollow > 0.5).sum() > 0.3 * (mask > 0.5).sum()  # a line all around it
    filled, color = gen.outline(mask, None, text_color, fill, GLYPH_SIZE, 3)
    glyph = glyph_in(filled)
    assert filled[glyph > 0.99].min() > 0.99 and np.allclose(color[glyph > 0.99], fill, atol=2)
    line = (glyph == 0) & (filled > 0.99)
    assert line.sum() > 0.3 * (mask > 0.5).sum() and np.allclose(color[line], text_color)


def test_glyph_warp_moves_a_glyphs_corners_out_of_a_parallelogram(font):
    gen = VariedCaptcha([font], seed=1)
    square = np.ones((40, 40), np.float32)
    plain, anchor = gen.place_glyph(square, 30, np.eye(2), 0.0)
    assert plain.shape == (41, 41) and np.allclose(anchor, (20, 30))
    warped, anchor = gen.place_glyph(square, 30, np.eye(2), 0.12)
    assert warped.shape != plain.shape and abs(warped.sum() - square.sum()) > 0.02 * square.sum()
    assert 0 <= anchor[0] < warped.shape[1] and 0 <= anchor[1] < warped.shape[0]


def test_crowded_glyphs_overlap_but_keep_their_order(font):
    width = VariedCaptcha([font], seed=2).glyph(0, "8")[0].shape[1]
    color = [np.zeros(3, np.float32)]
    widths = {}
    for crowded in (0.0, 1.0):
        gen = VariedCaptcha([font], seed=2, shares=PLAIN_GLYPHS | {"crowded": crowded})
        widths[crowded] = [gen.text_layer("8888", color, 400)[0].shape[1] for _ in range(20)]  # glyph-sized
    assert np.mean(widths[1.0]) < 0.8 * np.mean(widths[0.0]) and np.mean(widths[1.0]) < 3.5 * width
    assert min(widths[1.0]) >= (1 + 3 * 0.6) * width * 0.75  # each glyph starts past the previous one's middle


def test_speckle_covers_a_few_percent_of_the_pixels(font):
    gen = VariedCaptcha([font], seed=5)
    for _ in range(10):
        pixels = np.full((100, 300, 3), 128, np.uint8)
        gen.speckle(pixels, np.array([30.0, 60, 90], np.float32))
        changed = (pixels != 128).any(axis=2).mean()
        assert 0.001 < changed < 0.1


def test_image_warp_bends_a_straight_line(font):
    gen = VariedCaptcha([font], seed=5)
    for _ in range(10):
        pixels = np.full((100, 300, 3), 255, np.uint8)
        pixels[48:52] = 0
        warped = gen.image_warp(pixels)
        rows = warped[:, 20:280:10, 0].argmin(axis=0)
        assert warped.shape == pixels.shape and rows.max() - rows.min() >= 2


@pytest.mark.parametrize("seed", range(6))
def test_pattern_backgrounds_alternate_two_tones(font, seed):
    gen = VariedCaptcha([font], seed=seed)
    t = gen.pattern(60, 200)
    assert t.shape == (60, 200) and 0 <= t.min() < 0.1 and 0.5 < t.max() <= 1 and t.std() > 0.1
