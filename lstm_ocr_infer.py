"""Read the text of a CAPTCHA image with a trained checkpoint.

    python lstm_ocr_infer.py --prefix ocr --epoch 100 sample.jpg
    Digits: [0, 0, 8, 9]
"""

import argparse
import os

import cv2
import mxnet as mx
import numpy as np

import checkpoint
from captcha_generator import InputError, exit_with, to_float, to_network_input
from ctc_metrics import decode
from hyperparameters import Hyperparams
from lstm import inference_symbol


def load_module(prefix: str, epoch: int, batch_size: int) -> tuple[mx.mod.Module, Hyperparams]:
    """A Module that maps (batch_size, width, height) images to the softmax over classes per step."""
    symbol, arg_params, aux_params = checkpoint.load(prefix, epoch)
    hp = checkpoint.load_hyperparams(prefix)
    try:
        mod = mx.mod.Module(inference_symbol(symbol), data_names=["data"], label_names=None, context=mx.cpu())
        mod.bind(for_training=False, data_shapes=[("data", (batch_size, hp.image_width, hp.image_height))])
        mod.set_params(arg_params, aux_params, allow_missing=False)
    except (mx.base.MXNetError, KeyError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise checkpoint.CheckpointError(
            f"{checkpoint.params_path(prefix, epoch)} does not fit {prefix}-symbol.json: {first_line}") from None
    return mod, hp


def read_image(path: str, hp: Hyperparams) -> np.ndarray:
    """An image file as the network's (width, height) float32 input; any size, color or gray."""
    if not os.path.isfile(path):
        raise InputError(f"image {path} does not exist")
    if os.path.getsize(path) == 0:
        raise InputError(f"image {path} is empty")
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise InputError(f"{path} is not a readable image (or is truncated)")
    return to_float(to_network_input(gray, hp))


def predict(mod: mx.mod.Module, images: np.ndarray, hp: Hyperparams) -> list[list[int]]:
    """Greedy CTC decoding of a batch of network inputs, as class indices without blanks."""
    mod.forward(mx.io.DataBatch(data=[mx.nd.array(images)]), is_train=False)
    return decode(mod.get_outputs()[0].asnumpy(), len(images))


def format_text(classes: list[int], hp: Hyperparams) -> str:
    """The example's `Digits: [0, 0, 8, 9]` for digit alphabets; `Text: a7k2` for others."""
    text = "".join(hp.chars[c - 1] for c in classes)
    if hp.digits_only:
        return f"Digits: {[int(c) for c in text]}"
    return f"Text: {text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="CAPTCHA image file")
    parser.add_argument("--prefix", default="ocr", help="checkpoint prefix [default ocr]")
    parser.add_argument("--epoch", type=int, default=100, help="checkpoint epoch [default 100]")
    args = parser.parse_args()
    try:
        mod, hp = load_module(args.prefix, args.epoch, batch_size=1)
        image = read_image(args.image, hp)
        print(format_text(predict(mod, image[None], hp)[0], hp))
    except (InputError, checkpoint.CheckpointError) as error:
        exit_with(error)


if __name__ == "__main__":
    main()
