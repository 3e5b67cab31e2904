"""Accuracy of CTC predictions (whole-sequence and LCS-ratio), greedy decoding with confidences, and
the CTC loss as a metric.

Only `CtcLoss` needs MXNet, and it is built when first asked for: decoding and accuracy import
nothing but NumPy, so reading with ONNX Runtime runs where MXNet is not installed.
"""

import functools
from typing import NamedTuple

import numpy as np

from hyperparameters import BLANK


def ctc_label(path: list[int]) -> list[int]:
    """Greedy CTC decoding of a per-step class path: collapse repeats, then drop blanks."""
    return [c for i, c in enumerate(path) if c != BLANK and (i == 0 or c != path[i - 1])]


def remove_blank(label: list[int]) -> list[int]:
    """A zero-padded label without its padding."""
    return [c for c in label if c != BLANK]


def lcs_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common subsequence of `a` and `b` (dynamic programming)."""
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int64)
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i, j] = table[i - 1, j - 1] + 1 if x == y else max(table[i - 1, j], table[i, j - 1])
    return int(table[-1, -1])


def lcs_ratio(prediction: list[int], label: list[int]) -> float:
    """LCS length over the longer sequence's length: 1 only for an exact match, 0 for nothing shared."""
    longest = max(len(prediction), len(label))
    return lcs_length(prediction, label) / longest if longest else 1.0


def decode(pred: np.ndarray, batch_size: int) -> list[list[int]]:
    """Greedy decoding of a time-major softmax output: row t * batch_size + n is step t of sample n."""
    steps = np.argmax(pred, axis=-1).reshape(-1, batch_size).T
    return [ctc_label(path.tolist()) for path in steps]


class Decoded(NamedTuple):
    """A greedy reading: classes (no blanks), each one's probability, and the reading's confidence."""

    classes: list[int]
    probabilities: list[float]
    confidence: float


def text_probabilities(probs: np.ndarray, texts: list[list[int]]) -> np.ndarray:
    """P(text | image) under CTC for each sample: softmax outputs (N, steps, classes) summed over every
    alignment that collapses to its text (classes, no blanks); the forward recursion in log space."""
    batch, steps, _ = probs.shape
    longest = max((len(text) for text in texts), default=0)
    states = 2 * longest + 1
    extended = np.full((batch, states), BLANK, dtype=np.int64)  # blank, c1, blank, c2, ..., blank
    for n, text in enumerate(texts):
        extended[n, 1:2 * len(text):2] = text
    ends = 2 * np.array([len(text) for text in texts]) + 1
    can_skip = np.zeros((batch, states), dtype=bool)  # state s may be reached from s - 2
    can_skip[:, 2:] = (extended[:, 2:] != BLANK) & (extended[:, 2:] != extended[:, :-2])
    with np.errstate(divide="ignore"):
        emit = np.log(np.take_along_axis(probs.astype(np.float64), extended[:, None, :], axis=2))  # (N, T, S)
    alpha = np.full((batch, states), -np.inf)
    alpha[:, 0] = emit[:, 0, 0]
    if states > 1:
        alpha[:, 1] = np.where(ends > 1, emit[:, 0, 1], -np.inf)
    for t in range(1, steps):
        stay = alpha
        step = np.full_like(alpha, -np.inf)
        step[:, 1:] = alpha[:, :-1]
        skip = np.full_like(alpha, -np.inf)
        skip[:, 2:] = np.where(can_skip[:, 2:], alpha[:, :-2], -np.inf)
        alpha = np.logaddexp(np.logaddexp(stay, step), skip) + emit[:, t]
    rows = np.arange(batch)
    last = alpha[rows, ends - 1]
    before = np.where(ends > 1, alpha[rows, np.maximum(ends - 2, 0)], -np.inf)
    return np.exp(np.logaddexp(last, before))


def decode_with_confidence(probs: np.ndarray) -> list[Decoded]:
    """Greedy decoding of softmax outputs (N, steps, classes), with confidences.

    A reading's confidence is the probability the model gives its text: the sum, over every
    alignment of the text to the steps (CTC), of the product of the steps' probabilities. A
    character's probability is the highest probability its class has over the run of steps that
    emits it."""
    best = probs.argmax(axis=-1)
    top = np.take_along_axis(probs, best[..., None], axis=-1)[..., 0]
    readings = []
    for path, winners in zip(best.tolist(), top.tolist(), strict=True):
        classes: list[int] = []
        probabilities: list[float] = []
        for step, (c, p) in enumerate(zip(path, winners, strict=True)):
            if c == BLANK:
                continue
            if step > 0 and path[step - 1] == c:
                probabilities[-1] = max(probabilities[-1], p)
            else:
                classes.append(c)
                probabilities.append(p)
        readings.append((classes, probabilities))
    confidences = text_probabilities(probs, [classes for classes, _ in readings])
    return [Decoded(classes, probabilities, min(1.0, float(confidence)))
            for (classes, probabilities), confidence in zip(readings, confidences, strict=True)]


def _pairs(label: np.ndarray, pred: np.ndarray) -> list[tuple[list[int], list[int]]]:
    decoded = decode(pred, len(label))
    return [(p, remove_blank(row.astype(int).tolist())) for p, row in zip(decoded, label, strict=True)]


def accuracy(label: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of samples whose decoded sequence equals the label exactly (`mx.metric.np` form)."""
    pairs = _pairs(label, pred)
    return sum(p == lab for p, lab in pairs) / len(pairs)


def accuracy_lcs(label: np.ndarray, pred: np.ndarray) -> float:
    """Mean LCS ratio of decoded sequence and label."""
    pairs = _pairs(label, pred)
    return sum(lcs_ratio(p, lab) for p, lab in pairs) / len(pairs)


@functools.cache
def _ctc_loss_class() -> type:
    import mxnet as mx

    from warpctc import ctc_loss_and_grad

    class CtcLoss(mx.metric.EvalMetric):
        """Mean CTC loss per sample: the loss output of `--loss ctc`, or computed from the softmax
        (WarpCTC has no loss output)."""

        def __init__(self):
            super().__init__("loss", has_global_stats=True)

        def update(self, labels: list, preds: list) -> None:
            label = labels[0].asnumpy().astype(np.int64)
            if len(preds) > 1:
                losses = preds[1].asnumpy()
            else:
                softmax = preds[0].asnumpy()
                steps = len(softmax) // len(label)
                log_probs = np.log(np.maximum(softmax, 1e-30)).reshape(steps, len(label), -1)
                losses, _ = ctc_loss_and_grad(log_probs, label)
            for name in ("sum_metric", "global_sum_metric"):
                setattr(self, name, getattr(self, name) + float(losses.sum()))
            for name in ("num_inst", "global_num_inst"):
                setattr(self, name, getattr(self, name) + len(losses))

    return CtcLoss


def __getattr__(name: str):
    """`ctc_metrics.CtcLoss`, the MXNet metric, made (and MXNet imported) on first use."""
    if name == "CtcLoss":
        return _ctc_loss_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
