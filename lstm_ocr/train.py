"""Train the LSTM + CTC captcha reader on random CAPTCHAs drawn in the given font(s), or on a folder
of labelled images (`--train_dir`), from scratch or from a checkpoint (`--finetune PREFIX[:EPOCH]`).

    python lstm_ocr_train.py --loss ctc font/
    python lstm_ocr_train.py --gpu 1 --num_proc 4 --loss warpctc font/Ubuntu-M.ttf
    python lstm_ocr_train.py --train_dir mine/train --val_dir mine/val --finetune general --prefix mine/ocr
    python -m lstm_ocr.dist_launch -n 2 -s 1 font/    # distributed: see lstm_ocr/dist_launch.py and the README

Writes `PREFIX-symbol.json`, `PREFIX-meta.json` and `PREFIX-%04d.params` (+ `.states`) every epoch.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, fields

import mxnet as mx
import numpy as np

from lstm_ocr import (
    adapt,
    arithmetic,
    captcha_store,
    checkpoint,
    ctc_metrics,
    diagnosis,
    early_stopping,
    hyperparameters,
    labelled_data,
    models,
)
from lstm_ocr import curves as training_curves
from lstm_ocr.captcha_generator import find_fonts
from lstm_ocr.cli import (
    ArgumentParser,
    InputError,
    Interrupted,
    check_count,
    check_seed,
    exit_with,
    run_main,
    stop_on_signals,
)
from lstm_ocr.hyperparameters import RECIPES, STYLES, TEXT_FIELDS, Hyperparams
from lstm_ocr.images import to_float
from lstm_ocr.lstm import convert_params, crnn_pooling, initial_params, lstm_ocr, output_steps
from lstm_ocr.multiproc_data import FolderSource, MPData, WorkerDied
from lstm_ocr.ocr_iter import OCRIter, data_descs, fixed_iter

BLOCK_SIZE = 32  # samples a worker generates per hand-over
LOG_EVERY = 50  # batches between speed lines, as the example
KV_STORES = ("local", "device", "dist_sync", "dist_async")
DMLC_ENV = ("DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER", "DMLC_NUM_WORKER")  # a worker needs all
RANK_SEED_STRIDE = 1_000_003  # worker r of a distributed run generates data with --seed + r * this
MAX_PROCESSES = 4 * (os.cpu_count() or 1)  # generator processes beyond this only thrash the machine
MAX_DEVICES = 64  # --cpu / --gpu contexts
# what a checkpoint fixes
STRUCTURE_FIELDS = ("network", "seq_length", "image_height", "num_hidden", "num_lstm_layer", "crnn_blocks",
                    "crnn_first_channels", "crnn_shape", "fit")
MODEL_FIELDS = TEXT_FIELDS + STRUCTURE_FIELDS  # what a resumed run must keep
WARMUP_UPDATES = 50  # updates of linear warm-up before a cosine schedule (a fresh pred_fc settles)
# The options that are not hyperparameters, with their defaults. A run writes them into its meta file
# (`options`); a resumed run takes those of the data back unless the command line gives them again.
OPTION_DEFAULTS = {
    "recipe": "example", "font_path": None, "train_dir": None, "val_dir": None, "synthetic": 0.0, "augment": 1,
    "skip_bad": False, "finetune": None, "gpu": 0, "cpu": 1, "num_proc": 2, "prefix": "ocr", "overwrite": False,
    "pool_size": 8192, "seed": None, "style": "example", "load_epoch": 0, "kv_store": "local", "store": None,
    "patience": None, "keep_epochs": 2,
}
RESUMED_OPTIONS = ("recipe", "font_path", "train_dir", "val_dir", "synthetic", "augment", "skip_bad", "pool_size",
                   "seed", "style", "patience", "keep_epochs", "store")
AUTO = "auto"  # --finetune auto: the shipped model that fits the folder's labels
FOLDER_PATIENCE = 4  # --train_dir without --patience: epochs (of about one pass) without a better validation
MAX_EPOCH_COUNT = 100_000  # --patience and --keep_epochs at most (the most epochs a run may have)


def build_parser() -> ArgumentParser:
    """The command line. Options the user leaves out are absent from what it parses (argparse's
    SUPPRESS default): `resolve` fills them in, in order, from the recipe, the checkpoint, the folder."""
    parser = ArgumentParser(description=__doc__, argument_default=argparse.SUPPRESS)
    parser.add_argument("--recipe", choices=tuple(RECIPES),
                        help="a set of defaults (see hyperparameters.py) [default example; fast with --train_dir]")
    parser.add_argument("font_path", nargs="?",
                        help="a .ttf font file, or a folder of them (with --train_dir, only for --synthetic)")
    parser.add_argument("--train_dir", help="train on this folder of labelled images (NNNN_TEXT.png names, or a "
                                            "labels.csv / labels.tsv of file,text) instead of generated captchas")
    parser.add_argument(adapt.OPTION, metavar="DIR",
                        help="learn from this folder of unlabelled images of one look: rounds of fine-tuning on the "
                             "readings the model trusts (--finetune, --prefix, --allowed, --length, --min_confidence, "
                             "--rounds, --train_dir, --val_dir: see lstm_ocr/adapt.py)")
    parser.add_argument("--val_dir", help="validate on this folder [default: a fixed 10%% of --train_dir, never "
                                          "trained on]")
    parser.add_argument("--synthetic", type=float,
                        help="with --train_dir: this fraction of the samples is drawn by the generator in the "
                             "fonts of FONT_PATH [default 0]")
    parser.add_argument("--augment", type=int, choices=(0, 1),
                        help="with --train_dir: jitter, blur, noise and contrast changes on the fly [default 1]")
    parser.add_argument("--skip_bad", action="store_true",
                        help="with --train_dir: skip unreadable images (counted in the log) instead of stopping")
    parser.add_argument("--finetune", metavar="PREFIX[:EPOCH]|auto",
                        help="start from this checkpoint's weights (PREFIX, or a shipped model: general, alnum, "
                             "arith, ocr; its latest epoch unless :EPOCH is given; any network: the network and its "
                             "size follow it), with a fresh optimizer; a new alphabet gets a fresh pred_fc. auto "
                             "(with --train_dir): the shipped model that fits the labels (digits: general, letters: "
                             "alnum, sums: arith)")
    parser.add_argument("--gpu", type=int, help="number of GPUs to train on [default 0]")
    parser.add_argument("--cpu", type=int, help="number of CPU contexts, when --gpu is 0 [default 1]")
    parser.add_argument("--num_proc", type=int, help="CAPTCHA generating processes [default 2]")
    parser.add_argument("--prefix", help="checkpoint prefix; its folder is created [default ocr]")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already saved under --prefix (its files are deleted first)")
    parser.add_argument("--store", metavar="DIR",
                        help="train on the captchas of this store (drawn once by python -m lstm_ocr.captcha_store) "
                             "instead of drawing them during training; the validation set is still drawn fresh "
                             "(--style)")
    parser.add_argument("--pool_size", type=int,
                        help="samples in the reused training pool (at most an epoch's); 0 = every sample "
                             "fresh, as the example (the trainer then waits for the generators) [default 8192]")
    parser.add_argument("--seed", type=int, help="random seed for reproducible runs")
    parser.add_argument("--style", choices=STYLES,
                        help="captchas to train on: example (the example's look), varied (a wide random family "
                             "of looks and sizes, lstm_ocr/styles.py) or arithmetic (sums such as 7+3=? in the "
                             "varied looks; sets --chars, --min_len and --max_len) [default example]")
    parser.add_argument("--load_epoch", type=int,
                        help="resume from checkpoint PREFIX-%%04d.params (and .states) of this epoch, with the "
                             "run's saved options")
    parser.add_argument("--patience", type=int, metavar="N",
                        help="stop once N epochs have passed without a better validation (accuracy, then loss), or "
                             f"once validation reads all of {early_stopping.TRUSTED_VALIDATION} or more images right; "
                             f"0: never stop early [default {FOLDER_PATIENCE} with --train_dir, else 0]")
    parser.add_argument("--keep_epochs", type=int, metavar="N",
                        help="keep the checkpoint files of the last N epochs and of the best one, removing the "
                             "older ones this run wrote; 0: keep every epoch [default 2]")
    parser.add_argument("--kv_store", choices=KV_STORES,
                        help="how gradients of several devices (local, device) or "
                             "machines (dist_*, under DMLC_ROLE=worker) are combined [default local]")
    hyperparameters.add_arguments(parser, defaults=False)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Every option, those left out at their defaults; `given` names the ones the command line sets."""
    given = vars(build_parser().parse_args(argv))
    args = argparse.Namespace(**(OPTION_DEFAULTS | given))
    args.given = frozenset(given)
    if "recipe" not in given and args.train_dir:
        args.recipe = "fast"  # folders: the fast recipe
    return args


