"""Read the text of a CAPTCHA image with a trained checkpoint, or with its ONNX export.

    python lstm_ocr_infer.py --prefix ocr --epoch 100 sample.jpg
    Digits: [0, 0, 8, 9]

Several images or folders print one line per image, `PATH Digits: [...]`, and, when every image
has a label (a folder's labels.csv, or names NNNN_TEXT as `captcha_generator.py --count` writes
them), a last line with the accuracy.

`--onnx model.onnx` reads with ONNX Runtime instead (a model `lstm.py --to onnx` wrote; MXNet is
not imported), `--json` prints one JSON object per image with the text's confidence and each
character's probability, `--min_confidence X` marks readings below X as rejected.

As a library:

    from lstm_ocr_infer import Reader
    reader = Reader("pretrained/ocr", 12)   # or Reader.onnx("model.onnx")
    reading = reader.read("sample.png")     # a path, encoded bytes, or a uint8 pixel array
    reading.text, reading.confidence, reading.chars
"""

import argparse
import json
import os
import stat
import threading
from dataclasses import dataclass

import numpy as np

import labelled_data
from cli import ArgumentParser, InputError, run_main
from ctc_metrics import Decoded, decode, decode_with_confidence, lcs_ratio
from hyperparameters import MAX_IMAGE_PIXELS, MAX_MODEL_BYTES, ONNX_FORMAT, Hyperparams, from_saved
from images import Source, read_network_input, to_float

BATCH_SIZE = 256  # images per forward pass when reading many
DEFAULT_PREFIX, DEFAULT_EPOCH = "ocr", 100


def load_module(prefix: str, epoch: int, batch_size: int) -> tuple:
    """A Module that maps (batch_size, width, height) images to the softmax over classes per step,
    and the checkpoint's hyperparameters."""
    import mxnet as mx

    import checkpoint
    from lstm import inference_symbol

    symbol, arg_params, aux_params, hp = checkpoint.load_with_hyperparams(prefix, epoch)
    try:
        mod = mx.mod.Module(inference_symbol(symbol), data_names=["data"], label_names=None, context=mx.cpu())
        mod.bind(for_training=False, data_shapes=[("data", (batch_size, hp.image_width, hp.image_height))])
        mod.set_params(arg_params, aux_params, allow_missing=False)
    except (mx.base.MXNetError, KeyError, RuntimeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                         f"{checkpoint.symbol_path(prefix)}: "
                                         f"{checkpoint.mxnet_reason(error)}") from None
    return mod, hp


