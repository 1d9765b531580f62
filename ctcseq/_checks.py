"""Argument validation shared by the public entry points.

Every check raises ``ValueError`` naming the argument, before any kernel runs.
"""
import numpy as np

from . import device

FLOAT_DTYPES = (np.float32, np.float64)


def float_array3(x, name):
    """A (T, N, C) float32/float64 array, not copied (any strides): a NumPy
    array, or a CUDA array as it is (its dtype and shape are checked)."""
    arr = x if device.is_cuda(x) else np.asarray(x)
    if np.dtype(arr.dtype) not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got dtype {np.dtype(arr.dtype)}")
    if len(arr.shape) != 3:
        raise ValueError(f"{name} must be 3-D (T, N, C), got shape {tuple(arr.shape)}")
    return arr


def log_probs(x):
    """A (T, N, C) float32/float64 array (NumPy, or a CUDA array's Numba view)
    with N >= 1 and C >= 1."""
    lp = float_array3(x, "log_probs")
    if lp.shape[1] == 0:
        raise ValueError("log_probs has an empty batch (N = 0)")
    if lp.shape[2] == 0:
        raise ValueError("log_probs has no classes (C = 0)")
    return lp


def int_array(x, name, ndim=None):
    """An int64 copy of an integer array-like (bool and float are refused)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim not in ndim:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def lengths(x, name, n, upper, upper_name, time_major=False):
    """(n,) int64 lengths, each in [0, upper].

    time_major: the lengths of a (T, N, C) array with T = upper, for which
    lengths of shape (T,) mean the array is batch-first; the message says so.
    """
    arr = int_array(x, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        hint = ""
        if time_major and arr.shape == (upper,):
            hint = (f"; it has one per frame of log_probs' first axis (T = {upper}) instead: "
                    f"log_probs must be (T, N, C), and a batch-first (N, T, C) array x is "
                    f"passed as x.transpose(1, 0, 2) (a view, no copy)")
        raise ValueError(f"{name} must have shape ({n},) (one per sequence), got shape "
                         f"{arr.shape}{hint}")
    bad = np.flatnonzero((arr < 0) | (arr > upper))
    if bad.size:
        i = bad[0]
        raise ValueError(
            f"{name}[{i}] = {arr[i]} is outside [0, {upper}] ({upper_name} = {upper})")
    return arr


def label_index(x, name, num_classes):
    """A label (e.g. ``blank``) as a Python int in [0, num_classes)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if not 0 <= x < num_classes:
        raise ValueError(f"{name} = {x} is outside [0, {num_classes}) (C = {num_classes})")
    return int(x)


def targets(x, target_lengths, n, num_classes, blank):
    """CTC targets, padded (N, S) or 1-D concatenated, validated.

    Returns (flat, offsets, target_lengths): sequence k's labels are
    flat[offsets[k] : offsets[k] + target_lengths[k]] (no copy of padded
    targets).  Labels must lie in [0, num_classes) and differ from blank.
    """
    N, C = n, num_classes
    tg = int_array(x, "targets", ndim=(1, 2))
    if tg.ndim == 2:
        if tg.shape[0] != N:
            raise ValueError(f"padded targets must have shape (N, S) with N = {N}, "
                             f"got shape {tg.shape}")
        S = tg.shape[1]
        tl = lengths(target_lengths, "target_lengths", N, S, "S, the padded width")
        offsets = np.arange(N, dtype=np.int64) * S
        used = tg[np.arange(S) < tl[:, None]]
        flat = tg.reshape(-1)
    else:
        tl = lengths(target_lengths, "target_lengths", N, tg.shape[0],
                             "the length of the concatenated targets")
        if tl.sum() != tg.shape[0]:
            raise ValueError(f"concatenated targets have length {tg.shape[0]} but "
                             f"sum(target_lengths) = {tl.sum()}")
        offsets = np.concatenate(([0], np.cumsum(tl)[:-1])).astype(np.int64)
        used = flat = tg
    bad = np.flatnonzero((used < 0) | (used >= C) | (used == blank))
    if bad.size:
        # map the position in `used` back to (sequence, position)
        k = bad[0]
        n = int(np.searchsorted(np.cumsum(tl), k, side="right"))
        pos = k - (int(tl[:n].sum()) if n else 0)
        v = used[k]
        what = "the blank label" if v == blank else f"a label outside [0, {C})"
        raise ValueError(f"targets of sequence {n} at position {pos} hold {v}, {what} "
                         f"(blank = {blank}, C = {C})")
    return flat, offsets, tl
