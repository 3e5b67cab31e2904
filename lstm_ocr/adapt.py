"""Learn a site's captchas from unlabelled images: rounds of self-training (`lstm_ocr_train.py
--unlabelled_dir DIR`).

    python lstm_ocr_train.py --unlabelled_dir site/ --finetune alnum --prefix site/ocr
    python lstm_ocr_train.py --unlabelled_dir site/ --allowed 0123456789 --length 4 --val_dir site_val/

Each round reads the folder with the current model, keeps the readings it trusts (confidence at least
--min_confidence, within --allowed/--length) as labels of a work folder (`PREFIX-unlabelled/roundK`,
with a labels.csv; --train_dir's labelled images are copied beside them), and fine-tunes the current
model on it with the training script (one subprocess a round: its own data workers, logs and
checkpoints, `PREFIX-roundK`). It stops once the estimate stops rising; the model it names at the end is
the round with the best estimate, the starting model if no round beat the start's.

The estimate needs no labels: the mean confidence of the current model's readings (a failed reading
counts 0) on a fixed share (ESTIMATE_SHARE, chosen by a hash of each file's name) of the unlabelled
images that is never trained on. A reading's confidence is the probability the model gives its whole
text (docs/confidence.md), so on a well calibrated model the mean is its expected accuracy. Its bias:
self-training makes the model surer of what it reads, right or wrong, so the estimate tends to rise
faster than the accuracy and to overstate it; the held-out share keeps that to the model's habits rather
than the memorised images. `--val_dir` gives the true accuracy beside it (never trained on), to judge.
"""

import argparse
import csv
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from lstm_ocr import checkpoint, labelled_data, models
from lstm_ocr.cli import ArgumentParser, InputError, check_count
from lstm_ocr.hyperparameters import MAX_UNLABELLED_IMAGES
from lstm_ocr.reader import Constraints, Reader, Reading, parse_length

OPTION = "--unlabelled_dir"
ESTIMATE_SHARE = 0.2  # of the unlabelled images, set aside to estimate accuracy; never trained on
ESTIMATE_SEED = 32  # the hash that picks the share (fixed: the same folder always splits the same way)
UNREADABLE_LOOK = 0.05  # a start whose estimate is below this cannot read the look: nothing is trained
DEFAULT_MIN_CONFIDENCE = 0.9  # readings trusted as labels
DEFAULT_ROUNDS = 5
MAX_ROUNDS = 100
MIN_TRUSTED = 10  # trusted readings a round needs to train on
READ_WITH = re.compile(r"--prefix (\S+) --epoch (\d+)")  # the training script's last line


def build_parser() -> ArgumentParser:
    """This module's options (no abbreviations: the others go to the training command)."""
    parser = ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument(OPTION, dest="unlabelled_dir", required=True, metavar="DIR",
                        help="a folder of unlabelled captcha images of one look")
    parser.add_argument("--finetune", default="auto", metavar="PREFIX[:EPOCH]|auto",
                        help="the starting model (a checkpoint or a shipped model); auto: general if --allowed is "
                             "digits only, else alnum [default auto]")
    parser.add_argument("--prefix", default="ocr", help="prefix of the rounds' checkpoints (PREFIX-roundK) and "
                                                        "of the work folder PREFIX-unlabelled [default ocr]")
    parser.add_argument("--allowed", metavar="CHARS", help="readings use only these characters")
    parser.add_argument("--length", metavar="N|MIN-MAX", help="readings have this length (or range)")
    parser.add_argument("--min_confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="X",
                        help=f"readings trusted as labels [default {DEFAULT_MIN_CONFIDENCE}]")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"at most [default {DEFAULT_ROUNDS}]")
    parser.add_argument("--train_dir", help="labelled images trained on beside the trusted readings")
    parser.add_argument("--val_dir", help="labelled images whose accuracy is logged each round, never trained on")
    return parser


def wanted(argv: list[str]) -> bool:
    """Whether a training command line asks for self-training."""
    return any(arg == OPTION or arg.startswith(OPTION + "=") for arg in argv)


@dataclass
class Model:
    """A model a round reads with: the name the training script and Reader take, its epoch (None: the latest)."""

    prefix: str
    epoch: int | None = None

    @property
    def finetune(self) -> str:
        return self.prefix if self.epoch is None else f"{self.prefix}:{self.epoch}"


