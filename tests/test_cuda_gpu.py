"""The CUDA kernels on a real GPU, at real sizes, against the CPU kernels.

Skipped unless ``CTCSEQ_TEST_GPU=1`` (tests/conftest.py otherwise turns on
the CUDA simulator) and a CUDA device works:

    CTCSEQ_TEST_GPU=1 python -m pytest -q tests/test_cuda_gpu.py
"""
import os

import numpy as np
import pytest

from ctc_reference import log_softmax
import ctcseq

if os.environ.get("CTCSEQ_TEST_GPU") != "1":
    pytest.skip("real-GPU tests: set CTCSEQ_TEST_GPU=1", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")
if ctcseq.device.simulating() or not cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)


def random_case(T, N, C, S, seed=0, dtype=np.float32, equal=False, blank=0):
    rng = np.random.default_rng(seed)
    lp = log_softmax(rng.standard_normal((T, N, C))).astype(dtype)
    labels = np.array([c for c in range(C) if c != blank])
    tg = rng.choice(labels, size=(N, S))
    tl = np.full(N, S) if equal else rng.integers(S // 2, S + 1, size=N)
    il = np.full(N, T) if equal else rng.integers(max(T // 2, 2 * S + 1), T + 1, size=N)
    il[0] = T
    return lp, tg, il, tl


def on_device(x):
    return cuda.to_device(np.ascontiguousarray(x))


@pytest.mark.parametrize("T,N,C,S", [(1200, 4, 50, 300), (2500, 2, 2000, 1000),
                                     (11000, 1, 6000, 5000)])
def test_long_targets_match_cpu(T, N, C, S):
    lp, tg, il, tl = random_case(T, N, C, S, dtype=np.float64)
    want = ctcseq.ctc_loss_grad(lp, tg, il, tl, reduction="sum")
    loss, grad = ctcseq.ctc_loss_grad(on_device(lp), tg, il, tl, reduction="sum")
    np.testing.assert_allclose(loss.copy_to_host(), want[0], rtol=1e-6)
    np.testing.assert_allclose(grad.copy_to_host(), want[1], rtol=1e-6, atol=1e-9)


def test_hundred_thousand_frames_and_blank_last():
    T, C = 100_000, 30
    lp, tg, il, tl = random_case(T, 2, C, 400, seed=1, blank=C - 1)
    want = ctcseq.ctc_loss(lp, tg, il, tl, blank=C - 1, reduction="none")
    got = ctcseq.ctc_loss(on_device(lp), tg, il, tl, blank=C - 1, reduction="none")
    np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-5)
    assert np.isfinite(want).all()


def test_gradient_bits_identical_over_ten_runs():
    lp, tg, il, tl = random_case(1000, 32, 500, 200, seed=2)
    d = on_device(lp)
    first = ctcseq.ctc_loss_grad(d, tg, il, tl)[1].copy_to_host()
    for _ in range(9):
        again = ctcseq.ctc_loss_grad(d, tg, il, tl)[1].copy_to_host()
        assert again.tobytes() == first.tobytes()


def test_decoders_match_cpu():
    lp, tg, il, tl = random_case(3000, 8, 100, 300, seed=3)
    want = ctcseq.greedy_decode(lp, il, return_timestamps=True)
    got = ctcseq.greedy_decode(on_device(lp), il, return_timestamps=True)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[2], want[2])
    for a, b in zip(ctcseq.forced_align(on_device(lp), tg, il, tl),
                    ctcseq.forced_align(lp, tg, il, tl)):
        np.testing.assert_array_equal(a.starts, b.starts)
        np.testing.assert_array_equal(a.ends, b.ends)


def test_torch_tensors_in_and_out_on_the_current_stream():
    torch = pytest.importorskip("torch")
    lp, tg, il, tl = random_case(400, 8, 40, 60, seed=4)
    want = ctcseq.ctc_loss_grad(lp, tg, il, tl)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.from_numpy(lp).cuda()
        loss, grad = ctcseq.ctc_loss_grad(x, torch.from_numpy(tg).cuda(), il, tl)
        assert isinstance(grad, torch.Tensor) and grad.device == x.device
        loss, grad = loss.cpu().numpy(), grad.cpu().numpy()
    np.testing.assert_allclose(loss, want[0], rtol=1e-5)
    np.testing.assert_allclose(grad, want[1], rtol=1e-4, atol=1e-7)


def test_torch_adapter_on_cuda_matches_torch_logits_gradient():
    torch = pytest.importorskip("torch")
    import ctcseq.torch as ct
    rng = np.random.default_rng(5)
    logits = torch.tensor(rng.standard_normal((300, 16, 30)), dtype=torch.float64,
                          device="cuda", requires_grad=True)
    tg = torch.tensor(rng.integers(1, 30, size=(16, 50)), device="cuda")
    il = torch.tensor(rng.integers(150, 301, size=16))
    tl = torch.tensor(rng.integers(10, 51, size=16))
    grads = []
    for f in (ct.ctc_loss, torch.nn.functional.ctc_loss):
        logits.grad = None
        loss = f(logits.log_softmax(-1), tg, il, tl)
        (2.5 * loss).backward()
        grads.append((loss.item(), logits.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-9)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-7, atol=1e-10)


def test_cupy_arrays_in_and_out():
    cp = pytest.importorskip("cupy")
    lp, tg, il, tl = random_case(300, 4, 20, 40, seed=6)
    loss, grad = ctcseq.ctc_loss_grad(cp.asarray(lp), cp.asarray(tg), cp.asarray(il), tl)
    assert isinstance(grad, cp.ndarray)
    want = ctcseq.ctc_loss_grad(lp, tg, il, tl)
    np.testing.assert_allclose(cp.asnumpy(grad), want[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-3)])
