"""CTC loss and gradient against independent references."""
import numpy as np
import pytest

from ctc_reference import brute_force, forward_nll, log_softmax
from ctcseq import ctc_loss, ctc_loss_grad


def random_batch(rng, T, N, C, S, blank=0, dtype=np.float64, scale=1.0):
    lp = log_softmax(scale * rng.standard_normal((T, N, C))).astype(dtype)
    labels = np.array([c for c in range(C) if c != blank])
    targets = rng.choice(labels, size=(N, S))
    input_lengths = rng.integers(max(1, T // 2), T + 1, size=N)
    target_lengths = rng.integers(0, S + 1, size=N)
    return lp, targets, input_lengths, target_lengths


def valid_mask(T, input_lengths):
    return (np.arange(T)[:, None] < np.asarray(input_lengths)[None, :])[..., None]


# --- brute force -----------------------------------------------------------

TINY_CASES = [
    # (T, C, target, blank)
    (1, 2, [1], 0),
    (2, 2, [1], 0),
    (3, 3, [1, 1], 0),       # repeat needs a blank between
    (4, 3, [1, 2], 0),
    (5, 3, [2, 2, 1], 0),
    (5, 3, [0, 1], 2),       # blank = C - 1
    (4, 4, [], 0),           # empty target: all-blank path
    (5, 4, [3, 1, 3], 0),
    (2, 3, [1, 1], 0),       # infeasible
]


@pytest.mark.parametrize("T,C,target,blank", TINY_CASES)
def test_matches_brute_force(T, C, target, blank):
    rng = np.random.default_rng(T * 100 + C)
    lp = log_softmax(rng.standard_normal((T, 1, C)) * 2.0)
    want_nll, want_grad = brute_force(lp[:, 0], target, blank)
    tg = np.array([target], dtype=np.int64).reshape(1, len(target))
    loss, grad = ctc_loss_grad(lp, tg, [T], [len(target)], blank=blank, reduction="sum")
    if np.isinf(want_nll):
        assert np.isposinf(loss)
        assert np.all(np.isnan(grad))
    else:
        np.testing.assert_allclose(loss, want_nll, rtol=1e-12)
        np.testing.assert_allclose(grad[:, 0], want_grad, rtol=1e-10, atol=1e-14)


def test_batch_matches_brute_force_per_sequence():
    rng = np.random.default_rng(7)
    T, N, C = 5, 4, 3
    lp = log_softmax(rng.standard_normal((T, N, C)))
    targets = np.array([[1, 2, 0], [2, 2, 0], [1, 0, 0], [2, 1, 2]])
    tl = np.array([2, 2, 1, 3])
    il = np.array([5, 4, 3, 5])
    loss, grad = ctc_loss_grad(lp, targets, il, tl, reduction="none")
    for n in range(N):
        nll, g = brute_force(lp[: il[n], n], targets[n, : tl[n]], 0)
        np.testing.assert_allclose(loss[n], nll, rtol=1e-12)
        np.testing.assert_allclose(grad[: il[n], n], g, rtol=1e-10, atol=1e-14)
        assert np.all(grad[il[n]:, n] == 0.0)


# --- finite differences ------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("blank", [0, 4])
def test_gradient_finite_differences(reduction, blank):
    rng = np.random.default_rng(3)
    T, N, C, S = 9, 3, 5, 4
    lp, tg, il, tl = random_batch(rng, T, N, C, S, blank=blank, scale=2.0)
    tg[0, :2] = tg[0, 0]  # a repeat
    _, grad = ctc_loss_grad(lp, tg, il, tl, blank=blank, reduction=reduction)
    eps = 1e-6
    fd = np.zeros_like(lp)
    for idx in np.ndindex(lp.shape):
        up, dn = lp.copy(), lp.copy()
        up[idx] += eps
        dn[idx] -= eps
        fd[idx] = (ctc_loss(up, tg, il, tl, blank=blank, reduction=reduction)
                   - ctc_loss(dn, tg, il, tl, blank=blank, reduction=reduction)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    assert np.all(grad[~np.broadcast_to(valid_mask(T, il), lp.shape)] == 0.0)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(11)
    lp, tg, il, tl = random_batch(rng, 60, 5, 8, 12)
    l64, g64 = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    l32, g32 = ctc_loss_grad(lp.astype(np.float32), tg, il, tl, reduction="none")
    assert l32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-6)
    np.testing.assert_allclose(g32, g64, atol=1e-6)


# --- numerical stability -----------------------------------------------------

def test_long_input_float32_is_stable():
    rng = np.random.default_rng(5)
    T, C, S = 10_000, 20, 300
    lp64 = log_softmax(3.0 * rng.standard_normal((T, 1, C)))
    tg = rng.integers(1, C, size=(1, S))
    want = forward_nll(lp64[:, 0], tg[0], 0)
    loss, grad = ctc_loss_grad(lp64.astype(np.float32), tg, [T], [S], reduction="sum")
    assert np.isfinite(loss) and want > 1e4
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    # occupancies sum to one on every frame
    np.testing.assert_allclose(grad[:, 0].sum(-1), -1.0, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits(dtype):
    rng = np.random.default_rng(9)
    T, C = 40, 6
    logits = rng.choice([-1e4, 0.0, 1e4], size=(T, 2, C)) + rng.standard_normal((T, 2, C))
    lp = log_softmax(logits)
    tg = np.array([[1, 2, 3, 1], [5, 5, 4, 2]])
    loss, grad = ctc_loss_grad(lp.astype(dtype), tg, [T, T], [4, 4], reduction="none")
    for n in range(2):
        want = forward_nll(lp[:, n], tg[n], 0)
        assert np.isfinite(want) and want > 1e4
        np.testing.assert_allclose(loss[n], want, rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad.sum(-1), -1.0, atol=1e-5)


def test_states_far_below_the_row_maximum_are_not_lost():
    # Blank is expensive, so paths are 1...1 2...2.  Frames favour label 2
    # early and label 1 in the middle, so "switch at once" and "switch late"
    # tie overall while each is ~1000 nats behind the other at frame 150.
    T, C = 400, 3
    lp = np.full((T, 1, C), -30.0)
    lp[:150, 0, 2] = -1.0
    lp[150:300, 0, 1] = -1.0
    lp[:150, 0, 1] = -8.0
    lp[150:300, 0, 2] = -8.0
    lp[300:, 0, 2] = -1.0
    lp[300:, 0, 1] = -1.0
    lp = log_softmax(lp)
    tg = np.array([[1, 2]])
    loss, grad = ctc_loss_grad(lp, tg, [T], [2], reduction="sum")
    np.testing.assert_allclose(loss, forward_nll(lp[:, 0], [1, 2], 0), rtol=1e-12)
    np.testing.assert_allclose(grad[:, 0].sum(-1), -1.0, atol=1e-12)


# --- NaN, padding, infeasible ----------------------------------------------

def test_nan_poisons_only_its_own_sequence():
    rng = np.random.default_rng(1)
    lp, tg, il, tl = random_batch(rng, 20, 4, 6, 5)
    il[:] = 20
    clean, clean_grad = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    lp[3, 2, 4] = np.nan
    loss, grad = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    assert np.isnan(loss[2]) and np.all(np.isnan(grad[:, 2]))
    keep = [0, 1, 3]
    np.testing.assert_array_equal(loss[keep], clean[keep])
    np.testing.assert_array_equal(grad[:, keep], clean_grad[:, keep])
    total = ctc_loss(lp, tg, il, tl, reduction="mean")
    assert np.isnan(total)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_frames_past_input_length_are_never_read(dtype):
    rng = np.random.default_rng(2)
    lp, tg, il, tl = random_batch(rng, 30, 5, 7, 6, dtype=dtype)
    il = np.array([30, 25, 17, 9, 1])
    tl = np.array([6, 5, 4, 2, 1])
    clean = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    dirty = lp.copy()
    dirty[~np.broadcast_to(valid_mask(30, il), lp.shape)] = np.nan
    got = ctc_loss_grad(dirty, tg, il, tl, reduction="none")
    np.testing.assert_array_equal(got[0], clean[0])
    np.testing.assert_array_equal(got[1], clean[1])
    assert np.all(got[1][~np.broadcast_to(valid_mask(30, il), lp.shape)] == 0.0)


def test_infeasible_targets_and_zero_infinity():
    rng = np.random.default_rng(4)
    lp = log_softmax(rng.standard_normal((4, 3, 5)))
    tg = np.array([[1, 1, 1], [1, 2, 0], [3, 4, 3]])
    tl = np.array([3, 2, 3])  # [1, 1, 1] needs 5 frames
    il = np.array([4, 4, 4])
    loss, grad = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    assert np.isposinf(loss[0]) and np.all(np.isfinite(loss[1:]))
    assert np.all(np.isnan(grad[:, 0])) and np.all(np.isfinite(grad[:, 1:]))
    zl, zg = ctc_loss_grad(lp, tg, il, tl, reduction="none", zero_infinity=True)
    assert zl[0] == 0.0 and np.all(zg[:, 0] == 0.0)
    np.testing.assert_array_equal(zl[1:], loss[1:])
    np.testing.assert_array_equal(zg[:, 1:], grad[:, 1:])
    # zeroed sequences still count in the batch mean, as in torch
    mean = ctc_loss(lp, tg, il, tl, zero_infinity=True)
    np.testing.assert_allclose(mean, (loss[1] / 2 + loss[2] / 3) / 3, rtol=1e-12)


def test_empty_input_and_empty_target():
    lp = np.zeros((3, 2, 4))
    loss = ctc_loss(lp, np.ones((2, 1), np.int64), [0, 0], [0, 1], reduction="none")
    assert loss[0] == 0.0 and np.isposinf(loss[1])


# --- API conventions -----------------------------------------------------------

def test_reductions_and_layouts_agree():
    rng = np.random.default_rng(8)
    lp, tg, il, tl = random_batch(rng, 25, 6, 9, 7)
    tl[2] = 0
    none, gnone = ctc_loss_grad(lp, tg, il, tl, reduction="none")
    ssum, gsum = ctc_loss_grad(lp, tg, il, tl, reduction="sum")
    mean, gmean = ctc_loss_grad(lp, tg, il, tl, reduction="mean")
    np.testing.assert_allclose(ssum, none.sum(), rtol=1e-12)
    np.testing.assert_allclose(mean, np.mean(none / np.maximum(tl, 1)), rtol=1e-12)
    np.testing.assert_array_equal(gnone, gsum)
    w = 1.0 / (np.maximum(tl, 1) * len(tl))
    np.testing.assert_allclose(gmean, gsum * w[None, :, None], rtol=1e-12, atol=1e-300)
    concat = np.concatenate([tg[n, : tl[n]] for n in range(len(tl))])
    c_loss, c_grad = ctc_loss_grad(lp, concat, il, tl, reduction="none")
    np.testing.assert_array_equal(c_loss, none)
    np.testing.assert_array_equal(c_grad, gnone)
    assert isinstance(mean, np.float64) and none.shape == (6,)


def test_accepts_lists_and_int32():
    lp = log_softmax(np.random.default_rng(0).standard_normal((6, 2, 4)))
    a = ctc_loss(lp, [[1, 2], [3, 0]], [6, 5], [2, 1])
    b = ctc_loss(lp, np.array([[1, 2], [3, 0]], np.int32), np.array([6, 5], np.int32),
                 np.array([2, 1], np.uint8))
    assert a == b


def test_non_contiguous_log_probs():
    rng = np.random.default_rng(6)
    big = log_softmax(rng.standard_normal((2, 10, 4, 5)))
    lp = big[1, :, ::2]  # (10, 2, 5), strided
    tg = np.array([[1, 2], [3, 3]])
    want = ctc_loss_grad(np.ascontiguousarray(lp), tg, [10, 8], [2, 2], reduction="none")
    got = ctc_loss_grad(lp, tg, [10, 8], [2, 2], reduction="none")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # batch-first storage seen as (T, N, C) without a copy
    bf = np.ascontiguousarray(lp.transpose(1, 0, 2))
    got = ctc_loss_grad(bf.transpose(1, 0, 2), tg, [10, 8], [2, 2], reduction="none")
    np.testing.assert_array_equal(got[1], want[1])
