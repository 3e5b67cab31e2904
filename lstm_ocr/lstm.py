"""The example's network: a stacked LSTM over image columns, a FullyConnected `pred_fc` to the
classes, and a CTC loss for training (MXNet's ctc_loss or WarpCTC) or a softmax for inference.

Two networks compute the same function: `unrolled` (the example's, one FullyConnected pair per
step and layer) and `fused` (one `mx.sym.RNN` op, MKL-DNN on CPU, cuDNN on GPU).
`convert_params` turns the weights of one into the other's.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import math
import os
from dataclasses import replace

import mxnet as mx
import numpy as np

from lstm_ocr import (
    checkpoint,
    warpctc,  # noqa: F401  (registers the WarpCTC-compatible custom op)
)
from lstm_ocr.hyperparameters import CRNN_SHAPES, FUSED_PARAMS, Hyperparams

os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" per bind
# Row blocks of an LSTM weight matrix: the unrolled cell's gates are (input, transform, forget,
# output); the fused op's are (input, forget, transform, output). Swapping blocks 1 and 2 maps
# either order to the other.
UNROLLED_TO_FUSED_GATES = (0, 2, 1, 3)


def _lstm_step(hp: Hyperparams, x, prev_c, prev_h, weights: dict) -> tuple:
    """One step of the example's LSTM cell; returns (next_c, next_h)."""
    gates = (mx.sym.FullyConnected(x, weights["i2h_weight"], weights["i2h_bias"], num_hidden=4 * hp.num_hidden)
             + mx.sym.FullyConnected(prev_h, weights["h2h_weight"], weights["h2h_bias"],
                                     num_hidden=4 * hp.num_hidden))
    in_gate, in_transform, forget_gate, out_gate = mx.sym.SliceChannel(gates, num_outputs=4)
    next_c = (mx.sym.sigmoid(forget_gate) * prev_c
              + mx.sym.sigmoid(in_gate) * mx.sym.tanh(in_transform))
    next_h = mx.sym.sigmoid(out_gate) * mx.sym.tanh(next_c)
    return next_c, next_h


def _unrolled_features(hp: Hyperparams, data):
    """(T*N, hidden) time-major outputs of the LSTM unrolled over the image columns."""
    weights = [{name: mx.sym.Variable(f"l{layer}_{name}")
                for name in ("i2h_weight", "i2h_bias", "h2h_weight", "h2h_bias")}
               for layer in range(hp.num_lstm_layer)]
    zeros = mx.sym.zeros(shape=(0, hp.num_hidden))  # 0: the batch size, inferred at bind time
    states = [(zeros, zeros)] * hp.num_lstm_layer
    columns = mx.sym.SliceChannel(data, num_outputs=hp.seq_length, axis=1, squeeze_axis=True)
    outputs = []
    for step in range(hp.seq_length):
        hidden = columns[step]
        for layer in range(hp.num_lstm_layer):
            states[layer] = _lstm_step(hp, hidden, *states[layer], weights[layer])
            hidden = states[layer][1]
        outputs.append(hidden)
    return mx.sym.Concat(*outputs, dim=0)


def _fused_features(hp: Hyperparams, data):
    """The same (T*N, hidden) outputs from one fused RNN op."""
    zeros = mx.sym.zeros(shape=(hp.num_lstm_layer, 0, hp.num_hidden))
    params = mx.sym.Variable(FUSED_PARAMS)
    time_major = mx.sym.transpose(data, axes=(1, 0, 2))
    hidden = mx.sym.RNN(time_major, params, zeros, zeros, state_size=hp.num_hidden,
                        num_layers=hp.num_lstm_layer, mode="lstm", name="lstm")
    return mx.sym.reshape(hidden, shape=(-3, -2))


def _conv_block(data, channels: int, pool: tuple, name: str):
    """3x3 convolution, batch norm, ReLU, then max pooling by `pool` (height, width). The ReLU is an
    `Activation` op, which MKL-DNN runs in its own layout: `mx.sym.relu` (the same function) made
    the letters model's training step about 10 % slower (docs/letters-speed.md)."""
    conv = mx.sym.Convolution(data, num_filter=channels, kernel=(3, 3), pad=(1, 1), name=f"{name}_conv")
    normed = mx.sym.BatchNorm(conv, name=f"{name}_bn")
    return mx.sym.Pooling(mx.sym.Activation(normed, act_type="relu"), kernel=pool, stride=pool, pool_type="max")


