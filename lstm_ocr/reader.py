"""Reading captchas with a trained model: `Reader`, the options that choose the model and constrain the
reading, shared by the scripts that read (lstm_ocr_infer.py, lstm_ocr_serve.py) and by library users.

    from lstm_ocr.reader import Reader
    reader = Reader("general")     # a shipped model (lstm_ocr/models), or a checkpoint PREFIX; or Reader.onnx(FILE)
    reading = reader.read("sample.png")             # a path, bytes, a file object, a uint8 array or a PIL image
    reading.text, reading.confidence, reading.chars
    reader.read("sample.png", allowed="0123456789", length=4)   # what you know about the captcha
    Reader("arith", answer=True).read("sum.png").answer   # 10 for an image of 7+3=?

A reading's text may use only the `allowed` characters (the confidence is then computed over them),
and with `length` (N, or (MIN, MAX)) it is the most probable text of such a length under the CTC
model, not the greedy one cut or padded. A reading whose length lies outside what the model was
trained on says so (`untrained_length`). A reading's `answer` is its text parsed as an arithmetic captcha
(arithmetic.py: `7+3=?` gives 10; None when it does not parse); `Reader(answer=True)` puts it in the
JSON form (`to_dict`).
"""

import argparse
import importlib.util
import io
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lstm_ocr import arithmetic, model_check, models
from lstm_ocr.cli import InputError, mxnet_missing
from lstm_ocr.decode import Decoded, decode_with_confidence
from lstm_ocr.hyperparameters import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_MODEL_BYTES,
    ONNX_FORMAT,
    Hyperparams,
    from_saved,
)
from lstm_ocr.images import read_network_input, to_float

BATCH_SIZE = 256  # images per forward pass when reading many
MAX_BATCH_SIZE = 4096
DEFAULT_PREFIX = "ocr"
PROBABILITY_SLACK = 1e-3  # a softmax step may sum to 1 within this (float32 rounding)


def load_module(prefix: str, epoch: int, batch_size: int) -> tuple:
    """A Module that maps (batch_size, width, height) images to the softmax over classes per step, the
    checkpoint's hyperparameters, and how many images one forward pass may hold (model_check bounds the
    graph's values); the graph is checked before it is bound."""
    import mxnet as mx

    from lstm_ocr import checkpoint
    from lstm_ocr.lstm import inference_symbol

    symbol, arg_params, aux_params, hp = checkpoint.load_with_hyperparams(prefix, epoch)
    try:
        inference = inference_symbol(symbol)
    except (mx.base.MXNetError, KeyError) as error:
        raise checkpoint.CheckpointError(f"{checkpoint.symbol_path(prefix)} has no pred_fc layer: not a network of "
                                         f"this project ({checkpoint.mxnet_reason(error)})") from None
    try:
        per_image = model_check.check_bound_graph(inference, (hp.image_width, hp.image_height),
                                                  arg_params | aux_params)
        steps = model_check.output_steps(inference, (hp.image_width, hp.image_height))
        model_check.check_output_steps(steps, hp.image_width, "its graph")
    except InputError as error:
        raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                         f"{checkpoint.symbol_path(prefix)}: {error}") from None
    try:
        mod = mx.mod.Module(inference, data_names=["data"], label_names=None, context=mx.cpu())
        mod.bind(for_training=False, data_shapes=[("data", (batch_size, hp.image_width, hp.image_height))])
        mod.set_params(arg_params, aux_params, allow_missing=False)
    except (mx.base.MXNetError, KeyError, RuntimeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                         f"{checkpoint.symbol_path(prefix)}: "
                                         f"{checkpoint.mxnet_reason(error)}") from None
    return mod, hp, model_check.rows_per_pass(per_image)


class MXNetModel:
    """A checkpoint read with MXNet: `probabilities` of (N, width, height) float inputs, (N, steps, classes)."""

    def __init__(self, prefix: str, epoch: int | None = None):
        if importlib.util.find_spec("mxnet") is None:
            raise InputError(mxnet_missing("reading a checkpoint (--prefix)"))
        from lstm_ocr import checkpoint

        self.epoch = checkpoint.latest_epoch(prefix) if epoch is None else epoch
        self.name = f"{prefix} epoch {self.epoch}"
        self.mod, self.hp, self.rows = load_module(prefix, self.epoch, batch_size=1)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """In passes of at most `rows` images, so that the graph's memory stays bounded at any batch size."""
        import mxnet as mx

        found = [np.zeros((0, 0, self.hp.num_classes), np.float32)] if not len(images) else []
        for start in range(0, len(images), self.rows):
            chunk = images[start:start + self.rows]
            self.mod.forward(mx.io.DataBatch(data=[mx.nd.array(chunk)]), is_train=False)
            flat = self.mod.get_outputs()[0].asnumpy()  # time-major: row t * N + n is step t of image n
            found.append(flat.reshape(-1, len(chunk), flat.shape[-1]).transpose(1, 0, 2))
        return np.concatenate(found)


