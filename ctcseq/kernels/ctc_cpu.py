"""CTC forward-backward on the CPU (Numba), one sequence per ``prange`` step.

State space: the extended label sequence l' = (blank, y1, blank, y2, ...,
blank) of length L = 2S + 1.  alpha[t, s] is the log-probability of all
prefixes of length t + 1 ending in state s, emission at t included.  The
gradient of -log P with respect to log_probs[t, c] is minus the posterior
occupancy of class c at frame t, summed over the states labelled c.

Forward, in log space without a logaddexp per edge: each step subtracts the
row maximum M once and takes one vectorised exp and one vectorised log per
state (``vecmath``).  A state whose incoming scaled sum falls below ``_TINY``
(all its inputs > ~645 nats below the row maximum) is recomputed with an
exact logsumexp, so no state is lost to underflow however extreme the inputs.

Backward, on posterior occupancies rather than betas: with E[t, s] = exp(
alpha[t-1, s] - M) kept from the forward and tot[t, s'] the sum of E over the
predecessors of s', the occupancy of s at t-1 is
E[t, s] * sum over successors s' of occ[t, s'] / tot[t, s'],
which needs no exp or log at all.  Occupancies are probabilities, so what
underflows is below 1e-300 in absolute terms and can never grow back; states
whose tot fell below ``_TINY`` take their exact weights from alpha.

Only states on some complete path are visited: at frame t those that can be
reached from the start and can still reach the end (exact bands, repeats
included).  All arithmetic is in float64 whatever the input dtype.
"""
import math

import numpy as np
from numba import njit, prange

from .vecmath import vexp, vlog

_NEG_INF = -np.inf
# A sum of terms exp(x - M) that is >= _TINY has lost nothing that matters:
# terms that underflowed are < 3.3e-308, under 1e-27 of the sum.
_TINY = 1e-280

_JIT = dict(cache=True, error_model="numpy")


@njit(inline="always", **_JIT)
def _lse3(a, b, c):
    m = max(a, max(b, c))
    if m == _NEG_INF:
        return _NEG_INF
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


@njit(**_JIT)
def _extend(targets, off, S, blank, lab, skip, pre, suf):
    """Fill the extended labels, the skip mask (skip[s] = 1.0 when s-2 -> s is
    allowed: s is a label that differs from the label two states back; two
    trailing zeros let the backward pass read skip[s + 2]), and the fewest
    frames needed to be in state s counting from the start (pre) or to finish
    from it (suf), both including the frame in s.  Returns the fewest frames
    the whole target needs."""
    L = 2 * S + 1
    for s in range(L + 2):
        skip[s] = 0.0
    for s in range(L):
        lab[s] = blank
    for k in range(S):
        lab[2 * k + 1] = targets[off + k]
        if k > 0 and targets[off + k] != targets[off + k - 1]:
            skip[2 * k + 1] = 1.0
    pre[0] = 1
    if L > 1:
        pre[1] = 1
    for s in range(2, L):
        pre[s] = pre[s - 2] + 1 if skip[s] > 0.0 else pre[s - 1] + 1
    suf[L - 1] = 1
    if L > 1:
        suf[L - 2] = 1
    for s in range(L - 3, -1, -1):
        suf[s] = suf[s + 2] + 1 if skip[s + 2] > 0.0 else suf[s + 1] + 1
    return 0 if L == 1 else min(pre[L - 1], pre[L - 2])  # empty target: no frame needed


@njit(**_JIT)
def _bands(pre, suf, L, Tn, lo, hi):
    """lo[t], hi[t]: the states [lo, hi) on some complete path at frame t.
    pre is nondecreasing and suf nonincreasing in s, so each is a range."""
    a = 0
    b = 0
    for t in range(Tn):
        while b < L and pre[b] <= t + 1:
            b += 1
        while a < L and suf[a] > Tn - t:
            a += 1
        lo[t] = a
        hi[t] = b


@njit(**_JIT)
def _row_has_nan(log_probs, t, n):
    bad = 0
    for c in range(log_probs.shape[2]):
        x = log_probs[t, n, c]
        bad += x != x
    return bad > 0


