"""Reading a CTC network's output: greedy decoding, a text's probability under CTC, and decoding
constrained by what the user knows (the characters a captcha may use, the lengths it may have).

Imports nothing but NumPy, so that reading with ONNX Runtime runs where MXNet is not installed.
`probs` are softmax outputs (N, steps, classes); class 0 is the CTC blank, class i + 1 character i.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from lstm_ocr.hyperparameters import BLANK

BEAM_WIDTH = 32  # prefixes kept per step by the length- and grammar-constrained searches
GRAMMAR_MIN_SHARE = 0.05  # a text of the grammar replaces a reading at least this share as probable
MAX_DECODE_VALUES = 1 << 24  # values of the arrays one decoding holds at once (float64: 128 MB)


def ctc_label(path: list[int]) -> list[int]:
    """Greedy CTC decoding of a per-step class path: collapse repeats, then drop blanks."""
    return [c for i, c in enumerate(path) if c != BLANK and (i == 0 or c != path[i - 1])]


class Decoded(NamedTuple):
    """A reading: classes (no blanks), each one's probability, and the reading's confidence."""

    classes: list[int]
    probabilities: list[float]
    confidence: float


def _extended(texts: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each text as CTC states blank, c1, blank, c2, ..., blank (padded with blanks), the number of
    states of each, and which states may be reached by skipping the blank before them."""
    longest = max((len(text) for text in texts), default=0)
    extended = np.full((len(texts), 2 * longest + 1), BLANK, dtype=np.int64)
    for n, text in enumerate(texts):
        extended[n, 1:2 * len(text):2] = text
    ends = 2 * np.array([len(text) for text in texts], dtype=np.int64) + 1
    can_skip = np.zeros(extended.shape, dtype=bool)
    can_skip[:, 2:] = (extended[:, 2:] != BLANK) & (extended[:, 2:] != extended[:, :-2])
    return extended, ends, can_skip