def onnx_hyperparams(metadata: dict[str, str], path: str) -> Hyperparams:
    """The reading hyperparameters an exported model's metadata holds, or InputError."""
    if metadata.get("format") != ONNX_FORMAT:
        raise InputError(f"{path} is an ONNX model, but not one `onnx_export.py` wrote (no format={ONNX_FORMAT} "
                         "in its metadata)")
    try:
        if "hyperparameters" in metadata:  # the checkpoint's whole meta file
            return from_saved(model_check.parse_json(metadata["hyperparameters"], "hyperparameters"))
        return from_saved({"chars": metadata["chars"], "seq_length": int(metadata["image_width"]),
                           "image_height": int(metadata["image_height"]), "min_len": int(metadata["min_len"]),
                           "max_len": int(metadata["max_len"])})
    except (KeyError, ValueError, RecursionError) as error:
        raise InputError(f"{path} has unusable metadata: {error}") from None


class OnnxModel:
    """An exported model read with ONNX Runtime (no MXNet); the same `probabilities` as MXNetModel."""

    def __init__(self, path: str, threads: int = 0, spin: bool = True):
        import onnxruntime

        model_check.regular_size(path, "ONNX model", MAX_MODEL_BYTES)
        self.name = path
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_MODEL_BYTES + 1)
        except OSError as error:
            raise InputError(f"cannot read ONNX model {path}: {error.strerror}") from None
        self.hp, per_image = model_check.check_onnx(data, path, lambda metadata: onnx_hyperparams(metadata, path))
        self.rows = model_check.rows_per_pass(per_image)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads
        if not spin:  # idle threads sleep between runs rather than spin (a service beside other work)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:  # from the bytes checked: no path, so nothing beside the file is ever read
            self.session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types (bad protobuf, bad graph)
            reason = " ".join(str(error).split())[:300]
            raise InputError(f"{path} is not a readable ONNX model: {reason}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or outputs[0].shape[-1] != self.hp.num_classes:
            raise InputError(f"{path} does not have one input and one output of {self.hp.num_classes} classes")
        self.input_name = inputs[0].name

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """In runs of at most `rows` images, so that the graph's memory stays bounded at any batch size."""
        return np.concatenate([self.session.run(None, {self.input_name: images[start:start + self.rows]})[0]
                               for start in range(0, len(images), self.rows)])


@dataclass(frozen=True)
class Constraints:
    """What the user knows of a captcha: the characters it may use, the lengths it may have."""

    allowed: str | None = None
    lengths: tuple[int, int] | None = None


def parse_length(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """`N`, `MIN-MAX`, an int or a (min, max) pair as a range of lengths (None: any), or InputError."""
    if text is None or isinstance(text, tuple):
        lengths = text
    elif isinstance(text, int) and not isinstance(text, bool):
        lengths = (text, text)
    else:
        match = re.fullmatch(r"(\d{1,3})(?:-(\d{1,3}))?", str(text).strip())
        if match is None:
            raise InputError(f"--length takes N or MIN-MAX (for example 4 or 4-6), got {text!r}")
        lengths = (int(match.group(1)), int(match.group(2) or match.group(1)))
    if lengths is not None and not (len(lengths) == 2 and 1 <= lengths[0] <= lengths[1] <= 64):
        raise InputError(f"--length must be N or MIN-MAX with 1 <= MIN <= MAX <= 64, got {text!r}")
    return lengths


@dataclass
class Reading:
    """A read image: its text, the text's confidence, each character's probability (decode.py
    says how they are computed), and whether its length lies outside the model's training; or, instead,
    why it could not be read (`error`: a length the model's steps cannot hold, a broken model's output)."""

    text: str
    confidence: float
    chars: list[tuple[str, float]]
    untrained_length: bool = False
    error: str | None = None
    answering: bool = False  # read by Reader(answer=True): the JSON form carries `answer`

    @property
    def answer(self) -> int | None:
        """The integer answer of an arithmetic captcha's text (`7+3=?`: 10), parsed by arithmetic.py and
        never evaluated; None when the text does not parse (or the image could not be read)."""
        return None if self.error is not None else arithmetic.answer(self.text)

    def to_dict(self, path: str | None = None) -> dict:
        """The JSON form: {"path", "text", "confidence", "chars": [{"char", "probability"}, ...],
        "untrained_length"} and, when answering, "answer" (null for a text that does not parse);
        or {"path", "error"}."""
        found = {"path": path} if path is not None else {}
        if self.error is not None:
            return found | {"error": self.error}
        return found | {"text": self.text, "confidence": self.confidence,
                        "chars": [{"char": c, "probability": p} for c, p in self.chars],
                        "untrained_length": self.untrained_length} | ({"answer": self.answer} if self.answering
                                                                       else {})


def checkpoint_model(prefix: str, epoch: int | None) -> "MXNetModel | OnnxModel":
    """The model of checkpoint `prefix` (saved here, or a shipped model's bare name: lstm_ocr.models);
    without MXNet, a shipped model is read from its ONNX export."""
    if (importlib.util.find_spec("mxnet") is None and models.is_shipped(prefix)
            and epoch in (None, models.shipped()[prefix])):
        model = OnnxModel(models.onnx_path(prefix))
        model.name = f"{prefix} (shipped, its ONNX export)"
        return model
    model = MXNetModel(models.resolve(prefix, epoch), epoch)
    model.name = f"{prefix} epoch {model.epoch}"
    return model


def _failed(reason: str) -> Reading:
    return Reading("", 0.0, [], error=reason)


class Reader:
    """Reads captchas with a checkpoint (`Reader(prefix, epoch)`, MXNet; the latest epoch if None) or an
    exported model (`Reader.onnx(path)`, ONNX Runtime). Safe to share between threads (one forward
    pass at a time)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, epoch: int | None = None, batch_size: int = BATCH_SIZE,
                 model=None, answer: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"batch_size must be an int from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}")
        if not isinstance(answer, bool):
            raise InputError(f"answer must be True or False, got {answer!r}")
        self.answer = answer
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1):
            raise InputError(f"epoch must be a positive int (or None: the latest), got {epoch!r}")
        self.model = model if model is not None else checkpoint_model(prefix, epoch)
        # (prefix, epoch) of a checkpoint read with MXNet, which adapt() fine-tunes; None for an ONNX model
        self.checkpoint = (prefix, self.model.epoch) if isinstance(self.model, MXNetModel) else None
        self.batch_size = batch_size
        # a reader that answers reads the most probable text arithmetic.py parses (decode.Grammar)
        self.grammar = arithmetic.grammar(self.hp.chars) if answer else None
        self._lock = threading.Lock()

    @classmethod
    def onnx(cls, path: str, batch_size: int = BATCH_SIZE, threads: int = 0, spin: bool = True,
             answer: bool = False) -> "Reader":
        """A Reader of an ONNX model `onnx_export.py` wrote; `threads` 0: ONNX Runtime's choice; `spin`
        False: its idle threads sleep between runs instead of spinning (for a service)."""
        cores = os.cpu_count() or 1
        if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= cores:
            raise InputError(f"threads must be from 0 (ONNX Runtime's choice) to {cores}, got {threads!r}")
        return cls(batch_size=batch_size, model=OnnxModel(path, threads, spin), answer=answer)

    @property
    def hp(self) -> Hyperparams:
        return self.model.hp

    @property
    def name(self) -> str:
        """The model: the ONNX file, or `PREFIX epoch N`."""
        return self.model.name

    def constraints(self, allowed: str | None = None, length: str | int | tuple[int, int] | None = None) -> Constraints:
        """The constraints of `allowed` characters (in the model's case, if it folds case) and `length`,
        checked against the model's alphabet, or InputError."""
        if allowed is not None:
            if not isinstance(allowed, str) or not allowed:
                raise InputError("--allowed takes the characters a reading may use, for example 0123456789")
            allowed = "".join(dict.fromkeys(self.hp.fold(allowed)))
            unknown = "".join(c for c in allowed if c not in self.hp.chars)
            if unknown:
                raise InputError(f"--allowed has {unknown!r}, which the model cannot read (its alphabet is "
                                 f"{self.hp.chars!r})")
        return Constraints(allowed, parse_length(length))

    def network_input(self, source, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
        """An image (a path, encoded bytes, a binary file object, a uint8 array or a PIL image) as the
        network's (width, height) uint8 input, or InputError."""
        if isinstance(source, Image.Image):  # any mode, its EXIF orientation applied, as its file would read
            return read_network_input(source, self.hp, name or "the PIL image", max_pixels)
        if hasattr(source, "read") and not isinstance(source, str | bytes | os.PathLike):  # a file object
            name = name or str(getattr(source, "name", "the file object"))
            if isinstance(source, io.TextIOBase):
                raise InputError(f"{name} is a text-mode file; open it with 'rb'")
            try:
                source = source.read(MAX_IMAGE_BYTES + 1)
            except (OSError, ValueError) as error:
                raise InputError(f"cannot read {name}: {error}") from None
            if not isinstance(source, bytes | bytearray):
                raise InputError(f"{name} did not read as bytes; open it with 'rb'")
        if not isinstance(source, str | bytes | bytearray | memoryview | np.ndarray | os.PathLike):
            raise InputError(f"cannot read a {type(source).__name__}: give a path, the file's bytes, a binary file "
                             "object, a uint8 pixel array or a PIL image")
        return read_network_input(source, self.hp, name, max_pixels)

    def read(self, source, allowed: str | None = None, length=None) -> Reading:
        """The reading of one image (what `network_input` takes), constrained as `constraints` says."""
        return self.read_inputs(self.network_input(source)[None], self.constraints(allowed, length))[0]

    def read_many(self, sources, allowed: str | None = None, length=None) -> list[Reading]:
        """The readings of many images (any iterable of what `read` takes), decoded and read a batch at
        a time (memory bounded however many there are); InputError for the first that cannot be read."""
        return list(self.read_each(sources, allowed, length, unreadable="raise"))

    def adapt(self, folder: str, prefix: str, allowed: str | None = None, length: str | int | None = None,
              options: list[str] | tuple[str, ...] = ()) -> "Reader":
        """Learn the look of a folder of unlabelled captchas by self-training (lstm_ocr/adapt.py, the same
        as `lstm_ocr_train.py --unlabelled_dir FOLDER --finetune THIS --prefix PREFIX`): this reader's
        checkpoint is fine-tuned in rounds on the readings it trusts, and a Reader of the round with the
        best estimate comes back (this reader's model if no round beat it). `options` are more of the
        command's (`["--val_dir", "val/", "--rounds", "3", "--overwrite"]`)."""
        if self.checkpoint is None:
            raise InputError(f"adapt fine-tunes a checkpoint with MXNet; {self.name} is an ONNX model: read its "
                             "checkpoint instead (Reader(prefix, epoch))")
        from lstm_ocr import adapt

        start, epoch = self.checkpoint
        argv = [adapt.OPTION, os.fspath(folder), "--finetune", f"{start}:{epoch}", "--prefix", os.fspath(prefix)]
        argv += ["--allowed", allowed] if allowed is not None else []
        argv += ["--length", str(length)] if length is not None else []
        best = adapt.run([*argv, *options])
        return Reader(best.prefix, best.epoch, self.batch_size, answer=self.answer)

    def read_each(self, sources, allowed: str | None = None, length=None,
                  unreadable: str = "reading") -> Iterator[Reading]:
        """The reading of each image, in order, decoded a batch (`batch_size`) at a time. An image that
        cannot be decoded is a Reading with its `error` (`unreadable="raise"`: InputError)."""
        constraints = self.constraints(allowed, length)
        batch: list[np.ndarray | str] = []
        for source in sources:
            try:
                batch.append(self.network_input(source))
            except InputError as error:
                if unreadable == "raise":
                    raise
                batch.append(" ".join(str(error).split()))
            if len(batch) == self.batch_size:
                yield from self._read_batch(batch, constraints)
                batch = []
        if batch:
            yield from self._read_batch(batch, constraints)

    def _read_batch(self, batch: list, constraints: Constraints) -> list[Reading]:
        good = [item for item in batch if not isinstance(item, str)]
        readings = iter(self.read_inputs(np.stack(good), constraints) if good else [])
        return [_failed(item) if isinstance(item, str) else next(readings) for item in batch]

    def read_inputs(self, inputs: np.ndarray, constraints: Constraints = Constraints()) -> list[Reading]:
        """Readings of network inputs (N, width, height) uint8, in batches of `batch_size`."""
        readings = []
        for start in range(0, len(inputs), self.batch_size):
            readings += self.decode(self.probabilities(inputs[start:start + self.batch_size]), constraints)
        return readings

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """The model's softmax outputs (N, steps, classes) for network inputs (N, width, height) uint8."""
        with self._lock:
            probs = np.asarray(self.model.probabilities(to_float(inputs)))
        if probs.ndim != 3 or probs.shape[0] != len(inputs) or probs.shape[2] != self.hp.num_classes \
                or not 1 <= probs.shape[1] <= model_check.most_output_steps(self.hp.image_width):
            raise InputError(f"{self.name} gave an output of shape {probs.shape} for {len(inputs)} images, not "
                             f"(images, at most {self.hp.image_width} steps, {self.hp.num_classes} classes)")
        return probs

    def decode(self, probs: np.ndarray, constraints: Constraints = Constraints()) -> list[Reading]:
        """Readings of the model's outputs. An output that is not a probability per step (NaN, infinity,
        out of range: a broken model) is refused, never read as a text."""
        sums = probs.sum(axis=-1)
        sound = (np.isfinite(probs).all(axis=(1, 2)) & (probs >= 0).all(axis=(1, 2))
                 & (np.abs(sums - 1) <= PROBABILITY_SLACK).all(axis=1))
        readings: list[Reading | None] = [None] * len(probs)
        good = np.flatnonzero(sound)
        allowed = self.hp.classes(constraints.allowed) if constraints.allowed is not None else None
        decoded = decode_with_confidence(probs[good], allowed, constraints.lengths, grammar=self.grammar)
        for n, reading in zip(good, decoded, strict=True):
            readings[n] = self._reading(reading, constraints, probs.shape[1])
        broken = _failed("the model's output is not a probability per step (NaN, infinite or out of range): the "
                         "model is broken")
        return [reading if reading is not None else broken for reading in readings]

    def _reading(self, decoded: Decoded | None, constraints: Constraints, steps: int) -> Reading:
        if decoded is None:
            low, high = constraints.lengths
            return _failed(f"no text of length {low if low == high else f'{low}-{high}'} fits the model's {steps} "
                           "output steps")
        text = self.hp.text(decoded.classes)
        return Reading(text, min(1.0, decoded.confidence), list(zip(text, decoded.probabilities, strict=True)),
                       untrained_length=not self.hp.min_len <= len(text) <= self.hp.max_len, answering=self.answer)


def add_model_options(parser: argparse.ArgumentParser, onnx_help: str, min_confidence_help: str) -> None:
    """The options that choose the model, --prefix/--epoch (a checkpoint, MXNet) or --onnx FILE (ONNX
    Runtime), and those that judge and constrain its readings: --min_confidence, --allowed, --length."""
    parser.add_argument("--prefix", default=None, help="checkpoint prefix, or a shipped model's name (general, alnum, "
                                                       f"arith, ocr) [default {DEFAULT_PREFIX}]")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch [default: the latest saved]")
    parser.add_argument("--onnx", metavar="FILE", help=onnx_help)
    parser.add_argument("--min_confidence", type=float, default=None, metavar="X", help=min_confidence_help)
    parser.add_argument("--allowed", metavar="CHARS", help="the reading uses only these characters of the model's "
                                                           "alphabet (confidence computed over them)")
    parser.add_argument("--length", metavar="N|MIN-MAX", help="the most probable text of this length (or range) "
                                                              "under the model")
    parser.add_argument("--answer", action="store_true",
                        help="arithmetic captchas (7+3=?): parse the reading (never evaluated as code) and give its "
                             "integer answer; a reading that does not parse is marked no_answer")


def check_model_options(args: argparse.Namespace) -> None:
    """InputError for model options that do not go together or are out of range."""
    if args.onnx is not None and (args.prefix is not None or args.epoch is not None):
        raise InputError("give --onnx FILE or --prefix/--epoch, not both")
    if args.epoch is not None and args.epoch < 1:
        raise InputError(f"--epoch must be positive, got {args.epoch}")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise InputError(f"--min_confidence must be between 0 and 1, got {args.min_confidence}")
    parse_length(args.length)


def open_reader(args: argparse.Namespace, batch_size: int = BATCH_SIZE, threads: int = 0, spin: bool = True) -> Reader:
    """The Reader of the model the options choose (checked by check_model_options); `spin` as Reader.onnx."""
    answer = bool(getattr(args, "answer", False))
    if args.onnx is not None:
        return Reader.onnx(args.onnx, batch_size=batch_size, threads=threads, spin=spin, answer=answer)
    return Reader(args.prefix or DEFAULT_PREFIX, args.epoch, batch_size=batch_size, answer=answer)
