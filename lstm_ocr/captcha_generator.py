"""Random CAPTCHA images of short texts, and the network's view of them.

As a script, writes one CAPTCHA image to a file:
    python captcha_generator.py font/DroidSansMono.ttf sample.jpg
    python captcha_generator.py --chars 0123456789abcdefghijklmnopqrstuvwxyz --num a7k2 font/ sample.jpg
    python captcha_generator.py --style varied --seed 1 --count 500 font/ testset/
    python captcha_generator.py --style arithmetic --seed 1 --count 500 font/ sums/
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import csv
import os
import random

import numpy as np
from captcha.image import ImageCaptcha
from fontTools.ttLib import TTFont
from PIL import Image, ImageFont

from lstm_ocr import arithmetic, hyperparameters, labelled_data
from lstm_ocr.cli import ArgumentParser, InputError, check_count, check_seed, run_main, write_atomically
from lstm_ocr.hyperparameters import RENDER_SCALE, STYLES, TEXT_FIELDS, Hyperparams
from lstm_ocr.images import to_float, to_network_input
from lstm_ocr.styles import VariedCaptcha

MAX_COUNT = 1_000_000  # images one --count run writes
NAME_UNSAFE = "/\\_\0"  # characters a label written into a file name NNNN_TEXT cannot hold


def missing_glyphs(font_path: str, chars: str) -> str:
    """The characters of `chars` that the font's character map lacks (drawn as nothing or tofu)."""
    try:
        with TTFont(font_path, lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except Exception:  # fontTools raises many kinds on a broken file; any means "not a usable font"
        raise InputError(f"{font_path} is not a TrueType font file") from None
    return "".join(c for c in chars if ord(c) not in cmap)


def find_fonts(font_path: str, chars: str) -> list[str]:
    """The .ttf files at `font_path` (a file or a folder), each checked to load as a font and to
    have a glyph for every character of `chars`."""
    if os.path.isdir(font_path):
        paths = sorted(os.path.join(font_path, name) for name in os.listdir(font_path)
                       if name.lower().endswith(".ttf"))
        if not paths:
            raise InputError(f"no .ttf font in folder {font_path} (run `make fonts` to fill font/)")
    elif os.path.isfile(font_path):
        paths = [font_path]
    else:
        raise InputError(f"font path {font_path} does not exist (give a .ttf file or a folder of them)")
    for path in paths:
        try:
            ImageFont.truetype(path, 20)
        except OSError:
            raise InputError(f"{path} is not a TrueType font file") from None
        missing = missing_glyphs(path, chars)
        if missing:
            raise InputError(f"font {path} has no glyph for {missing!r} of --chars {chars!r}: it would draw "
                             "empty or tofu characters (remove the font or change --chars)")
    return paths


def write_image(image: Image.Image, path: str) -> None:
    """Save `image` in the format of `path`'s extension, atomically."""
    image_format = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
    if image_format is None:
        raise InputError(f"cannot write {path}: use an image extension such as .jpg or .png")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"output folder {folder} does not exist")
    write_atomically(path, lambda temporary: image.save(temporary, format=image_format))


def check_text(text: str, hp: Hyperparams) -> None:
    """Raise InputError unless the model can learn `text`: its alphabet, its length range."""
    unknown = sorted(set(text) - set(hp.chars))
    if unknown:
        raise InputError(f"text {text!r} has characters {''.join(unknown)!r} outside the alphabet {hp.chars!r}")
    if not hp.min_len <= len(text) <= hp.max_len:
        raise InputError(f"text {text!r} has {len(text)} characters; the model reads {hp.min_len} to {hp.max_len}")


class CaptchaGen:
    """Renders texts as CAPTCHAs in the given fonts: `example`, the example's look with the captcha
    library; `varied`, the randomized family of looks of lstm_ocr/styles.py (reproducible from `seed`)."""

    def __init__(self, font_paths: list[str], hp: Hyperparams, seed: int | None = None, style: str = "example"):
        if style not in STYLES:
            raise InputError(f"--style must be one of {', '.join(STYLES)}, got {style!r}")
        self.hp = hp
        self.captcha = ImageCaptcha(width=hp.image_width * RENDER_SCALE,
                                    height=hp.image_height * RENDER_SCALE, fonts=font_paths)
        missing = sorted(set(arithmetic.ALPHABET) - set(hp.chars)) if style == "arithmetic" else []
        if missing:
            raise InputError(f"--style arithmetic draws {''.join(missing)!r}, outside the alphabet {hp.chars!r}")
        if style == "arithmetic" and hp.max_len < arithmetic.MIN_LEN:
            raise InputError(f"--style arithmetic needs --max_len {arithmetic.MIN_LEN} at least, got {hp.max_len}")
        self.style = style
        self.varied = VariedCaptcha(font_paths, seed) if style in ("varied", "arithmetic") else None
        self.rng = random.Random(seed)

    def random_text(self) -> str:
        """Between min_len and max_len random characters of the alphabet; in the arithmetic style, an
        expression of arithmetic.py at most max_len long."""
        if self.style == "arithmetic":
            return arithmetic.random_expression(self.rng, self.hp.max_len)
        length = self.rng.randint(self.hp.min_len, self.hp.max_len)
        return "".join(self.rng.choice(self.hp.chars) for _ in range(length))

    def cased(self, text: str) -> str:
        """The text as drawn: with `case` fold, all its letters in lower case, all in upper, or each at
        random (a third of the images each); else the text itself."""
        if self.hp.case != "fold":
            return text
        mode = self.rng.randrange(3)
        upper = [mode == 1 or (mode == 2 and self.rng.random() < 0.5) for _ in text]
        return "".join(c.upper() if up else c.lower() for c, up in zip(text, upper, strict=True))

    def render(self, text: str) -> Image.Image:
        """The full-size RGB CAPTCHA of label `text`, as a person sees it."""
        text = self.cased(text)
        if self.varied is not None:
            return self.varied.render(text)
        return self.captcha.generate_image(text)

    def image_u8(self, text: str) -> np.ndarray:
        """The network input for `text` as uint8, straight from PIL (no PNG round trip)."""
        return to_network_input(np.asarray(self.render(text).convert("L")), self.hp)

    def image(self, text: str) -> np.ndarray:
        """The network input for `text`: (width, height) float32 in [0, 1]."""
        return to_float(self.image_u8(text))


