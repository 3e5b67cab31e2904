"""Accuracy of CTC predictions (whole-sequence and LCS-ratio) and the CTC loss as a metric, for
training; reading (decoding with confidences and constraints) is decode.py's.

Only `CtcLoss` needs MXNet, and it is built when first asked for: accuracy imports nothing but NumPy.
"""

import functools

import numpy as np

from lstm_ocr.decode import ctc_label
from lstm_ocr.hyperparameters import BLANK


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

    from lstm_ocr.warpctc import ctc_loss_and_grad

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
