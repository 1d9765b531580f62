"""Connectionist temporal classification loss (Graves et al., 2006).

Public entry points: :func:`ctc_loss` and :func:`ctc_loss_grad`, with the
argument conventions of ``torch.nn.functional.ctc_loss``.
"""
import numpy as np

from . import _checks, device
from .kernels.ctc_cpu import ctc_forward_backward

_REDUCTIONS = ("none", "sum", "mean")


def _prepare(log_probs, targets, input_lengths, target_lengths, blank, reduction):
    """Validate everything; return the kernel's arguments."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    lp = _checks.log_probs(log_probs)
    T, N, C = lp.shape
    blank = _checks.label_index(blank, "blank", C)
    il = _checks.lengths(input_lengths, "input_lengths", N, T, "T", time_major=True)
    flat, offsets, tl = _checks.targets(targets, target_lengths, N, C, blank)
    return lp, flat, offsets, il, tl


def _weights(tl, reduction, N):
    if reduction == "mean":
        return 1.0 / (np.maximum(tl, 1).astype(np.float64) * N)
    return np.ones(N, np.float64)


def _reduce(nll, w, reduction, dtype):
    if reduction == "none":
        return nll.astype(dtype)
    return dtype.type(np.sum(nll * w))


def _run_cuda(dev, log_probs, targets, input_lengths, target_lengths, blank, reduction,
              zero_infinity, want_grad):
    from .kernels import ctc_cuda
    targets, input_lengths, target_lengths = map(
        dev.host_copy, (targets, input_lengths, target_lengths))
    lp, flat, offsets, il, tl = _prepare(dev.view(log_probs), targets, input_lengths,
                                         target_lengths, blank, reduction)
    w = _weights(tl, reduction, lp.shape[1])
    loss, grad = ctc_cuda.ctc_loss(dev, lp, flat, offsets, il, tl, blank, w,
                                   reduction != "none", zero_infinity, want_grad)
    return (loss if reduction == "none" else loss.reshape(())), grad


def _run(log_probs, targets, input_lengths, target_lengths, blank, reduction,
         zero_infinity, want_grad):
    if device.is_cuda(log_probs):
        with device.Device(log_probs).activate() as dev:
            return _run_cuda(dev, log_probs, targets, input_lengths, target_lengths, blank,
                             reduction, zero_infinity, want_grad)
    lp, flat, offsets, il, tl = _prepare(log_probs, targets, input_lengths,
                                         target_lengths, blank, reduction)
    T, N, C = lp.shape
    w = _weights(tl, reduction, N)
    nll = np.empty(N, np.float64)
    grad = np.empty((T, N, C) if want_grad else (0, 0, 0), lp.dtype)
    ctc_forward_backward(lp, flat, offsets, il, tl, blank, w, nll, grad)
    if zero_infinity:
        inf = np.isposinf(nll)
        if inf.any():
            nll[inf] = 0.0
            if want_grad:
                grad[:, inf, :] = 0.0
    return _reduce(nll, w, reduction, lp.dtype), grad


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
             reduction="mean", zero_infinity=False):
    """CTC negative log-likelihood, as ``torch.nn.functional.ctc_loss``.

    Parameters
    ----------
    log_probs : ndarray or CUDA array, shape (T, N, C), float32 or float64
        Log-probabilities (normally a log-softmax over C) per frame, sequence
        and class.  Frames ``t >= input_lengths[n]`` of sequence n are never
        read and may hold anything, NaN included.  A CUDA array (CuPy, torch,
        Numba, DLPack) is used in place and the work runs on its GPU; the
        results are then device arrays of the same kind (see
        :mod:`ctcseq.device`); targets and lengths may be on either side.
    targets : ndarray of int, shape (N, S) padded, or (sum(target_lengths),)
        concatenated
        Label sequences; labels lie in [0, C) and are never ``blank``.
        Padding past each target length is ignored.
    input_lengths : array of int, shape (N,)
        Valid frames per sequence, each in [0, T].
    target_lengths : array of int, shape (N,)
        Target length per sequence, each in [0, S] (padded layout).
    blank : int, default 0
        Index of the blank class, in [0, C).
    reduction : {"mean", "sum", "none"}
        "none" returns the (N,) losses; "sum" their sum; "mean" divides each
        loss by its target length (clamped to at least 1) and averages over
        the batch.
    zero_infinity : bool, default False
        Replace infinite losses (targets too long for their input) and their
        gradients by zero.

    Returns
    -------
    loss : ndarray of shape (N,), or a scalar, of log_probs' dtype
        (for CUDA input, a device array of shape (N,) or ())
        ``inf`` for an infeasible target (unless ``zero_infinity``); NaN for a
        sequence whose valid frames hold a NaN (other sequences unaffected).

    Notes
    -----
    Computed in log space with float64 arithmetic for both input dtypes, so
    it is stable for long inputs (T = 10 000) and extreme log-probabilities.
    Sequences run in parallel (Numba ``prange``); the working memory per
    sequence in flight is (input length) x (2 S + 1) float64.  On a GPU
    (:mod:`ctcseq.kernels.ctc_cuda`) the loss alone needs O(N S) extra
    memory, and the gradient one (input length) x (2 S + 1) float64 table
    per sequence; the gradient is the same to the bit from run to run.
    """
    loss, _ = _run(log_probs, targets, input_lengths, target_lengths, blank,
                   reduction, zero_infinity, want_grad=False)
    return loss


def ctc_loss_grad(log_probs, targets, input_lengths, target_lengths, blank=0,
                  reduction="mean", zero_infinity=False):
    """CTC loss and its gradient with respect to ``log_probs``.

    Same arguments as :func:`ctc_loss`.

    Returns
    -------
    loss : ndarray or scalar
        As :func:`ctc_loss`.
    grad : ndarray, shape (T, N, C), log_probs' dtype
        The true partial derivative of the reduced loss with respect to
        ``log_probs``: ``-w[n] * gamma[t, n, c]``, where gamma is the
        posterior occupancy of class c at frame t (summing to 1 over c) and
        ``w[n]`` is the sequence's weight in the reduction (1 for "sum" and
        "none", ``1 / (N * max(target_lengths[n], 1))`` for "mean").  For
        "none" it is the gradient of the sum of the per-sequence losses.
        Zero past each sequence's input length; NaN on the valid frames of a
        sequence whose loss is NaN, or infinite without ``zero_infinity``.

        torch's ``ctc_loss`` backward returns instead
        ``w[n] * (exp(log_probs) - gamma)``, which is the gradient with
        respect to the logits when log_probs is their log-softmax: add
        ``w[n] * exp(log_probs)`` on valid frames to obtain it, except for
        the sequences that ``zero_infinity`` zeroed (zero in both).  Both
        give the same logits gradient once passed back through a log-softmax.
    """
    return _run(log_probs, targets, input_lengths, target_lengths, blank,
                reduction, zero_infinity, want_grad=True)
