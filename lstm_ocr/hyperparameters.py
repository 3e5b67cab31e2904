"""Every constant of the network and its training, in one place, each overridable from the CLI."""

import argparse
import math
from dataclasses import dataclass, fields

import numpy as np

from lstm_ocr.cli import InputError

DIGITS = "0123456789"
BLANK = 0  # CTC blank class; character i of the alphabet is class i + 1
RENDER_SCALE = 2  # captchas are drawn at twice the network's image size, then shrunk
# The crnn's convolutional front end: (channels, (height, width) pooling) per block, of which a
# model uses the first --crnn_blocks. Each block halves the height; the width pooling multiplies to
# 4 image columns per output step. --crnn_first_channels overrides the first block's channels.
CRNN_BLOCKS = ((32, (2, 2)), (64, (2, 2)), (128, (2, 1)))
# Front ends by name (`--crnn_shape`): `wide` is CRNN_BLOCKS (every model shipped before); `compact`
# has half the channels and pools the last block's rows by 4, so that the LSTM reads 4x fewer values a
# step (64 x 2 rows at a 36-row input, against 128 x 4): about 2x the training speed of `wide` on 2 CPU
# cores, but in its one comparison it left the CTC plateau 3 epochs later (docs/letters-speed.md).
CRNN_SHAPES = {"wide": CRNN_BLOCKS, "compact": ((16, (2, 2)), (32, (2, 2)), (64, (4, 1)))}
# The networks of lstm.py and their training losses; the fused LSTM keeps its weights in one vector of
# this name (which is how a checkpoint without `network` in its meta file is known as fused).
NETWORKS = ("fused", "unrolled", "crnn")
LOSSES = ("ctc", "warpctc")
FUSED_PARAMS = "lstm_parameters"
CRNN_FIRST_CONV = "c0_conv_weight"  # the crnn's first convolution: only a crnn checkpoint has it
# Captcha styles (`--style`): the example's look (the captcha package's), or the varied family of
# styles.py: image sizes from VARIED_MIN_SIZE to VARIED_MAX_SIZE (width, height), a share of
# images in the example's look, a share inverted (light text on dark). `arithmetic` draws the
# expressions of arithmetic.py (`7+3=?`) in the varied style's looks, in its own alphabet and lengths.
STYLES = ("example", "varied", "arithmetic")
VARIED_MIN_SIZE = (50, 20)
VARIED_MAX_SIZE = (300, 100)
VARIED_EXAMPLE_SHARE = 0.45
VARIED_INVERT_SHARE = 0.15
TEXT_FIELDS = ("chars", "min_len", "max_len", "case")  # which texts a model reads; the generator's options too
# Letter case (`--case`): `keep` draws every text as labelled; `fold` draws each letter in upper or
# lower case at random and labels it in the alphabet's case, so the model reads case-insensitively.
CASES = ("keep", "fold")
ALIASES = {"max_len": ["--num_label"]}  # the example's name for the label length
NON_NEGATIVE = ("momentum", "wd", "clip_gradient")  # 0 turns these off; every other number must be positive
# The most each count or size may be: a command line, a meta file or a model's metadata asking for more
# is refused before anything is allocated (a bound share of the machine).
UPPER_LIMITS = {"batch_size": 4096, "train_epoch_size": 100_000_000, "eval_epoch_size": 10_000_000,
                "num_epoch": 100_000, "seq_length": 2048, "image_height": 512, "num_hidden": 4096,
                "num_lstm_layer": 16, "crnn_first_channels": 1024, "min_len": 256, "max_len": 256}
MAX_CHARS = 4096  # characters of an alphabet
OPTIMIZERS = ("sgd", "adam")
# How an image of any size becomes the network's seq_length x image_height input: `stretch` resizes it
# (the example's way); `pad` scales it to fit, keeping its aspect ratio, and pads with its border's gray.
FITS = ("stretch", "pad")
LR_SCHEDULES = ("constant", "cosine")  # cosine: from --learning_rate down to FINAL_LR_FRACTION of it
FINAL_LR_FRACTION = 0.05
# hyperparameters whose option takes one of a few values
CHOICES = {"optimizer": OPTIMIZERS, "fit": FITS, "lr_schedule": LR_SCHEDULES, "case": CASES, "network": NETWORKS,
           "loss": LOSSES, "crnn_shape": tuple(CRNN_SHAPES)}
