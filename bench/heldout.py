"""Accuracy of a checkpoint on fresh held-out sets of several looks, measured the user's way: each
set is written to a folder, then read by `lstm_ocr_infer.py DIR`.

    .venv/bin/python bench/heldout.py [--prefix ocr --epoch N] [--count 500] [--seed 1001]
        [--sets example,varied,wheezy] [--min_len 3 --max_len 4] [--chars 0123456789] [--keep DIR] [--ddddocr]
        [--read "--length 4"]

- example: `captcha_generator.py --count N --seed S font/` (the example's look, every font of font/);
- varied:  the same with `--style varied` (lstm_ocr/styles.py);
- wheezy:  wheezy-captcha's documented default look (background, warped, rotated and offset text,
  a curve, noise, smoothing; 200x75, JPEG quality 75) in LiberationMono-Bold, one of the two fonts
  of its example (or --wheezy_font);
- wheezy-sans, wheezy-serif: the same look in a proportional sans (LiberationSans-Regular) and a
  serif (DejaVuSerif); wheezy-small, wheezy-sans-small, wheezy-serif-small: the three at 120x45, a
  small noisy captcha (wheezy's own font sizes scaled to the height);
- easy:    EasyCaptcha's default PNG look (easy-captcha-python, the Python port of the Java library
  many login pages use): 130x48, hollow coloured letters of its own fonts, circles and a curve,
  its own default texts (mixed case letters and digits, --min_len to --max_len long, labels in
  lower case: the letter models fold case). Ignores --chars.
The held-out looks are checks only, never training data: this project does not train on any other
library's images. They need `pip install -r requirements-bench.txt`.
Texts are random characters of --chars (digits unless given), --min_len to --max_len long, seeded,
drawn as they are (lower case); the wheezy set is seeded too (it draws with Python's `random`). With
--ddddocr, ddddocr 1.6.1 (requirements-bench.txt) reads every set too, its plain
`classification(image bytes)` as a user calls it, compared with the label exactly (letters: case
folded, as this project's letter model reads). `--read` passes options to lstm_ocr_infer.py (the
constrained decoding: `--length 4`, `--allowed 0123456789`).
"""

import argparse
import io
import os
import random
import sys
import tempfile

from lstm_ocr import checkpoint, models
from readers import chosen_sets, ddddocr_accuracy, kept_set, run  # also puts the repository root on sys.path

DIGITS = "0123456789"
WHEEZY_FONT = "font/LiberationMono-Bold.ttf"
WHEEZY_SIZE = (200, 75)  # wheezy-captcha's default canvas
WHEEZY_SMALL = (120, 45)
WHEEZY_FONT_SIZES = (65, 70, 75)  # wheezy-captcha's default font sizes, for its 75-pixel height
# held-out wheezy looks: (font, canvas); None stands for --wheezy_font
WHEEZY_LOOKS = {
    "wheezy": (None, WHEEZY_SIZE),
    "wheezy-sans": ("font/LiberationSans-Regular.ttf", WHEEZY_SIZE),
    "wheezy-serif": ("font/DejaVuSerif.ttf", WHEEZY_SIZE),
    "wheezy-small": (None, WHEEZY_SMALL),
    "wheezy-sans-small": ("font/LiberationSans-Regular.ttf", WHEEZY_SMALL),
    "wheezy-serif-small": ("font/DejaVuSerif.ttf", WHEEZY_SMALL),
}
SETS = ("example", "varied", *WHEEZY_LOOKS, "easy")
ASPECT_EDGES = (2.0, 3.0, 4.0)  # the varied set's accuracy is also printed by width / height below these


def write_wheezy(folder: str, count: int, seed: int, min_len: int, max_len: int, font: str,
                 chars: str = DIGITS, size: tuple[int, int] = WHEEZY_SIZE) -> None:
    """`count` captchas in wheezy-captcha's default look on a `size` canvas (its font sizes scaled to
    the canvas's height), named NNNN_TEXT.jpg."""
    from wheezy.captcha.image import background, captcha, curve, noise, offset, rotate, smooth, text, warp
    font_sizes = tuple(round(points * size[1] / WHEEZY_SIZE[1]) for points in WHEEZY_FONT_SIZES)
    draw = captcha(drawings=[background(), text(fonts=[font], font_sizes=font_sizes,
                                                drawings=[warp(), rotate(), offset()]),
                             curve(), noise(), smooth()], width=size[0], height=size[1])
    random.seed(seed)
    os.makedirs(folder)
    for index in range(count):
        text = "".join(random.choice(chars) for _ in range(random.randint(min_len, max_len)))
        draw(text).save(os.path.join(folder, f"{index:04d}_{text}.jpg"), "JPEG", quality=75)


