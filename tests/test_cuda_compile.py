"""Every CUDA kernel compiles to PTX for real GPUs, with no GPU at hand.

The simulator runs kernels as Python, so it cannot catch what only Numba's
CUDA compiler rejects (typing, unsupported calls).  Here each kernel is
compiled, in a subprocess without the simulator, for the argument types the
host code passes, for the H100/H200 (sm_90) and the A100 (sm_80).  Needs
NVVM: ``pip install "numba-cuda[cu13]"``.  Kernels that synchronise the
whole grid (kernels/lstm_cuda.py) are left out: Numba needs a CUDA driver to
compile those, so they are compiled on a GPU only.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

SCRIPT = textwrap.dedent('''
    from numba import cuda, types
    from ctcseq.kernels import ctc_cuda as k, decode_cuda as d, optim_cuda as o
    i64, i32, f64 = types.int64[:], types.int32[:], types.float64[:]
    b, n = types.boolean, types.int64
    for dt in (types.float32, types.float64):
        lp = types.Array(dt, 3, "A")
        sigs = {
            k.nan_scan: (lp, i64, b, types.int8[:, :], i32),
            k.alpha: (lp, i64, i64, i64, i64, n, f64, i64, b, f64),
            k.occupancy: (lp, i64, i64, i64, i64, n, f64, i64, f64, i32,
                          types.float64[:, :, :]),
            k.grad_rows: (f64, i64, i64, i64, i64, i64, i64, types.int32[:, :], f64, i32,
                          f64, b, types.Array(dt, 3, "C")),
            k.finish: (f64, i32, f64, b, b, types.Array(dt, 1, "C")),
            d.argmax_rows: (lp, i64, types.int64[:, :], types.float64[:, :],
                            types.int8[:, :]),
            d.viterbi: (lp, i64, i64, i64, i64, n, types.float64[:, :, :], types.int8[:], i64,
                        types.int64[:, :], types.int64[:, :], f64),
            o._adam: (types.Array(dt, 1, "C"), types.Array(dt, 1, "C"), f64, f64)
            + (types.float64,) * 6,
        }
        for cc in ((9, 0), (8, 0)):
            for kern, sig in sigs.items():
                ptx, _ = cuda.compile_ptx(kern.py_func, sig, cc=cc)
                assert ".entry" in ptx
                print(kern.py_func.__name__, dt, cc, "ok")
''')


def test_kernels_compile_for_real_gpus():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    probe = subprocess.run([sys.executable, "-c", "from numba.cuda.cudadrv import nvvm; "
                            "nvvm.NVVM()"], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("NVVM is not installed (pip install \"numba-cuda[cu13]\")")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count(" ok") == 2 * 2 * 8
