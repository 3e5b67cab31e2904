"""Training-step speed (samples/s) of each network and loss on random data, model only.

    .venv/bin/python bench/train_step.py [--batches 20] [--networks fused unrolled] [--losses ctc warpctc]
"""

import argparse
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from lstm_ocr import hyperparameters  # noqa: E402
from lstm_ocr.hyperparameters import (  # noqa: E402
    LOSSES,
    NETWORKS,
    Hyperparams,  # noqa: E402
)
from lstm_ocr.lstm import initial_params, lstm_ocr  # noqa: E402
from lstm_ocr.ocr_iter import data_descs  # noqa: E402


def build_module(hp: Hyperparams) -> mx.mod.Module:
    """A bound Module with fresh weights and an SGD optimizer (the speed of Adam is the same)."""
    mod = mx.mod.Module(lstm_ocr(hp), data_names=["data"], label_names=["label"])
    mod.bind(*data_descs(hp))
    initializer = mx.init.Xavier()
    mod.init_params(initializer, arg_params=initial_params(hp, initializer), allow_missing=True)
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": hp.learning_rate, "momentum": hp.momentum})
    return mod


def random_batch(hp: Hyperparams) -> mx.io.DataBatch:
    """One batch of random images and labels: the model's speed does not depend on the pixels."""
    rng = np.random.default_rng(0)
    return mx.io.DataBatch(
        data=[mx.nd.array(rng.random((hp.batch_size, hp.image_width, hp.image_height)))],
        label=[mx.nd.array(rng.integers(1, hp.num_classes, (hp.batch_size, hp.num_label)))])


def step_speed(hp: Hyperparams, batches: int) -> float:
    """Samples per second of forward, backward and SGD update, after two warm-up batches."""
    mod, batch = build_module(hp), random_batch(hp)
    for i in range(batches + 2):
        if i == 2:
            tic = time.perf_counter()
        mod.forward_backward(batch)
        mod.update()
        mod.get_outputs()[0].wait_to_read()
        mx.nd.waitall()
    return batches * hp.batch_size / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))  # crnn: with the fast recipe's sizes
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    args = parser.parse_args()
    print(f"# {' '.join(sys.argv)}  (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    for network in args.networks:
        recipe = hyperparameters.for_recipe("fast" if network == "crnn" else "example")
        for loss in args.losses:
            hp = replace(recipe, network=network, loss=loss)
            speed = step_speed(hp, args.batches)
            print(f"train step  {network:9s} {loss:8s} batch {hp.batch_size:3d} {speed:8.1f} samples/s", flush=True)


if __name__ == "__main__":
    main()
