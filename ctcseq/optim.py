"""Optimisers and regularisers for dicts of NumPy parameter arrays.

Every function and class works on ``{name: ndarray}`` dicts (such as
:attr:`ctcseq.model.CTCModel.params` and ``.grads``) and updates the
parameter arrays in place.  Nothing here draws random numbers except
:class:`WeightNoise`, which has its own seeded generator, so training is
deterministic given the seeds.
"""
import contextlib

import numpy as np

from .device import placement
from .errors import UserError
from .kernels.optim_cpu import adam_update

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check_dicts(params, grads):
    if set(params) != set(grads):
        missing = sorted(set(params) ^ set(grads))
        raise ValueError(f"grads must have the same names as params; differing: {missing}")
    for k, p in params.items():
        if grads[k].shape != p.shape:
            raise ValueError(f"grads[{k!r}] has shape {grads[k].shape}, params[{k!r}] "
                             f"{p.shape}")


def _nonneg(value, name, upper=None):
    v = float(value)
    if not np.isfinite(v) or v < 0 or (upper is not None and v >= upper):
        bound = f"[0, {upper})" if upper is not None else ">= 0"
        raise UserError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


class SGD:
    """Stochastic gradient descent with classical momentum.

    ``v <- momentum * v - lr * g``; ``p <- p + v``.  The defaults are
    Graves et al.'s settings for BiLSTM-CTC (learning rate 1e-4, momentum
    0.9, one update per utterance, loss summed over frames).

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place by :meth:`step`.
    lr : float, default 1e-4
    momentum : float in [0, 1), default 0.9
    device : str or Placement, default "cpu"
        Where ``params`` live (:attr:`ctcseq.model.CTCModel.place`); the
        state is kept there too.
    """

    def __init__(self, params, lr=1e-4, momentum=0.9, device="cpu"):
        self.params = params
        self.lr = _nonneg(lr, "lr")
        self.momentum = _nonneg(momentum, "momentum", upper=1.0)
        self.place = placement(device)
        self.velocity = {k: self.place.xp.zeros_like(p) for k, p in params.items()}

    def step(self, grads):
        """Apply one update with ``grads`` (same names and shapes as params)."""
        _check_dicts(self.params, grads)
        for k, p in self.params.items():
            v = self.velocity[k]
            v *= self.momentum
            v -= self.lr * grads[k]
            p += v


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction.

    Parameters
    ----------
    params : dict of str to ndarray
        Updated in place by :meth:`step`.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    device : str or Placement, default "cpu"
        Where ``params`` live; on "cuda" the moments are kept there and
        each update is one pass of :mod:`ctcseq.kernels.optim_cuda`.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, device="cpu"):
        self.params = params
        self.lr = _nonneg(lr, "lr")
        if len(betas) != 2:
            raise UserError(f"betas must be a pair, got {betas!r}")
        self.beta1 = _nonneg(betas[0], "betas[0]", upper=1.0)
        self.beta2 = _nonneg(betas[1], "betas[1]", upper=1.0)
        self.eps = _nonneg(eps, "eps")
        self.t = 0
        self.place = placement(device)
        # moments in float64: float32 m and v lose the small updates of v
        self.m = {k: self.place.xp.zeros(p.shape) for k, p in params.items()}
        self.v = {k: self.place.xp.zeros(p.shape) for k, p in params.items()}

    def step(self, grads):
        """Apply one update with ``grads`` (same names and shapes as params)."""
        _check_dicts(self.params, grads)
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        if self.place.is_cuda:
            from .kernels.optim_cuda import adam_update as adam_update_cuda
            v = self.place.kernel
            for k, p in self.params.items():
                g = self.place.xp.ascontiguousarray(grads[k]).reshape(-1)
                adam_update_cuda(v(p.reshape(-1)), v(g), v(self.m[k].reshape(-1)),
                                 v(self.v[k].reshape(-1)), self.lr, self.beta1, self.beta2, c1, c2,
                                 self.eps, stream=self.place.stream, sim=self.place.sim)
            return
        for k, p in self.params.items():
            g = grads[k]
            m, v = self.m[k], self.v[k]
            if (p.dtype in _FLOATS and g.dtype in _FLOATS and p.flags.c_contiguous
                    and m.flags.c_contiguous and v.flags.c_contiguous):
                # one fused, multi-threaded pass (ctcseq.kernels.optim_cpu)
                adam_update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                            v.reshape(-1), self.lr, self.beta1, self.beta2, c1, c2, self.eps)
                continue
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * np.square(g, dtype=np.float64)
            p -= (self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)).astype(p.dtype)


def global_norm(grads):
    """sqrt of the sum of squares of every array in ``grads`` (float64; host
    or device arrays)."""
    return float(np.sqrt(sum(_squares(g) for g in grads.values())))


def _squares(g):
    if isinstance(g, np.ndarray):
        return np.sum(np.square(g, dtype=np.float64))
    # a device array: summed there, so the norm costs one transfer, not one per array
    return (g.astype(np.float64) ** 2).sum()


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to ndarray
    max_norm : float > 0

    Returns
    -------
    norm : float
        The global norm before clipping.  If it is not finite, the gradients
        are left unchanged (the caller should skip the update).
    """
    max_norm = float(max_norm)
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise UserError(f"max_norm must be a finite number > 0, got {max_norm!r}")
    norm = global_norm(grads)
    if np.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


class WeightNoise:
    """Gaussian weight noise (Graves 2013): perturb weights for one gradient evaluation.

    The gradient is computed at ``params + noise`` with fresh noise per
    evaluation; the update is then applied to the clean weights.  Usage::

        noise = WeightNoise(std=0.075, seed=0)
        with noise.perturbed(model.params):
            loss, grads = model.loss_and_grads(...)
        opt.step(grads)

    Parameters
    ----------
    std : float >= 0, default 0.075
        Standard deviation (Graves 2013 used 0.075).
    seed : int, default 0
        Seed of the noise generator; the sequence of perturbations is
        deterministic given it.
    include : callable, optional
        ``include(name) -> bool`` selects the parameters to perturb;
        default all.
    """

    def __init__(self, std=0.075, seed=0, include=None):
        self.std = _nonneg(std, "std")
        self.rng = np.random.default_rng(seed)
        self.include = include or (lambda name: True)

    def perturbed(self, params):
        """Context in which ``params`` carry fresh noise; restored exactly on exit."""
        # drawn on the host on every device: the same noise for the same seed
        noisy = {k: p + _like(p, self.rng.normal(0.0, self.std, p.shape).astype(p.dtype))
                 for k, p in params.items() if self.include(k)}
        return swapped_in(params, noisy)


def _like(p, host):
    """host as an array of p's device."""
    if isinstance(p, np.ndarray):
        return host
    import cupy
    return cupy.asarray(host)


@contextlib.contextmanager
def swapped_in(params, values):
    """Context in which ``params[k]`` holds ``values[k]`` (in place, for the
    keys of ``values``); the original arrays' contents are restored exactly
    on exit."""
    saved = {k: params[k].copy() for k in values}
    try:
        for k, v in values.items():
            params[k][...] = v
        yield params
    finally:
        for k, old in saved.items():
            params[k][...] = old
