"""The CUDA kernels on a real GPU, at real sizes, against the CPU kernels; and
the model on device "cuda" (BiLSTM, training steps, bit-identical gradients,
a checkpoint resumed on the CPU) against the same on the CPU.

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


# -- the model on device "cuda" at real sizes, against the CPU ---------------------------
# (the same checks at tiny sizes under the simulator: tests/test_model_cuda_sim.py)

def gpu_model_ready():
    """CuPy for the model's products; full float32 products for the float32
    comparisons (CUPY_TF32=1 would round their inputs to 10 bits)."""
    cp = pytest.importorskip("cupy")
    if os.environ.get("CUPY_TF32", "0") != "0":
        pytest.skip("CUPY_TF32 is set: CuPy's float32 products would run in TF32")
    return cp


def assert_rel_close(got, want, rtol, what):
    """max|got - want| <= rtol * max|want| over the whole array."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    scale = np.abs(want).max()
    assert scale > 0, f"{what}: the reference is all zeros"
    err = np.abs(got - want).max() / scale
    assert err <= rtol, f"{what}: max relative error {err:.2e} > {rtol:.0e}"


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-4), (np.float64, 1e-12)])
def test_bilstm_of_shape_b_on_cuda_matches_the_cpu(dtype, rtol):
    """3 layers, 123 -> 256 units, N = 32, T = 300, variable lengths, dropout
    between the layers (masks drawn on the host: the same on both)."""
    gpu_model_ready()
    T, N, I, H = 300, 32, 123, 256
    rng = np.random.default_rng(8)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    dy = rng.standard_normal((T, N, 2 * H)).astype(dtype)
    lengths = rng.integers(T // 3, T + 1, size=N)
    lengths[0] = T
    out = {}
    for dev in ("cpu", "cuda"):
        m = ctcseq.BiLSTM(I, H, 3, seed=3, dtype=dtype).to(dev)
        y = m.forward(x, lengths, dropout=0.2, rng=np.random.default_rng(1))
        dx = m.backward(dy)
        out[dev] = (host(y), host(dx), {k: host(g) for k, g in m.grads.items()})
    (y0, dx0, g0), (y1, dx1, g1) = out["cpu"], out["cuda"]
    assert_rel_close(y1, y0, rtol, "y")
    assert_rel_close(dx1, dx0, rtol, "dx")
    for k in g0:
        assert_rel_close(g1[k], g0[k], rtol, k)
    past = np.arange(T)[:, None] >= lengths[None, :]
    assert not y1[past].any() and not dx1[past].any()   # exact zeros past each length


def recipe_batch(seed):
    """A padded batch of the recipe's shape: 16 utterances of 200-250 frames
    of 123 features, 20-40 labels out of 40 (+ blank)."""
    rng = np.random.default_rng(seed)
    N, T = 16, 250
    lengths = rng.integers(200, T + 1, size=N)
    lengths[0] = T
    x = rng.standard_normal((T, N, 123)).astype(np.float32)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    return x, lengths, rng.integers(1, 41, size=(N, 40)), rng.integers(20, 41, size=N)


def test_the_recipe_model_trains_alike_on_cuda_and_the_cpu():
    """CTCModel(123, 250, 3, 41, stride=2), float32: three steps of
    loss_and_grads (with dropout) + clip + Adam give the same losses."""
    gpu_model_ready()
    batches = [recipe_batch(s) for s in range(3)]
    losses = {}
    for dev in ("cpu", "cuda"):
        m = ctcseq.CTCModel(123, 250, 3, 41, stride=2, seed=0, device=dev)
        opt = ctcseq.Adam(m.params, lr=1e-3, device=m.place)
        losses[dev] = []
        for i, b in enumerate(batches):
            loss, grads = m.loss_and_grads(*b, zero_infinity=True, dropout=0.1,
                                           rng=np.random.default_rng(i))
            ctcseq.clip_grad_norm(grads, 5.0)
            opt.step(grads)
            losses[dev].append(loss)
    assert np.isfinite(losses["cpu"]).all()
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-4)


def test_model_gradients_have_the_same_bits_run_after_run():
    """The LSTM and CTC kernels sum in a fixed order, CuPy's reductions are
    fixed-order kernels, and cuBLAS gives the same bits run after run on one
    GPU and one stream (cuBLAS documentation, "Results reproducibility"):
    the whole gradient repeats exactly."""
    cp = gpu_model_ready()
    m = ctcseq.CTCModel(123, 250, 3, 41, stride=2, seed=0, device="cuda")
    b = recipe_batch(5)
    first = None
    for _ in range(3):
        loss, grads = m.loss_and_grads(*b, zero_infinity=True)
        bits = {k: cp.asnumpy(g).tobytes() for k, g in grads.items()}
        if first is None:
            first = loss, bits
            continue
        assert loss == first[0]
        for k in bits:
            assert bits[k] == first[1][k], f"{k} differs from the first run"


def random_examples(n, seed):
    from ctcseq.train import Example
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = rng.integers(1, 41, size=rng.integers(5, 21))
        frames = int(rng.integers(80, 151))
        out.append(Example(f"u{i}", rng.standard_normal((frames, 123)).astype(np.float32),
                           labels))
    return out


def test_a_checkpoint_written_on_the_gpu_resumes_on_the_cpu(tmp_path):
    """Epoch 1 on the GPU, epoch 2 resumed from its checkpoint on the CPU:
    the history and the weights of two epochs on the CPU (float64, with
    weight noise, dropout, SpecAugment and a weight average)."""
    gpu_model_ready()
    from ctcseq.train import TrainConfig, Trainer
    train, dev = random_examples(16, 0), random_examples(4, 1)

    def trainer(out, device, epochs):
        model = ctcseq.CTCModel(123, 64, 2, 41, stride=2, dtype=np.float64, seed=5,
                                device=device)
        cfg = TrainConfig(lr=3e-3, batch_frames=600, max_epochs=epochs, patience=0,
                          checkpoint_every=0, weight_noise=0.01, dropout=0.1, time_masks=1,
                          time_width=5, ema=0.9, seed=6)
        return Trainer(model, train, dev, str(out), cfg, progress=False)

    quiet = lambda *a, **k: None  # noqa: E731
    whole = trainer(tmp_path / "cpu", "cpu", 2)
    want = whole.run(log=quiet)
    first = trainer(tmp_path / "split", "cuda", 1)
    assert first.model.place.name == "cuda"
    got = first.run(log=quiet)
    second = trainer(tmp_path / "split", "cpu", 2)
    assert second.resume()
    got = second.run(log=quiet)
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        for key in ("train_loss", "dev_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-8, err_msg=key)
        assert a["dev_err"] == b["dev_err"]
    done, ref = second.model.host_params(), whole.model.host_params()
    for k in ref:
        np.testing.assert_allclose(done[k], ref[k], rtol=1e-6, atol=1e-9, err_msg=k)
    assert ctcseq.CTCModel.load(tmp_path / "split" / "best.npz").place.name == "cpu"


def test_a_batch_too_large_for_one_launch_is_refused_in_words():
    """More sequences than one block of the persistent kernel can hold."""
    gpu_model_ready()
    m = ctcseq.BiLSTM(2, 8).to("cuda")
    N = 1100
    with pytest.raises(ValueError, match="too large for one persistent launch"):
        m.forward(np.zeros((2, N, 2), np.float32), np.full(N, 2))
