"""CTC loss + gradient: ctcseq (Numba, CPU) against torch's CPU ctc_loss.

Both sides run float32, 2 threads, on the same random log-softmax inputs and
padded targets, side by side in one run; best of ``--repeats`` timings.
torch's time covers forward + backward on a leaf ``log_probs`` tensor.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_ctc.py
"""
import argparse
import time

import numba
import numpy as np

from ctcseq import ctc_loss_grad

SHAPES = [(500, 32, 62, 100), (200, 16, 29, 50), (1000, 16, 1000, 100)]


def make_inputs(T, N, C, S, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, C)).astype(np.float32)
    lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    targets = rng.integers(1, C, size=(N, S))
    return lp.astype(np.float32), targets, np.full(N, T), np.full(N, S)


def best_time(fn, repeats):
    fn()  # warm-up (and JIT compilation)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("torch is not installed: printing ctcseq times only")

    print(f"threads={args.threads}, float32, best of {args.repeats}")
    print(f"{'T':>5} {'N':>3} {'C':>5} {'S':>4} | {'ctcseq ms':>9} | {'torch ms':>9} | speed-up")
    for T, N, C, S in SHAPES:
        lp, tg, il, tl = make_inputs(T, N, C, S)
        ours = best_time(lambda: ctc_loss_grad(lp, tg, il, tl), args.repeats)
        line = f"{T:>5} {N:>3} {C:>5} {S:>4} | {ours * 1e3:9.2f} |"
        if torch is not None:
            lpt = torch.from_numpy(lp).requires_grad_()
            tgt, ilt, tlt = map(torch.from_numpy, (tg, il, tl))

            def run_torch():
                loss = torch.nn.functional.ctc_loss(lpt, tgt, ilt, tlt)
                loss.backward()
                lpt.grad = None

            theirs = best_time(run_torch, args.repeats)
            line += f" {theirs * 1e3:9.2f} | {theirs / ours:6.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
