"""A checkpoint's inference network (softmax output, no loss) as an ONNX model, for ONNX Runtime.

    python onnx_export.py --prefix general --out general.onnx    # [--epoch N] [--overwrite]
    python lstm_ocr_infer.py --onnx general.onnx sample.png                 # no MXNet needed to read it

`mx.onnx.export_model` fails on these graphs (the unrolled graph's Split, the fused RNN op without
state outputs), so the graph is written here with the `onnx` package's helpers, node by node from
the checkpoint's symbol JSON:

- the fused `RNN` op (any layers, bidirectional) becomes one ONNX `LSTM` per layer, its flat
  parameter vector cut into W, R and B with the gates reordered (MXNet's i, f, g, o; ONNX's
  i, o, f, c) and B = [W biases, R biases];
- the unrolled network (one FullyConnected pair per step and layer) computes the same function
  as the fused one, so it is written as ONNX `LSTM` ops too, from its per-layer weights;
- Convolution, BatchNorm, Pooling, relu, transpose, expand_dims, Reshape and FullyConnected map
  onto their ONNX twins; MXNet's special reshape codes are resolved by inferring the shapes at
  two batch sizes.

The model has one input, `data`: float32 (batch, width, height), the image's gray pixels / 255,
transposed as the MXNet network reads it; and one output, `probabilities`: float32
(batch, steps, classes), the softmax per step (class 0 the CTC blank, class i + 1 character i).
Its metadata_props hold the alphabet, the input size, the network and the text lengths.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import ast
import json
import os
from dataclasses import asdict

import mxnet as mx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lstm_ocr import checkpoint, model_check, models
from lstm_ocr.cli import ArgumentParser, InputError, run_main, same_file, write_atomically
from lstm_ocr.hyperparameters import ONNX_FORMAT, Hyperparams

OPSET = 17
INPUT, OUTPUT = "data", "probabilities"
# Row blocks of a 4-gate matrix, as ONNX's (i, o, f, c) taken from each MXNet layout.
FUSED_TO_ONNX_GATES = (0, 3, 1, 2)  # fused RNN op: (i, f, g, o)
UNROLLED_TO_ONNX_GATES = (0, 3, 2, 1)  # the example's unrolled cell: (i, g, f, o)
SHAPE_BATCHES = (2, 3)  # batch sizes at which shapes are inferred to tell batch-sized dimensions apart
IDENTITY_OPS = ("BlockGrad", "identity", "_copy", "Dropout", "stop_gradient")
ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _attr(attrs: dict, name: str, default=None):
    """An MXNet attribute (stored as text) as a Python value."""
    if name not in attrs:
        return default
    text = attrs[name]
    if text in ("True", "False"):
        return text == "True"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _reorder(matrix: np.ndarray, order: tuple) -> np.ndarray:
    return np.concatenate([np.split(matrix, 4)[gate] for gate in order])


class _Graph:
    """ONNX nodes and initializers being written."""

    def __init__(self):
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}__{self._count}"

    def constant(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        output = self.name(base)
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def lstm(self, x: str, layers: list[tuple], hidden: int, base: str) -> str:
        """Stacked LSTM layers on time-major x (T, N, in): each of `layers` is, per direction,
        (W_ih, W_hh, b_ih, b_hh) in ONNX's gate order; returns (T, N, directions * hidden)."""
        for number, directions in enumerate(layers):
            w = self.constant(f"{base}_l{number}_W", np.stack([d[0] for d in directions]).astype(np.float32))
            r = self.constant(f"{base}_l{number}_R", np.stack([d[1] for d in directions]).astype(np.float32))
            b = self.constant(f"{base}_l{number}_B", np.stack([np.concatenate([d[2], d[3]]) for d in directions])
                              .astype(np.float32))
            direction = "bidirectional" if len(directions) == 2 else "forward"
            y = self.node("LSTM", [x, w, r, b], f"{base}_l{number}", hidden_size=hidden, direction=direction)
            # Y is (T, directions, N, hidden); the next layer and MXNet want (T, N, directions * hidden).
            y = self.node("Transpose", [y], f"{base}_l{number}_t", perm=[0, 2, 1, 3])
            x = self.node("Reshape", [y, self.constant("shape", np.array([0, 0, -1], np.int64))], f"{base}_l{number}_y")
        return x


