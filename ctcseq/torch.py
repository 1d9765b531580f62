"""PyTorch adapter for ctcseq's CTC loss.

:func:`ctc_loss` and :class:`CTCLoss` take the arguments of
``torch.nn.functional.ctc_loss`` and ``torch.nn.CTCLoss`` and are
differentiable with respect to ``log_probs``.  The core is two
``torch.library`` custom ops, so the loss works under ``torch.compile``:

``torch.ops.ctcseq.ctc_losses(log_probs, targets, input_lengths,
target_lengths, blank, zero_infinity)``
    The (N,) per-sequence losses (no gradient).
``torch.ops.ctcseq.ctc_losses_grad(...)``
    The losses and ``grad``, the gradient of their sum with respect to
    ``log_probs``; its backward returns ``grad_losses[None, :, None] * grad``.
    The reduction is done with ordinary torch ops outside the op.

Notes
-----
The gradient is the true partial derivative with respect to ``log_probs``,
``-gamma[t, n, c]`` times the sequence's weight (gamma is the posterior
occupancy of class c at frame t; zero past each input length), so
``torch.autograd.gradcheck`` passes on ``log_probs`` itself.  torch's own
``ctc_loss`` backward returns ``exp(log_probs) - gamma`` instead, which is
only a gradient once passed through a log-softmax: when ``log_probs`` is
``log_softmax(logits)``, both give the same gradient with respect to the
logits.

CPU tensors are shared with NumPy without copying.  CUDA ``log_probs`` are
handed to ctcseq as torch tensors (ctcseq's CUDA backend runs on torch's
current stream); targets and lengths always go to ctcseq as NumPy int64.
Bad arguments raise ctcseq's ``ValueError`` naming the argument.
"""
import numpy as np
import torch

from . import ctc as _ctc

__all__ = ["ctc_loss", "CTCLoss"]

_REDUCTIONS = ("none", "sum", "mean")


def _host_ints(x):
    """An integer tensor as a NumPy int64 array on the host.

    Non-integer dtypes are passed through unconverted so that ctcseq's
    validation names the argument and its dtype.
    """
    arr = x.detach().cpu().numpy()
    if arr.dtype.kind in "iu":
        return np.ascontiguousarray(arr, dtype=np.int64)
    return arr


def _run(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity,
         want_grad):
    """Per-sequence losses (and the gradient of their sum) from ctcseq."""
    args = (_host_ints(targets), _host_ints(input_lengths), _host_ints(target_lengths))
    kw = dict(blank=blank, reduction="none", zero_infinity=zero_infinity)
    device = log_probs.device
    if device.type == "cpu":
        lp = log_probs.detach().numpy()
        wrap = torch.from_numpy
    elif device.type == "cuda":
        lp = log_probs.detach()

        def wrap(x):
            return torch.as_tensor(x, dtype=log_probs.dtype, device=device).contiguous()
    else:
        raise ValueError(f"log_probs is on device {device}; only CPU and CUDA "
                         "tensors are supported")
    if want_grad:
        loss, grad = _ctc.ctc_loss_grad(lp, *args, **kw)
        return wrap(loss), wrap(grad)
    return wrap(_ctc.ctc_loss(lp, *args, **kw))


def _fake_losses(log_probs):
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be 3-D (T, N, C), got shape {tuple(log_probs.shape)}")
    return log_probs.new_empty(log_probs.shape[1])


@torch.library.custom_op("ctcseq::ctc_losses", mutates_args=())
def _ctc_losses(log_probs: torch.Tensor, targets: torch.Tensor,
                input_lengths: torch.Tensor, target_lengths: torch.Tensor,
                blank: int, zero_infinity: bool) -> torch.Tensor:
    """(N,) CTC losses, no gradient."""
    return _run(log_probs, targets, input_lengths, target_lengths, blank,
                zero_infinity, want_grad=False)


