"""One direction of a peephole LSTM layer on a CUDA GPU: the time loop, the
twin of ``lstm_cpu`` (same maths, layout, gate order (i, f, g, o), variable
lengths with the reverse direction starting at each sequence's own last
frame, float64 gate arithmetic and cell state for float32 and float64).

As on the CPU, the input projections of all frames and the weight gradients
are large matrix products done by the caller; what lives here is what has to
be sequential in time.  Each direction is one *persistent* kernel launch for
all T steps (no launch per step, ~10 us each): block b owns hidden units
[b U, (b + 1) U) of every sequence, computes their recurrent products from
the previous step's h (or, backwards, the gate gradients' product with
W_hh^T), fuses the gates, peepholes and cell update, writes its slice of the
new h to a double buffer, and the whole grid synchronises once per step
(cooperative groups).  The cell state (and its gradient) of a unit never
leaves the thread that owns it.  Sums are taken in a fixed order, so results
have the same bits run after run; the peephole gradients are summed per
sequence, then over sequences in order.

Under the CUDA simulator a grid sync is only correct with one block, which is
what :func:`blocks_for` returns there.
"""
import math

import numpy as np
from numba import cuda

_SIG_CLAMP = 700.0
_TANH_CLAMP = 350.0


@cuda.jit(device=True, inline=True)
def _sigmoid(x):
    if x != x:  # the GPU's min/max return the non-NaN operand: keep NaN a NaN
        return x
    xc = min(max(x, -_SIG_CLAMP), _SIG_CLAMP)
    return 1.0 / (1.0 + math.exp(-xc))


@cuda.jit(device=True, inline=True)
def _tanh(x):
    if x != x:
        return x
    ax = min(abs(x), _TANH_CLAMP)
    e = math.exp(-2.0 * ax)
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0.0 else -t


@cuda.jit(device=True, inline=True)
def _frame(s, L, reverse):
    return L - 1 - s if reverse else s


@cuda.jit(cache=True)
def _forward(gx, gcol0, whh, peep, lengths, reverse, max_len, y, col0, c_all, gates, hbuf):
    """gx (T, N, W): input projections in columns gcol0:gcol0+4H; hbuf
    (2, N, H) zeros: h of the previous and current step."""
    T, N = gx.shape[0], gx.shape[1]
    H = whh.shape[1]
    U = (H + cuda.gridDim.x - 1) // cuda.gridDim.x
    j0 = cuda.blockIdx.x * U
    nu = max(0, min(H, j0 + U) - j0)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    grid = cuda.cg.this_grid()
    for p in range(tid, N * nu, nt):  # exact zeros past each length
        n = p // nu
        j = j0 + p % nu
        for t in range(lengths[n], T):
            y[t, n, col0 + j] = 0.0
    # the cell state of at most _PER_THREAD (n, j) pairs lives in registers
    c = cuda.local.array(_PER_THREAD, np.float64)
    for q in range(_PER_THREAD):
        c[q] = 0.0
    for s in range(max_len):
        src = hbuf[s % 2]
        dst = hbuf[(s + 1) % 2]
        for q in range(_PER_THREAD):
            p = tid + q * nt
            if p >= N * nu:
                break
            n = p // nu
            j = j0 + p % nu
            L = lengths[n]
            if s >= L:
                continue
            t = _frame(s, L, reverse)
            a_i = np.float64(gx[t, n, gcol0 + j])
            a_f = np.float64(gx[t, n, gcol0 + H + j])
            a_g = np.float64(gx[t, n, gcol0 + 2 * H + j])
            a_o = np.float64(gx[t, n, gcol0 + 3 * H + j])
            for k in range(H):
                hk = np.float64(src[n, k])
                a_i += whh[j, k] * hk
                a_f += whh[H + j, k] * hk
                a_g += whh[2 * H + j, k] * hk
                a_o += whh[3 * H + j, k] * hk
            cp = c[q]
            g_i = _sigmoid(a_i + peep[0, j] * cp)
            g_f = _sigmoid(a_f + peep[1, j] * cp)
            g_g = _tanh(a_g)
            cn = g_f * cp + g_i * g_g
            g_o = _sigmoid(a_o + peep[2, j] * cn)
            h = g_o * _tanh(cn)
            c[q] = cn
            dst[n, j] = h
            y[t, n, col0 + j] = h
            c_all[t, n, j] = cn
            gates[t, n, j] = g_i
            gates[t, n, H + j] = g_f
            gates[t, n, 2 * H + j] = g_g
            gates[t, n, 3 * H + j] = g_o
        grid.sync()


