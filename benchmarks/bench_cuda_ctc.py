"""CTC loss forward + backward on one CUDA GPU: ctcseq against torch's native
CUDA ``ctc_loss`` and, where eligible, cuDNN's.

Side by side in one run, timed with CUDA events (median of ``--repeats``
after warm-up), on the same float32 log-softmax inputs as torch tensors.
Every side computes the loss and the gradient with respect to a leaf
``log_probs`` tensor (``loss.backward()``); ctcseq goes through its torch
adapter, ``ctcseq.torch.ctc_loss``.  Also printed: the peak extra device
memory of each (torch's allocator, which ctcseq's adapter allocates from),
whether ctcseq's gradient has the same bits over 10 runs (and torch's), and
the largest loss difference to torch.

    python benchmarks/bench_cuda_ctc.py            # a few minutes at most

Cases (the issue's):
    C1  T = 1000, N = 32, C = 5000, target lengths up to 200, variable input lengths
    C2  T = 500,  N = 64, C = 29,   S = 150, equal input lengths (cuDNN-eligible)
    C3  T = 4000, N = 8,  C = 1000, S = 1000
"""
import argparse
import platform

import numpy as np
import torch
import torch.nn.functional as F

import ctcseq
import ctcseq.torch as ct

CASES = {
    "C1": dict(T=1000, N=32, C=5000, S=200, equal=False),
    "C2": dict(T=500, N=64, C=29, S=150, equal=True),
    "C3": dict(T=4000, N=8, C=1000, S=1000, equal=True),
}


def make_case(T, N, C, S, equal, seed=0):
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(T, N, C, generator=g).log_softmax(-1)
    if equal:
        tl = torch.full((N,), S, dtype=torch.int32)
        il = torch.full((N,), T, dtype=torch.int32)
    else:
        tl = torch.randint(S // 2, S + 1, (N,), generator=g, dtype=torch.int32)
        il = torch.randint(T // 2, T + 1, (N,), generator=g, dtype=torch.int32)
        il[0] = T
        il = torch.maximum(il, 2 * tl + 1)
    tg = torch.randint(1, C, (N, S), generator=g, dtype=torch.int32)
    return lp.cuda(), tg, il, tl


def fwd_bwd(loss_fn, lp, tg, il, tl):
    x = lp.detach().requires_grad_()
    loss = loss_fn(x, tg, il, tl)
    loss.backward()
    return loss.detach(), x.grad


def time_ms(fn, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def peak_extra_mib(fn):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def same_bits(fn, runs=10):
    first = fn()[1].cpu().numpy().tobytes()
    return all(fn()[1].cpu().numpy().tobytes() == first for _ in range(runs - 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cases", default="C1,C2,C3")
    args = ap.parse_args()
    from numba import cuda
    print(f"GPU: {torch.cuda.get_device_name()}, driver {cuda.driver.driver.get_version()}, "
          f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version()}), numba-cuda {cuda.__version__ if hasattr(cuda, '__version__') else '?'}, "
          f"Python {platform.python_version()}")
    print(f"float32, forward + backward, median of {args.repeats} (CUDA events)\n")
    print(f"{'case':4} {'impl':8} | {'ms':>8} | {'torch/ours':>10} | {'peak MiB':>9} | "
          f"{'same bits x10':>13} | max |loss diff|")
    for name in args.cases.split(","):
        lp, tg, il, tl = make_case(**CASES[name])
        sides = {}

        def ours(lp=lp, tg=tg, il=il, tl=tl):
            return fwd_bwd(ct.ctc_loss, lp, tg, il, tl)

        def native(lp=lp, tg=tg, il=il, tl=tl):
            with torch.backends.cudnn.flags(enabled=False):
                return fwd_bwd(F.ctc_loss, lp, tg.cuda().long(), il.cuda().long(),
                               tl.cuda().long())
        sides["ctcseq"] = ours
        sides["native"] = native
        flat = torch.cat([tg[n, :tl[n]] for n in range(tg.shape[0])]).int()
        cudnn_ok = torch._use_cudnn_ctc_loss(lp, flat, il.tolist(), tl.tolist(), 0) \
            if hasattr(torch, "_use_cudnn_ctc_loss") else False
        if cudnn_ok:
            def cudnn(lp=lp, flat=flat, il=il, tl=tl):
                with torch.backends.cudnn.flags(enabled=True):
                    return fwd_bwd(F.ctc_loss, lp, flat, il, tl)
            sides["cudnn"] = cudnn
        ref_loss = ours()[0].item()
        t_ours = None
        for impl, fn in sides.items():
            ms = time_ms(fn, args.repeats)
            t_ours = ms if impl == "ctcseq" else t_ours
            mib = peak_extra_mib(fn)
            bits = same_bits(fn)
            diff = abs(fn()[0].item() - ref_loss)
            print(f"{name:4} {impl:8} | {ms:8.3f} | {ms / t_ours:9.2f}x | {mib:9.1f} | "
                  f"{str(bits):>13} | {diff:.2e}")
        if not cudnn_ok:
            print(f"{name:4} cudnn    | not eligible (blank 0, int32 concatenated targets, "
                  "equal input lengths, labels < 256 needed)")
    # the raw API on a CuPy-free path: Numba device arrays
    lp, tg, il, tl = make_case(**CASES["C3"])
    d = cuda.as_cuda_array(lp)
    ms = time_ms(lambda: ctcseq.ctc_loss_grad(d, tg.numpy(), il.numpy(), tl.numpy()),
                 args.repeats)
    print(f"\nC3 via ctcseq.ctc_loss_grad on a Numba device array: {ms:.3f} ms")


if __name__ == "__main__":
    main()
