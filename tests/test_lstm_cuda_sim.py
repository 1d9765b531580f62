"""The CUDA LSTM time loop (kernels/lstm_cuda.py) under Numba's CUDA
simulator, against the CPU kernels (kernels/lstm_cpu.py), which the LSTM
tests check against torch and finite differences.  One block (the simulator
runs blocks one at a time, so a grid sync is only correct with one); 4
threads, fewer than the (sequence, unit) pairs, so each thread owns several.
"""
import numpy as np
import pytest

import ctcseq
from ctcseq.kernels import lstm_cpu

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
pytestmark = pytest.mark.skipif(not ctcseq.device.simulating(),
                                reason="simulator tests (set NUMBA_ENABLE_CUDASIM=1)")
from ctcseq.kernels import lstm_cuda  # noqa: E402


def case(dtype, reverse, seed=0, T=5, N=3, H=4):
    rng = np.random.default_rng(seed)
    gx = (rng.standard_normal((T, N, 4 * H))).astype(dtype)
    whh = (0.5 * rng.standard_normal((4 * H, H))).astype(dtype)
    peep = (0.5 * rng.standard_normal((3, H))).astype(dtype)
    lengths = np.array([T, 2, T - 1])[:N]
    dy = rng.standard_normal((T, N, 2 * H)).astype(dtype)
    return gx, whh, peep, lengths, dy


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("reverse", [False, True])
def test_forward_and_backward_match_cpu(dtype, rtol, reverse):
    gx, whh, peep, lengths, dy = case(dtype, reverse)
    T, N, G = gx.shape
    H = G // 4
    col0 = H if reverse else 0
    out = {}
    for side in ("cpu", "cuda"):
        y = np.full((T, N, 2 * H), 7.0, dtype)   # the other direction's columns stay
        c_all = np.zeros((T, N, H), np.float64 if side == "cpu" else dtype)
        gates = np.zeros((T, N, G), dtype)
        da = np.full((T, N, G), 7.0, dtype)
        dpeep = np.zeros((3, H), np.float64)
        if side == "cpu":
            c_all = np.zeros((T, N, H), dtype)
            lstm_cpu.lstm_forward_dir(gx, 0, whh, peep, lengths, reverse, y, col0, c_all, gates)
            lstm_cpu.lstm_backward_dir(dy, col0, gates, c_all, np.ascontiguousarray(whh.T), peep,
                                       lengths, reverse, da, 0, dpeep)
        else:
            d = {k: cuda.to_device(v) for k, v in dict(y=y, c_all=c_all, gates=gates, da=da,
                                                       dpeep=dpeep).items()}
            lstm_cuda.lstm_forward_dir(cuda.to_device(gx), 0, cuda.to_device(whh),
                                       cuda.to_device(peep), lengths, reverse, d["y"], col0,
                                       d["c_all"], d["gates"], sim=True)
            lstm_cuda.lstm_backward_dir(cuda.to_device(dy), col0, d["gates"], d["c_all"],
                                        cuda.to_device(whh), cuda.to_device(peep), lengths,
                                        reverse, d["da"], 0, d["dpeep"], sim=True)
            y, c_all, gates, da, dpeep = (d[k].copy_to_host()
                                          for k in ("y", "c_all", "gates", "da", "dpeep"))
        out[side] = dict(y=y, c_all=c_all, gates=gates, da=da, dpeep=dpeep)
    for k in out["cpu"]:
        want, got = out["cpu"][k], out["cuda"][k]
        if k in ("c_all", "gates"):  # caches: only valid frames are defined
            for n, L in enumerate(lengths):
                np.testing.assert_allclose(got[:L, n], want[:L, n], rtol=rtol, atol=rtol, err_msg=k)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=k)
    assert np.all(out["cuda"]["y"][:, :, H - col0:2 * H - col0] == 7.0)  # other direction kept
    assert np.all(out["cuda"]["y"][lengths[1]:, 1, col0:col0 + H] == 0.0)
