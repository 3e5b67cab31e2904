"""Models and checkpoints are untrusted input: each file is checked here before MXNet or ONNX Runtime
builds, allocates or runs anything from it, and refused with one InputError naming the file and why.

- MXNet symbol JSON (`P-symbol.json`): only the ops this project's networks use (no `_Native`, whose
  attributes hold a raw C pointer, no `Custom` but the project's own WarpCTC, no subgraphs), inputs that
  name earlier nodes, integer attributes and `_zeros` shapes of a bounded size.
- MXNet's NDArray files (`.params`, `.states`): every declared array header is parsed, and the sizes
  they declare must add up to the file's own size, before `mx.nd.load` allocates anything.
- A bound MXNet graph: shape inference (no allocation) must give every parameter its saved shape and
  keep every intermediate output within MAX_GRAPH_ELEMENTS at the batch size.
- ONNX models: parsed and checked with the `onnx` package (its checker) from the bytes read once; only
  the ops `onnx_export.py` writes, from the default domain, no subgraphs (Loop, Scan, If), no local
  functions, no external or sparse data; one input and one output whose shapes agree with the
  metadata's hyperparameters. ONNX Runtime then builds the session from those same bytes.
- JSON files (meta, history): a bounded size and nesting depth.

Imports nothing heavy at module level: the ONNX venv (no MXNet) uses it too.
"""

import json
import os
import re
import stat
import struct
from collections.abc import Callable

from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import UPPER_LIMITS

MAX_SYMBOL_BYTES = 16 * 1024 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024  # a meta or history file
MAX_JSON_DEPTH = 32
MAX_NODES = 100_000
MAX_DIM = 1 << 16  # an integer attribute of a node: a size, a kernel, a dimension
MAX_STATE_ELEMENTS = 1 << 22  # elements of a `_zeros` state per batch row
MAX_GRAPH_ELEMENTS = 1 << 28  # elements of every parameter and intermediate output of a bound graph
MAX_TENSOR_ELEMENTS = 1 << 28  # elements one ONNX tensor may declare
MAX_ARRAYS = 100_000  # arrays in one NDArray file
MAX_NAME_BYTES = 4096
MAX_NDIM = 8
MAX_OUTPUT_STEPS = UPPER_LIMITS["seq_length"]  # a network emits at most a step per input column

# Every op lstm.py builds (fused, unrolled and crnn networks, ctc and warpctc losses, the inference
# softmax), and the variables ("null").
MXNET_OPS = frozenset({
    "null", "BatchNorm", "BlockGrad", "CTCLoss", "ctc_loss", "Cast", "Concat", "Convolution", "FullyConnected",
    "MakeLoss", "Pooling", "RNN", "Reshape", "SliceChannel", "_zeros", "elemwise_add", "elemwise_mul",
    "expand_dims", "relu", "sigmoid", "softmax", "tanh", "transpose", "Activation", "Dropout", "identity",
})
CUSTOM_OPS = frozenset({"WarpCTC"})  # Python ops registered by this project (warpctc.py)
NODE_KEYS = frozenset({"op", "name", "inputs", "attrs", "attr", "param", "control_deps"})

# NDArray files (MXNet 1.x): a list magic, a reserved word, the arrays, then their names.
LIST_MAGIC = 0x112
ARRAY_MAGICS = {0xF993FAC9: "v2", 0xF993FACA: "v3"}  # dense arrays with a storage type (MXNet >= 1.0)
DTYPE_BYTES = {0: 4, 1: 8, 2: 2, 3: 1, 4: 4, 5: 1, 6: 8, 7: 1}  # float32 float64 float16 uint8 int32 int8 int64 bool

# The ops onnx_export.py writes.
ONNX_OPS = frozenset({
    "Identity", "Relu", "Sigmoid", "Tanh", "Transpose", "Unsqueeze", "Reshape", "Conv", "BatchNormalization",
    "MaxPool", "AveragePool", "Flatten", "Gemm", "Softmax", "LSTM",
})
ONNX_DOMAINS = ("", "ai.onnx")


