"""Train the LSTM + CTC captcha reader on random CAPTCHAs drawn in the given font(s).

    python lstm_ocr_train.py --loss ctc font/
    python lstm_ocr_train.py --gpu 1 --num_proc 4 --loss warpctc font/Ubuntu-M.ttf
    python dist_launch.py -n 2 -s 1 font/    # distributed: see dist_launch.py and the README

Writes `PREFIX-symbol.json`, `PREFIX-meta.json` and `PREFIX-%04d.params` (+ `.states`) every epoch.
"""

import argparse
import logging
import os
import sys
import time

import mxnet as mx
import numpy as np

import checkpoint
import ctc_metrics
import hyperparameters
import training_curves
from captcha_generator import find_fonts
from cli import ArgumentParser, InputError, Interrupted, check_count, exit_with, run_main, stop_on_signals
from hyperparameters import RECIPES, STYLES, Hyperparams
from lstm import LOSSES, NETWORKS, initial_params, lstm_ocr, network_of, output_steps
from multiproc_data import MPData, WorkerDied
from ocr_iter import OCRIter, data_descs, fixed_iter

BLOCK_SIZE = 32  # samples a worker generates per hand-over
LOG_EVERY = 50  # batches between speed lines, as the example
KV_STORES = ("local", "device", "dist_sync", "dist_async")
DMLC_ENV = ("DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")  # a worker needs all
RANK_SEED_STRIDE = 1_000_003  # worker r of a distributed run generates data with --seed + r * this
MAX_PROCESSES = 4 * (os.cpu_count() or 1)  # generator processes beyond this only thrash the machine
MAX_DEVICES = 64  # --cpu / --gpu contexts
MODEL_FIELDS = ("chars", "min_len", "max_len", "seq_length", "image_height", "num_hidden", "num_lstm_layer", "fit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; those of `--recipe` become the defaults, which explicit options override."""
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", default="example", choices=tuple(RECIPES),
                        help="a set of defaults (see hyperparameters.py) [default example]")
    parser.add_argument("font_path", help="a .ttf font file, or a folder of them")
    parser.add_argument("--gpu", type=int, default=0, help="number of GPUs to train on [default 0]")
    parser.add_argument("--cpu", type=int, default=1, help="number of CPU contexts, when --gpu is 0 [default 1]")
    parser.add_argument("--num_proc", type=int, default=2, help="CAPTCHA generating processes [default 2]")
    parser.add_argument("--loss", default="ctc", choices=LOSSES, help="[default ctc]")
    parser.add_argument("--network", default="fused", choices=NETWORKS, help="[default fused]")
    parser.add_argument("--prefix", default="ocr", help="checkpoint prefix [default ocr]")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already saved under --prefix (its files are deleted first)")
    parser.add_argument("--pool_size", type=int, default=8192,
                        help="samples in the reused training pool (at most an epoch's); 0 = every sample "
                             "fresh, as the example (the trainer then waits for the generators) [default 8192]")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible runs")
    parser.add_argument("--style", default="example", choices=STYLES,
                        help="captchas to train on: example (the example's look) or varied (a wide random family "
                             "of looks and sizes, captcha_styles.py) [default example]")
    parser.add_argument("--load_epoch", type=int, default=0,
                        help="resume from checkpoint PREFIX-%%04d.params (and .states) of this epoch")
    parser.add_argument("--kv_store", default="local", choices=KV_STORES,
                        help="how gradients of several devices (local, device) or "
                             "machines (dist_*, under DMLC_ROLE=worker) are combined [default local]")
    hyperparameters.add_arguments(parser)
    args = parser.parse_args(argv)
    parser.set_defaults(**RECIPES[args.recipe])
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace, hp: Hyperparams) -> None:
    """Raise InputError for any option that cannot work."""
    check_count("num_proc", args.num_proc, MAX_PROCESSES)
    check_count("cpu", args.cpu, MAX_DEVICES)
    distributed, worker = is_distributed(args), os.environ.get("DMLC_ROLE") == "worker"
    missing = [name for name in DMLC_ENV if not os.environ.get(name)]
    if distributed and (not worker or missing):
        raise InputError(f"--kv_store {args.kv_store} needs the environment of an MXNet worker (DMLC_ROLE=worker, "
                         f"{', '.join(DMLC_ENV)}); start it with dist_launch.py")
    if worker and not distributed:
        raise InputError(f"DMLC_ROLE=worker needs --kv_store dist_sync or dist_async, got {args.kv_store}")
    for name in ("gpu", "pool_size", "load_epoch"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name} must not be negative, got {getattr(args, name)}")
    if args.gpu > MAX_DEVICES:
        raise InputError(f"--gpu must be at most {MAX_DEVICES}, got {args.gpu}")
    hp.validate()
    steps = output_steps(hp, args.network)
    if 2 * hp.max_len + 1 > steps:
        raise InputError(f"--network {args.network} reads {steps} steps of a {hp.seq_length}-column image, "
                         f"too few for --max_len {hp.max_len}")
    if args.load_epoch >= hp.num_epoch:
        raise InputError(f"--load_epoch {args.load_epoch} leaves nothing to train: --num_epoch is {hp.num_epoch}")
    if hp.batch_size > hp.train_epoch_size or hp.batch_size > hp.eval_epoch_size:
        raise InputError(f"--batch_size {hp.batch_size} exceeds an epoch size")
    if args.gpu and not mx.runtime.Features().is_enabled("CUDA"):
        raise InputError("--gpu needs an MXNet build with CUDA; this one is CPU-only "
                         "(pip install mxnet-cu112==1.9.1 brings CUDA 11.2), or train with --cpu")
    if args.load_epoch and args.overwrite:
        raise InputError("--overwrite starts a new run; --load_epoch resumes one: give one of them")
    checkpoint.check_writable(args.prefix, list(range(args.load_epoch + 1, hp.num_epoch + 1)))


