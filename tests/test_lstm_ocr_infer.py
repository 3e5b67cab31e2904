import pytest

from hyperparameters import Hyperparams
from lstm_ocr_infer import format_text


def test_digit_models_print_the_examples_list():
    assert format_text([1, 1, 9, 10], Hyperparams()) == "Digits: [0, 0, 8, 9]"
    assert format_text([], Hyperparams()) == "Digits: []"


@pytest.mark.parametrize("chars, classes, expected", [
    ("0123456789abcdefghijklmnopqrstuvwxyz", [11, 8, 21, 3, 36], "Text: a7k2z"),
    ("ABC", [3, 1], "Text: CA"),
    ("ABC", [], "Text: "),
])
def test_other_alphabets_print_their_characters(chars, classes, expected):
    assert format_text(classes, Hyperparams(chars=chars)) == expected
