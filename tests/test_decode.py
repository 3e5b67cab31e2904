import itertools

import numpy as np
import pytest

from lstm_ocr import arithmetic
from lstm_ocr.decode import (
    GRAMMAR_MIN_SHARE,
    char_probabilities,
    ctc_label,
    decode_with_confidence,
    restrict,
    text_probabilities,
)


def test_ctc_label_collapses_repeats_then_drops_blanks():
    assert ctc_label([0, 1, 1, 0, 1, 9, 9, 0, 10, 0]) == [1, 1, 9, 10]
    assert ctc_label([3, 3, 3]) == [3]
    assert ctc_label([0, 0]) == []


def test_confidence_is_the_ctc_probability_of_the_text():
    """Two steps, classes (blank, a): the text 'a' has paths a-a, a-blank, blank-a."""
    probs = np.array([[[0.3, 0.7], [0.4, 0.6]]])
    (reading,) = decode_with_confidence(probs)
    assert reading.classes == [1] and reading.probabilities == [0.7]
    assert reading.confidence == pytest.approx(0.7 * 0.6 + 0.7 * 0.4 + 0.3 * 0.6)
    (empty,) = decode_with_confidence(np.array([[[0.9, 0.1], [0.8, 0.2]]]))
    assert empty.classes == [] and empty.confidence == pytest.approx(0.72)


def test_confidence_equals_the_ctc_loss_of_the_text():
    from lstm_ocr.warpctc import ctc_loss_and_grad
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(6, 10, 4)) * 2
    probs = np.exp(acts) / np.exp(acts).sum(-1, keepdims=True)
    texts = [[], [1], [2, 2], [1, 2, 3], [3, 3, 3], [2, 1]]
    labels = np.zeros((6, 3), np.int64)
    for n, text in enumerate(texts):
        labels[n, :len(text)] = text
    loss, _ = ctc_loss_and_grad(np.log(probs).transpose(1, 0, 2), labels)
    np.testing.assert_allclose(np.log(text_probabilities(probs, texts)), -loss, rtol=1e-9)


def _random_probs(rng: np.random.Generator, batch: int, steps: int, classes: int, peaked: float = 1.0) -> np.ndarray:
    acts = rng.normal(size=(batch, steps, classes)) * peaked
    return np.exp(acts) / np.exp(acts).sum(-1, keepdims=True)