def fused_layers(flat: np.ndarray, input_size: int, hidden: int, num_layers: int, bidirectional: bool) -> list:
    """MXNet's fused LSTM parameter vector as per-layer, per-direction (W_ih, W_hh, b_ih, b_hh) in ONNX's
    gate order. The vector holds every layer's and direction's W_ih then W_hh, then every one's
    b_ih then b_hh."""
    directions = 2 if bidirectional else 1
    flat = np.asarray(flat, dtype=np.float32)
    shapes = []
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else directions * hidden
        shapes += [(4 * hidden, in_size), (4 * hidden, hidden)] * directions
    sizes = [int(np.prod(shape)) for shape in shapes] + [4 * hidden] * (2 * directions * num_layers)
    if sum(sizes) != flat.size:
        raise InputError(f"the fused LSTM parameter vector has {flat.size} values; {num_layers} layer(s) of "
                         f"{hidden} on inputs of {input_size} need {sum(sizes)}")
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    weights = [piece.reshape(shape) for piece, shape in zip(pieces, shapes, strict=False)]
    biases = pieces[len(shapes):]
    layers = []
    for layer in range(num_layers):
        per_direction = []
        for direction in range(directions):
            k = 2 * (layer * directions + direction)
            per_direction.append(tuple(_reorder(m, FUSED_TO_ONNX_GATES) for m in
                                       (weights[k], weights[k + 1], biases[k], biases[k + 1])))
        layers.append(per_direction)
    return layers