def regular_size(path: str, what: str, limit: int) -> int:
    """The size of a regular file, or InputError (missing, not a file, over `limit`)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise InputError(f"{what} {path}: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {path} is not a regular file")
    if info.st_size > limit:
        raise InputError(f"{what} {path} is {info.st_size} bytes, over the limit of {limit}")
    return info.st_size


def _depth(value: object) -> int:
    """The nesting depth of parsed JSON, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            todo += [(v, level + 1) for v in item.values()]
        elif isinstance(item, list):
            todo += [(v, level + 1) for v in item]
    return deepest


def parse_json(text: str | bytes, what: str) -> object:
    """JSON text of a bounded size and nesting depth, parsed, or InputError starting with `what`
    (for example `P-meta.json is not a valid checkpoint meta file`)."""
    if len(text) > MAX_JSON_BYTES:
        raise InputError(f"{what}: it is {len(text)} bytes, over the limit of {MAX_JSON_BYTES}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputError(f"{what}: it is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:
        raise InputError(f"{what}: not JSON ({error})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise InputError(f"{what}: it is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def load_json(path: str, what: str) -> object:
    """A JSON file (meta, history) of a bounded size and depth, parsed, or InputError starting with `what`."""
    regular_size(path, "file", MAX_JSON_BYTES)
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_JSON_BYTES + 1)
    except OSError as error:
        raise InputError(f"{what}: {error.strerror}") from None
    return parse_json(text, what)


def _integers(text: str) -> list[int]:
    return [int(found) for found in re.findall(r"\d+", text)]


def _shape_elements(text: str) -> int:
    """Elements of an MXNet shape attribute, its batch-sized zeros left out."""
    elements = 1
    for dim in _integers(text):
        elements *= max(dim, 1)
    return elements


def check_symbol_json(text: str | bytes, path: str) -> None:
    """InputError unless `text` is an MXNet symbol of this project's ops (see the module's doc)."""
    graph = parse_json(text, f"{path} is not a usable MXNet symbol file")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list) or not nodes or not isinstance(graph.get("heads"), list):
        raise InputError(f"{path} is not an MXNet symbol file (no nodes and heads)")
    if len(nodes) > MAX_NODES:
        raise InputError(f"{path} has {len(nodes)} nodes, over the limit of {MAX_NODES}")
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("op"), str) or not isinstance(node.get("name"), str):
            raise InputError(f"{path} node {index} is not an MXNet node (op, name, inputs)")
        op, name = node["op"], node["name"]
        extra = set(node) - NODE_KEYS
        if extra:
            raise InputError(f"{path} node {name!r} has {sorted(extra)[0]!r}, which no network of this project has")
        attrs = node.get("attrs", node.get("attr", node.get("param", {})))
        if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise InputError(f"{path} node {name!r} has attributes that are not text")
        if op == "Custom" and attrs.get("op_type") in CUSTOM_OPS:
            pass
        elif op not in MXNET_OPS:
            shown = f"Custom op_type={attrs.get('op_type')!r}" if op == "Custom" else repr(op)
            raise InputError(f"{path} uses op {shown} ({name}), which no network of this project uses: refused "
                             "(a checkpoint must not run code)")
        inputs = node.get("inputs", [])
        if not isinstance(inputs, list) or not all(
                isinstance(entry, list) and 2 <= len(entry) <= 3 and all(type(n) is int for n in entry)
                and 0 <= entry[0] < index and entry[1] >= 0 for entry in inputs):
            raise InputError(f"{path} node {name!r} has inputs that are not earlier nodes")
        for key, value in attrs.items():
            if key.startswith("__") and key.endswith("__"):  # a variable's annotations (__init__, __shape__)
                continue
            big = [n for n in _integers(value) if n > MAX_DIM]
            if big:
                raise InputError(f"{path} node {name!r} has {key}={value[:40]!r}, over the limit of {MAX_DIM}")
        if op == "_zeros" and _shape_elements(attrs.get("shape", "")) > MAX_STATE_ELEMENTS:
            raise InputError(f"{path} node {name!r} declares a state of shape {attrs.get('shape')}, over the limit "
                             f"of {MAX_STATE_ELEMENTS} elements")
    for head in graph["heads"]:
        if not (isinstance(head, list) and head and type(head[0]) is int and 0 <= head[0] < len(nodes)):
            raise InputError(f"{path} has an output that is not one of its nodes")


