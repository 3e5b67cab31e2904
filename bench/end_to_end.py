"""End-to-end training speed with the real data path (generator processes, pool, OCRIter) against
the model alone on one fixed batch with no generator running, measured in the same run.

    .venv/bin/python bench/end_to_end.py [--network fused] [--batches 60] [--num_proc 2] [FONT_PATH]
    .venv/bin/python bench/end_to_end.py --recipe fast --train_dir DIR   (a folder of labelled images,
        decoded once by the workers and augmented on the fly, as `lstm_ocr_train.py --train_dir DIR`)
"""

import argparse
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from train_step import build_module, random_batch  # noqa: E402  (bench/ is this script's folder)

from lstm_ocr import (
    ctc_metrics,  # noqa: E402
    hyperparameters,  # noqa: E402
    labelled_data,  # noqa: E402
)
from lstm_ocr.captcha_generator import find_fonts  # noqa: E402
from lstm_ocr.hyperparameters import RECIPES, Hyperparams  # noqa: E402
from lstm_ocr.multiproc_data import FolderSource, MPData  # noqa: E402
from lstm_ocr.ocr_iter import OCRIter  # noqa: E402
from lstm_ocr.train import BLOCK_SIZE  # noqa: E402


def train_rate(mod: mx.mod.Module, batches, hp: Hyperparams) -> float:
    """Samples/s of the trainer's inner loop (forward, backward, update, metric) over `batches`."""
    metric = mx.metric.np(ctc_metrics.accuracy, allow_extra_outputs=True)
    tic = None
    for i, batch in enumerate(batches):
        if i == 2:  # after warm-up
            tic = time.perf_counter()
        mod.forward_backward(batch)
        mod.update()
        mod.update_metric(metric, batch.label)
    return (i - 1) * hp.batch_size / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("font_path", nargs="?", default="font")
    parser.add_argument("--network", default="fused")
    parser.add_argument("--recipe", default="example", help="example or fast (sets network and batch size)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--num_proc", type=int, default=2)
    parser.add_argument("--pool_size", type=int, default=8192)
    parser.add_argument("--train_dir", help="a folder of labelled images instead of generated captchas")
    args = parser.parse_args()
    network = RECIPES[args.recipe].get("network", args.network)
    hp = replace(hyperparameters.for_recipe(args.recipe), network=network)
    mod, fixed = build_module(hp), random_batch(hp)
    print(f"# {' '.join(sys.argv)}  ({network}, batch {hp.batch_size}, {args.num_proc} generator processes)")
    model_before = train_rate(mod, [fixed] * (args.batches + 2), hp)
    source = None
    if args.train_dir:
        items = labelled_data.folder_items(args.train_dir)
        labels = np.stack([hp.encode(text) for _, text in items])
        source = FolderSource([path for path, _ in items], labels, np.ones(len(items), dtype=bool))
        print(f"# {len(items)} labelled images of {args.train_dir}, augmented")
    fonts = [] if source else find_fonts(args.font_path, hp.chars)
    with MPData(args.num_proc, fonts, hp, BLOCK_SIZE, args.pool_size // BLOCK_SIZE, folder=source) as data:
        if source is not None:
            data.decode()
            data.release()
        data.fill()
        train_iter = OCRIter(hp.batch_size * (args.batches + 2), hp, data.sample)
        received, tic = data.received, time.perf_counter()
        with_data = train_rate(mod, train_iter, hp)
        fresh = (data.received - received) * BLOCK_SIZE / (time.perf_counter() - tic)
    model_after = train_rate(mod, [fixed] * (args.batches + 2), hp)
    model = (model_before + model_after) / 2
    print(f"end to end  model only (no generators)    {model:8.1f} samples/s  "
          f"(before {model_before:.1f}, after {model_after:.1f})")
    print(f"end to end  with the data path            {with_data:8.1f} samples/s  "
          f"({with_data / model:.0%} of model only)")
    print(f"end to end  fresh samples into the pool   {fresh:8.1f} samples/s  "
          f"(each sample is drawn {with_data / max(fresh, 1e-9):.1f} times on average)")


if __name__ == "__main__":
    main()