def _brute_force_texts(probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """P(text) of every text, by summing the probability of every path (classes ** steps of them)."""
    steps, classes = probs.shape
    found: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        text = tuple(ctc_label(list(path)))
        found[text] = found.get(text, 0.0) + float(np.prod(probs[np.arange(steps), path]))
    return found


def test_text_probabilities_equal_the_sum_over_every_path():
    rng = np.random.default_rng(1)
    probs = _random_probs(rng, 3, 5, 3)
    for sample in probs:
        brute = _brute_force_texts(sample)
        texts = [list(text) for text in brute]
        np.testing.assert_allclose(text_probabilities(np.repeat(sample[None], len(texts), 0), texts),
                                   list(brute.values()), rtol=1e-9)


@pytest.mark.parametrize("steps, classes, lengths", [(5, 3, (2, 2)), (6, 3, (3, 3)), (5, 4, (1, 2)),
                                                     (6, 2, (4, 5)), (7, 2, (3, 4)), (4, 3, (0, 1))])
def test_length_constrained_reading_is_the_most_probable_text_of_those_lengths(steps, classes, lengths):
    rng = np.random.default_rng(steps * 10 + classes)
    for peaked in (1.0, 3.0):
        probs = _random_probs(rng, 6, steps, classes, peaked)
        readings = decode_with_confidence(probs, lengths=lengths, beam=1000)
        for sample, reading in zip(probs, readings, strict=True):
            brute = {text: p for text, p in _brute_force_texts(sample).items()
                     if lengths[0] <= len(text) <= lengths[1]}
            if not brute:  # one character repeated needs a blank between: 'aaaa' takes 7 steps
                assert reading is None
                continue
            best = max(brute, key=brute.get)
            assert tuple(reading.classes) == best
            assert reading.confidence == pytest.approx(brute[best], rel=1e-9)


def test_allowed_characters_renormalize_then_decode_among_them_only():
    rng = np.random.default_rng(7)
    probs = _random_probs(rng, 8, 5, 4, 2.0)
    allowed = [1, 3]
    restricted = restrict(probs, allowed)
    np.testing.assert_allclose(restricted.sum(-1), 1.0)
    assert (restricted[..., 2] == 0).all()
    for lengths in (None, (2, 2)):
        readings = decode_with_confidence(probs, allowed=allowed, lengths=lengths, beam=1000)
        for sample, reading in zip(restricted, readings, strict=True):
            assert set(reading.classes) <= set(allowed)
            brute = {text: p for text, p in _brute_force_texts(sample).items()
                     if lengths is None or len(text) == 2}
            assert reading.confidence == pytest.approx(brute[tuple(reading.classes)], rel=1e-9)
            if lengths is not None:
                assert tuple(reading.classes) == max(brute, key=brute.get)


def test_a_length_the_steps_cannot_hold_reads_nothing():
    probs = _random_probs(np.random.default_rng(0), 2, 3, 3)
    assert decode_with_confidence(probs, lengths=(3, 3))[0] is not None  # three different characters fit
    assert decode_with_confidence(probs, lengths=(4, 4)) == [None, None]


def test_the_default_beam_finds_the_brute_force_answer_on_peaked_outputs():
    rng = np.random.default_rng(3)
    probs = _random_probs(rng, 20, 7, 4, 3.0)
    wide = decode_with_confidence(probs, lengths=(3, 4), beam=10_000)
    assert [r.classes for r in decode_with_confidence(probs, lengths=(3, 4))] == [r.classes for r in wide]


def test_char_probabilities_are_the_best_paths_runs_for_a_greedy_reading():
    rng = np.random.default_rng(5)
    probs = _random_probs(rng, 10, 12, 5, 2.0)
    best = probs.argmax(-1)
    for sample, path, (classes, chars) in zip(probs, best, [(r.classes, r.probabilities) for r in
                                                            decode_with_confidence(probs)], strict=True):
        runs: list[float] = []
        for t, c in enumerate(path):
            if c == 0:
                continue
            if t and path[t - 1] == c:
                runs[-1] = max(runs[-1], sample[t, c])
            else:
                runs.append(sample[t, c])
        assert chars == pytest.approx(runs)
        assert char_probabilities(sample[None], [classes])[0] == pytest.approx(runs)


def test_grammar_reading_is_the_most_probable_text_it_accepts_when_plausible():
    rng = np.random.default_rng(11)
    grammar = arithmetic.grammar("1+")  # 1+1, 1+11+1, ...: classes (blank, 1, +)
    probs = _random_probs(rng, 12, 6, 3, 1.5)
    plain = decode_with_confidence(probs)
    held = decode_with_confidence(probs, grammar=grammar, beam=1000)
    changed = 0
    for sample, before, reading in zip(probs, plain, held, strict=True):
        brute = _brute_force_texts(sample)
        accepted = {text: p for text, p in brute.items() if arithmetic.answer("".join(" 1+"[c] for c in text))}
        best = max(accepted, key=accepted.get)
        if accepted[best] >= GRAMMAR_MIN_SHARE * brute[tuple(before.classes)]:
            assert tuple(reading.classes) == best
            assert reading.confidence == pytest.approx(accepted[best], rel=1e-9)
            changed += tuple(before.classes) != best
        else:  # every text of the grammar all but ruled out: the reading stays
            assert reading.classes == before.classes
    assert changed > 0


def test_grammar_never_forces_a_text_the_model_ruled_out():
    probs = np.eye(3)[[1, 0, 1, 0, 0, 0]] * 0.98 + 0.02 / 3  # reads '11', sure of it
    (reading,) = decode_with_confidence(probs[None], grammar=arithmetic.grammar("1+"))
    assert reading.classes == [1, 1]


def test_a_sure_reading_the_grammar_accepts_is_kept_as_it_is():
    probs = np.eye(3)[[1, 0, 2, 0, 1, 0]] * 0.9 + 0.1 / 3  # reads '1+1' with probability over one half
    (plain,) = decode_with_confidence(probs[None])
    (reading,) = decode_with_confidence(probs[None], grammar=arithmetic.grammar("1+"))
    assert plain.confidence > 0.5 and reading.classes == plain.classes == [1, 2, 1]
    assert reading.confidence == pytest.approx(plain.confidence)
