"""CTC forward-backward on a CUDA GPU (numba.cuda), the twin of ``ctc_cpu``.

Same states and the same answers as the CPU kernel (extended labels
l' = (blank, y1, blank, ..., yS, blank), L = 2S + 1, float64 log-space
arithmetic for float32 and float64 inputs), computed in five launches, none
per time step:

1. ``nan_scan``    one block per (frame, sequence) row: flags rows and
                   sequences whose valid frames hold a NaN.
2. ``alpha``       one block per sequence, threads over the states, one
                   block barrier per frame: log alpha[t, s] (emission at t
                   included) into the sequence's slice of one packed table
                   (sum over n of T_n x L_n float64, only when a gradient is
                   wanted; two rows per sequence otherwise, O(N S)).
3. ``occupancy``   the same, frames in reverse: beta from two rows, and the
                   state occupancies exp(alpha + beta - log P) written over
                   alpha's row.
4. ``grad_rows``   blocks take (frame, sequence) rows in turn: the
                   occupancies summed per class in a fixed order (the blank:
                   a tree over the block; each distinct label: its positions
                   in ascending order, by one thread), then the whole gradient
                   row written once, coalesced.  No float atomics anywhere, so
                   the gradient is the same to the bit run after run.
5. ``finish``      losses, zero_infinity and the reduction, in a fixed order.

Only alpha and occupancy are sequential in time, so they do the least per
frame: each thread keeps the labels of its first _K states in registers and
loads the next frame's emissions before the barrier, so that their latency
overlaps it; the per-class sums run in the fully parallel grad_rows.

Extra device memory with a gradient: the packed table (for float32 input the
same bytes as torch's log_alpha + log_beta, which are padded to max T x max L
per sequence) plus O(N S + N C); without: O(N S).
"""
import math

import numpy as np
from numba import cuda

_NEG_INF = -math.inf
# States per thread whose labels and next emissions live in registers
# (L <= 2048 with 256 threads; the rest are read as they are needed).
_K = 8


def threads_per_block(sim, L=0):
    """Threads for the per-sequence kernels: 256 (alpha holds ~130 registers a
    thread, so 512 would not launch: 65 536 registers a block); states past
    _K * 256 take the strided loop.  The simulator makes an OS thread per
    CUDA thread: 4 there (fewer than the states, which tests those loops)."""
    return 4 if sim else 256


@cuda.jit(device=True, inline=True)
def _lse3(a, b, c):
    m = max(a, max(b, c))
    if m == _NEG_INF:
        return _NEG_INF
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