def claim_prefix(args: argparse.Namespace, hp: Hyperparams) -> None:
    """Make `--prefix` this run's: a new run never writes over another run's files unless told to
    (`--overwrite` deletes them first); a resumed run keeps them. Temporary files of killed runs go."""
    for path in checkpoint.clear_stale_temporaries(args.prefix):
        logging.info("Removed %s, left by a stopped run", path)
    if args.load_epoch:
        training_curves.load(args.prefix, args.load_epoch)  # a corrupt history fails now, not after an epoch
        saved = checkpoint.load_hyperparams(args.prefix)
        for name in MODEL_FIELDS:
            if getattr(saved, name) != getattr(hp, name):
                raise InputError(f"{args.prefix} was trained with --{name} {getattr(saved, name)!r}, not "
                                 f"{getattr(hp, name)!r}: resume with the same --{name}")
        return
    epochs = checkpoint.saved_epochs(args.prefix)
    existing = [path for path in checkpoint.file_names(args.prefix, epochs)
                if os.path.isfile(path) and path != checkpoint.lock_path(args.prefix)]
    if not existing:
        return
    if not args.overwrite:
        saved = f"epochs {epochs[0]}-{epochs[-1]}" if epochs else os.path.basename(existing[0])
        raise InputError(f"prefix {args.prefix} already holds a run ({saved}): resume it with --load_epoch "
                         f"{epochs[-1] if epochs else 'N'}, choose another --prefix, or pass --overwrite to "
                         "replace it")
    for path in existing:
        os.remove(path)
    logging.info("--overwrite: removed the %d files of the earlier run under %s", len(existing), args.prefix)


def is_distributed(args: argparse.Namespace) -> bool:
    return args.kv_store.startswith("dist")


def data_seed(seed: int | None, rank: int) -> int | None:
    """Worker `rank`'s data seed: `seed` itself on rank 0, a different one on every other rank."""
    return None if seed is None else seed + rank * RANK_SEED_STRIDE


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


def fit(mod: mx.mod.Module, train_iter: OCRIter, val_iter, hp: Hyperparams, prefix: str | None,
        begin_epoch: int, save_states: bool = True) -> None:
    """The example's training loop (Module.fit's): log and validate every epoch and, unless `prefix`
    is None, write the checkpoint, the history and its curves."""
    metric = mx.metric.CompositeEvalMetric([mx.metric.np(ctc_metrics.accuracy, allow_extra_outputs=True),
                                            ctc_metrics.CtcLoss()])
    log_batch = BatchLogger(hp.batch_size, LOG_EVERY)
    history = training_curves.load(prefix, begin_epoch) if prefix is not None else []
    samples, seconds = (history[-1].samples, history[-1].seconds) if history else (0, 0.0)
    for epoch in range(begin_epoch, hp.num_epoch):
        tic = time.time()
        metric.reset()
        train_iter.reset()
        log_batch.tic = tic
        for batch_number, batch in enumerate(train_iter, 1):
            mod.forward_backward(batch)
            mod.update()
            mod.update_metric(metric, batch.label)
            log_batch(epoch, batch_number, metric)
        train_scores = dict(metric.get_global_name_value())
        for name, value in train_scores.items():
            logging.info("Epoch[%d] Train-%s=%f", epoch, name, value)
        logging.info("Epoch[%d] Time cost=%.3f", epoch, time.time() - tic)
        samples += train_iter.num_batches * hp.batch_size
        seconds += time.time() - tic
        if prefix is not None:
            arg_params, aux_params = mod.get_params()
            checkpoint.save(prefix, epoch + 1, mod.symbol, arg_params, aux_params, hp,
                            (lambda path: checkpoint.save_optimizer_states(updater_of(mod), path))
                            if save_states else None)
        val_scores = dict(mod.score(val_iter, metric))
        for name, value in val_scores.items():
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        history.append(training_curves.EpochRecord(
            epoch + 1, samples, seconds, train_scores["accuracy"], train_scores["loss"],
            val_scores["accuracy"], val_scores["loss"]))
        if prefix is not None:
            training_curves.save(prefix, history)


def optimizer_params(hp: Hyperparams) -> dict:
    """MXNet optimizer settings; Module scales gradients by 1 / batch_size (a mean loss)."""
    params = {"learning_rate": hp.learning_rate, "wd": hp.wd}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    if hp.clip_gradient:
        params["clip_gradient"] = hp.clip_gradient
    return params


