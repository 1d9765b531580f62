"""ctcseq.torch (the PyTorch adapter) against torch.nn.functional.ctc_loss.

torch's ctc_loss backward returns ``exp(log_probs) - occupancy`` where ours is
the true derivative ``-occupancy``: the two agree once passed back through a
log-softmax, so gradients are compared with respect to the logits.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from ctcseq.torch import CTCLoss, ctc_loss  # noqa: E402

OPS = (torch.ops.ctcseq.ctc_losses.default, torch.ops.ctcseq.ctc_losses_grad.default)


def tol(dtype):
    # ctcseq works in float64 for both dtypes; torch's float32 kernel does not
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)


def make_case(seed=0, dtype=torch.float64, T=10, N=4, C=6, S=5, blank=0, infeasible=True):
    """Logits (T, N, C) and padded int64 targets with repeats, an empty target
    and (if ``infeasible``) a target too long for its input (sequence 0)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(T, N, C, generator=g, dtype=dtype)
    labels = torch.tensor([c for c in range(C) if c != blank])
    targets = labels[torch.randint(0, C - 1, (N, S), generator=g)]
    targets[:, 1] = targets[:, 0]                       # a repeat
    il = torch.randint(T - 3, T + 1, (N,), generator=g)
    tl = torch.randint(1, S + 1, (N,), generator=g)
    il[0], tl[0] = (S - 1, S) if infeasible else (T, 2)  # S labels need >= S frames
    tl[1] = 0                                           # empty target
    return logits, targets, il, tl


def concatenated(targets, tl):
    return torch.cat([targets[n, : tl[n]] for n in range(len(tl))])


def loss_and_logits_grad(fn, logits, targets, il, tl, upstream=None, **kw):
    """fn's loss of log_softmax(logits) and d(upstream . loss)/d(logits)."""
    x = logits.detach().clone().requires_grad_()
    loss = fn(x.log_softmax(-1), targets, il, tl, **kw)
    up = torch.ones_like(loss) if upstream is None else upstream
    (g,) = torch.autograd.grad((loss * up).sum(), x)
    return loss.detach(), g


def assert_matches_torch(logits, targets, il, tl, upstream=None, targets_ref=None, **kw):
    loss, grad = loss_and_logits_grad(ctc_loss, logits, targets, il, tl, upstream, **kw)
    ref = targets if targets_ref is None else targets_ref
    want_loss, want_grad = loss_and_logits_grad(F.ctc_loss, logits, ref, il, tl, upstream, **kw)
    assert loss.dtype == logits.dtype and loss.shape == want_loss.shape
    torch.testing.assert_close(loss, want_loss, **tol(logits.dtype))
    torch.testing.assert_close(grad, want_grad, equal_nan=True, **tol(logits.dtype))
    return loss, grad