def test_lstm_time_loop_matches_cpu_with_many_blocks(dtype, rtol):
    from ctcseq.kernels import lstm_cpu, lstm_cuda
    rng = np.random.default_rng(7)
    T, N, H = 120, 16, 250
    gx = rng.standard_normal((T, N, 4 * H)).astype(dtype)
    whh = (0.1 * rng.standard_normal((4 * H, H))).astype(dtype)
    peep = (0.3 * rng.standard_normal((3, H))).astype(dtype)
    lengths = rng.integers(T // 2, T + 1, size=N)
    lengths[0] = T
    dy = rng.standard_normal((T, N, 2 * H)).astype(dtype)
    for reverse in (False, True):
        col0 = H if reverse else 0
        y, c, g = (np.zeros(s, dtype) for s in ((T, N, 2 * H), (T, N, H), (T, N, 4 * H)))
        da, dp = np.zeros((T, N, 4 * H), dtype), np.zeros((3, H))
        lstm_cpu.lstm_forward_dir(gx, 0, whh, peep, lengths, reverse, y, col0, c, g)
        lstm_cpu.lstm_backward_dir(dy, col0, g, c, np.ascontiguousarray(whh.T), peep, lengths,
                                   reverse, da, 0, dp)
        d = [cuda.to_device(np.zeros_like(a)) for a in (y, c, g, da, dp)]
        lstm_cuda.lstm_forward_dir(on_device(gx), 0, on_device(whh), on_device(peep), lengths,
                                   reverse, d[0], col0, d[1], d[2])
        lstm_cuda.lstm_backward_dir(on_device(dy), col0, d[2], d[1], on_device(whh),
                                    on_device(peep), lengths, reverse, d[3], 0, d[4])
        for want, got in zip((y, c, g, da, dp), d):
            got = got.copy_to_host()
            for n, L in enumerate(lengths):
                np.testing.assert_allclose(got[:L, n] if got.ndim == 3 else got,
                                           want[:L, n] if want.ndim == 3 else want,
                                           rtol=rtol, atol=rtol)