@cuda.jit(cache=True)
def _backward(dy, col0, gates, c_all, whh, peep, lengths, reverse, max_len, da, gcol0,
              dabuf, dpeep_n):
    """BPTT.  dabuf (2, N, 4H) zeros: the gate gradients of the later step
    (for the recurrent product W_hh^T da) and the current one; dpeep_n
    (N, 3, H) float64 zeros: peephole gradients per sequence."""
    T, N, G = gates.shape
    H = G // 4
    U = (H + cuda.gridDim.x - 1) // cuda.gridDim.x
    j0 = cuda.blockIdx.x * U
    nu = max(0, min(H, j0 + U) - j0)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    grid = cuda.cg.this_grid()
    for p in range(tid, N * nu, nt):
        n = p // nu
        j = j0 + p % nu
        for t in range(lengths[n], T):
            for g in range(4):
                da[t, n, gcol0 + g * H + j] = 0.0
    dc = cuda.local.array(_PER_THREAD, np.float64)
    for q in range(_PER_THREAD):
        dc[q] = 0.0
    for s in range(max_len - 1, -1, -1):
        later = dabuf[(s + 1) % 2]  # zero rows for sequences not started yet
        here = dabuf[s % 2]
        for q in range(_PER_THREAD):
            p = tid + q * nt
            if p >= N * nu:
                break
            n = p // nu
            j = j0 + p % nu
            L = lengths[n]
            if s >= L:
                continue
            if reverse:
                t = L - 1 - s
                has_prev = t + 1 < L
                tp = min(t + 1, T - 1)
            else:
                t = s
                has_prev = t > 0
                tp = max(t - 1, 0)
            dh_rec = 0.0
            if s < L - 1:
                for g in range(4):
                    for i in range(H):
                        dh_rec += whh[g * H + i, j] * later[n, g * H + i]
            g_i = np.float64(gates[t, n, j])
            g_f = np.float64(gates[t, n, H + j])
            g_g = np.float64(gates[t, n, 2 * H + j])
            g_o = np.float64(gates[t, n, 3 * H + j])
            cn = np.float64(c_all[t, n, j])
            cp = np.float64(c_all[tp, n, j]) if has_prev else 0.0
            tc = _tanh(cn)
            dh = dy[t, n, col0 + j] + dh_rec
            d_o = dh * tc * g_o * (1.0 - g_o)
            dcq = dc[q] + dh * g_o * (1.0 - tc * tc) + d_o * peep[2, j]
            d_i = dcq * g_g * g_i * (1.0 - g_i)
            d_g = dcq * g_i * (1.0 - g_g * g_g)
            d_f = dcq * cp * g_f * (1.0 - g_f) if has_prev else 0.0
            if has_prev:
                dpeep_n[n, 0, j] += d_i * cp
                dpeep_n[n, 1, j] += d_f * cp
            dpeep_n[n, 2, j] += d_o * cn
            dc[q] = dcq * g_f + d_i * peep[0, j] + d_f * peep[1, j]
            here[n, j] = d_i
            here[n, H + j] = d_f
            here[n, 2 * H + j] = d_g
            here[n, 3 * H + j] = d_o
            da[t, n, gcol0 + j] = d_i
            da[t, n, gcol0 + H + j] = d_f
            da[t, n, gcol0 + 2 * H + j] = d_g
            da[t, n, gcol0 + 3 * H + j] = d_o
        grid.sync()


