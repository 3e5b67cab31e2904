import glob
import json
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import SHIPPED
from lstm_ocr import checkpoint
from lstm_ocr.cli import InputError
from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.lstm import initial_params, lstm_ocr


@pytest.fixture
def saved(tmp_path):
    hp = Hyperparams(num_hidden=8, chars="ab", min_len=1, max_len=2)
    params = initial_params(hp, mx.init.Xavier())
    prefix = str(tmp_path / "ocr")
    for epoch in (1, 2, 10):
        checkpoint.save(prefix, epoch, lstm_ocr(hp), params, {}, hp)
    return prefix, hp, params


def test_round_trip(saved):
    prefix, hp, params = saved
    symbol, arg_params, aux_params = checkpoint.load(prefix, 2)
    assert symbol.list_arguments() == lstm_ocr(hp).list_arguments()
    assert aux_params == {} and set(arg_params) == set(params)
    for name in params:
        np.testing.assert_array_equal(arg_params[name].asnumpy(), params[name].asnumpy())
    assert checkpoint.load_hyperparams(prefix) == hp


def test_meta_files_without_network_and_loss_still_load(tmp_path):
    """Meta files written before `network` and `loss` were: both are taken from the checkpoint itself."""
    from dataclasses import asdict

    for network, loss in (("crnn", "ctc"), ("unrolled", "warpctc"), ("fused", "ctc")):
        hp = Hyperparams(num_hidden=8, network=network, loss=loss)
        prefix = str(tmp_path / network)
        checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp)
        old = {name: value for name, value in asdict(hp).items() if name not in ("network", "loss")}
        json.dump(old, open(checkpoint.meta_path(prefix), "w"))
        assert checkpoint.load_hyperparams(prefix) == hp
        assert checkpoint.load_with_hyperparams(prefix, 1)[3] == hp
    assert (checkpoint.load_hyperparams(os.path.join(SHIPPED, "general")).network,
            checkpoint.load_hyperparams(os.path.join(SHIPPED, "ocr")).network) == ("crnn", "crnn")


def test_saved_epochs_and_missing_epoch_message(saved, tmp_path):
    prefix, _, _ = saved
    (tmp_path / "ocr-0003.params.tmp123").write_text("half-written")
    assert checkpoint.saved_epochs(prefix) == [1, 2, 10]
    with pytest.raises(checkpoint.CheckpointError, match=r"ocr-0005.params \(saved epochs: 1, 2, 10\)"):
        checkpoint.load(prefix, 5)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint has prefix"):
        checkpoint.load(str(tmp_path / "other"), 1)


def test_corrupt_params_file_is_reported(saved):
    prefix, _, _ = saved
    path = checkpoint.params_path(prefix, 1)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.load(prefix, 1)


def test_a_checkpoint_without_meta_reads_as_the_examples_digits(saved):
    prefix, _, _ = saved
    os.remove(checkpoint.meta_path(prefix))
    assert checkpoint.load_hyperparams(prefix) == Hyperparams()


def test_failed_write_leaves_the_previous_file_intact(saved):
    prefix, hp, params = saved
    before = open(checkpoint.params_path(prefix, 2), "rb").read()

    def broken_states(path):
        open(path, "w").write("partial")
        raise OSError("disk full")

    with pytest.raises(InputError, match="cannot write .*ocr-0002.states: disk full"):
        checkpoint.save(prefix, 2, lstm_ocr(hp), params, {}, hp, broken_states)
    assert open(checkpoint.params_path(prefix, 2), "rb").read() == before
    assert json.load(open(checkpoint.meta_path(prefix)))["chars"] == "ab"
    assert not [p for p in glob.glob(prefix + "*") if ".tmp" in p]


def test_params_digest_is_equal_only_for_bit_identical_params(saved):
    prefix, _, params = saved
    _, loaded, _ = checkpoint.load(prefix, 1)
    assert checkpoint.params_digest(loaded) == checkpoint.params_digest(dict(reversed(list(params.items()))))
    name = sorted(params)[0]
    changed = dict(params)
    changed[name] = params[name].copy()
    changed[name][0] += 1e-6
    assert checkpoint.params_digest(changed) != checkpoint.params_digest(params)
    assert checkpoint.params_digest({"a": mx.nd.zeros((2, 3))}) != checkpoint.params_digest({"a": mx.nd.zeros((3, 2))})


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", "not a JSON object"),
    ('{"num_hidden": "100"}', "num_hidden='100', not a int"),
    ('{"chars": 5}', "chars=5, not a str"),
    ('{"max_len": true}', "max_len=True, not a int"),
    ('{"num_hidden": -3}', "--num_hidden must be positive"),
    ("{not json", "Expecting property name"),
])
def test_a_malformed_meta_file_is_one_clear_error(saved, text, words):
    prefix, _, _ = saved
    with open(checkpoint.meta_path(prefix), "w") as file:
        file.write(text)
    with pytest.raises(checkpoint.CheckpointError, match="ocr-meta.json is not a valid checkpoint meta file") as error:
        checkpoint.load_hyperparams(prefix)
    assert words in str(error.value)