# Limits on what a user hands in: an image's encoded bytes and decoded pixels (a decompression bomb
# names its size in one line instead of filling the memory).
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 25_000_000
MAX_LABELS_BYTES = 64 * 1024 * 1024  # a labels.csv / labels.tsv
MAX_MODEL_BYTES = 512 * 1024 * 1024  # an ONNX model file handed to inference or the server
MAX_UNLABELLED_IMAGES = 200_000  # images in one --unlabelled_dir (and the service's --collect_unlabelled)
# The HTTP service (lstm_ocr_serve.py): request bodies, images per multipart request, pixels per image
# (a captcha is about 200x70; a small compressed file may still decode to a huge image), connections.
SERVE_MAX_BODY_BYTES = 2 * 1024 * 1024
SERVE_MAX_FILES = 64
SERVE_MAX_PIXELS = 4_000_000
SERVE_MAX_CONNECTIONS = 256
SERVE_IDLE_SECONDS = 5  # a kept-alive connection with no request for this long is closed
SERVE_REQUEST_SECONDS = 10  # a whole request, headers and body, must arrive within this (--request_seconds)
ONNX_FORMAT = "lstm-ocr"  # metadata `format` of the ONNX models `lstm.py --to onnx` writes
MAX_FOLDER_BYTES = 4 * 1024 ** 3  # a folder's images, decoded at the network's input size, in shared memory
# Folders of labelled images (`--train_dir`).
HOLDOUT_FRACTION = 0.1  # held out for validation when there is no --val_dir
HOLDOUT_SEED = 13  # the split is fixed: the same folder always holds out the same files
# Augmentation of folder images at the network's input size (80x30 by default), in the workers:
# every sample gets a small affine jitter; blur, contrast and noise each come with their probability.
AUGMENT = {"rotate_degrees": 3.0, "scale": 0.08, "shift_columns": 3.0, "shift_rows": 1.5,
           "blur_probability": 0.3, "blur_sigma": (0.3, 0.8),
           "contrast_probability": 0.5, "contrast": (0.7, 1.3), "brightness": 20.0,
           "noise_probability": 0.5, "noise_sigma": 8.0}
# Named sets of defaults (`--recipe`); explicit options still override them. "fast" escapes the CTC
# plateau within the first epoch: a convolutional front end, a bidirectional LSTM, Adam. "letters" is
# the fast recipe with the letters model's reading (0-9a-z, case folded, 3-6 characters, a 96x36
# input) and network (the shipped `alnum`'s): the compact front end trains 2x faster but learnt less per
# sample in its one comparison (docs/letters-speed.md), so it is an option, not this recipe's.
FAST = {"network": "crnn", "optimizer": "adam", "learning_rate": 0.001, "batch_size": 64,
        "num_lstm_layer": 1, "train_epoch_size": 19200, "num_epoch": 12}
RECIPES = {
    "example": {},
    "fast": FAST,
    "letters": FAST | {"chars": DIGITS + "abcdefghijklmnopqrstuvwxyz", "case": "fold", "min_len": 3, "max_len": 6,
                       "fit": "pad", "crnn_blocks": 3, "crnn_first_channels": 16,
                       "seq_length": 96, "image_height": 36, "num_hidden": 200, "eval_epoch_size": 2048,
                       "lr_schedule": "cosine"},
}


def _other_case(char: str) -> str:
    """The character in its other case (itself if it has none of one character)."""
    other = char.swapcase()
    return other if len(other) == 1 else char


