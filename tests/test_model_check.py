"""Models and checkpoints as untrusted input (model_check.py): hostile files are refused before MXNet or
ONNX Runtime builds, allocates or runs anything from them."""

import json
import os
import shutil
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SHIPPED, one_line_error, run_script
from lstm_ocr import checkpoint, model_check
from lstm_ocr.cli import InputError
from lstm_ocr.reader import Reader


def _copy(prefix: str, tmp_path) -> str:
    """The checkpoint of `prefix` (epoch 3) copied under tmp_path."""
    for path in (checkpoint.symbol_path(prefix), checkpoint.meta_path(prefix), checkpoint.params_path(prefix, 3)):
        shutil.copy(path, tmp_path / os.path.basename(path))
    return str(tmp_path / os.path.basename(prefix))


def _edit_symbol(prefix: str, edit) -> None:
    path = checkpoint.symbol_path(prefix)
    graph = json.load(open(path))
    edit(graph["nodes"])
    json.dump(graph, open(path, "w"))


def _node(nodes: list, op: str) -> dict:
    return next(node for node in nodes if node["op"] == op)


@pytest.mark.parametrize("op, attrs, words", [
    ("_Native", {"info": "0x41414141", "need_top_grad": "True"}, "'_Native'"),
    ("_NDArray", {"info": "0x41414141"}, "'_NDArray'"),
    ("Custom", {"op_type": "Anything"}, "Custom op_type='Anything'"),
    ("_full", {"shape": "(1000, 1000, 1000)", "value": "1"}, "'_full'"),
])
def test_an_op_outside_the_allowlist_is_refused_before_any_graph_is_built(model, sample, tmp_path, op, attrs, words):
    prefix = _copy(model, tmp_path)

    def swap(nodes):
        node = _node(nodes, "transpose")
        node["op"], node["attrs"] = op, attrs
    _edit_symbol(prefix, swap)
    with pytest.raises(checkpoint.CheckpointError, match="which no network of this project uses"):
        checkpoint.load(prefix, 3)
    if op == "_Native":  # one run of the command line: one line, no segfault
        one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "3", sample), words, "refused")


def test_a_big_zeros_state_and_huge_attributes_are_refused(model, tmp_path):
    prefix = _copy(model, tmp_path)
    _edit_symbol(prefix, lambda nodes: _node(nodes, "_zeros")["attrs"].update(shape="(2000, 0, 60000)"))
    with pytest.raises(checkpoint.CheckpointError, match="declares a state of shape"):
        checkpoint.load(prefix, 3)
    _edit_symbol(prefix, lambda nodes: _node(nodes, "_zeros")["attrs"].update(shape="(2, 0, 100000000)"))
    with pytest.raises(checkpoint.CheckpointError, match="over the limit of 65536"):
        checkpoint.load(prefix, 3)


def test_a_graph_that_does_not_fit_its_params_is_refused_before_it_is_bound(model, sample, tmp_path):
    prefix = _copy(model, tmp_path)
    _edit_symbol(prefix, lambda nodes: _node(nodes, "FullyConnected")["attrs"].update(num_hidden="60000"))
    with pytest.raises(InputError, match="its pred_fc_weight is"):
        Reader(prefix, 3)


def test_nodes_must_take_earlier_nodes_and_nothing_else(model, tmp_path):
    prefix = _copy(model, tmp_path)
    _edit_symbol(prefix, lambda nodes: _node(nodes, "transpose")["inputs"].append([10 ** 6, 0, 0]))
    with pytest.raises(checkpoint.CheckpointError, match="inputs that are not earlier nodes"):
        checkpoint.load(prefix, 3)
    _edit_symbol(prefix, lambda nodes: _node(nodes, "transpose").update(subgraphs=[{}]))
    with pytest.raises(checkpoint.CheckpointError, match="has 'subgraphs'"):
        checkpoint.load(prefix, 3)


def test_the_projects_own_symbols_pass(model):
    for prefix in (model, os.path.join(SHIPPED, "general"), os.path.join(SHIPPED, "ocr")):
        model_check.read_symbol(checkpoint.symbol_path(prefix))


def _params_header(dims: tuple[int, ...], dtype: int = 0, name: bytes = b"arg:x") -> bytes:
    """An NDArray file of one dense array declaring `dims`, holding no data, and its name."""
    array = struct.pack("<Iii", 0xF993FAC9, 0, len(dims)) + struct.pack(f"<{len(dims)}q", *dims)
    array += struct.pack("<iii", 1, 0, dtype)
    return struct.pack("<QQQ", 0x112, 0, 1) + array + struct.pack("<QQ", 1, len(name)) + name


