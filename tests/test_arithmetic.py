"""arithmetic.py: the parser against an independent reference, its precedence, what it refuses; the
generator's expressions."""

import itertools
import random
from fractions import Fraction

import pytest

from lstm_ocr import arithmetic
from lstm_ocr.arithmetic import ALPHABET, MAX_LEN, MIN_LEN, OPERATORS, answer, random_expression

CANONICAL = {"+": "+", "-": "-", "*": "*", "×": "*", "x": "*", "÷": "/", "/": "/"}


def reference(numbers: list[int], operators: list[str]) -> int | None:
    """The value by another method: products and quotients reduced first, left to right, over a list
    of Fractions, then sums and differences; None for a division by zero or one that is not exact."""
    values = [Fraction(n) for n in numbers]
    ops = [CANONICAL[op] for op in operators]
    i = 0
    while i < len(ops):
        if ops[i] in "*/":
            left, right = values[i], values[i + 1]
            if ops[i] == "/":
                if right == 0 or (left / right).denominator != 1:
                    return None
                result = left / right
            else:
                result = left * right
            values[i:i + 2] = [result]
            del ops[i]
        else:
            i += 1
    total = values[0]
    for op, value in zip(ops, values[1:], strict=True):
        total = total + value if op == "+" else total - value
    return int(total)


NUMBERS = (0, 1, 2, 3, 6, 7, 12, 20)


def test_every_small_expression_matches_the_reference():
    checked = 0
    for count in (1, 2):
        for numbers in itertools.product(NUMBERS, repeat=count + 1):
            for operators in itertools.product(OPERATORS, repeat=count):
                pairs = list(zip(operators, numbers[1:], strict=True))
                body = str(numbers[0]) + "".join(op + str(n) for op, n in pairs)
                spaced = str(numbers[0]) + "".join(f" {op} {n}" for op, n in pairs)
                expected = reference(list(numbers), list(operators))
                for text in (body, body + "=", body + "=?", spaced + " = ?"):
                    assert answer(text) == expected, text
                    checked += 1
    assert checked > 10_000


@pytest.mark.parametrize("text, value", [
    ("7+3=?", 10), ("12-5=", 7), ("6×4=", 24), ("2+3*4=", 14), ("2*3+4=", 10), ("20-6÷3=?", 18),
    ("8/2/2=", 2), ("9-3-2=", 4), ("2x3x4=?", 24), ("3-5=", -2), ("0÷7=", 0), ("10+0", 10),
])
def test_precedence_and_left_to_right(text, value):
    assert answer(text) == value


@pytest.mark.parametrize("text", [
    "", "=", "?", "=?", "10", "73=?", "7+", "+7=", "7++3=", "7+3==", "7+3?", "7+3=?=", "7=3+1", "7+3=?5", "abc",
    "7+a=", "1 2+3=", "7÷0=", "7/2=", "(7+3)=", "-3+5=", "7+3=!", "7 + 3 = ? ?", "７+3=",
])
def test_garbage_is_refused(text):
    assert answer(text) is None


def test_random_expressions_are_drawn_in_the_alphabet_and_answer_as_integers():
    rng = random.Random(5)
    texts = [random_expression(rng) for _ in range(3000)]
    assert {len(t) for t in texts} <= set(range(MIN_LEN, MAX_LEN + 1))
    assert set("".join(texts)) == set(ALPHABET)  # every character drawn, none outside
    assert all(answer(t) is not None and answer(t) >= 0 for t in texts)
    operator_counts = {sum(c in OPERATORS for c in t) for t in texts}
    assert operator_counts == {1, 2}
    assert {t.endswith("=?") for t in texts} == {True, False}
    assert [random_expression(random.Random(9)) for _ in range(3)] == [random_expression(random.Random(9))] * 3
    short = [random_expression(rng, max_len=5) for _ in range(200)]
    assert max(map(len, short)) == 5
    with pytest.raises(ValueError):
        random_expression(rng, max_len=arithmetic.MIN_LEN - 1)


def _walk(text: str) -> bool:
    """Whether the automaton over ALPHABET's classes ends `text` in an accepting state."""
    table, state = arithmetic.grammar(ALPHABET).next_state, 0
    for char in text:
        state = table[state, ALPHABET.index(char) + 1]
        if state < 0:
            return False
    return state in arithmetic.ACCEPTING


def test_the_automaton_accepts_what_parses_but_for_exact_division():
    """Every text of up to 5 characters over a sample of the alphabet: the automaton accepts it exactly
    when it parses with its divisions made products (exactness is the parser's to check)."""
    sample = "17+x÷=?"
    checked = 0
    for length in range(6):
        for chars in itertools.product(sample, repeat=length):
            text = "".join(chars)
            assert _walk(text) == (answer(text.replace("÷", "×")) is not None), text
            checked += 1
    assert checked > 19_000
    assert (arithmetic.grammar(ALPHABET).next_state[:, 0] == -1).all()  # the CTC blank is no character


def test_numbers_past_pythons_digit_limit_are_no_answer_never_an_error():
    assert arithmetic.answer("9" * 5000 + "+1=?") is None
    assert arithmetic.answer("9" * 4400 + "=") is None
    assert arithmetic.answer("*".join(["9" * 60] * 16) + "=") == int("9" * 60) ** 16  # under the limit: exact
