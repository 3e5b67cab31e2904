"""Read the text of a CAPTCHA image with a trained checkpoint.

    python lstm_ocr_infer.py --prefix ocr --epoch 100 sample.jpg
    Digits: [0, 0, 8, 9]

Several images or folders print one line per image, `PATH Digits: [...]`, and, when every image
has a label (a folder's labels.csv, or names NNNN_TEXT as `captcha_generator.py --count` writes
them), a last line with the accuracy.
"""

import os

import mxnet as mx
import numpy as np

import checkpoint
import labelled_data
from cli import ArgumentParser, InputError, run_main
from ctc_metrics import decode, lcs_ratio
from hyperparameters import Hyperparams
from images import read_network_input, to_float
from lstm import inference_symbol

BATCH_SIZE = 256  # images per forward pass when reading many


def load_module(prefix: str, epoch: int, batch_size: int) -> tuple[mx.mod.Module, Hyperparams]:
    """A Module that maps (batch_size, width, height) images to the softmax over classes per step."""
    symbol, arg_params, aux_params = checkpoint.load(prefix, epoch)
    hp = checkpoint.load_hyperparams(prefix)
    classes = arg_params["pred_fc_weight"].shape[0] if "pred_fc_weight" in arg_params else hp.num_classes
    if classes != hp.num_classes:
        raise checkpoint.CheckpointError(f"{checkpoint.meta_path(prefix)} has {len(hp.chars)} characters but "
                                         f"{checkpoint.params_path(prefix, epoch)} has {classes - 1}")
    try:
        mod = mx.mod.Module(inference_symbol(symbol), data_names=["data"], label_names=None, context=mx.cpu())
        mod.bind(for_training=False, data_shapes=[("data", (batch_size, hp.image_width, hp.image_height))])
        mod.set_params(arg_params, aux_params, allow_missing=False)
    except (mx.base.MXNetError, KeyError, RuntimeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                         f"{prefix}-symbol.json: {checkpoint.mxnet_reason(error)}") from None
    return mod, hp


def predict(mod: mx.mod.Module, images: np.ndarray) -> list[list[int]]:
    """Greedy CTC decoding of a batch of network inputs, as class indices without blanks."""
    mod.forward(mx.io.DataBatch(data=[mx.nd.array(images)]), is_train=False)
    return decode(mod.get_outputs()[0].asnumpy(), len(images))


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
        if folder not in files:
            found = labelled_data.labels_file(folder or ".")
            files[folder] = labelled_data.read_labels_file(found) if found else {}
        by_file = {os.path.normpath(k): v for k, v in files[folder].items()}
        labels.append(by_file.get(os.path.normpath(path)) if by_file else labelled_data.generated_label(path))
    return labels


def read_all(paths: list[str], prefix: str, epoch: int) -> tuple[list[str], Hyperparams]:
    """The texts of the images at `paths`, read in batches, and the model's hyperparameters. Every
    image is checked before any output, and kept only at the network's input size."""
    mod, hp = load_module(prefix, epoch, batch_size=min(BATCH_SIZE, len(paths)))
    inputs = np.stack([read_network_input(path, hp) for path in paths])
    texts = []
    for start in range(0, len(inputs), BATCH_SIZE):
        texts += [to_text(classes, hp) for classes in predict(mod, to_float(inputs[start:start + BATCH_SIZE]))]
    return texts, hp


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+", help="CAPTCHA image files, or folders of them")
    parser.add_argument("--prefix", default="ocr", help="checkpoint prefix [default ocr]")
    parser.add_argument("--epoch", type=int, default=100, help="checkpoint epoch [default 100]")
    args = parser.parse_args()
    paths = image_paths(args.images)
    texts, hp = read_all(paths, args.prefix, args.epoch)
    if len(args.images) == 1 and paths == args.images:  # one image: exactly the example's output
        print(format_text(texts[0], hp))
        return
    for path, text in zip(paths, texts, strict=True):
        print(path, format_text(text, hp))
    labels = labels_of(paths)
    if all(label is not None for label in labels):
        exact = sum(text == label for text, label in zip(texts, labels, strict=True)) / len(paths)
        lcs = sum(lcs_ratio(list(text), list(label)) for text, label in zip(texts, labels, strict=True)) / len(paths)
        print(f"accuracy={exact:.4f} lcs_accuracy={lcs:.4f} images={len(paths)}")


if __name__ == "__main__":
    run_main(main)
