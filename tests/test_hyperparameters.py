import argparse
import dataclasses

import pytest

from lstm_ocr import hyperparameters
from lstm_ocr.hyperparameters import Hyperparams

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def test_defaults_are_the_examples():
    hp = Hyperparams()
    assert (hp.batch_size, hp.train_epoch_size, hp.eval_epoch_size, hp.num_epoch) == (128, 30000, 3000, 100)
    assert (hp.learning_rate, hp.momentum, hp.seq_length, hp.num_hidden, hp.num_lstm_layer) == (0.001, 0.9, 80, 100, 2)
    assert (hp.num_label, hp.num_classes, hp.image_width, hp.image_height) == (4, 11, 80, 30)


def test_every_field_has_a_command_line_override():
    parser = argparse.ArgumentParser()
    hyperparameters.add_arguments(parser)
    args = parser.parse_args(["--num_epoch", "2", "--train_epoch_size", "1024", "--batch_size", "64",
                              "--learning_rate", "0.01", "--num_label", "5", "--num_hidden", "50"])
    hp = hyperparameters.from_args(args)
    assert (hp.num_epoch, hp.train_epoch_size, hp.batch_size, hp.learning_rate) == (2, 1024, 64, 0.01)
    assert (hp.num_label, hp.max_len, hp.num_hidden) == (5, 5, 50)
    assert hyperparameters.from_args(parser.parse_args([])) == Hyperparams()


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "--batch_size must be positive"),
    ({"num_epoch": -1}, "--num_epoch must be positive"),
    ({"learning_rate": 0.0}, "--learning_rate must be positive"),
    ({"momentum": -0.5}, "--momentum must not be negative"),
    ({"min_len": 5}, "--min_len 5 exceeds --max_len 4"),
    ({"seq_length": 8}, "too short"),
    ({"chars": "0120"}, "repeated character"),
    ({"chars": ""}, "--chars must not be empty"),
    ({"crnn_blocks": 4}, "--crnn_blocks must be at most 3"),
    ({"crnn_blocks": 0}, "--crnn_blocks must be positive"),
    ({"crnn_first_channels": 0}, "--crnn_first_channels must be positive"),
    ({"crnn_shape": "tiny"}, "--crnn_shape must be one of wide, compact"),
    ({"case": "upper"}, "--case must be one of keep, fold"),
    ({"chars": "0aA", "case": "fold"}, "both cases of 'a'"),
    ({"learning_rate": float("nan")}, "--learning_rate must be a finite number, got nan"),
    ({"wd": float("inf")}, "--wd must be a finite number"),
    ({"batch_size": 100_000}, "--batch_size must be at most 4096"),
    ({"num_hidden": 10 ** 6}, "--num_hidden must be at most"),
    ({"seq_length": 10 ** 6}, "--seq_length must be at most"),
    ({"image_height": 10 ** 5}, "--image_height must be at most"),
    ({"num_lstm_layer": 1000}, "--num_lstm_layer must be at most"),
    ({"train_epoch_size": 10 ** 12}, "--train_epoch_size must be at most"),
    ({"chars": "".join(map(chr, range(0x4E00, 0x4E00 + 5000)))}, "--chars must have at most 4096"),
])
def test_validate_names_the_bad_setting(changes, message):
    with pytest.raises(ValueError, match=message):
        Hyperparams(**changes).validate()


def test_a_subset_of_options_leaves_the_rest_at_their_defaults():
    parser = argparse.ArgumentParser()
    hyperparameters.add_arguments(parser, hyperparameters.TEXT_FIELDS)
    args = parser.parse_args(["--chars", "abc", "--min_len", "2", "--num_label", "6"])
    assert not hasattr(args, "batch_size")
    assert hyperparameters.from_args(args) == Hyperparams(chars="abc", min_len=2, max_len=6)
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch_size", "8"])


@pytest.mark.parametrize("chars, digits_only", [
    ("0123456789", True), ("01", True), ("0123456789abcdefghijklmnopqrstuvwxyz", False), ("ab", False),
])
def test_digit_alphabets_are_recognised(chars, digits_only):
    assert Hyperparams(chars=chars).digits_only == digits_only
    assert Hyperparams(chars=chars).num_classes == len(chars) + 1


def test_a_recipes_hyperparameters_leave_its_options_out():
    recipe = hyperparameters.RECIPES["fast"]
    assert recipe["network"] == "crnn"  # an option, not a hyperparameter: for_recipe must leave it out
    hp = hyperparameters.for_recipe("fast")
    assert (hp.optimizer, hp.batch_size, hp.num_lstm_layer, hp.num_epoch) == ("adam", 64, 1, 12)
    for field in dataclasses.fields(Hyperparams):
        assert getattr(hp, field.name) == recipe.get(field.name, field.default)
    assert hyperparameters.for_recipe("example") == Hyperparams()


def test_case_fold_draws_both_cases_and_folds_to_the_alphabets():
    hp = Hyperparams(chars="01ab", case="fold")
    assert sorted(hp.drawn_chars) == sorted("01abAB")
    assert hp.fold("aB1") == "ab1" and Hyperparams(chars="01AB", case="fold").fold("aB1") == "AB1"
    assert Hyperparams(chars="01ab").drawn_chars == "01ab" and Hyperparams(chars="01ab").fold("aB") == "aB"


def test_labels_are_classes_shifted_by_one_and_zero_padded():
    hp = Hyperparams()
    assert hp.encode("0089").tolist() == [1, 1, 9, 10]
    assert hp.encode("507").tolist() == [6, 1, 8, 0]
    assert Hyperparams(chars=ALNUM, max_len=6).encode("a7kz").tolist() == [11, 8, 21, 36, 0, 0]
    assert Hyperparams(chars=ALNUM).text([11, 8, 21, 36]) == "a7kz"
    assert Hyperparams(chars=ALNUM).classes("a7") == [11, 8]
