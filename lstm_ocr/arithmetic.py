"""Arithmetic captchas: random expressions such as `7+3=?`, `12-5=` or `6×4=`, and a parser that gives
their integer answer without ever evaluating text as code.

The grammar (spaces between tokens ignored):
    captcha := expr "=" ["?"] | expr           (with one operator at least)
    expr    := term (("+" | "-") term)*
    term    := number (MUL_OPS | DIV_OPS number)*
    number  := digit+
with `*`, `×` and `x` for multiplication, `÷` and `/` for division; `*` and `/` bind tighter than
`+` and `-`, and operators of one precedence apply left to right. A division must be exact (a captcha's
answer is an integer): an inexact one, or one by zero, does not parse as an answer.
"""

import random

import numpy as np

from lstm_ocr.decode import Grammar

ADD_OPS = "+-"
MUL_OPS = "*×x"
DIV_OPS = "÷/"
OPERATORS = ADD_OPS + MUL_OPS + DIV_OPS
ALPHABET = "0123456789" + OPERATORS + "=?"  # every character an arithmetic captcha draws
MIN_LEN = 4  # `1+2=`
MAX_LEN = 9  # `12×9-45=?`
MAX_TERM = 20  # operands of a sum or a difference
MAX_FACTOR = 9  # operands of a product, divisors and quotients
# what `--style arithmetic` sets, over the defaults and under the options given (lstm_ocr_train.resolve)
TEXT_DEFAULTS = {"chars": ALPHABET, "min_len": MIN_LEN, "max_len": MAX_LEN}
TWO_OPERATOR_SHARE = 0.35
QUESTION_SHARE = 0.5  # expressions that end `=?` rather than `=`
MAX_TEXT = 1000  # characters; an answer then has fewer digits than the text, far below int's 4,300


def _tokens(text: str) -> list[str] | None:
    """Numbers and operator characters of `text`, spaces dropped; None for any other character."""
    tokens: list[str] = []
    joins = False  # whether a digit continues the last number (not after a space)
    for char in text:
        if char.isspace():
            joins = False
            continue
        if char in "0123456789":
            if joins:
                tokens[-1] += char
            else:
                tokens.append(char)
            joins = True
            continue
        joins = False
        if char in OPERATORS or char in "=?":
            tokens.append(char)
        else:
            return None
    return tokens


def answer(text: str) -> int | None:
    """The integer value of the arithmetic captcha `text` (`7+3=?` gives 10), or None when it does not
    parse under the grammar above (a number alone, `73=?`, is a reading that lost its operator), or a
    division is inexact or by zero. A text longer than MAX_TEXT characters is no captcha: None (its
    numbers, and their products, could pass Python's limit on the digits of an int and string)."""
    if len(text) > MAX_TEXT:
        return None
    tokens = _tokens(text)
    if not tokens:
        return None
    if tokens[-1] == "?":
        tokens.pop()
        if not tokens or tokens[-1] != "=":
            return None
    if tokens and tokens[-1] == "=":
        tokens.pop()
    if not tokens or "=" in tokens or "?" in tokens:
        return None
    position = 0

    def number() -> int | None:
        nonlocal position
        if position < len(tokens) and tokens[position].isdigit():
            position += 1
            return int(tokens[position - 1])
        return None

    def term() -> int | None:
        nonlocal position
        value = number()
        while value is not None and position < len(tokens) and tokens[position] in MUL_OPS + DIV_OPS:
            operator = tokens[position]
            position += 1
            right = number()
            if right is None:
                return None
            if operator in MUL_OPS:
                value *= right
            elif right == 0 or value % right:
                return None
            else:
                value //= right
        return value

    value = term()
    while value is not None and position < len(tokens) and tokens[position] in ADD_OPS:
        operator = tokens[position]
        position += 1
        right = term()
        if right is None:
            return None
        value = value + right if operator == "+" else value - right
    if value is None or position != len(tokens) or len(tokens) < 3:  # a number alone is no sum
        return None
    return value


# The grammar's texts without spaces as an automaton over characters, for a decoder that reads only such
# texts: from each state, the state each character leads to. A text parses only if it ends in an
# ACCEPTING state (and its divisions are exact: `answer` decides that).
_START, _FIRST_NUMBER, _OPERATOR, _NUMBER, _EQUALS, _QUESTION = range(6)
_TRANSITIONS = {
    _START: {"digit": _FIRST_NUMBER},
    _FIRST_NUMBER: {"digit": _FIRST_NUMBER, "operator": _OPERATOR},
    _OPERATOR: {"digit": _NUMBER},
    _NUMBER: {"digit": _NUMBER, "operator": _OPERATOR, "=": _EQUALS},
    _EQUALS: {"?": _QUESTION},
    _QUESTION: {},
}
ACCEPTING = (_NUMBER, _EQUALS, _QUESTION)


def _kind(char: str) -> str:
    return "digit" if char in "0123456789" else "operator" if char in OPERATORS else char


def grammar(alphabet: str) -> Grammar:
    """The texts `answer` parses, for a decoder over a model's classes (class 0 the CTC blank, class
    i + 1 character i of `alphabet`): the automaton above (row `state` gives the next state for each
    class, -1 where no text of the grammar goes on with that class; state 0 starts), its ACCEPTING
    states, and `answer` itself as the last check of a whole text."""
    table = np.array([[-1] + [moves.get(_kind(char), -1) for char in alphabet]
                      for _, moves in sorted(_TRANSITIONS.items())])
    return Grammar(table, np.isin(np.arange(len(table)), ACCEPTING),
                   lambda classes: answer("".join(alphabet[c - 1] for c in classes)) is not None)


def _operation(rng: random.Random, operator: str, left: int | None = None) -> tuple[int, int]:
    """Two operands for `operator` whose result is a non-negative integer; the left one is `left`
    when given (and may be refused: then the caller draws again)."""
    if operator in ADD_OPS:
        a = rng.randint(0, MAX_TERM) if left is None else left
        b = rng.randint(0, MAX_TERM if operator == "+" else a)
        return a, b
    if operator in MUL_OPS:
        return rng.randint(0, MAX_FACTOR) if left is None else left, rng.randint(0, MAX_FACTOR)
    divisor = rng.randint(1, MAX_FACTOR)
    return (divisor * rng.randint(0, MAX_FACTOR) if left is None else left), divisor


def random_expression(rng: random.Random, max_len: int = MAX_LEN) -> str:
    """A random captcha text of one or two operators over small integers, ending `=` or `=?`, at most
    `max_len` characters; its answer is a non-negative integer (divisions exact, no negative result)."""
    if max_len < MIN_LEN:
        raise ValueError(f"an arithmetic captcha needs at least {MIN_LEN} characters, not {max_len}")
    while True:
        first = rng.choice(OPERATORS)
        a, b = _operation(rng, first)
        text = f"{a}{first}{b}"
        if rng.random() < TWO_OPERATOR_SHARE:
            second = rng.choice(OPERATORS)
            c = rng.randint(1, MAX_FACTOR) if second in MUL_OPS + DIV_OPS else rng.randint(0, MAX_TERM)
            text += f"{second}{c}"
        text += "=?" if rng.random() < QUESTION_SHARE else "="
        value = answer(text)
        if value is not None and value >= 0 and len(text) <= max_len:
            return text