def unlabelled_images(folder: str) -> list[str]:
    """The image files of `folder`, sorted; InputError for a folder that is missing, a file, or has none."""
    if not os.path.isdir(folder):
        raise InputError(f"{OPTION} {folder} does not exist" if not os.path.exists(folder) else
                         f"{OPTION} {folder} is a file; give a folder of captcha images")
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise InputError(f"cannot list {OPTION} {folder}: {error.strerror}") from None
    images = sorted(os.path.join(folder, name) for name in names
                    if labelled_data.is_image_name(name) and os.path.isfile(os.path.join(folder, name)))
    if len(images) < 2:
        raise InputError(f"{OPTION} {folder} has {len(images)} image files (by extension: .png, .jpg, ...); "
                         "self-training needs many")
    if len(images) > MAX_UNLABELLED_IMAGES:
        raise InputError(f"{OPTION} {folder} has {len(images)} images, over the limit of {MAX_UNLABELLED_IMAGES}")
    return images


def split(images: list[str]) -> tuple[list[str], list[str]]:
    """(to label and train on, to estimate on): a fixed ESTIMATE_SHARE by a hash of each file's name."""
    train, held = labelled_data.holdout_split([(path, "") for path in images], ESTIMATE_SHARE, ESTIMATE_SEED)
    return [path for path, _ in train], [path for path, _ in held]


def estimate(readings: list[Reading]) -> float:
    """The mean confidence of the readings, a failed one counting 0 (the module's docstring says why)."""
    return sum(r.confidence if r.error is None else 0.0 for r in readings) / len(readings)


def trusted(paths: list[str], readings: list[Reading], threshold: float) -> list[tuple[str, str]]:
    """(path, text) of the readings trusted as labels (constraints hold already): those with confidence
    at least `threshold`, and then, character by character, the most confident of the others that hold
    a character until each character is trusted in as large a share of the readings that hold it as
    the readings are overall (class-balanced self-training). Without the balance, a character the
    model reads less surely than a look-alike (`l` beside `1`) would hardly ever be trusted while the
    look-alike's misreadings are: each round would teach the look-alike, until the character is gone."""
    read = [index for index, r in enumerate(readings) if r.error is None and r.text]
    chosen = {index for index in read if readings[index].confidence >= threshold}
    share = len(chosen) / len(read) if read else 0.0
    for char in sorted({c for index in read for c in readings[index].text}):
        holding = sorted((index for index in read if char in readings[index].text),
                         key=lambda index: -readings[index].confidence)
        missing = math.ceil(share * len(holding)) - sum(index in chosen for index in holding)
        chosen.update([index for index in holding if index not in chosen][:max(0, missing)])
    return [(paths[index], readings[index].text) for index in sorted(chosen)]


def accuracy(reader: Reader, items: list[tuple[str, str]], constraints: Constraints) -> float:
    """The share of labelled `items` read right (labels in the model's case)."""
    readings = reader.read_many([path for path, _ in items], constraints.allowed, constraints.lengths)
    right = sum(r.error is None and r.text == reader.hp.fold(text) for (_, text), r in zip(items, readings,
                                                                                            strict=True))
    return right / len(items)


