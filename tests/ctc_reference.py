"""Independent CTC references for the tests (plain Python / NumPy, no Numba)."""
import itertools

import numpy as np


def log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def collapse(path, blank):
    """Merge repeats, then drop blanks (the CTC many-to-one map B)."""
    out, prev = [], None
    for c in path:
        if c != prev and c != blank:
            out.append(c)
        prev = c
    return out


def brute_force(lp, target, blank):
    """Enumerate all C**T paths of one sequence.

    lp : (T, C) float64 log-probabilities. Returns (nll, grad) where grad is
    d nll / d lp, the negative posterior occupancy of each class per frame.
    """
    T, C = lp.shape
    target = list(target)
    total = 0.0
    occ = np.zeros((T, C))
    for path in itertools.product(range(C), repeat=T):
        if collapse(path, blank) != target:
            continue
        p = np.exp(sum(lp[t, c] for t, c in enumerate(path)))
        total += p
        for t, c in enumerate(path):
            occ[t, c] += p
    if total == 0.0:
        return np.inf, np.full((T, C), np.nan)
    return -np.log(total), -occ / total


def forward_nll(lp, target, blank):
    """Textbook log-space alpha recursion with np.logaddexp, one sequence."""
    T = lp.shape[0]
    ext = [blank]
    for c in target:
        ext += [c, blank]
    L = len(ext)
    if T == 0:
        return 0.0 if L == 1 else np.inf
    alpha = np.full(L, -np.inf)
    alpha[0] = lp[0, ext[0]]
    if L > 1:
        alpha[1] = lp[0, ext[1]]
    for t in range(1, T):
        new = alpha.copy()
        new[1:] = np.logaddexp(new[1:], alpha[:-1])
        for s in range(3, L, 2):
            if ext[s] != ext[s - 2]:
                new[s] = np.logaddexp(new[s], alpha[s - 2])
        alpha = new + lp[t, ext]
    final = alpha[-1] if L == 1 else np.logaddexp(alpha[-1], alpha[-2])
    return -final
