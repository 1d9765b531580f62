"""The CUDA kernels under Numba's CUDA simulator, against the CPU kernels.

The simulator runs each block's threads as OS threads (blocks one at a
time), so shapes are tiny; the kernels run with 4 threads per block there,
fewer than the states, which exercises their strided loops and tree
reductions.  tests/test_cuda_gpu.py runs the same checks at real sizes on a
GPU.
"""
import subprocess
import sys

import numpy as np
import pytest

from ctc_reference import brute_force, log_softmax
import ctcseq
from ctcseq import ctc_loss, ctc_loss_grad, forced_align, greedy_decode

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
pytestmark = pytest.mark.skipif(not ctcseq.device.simulating(),
                                reason="simulator tests (set NUMBA_ENABLE_CUDASIM=1)")


def host(x):
    return x.copy_to_host()


def case(dtype=np.float64, seed=0, T=8, scale=3.0):
    """Three sequences: repeated labels (a skip-less pair and a label used
    twice), a short one, and a target with a label three times."""
    rng = np.random.default_rng(seed)
    lp = log_softmax(scale * rng.standard_normal((T, 3, 6))).astype(dtype)
    tg = np.array([[1, 2, 2, 1], [3, 0, 0, 0], [4, 5, 4, 4]])
    il = np.array([T, T - 3, T - 1])
    tl = np.array([4, 1, 3])
    lp[il[1]:, 1] = np.nan  # never read
    return lp, tg, il, tl


def check_same(dev_result, cpu_result, rtol):
    got = host(dev_result)
    assert got.shape == np.shape(cpu_result)
    assert got.dtype == np.asarray(cpu_result).dtype
    np.testing.assert_allclose(got, cpu_result, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-6), (np.float32, 1e-5)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_loss_and_grad_match_cpu(dtype, rtol, reduction):
    lp, tg, il, tl = case(dtype)
    want_loss, want_grad = ctc_loss_grad(lp, tg, il, tl, reduction=reduction)
    loss, grad = ctc_loss_grad(cuda.to_device(lp), tg, il, tl, reduction=reduction)
    check_same(loss, want_loss, rtol)
    check_same(grad, want_grad, rtol)
    check_same(ctc_loss(cuda.to_device(lp), tg, il, tl, reduction=reduction), want_loss, rtol)


def test_matches_brute_force_enumeration():
    lp, tg, il, tl = case(T=4, seed=3)
    loss, grad = ctc_loss_grad(cuda.to_device(lp), tg[:, :2], il - [0, 0, 1], [2, 1, 2],
                               reduction="none")
    loss, grad = host(loss), host(grad)
    for n, (T, S) in enumerate([(4, 2), (1, 1), (2, 2)]):
        nll, g = brute_force(lp[:T, n], tg[n, :S], 0)
        np.testing.assert_allclose(loss[n], nll, rtol=1e-12)
        np.testing.assert_allclose(grad[:T, n], g, rtol=1e-10, atol=1e-14)


def test_concatenated_targets_blank_in_the_middle_and_device_metadata():
    lp, _, il, tl = case(seed=1)
    blank = 2
    flat = np.array([1, 3, 3, 1, 4, 5, 0, 5])  # lengths 4, 1, 3
    want = ctc_loss_grad(lp, flat, il, tl, blank=blank, reduction="sum")
    got = ctc_loss_grad(cuda.to_device(lp), cuda.to_device(flat), cuda.to_device(il),
                        cuda.to_device(tl), blank=blank, reduction="sum")
    check_same(got[0], want[0], 1e-6)
    check_same(got[1], want[1], 1e-6)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_impossible_target_nan_input_and_empty_cases(zero_infinity):
    lp, tg, il, tl = case(seed=2)
    il = np.array([3, 0, 7])       # 3 frames for "1 2 2 1" (needs 5); no frame, empty target
    tl = np.array([4, 0, 3])
    lp[4, 2, 0] = np.nan           # sequence 2's valid frames hold a NaN
    want_loss, want_grad = ctc_loss_grad(lp, tg, il, tl, reduction="none",
                                         zero_infinity=zero_infinity)
    loss, grad = ctc_loss_grad(cuda.to_device(lp), tg, il, tl, reduction="none",
                               zero_infinity=zero_infinity)
    np.testing.assert_array_equal(host(loss), want_loss)
    np.testing.assert_array_equal(host(grad), want_grad)
    assert np.isnan(want_loss[2]) and want_loss[1] == 0.0
    assert not np.signbit(want_loss[1])  # +0.0 for no frame and no label, not -0.0
    assert (want_loss[0] == 0.0) if zero_infinity else np.isposinf(want_loss[0])