def _crnn_features(hp: Hyperparams, data):
    """A small convolutional front end (width / crnn_pooling's width steps) and a bidirectional fused LSTM."""
    image = mx.sym.expand_dims(mx.sym.transpose(data, axes=(0, 2, 1)), axis=1)  # (N, 1, height, width)
    features = image
    for i, (channels, pool) in enumerate(CRNN_SHAPES[hp.crnn_shape][:hp.crnn_blocks]):
        features = _conv_block(features, hp.crnn_first_channels if i == 0 else channels, pool, f"c{i}")
    steps = mx.sym.transpose(features, axes=(3, 0, 1, 2))  # (T, N, channels, height)
    zeros = mx.sym.zeros(shape=(2 * hp.num_lstm_layer, 0, hp.num_hidden))
    hidden = mx.sym.RNN(mx.sym.reshape(steps, shape=(0, 0, -1)), mx.sym.Variable(FUSED_PARAMS), zeros, zeros,
                        state_size=hp.num_hidden, num_layers=hp.num_lstm_layer, mode="lstm",
                        bidirectional=True, name="lstm")
    return mx.sym.reshape(hidden, shape=(-3, -2))


def crnn_pooling(hp: Hyperparams) -> tuple[int, int]:
    """How many image rows and columns the crnn's conv blocks pool into one: the product of their pooling."""
    pools = [pool for _, pool in CRNN_SHAPES[hp.crnn_shape][:hp.crnn_blocks]]
    return math.prod(rows for rows, _ in pools), math.prod(columns for _, columns in pools)


def output_steps(hp: Hyperparams) -> int:
    """Time steps of the network's output sequence."""
    return hp.seq_length // crnn_pooling(hp)[1] if hp.network == "crnn" else hp.seq_length


def _add_loss(hp: Hyperparams, pred, steps: int):
    """Training head (hp.loss) on the (T*N, classes) activations; its first output is the softmax."""
    label = mx.sym.Variable("label")
    if hp.loss == "ctc":
        per_step = mx.sym.reshape(pred, shape=(-4, steps, -1, 0))  # (T, N, classes)
        ctc = mx.sym.MakeLoss(mx.sym.contrib.ctc_loss(per_step, label), name="ctc")
        softmax = mx.sym.BlockGrad(mx.sym.softmax(pred), name="softmax")
        return mx.sym.Group([softmax, ctc])
    flat_label = mx.sym.Cast(mx.sym.reshape(label, shape=(-1,)), dtype="int32")
    if hasattr(mx.sym, "WarpCTC"):  # MXNet built with Baidu's warp-ctc plugin
        return mx.sym.WarpCTC(pred, flat_label, label_length=hp.num_label, input_length=steps)
    return mx.sym.Custom(pred, flat_label, op_type="WarpCTC", name="warpctc",
                         label_length=hp.num_label, input_length=steps)


def lstm_ocr(hp: Hyperparams, training: bool = True):
    """Network hp.network on `data` (N, seq_length, image_height): with its CTC loss (hp.loss) for
    training, else a softmax."""
    data = mx.sym.Variable("data")
    features = {"fused": _fused_features, "unrolled": _unrolled_features, "crnn": _crnn_features}[hp.network](hp, data)
    pred = mx.sym.FullyConnected(features, num_hidden=hp.num_classes, name="pred_fc")
    if not training:
        return mx.sym.softmax(pred, name="softmax")
    return _add_loss(hp, pred, output_steps(hp))


def inference_symbol(training_symbol):
    """Swap a trained network's loss for a softmax on `pred_fc`."""
    return mx.sym.softmax(training_symbol.get_internals()["pred_fc_output"], name="softmax")


def initial_params(hp: Hyperparams, initializer: mx.init.Initializer) -> dict:
    """Fresh weights for hp.network. The fused network gets the unrolled one's initialization,
    converted, so both start from the same function; a CRNN's fused LSTM vector is uniform in
    +-1/sqrt(hidden)."""
    network = hp.network
    symbol = lstm_ocr(replace(hp, network="crnn" if network == "crnn" else "unrolled"), training=False)
    shapes, _, _ = symbol.infer_shape(data=(1, hp.image_width, hp.image_height))
    params = {}
    for name, shape in zip(symbol.list_arguments(), shapes, strict=True):
        if name == FUSED_PARAMS:
            params[name] = mx.nd.random.uniform(-1, 1, shape) / np.sqrt(hp.num_hidden)
        elif name != "data":
            params[name] = mx.nd.zeros(shape)
            initializer(mx.init.InitDesc(name), params[name])
    return params if network == "crnn" else convert_params(params, hp, network)


