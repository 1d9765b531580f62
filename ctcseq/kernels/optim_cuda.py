"""The optimisers' kernels on a CUDA GPU, the twins of ``optim_cpu``: one
fused pass per parameter array, each element read and written once (a
grid-stride loop; float64 moments and step, rounded once to the parameters'
dtype, as on the CPU).
"""
import math

import numpy as np
from numba import cuda


@cuda.jit(cache=True)
def _adam(p, g, m, v, lr, beta1, beta2, c1, c2, eps):
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = np.float64(g[i])
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr * (mi / c1) / (math.sqrt(vi / c2) + eps)


def adam_update(p, g, m, v, lr, beta1, beta2, c1, c2, eps, stream=0, sim=False):
    """As ``optim_cpu.adam_update``, on flat device arrays of equal length."""
    n = p.shape[0]
    if n == 0:
        return
    threads = 4 if sim else 256
    blocks = 2 if sim else min(-(-n // threads), 65536)
    _adam[blocks, threads, stream](p, g, m, v, lr, beta1, beta2, c1, c2, eps)