def patience_of(args: argparse.Namespace) -> int:
    """--patience, or its default: FOLDER_PATIENCE with --train_dir, 0 (never stop early) without."""
    if args.patience is not None:
        return args.patience
    return FOLDER_PATIENCE if args.train_dir else 0


class Diverged(Exception):
    """Training produced a non-finite loss or weights; nothing of that epoch is saved."""


@dataclass
class Run:
    """A training run resolved from its command line: the options, the complete and checked
    hyperparameters, the folder's images (if --train_dir), the checkpoint to fine-tune from, the store."""

    args: argparse.Namespace
    hp: Hyperparams
    plan: "FolderPlan | None"
    start: "Start | None"
    fonts: list[str]  # checked to draw every character of the alphabet (none for a folder without --synthetic)
    store: "captcha_store.Store | None" = None  # --store's captchas, checked to fit the run


def resolve(argv: list[str] | None = None) -> Run:
    """The one place the options are decided, each from the first that sets it: the command line, a
    resumed run's meta file, the folder's labels and size (FOLDER_RULES), the --finetune checkpoint,
    the recipe, the defaults. Every refusal that can be known before work starts comes from here, before
    an image is decoded or drawn: the data options, the prefix (its folder is created), the checkpoint,
    the folder's labels, the hyperparameters, the fonts."""
    args = parse_args(argv)
    check_data_args(args)
    saved = resumed_meta(args) if args.load_epoch else None
    if saved is not None:
        options = resumed_options(saved, args.prefix)
        for name in RESUMED_OPTIONS:
            if name not in args.given and name in options:
                setattr(args, name, options[name])
    check_prefix(args)
    plan = plan_folders(args) if args.train_dir else None
    if args.finetune == AUTO:
        args.finetune = auto_start(plan)
    start = load_start(args.finetune) if args.finetune else None
    case = next((layer["case"] for layer in (vars(args), saved or {}, vars(start.hp) if start else {})
                 if "case" in layer), "keep")
    if plan is not None and case == "fold":
        plan = folded(plan, start)
    if plan is not None and start is not None:
        explain_start(args.finetune, start, plan)
    layers = [{k: v for k, v in RECIPES[args.recipe].items() if k in HYPERPARAMETERS}]
    if start is not None:
        layers.append({name: getattr(start.hp, name) for name in STRUCTURE_FIELDS + (TEXT_FIELDS if plan is None
                                                                                       else ())})
    if args.style == "arithmetic" and plan is None:  # its alphabet, over a --finetune checkpoint's: no --chars
        layers.append(dict(arithmetic.TEXT_DEFAULTS))
    if plan is not None:
        layers.append(folder_hyperparams(plan, start) | {"case": case})
    if saved is not None:
        layers.append({name: value for name, value in saved.items() if name in HYPERPARAMETERS})
    values = {name: getattr(args, name) for name in HYPERPARAMETERS if name in args.given}
    for layer in reversed(layers):
        values = layer | values
    hp = Hyperparams(**values)
    if saved is not None:
        check_resumed(args, hp, hyperparameters.from_saved(saved))
        states = checkpoint.states_path(args.prefix, args.load_epoch)
        if not is_distributed(args) and os.path.isfile(states):  # a foreign or malformed file is refused now
            checkpoint.check_states_fit(states, hp.optimizer, hp.momentum, saved.get("optimizer"))
    if plan is not None:
        check_folder_labels(hp, plan)
    check_args(args, hp)
    if start is not None:
        fitted_params(start, hp)  # a checkpoint that does not fit these options is refused now
    fonts = find_fonts(args.font_path, hp.drawn_chars) if plan is None or args.synthetic else []
    # a store that does not fit is refused now; train() uses this one (memory-mapped) rather than a second load
    store = captcha_store.load(args.store, hp, args.style) if args.store else None
    return Run(args, hp, plan, start, fonts, store)