def _to_numpy(params: dict) -> dict:
    return {name: value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
            for name, value in params.items()}


def _reorder_gates(matrix: np.ndarray, order: tuple) -> np.ndarray:
    return np.concatenate([np.split(matrix, 4)[gate] for gate in order])


def convert_params(arg_params: dict, hp: Hyperparams, to: str) -> dict:
    """Parameters of one network as the other's (`to` is "fused" or "unrolled"), as NDArrays.

    The fused vector holds, layer by layer, W_i2h then W_h2h; then, layer by layer, b_i2h then
    b_h2h; each with its gate rows in the fused order.
    """
    params = _to_numpy(arg_params)
    if checkpoint.network_of(params) == to:
        return {name: mx.nd.array(value) for name, value in params.items()}
    names = [f"l{layer}_{kind}_{part}" for part in ("weight", "bias")
             for layer in range(hp.num_lstm_layer) for kind in ("i2h", "h2h")]
    kept = {name: value for name, value in params.items() if name.startswith("pred_fc")}
    if to == "fused":
        pieces = [_reorder_gates(params[name], UNROLLED_TO_FUSED_GATES).ravel() for name in names]
        kept[FUSED_PARAMS] = np.concatenate(pieces)
    else:
        flat, hidden = params[FUSED_PARAMS], hp.num_hidden
        for name in names:
            layer = int(name[1:name.index("_")])
            in_size = hp.image_height if layer == 0 and "i2h" in name else hidden
            shape = (4 * hidden, in_size) if name.endswith("weight") else (4 * hidden,)
            size = int(np.prod(shape))
            piece, flat = flat[:size].reshape(shape), flat[size:]
            kept[name] = _reorder_gates(piece, UNROLLED_TO_FUSED_GATES)
    return {name: mx.nd.array(value) for name, value in kept.items()}


def main() -> None:
    """Convert a checkpoint between the fused and unrolled networks (the same function). `--to onnx`
    is kept as another name for onnx_export.py, the exporter (`--out model.onnx`)."""
    from lstm_ocr.cli import ArgumentParser, InputError, same_file

    parser = ArgumentParser(description=main.__doc__)
    parser.add_argument("--prefix", default="ocr", help="checkpoint to convert [default ocr]")
    parser.add_argument("--epoch", type=int, required=True, help="its epoch")
    parser.add_argument("--to", required=True, choices=("fused", "unrolled", "onnx"),
                        help="the network to convert to, or onnx: an ONNX model file (as onnx_export.py)")
    parser.add_argument("--out", required=True, help="prefix of the converted checkpoint, or the .onnx file")
    parser.add_argument("--overwrite", action="store_true", help="with --to onnx: replace an existing --out file")
    args = parser.parse_args()
    if args.to == "onnx":
        from lstm_ocr import onnx_export

        print(onnx_export.export_command(args.prefix, args.epoch, args.out, args.overwrite))
        return
    from lstm_ocr import models

    args.prefix = models.resolve(args.prefix, args.epoch)  # a checkpoint here, or a shipped model
    symbol, arg_params, aux_params, hp = checkpoint.load_with_hyperparams(args.prefix, args.epoch)
    if hp.network == "crnn":
        raise InputError(f"--to {args.to} converts a fused or unrolled checkpoint; this one is crnn")
    checkpoint.check_writable(args.out, [args.epoch])
    if (same_file(checkpoint.symbol_path(args.out), checkpoint.symbol_path(args.prefix))
            or checkpoint.saved_epochs(args.out)):
        raise InputError(f"--out {args.out} already holds a checkpoint; a conversion never writes over one "
                         "(its input included): choose a new prefix")
    converted = convert_params(arg_params, hp, args.to)
    target = replace(hp, network=args.to)
    checkpoint.save(args.out, args.epoch, lstm_ocr(target), converted, aux_params, target)
    print(f"{hp.network} checkpoint {checkpoint.params_path(args.prefix, args.epoch)} written as "
          f"{args.to} {checkpoint.params_path(args.out, args.epoch)}")


if __name__ == "__main__":
    from lstm_ocr.cli import run_main

    run_main(main)