@njit(**_JIT)
def _has_nan(log_probs, n, Tn):
    for t in range(Tn):
        if _row_has_nan(log_probs, t, n):
            return True
    return False


# nnan lets LLVM vectorise the max reduction; rows never hold NaN (inputs
# with NaN are screened out before the recursions run).
@njit(fastmath={"nnan", "nsz"}, **_JIT)
def _row_max(row, lo, hi):
    m = _NEG_INF
    for s in range(lo, hi):
        if row[s] > m:
            m = row[s]
    return m


@njit(**_JIT)
def _forward(log_probs, n, Tn, lab, skip, L, lo, hi, alpha, E, emit):
    """Fill alpha[:Tn, :L] (-inf outside each frame's band) and E (see the
    module docstring; E[t, s + 2] holds the scaled alpha[t - 1, s]).
    Returns log P, or NaN as soon as a frame holds a NaN (each frame is
    screened just before its gather, while it is in cache)."""
    if _row_has_nan(log_probs, 0, n):
        return np.nan
    for s in range(L):
        alpha[0, s] = _NEG_INF
    for s in range(lo[0], hi[0]):
        alpha[0, s] = log_probs[0, n, lab[s]]
    for t in range(1, Tn):
        prev = alpha[t - 1]
        cur = alpha[t]
        ep = E[t]
        a, b = lo[t], hi[t]
        M = _row_max(prev, lo[t - 1], hi[t - 1])
        if M == _NEG_INF:
            for tt in range(t, Tn):
                for s in range(L):
                    alpha[tt, s] = _NEG_INF
            return _NEG_INF
        if _row_has_nan(log_probs, t, n):
            return np.nan
        for s in range(a, b):  # a gather: kept out of the vectorised loops
            emit[s] = log_probs[t, n, lab[s]]
        ep[0] = 0.0
        ep[1] = 0.0
        for s in range(max(a - 2, 0), b):
            ep[s + 2] = vexp(prev[s] - M)
        n_tiny = 0
        for s in range(a, b):
            tot = ep[s + 2] + ep[s + 1] + skip[s] * ep[s]
            n_tiny += tot < _TINY
            cur[s] = M + vlog(max(tot, _TINY)) + emit[s]
        if n_tiny:
            for s in range(a, b):
                if ep[s + 2] + ep[s + 1] + skip[s] * ep[s] < _TINY:
                    a1 = prev[s - 1] if s >= 1 else _NEG_INF
                    a2 = prev[s - 2] if skip[s] > 0.0 else _NEG_INF
                    cur[s] = _lse3(prev[s], a1, a2) + emit[s]
        for s in range(a):
            cur[s] = _NEG_INF
        for s in range(b, L):
            cur[s] = _NEG_INF
    last = alpha[Tn - 1]
    if L > 1:
        return _lse3(last[L - 1], last[L - 2], _NEG_INF)
    return last[0]


@njit(**_JIT)
def _backward_grad(log_probs, n, Tn, lab, skip, L, lo, hi, alpha, E, logp,
                   blank, scale, grad, occ, nocc, q):
    """Propagate occupancies from frame Tn - 1 down to 0 and add
    -scale * occupancy into grad[t, n, :], zeroing each row just before.
    occ, nocc: (L,) work rows; q: (L + 2,)."""
    for s in range(L):
        occ[s] = 0.0
    occ[L - 1] = math.exp(alpha[Tn - 1, L - 1] - logp)
    if L > 1:
        occ[L - 2] = math.exp(alpha[Tn - 1, L - 2] - logp)
    for t in range(Tn - 1, -1, -1):
        a, b = lo[t], hi[t]
        for c in range(grad.shape[2]):
            grad[t, n, c] = 0.0
        blank_occ = 0.0
        for s in range(a + (a & 1), b, 2):
            blank_occ += occ[s]
        grad[t, n, blank] -= scale * blank_occ
        for s in range(a | 1, b, 2):  # labels: a scatter
            grad[t, n, lab[s]] -= scale * occ[s]
        if t == 0:
            break
        # q(s') = occ(s') / tot(s'): the share of s' that each predecessor s
        # receives in proportion to E[t, s]; 0 where tot underflowed (exact
        # weights below) and just outside the band.
        ep = E[t]
        pa, pb = lo[t - 1], hi[t - 1]
        n_tiny = 0
        for s in range(a, b):
            tot = ep[s + 2] + ep[s + 1] + skip[s] * ep[s]
            ok = tot >= _TINY
            n_tiny += (not ok) and occ[s] > 0.0
            q[s] = occ[s] / tot if ok else 0.0
        for s in range(pa, a):
            q[s] = 0.0
        q[b] = 0.0
        q[b + 1] = 0.0
        for s in range(pa, pb):
            nocc[s] = ep[s + 2] * (q[s] + q[s + 1] + skip[s + 2] * q[s + 2])
        if n_tiny:
            prev = alpha[t - 1]
            for s in range(a, b):
                tot = ep[s + 2] + ep[s + 1] + skip[s] * ep[s]
                if tot < _TINY and occ[s] > 0.0:
                    log_in = alpha[t, s] - log_probs[t, n, lab[s]]
                    nocc[s] += occ[s] * math.exp(prev[s] - log_in)
                    if s >= 1:
                        nocc[s - 1] += occ[s] * math.exp(prev[s - 1] - log_in)
                    if skip[s] > 0.0:
                        nocc[s - 2] += occ[s] * math.exp(prev[s - 2] - log_in)
        occ, nocc = nocc, occ


