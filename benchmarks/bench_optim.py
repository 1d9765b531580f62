"""Adam update speed: ctcseq's fused kernel vs plain NumPy vs torch.optim.Adam.

One update of every parameter array of the default recipe's model (3 x 250
peephole BiLSTM + output layer, 123 features on pairs of frames: 4.03M
float32 weights), best of several repeats, side by side in one run:

* ``ctcseq.Adam`` -- one fused Numba pass per array, split over the threads;
* the NumPy formula it replaced (float64 moments, a dozen passes);
* ``torch.optim.Adam`` with ``foreach=True`` and, where available,
  ``fused=True`` (skipped without torch).

Run (unset the OpenBLAS variables this machine sets, as for every benchmark)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optim.py
"""
import argparse

import numpy as np
from bench_ctc import best_time  # this folder is on sys.path when run as a script


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    return p.parse_args()


def numpy_adam(params, grads, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """The NumPy Adam that ctcseq used before its kernel."""
    c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    for k, p in params.items():
        g = grads[k]
        m[k] *= b1
        m[k] += (1.0 - b1) * g
        v[k] *= b2
        v[k] += (1.0 - b2) * np.square(g, dtype=np.float64)
        p -= (lr * (m[k] / c1) / (np.sqrt(v[k] / c2) + eps)).astype(p.dtype)


def best_ms(step, repeats):
    return 1000 * best_time(step, repeats)


def main():
    args = parse_args()
    import numba
    numba.set_num_threads(args.threads)
    from ctcseq import Adam, CTCModel
    model = CTCModel(123, 250, 3, 41, stride=2, seed=0)
    params = model.params
    n = sum(p.size for p in params.values())
    rng = np.random.default_rng(0)
    grads = {k: rng.standard_normal(p.shape).astype(p.dtype) * 1e-3 for k, p in params.items()}
    rows = []
    opt = Adam({k: p.copy() for k, p in params.items()})
    rows.append(("ctcseq.Adam (fused Numba kernel)", best_ms(lambda: opt.step(grads), args.repeats)))
    ref = {k: p.copy() for k, p in params.items()}
    m = {k: np.zeros(p.shape) for k, p in ref.items()}
    v = {k: np.zeros(p.shape) for k, p in ref.items()}
    rows.append(("NumPy formula (the replaced code)",
                 best_ms(lambda: numpy_adam(ref, grads, m, v, 1), args.repeats)))
    try:
        import torch
        torch.set_num_threads(args.threads)
        tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params.values()]
        for tp, g in zip(tparams, grads.values()):
            tp.grad = torch.from_numpy(g)
        for kind in ("foreach", "fused"):
            try:
                topt = torch.optim.Adam(tparams, lr=1e-3, **{kind: True})
                rows.append((f"torch.optim.Adam({kind}=True), float32 moments",
                             best_ms(topt.step, args.repeats)))
            except (RuntimeError, TypeError) as e:
                print(f"torch {kind}: skipped ({e})")
    except ImportError:
        print("torch not installed: its rows are skipped")
    base = rows[0][1]
    print(f"{n / 1e6:.2f}M float32 weights, {len(params)} arrays, {args.threads} threads, "
          f"best of {args.repeats}")
    print(f"{'implementation':50s} {'ms/update':>10s} {'vs ctcseq':>10s}")
    for name, ms in rows:
        print(f"{name:50s} {ms:10.2f} {ms / base:9.2f}x")


if __name__ == "__main__":
    main()
