"""A store of captchas drawn once, at the network's input size, to train on without generator
processes (`lstm_ocr_train.py --store DIR`): on 2 cores the workers that draw captchas during
training take CPU from the trainer; a store is drawn once and reused by every epoch and every run.

    python -m lstm_ocr.captcha_store --recipe letters --style varied --count 200000 --seed 5 --out stores/letters font/

DIR holds `images.npy` (N, width, height) uint8, `labels.npy` (N, max_len) int32 (the training
labels: class indices padded with the blank) and `store.json` (what was drawn: the alphabet, lengths,
case, input size, fit and style, which a run that trains on it must share). Drawing uses the training
run's own worker processes (multiproc_data.py), seeded apart from any run's validation draws.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from lstm_ocr import hyperparameters
from lstm_ocr.captcha_generator import find_fonts
from lstm_ocr.cli import ArgumentParser, InputError, check_count, check_seed, run_main
from lstm_ocr.hyperparameters import RECIPES, STYLES, TEXT_FIELDS, Hyperparams
from lstm_ocr.multiproc_data import MPData

FORMAT = "lstm-ocr-store"
META = "store.json"
IMAGES, LABELS = "images.npy", "labels.npy"
# What a store fixes, and a run that trains on it must share.
STORE_FIELDS = TEXT_FIELDS + ("seq_length", "image_height", "fit")
# A store drawn with --seed S draws with seed S + this, so that it never repeats the validation set
# a training run draws with --seed S (multiproc_data seeds its workers from the seed).
SEED_OFFSET = 7_777_777
BLOCK_SIZE = 32
MAX_COUNT = 10_000_000


@dataclass
class Store:
    """A store's samples (memory-mapped) and what it was drawn with."""

    images: np.ndarray  # (N, width, height) uint8
    labels: np.ndarray  # (N, num_label) int32
    meta: dict

    def __len__(self) -> int:
        return len(self.images)


def draw(folder: str, count: int, fonts: list[str], hp: Hyperparams, style: str, seed: int | None,
         num_proc: int) -> None:
    """Draw `count` captchas with `num_proc` worker processes into a new store `folder` (written under
    a temporary name, then renamed: a stopped run leaves no half store)."""
    partial = folder.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    images = np.lib.format.open_memmap(os.path.join(partial, IMAGES), mode="w+", dtype=np.uint8,
                                       shape=(count, hp.image_width, hp.image_height))
    labels = np.lib.format.open_memmap(os.path.join(partial, LABELS), mode="w+", dtype=np.int32,
                                       shape=(count, hp.num_label))
    tic = time.time()
    with MPData(num_proc, fonts, hp, BLOCK_SIZE, 1, None if seed is None else seed + SEED_OFFSET,
                style=style) as data:
        for start in range(0, count, BLOCK_SIZE):
            block_images, block_labels = data.take_block()
            end = min(count, start + BLOCK_SIZE)
            images[start:end], labels[start:end] = block_images[:end - start], block_labels[:end - start]
            if start // BLOCK_SIZE % 500 == 0:
                logging.info("%d of %d drawn (%.0f a second)", end, count, end / max(time.time() - tic, 1e-9))
    images.flush()
    labels.flush()
    del images, labels
    meta = {"format": FORMAT, "count": count, "style": style, "seed": seed,
            **{name: getattr(hp, name) for name in STORE_FIELDS}}
    with open(os.path.join(partial, META), "w") as file:
        json.dump(meta, file, indent=1)
    os.replace(partial, folder)


