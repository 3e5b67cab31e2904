"""MXNet data iterators over CAPTCHA batches: `data` (N, width, height) float32, `label` (N, num_label)."""

from collections.abc import Callable

import mxnet as mx
import numpy as np

from lstm_ocr.hyperparameters import Hyperparams
from lstm_ocr.images import to_float

Batch = tuple[np.ndarray, np.ndarray]  # uint8 images (N, width, height), int32 labels (N, num_label)


def data_descs(hp: Hyperparams) -> tuple[list[mx.io.DataDesc], list[mx.io.DataDesc]]:
    """What a batch holds: `data` (N, width, height) and `label` (N, num_label)."""
    return ([mx.io.DataDesc("data", (hp.batch_size, hp.image_width, hp.image_height))],
            [mx.io.DataDesc("label", (hp.batch_size, hp.num_label))])


class OCRIter(mx.io.DataIter):
    """`count` samples an epoch, in batches drawn from `next_batch` (for example `MPData.sample`)."""

    def __init__(self, count: int, hp: Hyperparams, next_batch: Callable[[int], Batch]):
        super().__init__(hp.batch_size)
        self.num_batches = count // hp.batch_size
        self.next_batch = next_batch
        self.provide_data, self.provide_label = data_descs(hp)
        self.served = 0

    def reset(self) -> None:
        self.served = 0

    def next(self) -> mx.io.DataBatch:
        if self.served == self.num_batches:
            raise StopIteration
        self.served += 1
        images, labels = self.next_batch(self.batch_size)
        return mx.io.DataBatch(data=[mx.nd.array(to_float(images))], label=[mx.nd.array(labels)],
                               provide_data=self.provide_data, provide_label=self.provide_label)


def fixed_iter(images: np.ndarray, labels: np.ndarray, hp: Hyperparams) -> mx.io.NDArrayIter:
    """The same samples every epoch (validation), in order; a last partial batch is dropped."""
    return mx.io.NDArrayIter(to_float(images), labels.astype(np.float32), hp.batch_size,
                             data_name="data", label_name="label", last_batch_handle="discard")
