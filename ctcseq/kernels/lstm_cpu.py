"""CPU kernels for one direction of a (peephole) LSTM layer: the time loop.

The input projection of all frames and the weight gradients are single large
matrix products done by the caller (:mod:`ctcseq.nn`); what lives here is the
part that has to be sequential in time: per step, one BLAS product with the
recurrent weights (``np.dot``, which Numba routes to SciPy's BLAS) followed by
the gate arithmetic, fused per sequence into a few vectorised passes over its
H units.  The kernels release the GIL so the two directions of a layer can
run on two threads.

All functions take and fill preallocated arrays (no return values), so a
``lstm_cuda.py`` with the same names and signatures can sit beside this
module.  An array shared by both directions is followed in the argument list
by the first column this direction uses in it.  Conventions shared by every
kernel:

* gate order is torch's (i, f, g, o): columns ``[0:H]``, ``[H:2H]``,
  ``[2H:3H]``, ``[3H:4H]`` of every 4H-wide array;
* a sequence n of length ``L = lengths[n]`` is active at step s iff
  ``s < L``; the frame it processes at step s is ``t = s`` forward and
  ``t = L - 1 - s`` in reverse, so the reverse direction starts at each
  sequence's own last valid frame (as torch's packed sequences do);
* outputs that later matrix products read (``y``, ``da``) are set to exact
  zeros at frames ``t >= L``; the caches are left untouched there;
* the gate nonlinearities and the cell state are computed in float64 for
  float32 and float64 arrays alike; the matrix products and the stored
  results (gates, gate gradients) use the arrays' dtype.

:func:`lstm_infer_steps` is the inference forward (no caches, gate
arithmetic in the arrays' dtype); see the section "inference forward" below.

Of ``fastmath`` only ``contract`` is used: it lets LLVM fuse ``a * b + c``
into one FMA with a single rounding, which changes results in the last bit
only (the float32 outputs of the benchmark were bit-identical) and makes
the forward time loop ~10% faster.  The flags that could change results materially
(``nnan``, ``ninf``, ``reassoc``, ``afn``...) are not: the float64 path must
match torch to 1e-10 and the finite-difference tests to ~1e-7.  The loops
vectorise without them because sigmoid/tanh use the branch-free
:func:`~ctcseq.kernels.vecmath.vexp` and ``error_model="numpy"`` removes the
division-by-zero checks.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload
from numba.np.linalg import _BLAS

from .vecmath import vexp

_FASTMATH = {"contract"}

# Clamps keep vexp inside its valid range (<= 709); beyond them sigmoid and
# tanh are saturated to within 1e-304 of their limits.
_SIG_CLAMP = 700.0
_TANH_CLAMP = 350.0


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid(x):
    """Logistic function, relative error below 1e-14 in float64 for all finite x."""
    xc = min(max(x, -_SIG_CLAMP), _SIG_CLAMP)
    return 1.0 / (1.0 + vexp(-xc))


@njit(inline="always", cache=True, error_model="numpy")
def tanh(x):
    """tanh, absolute error below 3e-16 in float64 for all finite x."""
    ax = min(abs(x), _TANH_CLAMP)
    e = vexp(-2.0 * ax)
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0.0 else -t


# The per-frame cell updates below are split into several short loops, each
# writing one array: a single loop writing many arrays is not vectorised by
# LLVM (too many possible-aliasing checks), which made it 2-3x slower.

@njit(inline="always", cache=True, error_model="numpy", fastmath=_FASTMATH)
def _cell_forward_row(xr, a, g, cs, hs, pi, pf, po):
    """One frame of one sequence: gates from pre-activations, new c and h.

    xr (4H,): input projection; a (4H,): recurrent product; g (4H,):
    output, the activated gates (i, f, g, o); cs (H,) float64: c(t-1) on
    entry, c(t) on exit; hs (H,): output, h(t).
    """
    H = cs.shape[0]
    x_i, x_f, x_g, x_o = xr[:H], xr[H:2 * H], xr[2 * H:3 * H], xr[3 * H:]
    a_i, a_f, a_g, a_o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    g_i, g_f, g_g, g_o = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    for j in range(H):
        g_i[j] = sigmoid(x_i[j] + a_i[j] + pi[j] * cs[j])
    for j in range(H):
        g_f[j] = sigmoid(x_f[j] + a_f[j] + pf[j] * cs[j])
    for j in range(H):
        g_g[j] = tanh(x_g[j] + a_g[j])
    for j in range(H):
        cs[j] = g_f[j] * cs[j] + g_i[j] * g_g[j]
    for j in range(H):
        g_o[j] = sigmoid(x_o[j] + a_o[j] + po[j] * cs[j])
    for j in range(H):
        hs[j] = g_o[j] * tanh(cs[j])


@njit(inline="always", cache=True, error_model="numpy", fastmath=_FASTMATH)
def _cell_backward_row(dyr, dhr, g, cn, cp, has_prev, pi, pf, po, dc, tc, dar, dp):
    """BPTT through one frame of one sequence.

    dyr (H,): output gradient; dhr (H,): gradient from the next step's
    recurrent product; g (4H,): activated gates; cn, cp (H,): c(t) and
    c(t-1) (cp ignored when ``not has_prev``: c(t-1) = 0); dc (H,) float64:
    dL/dc(t) from later steps on entry, dL/dc(t-1) on exit; tc (H,)
    float64: scratch; dar (4H,): output, pre-activation gradients; dp (3, H)
    float64: peephole gradients, accumulated.
    """
    H = dc.shape[0]
    g_i, g_f, g_g, g_o = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    d_i, d_f, d_g, d_o = dar[:H], dar[H:2 * H], dar[2 * H:3 * H], dar[3 * H:]
    dp_i, dp_f, dp_o = dp[0], dp[1], dp[2]
    for j in range(H):
        tc[j] = tanh(np.float64(cn[j]))
    for j in range(H):
        d_o[j] = (dyr[j] + np.float64(dhr[j])) * tc[j] * g_o[j] * (1.0 - g_o[j])
    for j in range(H):
        dh = dyr[j] + np.float64(dhr[j])
        dc[j] += dh * g_o[j] * (1.0 - tc[j] * tc[j]) + d_o[j] * po[j]
    for j in range(H):
        d_i[j] = dc[j] * g_g[j] * g_i[j] * (1.0 - g_i[j])
    for j in range(H):
        d_g[j] = dc[j] * g_i[j] * (1.0 - np.float64(g_g[j]) * g_g[j])
    if has_prev:
        for j in range(H):
            d_f[j] = dc[j] * cp[j] * g_f[j] * (1.0 - g_f[j])
        for j in range(H):
            dp_i[j] += d_i[j] * cp[j]
        for j in range(H):
            dp_f[j] += d_f[j] * cp[j]
    else:
        d_f[:] = 0.0
    for j in range(H):
        dc[j] = dc[j] * g_f[j] + d_i[j] * pi[j] + d_f[j] * pf[j]
    for j in range(H):
        dp_o[j] += d_o[j] * cn[j]


@njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def lstm_forward_dir(gx, gcol0, whh, peep, lengths, reverse, y, col0, c_all, gates):
    """Run one direction of an LSTM layer over a padded batch.

    Releases the GIL, so the two directions can run on two Python threads.

    Parameters
    ----------
    gx : ndarray (T, N, W), C-contiguous, W >= gcol0 + 4H
        Input projections ``x @ W_ih.T + b_ih + b_hh`` of every frame, in
        columns ``gcol0:gcol0+4H`` (so both directions may share one
        array; :mod:`ctcseq.nn` passes one per direction and ``gcol0 = 0``).
    gcol0 : int
        First column of this direction in ``gx`` (0 or 4H).
    whh : ndarray (4H, H), C-contiguous
        Recurrent weights ``W_hh``.
    peep : ndarray (3, H)
        Peephole weights of the i, f (both see c(t-1)) and o (sees c(t))
        gates; zeros for a plain LSTM.
    lengths : int64 ndarray (N,)
        Valid frames per sequence, each in [0, T].
    reverse : bool
        Process each sequence from its last valid frame back to frame 0.
    y : ndarray (T, N, W), W >= col0 + H
        Output: ``y[t, n, col0:col0+H] = h(t)``, set to exactly zero for
        ``t >= lengths[n]``.
    col0 : int
        First column of this direction's H outputs in ``y`` (0 or H).
    c_all : ndarray (T, N, H)
        Output (cache for backward): cell states c(t); frames past each
        length are left untouched (never read by the backward kernel).
    gates : ndarray (T, N, 4H)
        Output (cache for backward): activated gates (i, f, g, o); frames
        past each length are left untouched.
    """
    T, N = gx.shape[0], gx.shape[1]
    H = whh.shape[1]
    max_len = 0
    for n in range(N):
        max_len = max(max_len, lengths[n])
    h = np.zeros((N, H), whh.dtype)
    h_t = np.zeros((H, N), whh.dtype)  # h transposed, for the product below
    c = np.zeros((N, H), np.float64)
    pi, pf, po = peep[0], peep[1], peep[2]
    for n in range(N):
        for t in range(lengths[n], T):
            y[t, n, col0:col0 + H] = 0.0
    for s in range(max_len):
        # W_hh @ h.T (4H x H times H x N) is markedly faster in OpenBLAS than
        # h @ W_hh.T for small N; transposing the result back is cheap.
        gh = np.ascontiguousarray(np.dot(whh, h_t).T)  # (N, 4H); finished rows unused
        for n in range(N):
            L = lengths[n]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            _cell_forward_row(gx[t, n, gcol0:gcol0 + 4 * H], gh[n], gates[t, n], c[n], h[n],
                              pi, pf, po)
            y[t, n, col0:col0 + H] = h[n]
            c_all[t, n] = c[n]
            h_t[:, n] = h[n]


@njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def lstm_backward_dir(dy, col0, gates, c_all, whh_t, peep, lengths, reverse, da, gcol0, dpeep):
    """Backpropagate through time for one direction of an LSTM layer.

    Releases the GIL, so the two directions can run on two Python threads.

    Parameters
    ----------
    dy : ndarray (T, N, W), C-contiguous
        Gradient of the loss with respect to the layer output; this
        direction reads columns ``col0:col0+H``.  Frames past each length
        are ignored.
    col0 : int
        First column of this direction in ``dy``.
    gates, c_all : ndarray (T, N, 4H), (T, N, H)
        The caches filled by :func:`lstm_forward_dir`.
    whh_t : ndarray (H, 4H), C-contiguous
        Transposed recurrent weights ``W_hh.T``.
    peep : ndarray (3, H)
        Peephole weights (zeros for a plain LSTM).
    lengths : int64 ndarray (N,)
    reverse : bool
    da : ndarray (T, N, W), C-contiguous, W >= gcol0 + 4H
        Output, in columns ``gcol0:gcol0+4H``: gradient with respect to the
        gate pre-activations (i, f, g, o); set to exactly zero past each
        length.  The weight and input
        gradients follow from it by matrix products (done by the caller).
    gcol0 : int
        First column of this direction in ``da`` (0 or 4H).
    dpeep : float64 ndarray (3, H)
        Output (accumulated into): peephole weight gradients.
    """
    T, N, G = gates.shape
    H = G // 4
    max_len = 0
    for n in range(N):
        max_len = max(max_len, lengths[n])
    dc = np.zeros((N, H), np.float64)
    # Rows of sequences not yet started (going backwards) stay zero, so
    # they contribute nothing to the recurrent product.
    da_step = np.zeros((N, G), whh_t.dtype)
    dh_rec = np.zeros((N, H), whh_t.dtype)
    tc = np.empty(H, np.float64)
    pi, pf, po = peep[0], peep[1], peep[2]
    for n in range(N):
        for t in range(lengths[n], T):
            da[t, n, gcol0:gcol0 + G] = 0.0
    for s in range(max_len - 1, -1, -1):
        if s < max_len - 1:
            # (W_hh.T @ da_step.T).T: the faster orientation, as in the forward pass
            dh_rec = np.ascontiguousarray(
                np.dot(whh_t, np.ascontiguousarray(da_step.T)).T)  # (N, H)
        for n in range(N):
            L = lengths[n]
            if s >= L:
                continue
            if reverse:
                t = L - 1 - s
                tp = min(t + 1, T - 1)
                has_prev = t + 1 < L
            else:
                t = s
                tp = max(t - 1, 0)
                has_prev = t > 0
            _cell_backward_row(dy[t, n, col0:col0 + H], dh_rec[n], gates[t, n], c_all[t, n],
                               c_all[tp, n], has_prev, pi, pf, po, dc[n], tc, da_step[n], dpeep)
            da[t, n, gcol0:gcol0 + G] = da_step[n]


# -- inference forward (no caches) --------------------------------------------
#
# The training kernel above keeps every step's gates and cell states for
# BPTT and computes the gate nonlinearities in float64.  Inference needs
# neither: the kernels below keep only h and c of the current step and, for
# float32 arrays, evaluate the gates in float32 with a float32 exp (half the
# polynomial of vexp, twice the SIMD lanes; float32 outputs then differ
# from the training forward's by ~1e-7, see tests/test_infer.py).  For
# float64 arrays they use the float64 sigmoid/tanh above, so float64
# inference matches the training forward to a few ulp.  No fastmath flag
# beyond the module's ``contract``.

_LOG2E_32 = np.float32(1.4426950408889634)
_LN2_HI_32 = np.float32(0.693145751953125)  # 12 significant bits: n * hi is exact
_LN2_LO_32 = np.float32(1.4286068203094173e-06)
_ROUND_MAGIC_32 = np.float32(12582912.0)  # 1.5 * 2**23
_ROUND_MAGIC_BITS_32 = np.float32(12582912.0).view(np.int32)
# Clamps keep 2**k a normal float32 (k >= -126) and exp finite; sigmoid and
# tanh are saturated to within 2e-35 of their limits beyond them.
_SIG_CLAMP_32 = np.float32(80.0)
_TANH_CLAMP_32 = np.float32(40.0)
_ONE_32 = np.float32(1.0)
_TWO_32 = np.float32(2.0)
_ZERO_32 = np.float32(0.0)
_C2_32, _C3_32, _C4_32 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)
_C5_32, _C6_32, _C7_32 = np.float32(1 / 120), np.float32(1 / 720), np.float32(1 / 5040)


@njit(inline="always", cache=True, error_model="numpy")
def vexp32(x):
    """exp(x) in float32 for float32 x in [-87, 88]; relative error below 2e-7.

    Branch-free like :func:`~ctcseq.kernels.vecmath.vexp`, so loops of it
    vectorise (16 lanes with AVX-512).  Callers clamp x first.
    """
    shifted = x * _LOG2E_32 + _ROUND_MAGIC_32
    k = np.float32(shifted).view(np.int32) - _ROUND_MAGIC_BITS_32
    n = shifted - _ROUND_MAGIC_32
    r = (x - n * _LN2_HI_32) - n * _LN2_LO_32  # |r| <= ln2 / 2
    # Taylor series to r**7: truncation error < 5e-9 on |r| <= 0.347
    p = _C7_32
    p = p * r + _C6_32
    p = p * r + _C5_32
    p = p * r + _C4_32
    p = p * r + _C3_32
    p = p * r + _C2_32
    p = p * r + _ONE_32
    p = p * r + _ONE_32
    scale = np.int32((k + 127) << 23).view(np.float32)
    return p * scale


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid32(x):
    """Logistic function in float32; absolute error below 3e-7 for all finite x."""
    xc = min(max(x, -_SIG_CLAMP_32), _SIG_CLAMP_32)
    return _ONE_32 / (_ONE_32 + vexp32(-xc))


@njit(inline="always", cache=True, error_model="numpy")
def tanh32(x):
    """tanh in float32; absolute error below 3e-7 for all finite x."""
    ax = min(abs(x), _TANH_CLAMP_32)
    e = vexp32(-_TWO_32 * ax)
    t = (_ONE_32 - e) / (_ONE_32 + e)
    return t if x >= _ZERO_32 else -t


def _act_sigmoid(x):
    """Sigmoid in the precision of x (float32 or float64); Numba only."""
    raise NotImplementedError


def _act_tanh(x):
    """tanh in the precision of x (float32 or float64); Numba only."""
    raise NotImplementedError


@overload(_act_sigmoid)
def _ov_act_sigmoid(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: sigmoid32(x)
    return lambda x: sigmoid(x)


@overload(_act_tanh)
def _ov_act_tanh(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: tanh32(x)
    return lambda x: tanh(x)


# Default column chunk of the recurrent product in the inference kernel (see
# lstm_infer_steps).
INFER_CHUNK = 64


@njit(cache=True, nogil=True)
def pack_recurrent(whh, bias, cw, out):
    """Lay ``W_hh.T`` and the biases out in the chunks :func:`lstm_infer_steps` reads.

    whh (4H, H); bias (4H,): ``b_ih + b_hh``; cw: chunk width; out
    (4H * (H + 1),), same dtype: chunk (g, c), the ``w = min(cw, H - c cw)``
    output columns from ``q = g H + c cw`` on, is an (H + 1, w)
    C-contiguous block at offset ``q (H + 1)``: ``W_hh[q:q+w].T`` over
    ``bias[q:q+w]``, so that the product with ``[h, 1]`` adds the biases.
    """
    H = whh.shape[1]
    for g in range(4):
        for c0 in range(0, H, cw):
            q = g * H + c0
            w = min(cw, H - c0)
            blk = out[q * (H + 1):(q + w) * (H + 1)].reshape(H + 1, w)
            for k in range(H):
                for jj in range(w):
                    blk[k, jj] = whh[q + jj, k]
            for jj in range(w):
                blk[H, jj] = bias[q + jj]


def _gemm_acc(m, n, k, a, lda, b, ldb, c, ldc, one):
    """Column-major ``C (m, n) += A (m, k) @ B (k, n)`` through BLAS; Numba only.

    a, b, c: arrays whose first element is the matrix's first element,
    leading dimensions lda, ldb, ldc; one: a 1-element array holding 1 in
    their dtype (alpha and beta, made once by the caller rather than on
    every call of this hot loop).  A row-major ``C += A @ B`` is the
    column-major ``C.T += B.T @ A.T``: the same call with the operands
    swapped (see :func:`lstm_infer_steps`).
    """
    raise NotImplementedError


@overload(_gemm_acc)
def _ov_gemm_acc(m, n, k, a, lda, b, ldb, c, ldc, one):
    # Numba's own entry to SciPy's BLAS (what np.dot calls), reached directly
    # for what np.dot cannot do: beta = 1 and an output with a row stride.
    # The function is named by symbol, so cached code stays valid.
    gemm = _BLAS().numba_xxgemm(a.dtype)
    kind = ord("s" if a.dtype == types.float32 else "d")

    def impl(m, n, k, a, lda, b, ldb, c, ldc, one):
        gemm(kind, ord("N"), ord("N"), m, n, k, one.ctypes, a.ctypes, lda,
             b.ctypes, ldb, one.ctypes, c.ctypes, ldc)
    return impl


@njit(cache=True, error_model="numpy", nogil=True, fastmath=_FASTMATH)
def lstm_infer_steps(gx, wpk, cw, peep, lengths, reverse, s0, s1, y, col0, h, c):
    """Inference forward of one direction of an LSTM layer, steps s0 to s1 - 1.

    Same equations, gate order, peepholes and length handling as
    :func:`lstm_forward_dir`, but nothing is kept for backward: the state
    carried from one call to the next is h and c of the current step, and
    the caller passes the input projections of only the steps of this call,
    so a whole pass over T steps needs O(N H) memory besides ``y``.  Gate
    arithmetic and the cell state use the arrays' dtype (float32 with
    :func:`sigmoid32`/:func:`tanh32`, float64 with :func:`sigmoid`/
    :func:`tanh`).  Releases the GIL; writes only ``y[..., col0:col0+H]``,
    ``gx`` and the state ``h``, ``c``.

    Per step, the recurrent product ``[h, 1] @ [W_hh.T; b]`` is added by
    BLAS (beta = 1) onto the input projections of that step in ``gx``,
    one product per chunk of at most ``cw`` columns of one gate against
    weights packed once per call (:func:`pack_recurrent`); then each
    sequence's gates lie in one row of ``gx`` and its H units are updated
    in two vectorised passes.  Products this small take OpenBLAS's
    small-matrix path, which does not repack the weights on every call (one
    product of all 4H columns does, and is 3x slower; against chunks of 64
    columns, 32 and 128 are 19% and 39% slower at N = 16, and one product
    per gate is 25-35% slower at N = 1 and 2).  For 300 steps at H = 256
    and N = 16, one thread: 10.9 ms of products (about 230 GFLOP/s) and 1.2
    ms of gate arithmetic, against 15.4 ms when the products went to a
    scratch array (``np.dot`` cannot accumulate) and the gate passes ran
    per chunk.

    Parameters
    ----------
    gx : ndarray (R, N, 4H), C-contiguous
        Input projections ``x @ W_ih.T`` (no biases) of a window of steps:
        step s of every sequence reads row ``s - s0`` (forward) or
        ``s1 - 1 - s`` (reverse) of it, i.e. frame ``t`` of sequence n is
        row ``t - s0``, or ``t - (lengths[n] - s1)`` in reverse.  R >= s1 - s0.
        Overwritten with the gates' pre-activations.
    wpk : ndarray (4H * (H + 1),)
        ``W_hh`` and the biases, packed by :func:`pack_recurrent`.
    cw : int
        The chunk width ``wpk`` was packed with (``INFER_CHUNK``).
    peep : ndarray (3, H)
        Peephole weights of the i, f (both see c(t-1)) and o (sees c(t))
        gates; zeros for a plain LSTM.
    lengths : int64 ndarray (N,)
        Valid frames per sequence, each in [0, T].
    reverse : bool
        Step s processes frame ``t = lengths[n] - 1 - s`` (else ``t = s``).
    s0, s1 : int
        Steps to run; sequence n takes part in step s iff ``s < lengths[n]``.
    y : ndarray (T, N, W), W >= col0 + H
        Output: ``y[t, n, col0:col0+H] = h(t)`` for the frames of these
        steps; other frames untouched (see :func:`zero_past_lengths`).
    col0 : int
        First column of this direction's H outputs in ``y``.
    h : ndarray (N, H + 1), C-contiguous
        ``[h, 1]``: h of the last step (zeros before step 0), then a column
        of ones (which adds the biases).  Updated.
    c : ndarray (N, H)
        c of the last step; zeros before step 0.  Updated.
    """
    N = gx.shape[1]
    H = c.shape[1]
    G = 4 * H
    # BLAS gets raw pointers and leading dimensions: check what they assume
    if (gx.shape[2] != G or h.shape[0] != N or h.shape[1] != H + 1
            or not h.flags.c_contiguous or wpk.shape[0] < G * (H + 1)
            or not wpk.flags.c_contiguous or gx.shape[0] < s1 - s0):
        raise ValueError("lstm_infer_steps: gx, h or wpk has the wrong shape or layout")
    pi, pf, po = peep[0], peep[1], peep[2]
    flat = gx.reshape(-1)
    # Sequences in groups small enough for OpenBLAS's small-matrix path
    # (m n k <= 1e6 on AVX-512): beyond it each product repacks its weights
    # and runs ~25% slower per sequence (N = 64 or 80 at H = 250).
    groups = -(-N // max(8, min(48, 1000000 // (cw * (H + 1)))))
    ng = -(-N // groups)
    one = np.ones(1, gx.dtype)
    for s in range(s0, s1):
        r = s1 - 1 - s if reverse else s - s0
        # Row-major gx[r][n0:n1, q:q+w] += h[n0:n1] (., H+1) @ chunk (H+1, w)
        # is, column-major, C (w, .) += chunk^T (w, H+1) @ h[n0:n1]^T.
        for n0 in range(0, N, ng):
            for g in range(4):
                for c0 in range(0, H, cw):
                    q = g * H + c0
                    w = min(cw, H - c0)
                    _gemm_acc(w, min(ng, N - n0), H + 1, wpk[q * (H + 1):], w,
                              h[n0:], H + 1, flat[(r * N + n0) * G + q:], G, one)
        for n in range(N):
            L = lengths[n]
            if s >= L:
                continue
            t = L - 1 - s if reverse else s
            a = gx[r, n]
            # one view per gate: indexed by the loop counter alone, loads stay
            # contiguous (a[H + j] compiled to gathers, the index not being
            # provably non-negative)
            ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
            cs = c[n]
            hn = h[n]
            # two passes, each reading at most eight arrays: LLVM's limit for
            # the run-time alias checks that let it vectorise a loop
            for j in range(H):
                i = _act_sigmoid(ai[j] + pi[j] * cs[j])
                f = _act_sigmoid(af[j] + pf[j] * cs[j])
                g = _act_tanh(ag[j])
                cs[j] = f * cs[j] + i * g
            yr = y[t, n, col0:col0 + H]
            for j in range(H):
                o = _act_sigmoid(ao[j] + po[j] * cs[j])
                v = o * _act_tanh(cs[j])
                hn[j] = v
                # written here, not by a slice assignment afterwards, which
                # compiled to a generic strided copy: 0.6 ms of the 12.6 ms of
                # 300 steps at H = 256, N = 16
                yr[j] = v


@njit(cache=True, nogil=True)
def gather_frames(x, base, out):
    """``out[r, n] = x[base[n] + r, n]``, zeros where that frame is outside [0, T).

    x (T, N, D); base int64 (N,); out (R, N, D).  Builds the reverse
    direction's input window when sequences of different lengths end at
    different frames.
    """
    T, D = x.shape[0], x.shape[2]
    R, N = out.shape[0], out.shape[1]
    for r in range(R):
        for n in range(N):
            t = base[n] + r
            o = out[r, n]
            if 0 <= t < T:
                xr = x[t, n]
                for j in range(D):  # a loop: row slice assignment is a slow generic copy
                    o[j] = xr[j]
            else:
                o[:] = 0.0


@njit(cache=True, nogil=True)
def zero_past_lengths(y, lengths):
    """Set ``y[t, n] = 0`` for every ``t >= lengths[n]``; y (T, N, W)."""
    T, N = y.shape[0], y.shape[1]
    for n in range(N):
        for t in range(lengths[n], T):
            y[t, n] = 0.0
