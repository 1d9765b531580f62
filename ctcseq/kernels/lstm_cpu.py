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
from numba import njit

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
