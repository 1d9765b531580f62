"""Inference forward (BiLSTM.infer, CTCModel.infer_log_probs): equal to the
training forward and to a plain NumPy reference, reentrant, stateless, lean."""
import threading
import tracemalloc

import numpy as np
import pytest

from ctcseq import nn
from ctcseq.kernels import lstm_cpu
from ctcseq.model import CTCModel
from ctcseq.nn import BiLSTM


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_infer(params, x, lengths, num_layers, H):
    """The documented equations in float64 NumPy, one sequence and step at a time."""
    T, N, _ = x.shape
    inp = x.astype(np.float64)
    for k in range(num_layers):
        y = np.zeros((T, N, 2 * H))
        for d, sfx in enumerate(("", "_reverse")):
            W = params[f"weight_ih_l{k}{sfx}"].astype(np.float64)
            U = params[f"weight_hh_l{k}{sfx}"].astype(np.float64)
            b = params[f"bias_ih_l{k}{sfx}"].astype(np.float64) + params[f"bias_hh_l{k}{sfx}"]
            P = params.get(f"weight_peep_l{k}{sfx}", np.zeros((3, H))).astype(np.float64)
            for n in range(N):
                h, c = np.zeros(H), np.zeros(H)
                for t in (range(lengths[n]) if d == 0 else range(lengths[n] - 1, -1, -1)):
                    a = W @ inp[t, n] + U @ h + b
                    i = _sig(a[:H] + P[0] * c)
                    f = _sig(a[H:2 * H] + P[1] * c)
                    c = f * c + i * np.tanh(a[2 * H:3 * H])
                    h = _sig(a[3 * H:] + P[2] * c) * np.tanh(c)
                    y[t, n, d * H:(d + 1) * H] = h
        inp = y
    return inp


