import numpy as np
import pytest

from lstm_ocr.ctc_metrics import accuracy, accuracy_lcs, decode, lcs_length, lcs_ratio, remove_blank


def test_remove_blank_drops_padding():
    assert remove_blank([5, 2, 7, 0]) == [5, 2, 7]


@pytest.mark.parametrize("a, b, expected", [
    ([], [], 0),
    ([1, 2, 3], [], 0),
    ([1, 2, 3, 4], [1, 2, 3, 4], 4),
    ([1, 3, 4], [1, 2, 3, 4], 3),
    ([4, 3, 2, 1], [1, 2, 3, 4], 1),
    ([2, 1, 2, 1], [1, 2, 1, 2], 3),
    ([1, 1, 9, 10], [1, 9, 1, 10], 3),
    ([5, 6, 7], [8, 9], 0),
])
def test_lcs_length_on_hand_checked_cases(a, b, expected):
    assert lcs_length(a, b) == expected
    assert lcs_length(b, a) == expected


def test_lcs_ratio_is_one_only_for_an_exact_match():
    assert lcs_ratio([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert lcs_ratio([1, 2, 3, 4, 4], [1, 2, 3, 4]) == 0.8  # an extra character costs
    assert lcs_ratio([1, 3, 4], [1, 2, 3, 4]) == 0.75
    assert lcs_ratio([], [1, 2, 3]) == 0.0


def _softmax_for(paths: list[list[int]], classes: int = 11) -> np.ndarray:
    """A time-major (T * N, classes) one-hot output whose argmax paths are `paths` (N of length T)."""
    steps = np.array(paths).T  # (T, N)
    return np.eye(classes)[steps.ravel()]


def test_metrics_decode_time_major_batches():
    pred = _softmax_for([[0, 1, 1, 0, 1, 9], [2, 0, 3, 3, 0, 0], [4, 0, 0, 0, 0, 5]])
    assert decode(pred, 3) == [[1, 1, 9], [2, 3], [4, 5]]
    label = np.array([[1, 1, 9, 0], [2, 3, 4, 0], [5, 4, 0, 0]])
    assert accuracy(label, pred) == pytest.approx(1 / 3)
    assert accuracy_lcs(label, pred) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


def test_ctc_loss_metric_is_the_same_from_the_loss_output_or_the_softmax():
    import mxnet as mx

    from lstm_ocr.ctc_metrics import CtcLoss
    from lstm_ocr.warpctc import ctc_loss_and_grad, log_softmax

    rng = np.random.default_rng(0)
    acts = rng.normal(size=(20, 3, 11))
    label = np.array([[1, 2, 3, 0], [4, 4, 5, 6], [7, 8, 9, 0]])
    losses, _ = ctc_loss_and_grad(acts, label)
    softmax = np.exp(log_softmax(acts)).reshape(60, 11)
    from_output, from_softmax = CtcLoss(), CtcLoss()
    from_output.update([mx.nd.array(label)], [mx.nd.array(softmax), mx.nd.array(losses)])
    from_softmax.update([mx.nd.array(label)], [mx.nd.array(softmax)])
    assert from_output.get() == ("loss", pytest.approx(losses.mean(), rel=1e-5))
    assert from_softmax.get() == ("loss", pytest.approx(losses.mean(), rel=1e-4))


def test_metrics_work_for_any_alphabet():
    # 36 characters (0-9a-z) + blank: classes above 10 and labels of up to 6 characters.
    pred = _softmax_for([[36, 0, 11, 11, 0, 11, 20, 0], [15, 15, 0, 30, 0, 0, 0, 2]], classes=37)
    assert decode(pred, 2) == [[36, 11, 11, 20], [15, 30, 2]]
    label = np.array([[36, 11, 11, 20, 0, 0], [15, 30, 2, 33, 34, 0]])
    assert accuracy(label, pred) == pytest.approx(1 / 2)
    assert accuracy_lcs(label, pred) == pytest.approx((1 + 3 / 5) / 2)
