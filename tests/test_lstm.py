"""BiLSTM layer: torch equivalence, exact gradients, lengths, validation."""
import multiprocessing
import os

import numpy as np
import pytest

from ctcseq.kernels import lstm_cpu
from ctcseq.nn import BiLSTM, Linear


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_forward(params, x, lengths, num_layers, H):
    """Plain NumPy, one sequence and one step at a time: the documented equations."""
    T, N, _ = x.shape
    inp = x
    for k in range(num_layers):
        y = np.zeros((T, N, 2 * H))
        for d, sfx in enumerate(("", "_reverse")):
            W = params[f"weight_ih_l{k}{sfx}"]
            U = params[f"weight_hh_l{k}{sfx}"]
            b = params[f"bias_ih_l{k}{sfx}"] + params[f"bias_hh_l{k}{sfx}"]
            P = params.get(f"weight_peep_l{k}{sfx}", np.zeros((3, H)))
            for n in range(N):
                L = lengths[n]
                h, c = np.zeros(H), np.zeros(H)
                for t in (range(L) if d == 0 else range(L - 1, -1, -1)):
                    a = W @ inp[t, n] + U @ h + b
                    i = _sig(a[:H] + P[0] * c)
                    f = _sig(a[H:2 * H] + P[1] * c)
                    g = np.tanh(a[2 * H:3 * H])
                    c = f * c + i * g
                    o = _sig(a[3 * H:] + P[2] * c)
                    h = o * np.tanh(c)
                    y[t, n, d * H:(d + 1) * H] = h
        inp = y
    return inp


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(42)
    T, N, I = 6, 4, 3
    x = rng.standard_normal((T, N, I))
    lengths = np.array([4, 6, 1, 3])  # unsorted, one full, one single frame
    dy = rng.standard_normal((T, N, 2 * 4))
    return x, lengths, dy


def test_sigmoid_tanh_accuracy():
    xs = np.concatenate([np.linspace(-40, 40, 4001), [-800.0, -1e-9, 0.0, 3e-12, 800.0]])
    sig = np.array([lstm_cpu.sigmoid(v) for v in xs])
    th = np.array([lstm_cpu.tanh(v) for v in xs])
    ref_sig = np.exp(-np.logaddexp(0.0, -xs))
    np.testing.assert_allclose(sig, ref_sig, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(th, np.tanh(xs), rtol=0, atol=3e-16)


def test_forward_matches_reference_equations_with_peepholes(case):
    x, lengths, _ = case
    m = BiLSTM(3, 4, num_layers=2, peepholes=True, seed=3, dtype=np.float64, init_range=0.5)
    y = m.forward(x, lengths)
    ref = reference_forward(m.params, x, lengths, 2, 4)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-13)
    # the peepholes matter: zeroing them changes the output
    for k in m.params:
        if "peep" in k:
            m.params[k][...] = 0
    assert np.abs(m.forward(x, lengths) - y).max() > 1e-3


def test_matches_torch_packed_sequences(case):
    torch = pytest.importorskip("torch")
    x, lengths, dy = case
    m = BiLSTM(3, 4, num_layers=2, peepholes=False, seed=1, dtype=np.float64)
    y = m.forward(x, lengths)
    dx = m.backward(dy)

    tl = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    assert sorted(k for k, _ in tl.named_parameters()) == sorted(m.params)
    with torch.no_grad():
        for k, v in tl.named_parameters():
            assert tuple(v.shape) == m.params[k].shape
            v.copy_(torch.from_numpy(m.params[k]))
    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), enforce_sorted=False)
    out, _ = tl(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    (yt * torch.from_numpy(dy)).sum().backward()

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-10)
    for k, v in tl.named_parameters():
        np.testing.assert_allclose(m.grads[k], v.grad.numpy(), rtol=0, atol=1e-10, err_msg=k)


def _objective(m, x, lengths, dy):
    return float(np.sum(m.forward(x, lengths) * dy))