@njit(parallel=True, **_JIT)
def ctc_forward_backward(log_probs, targets, target_offsets, input_lengths,
                         target_lengths, blank, grad_scale, nll, grad):
    """Negative log-likelihood per sequence and, if ``grad`` is not empty,
    its gradient with respect to ``log_probs``.

    log_probs : (T, N, C) float32/float64, any strides; frames at and past
        input_lengths[n] are never read.
    targets : 1-D int64, sequence n's labels at
        targets[target_offsets[n] : target_offsets[n] + target_lengths[n]].
    grad_scale : (N,) float64, weight of each sequence's -log P in the
        reduced loss.
    nll : (N,) float64 output; inf where the target is infeasible, NaN where
        a read frame holds NaN.
    grad : (T, N, C) output of log_probs' dtype, or an empty (0, 0, 0) array
        to skip the backward pass.  Every element is written: -scale times
        the occupancy on valid frames, 0 past input_lengths[n], NaN on valid
        frames of a sequence whose nll is NaN or inf.
    """
    N = log_probs.shape[1]
    want_grad = grad.shape[0] == log_probs.shape[0] and grad.size > 0
    for n in prange(N):
        Tn = input_lengths[n]
        S = target_lengths[n]
        L = 2 * S + 1
        lab = np.empty(L, np.int64)
        skip = np.empty(L + 2, np.float64)
        pre = np.empty(L, np.int64)
        suf = np.empty(L, np.int64)
        need = _extend(targets, target_offsets[n], S, blank, lab, skip, pre, suf)
        if Tn < need:
            logp = np.nan if _has_nan(log_probs, n, Tn) else _NEG_INF
        elif Tn == 0:
            logp = 0.0  # empty input, empty target
        else:
            lo = np.empty(Tn, np.int64)
            hi = np.empty(Tn, np.int64)
            _bands(pre, suf, L, Tn, lo, hi)
            alpha = np.empty((Tn, L), np.float64)
            E = np.empty((Tn, L + 2), np.float64)
            emit = np.empty(L, np.float64)
            logp = _forward(log_probs, n, Tn, lab, skip, L, lo, hi, alpha, E, emit)
            if want_grad and logp > _NEG_INF:
                occ = np.empty(L, np.float64)
                nocc = np.empty(L, np.float64)
                q = np.empty(L + 2, np.float64)
                _backward_grad(log_probs, n, Tn, lab, skip, L, lo, hi, alpha, E,
                               logp, blank, grad_scale[n], grad, occ, nocc, q)
        nll[n] = 0.0 - logp  # +0.0, not -0.0, for an empty target
        if want_grad:
            # the backward pass wrote rows t < Tn unless the loss is NaN or inf
            no_backward = not logp > _NEG_INF
            for t in range(grad.shape[0]):
                if t >= Tn or no_backward:
                    v = 0.0 if t >= Tn else np.nan
                    for c in range(grad.shape[2]):
                        grad[t, n, c] = v
