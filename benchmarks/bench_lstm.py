"""Peephole BiLSTM speed: ctcseq vs torch.nn.LSTM vs a TorchScript peephole LSTM.

Default shapes follow Graves et al. (2013): 3 layers of 256 units per
direction, 123 input features, T = 300 frames, N = 16 sequences, float32,
2 threads for everything.  Forward + backward (training) and forward only
(inference), repeats interleaved, side by side in one run.  Inference is
timed for both ctcseq paths: the training forward (``BiLSTM.forward``, which
keeps the caches for backward) and the cache-free ``BiLSTM.infer``; torch's
forward runs under ``torch.no_grad()``.  Ratios are medians over repeats of
the per-repeat ratio to torch.nn.LSTM (each repeat runs every implementation
once, so a load change hits all alike); times are the best repeat.

torch.nn.LSTM has no peepholes, so it does slightly less work than ctcseq;
the TorchScript model computes the same function as ctcseq.

Run (the OpenBLAS variables this machine sets slow BLAS down; unset them
for the benchmark only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py
"""
import argparse
import os
import platform
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--input", type=int, default=123)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--forward-only", action="store_true",
                   help="time inference only (skip forward + backward)")
    p.add_argument("--no-script", action="store_true",
                   help="skip the (slow) TorchScript peephole LSTM")
    return p.parse_args()


def interleaved_times(fns, repeats):
    """Times of each function per repeat (array of ``repeats`` seconds), the
    repeats interleaved round-robin so that a load change on the machine hits
    every implementation alike."""
    for fn in fns.values():
        fn()  # warm-up (JIT compilation, allocator)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: np.array(t) for name, t in times.items()}


def best_and_ratio(times, name, base):
    """(best time of name, median over repeats of its time / base's time)."""
    return times[name].min(), float(np.median(times[name] / times[base]))


def torchscript_peephole(torch, I, H, L):
    """Peephole BiLSTM in PyTorch: a TorchScript loop over time per direction."""

    @torch.jit.script
    def direction(gx: torch.Tensor, whh: torch.Tensor, peep: torch.Tensor,
                  reverse: bool) -> torch.Tensor:
        T, N = gx.shape[0], gx.shape[1]
        Hs = whh.shape[1]
        h = gx.new_zeros(N, Hs)
        c = gx.new_zeros(N, Hs)
        outs = []
        for s in range(T):
            t = T - 1 - s if reverse else s
            a = gx[t] + h.mm(whh.t())
            ai, af, ag, ao = a.chunk(4, 1)
            i = torch.sigmoid(ai + peep[0] * c)
            f = torch.sigmoid(af + peep[1] * c)
            c = f * c + i * torch.tanh(ag)
            o = torch.sigmoid(ao + peep[2] * c)
            h = o * torch.tanh(c)
            outs.append(h)
        if reverse:
            outs.reverse()
        return torch.stack(outs)

    params = []
    for k in range(L):
        in_k = I if k == 0 else 2 * H
        for _ in range(2):
            params.append([torch.nn.Parameter(torch.empty(*s).uniform_(-0.06, 0.06))
                           for s in ((4 * H, in_k), (4 * H, H), (4 * H,), (3, H))])

    def forward(x):
        inp = x
        for k in range(L):
            outs = []
            for d in range(2):
                wih, whh, b, peep = params[2 * k + d]
                gx = torch.matmul(inp, wih.t()) + b
                outs.append(direction(gx, whh, peep, d == 1))
            inp = torch.cat(outs, 2)
        return inp

    return forward, [p for ps in params for p in ps]