def test_gradients_match_finite_differences_with_peepholes(case):
    x, lengths, dy = case
    m = BiLSTM(3, 4, num_layers=2, peepholes=True, seed=5, dtype=np.float64, init_range=0.6)
    m.forward(x, lengths)
    dx = m.backward(dy)
    eps = 1e-6
    for name, p in m.params.items():
        fd = np.empty(p.size)
        flat = p.reshape(-1)
        for i in range(p.size):
            old = flat[i]
            flat[i] = old + eps
            up = _objective(m, x, lengths, dy)
            flat[i] = old - eps
            down = _objective(m, x, lengths, dy)
            flat[i] = old
            fd[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(m.grads[name].reshape(-1), fd, rtol=1e-6, atol=1e-8,
                                   err_msg=name)
    fdx = np.empty(x.size)
    xf = x.copy().reshape(-1)
    for i in range(x.size):
        old = xf[i]
        xf[i] = old + eps
        up = _objective(m, xf.reshape(x.shape), lengths, dy)
        xf[i] = old - eps
        down = _objective(m, xf.reshape(x.shape), lengths, dy)
        xf[i] = old
        fdx[i] = (up - down) / (2 * eps)
    np.testing.assert_allclose(dx.reshape(-1), fdx, rtol=1e-6, atol=1e-8)


def test_lengths_padding_and_batch_independence(case):
    x, lengths, dy = case
    m = BiLSTM(3, 4, num_layers=2, seed=7, dtype=np.float64)
    y = m.forward(x, lengths)
    dx = m.backward(dy)
    grads = {k: v.copy() for k, v in m.grads.items()}
    T = x.shape[0]
    mask = np.arange(T)[:, None] < lengths[None, :]
    assert np.all(y[~mask] == 0.0) and np.all(dx[~mask] == 0.0)
    assert np.all(np.abs(y[mask]).max(axis=-1) > 0)
    # garbage in the padding changes nothing
    x2 = x.copy()
    x2[~mask] = 1e3
    np.testing.assert_array_equal(m.forward(x2, lengths), y)
    # each sequence alone (T = its length) gives the same output, and the
    # batch's weight gradients are the sum of the per-sequence ones
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    for n, L in enumerate(lengths):
        yn = m.forward(x[:L, n:n + 1], [L])
        np.testing.assert_allclose(yn[:, 0], y[:L, n], rtol=0, atol=1e-14)
        dxn = m.backward(dy[:L, n:n + 1])
        np.testing.assert_allclose(dxn[:, 0], dx[:L, n], rtol=0, atol=1e-14)
        for k in total:
            total[k] += m.grads[k]
    for k in total:
        np.testing.assert_allclose(total[k], grads[k], rtol=0, atol=1e-12, err_msg=k)


def test_zero_length_sequence(case):
    x, _, dy = case
    m = BiLSTM(3, 4, seed=0, dtype=np.float64)
    y = m.forward(x, [0, 6, 2, 0])
    assert np.all(y[:, [0, 3]] == 0) and np.abs(y[:, 1]).max() > 0
    dx = m.backward(dy)
    assert np.all(dx[:, [0, 3]] == 0)


def _forward_in_child(m, x, lengths, expected):
    os._exit(0 if np.array_equal(m.forward(x, lengths), expected) else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forward_after_fork(case):
    """The direction thread pool is not inherited through fork() (it would hang)."""
    x, lengths, _ = case
    m = BiLSTM(3, 4, seed=0, dtype=np.float64)
    y = m.forward(x, lengths)  # creates the pool in this process
    child = multiprocessing.get_context("fork").Process(
        target=_forward_in_child, args=(m, x, lengths, y))
    child.start()
    child.join(60)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


def test_float32_close_to_float64(case):
    x, lengths, dy = case
    m64 = BiLSTM(3, 4, num_layers=2, seed=2, dtype=np.float64)
    m32 = BiLSTM(3, 4, num_layers=2, seed=2, dtype=np.float32)
    for k in m32.params:
        m32.params[k][...] = m64.params[k]
    y64 = m64.forward(x, lengths)
    y32 = m32.forward(x.astype(np.float32), lengths)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, atol=1e-5)
    dx64 = m64.backward(dy)
    assert m32.backward(dy.astype(np.float32), input_grad=False) is None
    g_no_dx = {k: v.copy() for k, v in m32.grads.items()}
    dx32 = m32.backward(dy.astype(np.float32))
    for k in g_no_dx:
        np.testing.assert_array_equal(g_no_dx[k], m32.grads[k])
    assert dx32.dtype == np.float32
    np.testing.assert_allclose(dx32, dx64, atol=1e-5)
    for k in m32.grads:
        np.testing.assert_allclose(m32.grads[k], m64.grads[k], atol=1e-4, err_msg=k)


def test_params_names_shapes_and_seed():
    m = BiLSTM(5, 3, num_layers=2, peepholes=True, seed=11)
    assert m.params["weight_ih_l0"].shape == (12, 5)
    assert m.params["weight_ih_l1_reverse"].shape == (12, 6)
    assert m.params["weight_hh_l1"].shape == (12, 3)
    assert m.params["bias_hh_l0_reverse"].shape == (12,)
    assert m.params["weight_peep_l1_reverse"].shape == (3, 3)
    assert len(m.params) == 2 * 2 * 5 and set(m.grads) == set(m.params)
    assert all(v.dtype == np.float32 for v in m.params.values())
    assert all(np.abs(v).max() <= 1 / np.sqrt(3) for v in m.params.values())
    same = BiLSTM(5, 3, num_layers=2, peepholes=True, seed=11)
    other = BiLSTM(5, 3, num_layers=2, peepholes=True, seed=12)
    for k in m.params:
        np.testing.assert_array_equal(m.params[k], same.params[k])
    assert any(not np.array_equal(m.params[k], other.params[k]) for k in m.params)
    assert not any("peep" in k for k in BiLSTM(5, 3, peepholes=False).params)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_size=0), "input_size"),
    (dict(hidden_size=2.5), "hidden_size"),
    (dict(num_layers=True), "num_layers"),
    (dict(peepholes="yes"), "peepholes"),
    (dict(dtype=np.int32), "dtype"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        BiLSTM(**args)


@pytest.mark.parametrize("x_shape, dtype, lengths, match", [
    ((6, 2), np.float64, [6, 6], "x must be 3-D"),
    ((6, 2, 5), np.float64, [6, 6], "input_size = 3"),
    ((6, 2, 3), np.float32, [6, 6], "dtype float32"),
    ((0, 2, 3), np.float64, [0, 0], "at least one frame"),
    ((6, 2, 3), np.float64, [6], r"lengths must have shape \(2,\)"),
    ((6, 2, 3), np.float64, [6, 7], r"lengths\[1\] = 7 is outside \[0, 6\]"),
    ((6, 2, 3), np.float64, [-1, 6], r"lengths\[0\] = -1"),
    ((6, 2, 3), np.float64, [6.0, 6.0], "lengths must hold integers"),
])
def test_bad_forward_arguments(x_shape, dtype, lengths, match):
    m = BiLSTM(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match=match):
        m.forward(np.zeros(x_shape, dtype), lengths)


def test_bad_values_and_backward_errors():
    m = BiLSTM(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match="backward called before forward"):
        m.backward(np.zeros((2, 1, 8)))
    x = np.zeros((2, 1, 3))
    x[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        m.forward(x, [2])
    m.forward(np.zeros((2, 1, 3)), [2])
    with pytest.raises(ValueError, match="2 \\* hidden_size = 8"):
        m.backward(np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="dy must have shape"):
        m.backward(np.zeros((3, 1, 8)))


def test_linear_gradients():
    rng = np.random.default_rng(0)
    lin = Linear(4, 3, seed=1, dtype=np.float64)
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 3))
    y = lin.forward(x)
    np.testing.assert_allclose(y, x @ lin.params["weight"].T + lin.params["bias"])
    dx = lin.backward(dy)
    np.testing.assert_allclose(dx, dy @ lin.params["weight"])
    np.testing.assert_allclose(lin.grads["weight"], np.einsum("tno,tni->oi", dy, x))
    np.testing.assert_allclose(lin.grads["bias"], dy.sum(axis=(0, 1)))
    with pytest.raises(ValueError, match="in_features = 4"):
        lin.forward(np.zeros((2, 3)))