@cuda.jit(cache=True)
def _sum_peep(dpeep_n, dpeep):
    """dpeep[r, j] += sum over n of dpeep_n[n, r, j], n in order."""
    r = cuda.blockIdx.x
    for j in range(cuda.threadIdx.x, dpeep.shape[1], cuda.blockDim.x):
        acc = 0.0
        for n in range(dpeep_n.shape[0]):
            acc += dpeep_n[n, r, j]
        dpeep[r, j] += acc


# (sequence, unit) pairs per thread: a block of 256 threads covers 1024 of
# them, so blocks_for() gives each block at most that many
_PER_THREAD = 4


def blocks_for(N, H, threads, sim, resident=None):
    """Blocks for the persistent kernels: one per group of units such that a
    thread owns at most _PER_THREAD (sequence, unit) pairs.  A grid sync needs
    every block resident at once: ``resident`` is that limit (the compiled
    kernel's max_cooperative_grid_blocks); one block under the simulator."""
    if sim:
        return 1
    per_block = threads * _PER_THREAD
    units = max(1, per_block // max(N, 1))
    blocks = -(-H // units)
    if N * -(-H // blocks) > per_block or (resident is not None and blocks > resident):
        raise ValueError(f"a batch of N = {N} sequences with H = {H} units is too large for "
                         f"one persistent launch on this GPU; use smaller batches")
    return blocks


def threads_for(sim):
    return 4 if sim else 256


def _launch(kernel, N, H, sim, stream, args):
    """Launch a grid-synchronising kernel with as many blocks as it needs,
    checked against what the GPU can hold at once (Numba launches it
    cooperatively)."""
    nt = threads_for(sim)
    if sim:
        # one block (see blocks_for): enough threads for every (sequence, unit) pair
        kernel[1, max(nt, -(-N * H // _PER_THREAD)), stream](*args)
        return
    spec = kernel.specialize(*args)
    compiled = next(iter(spec.overloads.values()))
    blocks = blocks_for(N, H, nt, sim, compiled.max_cooperative_grid_blocks(nt))
    spec[blocks, nt, stream](*args)


def lstm_forward_dir(gx, gcol0, whh, peep, lengths, reverse, y, col0, c_all, gates,
                     stream=0, sim=False):
    """As ``lstm_cpu.lstm_forward_dir``, on device arrays (lengths on the host)."""
    N = gx.shape[1]
    H = whh.shape[1]
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    max_len = int(lengths.max()) if lengths.size else 0
    hbuf = cuda.to_device(np.zeros((2, N, H), whh.dtype), stream=stream)
    _launch(_forward, N, H, sim, stream,
            (gx, gcol0, whh, peep, cuda.to_device(lengths, stream=stream), reverse, max_len,
             y, col0, c_all, gates, hbuf))


def lstm_backward_dir(dy, col0, gates, c_all, whh, peep, lengths, reverse, da, gcol0, dpeep,
                      stream=0, sim=False):
    """As ``lstm_cpu.lstm_backward_dir``, on device arrays (lengths on the
    host), except that it takes ``whh`` (4H, H) itself rather than its
    transpose: the kernel reads it column-wise."""
    T, N, G = gates.shape
    H = G // 4
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    max_len = int(lengths.max()) if lengths.size else 0
    dabuf = cuda.to_device(np.zeros((2, N, G), gates.dtype), stream=stream)
    dpeep_n = cuda.to_device(np.zeros((N, 3, H), np.float64), stream=stream)
    _launch(_backward, N, H, sim, stream,
            (dy, col0, gates, c_all, whh, peep, cuda.to_device(lengths, stream=stream), reverse,
             max_len, da, gcol0, dabuf, dpeep_n))
    _sum_peep[3, min(threads_for(sim), 256), stream](dpeep_n, dpeep)
