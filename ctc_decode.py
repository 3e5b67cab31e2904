"""Reading a CTC network's output: greedy decoding, a text's probability under CTC, and decoding
constrained by what the user knows (the characters a captcha may use, the lengths it may have).

Imports nothing but NumPy, so that reading with ONNX Runtime runs where MXNet is not installed.
`probs` are softmax outputs (N, steps, classes); class 0 is the CTC blank, class i + 1 character i.
"""

from typing import NamedTuple

import numpy as np

from hyperparameters import BLANK

BEAM_WIDTH = 32  # prefixes kept per step by the length-constrained search


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


def _best_of_lengths(log_probs: np.ndarray, min_len: int, max_len: int, beam: int) -> list[int] | None:
    """The most probable text of min_len to max_len characters under CTC, by a prefix beam search over
    one sample's log probabilities (steps, classes): every prefix carries its exact probability of
    ending in a blank and in its last character, summed over alignments; the `beam` most probable
    prefixes are kept per step (exact whenever no more than `beam` prefixes are alive). None if no
    text of those lengths fits the steps."""
    steps, classes = log_probs.shape
    prefixes: list[tuple[int, ...]] = [()]
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
        index = {p: i for i, p in enumerate(prefixes)}
        for child, p in enumerate(prefixes):  # a grown prefix that is already kept joins it
            parent = index.get(p[:-1]) if p else None
            if parent is not None:
                stay_char[child] = np.logaddexp(stay_char[child], grow[parent, p[-1]])
                grow[parent, p[-1]] = -np.inf
        kept_scores = np.logaddexp(stay_blank, stay_char)
        grown = np.flatnonzero(np.isfinite(grow.ravel()))
        grown = grown[np.argsort(-grow.ravel()[grown])[:beam]]
        candidates = [(kept_scores[i], prefixes[i], stay_blank[i], stay_char[i]) for i in range(len(prefixes))]
        candidates += [(grow.ravel()[g], prefixes[g // classes] + (g % classes,), -np.inf, grow.ravel()[g])
                       for g in grown]
        reachable = [c for c in candidates if np.isfinite(c[0]) and len(c[1]) + steps - 1 - t >= min_len]
        reachable.sort(key=lambda c: -c[0])
        reachable = reachable[:beam]
        if not reachable:
            return None
        prefixes = [c[1] for c in reachable]
        blank_end = np.array([c[2] for c in reachable])
        char_end = np.array([c[3] for c in reachable])
    scores = np.logaddexp(blank_end, char_end)
    fitting = [i for i, p in enumerate(prefixes) if min_len <= len(p) <= max_len]
    return list(prefixes[max(fitting, key=lambda i: scores[i])]) if fitting else None


def decode_with_confidence(probs: np.ndarray, allowed: list[int] | None = None,
                           lengths: tuple[int, int] | None = None, beam: int = BEAM_WIDTH) -> list[Decoded | None]:
    """Readings of softmax outputs (N, steps, classes), with confidences.

    Without `lengths`, the greedy reading (the best path's text); with `lengths` (min, max), the most
    probable text of those lengths (prefix beam search); with `allowed`, only those character classes,
    the outputs renormalized over them first. A reading's confidence is the probability the model
    gives its text: the sum, over every alignment of the text to the steps, of the product of the
    steps' probabilities. None for a sample whose steps cannot hold a text of `lengths`."""
    if allowed is not None:
        probs = restrict(probs, allowed)
    if lengths is None:
        texts: list[list[int] | None] = [ctc_label(path) for path in probs.argmax(axis=-1).tolist()]
    else:
        with np.errstate(divide="ignore"):
            log_probs = np.log(probs.astype(np.float64))
        texts = [_best_of_lengths(sample, *lengths, beam) for sample in log_probs]
    found = [n for n, text in enumerate(texts) if text is not None]
    readings: list[Decoded | None] = [None] * len(texts)
    if not found:
        return readings
    chosen = [texts[n] for n in found]
    confidences = text_probabilities(probs[found], chosen)
    for n, text, chars, confidence in zip(found, chosen, char_probabilities(probs[found], chosen), confidences,
                                          strict=True):
        readings[n] = Decoded(text, chars, float(confidence))
    return readings
