"""JAX adapter for ctcseq's CTC loss.

:func:`ctc_loss` takes the arguments of ``torch.nn.functional.ctc_loss``
(time-major ``log_probs`` of shape (T, N, C)) as JAX arrays and returns a JAX
array.  It works under ``jax.jit``, ``jax.grad`` / ``jax.value_and_grad``
(reverse mode, with respect to ``log_probs``; ``custom_vjp`` has no
forward mode, so ``jax.jvp`` is refused) and ``jax.vmap``.

The core is a ``jax.custom_vjp`` over the (N,) per-sequence losses that calls
ctcseq's NumPy :func:`ctcseq.ctc_loss` / :func:`ctcseq.ctc_loss_grad`
through ``jax.pure_callback``.  Without differentiation the callback computes
the losses only; under differentiation one callback computes the losses and
the gradient of their sum, which is saved, and the backward rule returns
``cotangent[None, :, None] * grad``.  The reduction is ordinary ``jnp`` code
outside the ``custom_vjp``.  Under ``jax.vmap`` the callback runs once for the
whole batch, the mapped axes folded into ctcseq's sequence axis.

Importing :mod:`ctcseq` does not import JAX: import this module explicitly
(``import ctcseq.jax``).

Notes
-----
This works on the CPU through a host callback.  For arrays on a GPU the
callback copies them to the host and back (there is no XLA FFI GPU path
yet), so the result is correct there but not zero-copy.

float64 ``log_probs`` need ``jax.config.update("jax_enable_x64", True)``;
otherwise JAX turns them into float32 before ctcseq sees them.  ctcseq
computes in float64 internally for both dtypes.
"""
import functools
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks
from . import ctc as _ctc

__all__ = ["ctc_loss"]

_REDUCTIONS = ("none", "sum", "mean")

# Numba's "workqueue" threading layer aborts the process when two threads
# launch parallel kernels at once, and XLA may run independent callbacks
# concurrently: serialise the kernel calls.
_KERNEL_LOCK = threading.Lock()


# ---------------------------------------------------------------- validation

def _dummy(x):
    """A zero-filled NumPy stand-in (no memory) with x's shape and dtype."""
    return np.broadcast_to(np.zeros((), x.dtype), x.shape)


