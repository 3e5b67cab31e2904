"""Captcha generation speed per process: the original example's PNG round trip against this port's
straight-from-PIL path.

    .venv/bin/python bench/generation.py [--images 300] [FONT]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from captcha_generator import CaptchaGen  # noqa: E402
from hyperparameters import Hyperparams  # noqa: E402
from images import to_network_input  # noqa: E402


def png_round_trip(gen: CaptchaGen, text: str) -> np.ndarray:
    """The original example's way: PNG-encode the captcha, then decode it with OpenCV."""
    png = gen.captcha.generate(text).getvalue()
    gray = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return to_network_input(gray, gen.hp)


def rate(make, gen: CaptchaGen, images: int) -> float:
    texts = [gen.random_text() for _ in range(images)]
    tic = time.perf_counter()
    for text in texts:
        make(text)
    return images / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("font", nargs="?", default="font/DroidSansMono.ttf")
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    gen = CaptchaGen([args.font], Hyperparams(), seed=0)
    print(f"# {' '.join(sys.argv)}")
    original = rate(lambda t: png_round_trip(gen, t), gen, args.images)
    direct = rate(gen.image_u8, gen, args.images)
    print(f"generation  PNG round trip (example)  {original:8.1f} images/s per process")
    print(f"generation  straight from PIL (port)  {direct:8.1f} images/s per process  ({direct / original:.2f}x)")


if __name__ == "__main__":
    main()