def unrolled_layers(params: dict, num_layers: int) -> list:
    """The unrolled network's `l{k}_i2h_*` / `l{k}_h2h_*` weights as ONNX LSTM layers (forward only)."""
    return [[tuple(_reorder(params[f"l{k}_{name}"], UNROLLED_TO_ONNX_GATES)
                   for name in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"))]
            for k in range(num_layers)]


def _shapes(pred_fc, hp: Hyperparams) -> list[dict]:
    """{output name: shape} of every internal output at each of SHAPE_BATCHES."""
    internals = pred_fc.get_internals()
    found = []
    for batch in SHAPE_BATCHES:
        _, shapes, _ = internals.infer_shape(data=(batch, hp.image_width, hp.image_height))
        found.append(dict(zip(internals.list_outputs(), shapes, strict=True)))
    return found


def _reshape_target(name: str, shapes: list[dict]) -> np.ndarray:
    """An ONNX Reshape target for an output whose shapes at two batch sizes are known: -1 where it
    grows with the batch, the inferred size elsewhere."""
    small, large = shapes[0][name], shapes[1][name]
    target = [-1 if a != b else a for a, b in zip(small, large, strict=True)]
    if target.count(-1) > 1:
        raise InputError(f"cannot export {name}: more than one of its dimensions grows with the batch")
    return np.array(target, np.int64)


def _translate(graph: _Graph, node: dict, inputs: "_Inputs", shapes: list[dict], values: dict) -> str:
    """One MXNet node as ONNX nodes; returns the name of its output."""
    op, name, attrs = node["op"], node["name"], node.get("attrs", {})
    if op in IDENTITY_OPS:
        return graph.node("Identity", inputs[:1], name)
    if op in ACTIVATIONS or op == "Activation":
        kind = ACTIVATIONS.get(op) or ACTIVATIONS.get(_attr(attrs, "act_type"))
        if kind is None:
            raise InputError(f"cannot export activation {_attr(attrs, 'act_type')!r} of {name}")
        return graph.node(kind, inputs[:1], name)
    if op == "transpose":
        axes = _attr(attrs, "axes")
        perm = list(axes) if axes else list(range(len(shapes[0][f"{name}_output"])))[::-1]
        return graph.node("Transpose", inputs[:1], name, perm=perm)
    if op == "expand_dims":
        return graph.node("Unsqueeze", [inputs[0], graph.constant("axes", np.array([_attr(attrs, "axis")], np.int64))],
                          name)
    if op in ("Reshape", "reshape", "Flatten", "flatten"):
        return graph.node("Reshape", [inputs[0], graph.constant("shape", _reshape_target(f"{name}_output", shapes))],
                          name)
    if op == "Convolution":
        kernel = list(_attr(attrs, "kernel"))
        pad = list(_attr(attrs, "pad", (0,) * len(kernel)))
        conv_inputs = inputs[:2] if _attr(attrs, "no_bias", False) else inputs[:3]
        return graph.node("Conv", conv_inputs, name, kernel_shape=kernel, pads=pad + pad,
                          strides=list(_attr(attrs, "stride", (1,) * len(kernel))),
                          dilations=list(_attr(attrs, "dilate", (1,) * len(kernel))),
                          group=int(_attr(attrs, "num_group", 1)))
    if op == "BatchNorm":
        if _attr(attrs, "axis", 1) != 1:
            raise InputError(f"cannot export BatchNorm {name} over axis {_attr(attrs, 'axis')}")
        gamma = values[node["gamma"]]
        if _attr(attrs, "fix_gamma", True):  # MXNet's default: gamma is taken as 1, whatever was saved
            gamma = np.ones_like(gamma)
        scale = graph.constant(f"{name}_scale", gamma.astype(np.float32))
        return graph.node("BatchNormalization", [inputs[0], scale, *inputs[2:5]], name,
                          epsilon=float(_attr(attrs, "eps", 1e-3)))
    if op == "Pooling":
        if _attr(attrs, "global_pool", False) or _attr(attrs, "pooling_convention", "valid") != "valid":
            raise InputError(f"cannot export Pooling {name}: only plain, 'valid' pooling is supported")
        kind = {"max": "MaxPool", "avg": "AveragePool"}.get(_attr(attrs, "pool_type", "max"))
        if kind is None:
            raise InputError(f"cannot export {_attr(attrs, 'pool_type')} pooling of {name}")
        kernel = list(_attr(attrs, "kernel"))
        pad = list(_attr(attrs, "pad", (0,) * len(kernel)))
        extra = {"count_include_pad": 1} if kind == "AveragePool" else {}
        return graph.node(kind, inputs[:1], name, kernel_shape=kernel, pads=pad + pad,
                          strides=list(_attr(attrs, "stride", (1,) * len(kernel))), **extra)
    if op == "FullyConnected":
        x = inputs[0]
        if len(shapes[0][node["input_output"]]) != 2:
            if not _attr(attrs, "flatten", True):
                raise InputError(f"cannot export FullyConnected {name} without flatten on a non-matrix input")
            x = graph.node("Flatten", [x], f"{name}_flat", axis=1)
        gemm_inputs = [x, inputs[1]] + ([] if _attr(attrs, "no_bias", False) else [inputs[2]])
        return graph.node("Gemm", gemm_inputs, name, transB=1)
    if op in ("softmax", "SoftmaxActivation"):
        return graph.node("Softmax", inputs[:1], name, axis=int(_attr(attrs, "axis", -1)))
    if op == "RNN":
        if _attr(attrs, "mode") != "lstm" or _attr(attrs, "projection_size") not in (None, "None") \
                or _attr(attrs, "lstm_state_clip_min") not in (None, "None"):
            raise InputError(f"cannot export RNN {name}: only a plain LSTM (no projection, no clipping) is supported")
        hidden = int(_attr(attrs, "state_size"))
        input_size = shapes[0][node["input_output"]][-1]
        layers = fused_layers(values[node["params"]], input_size, hidden, int(_attr(attrs, "num_layers", 1)),
                              bool(_attr(attrs, "bidirectional", False)))
        return graph.lstm(inputs[0], layers, hidden, name)
    raise InputError(f"cannot export MXNet op {op!r} ({name}) to ONNX")


def _output_key(nodes: list, node_id: int, index: int) -> str:
    node = nodes[node_id]
    return node["name"] if node["op"] == "null" else f"{node['name']}_output" + (str(index) if index else "")


class _Parameter:
    """A checkpoint's array, written as an initializer only once an ONNX node takes it as it is."""

    def __init__(self, name: str, value: np.ndarray):
        self.name, self.value, self.written = name, value, None


class _Inputs:
    """The ONNX names of a node's inputs, `_zeros` states left out; indexing writes a parameter's initializer."""

    def __init__(self, ids: list[int], outputs: dict, graph: _Graph):
        self._entries = [outputs[i] for i in ids if i in outputs]
        self._graph = graph

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        entry = self._entries[index]
        if isinstance(entry, _Parameter):
            if entry.written is None:
                entry.written = self._graph.constant(entry.name, entry.value.astype(np.float32))
            return entry.written
        return entry

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _walk(pred_fc, values: dict, hp: Hyperparams, graph: _Graph) -> str:
    """Translate every node up to pred_fc; returns the name of pred_fc's ONNX output."""
    nodes = json.loads(pred_fc.tojson())["nodes"]
    shapes = _shapes(pred_fc, hp)
    outputs: dict[int, str] = {}
    for node_id, node in enumerate(nodes):
        if node["op"] == "null":
            if node["name"] == INPUT:
                outputs[node_id] = INPUT
            elif node["name"] in values:
                outputs[node_id] = _Parameter(node["name"], values[node["name"]])
            else:
                raise InputError(f"the checkpoint has no parameter {node['name']!r}")
            continue
        if node["op"] == "_zeros":  # an RNN's initial state: ONNX's LSTM starts at zero when given none
            continue
        ids = [entry[0] for entry in node["inputs"]]
        names = [nodes[i]["name"] for i in ids]
        if node["op"] == "RNN" and any(nodes[i]["op"] != "_zeros" for i in ids[2:]):
            raise InputError(f"cannot export RNN {node['name']}: its initial states are not zeros")
        described = dict(node, input_output=_output_key(nodes, *node["inputs"][0][:2]),
                         gamma=names[1] if len(names) > 1 else None, params=names[1] if len(names) > 1 else None)
        outputs[node_id] = _translate(graph, described, _Inputs(ids, outputs, graph), shapes, values)
    return outputs[len(nodes) - 1]


def _unrolled(values: dict, hp: Hyperparams, graph: _Graph) -> str:
    """The unrolled network, written as the fused one it equals: transpose, stacked LSTM, flatten, pred_fc."""
    x = graph.node("Transpose", [INPUT], "time_major", perm=[1, 0, 2])
    x = graph.lstm(x, unrolled_layers(values, hp.num_lstm_layer), hp.num_hidden, "lstm")
    x = graph.node("Reshape", [x, graph.constant("shape", np.array([-1, hp.num_hidden], np.int64))], "steps")
    return graph.node("Gemm", [x, graph.constant("pred_fc_weight", values["pred_fc_weight"]),
                               graph.constant("pred_fc_bias", values["pred_fc_bias"])], "pred_fc", transB=1)


def build(symbol, arg_params: dict, aux_params: dict, hp: Hyperparams) -> onnx.ModelProto:
    """The ONNX model of a checkpoint's inference network, checked by onnx.checker."""
    values = {name: value.asnumpy() for name, value in {**arg_params, **aux_params}.items()}
    internals = symbol.get_internals()
    if "pred_fc_output" not in internals.list_outputs():
        raise InputError("the checkpoint's symbol has no pred_fc layer: not a network of this project")
    network = hp.network
    graph = _Graph()
    if network == "unrolled":
        logits = _unrolled(values, hp, graph)
    else:
        logits = _walk(internals["pred_fc_output"], values, hp, graph)
    probabilities = graph.node("Softmax", [logits], "softmax", axis=-1)
    # (T * N, classes), time-major as MXNet computes it, to (N, T, classes).
    steps = graph.node("Reshape", [probabilities, graph.constant("shape", np.array([-1, 0], np.int64))], "flat")
    classes, step_count = hp.num_classes, _steps(symbol, hp)
    steps = graph.node("Reshape", [steps, graph.constant("shape", np.array([step_count, -1, classes], np.int64))],
                       "per_step")
    graph.nodes.append(helper.make_node("Transpose", [steps], [OUTPUT], name=OUTPUT, perm=[1, 0, 2]))
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", hp.image_width, hp.image_height])]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", step_count, classes])]
    model = helper.make_model(helper.make_graph(graph.nodes, "lstm_ocr", inputs, outputs, graph.initializers),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lstm_ocr")
    model.ir_version = min(model.ir_version, 9)  # readable by ONNX Runtime 1.16 and later
    helper.set_model_props(model, metadata(hp, network, step_count))
    onnx.checker.check_model(model, full_check=True)
    return model


def _steps(symbol, hp: Hyperparams) -> int:
    """Output steps per image: pred_fc's rows at batch 1."""
    _, shapes, _ = symbol.get_internals()["pred_fc_output"].infer_shape(data=(1, hp.image_width, hp.image_height))
    return int(shapes[0][0])


def metadata(hp: Hyperparams, network: str, steps: int) -> dict[str, str]:
    """What a reader needs besides the graph: every hyperparameter (as the checkpoint's meta file holds
    them, so that how an image becomes the input travels too), and the alphabet, input size and text
    lengths on their own for a reader of another program."""
    return {"format": ONNX_FORMAT, "hyperparameters": json.dumps(asdict(hp)), "chars": hp.chars,
            "image_width": str(hp.image_width), "image_height": str(hp.image_height), "min_len": str(hp.min_len),
            "max_len": str(hp.max_len), "network": network, "steps": str(steps), "blank": "0",
            "input": f"{INPUT}: float32 (batch, {hp.image_width}, {hp.image_height}), gray pixels / 255, "
                     "one row per image column",
            "output": f"{OUTPUT}: float32 (batch, {steps}, {hp.num_classes}), softmax per step; class 0 is the "
                      "CTC blank, class i + 1 is character i of chars"}


def export(prefix: str, epoch: int, out: str) -> str:
    """Write checkpoint `prefix`/`epoch` as the ONNX model `out`; returns the network's name."""
    symbol, arg_params, aux_params, hp = checkpoint.load_with_hyperparams(prefix, epoch)
    if "pred_fc_output" in symbol.get_internals().list_outputs():  # else build() says what is missing
        try:
            model_check.check_bound_graph(symbol.get_internals()["pred_fc_output"], (hp.image_width, hp.image_height),
                                          arg_params | aux_params)
        except InputError as error:
            raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                             f"{checkpoint.symbol_path(prefix)}: {error}") from None
    try:
        model = build(symbol, arg_params, aux_params, hp)
    except (mx.base.MXNetError, KeyError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise checkpoint.CheckpointError(f"{checkpoint.params_path(prefix, epoch)} does not fit "
                                         f"{checkpoint.symbol_path(prefix)}: "
                                         f"{checkpoint.mxnet_reason(error)}") from None
    write_atomically(out, lambda path: onnx.save_model(model, path))
    return hp.network


def export_command(prefix: str, epoch: int | None, out: str, overwrite: bool) -> str:
    """Export as the command line asks (the latest epoch if None); refuses to replace an existing file
    unless `overwrite`, and never the checkpoint's own files. Returns the line to print."""
    given, prefix = prefix, models.resolve(prefix, epoch)
    epoch = epoch if epoch is not None else checkpoint.latest_epoch(prefix)
    own_files = (checkpoint.symbol_path(prefix), checkpoint.meta_path(prefix), checkpoint.params_path(prefix, epoch))
    if any(same_file(out, path) for path in own_files):
        raise InputError(f"--out {out} is a file of the checkpoint itself; choose a new name")
    if os.path.lexists(out) and not overwrite:
        raise InputError(f"--out {out} already exists; choose a new name, or pass --overwrite to replace it")
    if os.path.isdir(out):
        raise InputError(f"--out {out} is a folder; give the .onnx file to write")
    network = export(prefix, epoch, out)
    source = checkpoint.params_path(prefix, epoch) if prefix == given else f"{given}-{epoch:04d}.params (shipped)"
    return f"{network} checkpoint {source} exported as ONNX {out}"


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="ocr", help="checkpoint prefix, or a shipped model's name "
                                                         "(general, alnum, arith, ocr) [default ocr]")
    parser.add_argument("--epoch", type=int, default=None, help="its epoch [default: the latest saved]")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    print(export_command(args.prefix, args.epoch, args.out, args.overwrite))


def command() -> None:
    """`lstm-ocr-export` and the root script: main() with one `error:` line for a refusal (run_main)."""
    run_main(main)


if __name__ == "__main__":
    run_main(main)
