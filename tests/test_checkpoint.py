import glob
import json
import os

import mxnet as mx
import numpy as np
import pytest

import checkpoint
from cli import InputError
from hyperparameters import Hyperparams
from lstm import initial_params, lstm_ocr


@pytest.fixture
def saved(tmp_path):
    hp = Hyperparams(num_hidden=8, chars="ab", min_len=1, max_len=2)
    params = initial_params(hp, "fused", mx.init.Xavier())
    prefix = str(tmp_path / "ocr")
    for epoch in (1, 2, 10):
        checkpoint.save(prefix, epoch, lstm_ocr(hp, "fused", "ctc"), params, {}, hp)
    return prefix, hp, params


def test_round_trip(saved):
    prefix, hp, params = saved
    symbol, arg_params, aux_params = checkpoint.load(prefix, 2)
    assert symbol.list_arguments() == lstm_ocr(hp, "fused", "ctc").list_arguments()
    assert aux_params == {} and set(arg_params) == set(params)
    for name in params:
        np.testing.assert_array_equal(arg_params[name].asnumpy(), params[name].asnumpy())
    assert checkpoint.load_hyperparams(prefix) == hp


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
        checkpoint.save(prefix, 2, lstm_ocr(hp, "fused", "ctc"), params, {}, hp, broken_states)
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