def write_work_folder(folder: str, items: list[tuple[str, str]]) -> None:
    """Copies of the images of `items` in a fresh `folder`, and its labels.csv (file,text)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, labelled_data.LABELS_CSV), "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(labelled_data.HEADER)
        for index, (path, text) in enumerate(items):
            name = f"{index:06d}{os.path.splitext(path)[1].lower()}"
            shutil.copyfile(path, os.path.join(folder, name))
            writer.writerow((name, text))


def train_round(passed: list[str], work: str, start: Model, prefix: str) -> Model:
    """Fine-tune `start` on the work folder with the training script, its whole schedule (no early
    stop: the folder's own held-out tenth is trusted readings, which the model reads perfectly from the
    first epoch, so it cannot tell one epoch from another); its last epoch."""
    patience = [] if any(arg.startswith("--patience") for arg in passed) else ["--patience", "0"]
    command = [sys.executable, "-m", "lstm_ocr.train", *passed, *patience, "--train_dir", work,
               "--finetune", start.finetune, "--prefix", prefix, "--overwrite"]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise InputError(f"the training of {prefix} failed (exit {result.returncode}; its log is above)")
    if READ_WITH.search(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "") is None:
        raise InputError(f"the training of {prefix} did not end with its reading command")
    return Model(prefix, checkpoint.saved_epochs(prefix)[-1])


def starting_model(spec: str) -> Model:
    """The model of `--finetune PREFIX[:EPOCH]`, read as the training script reads it."""
    return Model(*checkpoint.finetune_spec(spec))


def auto_start(allowed: str | None) -> str:
    return "general" if allowed and set(allowed) <= set("0123456789") else "alnum"


def check(args: argparse.Namespace) -> None:
    if not 0 < args.min_confidence <= 1:
        raise InputError(f"--min_confidence must be above 0 and at most 1, got {args.min_confidence}")
    check_count("rounds", args.rounds, MAX_ROUNDS)
    parse_length(args.length)


def check_nothing_replaced(prefix: str, rounds: int, passed: list[str]) -> None:
    """InputError if an earlier run's rounds (PREFIX-roundK checkpoints, the PREFIX-unlabelled work
    folder) would be replaced, unless --overwrite was given: nothing already saved is lost silently."""
    if "--overwrite" in passed:
        return
    earlier = [f"{prefix}-round{k}" for k in range(1, rounds + 1) if models.has_checkpoint(f"{prefix}-round{k}")]
    if os.path.lexists(f"{prefix}-unlabelled"):
        earlier.append(f"{prefix}-unlabelled")
    if earlier:
        raise InputError(f"{', '.join(earlier)} already exist from an earlier run; give another --prefix, or "
                         "--overwrite to replace them")


def run(argv: list[str]) -> Model:
    """The self-training rounds of a training command line; options other than this module's go to
    each round's training command (--num_epoch, --num_proc, --seed, ...). The model it names at the end."""
    args, passed = build_parser().parse_known_args(argv)
    check(args)
    from lstm_ocr import train  # (train imports this module) the other options are the training command's

    train.build_parser().parse_args(passed)  # an unknown or malformed one is one error line, before any work
    images = unlabelled_images(args.unlabelled_dir)
    labelled = labelled_data.folder_items(args.train_dir) if args.train_dir else []
    val = labelled_data.folder_items(args.val_dir) if args.val_dir else []
    if args.train_dir and args.val_dir and labelled_data.shared_files([p for p, _ in labelled], [p for p, _ in val]):
        raise InputError("--val_dir shares files with --train_dir: it must never be trained on")
    if val and labelled_data.shared_files(images, [p for p, _ in val]):
        raise InputError(f"--val_dir shares files with {OPTION}: it must never be trained on")
    check_nothing_replaced(args.prefix, args.rounds, passed)
    to_label, held = split(images)
    model = starting_model(auto_start(args.allowed) if args.finetune == "auto" else args.finetune)
    best, best_estimate, start_estimate, used = model, None, None, ""
    for round_number in range(args.rounds + 1):
        reader = Reader(model.prefix, model.epoch)
        constraints = reader.constraints(args.allowed, args.length)
        score = estimate(list(reader.read_each(held, constraints.allowed, constraints.lengths)))
        checked = f"; --val_dir accuracy {accuracy(reader, val, constraints):.4f} ({len(val)} images)" if val else ""
        if start_estimate is None:
            start_estimate = score
            if score < UNREADABLE_LOOK:  # refused before a line is logged: the one line says it all
                raise InputError(f"cannot read this look: {reader.name} reads {args.unlabelled_dir} with a mean "
                                 f"confidence of {score:.4f}, below {UNREADABLE_LOOK}; nothing was trained "
                                 "(label some images and fine-tune with --train_dir)")
        logging.info("Round %d: %s%s; estimate %.4f (mean confidence on %d held-out unlabelled images)%s",
                     round_number, used, reader.name, score, len(held), checked)
        if best_estimate is not None and score <= best_estimate:
            logging.info("The estimate stopped rising (%.4f, best %.4f): stopping", score, best_estimate)
            break
        best, best_estimate = model, score
        if round_number == args.rounds:
            break
        items = trusted(to_label, list(reader.read_each(to_label, constraints.allowed, constraints.lengths)),
                        args.min_confidence)
        if len(items) < MIN_TRUSTED:
            logging.info("Only %d of %d readings have confidence >= %.2f, fewer than the %d a round needs: stopping",
                         len(items), len(to_label), args.min_confidence, MIN_TRUSTED)
            break
        used = (f"trained on {len(items)} of {len(to_label)} unlabelled images (confidence >= "
                f"{args.min_confidence:.2f}) and {len(labelled)} labelled: ")
        work = os.path.join(f"{args.prefix}-unlabelled", f"round{round_number + 1}")
        if round_number == 0:  # an earlier run's work folders (--overwrite) go: none of its rounds is left behind
            shutil.rmtree(os.path.dirname(work), ignore_errors=True)
        write_work_folder(work, items + labelled)
        model = train_round(passed, work, model, f"{args.prefix}-round{round_number + 1}")
    target = args.val_dir or "IMAGE_OR_FOLDER"
    epoch = f" --epoch {best.epoch}" if best.epoch is not None else ""
    print(f"Read with: python lstm_ocr_infer.py --prefix {best.prefix}{epoch} {target}  "
          f"(estimate {best_estimate:.4f}, start {start_estimate:.4f})", flush=True)
    return best