@dataclass
class Hyperparams:
    """The example's defaults; `seq_length` x `image_height` is the network's image (width x height)."""

    network: str = "fused"
    loss: str = "ctc"
    batch_size: int = 128
    train_epoch_size: int = 30000
    eval_epoch_size: int = 3000
    num_epoch: int = 100
    optimizer: str = "sgd"
    learning_rate: float = 0.001
    lr_schedule: str = "constant"
    momentum: float = 0.9
    wd: float = 0.00001
    clip_gradient: float = 0.0
    seq_length: int = 80
    image_height: int = 30
    num_hidden: int = 100
    num_lstm_layer: int = 2
    crnn_blocks: int = 2
    crnn_first_channels: int = CRNN_BLOCKS[0][0]
    crnn_shape: str = "wide"
    min_len: int = 3
    max_len: int = 4
    chars: str = DIGITS
    case: str = "keep"
    fit: str = "stretch"

    @property
    def num_classes(self) -> int:
        """Output classes: one per character plus the CTC blank."""
        return len(self.chars) + 1

    @property
    def num_label(self) -> int:
        """Label length: the longest text, shorter ones padded with the blank."""
        return self.max_len

    @property
    def digits_only(self) -> bool:
        """An alphabet of digits alone: texts print as the example's list of ints, `[0, 0, 8, 9]`."""
        return set(self.chars) <= set(DIGITS)

    @property
    def drawn_chars(self) -> str:
        """Every character a captcha of this alphabet may show: with `case` fold, both cases of its letters."""
        if self.case != "fold":
            return self.chars
        return self.chars + "".join(c.swapcase() for c in self.chars if _other_case(c) not in self.chars)

    def fold(self, text: str) -> str:
        """`text` in the alphabet's case (`case` fold), else unchanged."""
        if self.case != "fold":
            return text
        return "".join(_other_case(c) if c not in self.chars and _other_case(c) in self.chars else c for c in text)

    def encode(self, text: str) -> np.ndarray:
        """Text to its label: class indices (character i of the alphabet is class i + 1), padded with the blank."""
        label = np.full(self.num_label, BLANK, dtype=np.int32)
        label[:len(text)] = [self.chars.index(c) + 1 for c in text]
        return label

    def text(self, classes: list[int]) -> str:
        """Class indices (characters, no blanks) to text."""
        return "".join(self.chars[c - 1] for c in classes)

    def classes(self, chars: str) -> list[int]:
        """The classes of some characters of the alphabet."""
        return [self.chars.index(c) + 1 for c in chars]

    @property
    def image_width(self) -> int:
        """Each image column is one time step."""
        return self.seq_length

    def validate(self) -> None:
        """Raise InputError naming the first setting that cannot work."""
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type is float and not math.isfinite(value):
                raise InputError(f"--{field.name} must be a finite number, got {value}")
            if field.name in UPPER_LIMITS and value > UPPER_LIMITS[field.name]:
                raise InputError(f"--{field.name} must be at most {UPPER_LIMITS[field.name]}, got {value}")
            if field.name in NON_NEGATIVE and value < 0:
                raise InputError(f"--{field.name} must not be negative, got {value}")
            if field.type in (int, float) and value <= 0 and field.name not in NON_NEGATIVE:
                raise InputError(f"--{field.name} must be positive, got {value}")
        most_blocks = len(CRNN_SHAPES.get(self.crnn_shape, CRNN_BLOCKS))
        if self.crnn_blocks > most_blocks:
            raise InputError(f"--crnn_blocks must be at most {most_blocks}, got {self.crnn_blocks}")
        if self.min_len > self.max_len:
            raise InputError(f"--min_len {self.min_len} exceeds --max_len {self.max_len}")
        if 2 * self.max_len + 1 > self.seq_length:
            raise InputError(f"--seq_length {self.seq_length} is too short for {self.max_len} characters")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise InputError(f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not self.chars:
            raise InputError("--chars must not be empty")
        if len(self.chars) > MAX_CHARS:
            raise InputError(f"--chars must have at most {MAX_CHARS} characters, got {len(self.chars)}")
        if len(set(self.chars)) != len(self.chars):
            raise InputError(f"--chars has a repeated character: {self.chars!r}")
        both = sorted(c for c in self.chars if c.islower() and c.upper() in self.chars)
        if self.case == "fold" and both:
            raise InputError(f"--case fold reads letters in one case; --chars holds both cases of {''.join(both)!r}")


# Training on a folder of labelled images (`--train_dir`) without --num_epoch, --train_epoch_size or
# --learning_rate: the run sees `passes` times the folder's training images, clamped to
# [min_samples, max_samples], in epochs of one pass over the folder but at least `epoch_min` samples
# (a small folder is seen several times an epoch, so that an epoch is not mostly validation), with
# Adam and a cosine decay of the learning rate to its end. The trainer validates after every epoch and
# stops early once validation is perfect or stops improving (--patience), so these are the most a run
# trains. Fine-tuning (`--finetune`) starts from weights that already read captchas: fewer samples,
# in epochs of about one pass, so that a run stops within a pass of being done. On 2 CPU cores the
# crnn trains 180-300 samples/s (busy to idle): a fine-tune trains at most 24,000 samples (1.5-2.5
# minutes), digits from general stopping after 3,000 (bench/own_data.py measures it).
FOLDER_EPOCH_MIN = 4000
FOLDER_RULES = {
    "finetune": {"learning_rate": 0.001, "passes": 24, "min_samples": 8_000, "max_samples": 24_000,
                 "epoch_min": 1000},
    "scratch": {"learning_rate": 0.001, "passes": 96, "min_samples": 76_800, "max_samples": 192_000,
                "epoch_min": FOLDER_EPOCH_MIN},
}
FOLDER_BATCH_SIZE = 64


def folder_schedule(train_images: int, finetune: bool) -> dict:
    """The defaults of a run on `train_images` labelled images (see FOLDER_RULES)."""
    rule = FOLDER_RULES["finetune" if finetune else "scratch"]
    samples = min(rule["max_samples"], max(rule["min_samples"], rule["passes"] * train_images))
    epoch = FOLDER_BATCH_SIZE * -(-max(train_images, rule["epoch_min"]) // FOLDER_BATCH_SIZE)
    return {"batch_size": FOLDER_BATCH_SIZE, "train_epoch_size": epoch, "num_epoch": -(-samples // epoch),
            "optimizer": "adam", "learning_rate": rule["learning_rate"], "lr_schedule": "cosine"}


def for_recipe(name: str) -> Hyperparams:
    """The hyperparameters a recipe sets."""
    return Hyperparams(**RECIPES[name])


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None,
                  defaults: bool = True) -> None:
    """Add a `--name` option for every hyperparameter (or those in `names`), defaulting to the example's
    value (or, without `defaults`, absent from the parsed arguments unless given)."""
    group = parser.add_argument_group("hyperparameters")
    for field in fields(Hyperparams):
        if names is not None and field.name not in names:
            continue
        group.add_argument(f"--{field.name}", *ALIASES.get(field.name, []), type=field.type,
                           default=field.default if defaults else argparse.SUPPRESS,
                           choices=CHOICES.get(field.name), help=f"[default {field.default}]")


def from_args(args: argparse.Namespace) -> Hyperparams:
    """Collect the hyperparameter options of parsed arguments; those without an option keep their default."""
    return Hyperparams(**{field.name: getattr(args, field.name) for field in fields(Hyperparams)
                          if hasattr(args, field.name)})


def from_saved(saved: object) -> Hyperparams:
    """Hyperparameters from a parsed meta file: every known field, each of its declared type, and valid;
    InputError otherwise (unknown keys are ignored: a newer program may write more)."""
    if not isinstance(saved, dict):
        raise InputError("is not a JSON object of hyperparameters")
    values = {}
    for field in fields(Hyperparams):
        if field.name not in saved:
            continue
        value = saved[field.name]
        if field.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not field.type:
            raise InputError(f"has {field.name}={value!r}, not a {field.type.__name__}")
        values[field.name] = value
    hp = Hyperparams(**values)
    hp.validate()
    return hp
