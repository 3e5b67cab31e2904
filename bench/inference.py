"""Inference speed: images/s in batches of 256 and one image at a time (the network's forward pass
and greedy decoding with confidences, from preprocessed images).

    .venv/bin/python bench/inference.py [--prefix ocr --epoch N] [--images 512]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from lstm_ocr import checkpoint, models  # noqa: E402
from lstm_ocr.reader import Reader  # noqa: E402


def rate(prefix: str, epoch: int, images: np.ndarray, batch_size: int) -> float:
    reader = Reader(prefix, epoch, batch_size)
    reader.read_inputs(images[:batch_size])  # warm-up
    tic = time.perf_counter()
    reader.read_inputs(images)
    return len(images) / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="ocr")
    parser.add_argument("--epoch", type=int, default=None, help="[default: the last saved]")
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    args.prefix = models.resolve(args.prefix)  # a checkpoint, or a shipped model's name
    epoch = args.epoch or checkpoint.saved_epochs(args.prefix)[-1]
    hp = checkpoint.load_hyperparams(args.prefix)
    images = np.random.default_rng(0).random((args.images, hp.image_width, hp.image_height)).astype(np.float32)
    print(f"# {' '.join(sys.argv)}  ({checkpoint.params_path(args.prefix, epoch)})")
    print(f"inference   batches of 256   {rate(args.prefix, epoch, images, 256):8.1f} images/s")
    print(f"inference   one at a time    {rate(args.prefix, epoch, images[:100], 1):8.1f} images/s")


if __name__ == "__main__":
    main()