def _trained_module(optimizer: str, params: dict | None = None) -> mx.mod.Module:
    data = mx.sym.Variable("data")
    net = mx.sym.LinearRegressionOutput(mx.sym.FullyConnected(data, num_hidden=2, name="fc"), name="out")
    mod = mx.mod.Module(net, data_names=["data"], label_names=["out_label"])
    mod.bind(data_shapes=[("data", (4, 3))], label_shapes=[("out_label", (4, 2))])
    mod.init_params(mx.init.Constant(0.1), arg_params=params)
    mod.init_optimizer(optimizer=optimizer, optimizer_params={"learning_rate": 0.1})
    return mod


def _step(mod: mx.mod.Module, seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch = mx.io.DataBatch(data=[mx.nd.array(rng.random((4, 3)))], label=[mx.nd.array(rng.random((4, 2)))])
    mod.forward_backward(batch)
    mod.update()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizer_state_round_trips_without_pickle(tmp_path, optimizer):
    """Resuming from a saved state continues exactly as the uninterrupted run."""
    from lstm_ocr.train import updater_of

    path = str(tmp_path / "ocr-0001.states")
    run = _trained_module(optimizer)
    for seed in range(3):
        _step(run, seed)
    checkpoint.save_optimizer_states(updater_of(run), path)
    assert b"\x80\x04" not in open(path, "rb").read()[:2]  # not a pickle
    resumed = _trained_module(optimizer, params=run.get_params()[0])
    checkpoint.load_optimizer_states(updater_of(resumed), path)
    for seed in (3, 4):
        _step(run, seed)
        _step(resumed, seed)
    for name, value in run.get_params()[0].items():
        np.testing.assert_allclose(resumed.get_params()[0][name].asnumpy(), value.asnumpy(), rtol=1e-6)


def test_stale_temporaries_go_and_live_ones_stay(tmp_path):
    prefix = str(tmp_path / "ocr")
    dead = 4_000_000
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    stale, live = f"{prefix}-0002.params.tmp{dead}", f"{prefix}-symbol.json.tmp{os.getpid()}"
    other = str(tmp_path / "ocrx-0001.params.tmp1")  # another prefix's
    for path in (stale, live, other):
        open(path, "w").write("half")
    assert checkpoint.clear_stale_temporaries(prefix) == [stale]
    assert not os.path.exists(stale) and os.path.exists(live) and os.path.exists(other)


def test_a_second_lock_on_a_prefix_is_refused_until_the_first_goes(tmp_path):
    prefix = str(tmp_path / "ocr")
    held = checkpoint.lock(prefix)
    with pytest.raises(InputError, match=f"in use by a running trainer \\(pid {os.getpid()}\\)"):
        checkpoint.lock(prefix)
    held.close()
    checkpoint.lock(prefix).close()


def test_a_lock_that_is_a_link_is_refused_and_what_it_points_to_is_kept(tmp_path):
    victim = tmp_path / "another-run-0001.params"
    victim.write_bytes(b"precious")
    prefix = str(tmp_path / "ocr")
    os.symlink(victim, checkpoint.lock_path(prefix))
    with pytest.raises(InputError, match="lock file .*ocr.lock: it is a symlink"):
        checkpoint.lock(prefix)
    os.remove(checkpoint.lock_path(prefix))
    os.link(victim, checkpoint.lock_path(prefix))
    with pytest.raises(InputError, match="has other names"):
        checkpoint.lock(prefix)
    os.remove(checkpoint.lock_path(prefix))
    os.mkfifo(checkpoint.lock_path(prefix))
    with pytest.raises(InputError, match="not a regular file"):
        checkpoint.lock(prefix)  # and does not block
    assert victim.read_bytes() == b"precious"


def test_unwritable_prefixes_fail_before_training(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        checkpoint.check_writable(str(tmp_path / "missing" / "ocr"), [1])
    with pytest.raises(InputError, match="File name too long"):
        checkpoint.check_writable(str(tmp_path / ("o" * 250)), [1])
    os.mkdir(tmp_path / "ocr-symbol.json")
    with pytest.raises(InputError, match="is a folder"):
        checkpoint.check_writable(str(tmp_path / "ocr"), [1])
    checkpoint.check_writable(str(tmp_path / "fine"), [1, 2])
    assert sorted(os.listdir(tmp_path)) == ["ocr-symbol.json"]  # the probes leave nothing behind


def test_a_meta_file_whose_alphabet_does_not_fit_the_params_is_refused(saved):
    prefix, hp, _ = saved
    assert checkpoint.load_with_hyperparams(prefix, 2)[3] == hp
    with open(checkpoint.meta_path(prefix), "w") as file:
        json.dump({"chars": "abc", "min_len": 1, "max_len": 2}, file)
    with pytest.raises(checkpoint.CheckpointError, match="ocr-meta.json has 3 characters but .*ocr-0002.params has 2"):
        checkpoint.load_with_hyperparams(prefix, 2)


def test_another_optimizers_state_is_refused_before_resuming(tmp_path):
    from lstm_ocr.train import updater_of

    paths = {}
    for optimizer, options in (("adam", {}), ("sgd", {"momentum": 0.9})):
        mod = _trained_module(optimizer)
        mod.init_optimizer(optimizer=optimizer, optimizer_params={"learning_rate": 0.1, **options}, force_init=True)
        _step(mod, 0)
        paths[optimizer] = str(tmp_path / f"{optimizer}-0001.states")
        checkpoint.save_optimizer_states(updater_of(mod), paths[optimizer])
    checkpoint.check_states_fit(paths["adam"], "adam", 0.9)
    checkpoint.check_states_fit(paths["sgd"], "sgd", 0.9)
    with pytest.raises(checkpoint.CheckpointError, match=r"another optimizer's state \(2 arrays a weight; --optimizer "
                                                         r"sgd keeps 1\).*--optimizer adam"):
        checkpoint.check_states_fit(paths["adam"], "sgd", 0.9, saved_optimizer="adam")
    with pytest.raises(checkpoint.CheckpointError, match="--optimizer adam keeps 2"):
        checkpoint.check_states_fit(paths["sgd"], "adam", 0.9)


def test_a_params_write_that_fails_leaves_no_orphan_states(tmp_path, monkeypatch):
    hp = Hyperparams(num_hidden=8, chars="ab", min_len=1, max_len=2)
    prefix = str(tmp_path / "ocr")
    real_save = mx.nd.save

    def disk_full(path, data):
        if ".params" in path:
            raise OSError(28, "No space left on device")
        real_save(path, data)
    monkeypatch.setattr(mx.nd, "save", disk_full)
    with pytest.raises(InputError, match="No space left on device"):
        checkpoint.save(prefix, 1, lstm_ocr(hp), initial_params(hp, mx.init.Xavier()), {}, hp,
                        lambda path: real_save(path, {"__num_update": mx.nd.array([0], dtype="int64")}))
    assert not os.path.exists(checkpoint.states_path(prefix, 1)) and not checkpoint.saved_epochs(prefix)


def test_remove_epoch_removes_that_epochs_files_only(saved, tmp_path):
    prefix, hp, params = saved
    open(checkpoint.states_path(prefix, 2), "wb").close()
    assert checkpoint.remove_epoch(prefix, 2) == [checkpoint.params_path(prefix, 2), checkpoint.states_path(prefix, 2)]
    assert checkpoint.saved_epochs(prefix) == [1, 10]
    assert os.path.isfile(checkpoint.symbol_path(prefix)) and os.path.isfile(checkpoint.meta_path(prefix))
    assert checkpoint.remove_epoch(prefix, 3) == []  # nothing there
    other = tmp_path / "someone-elses.params"
    other.write_bytes(b"keep me")
    os.remove(checkpoint.params_path(prefix, 1))
    os.symlink(other, checkpoint.params_path(prefix, 1))
    assert checkpoint.remove_epoch(prefix, 1) == []  # a link is not this run's file: it stays, and so does its target
    assert other.read_bytes() == b"keep me" and os.path.islink(checkpoint.params_path(prefix, 1))