def read_symbol(path: str) -> str:
    """The text of a symbol file, checked (check_symbol_json), for mx.sym.load_json."""
    regular_size(path, "symbol file", MAX_SYMBOL_BYTES)
    with open(path, "rb") as file:
        data = file.read(MAX_SYMBOL_BYTES + 1)
    check_symbol_json(data, path)
    return data.decode("utf-8")


class _Cursor:
    """Reads little-endian fields of a file, never past its end."""

    def __init__(self, file, size: int, path: str):
        self.file, self.size, self.path = file, size, path

    def take(self, count: int) -> bytes:
        if count > self.size - self.file.tell():
            raise InputError(f"{self.path} declares {count} more bytes than it holds: corrupt or not an MXNet "
                             "array file")
        return self.file.read(count)

    def skip(self, count: int) -> None:
        if count > self.size - self.file.tell():
            raise InputError(f"{self.path} declares an array of {count} bytes, more than the file holds: corrupt "
                             "or not an MXNet array file")
        self.file.seek(count, os.SEEK_CUR)

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def check_ndarray_file(path: str, limit: int) -> None:
    """InputError unless `path` is an MXNet NDArray file (`mx.nd.save`: dense arrays) whose declared
    arrays and names add up to its size exactly; read header by header, nothing allocated."""
    size = regular_size(path, "array file", limit)
    with open(path, "rb") as file:
        cursor = _Cursor(file, size, path)
        magic, _ = cursor.unpack("QQ")
        if magic != LIST_MAGIC:
            raise InputError(f"{path} is not an MXNet array file (.params / .states)")
        (count,) = cursor.unpack("Q")
        if count > MAX_ARRAYS:
            raise InputError(f"{path} declares {count} arrays, over the limit of {MAX_ARRAYS}")
        for _ in range(count):
            array_magic, storage = cursor.unpack("Ii")
            if array_magic not in ARRAY_MAGICS:
                raise InputError(f"{path} holds an array in a format not read here (only MXNet 1.x dense arrays)")
            if storage != 0:
                raise InputError(f"{path} holds a sparse array; checkpoints here are dense")
            (ndim,) = cursor.unpack("i")
            if not 0 <= ndim <= MAX_NDIM:
                raise InputError(f"{path} declares an array of {ndim} dimensions")
            if ndim == 0:
                continue  # an empty array: no context, type or data follow
            dims = cursor.unpack(f"{ndim}q")
            _, _, dtype = cursor.unpack("iii")
            if any(dim < 0 for dim in dims) or dtype not in DTYPE_BYTES:
                raise InputError(f"{path} declares an array of shape {dims} and type {dtype}: not one MXNet saves")
            elements = 1
            for dim in dims:
                elements *= dim
            cursor.skip(elements * DTYPE_BYTES[dtype])
        (names,) = cursor.unpack("Q")
        if names not in (0, count):
            raise InputError(f"{path} declares {names} names for {count} arrays")
        for _ in range(names):
            (length,) = cursor.unpack("Q")
            if length > MAX_NAME_BYTES:
                raise InputError(f"{path} declares a name of {length} bytes, over the limit of {MAX_NAME_BYTES}")
            cursor.take(length)
        if file.tell() != size:
            raise InputError(f"{path} has {size - file.tell()} bytes after its arrays: corrupt or not an MXNet "
                             "array file")


def _graph_values(internals, data_shape: tuple[int, ...]) -> tuple[list, int]:
    """(argument and auxiliary shapes, the number of values of every argument and output) at `data_shape`."""
    import mxnet as mx

    try:
        arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=data_shape)
    except (mx.base.MXNetError, ValueError, TypeError) as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise InputError(f"its graph does not take a {data_shape} input ({lines[-1] if lines else error})") from None
    if arg_shapes is None:
        raise InputError("the shapes of its graph cannot be inferred from its input")
    total = 0
    for shape in arg_shapes + out_shapes + aux_shapes:
        elements = 1
        for dim in shape:
            elements *= dim
        total += elements
    return arg_shapes + aux_shapes, total


