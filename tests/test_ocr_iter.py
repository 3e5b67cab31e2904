import numpy as np

from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.ocr_iter import OCRIter, fixed_iter


def test_ocr_iter_serves_count_over_batch_size_batches_each_epoch():
    hp = Hyperparams(batch_size=4)
    calls = []

    def next_batch(size):
        calls.append(size)
        return np.full((size, 80, 30), 255, np.uint8), np.ones((size, 4), np.int32)

    it = OCRIter(18, hp, next_batch)
    assert it.provide_data[0].shape == (4, 80, 30) and it.provide_label[0].shape == (4, 4)
    batches = list(it)
    assert len(batches) == 4 and calls == [4] * 4
    assert batches[0].data[0].shape == (4, 80, 30)
    assert batches[0].data[0].asnumpy().max() == 1.0  # scaled to [0, 1]
    it.reset()
    assert len(list(it)) == 4


def test_fixed_iter_repeats_the_same_samples():
    hp = Hyperparams(batch_size=2)
    images = np.arange(5 * 80 * 30, dtype=np.uint32).reshape(5, 80, 30).astype(np.uint8)
    labels = np.arange(20, dtype=np.int32).reshape(5, 4)
    it = fixed_iter(images, labels, hp)
    first = [b.label[0].asnumpy() for b in it]
    it.reset()
    second = [b.label[0].asnumpy() for b in it]
    assert len(first) == 2  # the last partial batch is dropped
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