@cuda.jit(device=True, inline=True)
def _label(targets, off, blank, s):
    if s % 2 == 0:
        return blank
    return targets[off + s // 2]


@cuda.jit(device=True, inline=True)
def _skip(targets, off, s):
    """True when the transition s - 2 -> s is allowed (s a label differing
    from the label two states back)."""
    return s % 2 == 1 and s >= 3 and targets[off + s // 2] != targets[off + s // 2 - 1]


@cuda.jit(cache=True)
def nan_scan(log_probs, lengths, rows, row_flags, seq_flags):
    """seq_flags[n] = 1 (integer atomic max), and row_flags[t, n] = 1 if
    ``rows``, when frame t < lengths[n] of sequence n holds a NaN.
    Blocks take (frame, sequence) rows in turn."""
    T, N, C = log_probs.shape
    for r in range(cuda.blockIdx.x, T * N, cuda.gridDim.x):
        t = r // N
        n = r % N
        if t >= lengths[n]:
            continue
        bad = 0
        for c in range(cuda.threadIdx.x, C, cuda.blockDim.x):
            x = log_probs[t, n, c]
            if x != x:
                bad = 1
        if cuda.syncthreads_or(bad) and cuda.threadIdx.x == 0:
            if rows:
                row_flags[t, n] = 1
            cuda.atomic.max(seq_flags, n, 1)


@cuda.jit(device=True, inline=True)
def _cache_labels(targets, off, blank, L, tid, nt, lab, skp):
    """The labels and skip flags of this thread's first _K states
    (s = tid + k * nt), kept in registers for all frames."""
    for k in range(_K):
        s = tid + k * nt
        if s < L:
            lab[k] = _label(targets, off, blank, s)
            skp[k] = _skip(targets, off, s)


@cuda.jit(device=True, inline=True)
def _prefetch(log_probs, t, n, L, tid, nt, lab, emit):
    """Load frame t's emissions of this thread's cached states: used after
    the next barrier, so the loads' latency overlaps it."""
    for k in range(_K):
        if tid + k * nt < L:
            emit[k] = log_probs[t, n, lab[k]]


@cuda.jit(device=True, inline=True)
def _alpha_state(table, prev, s, skip, e):
    a1 = table[prev + s - 1] if s >= 1 else _NEG_INF
    a2 = table[prev + s - 2] if skip else _NEG_INF
    return _lse3(table[prev + s], a1, a2) + e


@cuda.jit(cache=True)
def alpha(log_probs, targets, offsets, input_lengths, target_lengths, blank,
          table, row_base, full, logp):
    """logp[n] = log P(target n | input n); alpha rows in table.

    Row t of sequence n starts at row_base[n] + t * L when ``full`` (every
    row kept for the backward pass), at row_base[n] + (t % 2) * L otherwise.
    One block per sequence, one barrier per frame."""
    lab = cuda.local.array(_K, np.int64)
    skp = cuda.local.array(_K, np.bool_)
    emit = cuda.local.array(_K, np.float64)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    Tn = input_lengths[n]
    S = target_lengths[n]
    L = 2 * S + 1
    off = offsets[n]
    base = row_base[n]
    if Tn == 0:
        if tid == 0:
            logp[n] = 0.0 if S == 0 else _NEG_INF
        return
    _cache_labels(targets, off, blank, L, tid, nt, lab, skp)
    for s in range(tid, L, nt):
        table[base + s] = log_probs[0, n, _label(targets, off, blank, s)] if s < 2 else _NEG_INF
    if Tn > 1:
        _prefetch(log_probs, 1, n, L, tid, nt, lab, emit)
    cuda.syncthreads()
    cur = base
    for t in range(1, Tn):
        prev = cur
        cur = base + (t if full else t % 2) * L
        for k in range(_K):
            s = tid + k * nt
            if s < L:
                table[cur + s] = _alpha_state(table, prev, s, skp[k], emit[k])
        for s in range(tid + _K * nt, L, nt):  # states past the register cache
            e = log_probs[t, n, _label(targets, off, blank, s)]
            table[cur + s] = _alpha_state(table, prev, s, _skip(targets, off, s), e)
        if t + 1 < Tn:
            _prefetch(log_probs, t + 1, n, L, tid, nt, lab, emit)
        cuda.syncthreads()
    if tid == 0:
        logp[n] = _lse3(table[cur + L - 1], table[cur + L - 2] if L > 1 else _NEG_INF,
                        _NEG_INF)


@cuda.jit(device=True, inline=True)
def _occupancy_state(targets, off, log_probs, table, nxt, here, row, t, n, Tn, L, s, lab_s,
                     e, lp_n):
    """beta[t, s] (emission at t excluded) from the next frame's row; stores
    it plus the emission in here[s], and the occupancy over alpha[t, s]."""
    if t == Tn - 1:
        b = 0.0 if s >= L - 2 else _NEG_INF
    else:
        b1 = nxt[s + 1] if s + 1 < L else _NEG_INF
        b2 = nxt[s + 2] if s + 2 < L and _skip(targets, off, s + 2) else _NEG_INF
        b = _lse3(nxt[s], b1, b2)
    here[s] = b + e
    table[row + s] = math.exp(table[row + s] + b - lp_n)


@cuda.jit(cache=True)
def occupancy(log_probs, targets, offsets, input_lengths, target_lengths, blank,
              table, row_base, logp, seq_flags, beta):
    """Overwrite each alpha row with the state occupancies
    exp(alpha + beta - log P), frames in reverse; grad_rows sums them per class.

    beta : (N, 2, Lmax) float64 work rows.  Sequences with a NaN or an
    impossible target are skipped (grad_rows writes their rows from the loss
    alone).  One block per sequence, one barrier per frame."""
    lab = cuda.local.array(_K, np.int64)
    skp = cuda.local.array(_K, np.bool_)
    emit = cuda.local.array(_K, np.float64)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    Tn = input_lengths[n]
    lp_n = logp[n]
    if Tn == 0 or seq_flags[n] != 0 or not lp_n > _NEG_INF:
        return
    S = target_lengths[n]
    L = 2 * S + 1
    off = offsets[n]
    base = row_base[n]
    _cache_labels(targets, off, blank, L, tid, nt, lab, skp)
    _prefetch(log_probs, Tn - 1, n, L, tid, nt, lab, emit)
    for t in range(Tn - 1, -1, -1):
        row = base + t * L
        nxt = beta[n, (t + 1) % 2]
        here = beta[n, t % 2]
        for k in range(_K):
            s = tid + k * nt
            if s < L:
                _occupancy_state(targets, off, log_probs, table, nxt, here, row, t, n, Tn, L,
                                 s, lab[k], emit[k], lp_n)
        for s in range(tid + _K * nt, L, nt):
            lab_s = _label(targets, off, blank, s)
            _occupancy_state(targets, off, log_probs, table, nxt, here, row, t, n, Tn, L,
                             s, lab_s, log_probs[t, n, lab_s], lp_n)
        if t > 0:
            _prefetch(log_probs, t - 1, n, L, tid, nt, lab, emit)
        cuda.syncthreads()


@cuda.jit(cache=True)
def grad_rows(table, row_base, target_lengths, input_lengths, seg_first, seg_ptr, seg_pos,
              class_slot, logp, seq_flags, weight, zero_infinity, grad):
    """grad[t, n, c] = -weight[n] * (occupancy of class c at frame t).

    Per row: the blank's states (even s) are summed by a fixed-order tree
    over the block; then, their places free, segment j (a distinct label;
    its positions, ascending, are seg_pos[seg_ptr[g]:seg_ptr[g + 1]] for
    g = seg_first[n] + j) is summed into place 2 j and the blank into L - 1;
    class_slot[n, c] names the place of class c, or -1.  Then the row of
    grad is written once.  Zero past each input length; NaN on the valid
    frames of a sequence with a NaN, or with an impossible target unless
    zero_infinity.  Blocks (a power of two threads, <= 1024) take rows in turn."""
    part = cuda.shared.array(1024, np.float64)
    T, N, C = grad.shape
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for r in range(cuda.blockIdx.x, T * N, cuda.gridDim.x):
        t = r // N
        n = r % N
        if t >= input_lengths[n]:
            for c in range(tid, C, nt):
                grad[t, n, c] = 0.0
            continue
        if seq_flags[n] != 0 or not logp[n] > _NEG_INF:
            v = 0.0 if zero_infinity and seq_flags[n] == 0 else math.nan
            for c in range(tid, C, nt):
                grad[t, n, c] = v
            continue
        L = 2 * target_lengths[n] + 1
        row = row_base[n] + t * L
        acc = 0.0
        for s in range(2 * tid, L, 2 * nt):
            acc += table[row + s]
        part[tid] = acc
        cuda.syncthreads()
        width = nt // 2
        while width > 0:
            if tid < width:
                part[tid] += part[tid + width]
            cuda.syncthreads()
            width //= 2
        g0 = seg_first[n]
        for j in range(tid, seg_first[n + 1] - g0, nt):
            g = g0 + j
            seg = 0.0
            for p in range(seg_ptr[g], seg_ptr[g + 1]):
                seg += table[row + 2 * seg_pos[p] + 1]
            table[row + 2 * j] = seg
        if tid == 0:
            table[row + L - 1] = part[0]
        cuda.syncthreads()
        w = weight[n]
        for c in range(tid, C, nt):
            k = class_slot[n, c]
            grad[t, n, c] = -w * table[row + k] if k >= 0 else 0.0
        cuda.syncthreads()  # part[] is reused by the next row


@cuda.jit(cache=True)
def finish(logp, seq_flags, weight, zero_infinity, reduce, out):
    """out[n] = loss n (reduce false), or out[0] = sum of weight[n] * loss n
    in order n = 0, 1, ... (reduce true).  One thread."""
    if cuda.grid(1) != 0:
        return
    acc = 0.0
    for n in range(logp.shape[0]):
        v = math.nan if seq_flags[n] != 0 else 0.0 - logp[n]  # +0.0, not -0.0
        if zero_infinity and v == math.inf:
            v = 0.0
        if reduce:
            acc += v * weight[n]
        else:
            out[n] = v
    if reduce:
        out[0] = acc


def segments(flat, offsets, tl, blank, C):
    """Host-side layout of each target's distinct labels.

    Returns seg_first (N + 1,), seg_ptr (G + 1,), seg_pos (sum S,) int64 and
    class_slot (N, C) int32: for sequence n, segments seg_first[n] ..
    seg_first[n + 1] - 1 are its distinct labels in increasing order, segment
    g's positions are seg_pos[seg_ptr[g]:seg_ptr[g + 1]] (ascending), and
    class_slot[n, c] is the place of class c's sum in an occupancy row
    (2 S_n for the blank, 2 j for the label of local segment j, -1 for a
    class not in the target).
    """
    N = tl.shape[0]
    seq = np.repeat(np.arange(N, dtype=np.int64), tl)
    pos = np.arange(seq.size, dtype=np.int64) - np.repeat(
        np.cumsum(tl) - tl, tl)
    lab = flat[np.repeat(offsets, tl) + pos] if seq.size else np.zeros(0, np.int64)
    order = np.lexsort((pos, lab, seq))
    seq, pos, lab = seq[order], pos[order], lab[order]
    new = np.ones(seq.size, bool)
    new[1:] = (seq[1:] != seq[:-1]) | (lab[1:] != lab[:-1])
    heads = np.flatnonzero(new)
    seg_ptr = np.append(heads, seq.size).astype(np.int64)
    seg_seq = seq[heads]
    seg_first = np.searchsorted(seg_seq, np.arange(N + 1)).astype(np.int64)
    local = np.arange(heads.size) - seg_first[seg_seq]
    class_slot = np.full((N, C), -1, np.int32)
    class_slot[:, blank] = 2 * tl
    class_slot[seg_seq, lab[heads]] = 2 * local
    return seg_first, seg_ptr, pos, class_slot


def row_launch(dev, rows, C):
    """(blocks, threads) for a kernel whose blocks take rows of C classes in
    turn: a warp at least, and enough blocks to fill the GPU (the simulator
    pays per block, so it gets two)."""
    nt = threads_per_block(dev.sim)
    k = 32
    while k < nt and k < C:
        k *= 2
    return (2 if dev.sim else max(1, min(rows, 8192))), min(k, nt)


def scan_nan(dev, lp, il_dev, rows=False):
    """Device (N,) int32 sequence flags and, if ``rows``, (T, N) int8 row
    flags of NaN on valid frames."""
    T, N, C = lp.shape
    seq_flags = dev.upload(np.zeros(N, np.int32))
    row_flags = dev.upload(np.zeros((max(T, 1), N) if rows else (1, 1), np.int8))
    if T > 0:
        blocks, nt = row_launch(dev, T * N, C)
        nan_scan[blocks, nt, dev.stream](lp, il_dev, rows, row_flags, seq_flags)
    return seq_flags, row_flags


def ctc_loss(dev, lp, flat, offsets, il, tl, blank, weight, reduce, zero_infinity,
             want_grad):
    """Run the CTC kernels on validated arguments.

    dev : ctcseq.device.Device; lp : (T, N, C) Numba device array; flat,
    offsets, il, tl : host int64 (see ctc_cpu.ctc_forward_backward); weight :
    (N,) float64 sequence weights.  Returns (loss, grad): loss of the
    caller's kind, (N,) or (1,) when ``reduce``; grad (T, N, C) or None.
    """
    T, N, C = lp.shape
    L = 2 * tl + 1
    Lmax = int(L.max())
    nt = threads_per_block(dev.sim, Lmax)
    up = dev.upload
    d_flat = up(flat if flat.size else np.zeros(1, np.int64))
    d_off, d_il, d_tl, d_w = up(offsets), up(il), up(tl), up(weight)
    seq_flags, _ = scan_nan(dev, lp, d_il)
    if want_grad:
        row_base = np.concatenate(([0], np.cumsum(il * L)[:-1])).astype(np.int64)
        size = int((il * L).sum())
    else:
        row_base = np.arange(N, dtype=np.int64) * (2 * Lmax)
        size = N * 2 * Lmax
    table = dev.scratch((max(size, 1),), np.float64)
    d_base = up(row_base)
    logp = dev.scratch((N,), np.float64)
    alpha[N, nt, dev.stream](lp, d_flat, d_off, d_il, d_tl, blank, table, d_base,
                             want_grad, logp)
    grad = None
    if want_grad:
        beta = dev.scratch((N, 2, Lmax), np.float64)
        occupancy[N, nt, dev.stream](lp, d_flat, d_off, d_il, d_tl, blank, table, d_base,
                                     logp, seq_flags, beta)
        seg_first, seg_ptr, seg_pos, class_slot = segments(flat, offsets, tl, blank, C)
        grad, g = dev.empty((T, N, C), lp.dtype)
        if T > 0:
            blocks, rt = row_launch(dev, T * N, max(C, Lmax // 2))
            grad_rows[blocks, rt, dev.stream](
                table, d_base, d_tl, d_il, up(seg_first), up(seg_ptr),
                up(seg_pos if seg_pos.size else np.zeros(1, np.int64)), up(class_slot), logp,
                seq_flags, d_w, zero_infinity, g)
    loss, out = dev.empty((1,) if reduce else (N,), lp.dtype)
    finish[1, 1, dev.stream](logp, seq_flags, d_w, zero_infinity, reduce, out)
    return loss, grad