# float32: gates in float32 here, float64 in the training forward
_TOL = {np.float32: dict(rtol=1e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def test_float32_activations_accuracy():
    xs = np.concatenate([np.linspace(-30, 30, 6001), [-1e4, -90.0, -1e-30, 0.0, 1e-30, 90.0,
                                                      1e4]]).astype(np.float32)
    sig = np.array([lstm_cpu.sigmoid32(v) for v in xs])
    th = np.array([lstm_cpu.tanh32(v) for v in xs])
    x64 = xs.astype(np.float64)
    np.testing.assert_allclose(sig, np.exp(-np.logaddexp(0.0, -x64)), rtol=0, atol=3e-7)
    np.testing.assert_allclose(th, np.tanh(x64), rtol=0, atol=3e-7)
    assert np.isfinite(sig).all() and np.isfinite(th).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("peepholes", [True, False])
@pytest.mark.parametrize("rows", [512, 6])  # one block of steps, or blocks of 2 steps
def test_bilstm_infer_matches_forward_and_reference(dtype, peepholes, rows, monkeypatch):
    monkeypatch.setattr(nn, "_INFER_ROWS", rows)
    rng = np.random.default_rng(3)
    T, N, I, H = 7, 3, 4, 5
    lstm = BiLSTM(I, H, num_layers=3, peepholes=peepholes, seed=1, dtype=dtype,
                  init_range=0.6)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    for lengths in (np.array([5, 7, 0]), np.array([7, 7, 7]), np.array([4, 4, 4])):
        got = lstm.infer(x, lengths)
        assert got.dtype == dtype and got.shape == (T, N, 2 * H)
        np.testing.assert_allclose(got, lstm.forward(x, lengths), **_TOL[dtype])
        np.testing.assert_allclose(got, reference_infer(lstm.params, x, lengths, 3, H),
                                   **_TOL[dtype])
        past = np.arange(T)[:, None] >= lengths[None, :]
        assert (got[past] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("peepholes", [True, False])
def test_infer_log_probs_matches_log_probs(dtype, stride, peepholes):
    rng = np.random.default_rng(5)
    model = CTCModel(3, 6, 2, 5, peepholes=peepholes, seed=2, dtype=dtype, stride=stride,
                     init_range=0.5)
    T, N = 9, 4
    x = rng.standard_normal((T, N, 3)).astype(dtype)
    x[8, 0] = 1e3  # padding garbage past sequence 0's end must not matter
    lengths = np.array([7, 9, 1, 4])
    got = model.infer_log_probs(x, lengths)
    want = model.log_probs(x, lengths)
    assert got.shape == want.shape == (-(-T // stride), N, 5) and got.dtype == want.dtype
    valid = np.arange(got.shape[0])[:, None] < model.output_lengths(lengths)[None, :]
    np.testing.assert_allclose(got[valid], want[valid], **_TOL[dtype])
    np.testing.assert_allclose(got, want, **_TOL[dtype])  # padding steps too


def test_two_threads_give_the_serial_results():
    rng = np.random.default_rng(7)
    model = CTCModel(4, 8, 2, 6, seed=3, dtype=np.float64, stride=2)
    inputs = [(rng.standard_normal((T, N, 4)), rng.integers(0, T + 1, N))
              for T, N in ((30, 3), (17, 5))]
    serial = [model.infer_log_probs(x, lengths) for x, lengths in inputs]
    results = [[] for _ in inputs]
    barrier = threading.Barrier(len(inputs))
    errors = []

    def work(i):
        try:
            barrier.wait()
            for _ in range(20):
                results[i].append(model.infer_log_probs(*inputs[i]))
        except Exception as e:  # surfaced below: an exception in a thread is otherwise lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for want, got in zip(serial, results):
        assert len(got) == 20
        for g in got:
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-13)


def _snapshot(obj):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}


def _assert_unchanged(obj, before):
    now = vars(obj)
    assert set(now) == set(before)
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(now[k], v)
        else:
            assert now[k] is v, k  # same object: nothing replaced (caches included)


def test_infer_writes_nothing_to_the_model():
    rng = np.random.default_rng(9)
    model = CTCModel(3, 5, 2, 4, seed=4)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    lengths = np.array([6, 3])
    for trained_before in (False, True):
        if trained_before:
            model.log_probs(x, lengths)  # a training forward leaves its caches
        objs = (model, model.lstm, model.out)
        before = [_snapshot(o) for o in objs]
        params = {k: v.copy() for k, v in model.params.items()}
        grads = {k: v.copy() for k, v in model.grads.items()}
        model.infer_log_probs(x, lengths)
        model.lstm.infer(x.reshape(3, 4, 3)[:, :2], np.array([2, 3]))
        for o, b in zip(objs, before):
            _assert_unchanged(o, b)
        for k in params:
            np.testing.assert_array_equal(model.params[k], params[k])
            np.testing.assert_array_equal(model.grads[k], grads[k])
    assert model.lstm._cache is not None  # the training forward's, kept as it was


def test_peak_memory_does_not_grow_with_layers_or_keep_projections():
    # N = 1, long T: the training forward would cache ~12 T H values per layer;
    # infer may hold two layer outputs and per direction one block of projections
    T, H, I, L = 12000, 8, 2, 3
    lstm = BiLSTM(I, H, L, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((T, 1, I))
    lengths = np.array([T])
    lstm.infer(x[:10], np.array([10]))  # compile before measuring
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = lstm.infer(x, lengths)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    y_bytes = y.nbytes
    block = nn._INFER_ROWS * (4 * H + 2 * H) * 8  # projections + gathered input
    assert peak <= 2 * y_bytes + 2 * block + x.nbytes + 64 * 1024
    assert 3 * y_bytes > 2 * y_bytes + 2 * block + x.nbytes + 64 * 1024  # the test can fail


def test_infer_rejects_bad_input():
    lstm = BiLSTM(3, 4)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match="dtype"):
        lstm.infer(x.astype(np.float64), [5, 5])
    with pytest.raises(ValueError, match="lengths"):
        lstm.infer(x, [6, 5])
    with pytest.raises(ValueError, match="input_size"):
        lstm.infer(np.zeros((5, 2, 4), np.float32), [5, 5])
    x[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lstm.infer(x, [5, 5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [lstm_cpu.INFER_CHUNK, 16])
def test_infer_with_several_column_chunks(dtype, chunk, monkeypatch):
    monkeypatch.setattr(nn, "INFER_CHUNK", chunk)
    # H not a multiple of the chunk width: the recurrent product runs in
    # column chunks of unequal widths (64 + 6, or 4 x 16 + 6)
    H = lstm_cpu.INFER_CHUNK + 6
    rng = np.random.default_rng(11)
    lstm = BiLSTM(3, H, num_layers=2, seed=2, dtype=dtype, init_range=0.3)
    x = rng.standard_normal((5, 4, 3)).astype(dtype)
    lengths = np.array([5, 2, 4, 5])
    np.testing.assert_allclose(lstm.infer(x, lengths), lstm.forward(x, lengths), **_TOL[dtype])


def test_infer_kernel_refuses_state_of_the_wrong_shape():
    # the kernel hands raw pointers to BLAS: a wrong h would be read out of bounds
    H, N, T = 4, 2, 3
    gx = np.zeros((T, N, 4 * H), np.float32)
    wpk = np.zeros(4 * H * (H + 1), np.float32)
    peep = np.zeros((3, H), np.float32)
    lengths = np.full(N, T, np.int64)
    y = np.zeros((T, N, 2 * H), np.float32)
    c = np.zeros((N, H), np.float32)
    for h in (np.zeros((N, H), np.float32), np.zeros((N + 1, H + 1), np.float32)):
        with pytest.raises(ValueError, match="wrong shape"):
            lstm_cpu.lstm_infer_steps(gx, wpk, 4, peep, lengths, False, 0, T, y, 0, h, c)
    h = np.zeros((N, H + 1), np.float32)
    h[:, H] = 1
    lstm_cpu.lstm_infer_steps(gx, wpk, 4, peep, lengths, False, 0, T, y, 0, h, c)
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("T", [3, 50])  # 150 rows in one product; 3000 split over two threads
def test_linear_infer_matches_forward(T):
    from ctcseq.nn import Linear
    lin = Linear(8, 5, seed=1)
    x = np.random.default_rng(3).standard_normal((T, 60, 8)).astype(np.float32)
    np.testing.assert_allclose(lin.infer(x), lin.forward(x), rtol=1e-6, atol=1e-6)
    assert lin.infer(x).shape == (T, 60, 5)