def write_easy(folder: str, count: int, seed: int, min_len: int, max_len: int) -> None:
    """`count` captchas in EasyCaptcha's default PNG look (130x48, its fonts and texts), named
    NNNN_text.png with the text in lower case."""
    from easy_captcha.captcha.spec_captcha import SpecCaptcha

    random.seed(seed)  # the library draws with Python's `random`
    os.makedirs(folder)
    for index in range(count):
        drawer, image = SpecCaptcha(length=random.randint(min_len, max_len)), io.BytesIO()
        drawer.out(image)  # draws the text it picked, which it then tells
        with open(os.path.join(folder, f"{index:04d}_{drawer.text().lower()}.png"), "wb") as file:
            file.write(image.getvalue())


def write_set(name: str, folder: str, args: argparse.Namespace) -> None:
    """Draw held-out set `name` into `folder` as the command line asks."""
    if name in WHEEZY_LOOKS:
        font, size = WHEEZY_LOOKS[name]
        write_wheezy(folder, args.count, args.seed, args.min_len, args.max_len, font or args.wheezy_font,
                     args.chars, size)
    elif name == "easy":
        write_easy(folder, args.count, args.seed, args.min_len, args.max_len)
    else:
        run("captcha_generator.py", "--count", str(args.count), "--seed", str(args.seed), "--style",
            "varied" if name == "varied" else "example", "--min_len", str(args.min_len), "--max_len",
            str(args.max_len), "--chars", args.chars, "font/", folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="ocr")
    parser.add_argument("--epoch", type=int, default=None, help="[default: the last saved]")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--min_len", type=int, default=3)
    parser.add_argument("--max_len", type=int, default=4)
    parser.add_argument("--chars", default=DIGITS, help="the texts' characters [default the digits]")
    parser.add_argument("--wheezy_font", default=WHEEZY_FONT)
    parser.add_argument("--read", default="", help='options for lstm_ocr_infer.py, e.g. "--length 4"')
    parser.add_argument("--keep", help="write the sets into this folder, kept (DIR/SET-nCOUNT-seedSEED-lenMIN-MAX, "
                        "wheezy's -fontFONT too: reused by a run of the same settings), not a temporary one")
    parser.add_argument("--ddddocr", action="store_true", help="also read every set with ddddocr")
    args = parser.parse_args()
    args.prefix = models.resolve(args.prefix)  # a checkpoint, or a shipped model's name
    sets = chosen_sets(parser, args.sets, SETS)
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)}, {args.count} images a set)")
    letters = args.chars != DIGITS
    drawn = {"chars": args.chars} if letters else {}  # a digit set's folder keeps its old name
    with tempfile.TemporaryDirectory() as temporary:
        base = args.keep or temporary
        os.makedirs(base, exist_ok=True)
        for name in sets:
            font = {"font": os.path.basename(args.wheezy_font)} if name in ("wheezy", "wheezy-small") else {}
            folder = kept_set(base, name, n=args.count, seed=args.seed, len=f"{args.min_len}-{args.max_len}",
                              **(drawn if name != "easy" else {}), **font)
            if not os.path.isdir(folder):
                write_set(name, folder, args)
            lines = run("lstm_ocr_infer.py", "--prefix", args.prefix, "--epoch", str(epoch), *args.read.split(),
                        folder).splitlines()
            print(f"{name:10s} {lines[-1]}", flush=True)
            if name == "varied":
                print_by_aspect(lines[:-1])
            if args.ddddocr:
                accuracy, images = ddddocr_accuracy(folder, fold_case=letters or name == "easy")
                print(f"{name:10s} ddddocr accuracy={accuracy:.4f} images={images}", flush=True)


def print_by_aspect(lines: list[str]) -> None:
    """Sequence accuracy of lstm_ocr_infer.py's `PATH ...` lines (a misread one says so), by the image's
    aspect ratio (width / height)."""
    from PIL import Image

    buckets: dict[str, list[bool]] = {}
    for line in lines:
        path = line.split(" ")[0]
        with Image.open(path) as image:
            aspect = image.size[0] / image.size[1]
        right = " misread, expected " not in line and " error: " not in line
        buckets.setdefault(sum(aspect >= edge for edge in ASPECT_EDGES), []).append(right)
    pairs = zip(ASPECT_EDGES[:-1], ASPECT_EDGES[1:], strict=True)
    names = [f"< {ASPECT_EDGES[0]:g}", *(f"{a:g}-{b:g}" for a, b in pairs), f">= {ASPECT_EDGES[-1]:g}"]
    for index, name in enumerate(names):
        hits = buckets.get(index, [])
        if hits:
            print(f"  aspect {name:5s} accuracy={sum(hits) / len(hits):.4f} images={len(hits)}")


if __name__ == "__main__":
    main()
