from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest

from lstm_ocr.checkpoint import network_of
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.lstm import convert_params, inference_symbol, initial_params, lstm_ocr


def _forward(symbol, params: dict, data: np.ndarray) -> np.ndarray:
    mod = mx.mod.Module(symbol, data_names=["data"], label_names=None)
    mod.bind(for_training=False, data_shapes=[("data", data.shape)])
    mod.set_params(params, {}, allow_missing=False)
    mod.forward(mx.io.DataBatch(data=[mx.nd.array(data)]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def _random_unrolled_params(hp: Hyperparams, seed: int) -> dict:
    params = initial_params(replace(hp, network="unrolled"), mx.init.Xavier(factor_type="in", magnitude=2.34))
    rng = np.random.default_rng(seed)
    return {name: mx.nd.array(value.asnumpy() + rng.normal(scale=0.1, size=value.shape))  # biases too
            for name, value in params.items()}


@pytest.mark.parametrize("hp", [Hyperparams(), Hyperparams(num_hidden=7, num_lstm_layer=3, seq_length=12)])
def test_fused_and_unrolled_compute_the_same_function(hp):
    unrolled = _random_unrolled_params(hp, seed=0)
    fused = convert_params(unrolled, hp, "fused")
    assert network_of(unrolled) == "unrolled" and network_of(fused) == "fused"
    data = np.random.default_rng(1).random((5, hp.image_width, hp.image_height)).astype(np.float32)
    out_unrolled = _forward(lstm_ocr(replace(hp, network="unrolled"), training=False), unrolled, data)
    out_fused = _forward(lstm_ocr(hp, training=False), fused, data)
    assert out_unrolled.shape == (hp.seq_length * 5, hp.num_classes)
    np.testing.assert_allclose(out_fused, out_unrolled, atol=1e-5)


def test_conversion_round_trips_exactly():
    hp = Hyperparams(num_hidden=9)
    unrolled = _random_unrolled_params(hp, seed=2)
    back = convert_params(convert_params(unrolled, hp, "fused"), hp, "unrolled")
    assert set(back) == set(unrolled)
    for name in unrolled:
        np.testing.assert_array_equal(back[name].asnumpy(), unrolled[name].asnumpy())


@pytest.mark.parametrize("network", ["fused", "unrolled"])
@pytest.mark.parametrize("loss", ["ctc", "warpctc"])
def test_training_symbol_swaps_to_the_inference_softmax(network, loss):
    hp = Hyperparams(num_hidden=8, seq_length=20, network=network, loss=loss)
    training = lstm_ocr(hp)
    assert "label" in training.list_arguments()
    inference = inference_symbol(training)
    assert inference.list_arguments() == lstm_ocr(hp, training=False).list_arguments()
    assert "label" not in inference.list_arguments()
    params = initial_params(hp, mx.init.Xavier())
    data = np.random.default_rng(0).random((3, hp.image_width, hp.image_height)).astype(np.float32)
    probs = _forward(inference, params, data)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("loss", ["ctc", "warpctc"])
def test_a_checkpoint_converts_to_the_other_network_with_the_same_outputs(tmp_path, loss):
    from conftest import run_script
    from lstm_ocr import checkpoint

    hp = Hyperparams(num_hidden=12, loss=loss)
    params = convert_params(_random_unrolled_params(hp, seed=4), hp, "fused")
    prefix, out = str(tmp_path / "fused"), str(tmp_path / "unrolled")
    checkpoint.save(prefix, 5, lstm_ocr(hp), params, {}, hp)
    result = run_script("lstm.py", "--prefix", prefix, "--epoch", "5", "--to", "unrolled", "--out", out)
    assert result.returncode == 0, result.stderr
    symbol, converted, _ = checkpoint.load(out, 5)
    assert network_of(converted) == "unrolled" and checkpoint.load_hyperparams(out) == replace(hp, network="unrolled")
    assert symbol.list_outputs() == lstm_ocr(replace(hp, network="unrolled")).list_outputs()
    data = np.random.default_rng(5).random((4, hp.image_width, hp.image_height)).astype(np.float32)
    np.testing.assert_allclose(_forward(inference_symbol(symbol), converted, data),
                               _forward(lstm_ocr(hp, training=False), params, data), atol=1e-5)


def test_a_conversion_never_writes_over_a_checkpoint(tmp_path):
    from conftest import run_script
    from lstm_ocr import checkpoint

    hp = Hyperparams(num_hidden=8)
    prefix = str(tmp_path / "fused")
    checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
    before = open(checkpoint.params_path(prefix, 1), "rb").read()
    for out, words in [(prefix, "already holds a checkpoint"), (str(tmp_path / "." / "fused"), "already holds"),
                       (str(tmp_path / "missing" / "x"), "checkpoint folder"), ("/proc/x", "cannot write")]:
        result = run_script("lstm.py", "--prefix", prefix, "--epoch", "1", "--to", "unrolled", "--out", out)
        assert result.returncode == 2 and result.stderr.startswith("error: ") and words in result.stderr, \
            result.stderr
        assert result.stderr.count("\n") == 1
    assert open(checkpoint.params_path(prefix, 1), "rb").read() == before
    bad = run_script("lstm.py", "--prefix", prefix, "--epoch", "1", "--to", "gru", "--out", str(tmp_path / "y"))
    assert bad.returncode == 2 and "invalid choice: 'gru'" in bad.stderr


@pytest.mark.parametrize("shape, lstm_input", [("wide", 128 * 4), ("compact", 64 * 2)])
def test_the_letters_front_ends_feed_the_lstm_24_steps_of_their_width(shape, lstm_input):
    from lstm_ocr.hyperparameters import for_recipe

    hp = replace(for_recipe("letters"), crnn_shape=shape)
    internals = lstm_ocr(hp).get_internals()
    lstm_in = [name for name in internals.list_outputs() if name.startswith("reshape") and name.endswith("_output")]
    shapes = {name: shape for name, shape in zip(internals.list_outputs(), internals.infer_shape(
        data=(hp.batch_size, hp.image_width, hp.image_height), label=(hp.batch_size, hp.num_label))[1], strict=True)}
    assert (24, hp.batch_size, lstm_input) in [shapes[name] for name in lstm_in]
    assert hp.seq_length == 96 and hp.image_height == 36 and len(hp.chars) == 36


def test_a_compact_crnn_trains_a_step_and_its_checkpoint_computes_the_same_after_loading(tmp_path):
    from lstm_ocr import checkpoint
    from lstm_ocr.hyperparameters import for_recipe

    hp = replace(for_recipe("letters"), crnn_shape="compact", batch_size=8, num_hidden=16)
    mod = mx.mod.Module(lstm_ocr(hp), data_names=["data"], label_names=["label"])
    mod.bind(data_shapes=[("data", (8, 96, 36))], label_shapes=[("label", (8, hp.num_label))])
    mod.init_params(mx.init.Xavier(), arg_params=initial_params(hp, mx.init.Xavier()), allow_missing=True)
    mod.init_optimizer(optimizer="adam", optimizer_params={"learning_rate": 0.01})
    rng = np.random.default_rng(0)
    batch = mx.io.DataBatch(data=[mx.nd.array(rng.random((8, 96, 36)))],
                            label=[mx.nd.array(rng.integers(1, hp.num_classes, (8, hp.num_label)))])
    before = mod.get_params()[0]["c2_conv_weight"].asnumpy()
    mod.forward_backward(batch)
    mod.update()
    arg_params, aux_params = mod.get_params()
    assert not np.array_equal(before, arg_params["c2_conv_weight"].asnumpy())
    assert arg_params["c2_conv_weight"].shape == (64, 32, 3, 3)
    checkpoint.save(str(tmp_path / "m"), 1, mod.symbol, arg_params, aux_params, hp)
    symbol, loaded, loaded_aux, loaded_hp = checkpoint.load_with_hyperparams(str(tmp_path / "m"), 1)
    assert loaded_hp == hp and loaded_hp.crnn_shape == "compact"
    data = mx.nd.array(rng.random((2, 96, 36)))
    outputs = []
    for network, args, aux in ((mod.symbol, arg_params, aux_params), (symbol, loaded, loaded_aux)):
        reader = mx.mod.Module(inference_symbol(network), data_names=["data"], label_names=None)
        reader.bind(for_training=False, data_shapes=[("data", data.shape)])
        reader.set_params(args, aux, allow_missing=False)
        reader.forward(mx.io.DataBatch(data=[data]), is_train=False)
        outputs.append(reader.get_outputs()[0].asnumpy())
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