HYPERPARAMETERS = tuple(field.name for field in fields(Hyperparams))


def folded(plan: "FolderPlan", start: "Start | None") -> "FolderPlan":
    """The folder's labels in one case (a case-folding model reads letters in either): the checkpoint's
    alphabet's, else lower case. The log says how many characters changed, and how to keep case."""
    fold = Hyperparams(chars=start.hp.chars, case="fold").fold if start is not None else str.lower
    result = FolderPlan(*([(path, fold(text)) for path, text in items] for items in (plan.train, plan.val)))
    changed = [sum(a != b for a, b in zip(text, new, strict=True))
               for (_, text), (_, new) in zip(plan.items, result.items, strict=True)]
    if any(changed):
        who = f"{start.name} reads letters in one case" if start is not None else "--case fold"
        logging.info("Labels folded to one case (%s): %d characters in %d of %d labels changed; to tell upper from "
                     "lower case, pass --case keep (a fresh last layer then learns both)", who, sum(changed),
                     sum(map(bool, changed)), len(changed))
    return result


def auto_start(plan: "FolderPlan | None") -> str:
    """`--finetune auto`: the shipped model that fits the folder's labels, logged with why."""
    if plan is None:
        raise InputError("--finetune auto picks the shipped model that fits a folder's labels: give --train_dir, "
                         "or name a checkpoint (--finetune general)")
    chars = set("".join(text for _, text in plan.items))
    operators = chars - set(hyperparameters.DIGITS) - {"x"}  # x is a letter, and a times sign in sums
    if chars <= set(hyperparameters.DIGITS):
        name, why = "general", "the labels are digits only"
    elif chars <= set(arithmetic.ALPHABET) and operators:
        name, why = "arith", f"the labels are sums (digits and {''.join(sorted(operators))!r})"
    else:
        name, why = "alnum", "the labels have letters (it reads digits and letters, case folded)"
    logging.info("--finetune auto: starting from the shipped %s, because %s", name, why)
    return os.path.join(models.FOLDER, name)  # the shipped one, even where a checkpoint here has its name


def explain_start(name: str, start: "Start", plan: "FolderPlan") -> None:
    """One line, before any training, when the checkpoint's alphabet cannot hold the folder's labels."""
    chars = set(start.hp.chars)
    outside = [text for _, text in plan.items if set(text) - chars]
    if not outside:
        return
    unknown = "".join(sorted(set("".join(outside)) - chars))
    better = " (--finetune auto picks the shipped model that reads them)" if start.hp.digits_only else ""
    logging.warning("%s reads only %r, but %d of %d labels also use %r: its last layer (pred_fc) starts fresh for "
                    "the labels' alphabet and must learn every character from these images alone%s", name,
                    start.hp.chars, len(outside), len(plan.items), unknown, better)


def folder_hyperparams(plan: "FolderPlan", start: "Start | None") -> dict:
    """What a folder decides: the alphabet and lengths of its labels (the checkpoint's alphabet if it
    holds them all, so that pred_fc is kept), its epochs and learning rate (FOLDER_RULES), its validation size."""
    chars, min_len, max_len = labelled_data.text_fields([text for _, text in plan.items])
    if start is not None and set(chars) <= set(start.hp.chars):
        chars = start.hp.chars
    return {"chars": chars, "min_len": min_len, "max_len": max_len, "eval_epoch_size": len(plan.val),
            **hyperparameters.folder_schedule(len(plan.train), start is not None)}