def check_bound_graph(symbol, image_shape: tuple[int, int], params: dict) -> int:
    """The values (parameters aside) one more image adds to the graph; InputError (the reason alone,
    for the caller to name the files) unless shape inference gives every saved parameter its shape and
    the graph at one image stays within MAX_GRAPH_ELEMENTS. Nothing is allocated. A reader passes at
    most MAX_GRAPH_ELEMENTS / this many images through the graph at once (`rows_per_pass`)."""
    internals = symbol.get_internals()
    shapes, one = _graph_values(internals, (1, *image_shape))
    names = internals.list_arguments() + internals.list_auxiliary_states()
    for name, shape in zip(names, shapes, strict=True):
        if name in params and tuple(params[name].shape) != tuple(shape):
            raise InputError(f"its {name} is {tuple(params[name].shape)}, the graph's {tuple(shape)}")
    _, two = _graph_values(internals, (2, *image_shape))
    if one > MAX_GRAPH_ELEMENTS:
        raise InputError(f"its graph needs {one} values for one image, over the limit of {MAX_GRAPH_ELEMENTS}")
    return max(1, two - one)


def check_output_steps(steps: int, image_width: int, path: str) -> None:
    """InputError unless a model's output has at most one step per input column (this project's
    networks: seq_length steps, fewer after a CNN's pooling), and at most MAX_OUTPUT_STEPS: decoding,
    its confidences and a text's length all grow with the steps."""
    most = most_output_steps(image_width)
    if not 1 <= steps <= most:
        raise InputError(f"{path}: its output has {steps} steps per image, over the limit of {most} (one per input "
                         "column): not a network of this project")


def most_output_steps(image_width: int) -> int:
    """The most steps per image a model of input width `image_width` may output (check_output_steps)."""
    return min(image_width, MAX_OUTPUT_STEPS)


def output_steps(symbol, image_shape: tuple[int, int]) -> int:
    """The steps an MXNet inference symbol emits for one image (its output is time-major, steps x 1 rows)."""
    import mxnet as mx

    try:
        _, out_shapes, _ = symbol.infer_shape(data=(1, *image_shape))
    except (mx.base.MXNetError, ValueError, TypeError) as error:
        raise InputError(f"its output's shape cannot be inferred ({' '.join(str(error).split())[:200]})") from None
    return int(out_shapes[0][0]) if out_shapes and len(out_shapes[0]) == 2 else -1


