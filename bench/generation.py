"""Captcha generation speed per process: the original example's PNG round trip against this port's
straight-from-PIL path, and the varied style (lstm_ocr/styles.py) against the example style. The
three are measured interleaved, round by round (A, B, C, A, B, C, ...), so that a machine whose
speed drifts affects them alike; the ratios are what counts. With --baseline, the varied style of
another styles.py (an earlier commit's, `git show REV:lstm_ocr/styles.py > FILE`, or
REV:captcha_styles.py before the package move) is measured in the same rounds, to compare a change
of the drawing with the code before it; with --own_look, both varied styles draw none of their
images in the example's look (the captcha package's).

    .venv/bin/python bench/generation.py [--images 300] [--rounds 3] [--min_len 3] [--max_len 4]
        [--baseline FILE [--own_look]] [FONT_OR_FOLDER]
"""

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from lstm_ocr import hyperparameters  # noqa: E402
from lstm_ocr.captcha_generator import CaptchaGen, find_fonts  # noqa: E402
from lstm_ocr.hyperparameters import Hyperparams  # noqa: E402
from lstm_ocr.images import to_network_input  # noqa: E402
from lstm_ocr.styles import VariedCaptcha  # noqa: E402


def png_round_trip(gen: CaptchaGen, text: str) -> np.ndarray:
    """The original example's way: PNG-encode the captcha, then decode it with OpenCV."""
    png = gen.captcha.generate(text).getvalue()
    gray = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return to_network_input(gray, gen.hp)


def seconds(make, gen: CaptchaGen, images: int) -> float:
    texts = [gen.random_text() for _ in range(images)]
    tic = time.perf_counter()
    for text in texts:
        make(text)
    return time.perf_counter() - tic


def baseline_varied(path: str, fonts: list[str], hp: Hyperparams, own_look: bool) -> CaptchaGen:
    """A varied-style generator that draws with the VariedCaptcha of another styles.py (with
    `own_look`, never in the example's look: its share, read from hyperparameters at import, set to 0)."""
    spec = importlib.util.spec_from_file_location("baseline_captcha_styles", path)
    module = importlib.util.module_from_spec(spec)
    example_share = hyperparameters.VARIED_EXAMPLE_SHARE
    hyperparameters.VARIED_EXAMPLE_SHARE = 0.0 if own_look else example_share
    try:
        spec.loader.exec_module(module)
    finally:
        hyperparameters.VARIED_EXAMPLE_SHARE = example_share
    gen = CaptchaGen(fonts, hp, seed=0, style="varied")
    gen.varied = module.VariedCaptcha(fonts, 0)
    return gen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("font", nargs="?", default="font/DroidSansMono.ttf")
    parser.add_argument("--images", type=int, default=300, help="images per method and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min_len", type=int, default=3)
    parser.add_argument("--max_len", type=int, default=4)
    parser.add_argument("--baseline", help="another styles.py (or captcha_styles.py) whose varied style to measure too")
    parser.add_argument("--own_look", action="store_true", help="no image of either varied style in the example's look")
    args = parser.parse_args()
    hp = Hyperparams(min_len=args.min_len, max_len=args.max_len)
    fonts = find_fonts(args.font, hp.chars)
    example = CaptchaGen(fonts, hp, seed=0)
    varied = CaptchaGen(fonts, hp, seed=0, style="varied")
    if args.own_look:
        varied.varied = VariedCaptcha(fonts, 0, shares={"example": 0.0})
    print(f"# {' '.join(sys.argv)}  ({len(fonts)} fonts, {args.rounds} interleaved rounds of {args.images} images)")
    methods = {"PNG round trip (example)": (lambda t: png_round_trip(example, t), example),
               "straight from PIL (port)": (example.image_u8, example),
               "varied style, from PIL": (varied.image_u8, varied)}
    if args.baseline:
        before = baseline_varied(args.baseline, fonts, hp, args.own_look)
        methods["varied style, --baseline"] = (before.image_u8, before)
    totals = dict.fromkeys(methods, 0.0)
    for _ in range(args.rounds):
        for name, (make, gen) in methods.items():
            totals[name] += seconds(make, gen, args.images)
    rates = {name: args.rounds * args.images / total for name, total in totals.items()}
    original, direct = rates["PNG round trip (example)"], rates["straight from PIL (port)"]
    print(f"generation  PNG round trip (example)  {original:8.1f} images/s per process")
    print(f"generation  straight from PIL (port)  {direct:8.1f} images/s per process  ({direct / original:.2f}x)")
    print(f"generation  varied style, from PIL    {rates['varied style, from PIL']:8.1f} images/s per process  "
          f"({rates['varied style, from PIL'] / direct:.2f}x the example style from PIL)")
    if args.baseline:
        before = rates["varied style, --baseline"]
        print(f"generation  varied style, --baseline  {before:8.1f} images/s per process  "
              f"(cost per image now {before / rates['varied style, from PIL']:.2f}x the baseline's)")


if __name__ == "__main__":
    main()
