"""The Adam kernel's CUDA twin (kernels/optim_cuda.py) under Numba's CUDA
simulator, against the CPU kernel, which tests/test_model.py checks against
Kingma & Ba's algorithm."""
import numpy as np
import pytest

import ctcseq
from ctcseq.kernels import optim_cpu

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
pytestmark = pytest.mark.skipif(not ctcseq.device.simulating(),
                                reason="simulator tests (set NUMBA_ENABLE_CUDASIM=1)")
from ctcseq.kernels import optim_cuda  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_the_cpu_kernel_over_three_steps(dtype):
    rng = np.random.default_rng(0)
    n = 37   # not a multiple of the 2 x 4 simulated threads
    p = rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(n), np.zeros(n)
    d = [cuda.to_device(a) for a in (p, m, v)]
    for t in range(1, 4):
        g = rng.standard_normal(n).astype(dtype)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        optim_cpu.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, c1, c2, 1e-8)
        optim_cuda.adam_update(d[0], cuda.to_device(g), d[1], d[2], 1e-3, 0.9, 0.999, c1, c2,
                               1e-8, sim=True)
    for want, got in zip((p, m, v), d):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-15, atol=0)