def _shifted(values: np.ndarray, by: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """values[:, s - by] at state s (-inf where there is none, or where `allowed` is False)."""
    out = np.full_like(values, -np.inf)
    out[:, by:] = values[:, :-by]
    return out if allowed is None else np.where(allowed, out, -np.inf)


def text_probabilities(probs: np.ndarray, texts: list[list[int]]) -> np.ndarray:
    """P(text | image) under CTC for each sample: the softmax outputs summed over every alignment that
    collapses to its text (classes, no blanks); the forward recursion in log space."""
    extended, ends, can_skip = _extended(texts)
    with np.errstate(divide="ignore"):
        emit = np.log(np.take_along_axis(probs.astype(np.float64), extended[:, None, :], axis=2))  # (N, T, S)
    alpha = np.full(extended.shape, -np.inf)
    alpha[:, 0] = emit[:, 0, 0]
    if extended.shape[1] > 1:
        alpha[:, 1] = np.where(ends > 1, emit[:, 0, 1], -np.inf)
    for t in range(1, probs.shape[1]):
        reach = np.logaddexp(np.logaddexp(alpha, _shifted(alpha, 1)), _shifted(alpha, 2, can_skip))
        alpha = reach + emit[:, t]
    rows = np.arange(len(texts))
    final = np.logaddexp(alpha[rows, ends - 1], np.where(ends > 1, alpha[rows, np.maximum(ends - 2, 0)], -np.inf))
    return np.exp(final)


def char_probabilities(probs: np.ndarray, texts: list[list[int]]) -> list[list[float]]:
    """Each character's probability: the highest probability its class has over the steps that emit
    it in the text's most probable alignment (for a greedy reading, its run of steps in the best path)."""
    extended, ends, can_skip = _extended(texts)
    batch, steps = len(texts), probs.shape[1]
    with np.errstate(divide="ignore"):
        emit = np.log(np.take_along_axis(probs.astype(np.float64), extended[:, None, :], axis=2))
    score = np.full(extended.shape, -np.inf)
    score[:, 0] = emit[:, 0, 0]
    if extended.shape[1] > 1:
        score[:, 1] = np.where(ends > 1, emit[:, 0, 1], -np.inf)
    back = np.zeros((steps, *extended.shape), dtype=np.int8)  # 0: stayed, 1: from s - 1, 2: from s - 2
    for t in range(1, steps):
        choices = np.stack([score, _shifted(score, 1), _shifted(score, 2, can_skip)])
        back[t] = choices.argmax(axis=0)
        score = choices.max(axis=0) + emit[:, t]
    found = []
    for n in range(batch):
        end = ends[n] - 1
        state = end if ends[n] == 1 or score[n, end] >= score[n, end - 1] else end - 1
        best = [0.0] * len(texts[n])
        for t in range(steps - 1, -1, -1):
            if state % 2:
                best[state // 2] = max(best[state // 2], float(probs[n, t, extended[n, state]]))
            state -= int(back[t, n, state])
        found.append(best)
    return found


def restrict(probs: np.ndarray, classes: list[int]) -> np.ndarray:
    """The outputs with every character class outside `classes` removed and each step renormalized over
    the blank and the classes kept: the model's view when the text can only use those characters."""
    keep = np.zeros(probs.shape[-1], dtype=bool)
    keep[[BLANK, *classes]] = True
    kept = np.where(keep, probs, 0.0)
    return kept / np.maximum(kept.sum(axis=-1, keepdims=True), np.finfo(probs.dtype).tiny)


class Grammar(NamedTuple):
    """The texts a reading may be: an automaton over classes (`next_state[state, class]`, -1 where no
    such text goes on with that class; state 0 starts), the states that end a text, and a last check
    of a whole text's classes (a meaning the automaton cannot hold, such as an exact division)."""

    next_state: np.ndarray
    accepting: np.ndarray
    accepts: Callable[[list[int]], bool]


def _best_text(log_probs: np.ndarray, min_len: int, max_len: int, beam: int,
               grammar: Grammar | None = None) -> list[int] | None:
    """The most probable text of min_len to max_len characters (and of `grammar`) under CTC, by a
    prefix beam search over one sample's log probabilities (steps, classes): every prefix carries its
    exact probability of ending in a blank and in its last character, summed over alignments; the
    `beam` most probable prefixes are kept per step (exact whenever no more than `beam` prefixes are
    alive), and with a grammar only prefixes it can complete. None if no text fits."""
    steps, classes = log_probs.shape
    prefixes: list[tuple[int, ...]] = [()]
    states = np.array([0])
    blank_end, char_end = np.array([0.0]), np.array([-np.inf])
    for t in range(steps):
        step = log_probs[t]
        total = np.logaddexp(blank_end, char_end)
        last = np.array([p[-1] if p else -1 for p in prefixes])
        # The same prefix, one step longer: a blank, or its last character repeated.
        stay_blank = total + step[BLANK]
        stay_char = np.where(last >= 0, char_end + step[np.maximum(last, 0)], -np.inf)
        # A new character: after a blank, or after another character (a repeat needs the blank between).
        grow = np.where(np.arange(classes)[None, :] == last[:, None], blank_end[:, None], total[:, None]) + step
        grow[:, BLANK] = -np.inf
        grow[np.array([len(p) for p in prefixes]) >= max_len] = -np.inf
        if grammar is not None:
            grow[grammar.next_state[states] < 0] = -np.inf
        index = {p: i for i, p in enumerate(prefixes)}
        for child, p in enumerate(prefixes):  # a grown prefix that is already kept joins it
            parent = index.get(p[:-1]) if p else None
            if parent is not None:
                stay_char[child] = np.logaddexp(stay_char[child], grow[parent, p[-1]])
                grow[parent, p[-1]] = -np.inf
        kept_scores = np.logaddexp(stay_blank, stay_char)
        grown = np.flatnonzero(np.isfinite(grow.ravel()))
        grown = grown[np.argsort(-grow.ravel()[grown])[:beam]]
        candidates = [(kept_scores[i], prefixes[i], stay_blank[i], stay_char[i], states[i])
                      for i in range(len(prefixes))]
        candidates += [(grow.ravel()[g], prefixes[g // classes] + (g % classes,), -np.inf, grow.ravel()[g],
                        grammar.next_state[states[g // classes], g % classes] if grammar is not None else 0)
                       for g in grown]
        reachable = [c for c in candidates if np.isfinite(c[0]) and len(c[1]) + steps - 1 - t >= min_len]
        reachable.sort(key=lambda c: -c[0])
        reachable = reachable[:beam]
        if not reachable:
            return None
        prefixes = [c[1] for c in reachable]
        blank_end = np.array([c[2] for c in reachable])
        char_end = np.array([c[3] for c in reachable])
        states = np.array([c[4] for c in reachable])
    scores = np.logaddexp(blank_end, char_end)
    for i in np.argsort(-scores, kind="stable"):
        fits = min_len <= len(prefixes[i]) <= max_len
        if fits and (grammar is None or (grammar.accepting[states[i]] and grammar.accepts(list(prefixes[i])))):
            return list(prefixes[i])
    return None


def _log_probs(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(probs.astype(np.float64))


def _accepts(grammar: Grammar, text: list[int]) -> bool:
    state = 0
    for cls in text:
        state = grammar.next_state[state, cls]
        if state < 0:
            return False
    return bool(grammar.accepting[state]) and grammar.accepts(text)


def _held_to_grammar(probs: np.ndarray, texts: dict[int, list[int]], confidences: dict[int, float],
                     lengths: tuple[int, int] | None, beam: int, grammar: Grammar) -> None:
    """Replaces each reading (`texts` and their `confidences`, by sample) by the most probable text the
    grammar accepts, when the search finds one at least GRAMMAR_MIN_SHARE as probable as the reading:
    the grammar chooses among the texts the model finds plausible, never one it has all but ruled out
    (such a reading stays as it is). A reading the grammar accepts and the model gives more than half
    its probability is that text already (no other text can be as probable): it is kept without a
    search."""
    searched = [n for n, text in texts.items() if not (confidences[n] > 0.5 and _accepts(grammar, text))]
    low, high = lengths if lengths is not None else (1, probs.shape[1])
    held = {n: best for n, sample in zip(searched, _log_probs(probs[searched]), strict=True)
            if (best := _best_text(sample, low, high, beam, grammar)) is not None}
    if held:
        for (n, best), p_held in zip(held.items(), text_probabilities(probs[list(held)], list(held.values())),
                                     strict=True):
            if p_held >= GRAMMAR_MIN_SHARE * confidences[n]:
                texts[n], confidences[n] = best, p_held


def decode_with_confidence(probs: np.ndarray, allowed: list[int] | None = None,
                           lengths: tuple[int, int] | None = None, beam: int = BEAM_WIDTH,
                           grammar: Grammar | None = None) -> list[Decoded | None]:
    """`_decode_chunk` on as many samples at a time as keep its arrays (samples x steps x CTC states,
    at most 2 x steps + 1 of them, and a float64 copy of the outputs) within MAX_DECODE_VALUES: the
    memory per image stays bounded however long a model's output is."""
    steps, classes = probs.shape[1:] if probs.ndim == 3 else (1, 1)
    per_sample = max(1, steps * max(2 * steps + 1, classes))
    rows = max(1, MAX_DECODE_VALUES // per_sample)
    if len(probs) <= rows:
        return _decode_chunk(probs, allowed, lengths, beam, grammar)
    return [reading for start in range(0, len(probs), rows)
            for reading in _decode_chunk(probs[start:start + rows], allowed, lengths, beam, grammar)]


def _decode_chunk(probs: np.ndarray, allowed: list[int] | None = None,
                  lengths: tuple[int, int] | None = None, beam: int = BEAM_WIDTH,
                  grammar: Grammar | None = None) -> list[Decoded | None]:
    """Readings of softmax outputs (N, steps, classes), with confidences.

    Without `lengths`, the greedy reading (the best path's text); with `lengths` (min, max), the most
    probable text of those lengths (prefix beam search); with `allowed`, only those character classes,
    the outputs renormalized over them first; with `grammar`, the most probable text it accepts
    instead, where that is plausible (`_held_to_grammar`). A reading's confidence is the probability
    the model gives its text: the sum, over every alignment of the text to the steps, of the product
    of the steps' probabilities. None for a sample whose steps cannot hold a text of `lengths`."""
    if allowed is not None:
        probs = restrict(probs, allowed)
    if lengths is None:
        texts: list[list[int] | None] = [ctc_label(path) for path in probs.argmax(axis=-1).tolist()]
    else:
        texts = [_best_text(sample, *lengths, beam) for sample in _log_probs(probs)]
    found = {n: text for n, text in enumerate(texts) if text is not None}
    readings: list[Decoded | None] = [None] * len(texts)
    if not found:
        return readings
    confidences = dict(zip(found, text_probabilities(probs[list(found)], list(found.values())), strict=True))
    if grammar is not None:
        _held_to_grammar(probs, found, confidences, lengths, beam, grammar)
    chars = char_probabilities(probs[list(found)], list(found.values()))
    for (n, text), probabilities in zip(found.items(), chars, strict=True):
        readings[n] = Decoded(text, probabilities, float(confidences[n]))
    return readings