@_ctc_losses.register_fake
def _(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    return _fake_losses(log_probs)


@torch.library.custom_op("ctcseq::ctc_losses_grad", mutates_args=())
def _ctc_losses_grad(log_probs: torch.Tensor, targets: torch.Tensor,
                     input_lengths: torch.Tensor, target_lengths: torch.Tensor,
                     blank: int, zero_infinity: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) CTC losses and the (T, N, C) gradient of their sum w.r.t. log_probs."""
    return _run(log_probs, targets, input_lengths, target_lengths, blank,
                zero_infinity, want_grad=True)


@_ctc_losses_grad.register_fake
def _(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    return _fake_losses(log_probs), log_probs.new_empty(log_probs.shape)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_losses, grad_grad):
    (grad,) = ctx.saved_tensors
    if grad_losses is None:
        return None, None, None, None, None, None
    return grad_losses[None, :, None] * grad, None, None, None, None, None


_ctc_losses_grad.register_autograd(_backward, setup_context=_setup_context)


def _as_tensor(x):
    """Lengths (and targets) given as Python ints, lists or tuples, as a tensor."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
             reduction="mean", zero_infinity=False):
    """CTC loss with the signature and semantics of ``torch.nn.functional.ctc_loss``.

    Parameters
    ----------
    log_probs : Tensor, shape (T, N, C) or (T, C) unbatched, float32 or float64
        Log-probabilities per frame, sequence and class, on CPU or CUDA.
    targets : Tensor of int, shape (N, S) padded, (sum(target_lengths),)
        concatenated, or (S,) unbatched
    input_lengths, target_lengths : Tensor of int, or list/tuple of int, shape (N,)
        (or 0-d / one element when unbatched)
    blank : int, default 0
    reduction : {"mean", "sum", "none"}
        "mean" divides each loss by its target length (clamped to at least 1)
        and averages over the batch.
    zero_infinity : bool, default False
        Replace infinite losses and their gradients by zero.

    Returns
    -------
    Tensor
        (N,) losses for "none" (0-d when unbatched), else a 0-d tensor; of
        log_probs' dtype and device.  Differentiable w.r.t. ``log_probs``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(blank, (bool, np.bool_)) or not isinstance(blank, (int, np.integer)):
        raise ValueError(f"blank must be an integer, got {blank!r}")
    if not isinstance(log_probs, torch.Tensor):
        raise ValueError(f"log_probs must be a torch.Tensor, got {type(log_probs).__name__}")
    targets = _as_tensor(targets)
    input_lengths = _as_tensor(input_lengths)
    target_lengths = _as_tensor(target_lengths)
    batched = log_probs.dim() != 2
    if not batched:
        log_probs = log_probs.unsqueeze(1)
        targets = targets.unsqueeze(0)
        input_lengths = input_lengths.reshape(-1)
        target_lengths = target_lengths.reshape(-1)
    args = (log_probs, targets, input_lengths, target_lengths, int(blank),
            bool(zero_infinity))
    if torch.is_grad_enabled() and log_probs.requires_grad:
        losses, _ = _ctc_losses_grad(*args)
    else:
        losses = _ctc_losses(*args)
    if reduction == "mean":
        tl = target_lengths.to(device=losses.device, dtype=losses.dtype).clamp_min(1)
        return (losses / tl).mean()
    if reduction == "sum":
        return losses.sum()
    return losses if batched else losses.squeeze(0)


class CTCLoss(torch.nn.Module):
    """CTC loss module with the signature and semantics of ``torch.nn.CTCLoss``.

    Parameters
    ----------
    blank : int, default 0
    reduction : {"mean", "sum", "none"}
    zero_infinity : bool, default False

    See :func:`ctc_loss` for the forward arguments.
    """

    def __init__(self, blank=0, reduction="mean", zero_infinity=False):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(log_probs, targets, input_lengths, target_lengths,
                        blank=self.blank, reduction=self.reduction,
                        zero_infinity=self.zero_infinity)

    def extra_repr(self):
        return (f"blank={self.blank}, reduction={self.reduction!r}, "
                f"zero_infinity={self.zero_infinity}")
