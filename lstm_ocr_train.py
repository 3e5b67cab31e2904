"""Train the LSTM + CTC captcha reader on random CAPTCHAs drawn in the given font(s).

    python lstm_ocr_train.py --loss ctc font/
    python lstm_ocr_train.py --gpu 1 --num_proc 4 --loss warpctc font/Ubuntu-M.ttf

Writes `PREFIX-symbol.json`, `PREFIX-meta.json` and `PREFIX-%04d.params` (+ `.states`) every epoch.
"""

import argparse
import logging
import os
import signal
import sys
import time

import mxnet as mx
import numpy as np

import checkpoint
import ctc_metrics
import hyperparameters
from captcha_generator import InputError, exit_with, find_fonts
from hyperparameters import Hyperparams
from lstm import LOSSES, NETWORKS, initial_params, lstm_ocr, output_steps
from multiproc_data import MPData, WorkerDied
from ocr_iter import OCRIter, fixed_iter

BLOCK_SIZE = 32  # samples a worker generates per hand-over
LOG_EVERY = 50  # batches between speed lines, as the example


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("font_path", help="a .ttf font file, or a folder of them")
    parser.add_argument("--gpu", type=int, default=0, help="number of GPUs to train on [default 0]")
    parser.add_argument("--cpu", type=int, default=1, help="number of CPU contexts, when --gpu is 0 [default 1]")
    parser.add_argument("--num_proc", type=int, default=2, help="CAPTCHA generating processes [default 2]")
    parser.add_argument("--loss", default="ctc", help="ctc or warpctc [default ctc]")
    parser.add_argument("--network", default="fused", help="fused, unrolled or crnn [default fused]")
    parser.add_argument("--prefix", default="ocr", help="checkpoint prefix [default ocr]")
    parser.add_argument("--pool_size", type=int, default=8192,
                        help="samples in the reused training pool; 0 = every sample fresh, as the "
                             "example (the trainer then waits for the generators) [default 8192]")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible runs")
    hyperparameters.add_arguments(parser)
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace, hp: Hyperparams) -> None:
    """Raise InputError for any option that cannot work."""
    if args.loss not in LOSSES:
        raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got {args.loss!r}")
    if args.network not in NETWORKS:
        raise InputError(f"--network must be one of {', '.join(NETWORKS)}, got {args.network!r}")
    for name in ("cpu", "num_proc"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.gpu < 0 or args.pool_size < 0:
        raise InputError("--gpu and --pool_size must not be negative")
    try:
        hp.validate()
    except ValueError as error:
        raise InputError(str(error)) from None
    steps = output_steps(hp, args.network)
    if 2 * hp.max_len + 1 > steps:
        raise InputError(f"--network {args.network} reads {steps} steps of a {hp.seq_length}-column image, "
                         f"too few for --max_len {hp.max_len}")
    if hp.batch_size > hp.train_epoch_size or hp.batch_size > hp.eval_epoch_size:
        raise InputError(f"--batch_size {hp.batch_size} exceeds an epoch size")
    if args.gpu and not mx.runtime.Features().is_enabled("CUDA"):
        raise InputError("--gpu needs an MXNet build with CUDA; this one is CPU-only "
                         "(pip install mxnet-cu112==1.9.1 brings CUDA 11.2), or train with --cpu")
    folder = os.path.dirname(os.path.abspath(args.prefix))
    if not os.path.isdir(folder):
        raise InputError(f"checkpoint folder {folder} does not exist")


def contexts(args: argparse.Namespace) -> list:
    """The devices the batch is split across."""
    if args.gpu:
        return [mx.gpu(i) for i in range(args.gpu)]
    return [mx.cpu(i) for i in range(args.cpu)]


class BatchLogger:
    """Logs `Epoch[k] Batch [n] Speed: ... samples/sec accuracy=...` every `every` batches."""

    def __init__(self, batch_size: int, every: int):
        self.batch_size, self.every = batch_size, every
        self.tic = time.time()

    def __call__(self, epoch: int, batch: int, metric: mx.metric.EvalMetric) -> None:
        if batch % self.every:
            return
        speed = self.every * self.batch_size / (time.time() - self.tic)
        values = "".join(f"\t{name}={value:f}" for name, value in metric.get_name_value())
        logging.info("Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec%s", epoch, batch, speed, values)
        metric.reset_local()
        self.tic = time.time()


def fit(mod: mx.mod.Module, train_iter: OCRIter, val_iter, hp: Hyperparams, prefix: str) -> None:
    """The example's training loop (Module.fit's), checkpointing every epoch."""
    metric = mx.metric.np(ctc_metrics.accuracy, allow_extra_outputs=True)
    log_batch = BatchLogger(hp.batch_size, LOG_EVERY)
    for epoch in range(hp.num_epoch):
        tic = time.time()
        metric.reset()
        train_iter.reset()
        log_batch.tic = tic
        for batch_number, batch in enumerate(train_iter, 1):
            mod.forward_backward(batch)
            mod.update()
            mod.update_metric(metric, batch.label)
            log_batch(epoch, batch_number, metric)
        for name, value in metric.get_global_name_value():
            logging.info("Epoch[%d] Train-%s=%f", epoch, name, value)
        logging.info("Epoch[%d] Time cost=%.3f", epoch, time.time() - tic)
        arg_params, aux_params = mod.get_params()
        checkpoint.save(prefix, epoch + 1, mod.symbol, arg_params, aux_params, hp,
                        mod.save_optimizer_states)
        for name, value in mod.score(val_iter, metric):
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)