def rows_per_pass(values_per_image: int) -> int:
    """Images one forward pass may hold so that their values stay within MAX_GRAPH_ELEMENTS."""
    return max(1, MAX_GRAPH_ELEMENTS // max(1, values_per_image))


def _tensor_elements(tensor) -> int:
    elements = 1
    for dim in tensor.dims:
        elements *= dim
    return elements


def _check_onnx_tensor(tensor, where: str, path: str) -> None:
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        raise InputError(f"{path}: {where} {tensor.name!r} keeps its data in another file (external data is "
                         "refused: a model is one file)")
    if any(dim < 0 for dim in tensor.dims) or _tensor_elements(tensor) > MAX_TENSOR_ELEMENTS:
        raise InputError(f"{path}: {where} {tensor.name!r} declares shape {list(tensor.dims)}")


def _dims(value_info) -> list:
    """The dims of a graph input or output: ints, or names for symbolic ones."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _onnx_values(model, batch: int, path: str) -> int:
    """Values of every intermediate and output of `model` at `batch` images, by ONNX shape inference on
    a copy without its weights' data (their shapes stand in as inputs); InputError if any shape stays
    unknown."""
    from onnx import helper, shape_inference

    graph = model.graph
    small = [tensor for tensor in graph.initializer if _tensor_elements(tensor) <= 64]  # shape constants
    weights = [helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
               for tensor in graph.initializer if _tensor_elements(tensor) > 64]
    data = type(graph.input[0])()
    data.CopyFrom(next(value for value in graph.input if value.name not in {t.name for t in graph.initializer}))
    data.type.tensor_type.shape.dim[0].Clear()
    data.type.tensor_type.shape.dim[0].dim_value = batch
    output = type(graph.output[0])()
    output.CopyFrom(graph.output[0])
    output.type.tensor_type.shape.dim[0].Clear()
    light = helper.make_model(helper.make_graph(graph.node, "check", [data, *weights], [output], small),
                              opset_imports=model.opset_import)
    light.ir_version = model.ir_version
    try:
        inferred = shape_inference.infer_shapes(light, strict_mode=True, data_prop=True)
    except Exception as error:  # onnx's InferenceError and the checker's errors
        raise InputError(f"{path}: the shapes of its graph cannot be inferred ({' '.join(str(error).split())[:200]})") \
            from None
    total = 0
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        elements = 1
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                raise InputError(f"{path}: the shape of {value.name!r} cannot be inferred at {batch} images")
            elements *= dim.dim_value
        total += elements
    return total


def check_onnx(data: bytes, path: str, hyperparams: Callable[[dict], object]) -> tuple:
    """InputError unless `data` is an ONNX model of this project's ops (see the module's doc). Returns
    the hyperparameters `hyperparams` makes of its metadata, checked against its input and output, and
    the values one more image adds to the graph (see rows_per_pass)."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import AttributeProto

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise InputError(f"{path} is not a readable ONNX model ({' '.join(str(error).split())[:200]})") from None
    if len(model.functions):
        raise InputError(f"{path} defines functions of its own; refused (only the ops onnx_export.py writes)")
    for opset in model.opset_import:
        if opset.domain not in ONNX_DOMAINS:
            raise InputError(f"{path} imports the operator domain {opset.domain!r}; only the standard one is read")
    graph = model.graph
    if len(graph.sparse_initializer):
        raise InputError(f"{path} has sparse initializers, which onnx_export.py never writes")
    for tensor in graph.initializer:
        _check_onnx_tensor(tensor, "initializer", path)
    for node in graph.node:
        if node.domain not in ONNX_DOMAINS or node.op_type not in ONNX_OPS:
            raise InputError(f"{path} uses op {node.op_type!r} ({node.name}), which onnx_export.py never writes: "
                             "refused")
        for attribute in node.attribute:
            if attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) or attribute.ref_attr_name:
                raise InputError(f"{path} node {node.name!r} holds a subgraph; refused")
            if attribute.type == AttributeProto.TENSOR:
                _check_onnx_tensor(attribute.t, "attribute", path)
            if attribute.type == AttributeProto.TENSORS:
                for tensor in attribute.tensors:
                    _check_onnx_tensor(tensor, "attribute", path)
            big = [n for n in ([attribute.i] if attribute.type == AttributeProto.INT else list(attribute.ints))
                   if abs(n) > MAX_DIM]
            if big:
                raise InputError(f"{path} node {node.name!r} has {attribute.name}={big[0]}, over the limit of "
                                 f"{MAX_DIM}")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as error:
        raise InputError(f"{path} is not a valid ONNX model ({' '.join(str(error).split())[:200]})") from None
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise InputError(f"{path} does not have one input and one output")
    from onnx import TensorProto

    for value in (inputs[0], graph.output[0]):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise InputError(f"{path}: its {value.name!r} is not a float32 tensor (onnx_export.py writes float32 "
                             "images in and probabilities out)")
    hp = hyperparams({prop.key: prop.value for prop in model.metadata_props})
    wanted_in = [hp.image_width, hp.image_height]
    found_in, found_out = _dims(inputs[0]), _dims(graph.output[0])
    if len(found_in) != 3 or found_in[1:] != wanted_in:
        raise InputError(f"{path}: its metadata says images of {wanted_in[0]}x{wanted_in[1]}, its graph takes "
                         f"{found_in}")
    if len(found_out) != 3 or found_out[2] != hp.num_classes or not (
            isinstance(found_out[1], int) and 1 <= found_out[1] <= MAX_DIM):
        raise InputError(f"{path}: its metadata says {hp.num_classes} classes, its graph gives {found_out}")
    check_output_steps(found_out[1], hp.image_width, path)
    one = _onnx_values(model, 1, path)
    if one > MAX_GRAPH_ELEMENTS:
        raise InputError(f"{path}: its graph needs {one} values for one image, over the limit of {MAX_GRAPH_ELEMENTS}")
    return hp, max(1, _onnx_values(model, 2, path) - one)
