"""CTC against torch.nn.functional.ctc_loss (skipped when torch is absent)."""
import numpy as np
import pytest

from ctc_reference import log_softmax
from ctcseq import ctc_loss, ctc_loss_grad

torch = pytest.importorskip("torch")


def torch_ctc(lp, targets, il, tl, blank, reduction, zero_infinity):
    lpt = torch.from_numpy(lp.copy()).requires_grad_()
    loss = torch.nn.functional.ctc_loss(
        lpt, torch.from_numpy(np.asarray(targets, np.int64)), torch.from_numpy(il),
        torch.from_numpy(tl), blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    loss.sum().backward()
    return loss.detach().numpy(), lpt.grad.numpy()


def make_case(seed, T=30, N=6, C=7, S=8, blank=0):
    rng = np.random.default_rng(seed)
    lp = log_softmax(2.0 * rng.standard_normal((T, N, C)))
    labels = np.array([c for c in range(C) if c != blank])
    targets = rng.choice(labels, size=(N, S))
    targets[:, 1] = targets[:, 0]  # repeats
    il = rng.integers(T // 2, T + 1, size=N).astype(np.int64)
    tl = rng.integers(0, S + 1, size=N).astype(np.int64)
    il[0], tl[0] = 5, 6          # infeasible: 6 labels with a repeat need 7 frames
    tl[1] = 0                    # empty target
    return lp, targets, il, tl


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("blank_last", [False, True])
def test_matches_torch(blank_last, layout, reduction, zero_infinity):
    C = 7
    blank = C - 1 if blank_last else 0
    lp, targets, il, tl = make_case(21 + blank, C=C, blank=blank)
    want_loss, want_grad = torch_ctc(lp, targets, il, tl, blank, reduction, zero_infinity)
    if layout == "concatenated":
        targets = np.concatenate([targets[n, : tl[n]] for n in range(len(tl))])
    loss, grad = ctc_loss_grad(lp, targets, il, tl, blank=blank, reduction=reduction,
                               zero_infinity=zero_infinity)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    # torch returns w * (exp(lp) - occupancy) on valid frames; we return -w * occupancy
    T, N, _ = lp.shape
    w = np.ones(N) if reduction != "mean" else 1.0 / (np.maximum(tl, 1) * N)
    valid = (np.arange(T)[:, None] < il[None, :])[..., None]
    kept = np.isfinite(ctc_loss(lp, targets, il, tl, blank=blank, reduction="none"))
    ours_as_torch = grad + (valid * kept[None, :, None]) * w[None, :, None] * np.exp(lp)
    feasible = np.ones(N, bool) if zero_infinity else tl <= il - 1  # sequence 0 is not
    assert feasible[1:].all() and feasible[0] == zero_infinity
    np.testing.assert_allclose(ours_as_torch[:, feasible], want_grad[:, feasible],
                               rtol=1e-9, atol=1e-12)
    if not zero_infinity:
        # both give NaN on the valid frames of the infeasible sequence
        assert np.all(np.isnan(grad[: il[0], 0])) and np.all(np.isnan(want_grad[: il[0], 0]))


@pytest.mark.parametrize("seed", range(3))
def test_matches_torch_float32_batches(seed):
    rng = np.random.default_rng(seed)
    T, N, C, S = 120, 8, 30, 25
    lp = log_softmax(rng.standard_normal((T, N, C))).astype(np.float32)
    targets = rng.integers(1, C, size=(N, S))
    il = rng.integers(60, T + 1, size=N)
    tl = rng.integers(1, S + 1, size=N)
    # torch in float64 is the reference: ctcseq computes in float64 internally
    want_loss, want_grad = torch_ctc(lp.astype(np.float64), targets, il, tl, 0, "mean", False)
    loss, grad = ctc_loss_grad(lp, targets, il, tl)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    w = 1.0 / (np.maximum(tl, 1) * N)
    valid = (np.arange(T)[:, None] < il[None, :])[..., None]
    np.testing.assert_allclose(grad + valid * w[None, :, None] * np.exp(lp.astype(np.float64)),
                               want_grad, atol=1e-7)


def test_extreme_logits_match_torch_float64():
    rng = np.random.default_rng(3)
    T, N, C = 50, 3, 5
    logits = rng.choice([-1e4, 0.0, 1e4], size=(T, N, C)) + rng.standard_normal((T, N, C))
    lp = log_softmax(logits)
    targets = np.array([[1, 2, 3], [4, 4, 1], [2, 3, 2]])
    il = np.array([50, 40, 30])
    tl = np.array([3, 3, 3])
    want, _ = torch_ctc(lp, targets, il, tl, 0, "none", False)
    got = ctc_loss(lp, targets, il, tl, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-12)