def optimizer_params(hp: Hyperparams) -> dict:
    """MXNet optimizer settings; Module scales gradients by 1 / batch_size (a mean loss)."""
    params = {"learning_rate": hp.learning_rate, "wd": hp.wd}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    if hp.clip_gradient:
        params["clip_gradient"] = hp.clip_gradient
    return params


def train(args: argparse.Namespace, hp: Hyperparams, fonts: list[str]) -> None:
    """Start the generators, build the module, and fit; the generators are always stopped."""
    if args.seed is not None:
        mx.random.seed(args.seed)
    block_size = BLOCK_SIZE if args.pool_size else hp.batch_size
    pool_blocks = max(1, args.pool_size // block_size)
    with MPData(args.num_proc, fonts, hp, block_size, pool_blocks, args.seed) as data:
        logging.info("Generating %d validation samples with %d processes", hp.eval_epoch_size, args.num_proc)
        held_out = [data.take_block() for _ in range(-(-hp.eval_epoch_size // block_size))]
        images = np.concatenate([b[0] for b in held_out])[:hp.eval_epoch_size]
        labels = np.concatenate([b[1] for b in held_out])[:hp.eval_epoch_size]
        val_iter = fixed_iter(images, labels, hp)

        if args.pool_size:
            logging.info("Filling the training pool with %d samples", pool_blocks * block_size)
            data.fill()

        def next_batch(batch_size: int):
            return data.sample(batch_size) if args.pool_size else data.take_block()

        train_iter = OCRIter(hp.train_epoch_size, hp, next_batch)
        symbol = lstm_ocr(hp, args.network, args.loss)
        mod = mx.mod.Module(symbol, data_names=["data"], label_names=["label"], context=contexts(args))
        mod.bind(data_shapes=train_iter.provide_data, label_shapes=train_iter.provide_label)
        mod.init_params(arg_params=initial_params(hp, args.network, mx.init.Xavier(factor_type="in", magnitude=2.34)))
        mod.init_optimizer(optimizer=hp.optimizer, optimizer_params=optimizer_params(hp))
        fit(mod, train_iter, val_iter, hp, args.prefix)


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hp = hyperparameters.from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    try:
        check_args(args, hp)
        fonts = find_fonts(args.font_path)
    except InputError as error:
        exit_with(error)
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        train(args, hp, fonts)
    except Interrupted as signal_name:
        epochs = checkpoint.saved_epochs(args.prefix)
        last = checkpoint.params_path(args.prefix, epochs[-1]) if epochs else "none"
        sys.stderr.write(f"stopped by {signal_name}; last checkpoint: {last}\n")
        sys.exit(130)
    except WorkerDied as error:
        exit_with(error, code=1)


if __name__ == "__main__":
    main()
