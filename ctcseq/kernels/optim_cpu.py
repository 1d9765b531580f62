"""CPU kernels for the optimisers: one fused pass per parameter array.

NumPy's Adam makes about a dozen passes over each array (temporaries for
m / c1, sqrt(v / c2) ...), all on one core while the other waits: with the
4M-weight recipe model that was about 24 ms of a 400 ms training batch.
Here each element is read and written once, and the array is split over
the Numba threads: under 4 ms (benchmarks/bench_optim.py).
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update(p, g, m, v, lr, beta1, beta2, c1, c2, eps):
    """One Adam step, in place, over flat arrays.

    p : (n,) float32 or float64, the parameters; g : (n,) gradients;
    m, v : (n,) float64, first and second moments.  ``c1``, ``c2`` are the
    bias corrections ``1 - beta ** t``.  The step is computed in float64 and
    rounded once to p's dtype.
    """
    for i in prange(p.shape[0]):
        gi = np.float64(g[i])
        mi = beta1 * m[i] + (1.0 - beta1) * gi
        vi = beta2 * v[i] + (1.0 - beta2) * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr * (mi / c1) / (np.sqrt(vi / c2) + eps)
