"""CTC loss and gradient in NumPy, and a custom MXNet operator with `mx.sym.WarpCTC`'s interface.

Stock pip MXNet has no WarpCTC (it needs Baidu's warp-ctc and MXNet built from source); this
operator takes its place: inputs are the (T*N, C) time-major activations and the flat int32
labels (N*L, zero padded), forward is a softmax, backward is the gradient of the summed CTC loss
with respect to the activations (blank = class 0). The recursions are Graves et al. (2006) in
log space.
"""

import mxnet as mx
import numpy as np

from lstm_ocr.hyperparameters import BLANK


def log_softmax(acts: np.ndarray) -> np.ndarray:
    shifted = acts - acts.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logsumexp(*terms: np.ndarray) -> np.ndarray:
    stacked = np.stack(terms)
    top = stacked.max(axis=0)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):  # log(0) = -inf: a state no path reaches
        return safe_top + np.log(np.exp(stacked - safe_top).sum(axis=0))


def ctc_loss_and_grad(acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample CTC loss (N,) and its gradient w.r.t. `acts` (T, N, C); labels (N, L), 0 = padding."""
    acts = acts.astype(np.float64)
    num_steps, batch, _ = acts.shape
    log_probs = log_softmax(acts)
    # Extended label sequences: blank, l1, blank, l2, ..., blank (padding zeros dropped).
    lengths = (labels != BLANK).sum(axis=1)
    compact = np.zeros_like(labels)
    for n in range(batch):
        compact[n, :lengths[n]] = labels[n][labels[n] != BLANK]
    num_states = 2 * labels.shape[1] + 1
    extended = np.full((batch, num_states), BLANK, dtype=np.int64)
    extended[:, 1::2] = compact
    ends = 2 * lengths + 1  # valid extended length per sample
    rows = np.arange(batch)[:, None]
    # A step may skip a blank between two different labels (state s-2 -> s).
    can_skip = np.zeros((batch, num_states), dtype=bool)
    can_skip[:, 2:] = (extended[:, 2:] != BLANK) & (extended[:, 2:] != extended[:, :-2])
    neg_inf = np.full((batch, num_states), -np.inf)

    def shifted(values: np.ndarray, by: int) -> np.ndarray:
        out = np.full_like(values, -np.inf)
        out[:, by:] = values[:, :-by]
        return out

    emit = log_probs[:, rows, extended]  # (T, N, S): log y_t(l'_s)
    alpha = np.empty((num_steps, batch, num_states))
    alpha[0] = neg_inf
    alpha[0, :, 0] = emit[0, :, 0]
    alpha[0, :, 1] = np.where(lengths > 0, emit[0, :, 1], -np.inf)
    for t in range(1, num_steps):
        skip = np.where(can_skip, shifted(alpha[t - 1], 2), -np.inf)
        alpha[t] = _logsumexp(alpha[t - 1], shifted(alpha[t - 1], 1), skip) + emit[t]
    # beta[t, s]: log probability of the rest of the path after step t, given state s at step t.
    beta = np.empty_like(alpha)
    beta[-1] = neg_inf
    beta[-1, np.arange(batch), ends - 1] = 0.0
    beta[-1, np.arange(batch), ends - 2] = np.where(lengths > 0, 0.0, -np.inf)
    skip_from = np.zeros_like(can_skip)  # state s may jump to s+2
    skip_from[:, :-2] = can_skip[:, 2:]
    for t in range(num_steps - 2, -1, -1):
        ahead = beta[t + 1] + emit[t + 1]
        unshifted = np.full_like(ahead, -np.inf)
        unshifted[:, :-1] = ahead[:, 1:]
        jump = np.full_like(ahead, -np.inf)
        jump[:, :-2] = ahead[:, 2:]
        beta[t] = _logsumexp(ahead, unshifted, np.where(skip_from, jump, -np.inf))
    log_likelihood = _logsumexp(alpha[-1, np.arange(batch), ends - 1],
                                np.where(lengths > 0, alpha[-1, np.arange(batch), ends - 2], -np.inf))
    occupancy = np.exp(alpha + beta - log_likelihood[None, :, None])  # (T, N, S)
    one_hot = np.eye(acts.shape[2])[extended]  # (N, S, C)
    grad = np.exp(log_probs) - np.einsum("tns,nsc->tnc", occupancy, one_hot)
    return -log_likelihood, grad


class WarpCTC(mx.operator.CustomOp):
    """Forward: softmax of the activations. Backward: the CTC gradient (a loss layer)."""

    def __init__(self, label_length: int, input_length: int):
        super().__init__()
        self.label_length, self.input_length = label_length, input_length

    def forward(self, is_train, req, in_data, out_data, aux):
        acts = in_data[0].asnumpy()
        self.assign(out_data[0], req[0], mx.nd.array(np.exp(log_softmax(acts))))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        acts = in_data[0].asnumpy()
        batch = acts.shape[0] // self.input_length
        labels = in_data[1].asnumpy().astype(np.int64).reshape(batch, self.label_length)
        _, grad = ctc_loss_and_grad(acts.reshape(self.input_length, batch, -1), labels)
        self.assign(in_grad[0], req[0], mx.nd.array(grad.reshape(acts.shape)))
        self.assign(in_grad[1], req[1], mx.nd.zeros(in_data[1].shape))


@mx.operator.register("WarpCTC")
class WarpCTCProp(mx.operator.CustomOpProp):
    """Shapes and types of the WarpCTC operator: data (T*N, C), label (N*L,) int32."""

    def __init__(self, label_length, input_length):
        super().__init__(need_top_grad=False)
        self.label_length, self.input_length = int(label_length), int(input_length)

    def list_arguments(self):
        return ["data", "label"]

    def list_outputs(self):
        return ["output"]

    def infer_shape(self, in_shape):
        data_shape = in_shape[0]
        batch = data_shape[0] // self.input_length
        return [data_shape, (batch * self.label_length,)], [data_shape], []

    def infer_type(self, in_type):
        return [in_type[0], np.int32], [in_type[0]], []

    def create_operator(self, ctx, shapes, dtypes):
        return WarpCTC(self.label_length, self.input_length)