def build_module(args: argparse.Namespace, hp: Hyperparams, kv: "mx.kv.KVStore | str") -> mx.mod.Module:
    """The bound Module with fresh weights, or with checkpoint `--load_epoch` and its optimizer state."""
    mod = mx.mod.Module(lstm_ocr(hp, args.network, args.loss), data_names=["data"], label_names=["label"],
                        context=contexts(args))
    provide_data, provide_label = data_descs(hp)
    mod.bind(data_shapes=provide_data, label_shapes=provide_label)
    initializer = mx.init.Xavier(factor_type="in", magnitude=2.34)
    if not args.load_epoch:
        mod.init_params(initializer, arg_params=initial_params(hp, args.network, initializer), allow_missing=True)
        mod.init_optimizer(kvstore=kv, optimizer=hp.optimizer, optimizer_params=optimizer_params(hp))
        return mod
    _, arg_params, aux_params = checkpoint.load(args.prefix, args.load_epoch)
    if network_of(arg_params) != args.network:
        raise InputError(f"checkpoint {args.prefix} epoch {args.load_epoch} is a {network_of(arg_params)} "
                         f"network: resume with --network {network_of(arg_params)}")
    try:
        mod.init_params(arg_params=arg_params, aux_params=aux_params, allow_missing=False)
    except (mx.base.MXNetError, RuntimeError, ValueError) as error:
        raise InputError(f"checkpoint {args.prefix} epoch {args.load_epoch} does not fit the network of "
                         f"these options ({checkpoint.mxnet_reason(error)})") from None
    mod.init_optimizer(kvstore=kv, optimizer=hp.optimizer, optimizer_params=optimizer_params(hp))
    states = checkpoint.states_path(args.prefix, args.load_epoch)
    if is_distributed(args):  # the servers hold the optimizer, and MXNet cannot load its state there
        logging.warning("Distributed: the optimizer starts afresh on the servers")
    elif os.path.isfile(states):
        load_optimizer_states(mod, states)
    else:
        logging.warning("No optimizer state %s: the optimizer starts afresh", states)
    logging.info("Resuming from %s", checkpoint.params_path(args.prefix, args.load_epoch))
    return mod


def updater_of(mod: mx.mod.Module) -> "mx.optimizer.Updater":
    """Where a bound Module keeps its optimizer's state: its own updater, or its kvstore's."""
    return mod._kvstore._updater if mod._update_on_kvstore else mod._updater


def load_optimizer_states(mod: mx.mod.Module, path: str) -> None:
    """Restore a `.states` file into `mod`, checking that every state has its weight's shape."""
    updater = updater_of(mod)
    checkpoint.load_optimizer_states(updater, path)
    names = mod._exec_group.param_names
    shapes = {i: arrays[0].shape for i, arrays in enumerate(mod._exec_group.param_arrays)}
    shapes |= {names[i]: shape for i, shape in list(shapes.items())}
    for index, state in updater.states.items():
        parts = state if isinstance(state, tuple) else (state,)
        if index not in shapes or any(p is not None and p.shape != shapes[index] for p in parts):
            raise checkpoint.CheckpointError(f"{path} does not fit the network being resumed; delete it to "
                                             "resume with a fresh optimizer")


def train(args: argparse.Namespace, hp: Hyperparams, fonts: list[str]) -> None:
    """Build the module, start the generators, and fit; the generators are always stopped.

    Distributed, every worker draws its own data (seeded by its rank), the servers hold the weights
    and the optimizer (so no .states file), and only rank 0 writes checkpoints.
    """
    if args.seed is not None:
        mx.random.seed(args.seed)
    distributed = is_distributed(args)
    kv = mx.kv.create(args.kv_store) if distributed else args.kv_store  # dist: joins the scheduler, gets a rank
    rank = kv.rank if distributed else 0
    if distributed:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)-15s [rank {rank}] %(message)s", force=True)
        logging.info("Worker %d of %d, kvstore %s", rank, kv.num_workers, kv.type)
    prefix_lock = checkpoint.lock(args.prefix) if rank == 0 else None  # noqa: F841  (held until exit)
    if rank == 0:
        claim_prefix(args, hp)
    mod = build_module(args, hp, kv)
    block_size = BLOCK_SIZE if args.pool_size else hp.batch_size
    pool_blocks = max(1, min(args.pool_size, hp.train_epoch_size) // block_size)  # no bigger than an epoch
    with MPData(args.num_proc, fonts, hp, block_size, pool_blocks, data_seed(args.seed, rank), args.style) as data:
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
        fit(mod, train_iter, val_iter, hp, args.prefix if rank == 0 else None, args.load_epoch,
            save_states=not distributed)
        if distributed:
            logging.info("Parameters sha256=%s", checkpoint.params_digest(mod.get_params()[0]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    hp = hyperparameters.from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    check_args(args, hp)
    fonts = find_fonts(args.font_path, hp.chars)
    stop_on_signals()
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
    run_main(main)