def check_args(args: argparse.Namespace, hp: Hyperparams) -> None:
    """Raise InputError for any option that cannot work (the data options: check_data_args, run first)."""
    check_count("num_proc", args.num_proc, MAX_PROCESSES)
    check_count("cpu", args.cpu, MAX_DEVICES)
    distributed, worker = is_distributed(args), os.environ.get("DMLC_ROLE") == "worker"
    missing = [name for name in DMLC_ENV if not os.environ.get(name)]
    if distributed and (not worker or missing):
        raise InputError(f"--kv_store {args.kv_store} needs the environment of an MXNet worker (DMLC_ROLE=worker, "
                         f"{', '.join(DMLC_ENV)}); start it with python -m lstm_ocr.dist_launch")
    if worker and not distributed:
        raise InputError(f"DMLC_ROLE=worker needs --kv_store dist_sync or dist_async, got {args.kv_store}")
    for name in ("gpu", "pool_size", "load_epoch", "keep_epochs", "patience"):
        if (getattr(args, name) or 0) < 0:
            raise InputError(f"--{name} must not be negative, got {getattr(args, name)}")
        if name in ("keep_epochs", "patience") and (getattr(args, name) or 0) > MAX_EPOCH_COUNT:
            raise InputError(f"--{name} must be at most {MAX_EPOCH_COUNT}, got {getattr(args, name)}")
    if distributed and patience_of(args) and "patience" in args.given:
        raise InputError("--patience stops one worker on its own validation, which would leave the others waiting: "
                         "a distributed run trains every epoch (leave --patience out)")
    if args.gpu > MAX_DEVICES:
        raise InputError(f"--gpu must be at most {MAX_DEVICES}, got {args.gpu}")
    check_seed(args.seed)
    held = (min(args.pool_size, hp.train_epoch_size) + hp.eval_epoch_size) * hp.image_width * hp.image_height
    if held > hyperparameters.MAX_FOLDER_BYTES:
        raise InputError(f"--pool_size {args.pool_size} and --eval_epoch_size {hp.eval_epoch_size} hold {held} bytes "
                         f"of images at the network's input size, over the limit of "
                         f"{hyperparameters.MAX_FOLDER_BYTES}: give smaller ones")
    hp.validate()
    for name in ("crnn_blocks", "crnn_first_channels", "crnn_shape"):
        if name in args.given and hp.network != "crnn":
            raise InputError(f"--{name} sizes the crnn's convolutional front end; --network {hp.network} has none")
    if hp.network == "crnn" and hp.image_height < crnn_pooling(hp)[0]:
        raise InputError(f"--image_height {hp.image_height} is too low for --crnn_blocks {hp.crnn_blocks}: "
                         f"its blocks pool {crnn_pooling(hp)[0]} rows into one, so it needs at least "
                         f"{crnn_pooling(hp)[0]} rows")
    steps = output_steps(hp)
    if 2 * hp.max_len + 1 > steps:
        raise InputError(f"--network {hp.network} reads {steps} steps of a {hp.seq_length}-column image, "
                         f"too few for --max_len {hp.max_len}")
    drawn = not args.train_dir or args.synthetic
    missing = sorted(set(arithmetic.ALPHABET) - set(hp.chars)) if args.style == "arithmetic" and drawn else []
    if missing:
        raise InputError(f"--style arithmetic draws {''.join(missing)!r}, outside the alphabet {hp.chars!r}")
    if args.style == "arithmetic" and drawn and hp.max_len < arithmetic.MIN_LEN:
        raise InputError(f"--style arithmetic needs --max_len {arithmetic.MIN_LEN} at least, got {hp.max_len}")
    if args.load_epoch >= hp.num_epoch:
        raise InputError(f"--load_epoch {args.load_epoch} leaves nothing to train: --num_epoch is {hp.num_epoch}")
    if hp.batch_size > hp.train_epoch_size or (hp.batch_size > hp.eval_epoch_size and not args.train_dir):
        raise InputError(f"--batch_size {hp.batch_size} exceeds an epoch size")
    if args.gpu and not mx.runtime.Features().is_enabled("CUDA"):
        raise InputError("--gpu needs an MXNet build with CUDA; this one is CPU-only "
                         "(pip install mxnet-cu112==1.9.1 brings CUDA 11.2), or train with --cpu")
    checkpoint.check_writable(args.prefix, list(range(args.load_epoch + 1, hp.num_epoch + 1)))


def check_data_args(args: argparse.Namespace) -> None:
    """Raise InputError for data options that do not go together."""
    if args.load_epoch and args.overwrite:
        raise InputError("--overwrite starts a new run; --load_epoch resumes one: give one of them")
    if args.finetune and args.load_epoch:
        raise InputError("--finetune starts a new run from a checkpoint; --load_epoch resumes one: give one of them")
    if args.load_epoch:
        return  # the resumed run's own data options are checked once they are read back
    if args.store and args.train_dir:
        raise InputError("--store trains on stored captchas, --train_dir on a folder: give one of them")
    if args.store and args.style == "arithmetic":
        raise InputError("--style arithmetic is drawn during training; it has no --store")
    if not args.train_dir:
        for name in ("val_dir", "skip_bad"):
            if getattr(args, name):
                raise InputError(f"--{name} goes with --train_dir")
        if "synthetic" in args.given or "augment" in args.given:
            raise InputError(f"--{'synthetic' if 'synthetic' in args.given else 'augment'} goes with --train_dir "
                             "(without it every sample is drawn by the generator)")
        if not args.font_path:
            raise InputError("give a font (a .ttf file or a folder of them) to draw captchas with, or --train_dir")
    if not 0 <= args.synthetic <= 1:
        raise InputError(f"--synthetic is a fraction between 0 and 1, got {args.synthetic}")
    if args.synthetic and not args.font_path:
        raise InputError("--synthetic draws captchas: give a font path (a .ttf file or a folder of them)")


def _resumable(name: str, value: object) -> bool:
    """Whether a meta file's saved option has the type (and choice) its command-line option gives."""
    if name in ("recipe", "style"):
        return isinstance(value, str) and value in (RECIPES if name == "recipe" else STYLES)
    if name in ("font_path", "train_dir", "val_dir"):
        return value is None or isinstance(value, str)
    if name == "synthetic":
        return type(value) in (int, float) and math.isfinite(value)
    if name == "augment":
        return type(value) is int and value in (0, 1)
    if name == "skip_bad":
        return type(value) is bool
    if name == "pool_size":
        return type(value) is int and value >= 0
    return value is None or type(value) is int  # seed


def resumed_options(saved: dict, prefix: str) -> dict:
    """The options a resumed run's meta file saved, each checked as its command-line option would be;
    InputError naming the file and the option otherwise (a hand-edited or hostile meta file)."""
    options = saved.get("options", {})
    where = f"{checkpoint.meta_path(prefix)} is not a valid checkpoint meta file"
    if not isinstance(options, dict):
        raise InputError(f"{where}: its options are {type(options).__name__}, not a mapping")
    for name in RESUMED_OPTIONS:
        if name in options and not _resumable(name, options[name]):
            raise InputError(f"{where}: its option {name} is {str(options[name])[:80]!r}, which --{name} cannot be")
    return options


def resumed_meta(args: argparse.Namespace) -> dict:
    """The meta file of the run --load_epoch resumes (its history checked now, not after an epoch)."""
    training_curves.load(args.prefix, args.load_epoch)
    checkpoint.load(args.prefix, args.load_epoch)  # the checkpoint exists and loads, or CheckpointError
    return checkpoint.read_meta(args.prefix, args.load_epoch)


def check_resumed(args: argparse.Namespace, hp: Hyperparams, saved: Hyperparams) -> None:
    """A resumed run keeps what fixes its model: InputError for a command line that changes it."""
    for name in MODEL_FIELDS:
        if getattr(saved, name) != getattr(hp, name):
            raise InputError(f"{args.prefix} was trained with --{name} {getattr(saved, name)!r}, not "
                             f"{getattr(hp, name)!r}: resume with --{name} {getattr(saved, name)} (or leave it out)")


