"""ctcseq.jax.ctc_loss: against ctcseq's NumPy CTC and optax.ctc_loss, under
jit, grad and vmap (skipped when JAX is absent)."""
import subprocess
import sys

import numpy as np
import pytest

from ctc_reference import log_softmax
from ctcseq import ctc_loss as np_ctc_loss, ctc_loss_grad as np_ctc_loss_grad

jax = pytest.importorskip("jax")
jnp = jax.numpy
import ctcseq.jax as cj  # noqa: E402  (after the importorskip)

REDUCTIONS = ["none", "sum", "mean"]


@pytest.fixture(autouse=True, scope="module")
def x64():
    """float64 needs x64: enable it for this module, restore it afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def make_case(seed, T=12, N=5, C=6, S=5, blank=0, dtype=np.float64, infeasible=True):
    """Logits (T, N, C), their log-softmax, padded targets with a repeat, lengths.

    Sequence 0 is infeasible when ``infeasible`` (5 labels with a repeat need 6
    frames, it has 5); sequence 1 has an empty target; frames past each input
    length hold NaN in log_probs (never read).
    """
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.standard_normal((T, N, C))
    labels = np.array([c for c in range(C) if c != blank])
    targets = rng.choice(labels, size=(N, S))
    targets[:, 1] = targets[:, 0]  # repeats
    il = rng.integers(2 * S, T + 1, size=N)  # room for any S labels
    tl = rng.integers(1, S + 1, size=N)
    il[0], tl[0] = (5, 5) if infeasible else (T, 5)
    tl[1] = 0
    lp = log_softmax(logits)
    lp[np.arange(T)[:, None] >= il[None, :]] = np.nan
    return logits.astype(dtype), lp.astype(dtype), targets, il, tl


def concatenate(targets, tl):
    return np.concatenate([targets[n, : tl[n]] for n in range(len(tl))])


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- against NumPy

@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("blank", [0, 5])
def test_matches_numpy(blank, layout, reduction, zero_infinity):
    _, lp, targets, il, tl = make_case(3 + blank, blank=blank)
    if layout == "concatenated":
        targets = concatenate(targets, tl)
    kw = dict(blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    want, want_grad = np_ctc_loss_grad(lp, targets, il, tl, **kw)

    def f(x):
        loss = cj.ctc_loss(x, targets, il, tl, **kw)
        return loss.sum() if reduction == "none" else loss

    loss = cj.ctc_loss(lp, targets, il, tl, **kw)
    assert loss.dtype == jnp.float64 and loss.shape == np.shape(want)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    grad = jax.grad(f)(jnp.asarray(lp))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)  # NaN where NumPy has NaN
    losses = np_ctc_loss(lp, targets, il, tl, blank=blank, reduction="none",
                         zero_infinity=zero_infinity)
    assert np.isinf(losses[0]) != zero_infinity
    assert zero_infinity or np.isnan(grad[: il[0], 0]).all()
    if zero_infinity:
        assert losses[0] == 0 and not np.asarray(grad[:, 0]).any()
    assert np.isfinite(grad[:, 1:]).all()
    assert not np.asarray(grad)[np.arange(lp.shape[0])[:, None] >= il[None, :]].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shapes(dtype):
    _, lp, targets, il, tl = make_case(5, dtype=dtype, infeasible=False)
    for reduction in REDUCTIONS:
        loss, grad = jax.value_and_grad(
            lambda x, r=reduction: cj.ctc_loss(x, targets, il, tl, reduction=r).sum())(lp)
        assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == lp.shape
        assert cj.ctc_loss(lp, targets, il, tl, reduction=reduction).shape == \
            ((lp.shape[1],) if reduction == "none" else ())
        want, want_grad = np_ctc_loss_grad(lp, targets, il, tl, reduction=reduction)
        np.testing.assert_allclose(loss, np.sum(want), **tol(dtype))
        np.testing.assert_allclose(grad, want_grad, **tol(dtype))


def test_float32_int32_without_x64():
    """With x64 off (JAX's default) targets and lengths arrive as int32."""
    _, lp, targets, il, tl = make_case(6, dtype=np.float32, infeasible=False)
    want, want_grad = np_ctc_loss_grad(lp, targets, il, tl, reduction="mean")
    jax.config.update("jax_enable_x64", False)
    try:
        args = [jnp.asarray(a) for a in (targets, il, tl)]
        assert args[0].dtype == jnp.int32
        loss, grad = jax.jit(jax.value_and_grad(
            lambda x, *a: cj.ctc_loss(x, *a)))(jnp.asarray(lp), *args)
        assert loss.dtype == jnp.float32 and grad.dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


# --------------------------------------------------- non-unit cotangents, jit

def test_non_unit_cotangents():
    _, lp, targets, il, tl = make_case(7, infeasible=False)
    _, g_mean = np_ctc_loss_grad(lp, targets, il, tl, reduction="mean")
    grad = jax.grad(lambda x: 3.0 * cj.ctc_loss(x, targets, il, tl))(lp)
    np.testing.assert_allclose(grad, 3.0 * g_mean, rtol=1e-12)

    w = np.array([0.5, -2.0, 0.0, 1.5, 3.0])
    _, g_none = np_ctc_loss_grad(lp, targets, il, tl, reduction="none")
    value, grad = jax.value_and_grad(
        lambda x: jnp.dot(w, cj.ctc_loss(x, targets, il, tl, reduction="none")))(lp)
    losses = np_ctc_loss(lp, targets, il, tl, reduction="none")
    np.testing.assert_allclose(value, np.dot(w, losses), rtol=1e-12)
    np.testing.assert_allclose(grad, w[None, :, None] * g_none, rtol=1e-12, atol=1e-300)

    # a nonlinear function of the losses: the cotangent differs per sequence
    grad = jax.grad(lambda x: jnp.sum(cj.ctc_loss(x, targets, il, tl, reduction="none") ** 2))(lp)
    np.testing.assert_allclose(grad, 2 * losses[None, :, None] * g_none, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jit(reduction):
    _, lp, targets, il, tl = make_case(8, dtype=np.float32, infeasible=False)
    want, want_grad = np_ctc_loss_grad(lp, targets, il, tl, reduction=reduction)

    @jax.jit
    def f(x, t, a, b):
        return jnp.sum(cj.ctc_loss(x, t, a, b, reduction=reduction))

    loss, grad = jax.jit(jax.value_and_grad(f))(lp, targets, il, tl)
    np.testing.assert_allclose(loss, np.sum(want), rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f(lp, targets, il, tl), loss, rtol=1e-6)


# --------------------------------------------------------------------- vmap

def batch_of_cases(B, layout, T=10, N=4, C=5, S=4, seed=9):
    """B problems of one shape, all feasible; concatenated targets all of
    length 8 (the lengths differ between problems)."""
    rng = np.random.default_rng(seed)
    lps, tgs, ils, tls = [], [], [], []
    for _ in range(B):
        lp = log_softmax(rng.standard_normal((T, N, C)))
        il = rng.integers(2 * S, T + 1, size=N)
        if layout == "concatenated":
            tl = rng.permutation([0, 2, 3, 3])
            tg = rng.integers(1, C, size=8)
        else:
            tl = rng.integers(0, S + 1, size=N)
            tg = rng.integers(1, C, size=(N, S))
        lps.append(lp), tgs.append(tg), ils.append(il), tls.append(tl)
    return [np.stack(a) for a in (lps, tgs, ils, tls)]


@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_vmap_matches_loop(layout, monkeypatch):
    args = batch_of_cases(3, layout)
    calls = []
    run = cj._run
    monkeypatch.setattr(cj, "_run", lambda *a: calls.append(a[0].shape) or run(*a))

    def f(x, t, a, b):
        return cj.ctc_loss(x, t, a, b, reduction="none")

    def g(x, t, a, b):
        return cj.ctc_loss(x, t, a, b, reduction="mean")

    losses = jax.vmap(f)(*args)
    assert calls == [(10, 3 * 4, 5)]  # one host call for the whole batch
    grads = jax.jit(jax.vmap(jax.grad(g)))(*args)
    vg_loss, vg_grad = jax.vmap(jax.value_and_grad(g))(*args)
    for b in range(3):
        one = [a[b] for a in args]
        np.testing.assert_allclose(losses[b], f(*one), rtol=1e-12)
        want_loss, want_grad = np_ctc_loss_grad(*one, reduction="mean")
        np.testing.assert_allclose(grads[b], want_grad, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(vg_grad[b], want_grad, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(vg_loss[b], want_loss, rtol=1e-12)


def test_vmap_unmapped_and_nested():
    lps, tgs, ils, tls = batch_of_cases(2, "padded")
    tg, il, tl = tgs[0], ils[0], tls[0]

    def f(x, t, a, b):
        return cj.ctc_loss(x, t, a, b, reduction="sum")

    # only log_probs mapped; then only the targets mapped
    got = jax.vmap(jax.grad(f), in_axes=(0, None, None, None))(lps, tg, il, tl)
    for b in range(2):
        np.testing.assert_allclose(got[b], np_ctc_loss_grad(lps[b], tg, il, tl, reduction="sum")[1],
                                   rtol=1e-12, atol=1e-300)
    got = jax.vmap(f, in_axes=(None, 0, None, 0))(lps[0], tgs, il, tls)
    for b in range(2):
        np.testing.assert_allclose(got[b], np_ctc_loss(lps[0], tgs[b], il, tls[b], reduction="sum"),
                                   rtol=1e-12)
    # nested: (2, 2) problems, the inner map over a shared log_probs
    nested = jax.vmap(jax.vmap(jax.grad(f), in_axes=(None, 0, 0, 0)), in_axes=(0, None, None, None))
    got = nested(lps, tgs, ils, tls)
    assert got.shape == (2, 2) + lps.shape[1:]
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(
                got[i, j], np_ctc_loss_grad(lps[i], tgs[j], ils[j], tls[j], reduction="sum")[1],
                rtol=1e-12, atol=1e-300)


# -------------------------------------------------------------- against optax

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("blank", [0, 5])
def test_matches_optax(blank, dtype):
    optax = pytest.importorskip("optax")
    logits, _, targets, il, tl = make_case(11 + blank, T=14, blank=blank, dtype=dtype,
                                           infeasible=False)
    T, N, C = logits.shape
    S = targets.shape[1]
    # optax: batch-first logits, 1.0 on padded frames / labels; it reads the
    # padded frames (masked), so give them finite values
    logits_b = jnp.asarray(logits.transpose(1, 0, 2))
    frame_pad = (np.arange(T)[None, :] >= il[:, None]).astype(dtype)
    label_pad = (np.arange(S)[None, :] >= tl[:, None]).astype(dtype)
    w = np.linspace(0.5, 2.0, N).astype(dtype)  # a per-sequence cotangent

    def ours(z):  # z: (N, T, C), as optax
        lp = jax.nn.log_softmax(jnp.transpose(z, (1, 0, 2)), axis=-1)
        return cj.ctc_loss(lp, targets, il, tl, blank=blank, reduction="none")

    def theirs(z):
        return optax.ctc_loss(z, frame_pad, targets, label_pad, blank_id=blank)

    np.testing.assert_allclose(ours(logits_b), theirs(logits_b), **tol(dtype))
    g_ours = jax.grad(lambda z: jnp.dot(w, ours(z)))(logits_b)
    g_theirs = jax.grad(lambda z: jnp.dot(w, theirs(z)))(logits_b)
    assert g_ours.dtype == dtype
    np.testing.assert_allclose(g_ours, g_theirs, **tol(dtype))


def test_optax_infeasible_is_finite():
    """A difference, not a bug: optax's log(0) is log_epsilon = -1e5, so an
    infeasible target costs about 1e5 instead of inf."""
    optax = pytest.importorskip("optax")
    logits, lp, targets, il, tl = make_case(12)
    T, _, _ = logits.shape
    S = targets.shape[1]
    theirs = optax.ctc_loss(logits.transpose(1, 0, 2),
                            (np.arange(T)[None, :] >= il[:, None]).astype(float), targets,
                            (np.arange(S)[None, :] >= tl[:, None]).astype(float))
    ours = cj.ctc_loss(lp, targets, il, tl, reduction="none")
    assert np.isinf(ours[0]) and 1e5 <= theirs[0] < 1.01e5
    np.testing.assert_allclose(ours[1:], theirs[1:], rtol=1e-10)


# --------------------------------------------------------------- validation

def _bad_static_cases():
    _, lp, targets, il, tl = make_case(13, infeasible=False)
    ok = dict(log_probs=lp, targets=targets, input_lengths=il, target_lengths=tl)
    return [
        ("log_probs", dict(ok, log_probs=lp[:, 0])),
        ("log_probs", dict(ok, log_probs=lp.astype(np.float16))),
        ("log_probs", dict(ok, log_probs=np.zeros(lp.shape, np.int32))),
        ("log_probs", dict(ok, log_probs=lp[:, :0])),
        ("blank", dict(ok, blank=6)),
        ("blank", dict(ok, blank=-1)),
        ("blank", dict(ok, blank=1.0)),
        ("reduction", dict(ok, reduction="avg")),
        ("targets", dict(ok, targets=targets.astype(np.float64))),
        ("targets", dict(ok, targets=targets[None])),
        ("targets", dict(ok, targets=targets[:-1])),
        ("input_lengths", dict(ok, input_lengths=il[:-1])),
        ("input_lengths", dict(ok, input_lengths=il.astype(np.float32))),
        ("target_lengths", dict(ok, target_lengths=tl[:, None])),
        ("target_lengths", dict(ok, target_lengths=tl.astype(bool))),
    ]


@pytest.mark.parametrize("jit", [False, True])
def test_bad_static_arguments_raise_value_error(jit):
    for name, kw in _bad_static_cases():
        arrays = {k: v for k, v in kw.items()
                  if k in ("log_probs", "targets", "input_lengths", "target_lengths")}
        static = {k: v for k, v in kw.items() if k not in arrays}
        f = lambda **a: cj.ctc_loss(**a, **static)  # noqa: E731
        if jit:
            f = jax.jit(f)
        with pytest.raises(ValueError, match=name):
            f(**arrays)


def _bad_values():
    _, lp, targets, il, tl = make_case(14, infeasible=False)
    tl[2], tl[3] = 3, 2
    t_blank = targets.copy()
    t_blank[2, 1] = 0
    t_big = targets.copy()
    t_big[3, 0] = 6
    il_big = il.copy()
    il_big[1] = lp.shape[0] + 1
    tl_big = tl.copy()
    tl_big[4] = targets.shape[1] + 1
    flat = concatenate(targets, tl)
    return lp, [
        ((t_blank, il, tl), r"targets of sequence 2 at position 1 hold 0, the blank label"),
        ((t_big, il, tl), r"targets of sequence 3 at position 0 hold 6, a label outside \[0, 6\)"),
        ((targets, il_big, tl), r"input_lengths\[1\] = 13 is outside \[0, 12\]"),
        ((targets, il, tl_big), r"target_lengths\[4\] = 6 is outside \[0, 5\]"),
        ((flat[:-1], il, tl), r"concatenated targets have length"),
    ]


def test_bad_values_eager_raise_value_error():
    """Concrete integer arguments are checked before the callback."""
    lp, cases = _bad_values()
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            cj.ctc_loss(lp, *args)
        with pytest.raises(ValueError, match=msg):  # grad w.r.t. log_probs only
            jax.grad(lambda x, a=args: cj.ctc_loss(x, *a))(lp)


def test_bad_values_traced_raise_in_callback():
    """Traced integer arguments are checked by ctcseq inside the callback:
    JAX raises a RuntimeError (JaxRuntimeError) ending with ctcseq's message."""
    lp, cases = _bad_values()
    f = jax.jit(cj.ctc_loss)
    g = jax.jit(jax.grad(cj.ctc_loss))
    for args, msg in cases:
        for fn in (f, g):
            with pytest.raises((ValueError, RuntimeError), match="ValueError: " + msg):
                np.asarray(fn(lp, *args))


def test_bad_values_under_vmap_name_the_element():
    args = batch_of_cases(3, "concatenated")
    lps, tgs, ils, tls = args
    bad = tls.copy()
    bad[2, 0] += 1  # element 2's lengths sum to 9, its targets' length is 8
    f = jax.vmap(cj.ctc_loss)
    with pytest.raises((ValueError, RuntimeError),
                       match=r"ValueError: concatenated targets have length \d+ but "
                             r"sum\(target_lengths\) = \d+ \(in element \(2,\) of the vmapped"):
        np.asarray(f(lps, tgs, ils, bad))
    # element 1 alone is bad when its lengths do not sum to L, even though the
    # lengths of the whole batch would: ctcseq must not see a folded batch
    bad = tls.copy()
    bad[1, 0] += 1
    bad[2, np.argmax(bad[2])] -= 1
    assert bad.sum() == tls.sum()
    with pytest.raises((ValueError, RuntimeError), match=r"\(in element \(1,\) of the vmapped"):
        np.asarray(f(lps, tgs, ils, bad))


# ------------------------------------------------------------------ imports

def test_import_ctcseq_does_not_import_jax():
    code = "import sys, ctcseq; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
