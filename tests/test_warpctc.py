import mxnet as mx
import numpy as np
import pytest

from lstm_ocr.warpctc import ctc_loss_and_grad


def _reference(acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MXNet's own contrib.ctc_loss, and the gradient of its sum, by autograd."""
    x = mx.nd.array(acts)
    x.attach_grad()
    with mx.autograd.record():
        loss = mx.nd.contrib.ctc_loss(x, mx.nd.array(labels))
    loss.backward(mx.nd.ones_like(loss))
    return loss.asnumpy(), x.grad.asnumpy()


def _random_case(seed: int, steps=80, batch=16, classes=11, label_len=4, scale=2.0):
    rng = np.random.default_rng(seed)
    acts = (rng.normal(size=(steps, batch, classes)) * scale).astype(np.float32)
    labels = rng.integers(1, classes, size=(batch, label_len))
    labels[::3, -1] = 0  # some 3-long labels, zero padded
    labels[1, :3] = [classes - 1, classes - 1, 1]  # a repeated character needs a blank between
    return acts, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradient_match_mxnet_ctc_loss(seed):
    acts, labels = _random_case(seed)
    loss, grad = ctc_loss_and_grad(acts, labels)
    ref_loss, ref_grad = _reference(acts, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    assert np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad) < 1e-4


def test_gradient_matches_finite_differences():
    acts, labels = _random_case(3, steps=12, batch=3, classes=5, label_len=3)
    acts = acts.astype(np.float64)
    _, grad = ctc_loss_and_grad(acts, labels)
    rng = np.random.default_rng(4)
    eps = 1e-6
    for _ in range(30):
        index = tuple(rng.integers(0, n) for n in acts.shape)
        bumped_up, bumped_down = acts.copy(), acts.copy()
        bumped_up[index] += eps
        bumped_down[index] -= eps
        numeric = (ctc_loss_and_grad(bumped_up, labels)[0].sum() - ctc_loss_and_grad(bumped_down, labels)[0].sum())
        assert numeric / (2 * eps) == pytest.approx(grad[index], abs=1e-6)


def test_custom_op_has_warpctc_interface_and_ctc_gradient():
    acts, labels = _random_case(5, batch=4)
    steps, batch, classes = acts.shape
    data = mx.nd.array(acts.reshape(steps * batch, classes))
    data.attach_grad()
    with mx.autograd.record():
        out = mx.nd.Custom(data, mx.nd.array(labels.reshape(-1), dtype="int32"), op_type="WarpCTC",
                           label_length=labels.shape[1], input_length=steps)
    out.backward()
    softmax = np.exp(acts) / np.exp(acts).sum(-1, keepdims=True)
    np.testing.assert_allclose(out.asnumpy(), softmax.reshape(steps * batch, classes), rtol=1e-5, atol=1e-7)
    _, ref_grad = _reference(acts, labels)
    got = data.grad.asnumpy().reshape(steps, batch, classes)
    assert np.linalg.norm(got - ref_grad) / np.linalg.norm(ref_grad) < 1e-4