def test_extreme_logits_and_a_longer_input_stay_finite():
    rng = np.random.default_rng(4)
    T = 50
    for dtype in (np.float32, np.float64):
        lp = log_softmax(1e4 * rng.standard_normal((T, 1, 4))).astype(dtype)
        tg = np.array([[1, 2, 3, 3, 1]])
        want = ctc_loss_grad(lp, tg, [T], [5], reduction="sum")
        got = ctc_loss_grad(cuda.to_device(lp), tg, [T], [5], reduction="sum")
        check_same(got[0], want[0], 1e-6)
        check_same(got[1], want[1], 1e-6)
        assert np.isfinite(host(got[1])).all()


def test_gradient_is_bitwise_deterministic():
    lp, tg, il, tl = case(seed=5)
    runs = [host(ctc_loss_grad(cuda.to_device(lp), tg, il, tl)[1]) for _ in range(2)]
    assert runs[0].tobytes() == runs[1].tobytes()


def test_strided_input_is_read_in_place():
    lp, tg, il, tl = case(seed=6)
    batch_first = np.ascontiguousarray(lp.transpose(1, 0, 2))
    d = cuda.to_device(batch_first)
    view = d.transpose((1, 0, 2))
    want = ctc_loss_grad(lp, tg, il, tl)
    got = ctc_loss_grad(view, tg, il, tl)
    check_same(got[1], want[1], 1e-6)


def test_bad_input_raises_the_cpu_messages_before_any_kernel():
    lp, tg, il, tl = case()
    bad = tg.copy()
    bad[0, 1] = 0
    with pytest.raises(ValueError, match=r"targets of sequence 0 at position 1 .*blank"):
        ctc_loss_grad(cuda.to_device(lp), bad, il, tl)
    with pytest.raises(ValueError, match=r"input_lengths\[0\] = 9 is outside \[0, 8\]"):
        ctc_loss(cuda.to_device(lp), tg, cuda.to_device(il + 1), tl)
    with pytest.raises(ValueError, match="log_probs must be float32 or float64"):
        ctc_loss(cuda.to_device(lp.astype(np.float16)), tg, il, tl)
    with pytest.raises(ValueError, match=r"log_probs must be 3-D"):
        greedy_decode(cuda.to_device(np.ascontiguousarray(lp[:, 0])))


def test_segments_layout():
    from ctcseq.kernels.ctc_cuda import segments
    flat = np.array([3, 1, 3, 3, 2, 2])
    seg_first, seg_ptr, seg_pos, slot = segments(flat, np.array([0, 4]), np.array([4, 2]), 0, 5)
    # sequence 0: labels 1 (pos 1), 3 (pos 0, 2, 3); sequence 1: label 2 (pos 0, 1)
    np.testing.assert_array_equal(seg_first, [0, 2, 3])
    np.testing.assert_array_equal(seg_ptr, [0, 1, 4, 6])
    np.testing.assert_array_equal(seg_pos, [1, 0, 2, 3, 0, 1])
    np.testing.assert_array_equal(slot, [[8, 0, -1, 2, -1], [4, -1, 0, -1, -1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_greedy_and_forced_align_match_cpu(dtype):
    lp, tg, il, tl = case(dtype, seed=7, T=9)
    lp[il[1]:, 1] = 0.0
    lp[2, 0, :] = lp[2, 0, 3]  # a tie: the lowest class wins, as on the CPU
    want = greedy_decode(lp, il, return_timestamps=True)
    got = greedy_decode(cuda.to_device(lp), cuda.to_device(il), return_timestamps=True)
    assert got[0] == want[0]
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[2], want[2])
    want = forced_align(lp, tg, il, tl)
    got = forced_align(cuda.to_device(lp), tg, il, tl)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.starts, b.starts)
        np.testing.assert_array_equal(a.ends, b.ends)
        assert a.score == b.score


def test_decoders_refuse_nan_on_valid_frames_naming_the_frame():
    lp, tg, il, tl = case(seed=8)
    lp[2, 2, 1] = np.nan
    for f in (lambda d: greedy_decode(d, il), lambda d: forced_align(d, tg, il, tl)):
        with pytest.raises(ValueError, match="NaN at frame 2 of sequence 2"):
            f(cuda.to_device(lp))


def test_cpu_users_never_import_numba_cuda():
    code = ("import sys, numpy as np, ctcseq\n"
            "lp = np.log(np.full((4, 1, 3), 1 / 3))\n"
            "ctcseq.ctc_loss_grad(lp, [[1, 2]], [4], [2]); ctcseq.greedy_decode(lp)\n"
            "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_frames_at_all():
    lp = np.zeros((0, 2, 4))
    want = ctc_loss_grad(lp, [[1], [2]], [0, 0], [0, 1], reduction="none")
    loss, grad = ctc_loss_grad(cuda.to_device(lp), [[1], [2]], [0, 0], [0, 1], reduction="none")
    np.testing.assert_array_equal(host(loss), want[0])
    assert grad.shape == (0, 2, 4)
    assert greedy_decode(cuda.to_device(lp)) == [[], []]