def _forward(mod, images: np.ndarray) -> np.ndarray:
    """The Module's time-major softmax (steps * N, classes) for a batch of network inputs."""
    import mxnet as mx

    mod.forward(mx.io.DataBatch(data=[mx.nd.array(images)]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def predict(mod, images: np.ndarray) -> list[list[int]]:
    """Greedy CTC decoding of a batch of network inputs, as class indices without blanks."""
    return decode(_forward(mod, images), len(images))


class MXNetModel:
    """A checkpoint read with MXNet: `probabilities` of (N, width, height) float inputs, (N, steps, classes)."""

    def __init__(self, prefix: str, epoch: int):
        self.mod, self.hp = load_module(prefix, epoch, batch_size=1)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        flat = _forward(self.mod, images)
        return flat.reshape(-1, len(images), flat.shape[-1]).transpose(1, 0, 2)


def _check_model_file(path: str) -> None:
    try:
        info = os.stat(path)
    except OSError as error:
        raise InputError(f"ONNX model {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"ONNX model {path} is not a regular file")
    if info.st_size > MAX_MODEL_BYTES:
        raise InputError(f"ONNX model {path} is {info.st_size} bytes, over the limit of {MAX_MODEL_BYTES}")


def onnx_hyperparams(metadata: dict[str, str], path: str) -> Hyperparams:
    """The reading hyperparameters an exported model's metadata holds, or InputError."""
    if metadata.get("format") != ONNX_FORMAT:
        raise InputError(f"{path} is an ONNX model, but not one `lstm.py --to onnx` wrote (no format={ONNX_FORMAT} "
                         "in its metadata)")
    try:
        if "hyperparameters" in metadata:  # the checkpoint's whole meta file
            return from_saved(json.loads(metadata["hyperparameters"]))
        return from_saved({"chars": metadata["chars"], "seq_length": int(metadata["image_width"]),
                           "image_height": int(metadata["image_height"]), "min_len": int(metadata["min_len"]),
                           "max_len": int(metadata["max_len"])})
    except (KeyError, ValueError, RecursionError) as error:
        raise InputError(f"{path} has unusable metadata: {error}") from None


class OnnxModel:
    """An exported model read with ONNX Runtime (no MXNet); the same `probabilities` as MXNetModel."""

    def __init__(self, path: str, threads: int = 0):
        import onnxruntime

        _check_model_file(path)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types (bad protobuf, bad graph)
            reason = " ".join(str(error).split())[:300]
            raise InputError(f"{path} is not a readable ONNX model: {reason}") from None
        self.hp = onnx_hyperparams(self.session.get_modelmeta().custom_metadata_map, path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or outputs[0].shape[-1] != self.hp.num_classes:
            raise InputError(f"{path} does not have one input and one output of {self.hp.num_classes} classes")
        self.input_name = inputs[0].name

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]


@dataclass
class Reading:
    """A read image: its text, the text's confidence and each character's probability (see
    ctc_metrics.decode_with_confidence for how they are computed)."""

    text: str
    confidence: float
    chars: list[tuple[str, float]]

    def to_dict(self, path: str | None = None) -> dict:
        """The JSON form: {"path", "text", "confidence", "chars": [{"char", "probability"}, ...]}."""
        found = {"path": path} if path is not None else {}
        return found | {"text": self.text, "confidence": self.confidence,
                        "chars": [{"char": c, "probability": p} for c, p in self.chars]}


class Reader:
    """Reads captchas with a checkpoint (`Reader(prefix, epoch)`, MXNet) or an exported model
    (`Reader.onnx(path)`, ONNX Runtime). Safe to share between threads (one forward pass at a time)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, epoch: int = DEFAULT_EPOCH, batch_size: int = BATCH_SIZE,
                 model=None):
        self.model = model if model is not None else MXNetModel(prefix, epoch)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @classmethod
    def onnx(cls, path: str, batch_size: int = BATCH_SIZE, threads: int = 0) -> "Reader":
        """A Reader of an ONNX model `lstm.py --to onnx` wrote; `threads` 0: ONNX Runtime's choice."""
        return cls(batch_size=batch_size, model=OnnxModel(path, threads))

    @property
    def hp(self) -> Hyperparams:
        return self.model.hp

    def network_input(self, source: Source, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
        """An image (a path, encoded bytes, a uint8 array or a PIL image) as the network's (width, height)
        uint8 input, or InputError."""
        if hasattr(source, "getbands") and hasattr(source, "convert"):  # a PIL image
            source = np.asarray(source if source.mode == "L" else source.convert("RGBA"))
        if not isinstance(source, str | bytes | bytearray | memoryview | np.ndarray | os.PathLike):
            raise InputError(f"cannot read a {type(source).__name__}: give a path, the file's bytes, a uint8 pixel "
                             "array or a PIL image")
        return read_network_input(source, self.hp, name, max_pixels)

    def read(self, source: Source) -> Reading:
        """The reading of one image: a path, encoded bytes, a gray/RGB(A) uint8 array, or a PIL image."""
        return self.read_inputs(self.network_input(source)[None])[0]

    def read_many(self, sources) -> list[Reading]:
        """The readings of many images (any iterable of what `read` takes), in batches; every image is
        decoded (and checked) first."""
        inputs = [self.network_input(source) for source in sources]
        return self.read_inputs(np.stack(inputs)) if inputs else []

    def read_inputs(self, inputs: np.ndarray) -> list[Reading]:
        """Readings of network inputs (N, width, height) uint8, in batches of `batch_size`."""
        readings = []
        for start in range(0, len(inputs), self.batch_size):
            with self._lock:
                probs = self.model.probabilities(to_float(inputs[start:start + self.batch_size]))
            readings += [self._reading(decoded) for decoded in decode_with_confidence(probs)]
        return readings

    def _reading(self, decoded: Decoded) -> Reading:
        text = to_text(decoded.classes, self.hp)
        return Reading(text, decoded.confidence, list(zip(text, decoded.probabilities, strict=True)))


def to_text(classes: list[int], hp: Hyperparams) -> str:
    """Class indices (1-based characters, no blanks) as text."""
    return "".join(hp.chars[c - 1] for c in classes)


def format_text(text: str, hp: Hyperparams) -> str:
    """The example's `Digits: [0, 0, 8, 9]` for digit models; `Text: a7k2` for other alphabets."""
    if hp.digits_only:
        return f"Digits: {[int(c) for c in text]}"
    return f"Text: {text}"


def image_paths(paths: list[str]) -> list[str]:
    """The given files, and the image files (by extension) of the given folders, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, name) for name in os.listdir(path) if labelled_data.is_image_name(name))
        else:
            found.append(path)
    if not found:
        raise InputError(f"no image files in {', '.join(paths)}")
    return found


def labels_of(paths: list[str]) -> list[str | None]:
    """Each image's label: from its folder's labels file if it has one, else from a name NNNN_TEXT;
    None where neither says (`scan_2023.png` carries no label)."""
    files: dict[str, dict[str, str]] = {}
    labels = []
    for path in paths:
        folder = os.path.dirname(path)
        if folder not in files:  # each folder's labels file is read once (its paths come normalised)
            found = labelled_data.labels_file(folder or ".")
            files[folder] = labelled_data.read_labels_file(found) if found else {}
        by_file = files[folder]
        labels.append(by_file.get(os.path.normpath(path)) if by_file else labelled_data.generated_label(path))
    return labels


def add_model_options(parser: ArgumentParser, onnx_help: str, min_confidence_help: str) -> None:
    """The options that choose the model, --prefix/--epoch (a checkpoint, MXNet) or --onnx FILE (ONNX
    Runtime), and --min_confidence; the two scripts that read (this one and lstm_ocr_serve.py) share them."""
    parser.add_argument("--prefix", default=None, help=f"checkpoint prefix [default {DEFAULT_PREFIX}]")
    parser.add_argument("--epoch", type=int, default=None, help=f"checkpoint epoch [default {DEFAULT_EPOCH}]")
    parser.add_argument("--onnx", metavar="FILE", help=onnx_help)
    parser.add_argument("--min_confidence", type=float, default=None, metavar="X", help=min_confidence_help)


def check_model_options(args: argparse.Namespace) -> None:
    """InputError for model options that do not go together or are out of range."""
    if args.onnx is not None and (args.prefix is not None or args.epoch is not None):
        raise InputError("give --onnx FILE or --prefix/--epoch, not both")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise InputError(f"--min_confidence must be between 0 and 1, got {args.min_confidence}")


def model_name(args: argparse.Namespace) -> str:
    """The model the options choose: the ONNX file, or `PREFIX epoch N`."""
    return args.onnx or f"{args.prefix or DEFAULT_PREFIX} epoch {DEFAULT_EPOCH if args.epoch is None else args.epoch}"


def open_reader(args: argparse.Namespace, batch_size: int = BATCH_SIZE, threads: int = 0) -> Reader:
    """The Reader of the model the options choose (checked by check_model_options)."""
    if args.onnx is not None:
        return Reader.onnx(args.onnx, batch_size=batch_size, threads=threads)
    return Reader(args.prefix or DEFAULT_PREFIX, DEFAULT_EPOCH if args.epoch is None else args.epoch,
                  batch_size=batch_size)


def _summary(texts: list[str], labels: list[str]) -> str:
    exact = sum(text == label for text, label in zip(texts, labels, strict=True)) / len(texts)
    lcs = sum(lcs_ratio(list(text), list(label)) for text, label in zip(texts, labels, strict=True)) / len(texts)
    return f"accuracy={exact:.4f} lcs_accuracy={lcs:.4f} images={len(texts)}"


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", help="CAPTCHA image files, or folders of them")
    add_model_options(parser, "read with this ONNX model (lstm.py --to onnx) instead of a checkpoint; MXNet is "
                              "not needed", "mark readings whose confidence is below X (0 to 1) as rejected")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per image: {"path", "text", "confidence", "chars"}')
    args = parser.parse_args()
    check_model_options(args)
    paths = image_paths(args.images)
    reader = open_reader(args)
    readings = reader.read_many(paths)
    hp = reader.hp
    rejected = [args.min_confidence is not None and r.confidence < args.min_confidence for r in readings]
    if args.json:
        for path, reading, refused in zip(paths, readings, rejected, strict=True):
            found = reading.to_dict(path) | ({"rejected": refused} if args.min_confidence is not None else {})
            print(json.dumps(found, ensure_ascii=False))
        return
    marks = [f" rejected confidence={r.confidence:.4f}" if refused else "" for r, refused in zip(readings, rejected,
                                                                                                strict=True)]
    if len(args.images) == 1 and paths == args.images:  # one image: exactly the example's output
        print(format_text(readings[0].text, hp) + marks[0])
        return
    for path, reading, mark in zip(paths, readings, marks, strict=True):
        print(path, format_text(reading.text, hp) + mark)
    labels = labels_of(paths)
    if all(label is not None for label in labels):
        line = _summary([r.text for r in readings], labels)
        if args.min_confidence is not None:
            kept = [(r.text, label) for r, label, refused in zip(readings, labels, rejected, strict=True)
                    if not refused]
            line += f" rejected={sum(rejected)}"
            if kept:
                line += f" accepted_accuracy={sum(t == lab for t, lab in kept) / len(kept):.4f}"
        print(line)


if __name__ == "__main__":
    run_main(main)