def write_labelled(gen: CaptchaGen, count: int, folder: str) -> None:
    """`count` random captchas in `folder` (created if needed), named NNNN_TEXT.png; in the arithmetic
    style, named NNNN_ANSWER.png, and with an alphabet a name cannot hold (`/`, `_`), NNNN.png, with
    their texts in the folder's labels.csv."""
    check_count("count", count, MAX_COUNT)
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise InputError(f"folder {parent} does not exist")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"{folder} is a file; --count writes into a folder")
    sums = gen.style == "arithmetic"  # texts such as 8/2=: named by their answer, texts in labels.csv
    # an alphabet a file name cannot hold (/, _, ...): files NNNN.png, texts in labels.csv
    unsafe = bool(set(gen.hp.chars) & set(NAME_UNSAFE)) and not sums
    try:
        existing = os.listdir(folder) if os.path.isdir(folder) else []
    except OSError as error:
        raise InputError(f"cannot list folder {folder}: {error.strerror or error}") from None
    if existing:
        raise InputError(f"folder {folder} already holds {len(existing)} files; --count writes a labelled set "
                         "into a new or empty folder, so that two sets never mix")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:  # a read-only folder or file system, /proc, no space
        raise InputError(f"cannot create folder {folder}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into folder {folder}: permission denied")
    width = max(4, len(str(count - 1)))
    rows = []
    for index in range(count):
        text = gen.random_text()
        label = "" if unsafe else f"_{arithmetic.answer(text) if sums else text}"
        name = f"{index:0{width}d}{label}.png"
        write_image(gen.render(text), os.path.join(folder, name))
        rows.append((name, text))
    if sums or unsafe:
        def write_rows(path: str) -> None:
            with open(path, "w", newline="", encoding="utf-8") as file:
                csv.writer(file).writerows([labelled_data.HEADER, *rows])

        write_atomically(os.path.join(folder, labelled_data.LABELS_CSV), write_rows)


def describe(text: str, hp: Hyperparams) -> str:
    """The example's `digits [0, 0, 8, 9]` for digit alphabets; `text 'a7k2'` for others."""
    if hp.digits_only:
        return f"digits {[int(c) for c in text]}"
    return f"text {text!r}"


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("font_path", help="a .ttf file, or a folder of them (one is picked per character)")
    parser.add_argument("output", help="image file to write (.jpg, .png, ...); with --count, a folder")
    parser.add_argument("--num", help="text to draw, in --chars characters "
                                      "[default: a random one, --min_len to --max_len long]")
    parser.add_argument("--count", type=int, help="write this many labelled images NNNN_TEXT.png into OUTPUT (with "
                                                  "--style arithmetic, NNNN_ANSWER.png and their texts in labels.csv)")
    parser.add_argument("--seed", type=int, help="seed of the random texts (and of every draw of --style varied; "
                                                 "the example style's noise stays random)")
    parser.add_argument("--style", default="example", choices=STYLES,
                        help="example: the example's look; varied: a wide random family of looks, "
                             "sizes 50x20 to 300x100 (lstm_ocr/styles.py); arithmetic: sums such as 7+3=? in the "
                             "varied looks, in their own alphabet (arithmetic.py) [default example]")
    hyperparameters.add_arguments(parser, TEXT_FIELDS, defaults=False)
    args = parser.parse_args()
    style_defaults = arithmetic.TEXT_DEFAULTS if args.style == "arithmetic" else {}
    hp = Hyperparams(**(style_defaults | {name: getattr(args, name) for name in TEXT_FIELDS if hasattr(args, name)}))
    hp.validate()
    check_seed(args.seed)
    fonts = find_fonts(args.font_path, hp.drawn_chars)
    text = args.num
    if text is not None:
        text = hp.fold(text)
        check_text(text, hp)
    gen = CaptchaGen(fonts, hp, args.seed, args.style)
    if args.count is not None:
        write_labelled(gen, args.count, args.output)
        print(f"{args.count} labelled captcha images written to {args.output}")
        return
    text = text if text is not None else gen.random_text()
    write_image(gen.render(text), args.output)
    print(f"Captcha image with {describe(text, hp)} written to {args.output}")


def command() -> None:
    """`lstm-ocr-generate` and the root script: main() with one `error:` line for a refusal (run_main)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