@pytest.mark.parametrize("targets_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_torch(dtype, reduction, zero_infinity, layout, targets_dtype):
    logits, targets, il, tl = make_case(1, dtype)
    if layout == "concatenated":
        targets = concatenated(targets, tl)
    targets = targets.to(targets_dtype)
    # an upstream gradient that is not ones: per-sequence weights, or a scale
    N = logits.shape[1]
    upstream = (torch.arange(1, N + 1, dtype=dtype) / 2 if reduction == "none"
                else torch.tensor(3.0, dtype=dtype))
    loss, grad = assert_matches_torch(logits, targets, il, tl, upstream,
                                      reduction=reduction, zero_infinity=zero_infinity)
    # sequence 0 is infeasible: inf loss and NaN gradient, or 0 and 0
    losses = ctc_loss(logits.log_softmax(-1), targets, il, tl, reduction="none",
                      zero_infinity=zero_infinity)
    if zero_infinity:
        assert losses[0] == 0 and torch.all(grad[:, 0] == 0)
        assert torch.isfinite(grad).all()
    else:
        assert losses[0] == float("inf") and torch.isnan(grad[: il[0], 0]).all()
    assert torch.isfinite(losses[1:]).all()
    assert torch.isfinite(grad[:, 1:]).all()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_upstream_gradient_scales(reduction):
    """A scaled loss (or per-sequence weights) scales the gradient."""
    logits, targets, il, tl = make_case(2, infeasible=False)
    _, g1 = loss_and_logits_grad(ctc_loss, logits, targets, il, tl, reduction=reduction)
    if reduction == "none":
        w = torch.tensor([0.5, -2.0, 0.0, 3.0], dtype=logits.dtype)
        _, g = loss_and_logits_grad(ctc_loss, logits, targets, il, tl, w, reduction=reduction)
        torch.testing.assert_close(g, g1 * w[None, :, None], rtol=1e-12, atol=1e-15)
        assert torch.all(g[:, 2] == 0) and torch.any(g[:, 3] != 0)
    else:
        _, g = loss_and_logits_grad(ctc_loss, logits, targets, il, tl,
                                    torch.tensor(3.0, dtype=logits.dtype), reduction=reduction)
        torch.testing.assert_close(g, 3.0 * g1, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["list", "tuple"])
def test_lengths_as_python_sequences(kind):
    logits, targets, il, tl = make_case(3, infeasible=False)
    as_seq = list if kind == "list" else tuple
    il_py, tl_py = as_seq(il.tolist()), as_seq(tl.tolist())
    for reduction in ("none", "mean"):
        loss, grad = assert_matches_torch(logits, targets, il_py, tl_py, reduction=reduction)
        loss_t, grad_t = loss_and_logits_grad(ctc_loss, logits, targets, il, tl,
                                              reduction=reduction)
        torch.testing.assert_close(loss, loss_t, rtol=0, atol=0)
        torch.testing.assert_close(grad, grad_t, rtol=0, atol=0)


@pytest.mark.parametrize("lengths", ["0-d", "1-element", "list"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_unbatched(reduction, lengths):
    T, C, S = 9, 5, 3
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(T, C, generator=g, dtype=torch.float64)
    targets = torch.tensor([2, 2, 4])
    il, tl = {"0-d": (torch.tensor(T - 1), torch.tensor(S)),
              "1-element": (torch.tensor([T - 1]), torch.tensor([S])),
              "list": ([T - 1], [S])}[lengths]
    loss, grad = assert_matches_torch(logits, targets, il, tl, reduction=reduction)
    assert loss.shape == () and grad.shape == (T, C)
    assert torch.all(grad[T - 1] == 0) and torch.any(grad[0] != 0)


@pytest.mark.parametrize("blank", [2, 5])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_blank_not_zero(blank, layout):
    logits, targets, il, tl = make_case(5, C=6, blank=blank)
    assert not (targets == blank).any() and (targets == 0).any()
    if layout == "concatenated":
        targets = concatenated(targets, tl)
    for reduction in ("none", "mean"):
        assert_matches_torch(logits, targets, il, tl, blank=blank, reduction=reduction,
                             zero_infinity=True)


def test_non_contiguous_log_probs():
    logits, targets, il, tl = make_case(6, infeasible=False)
    strided = logits.transpose(0, 1).contiguous().transpose(0, 1)   # (T, N, C), N-major
    assert not strided.is_contiguous()
    x = strided.detach().clone().requires_grad_()
    lp = x.log_softmax(-1).transpose(0, 1).contiguous().transpose(0, 1)
    assert not lp.is_contiguous()
    loss = ctc_loss(lp, targets, il, tl, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    want_loss, want_grad = loss_and_logits_grad(F.ctc_loss, logits, targets, il, tl,
                                                reduction="sum")
    torch.testing.assert_close(loss.detach(), want_loss, rtol=1e-10, atol=0)
    torch.testing.assert_close(g, want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_gradcheck_on_log_probs(reduction, zero_infinity):
    """Our gradient is the true derivative w.r.t. log_probs, not torch's convention."""
    logits, targets, il, tl = make_case(7, T=6, N=3, C=4, S=3, infeasible=zero_infinity)
    # not normalised: the loss is a function of arbitrary log_probs
    lp = (0.5 * logits).detach().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: ctc_loss(x, targets, il, tl, reduction=reduction,
                           zero_infinity=zero_infinity), (lp,))


def test_no_grad_path_and_output_type():
    logits, targets, il, tl = make_case(8, dtype=torch.float32)
    lp = logits.log_softmax(-1)
    with torch.no_grad():
        a = ctc_loss(lp.requires_grad_(), targets, il, tl, reduction="none")
    b = ctc_loss(lp.detach(), targets, il, tl, reduction="none")
    c = ctc_loss(lp, targets, il, tl, reduction="none")
    assert not a.requires_grad and not b.requires_grad and c.requires_grad
    for x in (a, b, c):
        assert x.dtype == torch.float32 and x.device == lp.device and x.shape == (4,)
    torch.testing.assert_close(a, c.detach(), rtol=0, atol=0)
    torch.testing.assert_close(b, c.detach(), rtol=0, atol=0)
    assert ctc_loss(lp, targets, il, tl).shape == ()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_opcheck(layout, dtype):
    logits, targets, il, tl = make_case(9, dtype=dtype, T=6, N=3, C=4, S=3)
    if layout == "concatenated":
        targets = concatenated(targets, tl)
    lp = logits.log_softmax(-1)
    losses_op, grad_op = OPS
    torch.library.opcheck(losses_op, (lp, targets, il, tl, 0, False))
    torch.library.opcheck(losses_op, (lp, targets.int(), il.int(), tl, 0, True))
    torch.library.opcheck(grad_op, (lp.clone().requires_grad_(), targets, il, tl, 0, True))
    torch.library.opcheck(grad_op, (lp, targets.int(), il, tl.int(), 0, True))


def test_torch_compile_aot_eager():
    logits, targets, il, tl = make_case(10, infeasible=False)
    w = torch.linspace(0.5, 2.0, logits.shape[1], dtype=logits.dtype)

    def fn(x, targets, il, tl):
        losses = ctc_loss(x.log_softmax(-1), targets, il, tl, reduction="none")
        return (w * losses).sum() + 0.5 * ctc_loss(x.log_softmax(-1), targets, il, tl)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    x = logits.clone().requires_grad_()
    loss = compiled(x, targets, il, tl)
    (g,) = torch.autograd.grad(loss, x)
    x_ref = logits.clone().requires_grad_()
    want = ((w * F.ctc_loss(x_ref.log_softmax(-1), targets, il, tl, reduction="none")).sum()
            + 0.5 * F.ctc_loss(x_ref.log_softmax(-1), targets, il, tl))
    (want_g,) = torch.autograd.grad(want, x_ref)
    torch.testing.assert_close(loss.detach(), want.detach(), rtol=1e-10, atol=0)
    torch.testing.assert_close(g, want_g, rtol=1e-10, atol=1e-12)
    # the no-gradient op under compile
    with torch.no_grad():
        torch.testing.assert_close(compiled(logits, targets, il, tl), want.detach(),
                                   rtol=1e-10, atol=0)
    # ctcseq's ValueError comes through the compiled function unchanged
    with pytest.raises(ValueError, match="targets of sequence 0 .* the blank label"):
        compiled(x, torch.zeros_like(targets), il, tl)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_module(reduction):
    logits, targets, il, tl = make_case(11)
    ours, theirs = (CTCLoss(blank=0, reduction=reduction, zero_infinity=True),
                    torch.nn.CTCLoss(blank=0, reduction=reduction, zero_infinity=True))
    assert isinstance(ours, torch.nn.Module) and "zero_infinity=True" in repr(ours)
    loss, g = loss_and_logits_grad(lambda *a: ours(*a), logits, targets, il, tl)
    want, want_g = loss_and_logits_grad(lambda *a: theirs(*a), logits, targets, il, tl)
    torch.testing.assert_close(loss, want, rtol=1e-10, atol=0)
    torch.testing.assert_close(g, want_g, rtol=1e-10, atol=1e-12)


def test_training_matches_torch():
    """~10 SGD steps of a Linear + log_softmax model, same init and data."""
    g = torch.Generator().manual_seed(12)
    T, N, D, C, S = 12, 4, 5, 6, 4
    feats = torch.randn(T, N, D, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (N, S), generator=g)
    il = torch.tensor([12, 11, 9, 12])
    tl = torch.tensor([4, 3, 2, 1])
    torch.manual_seed(0)
    init = torch.nn.Linear(D, C).double().state_dict()

    def train(loss_fn):
        model = torch.nn.Linear(D, C).double()
        model.load_state_dict(init)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for _ in range(10):
            opt.zero_grad()
            loss = loss_fn(model(feats).log_softmax(-1), targets, il, tl)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses), model.weight.detach().clone()

    ours, w_ours = train(ctc_loss)
    want, w_want = train(F.ctc_loss)
    np.testing.assert_allclose(ours, want, rtol=1e-5)
    assert ours[-1] < 0.8 * ours[0]                       # it does learn
    torch.testing.assert_close(w_ours, w_want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_bad_arguments_raise_valueerror(requires_grad):
    logits, targets, il, tl = make_case(13, infeasible=False)
    lp = logits.log_softmax(-1).requires_grad_(requires_grad)
    bad_targets = targets.clone()
    bad_targets[2, 0] = 0                                 # the blank
    with pytest.raises(ValueError, match="targets of sequence 2 .* the blank label"):
        ctc_loss(lp, bad_targets, il, tl)
    with pytest.raises(ValueError, match="targets must hold integers"):
        ctc_loss(lp, targets.double(), il, tl)
    with pytest.raises(ValueError, match=r"input_lengths\[1\] = 99"):
        ctc_loss(lp, targets, [10, 99, 10, 10], tl)
    with pytest.raises(ValueError, match="target_lengths must have shape"):
        ctc_loss(lp, targets, il, tl[:3])
    with pytest.raises(ValueError, match="blank = 6 is outside"):
        ctc_loss(lp, targets, il, tl, blank=6)
    with pytest.raises(ValueError, match="blank must be an integer"):
        ctc_loss(lp, targets, il, tl, blank=0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        ctc_loss(lp, targets, il, tl, reduction="average")
    with pytest.raises(ValueError, match="log_probs must be float32 or float64"):
        ctc_loss(lp.half(), targets, il, tl)
    with pytest.raises(ValueError, match="log_probs must be 3-D"):
        ctc_loss(lp[..., None], targets, il, tl)
    with pytest.raises(ValueError, match="reduction must be one of"):
        CTCLoss(reduction="average")


def test_import_ctcseq_does_not_import_torch():
    code = "import sys, ctcseq; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    """CUDA log_probs (targets and lengths on CPU or CUDA) match the CPU adapter."""
    logits, targets, il, tl = make_case(14, dtype=dtype)
    for reduction in ("none", "mean"):
        want_loss, want_grad = loss_and_logits_grad(ctc_loss, logits, targets, il, tl,
                                                    reduction=reduction, zero_infinity=True)
        for meta in ("cpu", "cuda"):
            loss, grad = loss_and_logits_grad(
                ctc_loss, logits.cuda(), targets.to(meta), il.to(meta), tl.to(meta),
                reduction=reduction, zero_infinity=True)
            assert loss.device.type == "cuda" and grad.device.type == "cuda"
            assert loss.dtype == dtype
            torch.testing.assert_close(loss.cpu(), want_loss, **tol(dtype))
            torch.testing.assert_close(grad.cpu(), want_grad, **tol(dtype))
    lp = logits.log_softmax(-1).cuda()
    torch.library.opcheck(OPS[0], (lp, targets, il, tl, 0, True))
    torch.library.opcheck(OPS[1], (lp.clone().requires_grad_(), targets, il, tl, 0, True))
