"""How many pixels of text height reach the network: the varied style's text box (lstm_ocr/styles.py,
`VariedCaptcha.text_box`), scaled as `images.to_network_input` scales its image with `--fit pad`, for
several network input sizes. Printed for the small-text family (small text anywhere in a large
field) and for the rest of the project's own look. The box holds the whole text, rotations and
waves included: an upright glyph is about 0.7-0.9 of it high, a lower-case letter's x-height half.

    .venv/bin/python bench/text_pixels.py [--images 400] [--seed 1] [--sizes 96x36,128x48,160x60,192x72]
        [--write DIR]

--write DIR also writes three labelled sets of --images captchas (4-5 characters of 0-9a-z, lower
case) to read with `lstm_ocr_infer.py --prefix P DIR/SET`: DIR/small (small text in a large field),
DIR/small-cropped (the same images cropped to the text's box and 15 % of its height around it) and
DIR/own (the rest of the project's look); none in the example's look.
"""

import argparse
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from lstm_ocr.captcha_generator import CaptchaGen, find_fonts  # noqa: E402
from lstm_ocr.hyperparameters import Hyperparams  # noqa: E402
from lstm_ocr.styles import VariedCaptcha  # noqa: E402

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
PERCENTILES = (10, 50, 90)
CROP_MARGIN = 0.15  # of the text box's height, around it, in the cropped set


def write_sets(folder: str, fonts: list[str], count: int, seed: int) -> None:
    """The small, small-cropped and own sets of --write (see the module's docstring)."""
    texts = random.Random(seed)
    for name, small in (("small", 1.0), ("own", 0.0)):
        gen = VariedCaptcha(fonts, seed, shares={"example": 0.0, "small_text": small})
        os.makedirs(os.path.join(folder, name))
        if small:
            os.makedirs(os.path.join(folder, "small-cropped"))
        for index in range(count):
            text = "".join(texts.choice(ALNUM) for _ in range(texts.randint(4, 5)))
            image = gen.render(text)
            image.save(os.path.join(folder, name, f"{index:04d}_{text}.png"))
            if small:
                left, top, right, bottom = gen.text_box
                margin = max(2, round((bottom - top) * CROP_MARGIN))
                image.crop((max(0, left - margin), max(0, top - margin), min(image.width, right + margin),
                            min(image.height, bottom + margin))).save(
                    os.path.join(folder, "small-cropped", f"{index:04d}_{text}.png"))


def boxes(gen: CaptchaGen, count: int) -> np.ndarray:
    """(count, 4): each image's (width, height, text box width, text box height)."""
    rows = []
    for _ in range(count):
        image = gen.render(gen.random_text())
        left, top, right, bottom = gen.varied.text_box
        rows.append((image.size[0], image.size[1], right - left, bottom - top))
    return np.array(rows, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default="96x36,128x48,160x60,192x72", help="network inputs, WIDTHxHEIGHT")
    parser.add_argument("--write", help="also write the small, small-cropped and own sets into this new folder")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    hp = Hyperparams(chars=ALNUM, min_len=4, max_len=5, case="fold")
    fonts = find_fonts(os.path.join(ROOT, "font"), hp.chars)
    print(f"# {' '.join(sys.argv)}  ({len(fonts)} fonts, 4-5 characters of 0-9a-z, case folded)")
    print(f"text box height in pixels, percentiles {'/'.join(map(str, PERCENTILES))}")
    for family, small in (("small text in a large field", 1.0), ("the rest of the project's look", 0.0)):
        gen = CaptchaGen(fonts, hp, seed=args.seed, style="varied")
        gen.varied = VariedCaptcha(fonts, args.seed, shares={"example": 0.0, "small_text": small})
        width, height, box_w, box_h = boxes(gen, args.images).T
        print(f"{family}: canvas {np.median(width):.0f}x{np.median(height):.0f} (median), text box "
              f"{'/'.join(f'{v:.0f}' for v in np.percentile(box_h, PERCENTILES))} px high, "
              f"{np.median(box_h / height):.2f} of the canvas's height, {np.median(box_w / width):.2f} of its width")
        for net_w, net_h in sizes:
            scale = np.minimum(net_w / width, net_h / height)
            high = np.percentile(box_h * scale, PERCENTILES)
            print(f"  network {net_w}x{net_h} --fit pad: {'/'.join(f'{v:.1f}' for v in high)} px high, "
                  f"{np.mean(box_h * scale < 12):.2f} of the images under 12 px")
    if args.write:
        write_sets(args.write, fonts, args.images, args.seed)
        print(f"sets small, small-cropped and own of {args.images} images in {args.write}")


if __name__ == "__main__":
    main()