def main():
    args = parse_args()
    import numba
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    from ctcseq.nn import BiLSTM

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    L, H, I, T, N, R = args.layers, args.hidden, args.input, args.frames, args.batch, args.repeats
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, 2 * H)).astype(np.float32)
    lengths = np.full(N, T)

    ours = BiLSTM(I, H, L, peepholes=True, seed=0, dtype=np.float32)

    def ours_train():
        ours.forward(x, lengths)
        ours.backward(dy)

    train = {"ctcseq (peephole)": ours_train}
    infer = {"ctcseq (peephole)": lambda: ours.forward(x, lengths),
             "ctcseq infer (peephole)": lambda: ours.infer(x, lengths)}
    y_train, y_infer = ours.forward(x, lengths), ours.infer(x, lengths)
    max_diff = float(np.abs(y_train - y_infer).max())

    tl = torch.nn.LSTM(I, H, L, bidirectional=True)
    xt = torch.from_numpy(x)
    dyt = torch.from_numpy(dy)

    def torch_train():
        tl.zero_grad(set_to_none=True)
        xg = xt.clone().requires_grad_(True)
        y, _ = tl(xg)
        y.backward(dyt)

    def torch_infer():
        with torch.no_grad():
            tl(xt)

    train["torch.nn.LSTM (no peepholes)"] = torch_train
    infer["torch.nn.LSTM (no peepholes)"] = torch_infer
    slow_train, slow_infer = {}, {}
    if not args.no_script:
        fwd, tparams = torchscript_peephole(torch, I, H, L)

        def script_train():
            for p in tparams:
                p.grad = None
            xg = xt.clone().requires_grad_(True)
            fwd(xg).backward(dyt)

        def script_infer():
            with torch.no_grad():
                fwd(xt)

        slow_train["TorchScript peephole LSTM"] = script_train
        slow_infer["TorchScript peephole LSTM"] = script_infer

    base = "torch.nn.LSTM (no peepholes)"
    t_train = {} if args.forward_only else interleaved_times({**train, **slow_train}, R)
    t_infer = interleaved_times({**infer, **slow_infer}, R)
    nan = (float("nan"), float("nan"))
    results = {name: (best_and_ratio(t_train, name, base) if name in t_train else nan,
                      best_and_ratio(t_infer, name, base)) for name in t_infer}
    blas = sorted({(i["internal_api"], i.get("version"), i["num_threads"])
                   for i in threadpool_info()})
    cache_mb = 4 * T * N * (12 * H) * L / 2**20 + 4 * T * N * I / 2**20
    print(f"BiLSTM {L} layers x {H} units/direction, input {I}, T = {T}, N = {N}, float32, "
          f"{args.threads} threads; {R} repeats interleaved: best time, median ratio")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch {torch.__version__}, numba {numba.__version__}, numpy {np.__version__}; "
          f"BLAS {blas}")
    print(f"ctcseq forward cache (kept for backward): {cache_mb:.0f} MiB "
          f"(~12 T N H floats per layer + the input: O(T N H layers))")
    from ctcseq import nn as ctc_nn
    rows = min(max(ctc_nn._INFER_ROWS, N), T * N)  # BiLSTM.infer's block of projections
    infer_mb = 4 * (2 * T * N * 2 * H + 2 * rows * (4 * H + 2 * H)) / 2**20
    print(f"ctcseq infer: no cache; peak working memory {infer_mb:.1f} MiB besides the input "
          f"(two layer outputs + per direction one block of {rows} projections); "
          f"max |forward - infer| = {max_diff:.2e}")
    print()
    print(f"| {'implementation':30s} | fwd+bwd (s) | vs torch.nn.LSTM | forward (s) "
          f"| vs torch.nn.LSTM |")
    print(f"|{'-' * 32}|-------------|------------------|-------------|------------------|")
    for name, ((tr, tr_ratio), (inf, inf_ratio)) in results.items():
        tr_s = "-" if np.isnan(tr) else f"{tr:.3f}"
        tr_r = "-" if np.isnan(tr) else f"{tr_ratio:.2f}x"
        print(f"| {name:30s} | {tr_s:>11s} | {tr_r:>16s} | {inf:11.3f} "
              f"| {inf_ratio:15.2f}x |")
    if "TorchScript peephole LSTM" in results and not args.forward_only:
        ts_tr, ts_inf = (r[0] for r in results["TorchScript peephole LSTM"])
        o_tr, o_inf = (r[0] for r in results["ctcseq (peephole)"])
        print()
        print(f"ctcseq speed-up over the TorchScript peephole LSTM: {ts_tr / o_tr:.2f}x "
              f"(fwd+bwd), {ts_inf / o_inf:.2f}x (forward)")


if __name__ == "__main__":
    main()