def load(folder: str, hp: Hyperparams, style: str) -> Store:
    """The store in `folder`, memory-mapped, checked to hold what a run of `hp` and `style` trains on;
    InputError otherwise (a store is a file a user hands in: its header, shapes and labels are checked)."""
    path = os.path.join(folder, META)
    try:
        with open(path) as file:
            meta = json.load(file)
    except FileNotFoundError:
        raise InputError(f"--store {folder} is not a captcha store (no {META}); draw one with "
                         "python -m lstm_ocr.captcha_store") from None
    except (OSError, ValueError) as error:
        raise InputError(f"--store {folder}: {path} cannot be read ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"--store {folder}: {path} is not a captcha store's description")
    for name in STORE_FIELDS:
        if meta.get(name) != getattr(hp, name):
            raise InputError(f"--store {folder} was drawn with --{name} {meta.get(name)!r}, this run has "
                             f"{getattr(hp, name)!r}: give --{name} {meta.get(name)} or draw another store")
    if meta.get("style") != style:
        raise InputError(f"--store {folder} was drawn in --style {meta.get('style')}, this run validates on "
                         f"--style {style}: give --style {meta.get('style')}")
    try:
        images = np.load(os.path.join(folder, IMAGES), mmap_mode="r", allow_pickle=False)
        labels = np.load(os.path.join(folder, LABELS), allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"--store {folder}: its samples cannot be read ({error})") from None
    count = images.shape[0] if images.ndim else 0
    if (images.dtype != np.uint8 or images.shape != (count, hp.image_width, hp.image_height)
            or labels.dtype != np.int32 or labels.shape != (count, hp.num_label)):
        raise InputError(f"--store {folder}: images {images.dtype} {images.shape} and labels {labels.dtype} "
                         f"{labels.shape} are not {count} samples of ({hp.image_width}, {hp.image_height}) uint8 "
                         f"and ({hp.num_label},) int32")
    if count == 0:
        raise InputError(f"--store {folder} holds no sample")
    if labels.min() < 0 or labels.max() >= hp.num_classes:
        raise InputError(f"--store {folder} has labels outside the {hp.num_classes} classes of its alphabet")
    return Store(images, labels, meta)


class StoreSampler:
    """Batches from a store in a random order, every sample once a pass (like MPData.sample)."""

    def __init__(self, store: Store, seed: int | None = None):
        self.store = store
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)
        self.passes = 0

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        picked = []
        while batch_size:
            if not len(self.order):
                self.order = self.rng.permutation(len(self.store))
                self.passes += 1
            taken, self.order = self.order[:batch_size], self.order[batch_size:]
            picked.append(taken)
            batch_size -= len(taken)
        rows = np.sort(np.concatenate(picked))  # in file order: fewer page faults on a memory map
        self.rng.shuffle(rows)
        return np.asarray(self.store.images[rows]), self.store.labels[rows]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)-15s %(message)s")
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("font_path", help="a .ttf file, or a folder of them")
    parser.add_argument("--out", required=True, help="the store's folder (must not exist yet)")
    parser.add_argument("--count", type=int, required=True, help="captchas to draw")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="example",
                        help="take the alphabet, lengths and input size from this recipe [default example]")
    parser.add_argument("--style", choices=STYLES, default="example", help="as lstm_ocr_train.py [default example]")
    parser.add_argument("--seed", type=int, help="random seed for a reproducible store")
    parser.add_argument("--num_proc", type=int, default=2, help="drawing processes [default 2]")
    hyperparameters.add_arguments(parser, STORE_FIELDS, defaults=False)
    args = parser.parse_args()
    values = {name: value for name, value in RECIPES[args.recipe].items() if name in STORE_FIELDS}
    hp = Hyperparams(**(values | {name: getattr(args, name) for name in STORE_FIELDS if hasattr(args, name)}))
    hp.validate()
    check_seed(args.seed)
    check_count("count", args.count, MAX_COUNT)
    check_count("num_proc", args.num_proc, 4 * (os.cpu_count() or 1))
    if os.path.exists(args.out):
        raise InputError(f"--out {args.out} already exists: a store is never written over; choose a new folder")
    if args.style == "arithmetic":
        raise InputError("--style arithmetic is not stored: train it with its generator processes")
    fonts = find_fonts(args.font_path, hp.drawn_chars)
    tic = time.time()
    draw(args.out, args.count, fonts, hp, args.style, args.seed, args.num_proc)
    size = args.count * hp.image_width * hp.image_height
    print(f"{args.count} captchas ({size / 1e6:.0f} MB) drawn into {args.out} in {time.time() - tic:.0f} s; "
          f"train on them with lstm_ocr_train.py --store {args.out}")


if __name__ == "__main__":
    run_main(main)
