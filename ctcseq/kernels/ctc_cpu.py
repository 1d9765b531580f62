"""CTC forward-backward on the CPU (Numba), one sequence per ``prange`` step.

State space: the extended label sequence l' = (blank, y1, blank, y2, ...,
blank) of length L = 2S + 1.  alpha[t, s] is the log-probability of all
prefixes of length t + 1 ending in state s, emission at t included; beta_t(s)
is the log-probability of all suffixes leaving state s at t, emission at t
excluded, so alpha[t, s] + beta_t(s) - log P is the log-occupancy of s at t
and the gradient of -log P with respect to log_probs[t, c] is minus the sum of
occupancies of the states labelled c.

Speed without giving up log-space stability: each step subtracts the row
maximum M once, takes one vectorised exp per state and one vectorised log per
state (``vecmath``), instead of two exps and a log per state for a pairwise
logaddexp.  A state whose incoming scaled sum falls below ``_TINY`` (its
inputs are all > ~645 nats below the row maximum) is recomputed with an exact
local logsumexp, so no state is ever lost to underflow.  All arithmetic is in
float64 whatever the input dtype.
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
def _extend(targets, off, S, blank, lab, skip):
    """Fill the extended labels and the skip mask (skip[s] = 1.0 when s-2 -> s
    is allowed: s is a label and differs from the label two states back).
    ``skip`` has two trailing zeros so the backward pass can read skip[s + 2].
    Returns the minimum number of frames the target needs."""
    L = 2 * S + 1
    need = S
    for s in range(L + 2):
        skip[s] = 0.0
    for s in range(L):
        lab[s] = blank
    for k in range(S):
        lab[2 * k + 1] = targets[off + k]
        if k > 0:
            if targets[off + k] == targets[off + k - 1]:
                need += 1
            else:
                skip[2 * k + 1] = 1.0
    return need


@njit(**_JIT)
def _has_nan(log_probs, n, Tn):
    C = log_probs.shape[2]
    for t in range(Tn):
        bad = 0
        for c in range(C):
            x = log_probs[t, n, c]
            bad += x != x
        if bad:
            return True
    return False


@njit(**_JIT)
def _row_max(row, L):
    m = _NEG_INF
    for s in range(L):
        if row[s] > m:
            m = row[s]
    return m


@njit(**_JIT)
def _forward(log_probs, n, Tn, lab, skip, L, alpha, emit, epad):
    """Fill alpha[:Tn, :L]; return log P (-inf when no path has mass)."""
    for s in range(L):
        alpha[0, s] = _NEG_INF
    alpha[0, 0] = log_probs[0, n, lab[0]]
    if L > 1:
        alpha[0, 1] = log_probs[0, n, lab[1]]
    epad[0] = 0.0
    epad[1] = 0.0
    for t in range(1, Tn):
        prev = alpha[t - 1]
        cur = alpha[t]
        M = _row_max(prev, L)
        if M == _NEG_INF:
            for tt in range(t, Tn):
                for s in range(L):
                    alpha[tt, s] = _NEG_INF
            return _NEG_INF
        for s in range(L):
            emit[s] = log_probs[t, n, lab[s]]
            epad[s + 2] = vexp(prev[s] - M)
        n_tiny = 0
        for s in range(L):
            tot = epad[s + 2] + epad[s + 1] + skip[s] * epad[s]
            n_tiny += tot < _TINY
            cur[s] = M + vlog(max(tot, _TINY)) + emit[s]
        if n_tiny:
            for s in range(L):
                if epad[s + 2] + epad[s + 1] + skip[s] * epad[s] < _TINY:
                    a1 = prev[s - 1] if s >= 1 else _NEG_INF
                    a2 = prev[s - 2] if skip[s] > 0.0 else _NEG_INF
                    cur[s] = _lse3(prev[s], a1, a2) + emit[s]
    last = alpha[Tn - 1]
    if L > 1:
        return _lse3(last[L - 1], last[L - 2], _NEG_INF)
    return last[0]


@njit(**_JIT)
def _backward_grad(log_probs, n, Tn, lab, skip, L, alpha, logp, scale,
                   grad, beta, nbeta, emit, epad, occ):
    """Run the beta recursion from Tn - 1 down to 0 and add
    -scale * occupancy into grad[t, n, :] (which the caller has zeroed)."""
    for s in range(L):
        beta[s] = _NEG_INF
    beta[L - 1] = 0.0
    if L > 1:
        beta[L - 2] = 0.0
    epad[L] = 0.0
    epad[L + 1] = 0.0
    for t in range(Tn - 1, -1, -1):
        a = alpha[t]
        for s in range(L):
            occ[s] = vexp(a[s] + beta[s] - logp)
        for s in range(L):
            grad[t, n, lab[s]] -= scale * occ[s]
        if t == 0:
            break
        # beta_{t-1}(s) = logsumexp over s' in {s, s+1, s+2} of emit_t(s') + beta_t(s')
        for s in range(L):
            emit[s] = log_probs[t, n, lab[s]] + beta[s]
        M = _row_max(emit, L)  # > -inf: some path passes through frame t
        for s in range(L):
            epad[s] = vexp(emit[s] - M)
        n_tiny = 0
        for s in range(L):
            tot = epad[s] + epad[s + 1] + skip[s + 2] * epad[s + 2]
            n_tiny += tot < _TINY
            nbeta[s] = M + vlog(max(tot, _TINY))
        if n_tiny:
            for s in range(L):
                if epad[s] + epad[s + 1] + skip[s + 2] * epad[s + 2] < _TINY:
                    b1 = emit[s + 1] if s + 1 < L else _NEG_INF
                    b2 = emit[s + 2] if skip[s + 2] > 0.0 else _NEG_INF
                    nbeta[s] = _lse3(emit[s], b1, b2)
        for s in range(L):
            beta[s] = nbeta[s]


@njit(parallel=True, **_JIT)
def ctc_forward_backward(log_probs, targets, target_offsets, input_lengths,
                         target_lengths, blank, grad_scale, nll, grad):
    """Negative log-likelihood per sequence and, if ``grad`` is not empty,
    its gradient with respect to ``log_probs``.

    log_probs : (T, N, C) float32/float64, C-contiguous; frames at and past
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
        if want_grad:
            for t in range(grad.shape[0]):
                for c in range(grad.shape[2]):
                    grad[t, n, c] = 0.0
        lab = np.empty(L, np.int64)
        skip = np.empty(L + 2, np.float64)
        need = _extend(targets, target_offsets[n], S, blank, lab, skip)
        if _has_nan(log_probs, n, Tn):
            logp = np.nan
        elif Tn < need:
            logp = _NEG_INF
        elif Tn == 0:
            logp = 0.0  # empty input, empty target
        else:
            alpha = np.empty((Tn, L), np.float64)
            emit = np.empty(L + 2, np.float64)
            epad = np.empty(L + 2, np.float64)
            logp = _forward(log_probs, n, Tn, lab, skip, L, alpha, emit, epad)
            if want_grad and logp > _NEG_INF:
                beta = np.empty(L, np.float64)
                nbeta = np.empty(L, np.float64)
                occ = np.empty(L, np.float64)
                emit[L] = _NEG_INF
                emit[L + 1] = _NEG_INF
                _backward_grad(log_probs, n, Tn, lab, skip, L, alpha, logp,
                               grad_scale[n], grad, beta, nbeta, emit, epad, occ)
        nll[n] = -logp
        if want_grad and not (logp > _NEG_INF) and Tn > 0:
            for t in range(Tn):
                for c in range(grad.shape[2]):
                    grad[t, n, c] = np.nan