def check_prefix(args: argparse.Namespace) -> None:
    """Create the prefix's folder; InputError if a new run would write over another run's files
    (unless --overwrite, whose deletion comes later, in claim_prefix, once nothing can be refused)."""
    folder = os.path.dirname(os.path.abspath(args.prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the checkpoint folder {folder}: {error.strerror or error}") from None
    if args.load_epoch or args.overwrite:
        return
    existing = earlier_run(args.prefix)
    if existing:
        epochs = checkpoint.saved_epochs(args.prefix)
        saved = f"epochs {epochs[0]}-{epochs[-1]}" if epochs else os.path.basename(existing[0])
        raise InputError(f"prefix {args.prefix} already holds a run ({saved}): resume it with --load_epoch "
                         f"{epochs[-1] if epochs else 'N'}, choose another --prefix, or pass --overwrite to "
                         "replace it")


def earlier_run(prefix: str) -> list[str]:
    """The files another run saved under `prefix`."""
    return [path for path in checkpoint.file_names(prefix, checkpoint.saved_epochs(prefix))
            if os.path.isfile(path) and path != checkpoint.lock_path(prefix)]


def claim_prefix(args: argparse.Namespace) -> None:
    """Make `--prefix` this run's, once the data is ready: `--overwrite` deletes the earlier run's files
    (checked by check_prefix); a resumed run keeps them. Temporary files of killed runs go."""
    for path in checkpoint.clear_stale_temporaries(args.prefix):
        logging.info("Removed %s, left by a stopped run", path)
    if args.load_epoch or not args.overwrite:
        return
    existing = earlier_run(args.prefix)
    for path in existing:
        os.remove(path)
    if existing:
        logging.info("--overwrite: removed the %d files of the earlier run under %s", len(existing), args.prefix)


@dataclass
class FolderPlan:
    """Which labelled images train and which validate."""

    train: list[tuple[str, str]]
    val: list[tuple[str, str]]

    @property
    def items(self) -> list[tuple[str, str]]:
        return self.train + self.val


def plan_folders(args: argparse.Namespace) -> FolderPlan:
    """The labelled images of --train_dir and --val_dir (or a fixed share of --train_dir held out),
    logged with their counts; InputError if the two share a file."""
    train = labelled_data.folder_items(args.train_dir)
    if args.val_dir:
        val = labelled_data.folder_items(args.val_dir)
        shared = labelled_data.shared_files([path for path, _ in train], [path for path, _ in val])
        if shared:
            raise InputError(f"--val_dir shares files with --train_dir (the same file or the same bytes), so "
                             f"validation would not be held out: "
                             f"{labelled_data.name_some([f'{v} = {t}' for t, v in shared])}")
        logging.info("Training on %d labelled images of %s, validating on %d of %s",
                     len(train), args.train_dir, len(val), args.val_dir)
    else:
        fraction = hyperparameters.HOLDOUT_FRACTION
        train, val = labelled_data.holdout_split(train, fraction, hyperparameters.HOLDOUT_SEED)
        logging.info("Training on %d labelled images of %s, validating on %d held out of it (a fixed %d%%, "
                     "never trained on)", len(train), args.train_dir, len(val), round(fraction * 100))
        shared = labelled_data.shared_files([path for path, _ in train], [path for path, _ in val])
        if shared:
            logging.warning("%s holds the same image twice: %d held-out images are also trained on, so the "
                            "validation accuracy flatters (%s)", args.train_dir, len(shared),
                            labelled_data.name_some([f"{v} = {t}" for t, v in shared]))
    note = diagnosis.small_set(len(val), "Validation holds", SMALL_VALIDATION_ADVICE)
    if note:
        logging.warning("%s", note)
    return FolderPlan(train, val)


SMALL_VALIDATION_ADVICE = ("the run trains its whole schedule and reads with its last epoch; give --val_dir with "
                           f"{diagnosis.TRUSTED_IMAGES} or more labelled images (or label more) to choose the best "
                           "epoch and stop early")


@dataclass
class Start:
    """A checkpoint to fine-tune from."""

    name: str  # PREFIX:EPOCH as given
    hp: Hyperparams
    arg_params: dict
    aux_params: dict


def load_start(spec: str) -> Start:
    """The checkpoint of `--finetune PREFIX[:EPOCH]` (the prefix's latest epoch unless given), or InputError."""
    prefix, given = checkpoint.finetune_spec(spec)
    prefix = models.resolve(prefix, given)  # a checkpoint here, or a shipped model
    epoch = str(given or checkpoint.latest_epoch(prefix))
    _, arg_params, aux_params, hp = checkpoint.load_with_hyperparams(prefix, int(epoch))
    if "pred_fc_weight" not in arg_params:
        raise checkpoint.CheckpointError(f"--finetune {spec}: {checkpoint.params_path(prefix, int(epoch))} has no "
                                         "pred_fc layer: not a network of this project")
    return Start(spec, hp, arg_params, aux_params)


def check_folder_labels(hp: Hyperparams, plan: FolderPlan) -> None:
    """InputError for labels the network cannot learn: characters outside --chars, or too long."""
    steps = output_steps(hp)
    emits = (steps - 1) // 2  # what check_args allows: 2 * max_len + 1 steps
    most, why = ((hp.max_len, f"of --max_len {hp.max_len}") if hp.max_len < emits else
                 (emits, f"--network {hp.network} reads in its {steps} steps"))
    labelled_data.check_texts(plan.items, hp.chars, most, why)
    size = len(plan.items) * hp.image_width * hp.image_height
    if size > hyperparameters.MAX_FOLDER_BYTES:
        raise InputError(f"{len(plan.items)} images take {size} bytes at the network's input size, over the "
                         f"limit of {hyperparameters.MAX_FOLDER_BYTES}: train on fewer")


def fitted_params(start: Start, hp: Hyperparams) -> tuple[dict, dict]:
    """The checkpoint's weights for the network of these options: converted between fused and
    unrolled if need be, without pred_fc if the alphabet differs; InputError if they cannot fit."""
    arg_params = start.arg_params
    if hp.network != start.hp.network:
        if "crnn" in (hp.network, start.hp.network):
            raise InputError(f"--finetune {start.name} is a {start.hp.network} network; --network {hp.network} "
                             "cannot start from it (leave --network out to follow the checkpoint)")
        arg_params = convert_params(arg_params, start.hp, hp.network)
    if hp.chars != start.hp.chars:
        arg_params = {name: value for name, value in arg_params.items() if not name.startswith("pred_fc")}
    symbol = lstm_ocr(hp)
    shapes = {"data": (hp.batch_size, hp.image_width, hp.image_height), "label": (hp.batch_size, hp.num_label)}
    arg_shapes, _, aux_shapes = symbol.infer_shape(**shapes)
    needed = dict(zip(symbol.list_arguments(), arg_shapes, strict=True))
    needed_aux = dict(zip(symbol.list_auxiliary_states(), aux_shapes, strict=True))
    for name in shapes:
        needed.pop(name)
    problems = []
    for given, wanted in ((arg_params, needed), (start.aux_params, needed_aux)):
        for name, value in given.items():
            if name not in wanted:
                problems.append(f"it has {name}, which this network lacks")
            elif tuple(value.shape) != tuple(wanted[name]):
                problems.append(f"its {name} is {tuple(value.shape)}, this network's {tuple(wanted[name])}")
        problems += [f"it lacks {name}" for name in wanted if name not in given and not name.startswith("pred_fc")]
    if problems:
        raise InputError(f"checkpoint {start.name} does not fit the network of these options (--network "
                         f"{hp.network}, --num_hidden {hp.num_hidden}, --num_lstm_layer {hp.num_lstm_layer}, "
                         f"--crnn_shape {hp.crnn_shape}, --crnn_blocks {hp.crnn_blocks}, "
                         f"--crnn_first_channels {hp.crnn_first_channels}, "
                         f"--image_height {hp.image_height}): {problems[0]}")
    return arg_params, dict(start.aux_params)


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

    def __call__(self, epoch: int, batch: int, metric: mx.metric.EvalMetric) -> None:  # epoch from 1
        if batch % self.every:
            return
        speed = self.every * self.batch_size / (time.time() - self.tic)
        values = "".join(f"\t{name}={value:f}" for name, value in metric.get_name_value())
        logging.info("Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec%s", epoch, batch, speed, values)
        metric.reset_local()
        self.tic = time.time()


def evaluate(mod: mx.mod.Module, images: np.ndarray, labels: np.ndarray, hp: Hyperparams,
             readings: list | None = None) -> dict[str, float]:
    """Accuracy and mean CTC loss over every one of `images` (a last partial batch is padded; the
    padding is not counted); `readings`, if given, is refilled with every (greedy reading, label)."""
    loss = ctc_metrics.CtcLoss()
    correct = 0
    if readings is not None:
        readings.clear()
    for start in range(0, len(images), hp.batch_size):
        chunk, truth = images[start:start + hp.batch_size], labels[start:start + hp.batch_size]
        valid = len(chunk)
        padded, padded_labels = np.resize(chunk, (hp.batch_size, *chunk.shape[1:])), np.resize(
            truth, (hp.batch_size, truth.shape[1]))
        mod.forward(mx.io.DataBatch(data=[mx.nd.array(to_float(padded))], label=[mx.nd.array(padded_labels)]),
                    is_train=False)
        outputs = [output.asnumpy() for output in mod.get_outputs()]
        softmax = outputs[0].reshape(-1, hp.batch_size, outputs[0].shape[-1])[:, :valid]
        softmax = softmax.reshape(-1, softmax.shape[-1])
        preds = [softmax] + ([outputs[1][:valid]] if len(outputs) > 1 else [])
        loss.update([mx.nd.array(truth)], [mx.nd.array(pred) for pred in preds])
        correct += round(ctc_metrics.accuracy(truth, softmax) * valid)
        if readings is not None:
            readings += [(hp.text(read), hp.text(ctc_metrics.remove_blank(row.tolist())))
                         for read, row in zip(ctc_metrics.decode(softmax, valid), truth, strict=True)]
    return {"accuracy": correct / len(images), "loss": loss.get()[1]}


def fit(mod: mx.mod.Module, train_iter: OCRIter, val_iter, hp: Hyperparams, prefix: str | None,
        begin_epoch: int, save_states: bool = True, options: dict | None = None, patience: int = 0,
        keep_epochs: int = 0, validation_images: int = 0) -> list:
    """The example's training loop (Module.fit's): log and validate every epoch and, unless `prefix`
    is None, write the checkpoint (its meta file with the run's `options`), the history and its curves.
    `val_iter` is an iterator to score, or a function that returns the validation scores. Epochs are
    numbered from 1 in the log as in the file names; returns the history. With `patience`, the run
    stops early (early_stopping.py; `validation_images` says how many images validate); with
    `keep_epochs`, only the last epochs this run wrote and the best keep their files."""
    metric = mx.metric.CompositeEvalMetric([mx.metric.np(ctc_metrics.accuracy, allow_extra_outputs=True),
                                            ctc_metrics.CtcLoss()])
    log_batch = BatchLogger(hp.batch_size, LOG_EVERY)
    history = training_curves.load(prefix, begin_epoch) if prefix is not None else []
    samples, seconds = (history[-1].samples, history[-1].seconds) if history else (0, 0.0)
    started = time.time()
    written: list[int] = []  # the epochs this run saved
    for epoch in range(begin_epoch + 1, hp.num_epoch + 1):
        tic = time.time()
        metric.reset()
        train_iter.reset()
        log_batch.tic = tic
        for batch_number, batch in enumerate(train_iter, 1):
            mod.forward_backward(batch)
            mod.update()
            mod.update_metric(metric, batch.label)
            loss = dict(metric.get_global_name_value())["loss"]
            if not math.isfinite(loss):
                raise Diverged(f"the training loss became {loss} at epoch {epoch}, batch {batch_number} (a learning "
                               f"rate too high for this network? --learning_rate {hp.learning_rate}): stopped "
                               "before saving")
            log_batch(epoch, batch_number, metric)
        train_scores = dict(metric.get_global_name_value())
        for name, value in train_scores.items():
            logging.info("Epoch[%d] Train-%s=%f", epoch, name, value)
        logging.info("Epoch[%d] Time cost=%.3f", epoch, time.time() - tic)
        samples += train_iter.num_batches * hp.batch_size
        seconds += time.time() - tic
        if prefix is not None:
            arg_params, aux_params = mod.get_params()
            broken = [name for name, value in {**arg_params, **aux_params}.items()
                      if not np.isfinite(value.asnumpy()).all()]
            if broken:
                raise Diverged(f"the weights of {broken[0]} are no longer finite at the end of epoch {epoch} (a "
                               f"learning rate too high? --learning_rate {hp.learning_rate}): stopped before saving")
            checkpoint.save(prefix, epoch, mod.symbol, arg_params, aux_params, hp,
                            (lambda path: checkpoint.save_optimizer_states(updater_of(mod), path))
                            if save_states else None, options)
        val_scores = val_iter() if callable(val_iter) else dict(mod.score(val_iter, metric))
        for name, value in val_scores.items():
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        history.append(training_curves.EpochRecord(
            epoch, samples, seconds, train_scores["accuracy"], train_scores["loss"],
            val_scores["accuracy"], val_scores["loss"]))
        if prefix is not None:
            training_curves.save(prefix, history)
            written.append(epoch)
            chosen = early_stopping.chosen(history, validation_images)
            for old in early_stopping.epochs_to_remove(written, chosen.epoch, keep_epochs):
                checkpoint.remove_epoch(prefix, old)
                written.remove(old)
        left = (time.time() - started) / (epoch - begin_epoch) * (hp.num_epoch - epoch)
        logging.info("Epoch[%d] done: epoch %d/%d, about %s left", epoch, epoch, hp.num_epoch, duration(left))
        reason = early_stopping.stop_reason(history, patience, validation_images) if epoch < hp.num_epoch else None
        if reason is not None:
            top = early_stopping.best(history)
            logging.info("Stopped early after epoch %d of %d: %s; the best epoch is %d (validation accuracy %.4f)",
                         epoch, hp.num_epoch, reason, top.epoch, top.val_accuracy)
            break
    return history


def duration(seconds: float) -> str:
    """`1 h 05 min`, `12 min`, `40 s`."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{round(seconds / 60)} min" if seconds >= 60 else f"{round(seconds)} s"


def optimizer_params(hp: Hyperparams) -> dict:
    """MXNet optimizer settings; Module scales gradients by 1 / batch_size (a mean loss)."""
    params = {"learning_rate": hp.learning_rate, "wd": hp.wd}
    if hp.optimizer == "sgd":
        params["momentum"] = hp.momentum
    if hp.clip_gradient:
        params["clip_gradient"] = hp.clip_gradient
    if hp.lr_schedule == "cosine":
        updates = hp.num_epoch * (hp.train_epoch_size // hp.batch_size)
        warmup = min(WARMUP_UPDATES, updates // 10)
        params["lr_scheduler"] = mx.lr_scheduler.CosineScheduler(
            max_update=updates, base_lr=hp.learning_rate, final_lr=hp.learning_rate * hyperparameters.FINAL_LR_FRACTION,
            warmup_steps=warmup)
    return params


def build_module(args: argparse.Namespace, hp: Hyperparams, kv: "mx.kv.KVStore | str",
                 start: tuple[dict, dict] | None = None) -> mx.mod.Module:
    """The bound Module with fresh weights, the weights of `start` (--finetune: arg and aux params,
    fitted), or checkpoint `--load_epoch` and its optimizer state."""
    mod = mx.mod.Module(lstm_ocr(hp), data_names=["data"], label_names=["label"], context=contexts(args))
    provide_data, provide_label = data_descs(hp)
    mod.bind(data_shapes=provide_data, label_shapes=provide_label)
    initializer = mx.init.Xavier(factor_type="in", magnitude=2.34)
    if not args.load_epoch:
        fresh = initial_params(hp, initializer)
        if start is not None:
            mod.init_params(initializer, arg_params=fresh | start[0], aux_params=start[1], allow_missing=True)
            logging.info("Fine-tuning from %s (%s network); the optimizer starts afresh", args.finetune, hp.network)
        else:
            mod.init_params(initializer, arg_params=fresh, allow_missing=True)
        mod.init_optimizer(kvstore=kv, optimizer=hp.optimizer, optimizer_params=optimizer_params(hp))
        return mod
    _, arg_params, aux_params = checkpoint.load(args.prefix, args.load_epoch)
    if checkpoint.network_of(arg_params) != hp.network:
        raise InputError(f"checkpoint {args.prefix} epoch {args.load_epoch} is a {checkpoint.network_of(arg_params)} "
                         f"network: resume with --network {checkpoint.network_of(arg_params)}")
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


def folder_source(args: argparse.Namespace, hp: Hyperparams, plan: FolderPlan) -> FolderSource:
    """The images for the workers to decode: the training ones, then the held-out ones."""
    paths = [path for path, _ in plan.items]
    labels = np.stack([hp.encode(text) for _, text in plan.items])
    train = np.arange(len(paths)) < len(plan.train)
    return FolderSource(paths, labels, train, augment=bool(args.augment), synthetic=args.synthetic)


def check_decoded(args: argparse.Namespace, data: MPData, source: FolderSource) -> np.ndarray:
    """After the workers decoded the folder: InputError naming unreadable images (unless --skip_bad,
    which logs their count); the indices of the held-out images that were read."""
    bad = data.decode()
    if bad and not args.skip_bad:
        raise InputError(f"unreadable images (pass --skip_bad to train without them): "
                         f"{labelled_data.name_some([bad[index] for index in sorted(bad)])}")
    if bad:
        logging.warning("Skipped %d unreadable images (--skip_bad), for example: %s", len(bad), bad[min(bad)])
    read = np.array([index not in bad for index in range(len(source.paths))])
    for side, mask in (("training", source.train), ("validation", ~source.train)):
        if not (read & mask).any():
            raise InputError(f"no readable {side} image is left")
    return np.flatnonzero(read & ~source.train)


def train(args: argparse.Namespace, hp: Hyperparams, fonts: list[str], plan: FolderPlan | None = None,
          start: tuple[dict, dict] | None = None, store: "captcha_store.Store | None" = None) -> None:
    """Start the data workers, build the module, and fit; the workers are always stopped.

    With a folder (`plan`), the workers first decode every image; unreadable ones stop the run here,
    before the prefix is claimed or any training starts. Distributed, every worker draws its own data
    (seeded by its rank), the servers hold the weights and the optimizer (so no .states file), and
    only rank 0 writes checkpoints.
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
    block_size = BLOCK_SIZE if args.pool_size or store is not None else hp.batch_size
    pool_blocks = max(1, min(args.pool_size, hp.train_epoch_size) // block_size)  # no bigger than an epoch
    if store is not None:
        pool_blocks = 1  # the workers draw only the validation set
    source = folder_source(args, hp, plan) if plan is not None else None
    with MPData(args.num_proc, fonts, hp, block_size, pool_blocks, data_seed(args.seed, rank), source,
                args.style) as data:
        if source is not None:
            logging.info("Decoding %d images with %d processes", len(source.paths), args.num_proc)
            held_out = check_decoded(args, data, source)
        if rank == 0:
            claim_prefix(args)
        mod = build_module(args, hp, kv, start)
        if source is not None:
            data.release()
            images, labels = data.folder.images[held_out].copy(), data.folder.labels[held_out].copy()
            readings: list[tuple[str, str]] = []
            val_iter = lambda: evaluate(mod, images, labels, hp, readings)  # noqa: E731
        else:
            logging.info("Generating %d validation samples with %d processes", hp.eval_epoch_size, args.num_proc)
            blocks = [data.take_block() for _ in range(-(-hp.eval_epoch_size // block_size))]
            images = np.concatenate([b[0] for b in blocks])[:hp.eval_epoch_size]
            labels = np.concatenate([b[1] for b in blocks])[:hp.eval_epoch_size]
            val_iter = fixed_iter(images, labels, hp)

        if store is not None:
            data.close()  # every training sample comes from the store: the cores are the trainer's
            sampler = captcha_store.StoreSampler(store, data_seed(args.seed, rank))
            logging.info("Training on the %d captchas of the store %s", len(store), args.store)
        elif args.pool_size:
            logging.info("Filling the training pool with %d samples", pool_blocks * block_size)
            data.fill()

        def next_batch(batch_size: int):
            if store is not None:
                return sampler.sample(batch_size)
            return data.sample(batch_size) if args.pool_size else data.take_block()

        train_iter = OCRIter(hp.train_epoch_size, hp, next_batch)
        patience = 0 if distributed else patience_of(args)
        validation_images = len(held_out) if source is not None else hp.eval_epoch_size
        history = fit(mod, train_iter, val_iter, hp, args.prefix if rank == 0 else None, args.load_epoch,
                      save_states=not distributed, options={name: getattr(args, name) for name in OPTION_DEFAULTS},
                      patience=patience, keep_epochs=args.keep_epochs, validation_images=validation_images)
        if distributed:
            logging.info("Parameters sha256=%s", checkpoint.params_digest(mod.get_params()[0]))
        if rank == 0:
            if source is not None:
                summarize(hp, validation_images, readings)
            print(reading_command(args, early_stopping.chosen(history, validation_images)), flush=True)


def summarize(hp: Hyperparams, validation_images: int, readings: list[tuple[str, str]]) -> None:
    """What the last validation says beyond its accuracy: misreads mostly of letter case, too few images."""
    advice = ("the model tells upper from lower case poorly; if the site ignores case, fine-tune with --case fold "
              "(--finetune auto starts from alnum, which folds case)")
    for note in (diagnosis.case_note(readings, advice),
                 diagnosis.small_set(validation_images, "Validation holds", SMALL_VALIDATION_ADVICE)):
        if note:
            logging.warning("%s", note)


def reading_command(args: argparse.Namespace, best: "training_curves.EpochRecord") -> str:
    """The command that reads with the best epoch, and what it scored on the validation set."""
    target = args.val_dir or "IMAGE_OR_FOLDER"
    return (f"Read with: python lstm_ocr_infer.py --prefix {args.prefix} --epoch {best.epoch} {target}  "
            f"(validation accuracy {best.val_accuracy:.4f} after {best.samples} samples)")


def last_checkpoint(prefix: str) -> str:
    """The last params file saved under `prefix`, or `none`."""
    epochs = checkpoint.saved_epochs(prefix)
    return checkpoint.params_path(prefix, epochs[-1]) if epochs else "none"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if adapt.wanted(argv):
        adapt.run(argv)
        return
    run = resolve(argv)
    args, hp, plan = run.args, run.hp, run.plan
    logging.info("Alphabet %r, texts of %d to %d characters; %d epochs of %d samples, %s network",
                 hp.chars, hp.min_len, hp.max_len, hp.num_epoch, hp.train_epoch_size, hp.network)
    if plan is not None and args.font_path and not args.synthetic:
        logging.warning("The font path %s is not used: with --train_dir, fonts draw only --synthetic captchas",
                        args.font_path)
    fitted = fitted_params(run.start, hp) if run.start is not None else None
    if run.start is not None and hp.chars != run.start.hp.chars:
        logging.info("The alphabet %r differs from the checkpoint's %r: every layer but pred_fc is kept, pred_fc "
                     "starts fresh", hp.chars, run.start.hp.chars)
    stop_on_signals()
    try:
        train(args, hp, run.fonts, plan, fitted, run.store)
    except Interrupted as signal_name:
        sys.stderr.write(f"stopped by {signal_name}; last checkpoint: {last_checkpoint(args.prefix)}\n")
        sys.exit(130)
    except WorkerDied as error:
        exit_with(error, code=1)
    except Diverged as error:
        exit_with(f"{error}; last checkpoint: {last_checkpoint(args.prefix)}", code=1)


def command() -> None:
    """`lstm-ocr-train` and the root script: main() with one `error:` line for a refusal (run_main)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