def test_a_params_file_declaring_gigabytes_is_refused_before_mxnet_allocates(model, sample, tmp_path):
    prefix = _copy(model, tmp_path)
    bomb = _params_header((1000, 1000, 800))  # 3.2 GB of float32, declared in 80 bytes
    assert len(bomb) < 100
    with open(checkpoint.params_path(prefix, 3), "wb") as file:
        file.write(bomb)
    with pytest.raises(checkpoint.CheckpointError, match="declares an array of 3200000000 bytes, more than the file"):
        checkpoint.load(prefix, 3)
    one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "3", sample), "more than the file")
    with open(checkpoint.params_path(prefix, 3), "wb") as file:
        file.write(struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iii", 0xF993FAC9, 0, 1) + struct.pack("<q", 2)
                   + struct.pack("<iii", 1, 0, 0) + b"\0" * 8 + struct.pack("<Q", 1) + struct.pack("<Q", 2 ** 40))
    with pytest.raises(checkpoint.CheckpointError, match="declares a name of"):
        checkpoint.load(prefix, 3)


def test_a_real_params_file_passes_and_any_cut_or_tail_is_refused(model, tmp_path):
    path = checkpoint.params_path(model, 3)
    model_check.check_ndarray_file(path, 1 << 30)
    data = open(path, "rb").read()
    for bad in (data[:-1], data + b"\0", data[:40]):
        (tmp_path / "bad.params").write_bytes(bad)
        with pytest.raises(InputError, match="bytes"):
            model_check.check_ndarray_file(str(tmp_path / "bad.params"), 1 << 30)


def test_negative_or_malformed_state_counts_are_refused(tmp_path):
    import mxnet as mx

    for arrays in ({"__num_update": mx.nd.array([-5], dtype="int64")},
                   {"__num_update": mx.nd.array([3], dtype="int64"), "count|0": mx.nd.array([-1], dtype="int64")},
                   {"__num_update": mx.nd.array([3], dtype="int64"), "bogus|0": mx.nd.array([1])},
                   {"__num_update": mx.nd.array([1.5, 2.5])}):
        path = str(tmp_path / "x.states")
        mx.nd.save(path, arrays)
        with pytest.raises(checkpoint.CheckpointError, match="malformed optimizer state"):
            checkpoint.read_optimizer_states(path)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 40 + "1" + "}" * 40])
def test_deeply_nested_meta_and_history_files_are_one_line(model, sample, tmp_path, text):
    prefix = _copy(model, tmp_path)
    with open(checkpoint.meta_path(prefix), "w") as file:
        file.write(text)
    with pytest.raises(checkpoint.CheckpointError, match="not a valid checkpoint meta file: it is nested deeper"):
        checkpoint.load_hyperparams(prefix)
    if text.startswith("["):  # one run of the command line
        one_line_error(run_script("lstm_ocr_infer.py", "--prefix", prefix, "--epoch", "3", sample),
                       "not a valid checkpoint meta file", "nested deeper than")
    from lstm_ocr import curves as training_curves

    with open(training_curves.history_path(prefix), "w") as file:
        file.write(text)
    with pytest.raises(InputError, match="nested deeper than"):
        training_curves.load(prefix, 3)


def _hostile(onnx_model: str, tmp_path, edit) -> str:
    model = onnx.load(onnx_model)
    edit(model)
    path = str(tmp_path / "hostile.onnx")
    onnx.save_model(model, path)
    return path


def _loop(model) -> None:
    """A Loop of 10^11 iterations before the output (ONNX Runtime would never return)."""
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])])
    model.graph.initializer.extend([numpy_helper.from_array(np.array(10 ** 11, np.int64), "trips"),
                                    numpy_helper.from_array(np.array(True), "cond")])
    model.graph.node.insert(0, helper.make_node("Loop", ["trips", "cond"], [], body=body))


def _constant_of_shape(model) -> None:
    model.graph.initializer.append(numpy_helper.from_array(np.array([30000, 30000], np.int64), "big_shape"))
    model.graph.node.insert(0, helper.make_node("ConstantOfShape", ["big_shape"], ["big"]))


def _external(model) -> None:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"


def _metadata(model) -> None:
    for prop in model.metadata_props:
        if prop.key == "hyperparameters":
            saved = json.loads(prop.value)
            saved["seq_length"] = 2000
            prop.value = json.dumps(saved)


def _domain(model) -> None:
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.graph.node[0].domain = "com.microsoft"


def _int_input(model) -> None:
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    model.graph.node.insert(0, helper.make_node("Identity", ["data"], ["unused"]))


@pytest.mark.parametrize("edit, words", [
    (_int_input, "is not a float32 tensor"),
    (_loop, "op 'Loop'"), (_constant_of_shape, "op 'ConstantOfShape'"), (_external, "external data is refused"),
    (_metadata, "its metadata says images of 2000x30"), (_domain, "operator domain 'com.microsoft'"),
])
def test_hostile_onnx_models_are_refused_before_onnx_runtime_builds_them(onnx_model, tmp_path, sample, edit, words):
    path = _hostile(onnx_model, tmp_path, edit)
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        Reader.onnx(path)
    if edit is _loop:  # one run of the command line (the ONNX venv's Python reads the same way)
        one_line_error(run_script("lstm_ocr_infer.py", "--onnx", path, sample), words)


