"""CTC: bad input gets a ValueError naming the argument; properties (hypothesis)."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ctc_reference import forward_nll, log_softmax
from ctcseq import ctc_loss, ctc_loss_grad

T, N, C = 6, 2, 5
LP = log_softmax(np.random.default_rng(0).standard_normal((T, N, C)))
TG = np.array([[1, 2, 3], [4, 4, 0]])
IL = np.array([6, 5])
TL = np.array([3, 2])


def call(**kw):
    args = dict(log_probs=LP, targets=TG, input_lengths=IL, target_lengths=TL)
    args.update(kw)
    return ctc_loss_grad(**args)


@pytest.mark.parametrize("kw,match", [
    (dict(targets=np.array([[1, 0, 3], [4, 4, 0]])), r"sequence 0 at position 1 .*blank"),
    (dict(targets=np.array([[1, 2, 3], [4, 5, 0]])), r"sequence 1 at position 1 .*outside \[0, 5\)"),
    (dict(targets=np.array([[1, 2, -1], [4, 4, 0]])), r"sequence 0 at position 2 .*outside"),
    (dict(targets=np.array([1, 2, 3, 4]), target_lengths=[3, 2]), r"concatenated targets have length 4 .* 5"),
    (dict(targets=np.array([1, 2, 0, 4, 4])), r"sequence 0 at position 2 .*blank"),
    (dict(targets=np.zeros((3, 3), np.int64)), r"padded targets must have shape \(N, S\)"),
    (dict(targets=np.zeros((2, 3, 1), np.int64)), r"targets must have 1 or 2 dimension"),
    (dict(targets=TG.astype(float)), r"targets must hold integers"),
    (dict(blank=5), r"blank = 5 is outside \[0, 5\)"),
    (dict(blank=-1), r"blank = -1 is outside"),
    (dict(blank=1.0), r"blank must be an integer"),
    (dict(input_lengths=[7, 5]), r"input_lengths\[0\] = 7 is outside \[0, 6\]"),
    (dict(input_lengths=[6, -1]), r"input_lengths\[1\] = -1"),
    (dict(input_lengths=[6, 5, 4]), r"input_lengths must have shape \(2,\)"),
    (dict(input_lengths=[6.0, 5.0]), r"input_lengths must hold integers"),
    (dict(target_lengths=[4, 2]), r"target_lengths\[0\] = 4 is outside \[0, 3\]"),
    (dict(target_lengths=[3, -2]), r"target_lengths\[1\] = -2"),
    (dict(target_lengths=[3]), r"target_lengths must have shape \(2,\)"),
    (dict(log_probs=LP[0]), r"log_probs must be 3-D"),
    (dict(log_probs=LP.astype(np.float16)), r"log_probs must be float32 or float64"),
    (dict(log_probs=np.zeros((T, N, C), np.int64)), r"log_probs must be float32 or float64"),
    (dict(log_probs=np.zeros((T, 0, C))), r"empty batch"),
    (dict(reduction="avg"), r"reduction must be one of"),
])
def test_bad_input_raises_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        call(**kw)
    if "log_probs" not in kw or kw["log_probs"].ndim == 3:
        with pytest.raises(ValueError, match=match):
            ctc_loss(**{**dict(log_probs=LP, targets=TG, input_lengths=IL,
                               target_lengths=TL), **kw})


def test_batch_first_array_gets_a_layout_hint():
    batch_first = np.ascontiguousarray(LP.transpose(1, 0, 2))   # (N, T, C) = (2, 6, 5)
    with pytest.raises(ValueError, match=r"input_lengths must have shape \(6,\).*batch-first "
                                         r"\(N, T, C\).*transpose\(1, 0, 2\)"):
        ctc_loss(batch_first, TG, IL, TL)
    with pytest.raises(ValueError, match=r"shape \(2,\) \(one per sequence\), got shape \(3,\)$"):
        ctc_loss(LP, TG, [6, 5, 4], TL)  # no hint when the count is simply wrong


def test_cuda_array_without_numba_cuda_says_how_to_install(monkeypatch):
    class FakeCuda:
        __cuda_array_interface__ = {}
    monkeypatch.setitem(sys.modules, "numba.cuda", None)  # import fails
    with pytest.raises(ValueError, match=r"numba-cuda is not installed.*ctcseq\[cuda\]"):
        ctc_loss(FakeCuda(), TG, IL, TL)


# --- properties --------------------------------------------------------------

@st.composite
def ctc_cases(draw):
    t = draw(st.integers(1, 12))
    n = draw(st.integers(1, 4))
    c = draw(st.integers(2, 6))
    blank = draw(st.sampled_from([0, c - 1]))
    s = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    lp = log_softmax(draw(st.sampled_from([0.5, 3.0, 30.0])) * rng.standard_normal((t, n, c)))
    labels = [k for k in range(c) if k != blank]
    targets = rng.choice(labels, size=(n, s))
    il = rng.integers(0, t + 1, size=n)
    tl = rng.integers(0, s + 1, size=n)
    return lp, targets, il, tl, blank


@settings(max_examples=60, deadline=None)
@given(ctc_cases())
def test_property_matches_reference_and_occupancy_sums_to_one(case):
    lp, targets, il, tl, blank = case
    loss, grad = ctc_loss_grad(lp, targets, il, tl, blank=blank, reduction="none")
    for n in range(lp.shape[1]):
        want = forward_nll(lp[: il[n], n], targets[n, : tl[n]], blank)
        if np.isinf(want):
            assert np.isposinf(loss[n])
            continue
        np.testing.assert_allclose(loss[n], want, rtol=1e-10, atol=1e-12)
        assert loss[n] >= -1e-12  # log_probs are normalised
        # each valid frame's occupancies sum to one; nothing past the length
        np.testing.assert_allclose(grad[: il[n], n].sum(-1), -1.0, atol=1e-9)
        assert np.all(grad[: il[n], n] <= 0.0)
        assert np.all(grad[il[n]:, n] == 0.0)


@settings(max_examples=30, deadline=None)
@given(ctc_cases(), st.randoms(use_true_random=False))
def test_property_batch_order_does_not_matter(case, rnd):
    lp, targets, il, tl, blank = case
    perm = list(range(lp.shape[1]))
    rnd.shuffle(perm)
    loss, grad = ctc_loss_grad(lp, targets, il, tl, blank=blank, reduction="none")
    ploss, pgrad = ctc_loss_grad(lp[:, perm], targets[perm], il[perm], tl[perm], blank=blank,
                                 reduction="none")
    np.testing.assert_array_equal(ploss, loss[perm])
    np.testing.assert_array_equal(pgrad, grad[:, perm])
