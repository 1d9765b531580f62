"""Greedy decoding and Viterbi forced alignment on a CUDA GPU, the twins of
``decode_cpu.greedy`` and ``decode_cpu.viterbi_align``.

Greedy: the argmax of every (frame, sequence) row is found on the device, one
block per row with a fixed-order tree (ties go to the lower class, as the
CPU's first-maximum scan); merging repeats and dropping blanks happens on the
host over the (T, N) best classes, which is all a Python caller receives.

Viterbi: one block per sequence, threads over the states, the previous and
current delta rows in global memory and one int8 back-pointer per (frame,
state); one thread walks the back-pointers.  The comparisons and the float64
additions are the CPU's, so the paths (ties included) are the same.
"""
import math

import numpy as np
from numba import cuda

from .ctc_cuda import _label, _skip, row_launch, threads_per_block

_NEG_INF = -math.inf


@cuda.jit(cache=True)
def argmax_rows(lp, lengths, best, value, nan_rows):
    """best[t, n], value[t, n]: the first class of largest log-probability on
    frame t < lengths[n] and that log-probability (float64); nan_rows[t, n] = 1
    where the row holds a NaN.  Blocks take rows in turn; a power-of-two
    block of at most 1024 threads."""
    sv = cuda.shared.array(1024, np.float64)
    si = cuda.shared.array(1024, np.int64)
    T, N, C = lp.shape
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for r in range(cuda.blockIdx.x, T * N, cuda.gridDim.x):
        t = r // N
        n = r % N
        if t >= lengths[n]:
            continue
        bv = _NEG_INF
        bi = C
        bad = 0
        for c in range(tid, C, nt):
            v = lp[t, n, c]
            if v != v:
                bad = 1
            elif v > bv or bi == C:
                bv = v
                bi = c
        sv[tid] = bv
        si[tid] = bi
        cuda.syncthreads()
        width = nt // 2
        while width > 0:
            if tid < width:
                ov = sv[tid + width]
                oi = si[tid + width]
                if ov > sv[tid] or (ov == sv[tid] and oi < si[tid]):
                    sv[tid] = ov
                    si[tid] = oi
            cuda.syncthreads()
            width //= 2
        if cuda.syncthreads_or(bad):
            if tid == 0:
                nan_rows[t, n] = 1
        elif tid == 0:
            best[t, n] = si[0]
            value[t, n] = sv[0]


@cuda.jit(cache=True)
def viterbi(lp, targets, offsets, il, tl, blank, delta, back, back_base,
            out_start, out_end, out_score):
    """Most probable CTC path collapsing to each target (decode_cpu.viterbi_align).

    delta : (N, 2, Lmax) float64 work rows; back : int8, frame t of
    sequence n at back_base[n] + t * L.  out_start, out_end (N, S) must hold
    -1.  One block per sequence."""
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    T = il[n]
    S = tl[n]
    L = 2 * S + 1
    off = offsets[n]
    base = back_base[n]
    if T == 0:
        if tid == 0:
            out_score[n] = 0.0 if S == 0 else _NEG_INF
        return
    for s in range(tid, L, nt):
        delta[n, 0, s] = lp[0, n, _label(targets, off, blank, s)] if s < 2 else _NEG_INF
    cuda.syncthreads()
    for t in range(1, T):
        prev = delta[n, (t - 1) % 2]
        cur = delta[n, t % 2]
        for s in range(tid, L, nt):
            b = prev[s]
            arg = 0
            if s >= 1 and prev[s - 1] > b:
                b = prev[s - 1]
                arg = 1
            if _skip(targets, off, s) and prev[s - 2] > b:
                b = prev[s - 2]
                arg = 2
            if b != _NEG_INF:
                cur[s] = b + lp[t, n, _label(targets, off, blank, s)]
                back[base + t * L + s] = arg
            else:
                cur[s] = _NEG_INF
                back[base + t * L + s] = 0
        cuda.syncthreads()
    if tid != 0:
        return
    last = delta[n, (T - 1) % 2]
    s = L - 1
    if L > 1 and last[L - 2] > last[L - 1]:
        s = L - 2
    out_score[n] = last[s]
    if last[s] == _NEG_INF:
        return
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            if out_start[n, k] == -1:
                out_end[n, k] = t + 1
            out_start[n, k] = t
        if t > 0:
            s -= back[base + t * L + s]


def greedy_rows(dev, lp, il):
    """Host (T, N) int64 best classes, (T, N) float64 their log-probabilities
    and (T, N) int8 NaN flags, for frames t < il[n]."""
    T, N, C = lp.shape
    rows = (max(T, 1), N)  # T = 0: nothing to decode, but no empty device arrays
    best = dev.upload(np.zeros(rows, np.int64))
    value = dev.upload(np.zeros(rows, np.float64))
    nan_rows = dev.upload(np.zeros(rows, np.int8))
    if T > 0:
        argmax_rows[row_launch(dev, T * N, C) + (dev.stream,)](
            lp, dev.upload(il), best, value, nan_rows)
    return dev.download(best)[:T], dev.download(value)[:T], dev.download(nan_rows)[:T]


def viterbi_align(dev, lp, flat, offsets, il, tl, blank):
    """Host (N, S) starts and ends and (N,) scores, as decode_cpu.viterbi_align."""
    T, N, C = lp.shape
    L = 2 * tl + 1
    Lmax = int(L.max())
    S = max(int(tl.max()), 1)
    up = dev.upload
    back_base = np.concatenate(([0], np.cumsum(il * L)[:-1])).astype(np.int64)
    back = dev.scratch((max(int((il * L).sum()), 1),), np.int8)
    delta = dev.scratch((N, 2, Lmax), np.float64)
    st = up(np.full((N, S), -1, np.int64))
    en = up(np.full((N, S), -1, np.int64))
    sc = dev.scratch((N,), np.float64)
    viterbi[N, threads_per_block(dev.sim), dev.stream](
        lp, up(flat if flat.size else np.zeros(1, np.int64)), up(offsets), up(il), up(tl),
        blank, delta, back, up(back_base), st, en, sc)
    return dev.download(st), dev.download(en), dev.download(sc)