def _concrete(x):
    """x as a NumPy array, or None when it is a tracer (under jit, vmap...)."""
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def _validate(log_probs, targets, input_lengths, target_lengths, blank, reduction):
    """ctcseq's checks, before anything is traced; returns blank as an int.

    Shapes, dtypes and blank are always checked.  The values of the integer
    arguments are checked too when they are concrete; traced values are
    checked by ctcseq inside the callback.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    dtype, shape = np.dtype(log_probs.dtype), tuple(log_probs.shape)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"log_probs must be float32 or float64, got dtype {dtype}")
    if len(shape) != 3:
        raise ValueError(f"log_probs must be 3-D (T, N, C), got shape {shape}")
    T, N, C = shape
    if N == 0:
        raise ValueError("log_probs has an empty batch (N = 0)")
    if C == 0:
        raise ValueError("log_probs has no classes (C = 0)")
    blank = _checks.label_index(blank, "blank", C)
    values = [_concrete(x) for x in (targets, input_lengths, target_lengths)]
    if all(v is not None for v in values):
        tg, il, tl = values
        _checks.lengths(il, "input_lengths", N, T, "T")
        _checks.targets(tg, tl, N, C, blank)
        return blank
    _checks.lengths(_dummy(input_lengths), "input_lengths", N, T, "T")
    tg, tl = _dummy(targets), _dummy(target_lengths)
    if tg.ndim == 2:
        _checks.targets(tg, tl, N, C, blank)  # all-zero lengths: shapes and dtypes only
    else:
        _checks.int_array(tg, "targets", ndim=(1, 2))
        _checks.lengths(tl, "target_lengths", N, tg.shape[0],
                        "the length of the concatenated targets")
    return blank


# ------------------------------------------------------------- host callback

def _run(lp, targets, il, tl, blank, zero_infinity, want_grad):
    kw = dict(blank=blank, reduction="none", zero_infinity=zero_infinity)
    with _KERNEL_LOCK:
        if want_grad:
            return _ctc.ctc_loss_grad(lp, targets, il, tl, **kw)
        return _ctc.ctc_loss(lp, targets, il, tl, **kw)


def _host(blank, zero_infinity, want_grad, lp, targets, il, tl):
    """ctcseq on the host; leading (vmapped) axes are folded into N.

    Called with JAX CPU arrays.  Under ``vmap_method="expand_dims"`` every
    argument carries the same number of leading axes, of size 1 where it is
    not mapped.
    """
    lp, targets, il, tl = (np.asarray(x) for x in (lp, targets, il, tl))
    k = lp.ndim - 3
    if k == 0:
        out = _run(lp, targets, il, tl, blank, zero_infinity, want_grad)
        return tuple(np.asarray(x) for x in out) if want_grad else np.asarray(out)

    lead = np.broadcast_shapes(*(x.shape[:k] for x in (lp, targets, il, tl)))
    B = math.prod(lead)
    T, N, C = lp.shape[k:]

    def flat(x):
        return np.broadcast_to(x, lead + x.shape[k:]).reshape((B,) + x.shape[k:])

    lp, targets, il, tl = flat(lp), flat(targets), flat(il), flat(tl)
    # Folding concatenated targets is only right if each element's lengths
    # sum to the common length: check every element on its own (this also
    # gives error messages with the element's own sequence numbers).
    for b in range(B):
        try:
            _checks.lengths(il[b], "input_lengths", N, T, "T")
            _checks.targets(targets[b], tl[b], N, C, blank)
        except ValueError as err:
            where = np.unravel_index(b, lead)
            raise ValueError(f"{err} (in element {tuple(map(int, where))} of the "
                             "vmapped batch)") from err
    if B == 0:
        loss = np.zeros(lead + (N,), lp.dtype)
        return (loss, np.zeros(lead + (T, N, C), lp.dtype)) if want_grad else loss
    out = _run(lp.transpose(1, 0, 2, 3).reshape(T, B * N, C),
               targets.reshape((B * N, targets.shape[2]) if targets.ndim == 3 else (-1,)),
               il.reshape(-1), tl.reshape(-1), blank, zero_infinity, want_grad)
    loss = (out[0] if want_grad else out).reshape(lead + (N,))
    if not want_grad:
        return loss
    grad = out[1].reshape(T, B, N, C).transpose(1, 0, 2, 3).reshape(lead + (T, N, C))
    return loss, np.ascontiguousarray(grad)


def _callback(log_probs, targets, input_lengths, target_lengths, blank,
              zero_infinity, want_grad):
    T, N, C = log_probs.shape
    loss = jax.ShapeDtypeStruct((N,), log_probs.dtype)
    shapes = (loss, jax.ShapeDtypeStruct((T, N, C), log_probs.dtype)) if want_grad else loss
    host = functools.partial(_host, blank, zero_infinity, want_grad)
    return jax.pure_callback(host, shapes, log_probs, targets, input_lengths,
                             target_lengths, vmap_method="expand_dims")


# ------------------------------------------------------------------ the core

@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _ctc_losses(log_probs, targets, input_lengths, target_lengths, blank,
                zero_infinity):
    """(N,) per-sequence CTC losses."""
    return _callback(log_probs, targets, input_lengths, target_lengths, blank,
                     zero_infinity, want_grad=False)


def _ctc_losses_fwd(log_probs, targets, input_lengths, target_lengths, blank,
                    zero_infinity):
    loss, grad = _callback(log_probs, targets, input_lengths, target_lengths,
                           blank, zero_infinity, want_grad=True)
    return loss, grad


def _ctc_losses_bwd(blank, zero_infinity, grad, g):
    return g[None, :, None] * grad, None, None, None


_ctc_losses.defvjp(_ctc_losses_fwd, _ctc_losses_bwd)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
             reduction="mean", zero_infinity=False):
    """CTC loss with the signature and semantics of ``torch.nn.functional.ctc_loss``.

    Parameters
    ----------
    log_probs : array, shape (T, N, C), float32 or float64
        Log-probabilities (normally a log-softmax over C) per frame, sequence
        and class.  Frames past each input length are never read.
    targets : array of int, shape (N, S) padded, or (sum(target_lengths),)
        concatenated
        Labels in [0, C), never ``blank``; padding is ignored.
    input_lengths, target_lengths : array of int, shape (N,)
    blank : int, default 0
        Index of the blank class, in [0, C).  Static (a Python int).
    reduction : {"mean", "sum", "none"}
        "none" returns the (N,) losses; "sum" their sum; "mean" divides each
        loss by its target length (clamped to at least 1) and averages over
        the batch.
    zero_infinity : bool, default False
        Replace infinite losses (targets too long for their input) and their
        gradients by zero.  Static.

    Returns
    -------
    loss : jax.Array of log_probs' dtype, shape (N,) for "none", else ()
        Differentiable with respect to ``log_probs`` (the integer arguments
        get no gradient).  ``inf`` for an infeasible target unless
        ``zero_infinity``, with a NaN gradient on its valid frames.

    Raises
    ------
    ValueError
        Naming the argument, for a bad shape or dtype, ``blank`` or
        ``reduction``, checked when the function is traced.  The values of
        ``targets``, ``input_lengths`` and ``target_lengths`` (labels in
        range and not blank, lengths in range, concatenated lengths summing
        to the targets' length) are also checked up front when those arrays
        are concrete, as in eager calls and under ``jax.grad`` alone.
    jax.errors.JaxRuntimeError
        When those values are traced (under ``jax.jit`` or ``jax.vmap``)
        they are checked by ctcseq inside the callback, and JAX reports the
        ``ValueError`` as a ``JaxRuntimeError`` (a ``RuntimeError``, raised
        when the result is computed) whose message ends with ctcseq's
        ``ValueError: ...`` line; JAX also logs the callback's traceback.
        (JAX documents exceptions in a ``pure_callback`` as undefined
        behaviour; this is what jax 0.10 on the CPU does.)  Under ``vmap``
        the message adds which element of the mapped batch is at fault.
    """
    log_probs = jnp.asarray(log_probs)
    targets = jnp.asarray(targets)
    input_lengths = jnp.asarray(input_lengths)
    target_lengths = jnp.asarray(target_lengths)
    blank = _validate(log_probs, targets, input_lengths, target_lengths, blank,
                      reduction)
    losses = _ctc_losses(log_probs, targets, input_lengths, target_lengths, blank,
                         bool(zero_infinity))
    if reduction == "none":
        return losses
    if reduction == "sum":
        return jnp.sum(losses)
    return jnp.mean(losses / jnp.maximum(target_lengths, 1).astype(losses.dtype))