def test_the_exported_model_passes(onnx_model):
    assert Reader.onnx(onnx_model).hp.num_classes == 11


def test_a_pass_holds_no_more_images_than_the_graph_bound_allows(model, sample, monkeypatch):
    whole = Reader(model, 3).read_many([sample] * 5)
    per_image = model_check.MAX_GRAPH_ELEMENTS // Reader(model, 3).model.rows
    monkeypatch.setattr(model_check, "MAX_GRAPH_ELEMENTS", 2 * per_image + 1)
    reader = Reader(model, 3)
    assert reader.model.rows == 2  # 5 images in passes of 2, 2 and 1
    assert [(r.text, round(r.confidence, 5)) for r in reader.read_many([sample] * 5)] == \
        [(r.text, round(r.confidence, 5)) for r in whole]


def test_an_onnx_graph_is_bounded_per_image_and_read_in_bounded_runs(onnx_model, sample, monkeypatch):
    whole = Reader.onnx(onnx_model).read_many([sample] * 5)
    monkeypatch.setattr(model_check, "MAX_GRAPH_ELEMENTS", 1000)
    with pytest.raises(InputError, match="values for one image, over the limit of 1000"):
        Reader.onnx(onnx_model)
    monkeypatch.undo()
    rows = Reader.onnx(onnx_model).model.rows
    monkeypatch.setattr(model_check, "MAX_GRAPH_ELEMENTS", 2 * model_check.MAX_GRAPH_ELEMENTS // rows)
    reader = Reader.onnx(onnx_model)
    assert reader.model.rows == 2
    assert [r.text for r in reader.read_many([sample] * 5)] == [r.text for r in whole]


def _long_output(onnx_model: str, tmp_path, steps_per_column: int) -> str:
    """A model of allowed ops that passes every other check and emits `steps_per_column` x 80 x 30 / 30
    steps per image: Reshape, a 1x1 Conv to the classes, Transpose, Softmax."""
    exported = onnx.load(onnx_model)
    classes = 11
    steps = 80 * steps_per_column
    nodes = [helper.make_node("Reshape", ["data", "shape"], ["flat"]),
             helper.make_node("Conv", ["flat", "w", "b"], ["conv"], kernel_shape=[1]),
             helper.make_node("Transpose", ["conv"], ["steps"], perm=[0, 2, 1]),
             helper.make_node("Softmax", ["steps"], ["out"], axis=2)]
    width = 80 * 30 // steps
    initializers = [numpy_helper.from_array(np.array([0, width, steps], np.int64), "shape"),
                    numpy_helper.from_array(np.ones((classes, width, 1), np.float32), "w"),
                    numpy_helper.from_array(np.zeros(classes, np.float32), "b")]
    graph = helper.make_graph(nodes, "long", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                            ["batch", 80, 30])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", steps, classes])],
                              initializers)
    model = helper.make_model(graph, opset_imports=exported.opset_import)
    model.ir_version = exported.ir_version
    model.metadata_props.extend(exported.metadata_props)
    path = str(tmp_path / f"long{steps}.onnx")
    onnx.save_model(model, path)
    return path


def test_a_model_whose_output_is_long_is_refused_at_load_time(onnx_model, tmp_path, sample):
    """Decoding, confidences and the --answer search grow with the output's steps: a model emitting
    more than one step per input column is refused with one line before anything is read."""
    assert Reader.onnx(_long_output(onnx_model, tmp_path, 1)).read(sample).error is None  # 80 steps pass
    path = _long_output(onnx_model, tmp_path, 30)  # 2400 steps
    with pytest.raises(InputError, match="2400 steps per image, over the limit of 80"):
        Reader.onnx(path)
    one_line_error(run_script("lstm_ocr_infer.py", "--onnx", path, "--answer", sample), "2400 steps")


def test_confidences_are_computed_in_chunks_of_bounded_memory(monkeypatch):
    """Long outputs decode a few samples at a time: the same readings, a peak that does not grow with
    the batch."""
    import tracemalloc

    from lstm_ocr import decode as ctc_decode

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(11), size=(8, 256)).astype(np.float32)
    whole = ctc_decode.decode_with_confidence(probs)
    peaks = {}
    for rows in (8, 1):
        monkeypatch.setattr(ctc_decode, "MAX_DECODE_VALUES", rows * 256 * (2 * 256 + 1))
        tracemalloc.start()
        found = ctc_decode.decode_with_confidence(probs)
        peaks[rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert [(d.classes, round(d.confidence, 8)) for d in found] == \
            [(d.classes, round(d.confidence, 8)) for d in whole]
    assert peaks[1] < peaks[8] / 3, peaks
