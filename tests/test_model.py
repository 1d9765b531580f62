"""BiLSTM-CTC model: gradients, learning, optimisers, save/load."""
import json
import os

import numpy as np
import pytest

from ctcseq.ctc import ctc_loss
from ctcseq.model import CTCModel, greedy_decode, log_softmax
from ctcseq.optim import SGD, Adam, WeightNoise, clip_grad_norm, global_norm


# -- a synthetic sequence-labelling task -------------------------------------
def make_batch(rng, protos, N, noise=0.5, dtype=np.float32):
    """Symbols 1..K rendered as 3-frame noisy bursts of their prototype vector,
    separated by 1-2 frames of pure noise."""
    K, D = protos.shape
    seqs, feats = [], []
    for _ in range(N):
        labels = rng.integers(1, K + 1, rng.integers(2, 6))
        frames = [rng.normal(0, noise, (rng.integers(1, 3), D))]
        for lab in labels:
            frames.append(protos[lab - 1] + rng.normal(0, noise, (3, D)))
            frames.append(rng.normal(0, noise, (rng.integers(1, 3), D)))
        seqs.append(labels)
        feats.append(np.concatenate(frames))
    T = max(len(f) for f in feats)
    x = np.zeros((T, N, D), dtype)
    for n, f in enumerate(feats):
        x[:len(f), n] = f
    lengths = np.array([len(f) for f in feats])
    tl = np.array([len(s) for s in seqs])
    targets = np.zeros((N, tl.max()), np.int64)
    for n, s in enumerate(seqs):
        targets[n, :len(s)] = s
    return x, lengths, targets, tl, seqs


def edit_distance(a, b):
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
    return d[-1]


def label_error_rate(model, batch):
    x, lengths, _, _, seqs = batch
    hyp = model.decode(x, lengths)
    return sum(edit_distance(h, list(s)) for h, s in zip(hyp, seqs)) / sum(map(len, seqs))


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    protos = rng.choice([-1.0, 1.0], (4, 8))
    return protos


def train(model, protos, steps, seed, lr=0.02, noise_std=0.0):
    rng = np.random.default_rng(seed)
    opt = Adam(model.params, lr=lr)
    noise = WeightNoise(std=noise_std, seed=seed)
    for _ in range(steps):
        x, lengths, targets, tl, _ = make_batch(rng, protos, 16)
        with noise.perturbed(model.params):
            loss, grads = model.loss_and_grads(x, lengths, targets, tl)
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
    return loss


def test_learns_synthetic_task(task):
    model = CTCModel(8, 16, 1, 5, seed=0)
    held_out = make_batch(np.random.default_rng(99), task, 64)
    assert label_error_rate(model, held_out) > 0.5  # untrained
    loss = train(model, task, steps=150, seed=1)
    assert loss < 0.3
    assert label_error_rate(model, held_out) <= 0.02


def test_training_is_deterministic(task):
    runs = []
    for _ in range(2):
        model = CTCModel(8, 6, 1, 5, seed=3)
        train(model, task, steps=3, seed=4, noise_std=0.05)
        runs.append(model.params)
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    other = CTCModel(8, 6, 1, 5, seed=3)
    train(other, task, steps=3, seed=5, noise_std=0.05)
    assert not np.array_equal(other.params["out.weight"], runs[0]["out.weight"])


# -- gradients ----------------------------------------------------------------
@pytest.fixture(scope="module")
def small_case(task):
    x, lengths, targets, tl, _ = make_batch(np.random.default_rng(7), task[:, :3], 3,
                                            dtype=np.float64)
    return x, lengths, targets, tl


def test_loss_and_grads_match_finite_differences(small_case):
    x, lengths, targets, tl = small_case
    model = CTCModel(3, 3, 2, 5, blank=2, seed=1, dtype=np.float64, init_range=0.5)
    targets = np.where(targets == 2, 4 + 0 * targets, targets)  # keep the blank out
    loss, grads = model.loss_and_grads(x, lengths, targets, tl)
    lp = model.log_probs(x, lengths)
    assert loss == pytest.approx(float(ctc_loss(lp, targets, lengths, tl, blank=2)), abs=1e-12)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name, p in model.params.items():
        flat, g = p.reshape(-1), grads[name].reshape(-1).copy()
        for i in rng.choice(p.size, min(p.size, 6), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = float(ctc_loss(model.log_probs(x, lengths), targets, lengths, tl, blank=2))
            flat[i] = old - eps
            down = float(ctc_loss(model.log_probs(x, lengths), targets, lengths, tl, blank=2))
            flat[i] = old
            assert g[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), \
                (name, i)


def test_dropout_grads_match_finite_differences(small_case):
    """Dropout between the layers and before the output layer: the gradient
    is that of the loss with the same masks (same generator seed)."""
    x, lengths, targets, tl = small_case
    model = CTCModel(3, 3, 2, 5, seed=1, dtype=np.float64, init_range=0.5)

    def loss_with_masks():
        return model.loss_and_grads(x, lengths, targets, tl, dropout=0.4,
                                    rng=np.random.default_rng(5))

    loss, grads = loss_with_masks()
    grads = {k: v.copy() for k, v in grads.items()}
    plain = model.loss_and_grads(x, lengths, targets, tl)[0]
    assert loss != pytest.approx(plain)  # the masks do something
    rng = np.random.default_rng(1)
    eps = 1e-6
    for name, p in model.params.items():
        flat, g = p.reshape(-1), grads[name].reshape(-1)
        for i in rng.choice(p.size, min(p.size, 5), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = loss_with_masks()[0]
            flat[i] = old - eps
            down = loss_with_masks()[0]
            flat[i] = old
            assert g[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9), \
                (name, i)
    # inference never drops: right after a dropout forward, log_probs is what
    # the same weights give in a model that never ran one (whose CTC loss is
    # the loss without dropout), and not what the dropout forward computed
    fresh = CTCModel(3, 3, 2, 5, seed=1, dtype=np.float64, init_range=0.5)
    clean = fresh.log_probs(x, lengths)
    clean_loss = fresh.loss_and_grads(x, lengths, targets, tl)[0]
    for seed in (5, 6):
        dropped = model.loss_and_grads(x, lengths, targets, tl, dropout=0.4,
                                       rng=np.random.default_rng(seed))[0]
        after = model.log_probs(x, lengths)
        np.testing.assert_array_equal(after, clean)
        inferred = float(ctc_loss(after, targets, lengths, tl))
        assert inferred == pytest.approx(clean_loss, rel=1e-12)
        assert dropped != pytest.approx(inferred)
    with pytest.raises(ValueError, match="rng"):
        model.loss_and_grads(x, lengths, targets, tl, dropout=0.2)
    with pytest.raises(ValueError, match="dropout"):
        model.loss_and_grads(x, lengths, targets, tl, dropout=1.0, rng=rng)


def test_dropout_mask_keeps_the_expected_value():
    from ctcseq.nn import dropout_mask
    m = dropout_mask((400, 500), 0.25, np.random.default_rng(0), np.dtype(np.float32))
    assert m.dtype == np.float32
    assert set(np.unique(m)) == {0.0, np.float32(1 / 0.75)}
    assert (m == 0).mean() == pytest.approx(0.25, abs=0.005)
    assert m.mean() == pytest.approx(1.0, abs=0.01)
    assert dropout_mask((3,), 0.0, None, np.dtype(np.float64)) is None


def test_padding_does_not_affect_loss_or_grads(small_case):
    x, lengths, targets, tl = small_case
    model = CTCModel(3, 4, 1, 5, seed=2, dtype=np.float64)
    loss, grads = model.loss_and_grads(x, lengths, targets, tl)
    grads = {k: v.copy() for k, v in grads.items()}
    x2 = x.copy()
    x2[np.arange(x.shape[0])[:, None] >= lengths[None, :]] = 5.0
    loss2, grads2 = model.loss_and_grads(x2, lengths, targets, tl)
    assert loss2 == loss
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])


def test_stride_stacks_frames(small_case):
    """stride=k equals a stride-1 model fed the hand-stacked frames, padding
    past each length never matters, and the CTC loss sees ceil(T/k) steps."""
    x, lengths, targets, tl = small_case
    k = 2
    model = CTCModel(3, 4, 2, 5, seed=3, dtype=np.float64, stride=k)
    plain = CTCModel(3 * k, 4, 2, 5, seed=3, dtype=np.float64)
    for name in model.params:
        plain.params[name][...] = model.params[name]
    T, N, D = x.shape
    out_len = -(-lengths // k)
    assert list(model.output_lengths(lengths)) == list(out_len)
    stacked = np.zeros((out_len.max(), N, k * D))
    for n in range(N):
        f = np.zeros((out_len[n] * k, D))
        f[:lengths[n]] = x[:lengths[n], n]
        stacked[:out_len[n], n] = f.reshape(out_len[n], k * D)
    lp = model.log_probs(x, lengths)
    assert lp.shape == (out_len.max(), N, 5)
    ref = plain.log_probs(stacked, out_len)
    for n in range(N):
        np.testing.assert_allclose(lp[:out_len[n], n], ref[:out_len[n], n], atol=1e-12)
    x2 = x.copy()
    x2[np.arange(T)[:, None] >= lengths[None, :]] = 7.0
    loss, _ = model.loss_and_grads(x2, lengths, targets, tl)
    assert loss == pytest.approx(float(ctc_loss(ref, targets, out_len, tl)), abs=1e-12)
    assert model.decode(x, lengths) == greedy_decode(ref, out_len)
    # a length past T is refused even where ceil(length / k) would fit
    with pytest.raises(ValueError, match=r"lengths\[0\] = 6 is outside \[0, 5\]"):
        model.log_probs(np.zeros((5, 1, 3)), [6])


def test_greedy_decode_and_log_softmax():
    lp = np.log(np.array([[[.1, .9]], [[.1, .9]], [[.9, .1]], [[.2, .8]], [[.3, .7]]]))
    assert greedy_decode(lp, [5]) == [[1, 1]]
    assert greedy_decode(lp, [2]) == [[1]]
    z = np.array([[1000.0, 0.0, -5.0]])
    np.testing.assert_allclose(np.exp(log_softmax(z)).sum(), 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_classes=0), "num_classes"),
    (dict(blank=5), "blank"),
    (dict(vocabulary={"a": object()}), "vocabulary"),
    (dict(features={1, 2}), "features"),
    (dict(hidden_size=-1), "hidden_size"),
    (dict(stride=0), "stride"),
])
def test_bad_model_arguments(kwargs, match):
    args = dict(input_size=3, hidden_size=4, num_layers=1, num_classes=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        CTCModel(**args)


# -- optimisers ---------------------------------------------------------------
def test_sgd_momentum_by_hand():
    p = {"w": np.array([1.0, -2.0])}
    opt = SGD(p, lr=0.1, momentum=0.9)
    g = {"w": np.array([1.0, 2.0])}
    opt.step(g)
    np.testing.assert_allclose(p["w"], [0.9, -2.2])
    opt.step(g)  # v = 0.9 * (-0.1 g) - 0.1 g = -0.19 g
    np.testing.assert_allclose(p["w"], [0.9 - 0.19, -2.2 - 0.38])
    with pytest.raises(ValueError, match="momentum"):
        SGD(p, momentum=1.0)
    with pytest.raises(ValueError, match="grads must have the same names"):
        opt.step({"v": np.zeros(2)})


def test_adam_by_hand():
    p = {"w": np.array([1.0, 1.0], np.float32)}
    opt = Adam(p, lr=0.01)
    opt.step({"w": np.array([3.0, -1e-3], np.float32)})
    # first step: m/c1 = g, v/c2 = g**2, so the step is lr * sign(g) (eps aside)
    np.testing.assert_allclose(p["w"], [0.99, 1.01], rtol=1e-5)
    assert p["w"].dtype == np.float32
    opt.step({"w": np.array([3.0, -1e-3], np.float32)})
    np.testing.assert_allclose(p["w"], [0.98, 1.02], rtol=1e-5)


def _adam_reference(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Kingma & Ba's algorithm 1 in float64, written out independently."""
    p, m, v = p.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_reference(dtype):
    """The fused kernel (C-contiguous arrays) and the NumPy path (others,
    here a Fortran-ordered array) both follow the reference."""
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((40, 30)).astype(dtype)
    grads = [rng.standard_normal((40, 30)).astype(dtype) for _ in range(12)]
    ref = _adam_reference(w0, [g.astype(np.float64) for g in grads], lr=0.01)
    for w in (w0.copy(), np.asfortranarray(w0)):
        p = {"w": w}
        opt = Adam(p, lr=0.01)
        for g in grads:
            opt.step({"w": g})
        assert p["w"] is w and w.dtype == dtype
        # float32 weights are rounded at every step: a few ulp after 12 steps
        np.testing.assert_allclose(w, ref, rtol=0, atol=1e-12 if dtype == np.float64 else 2e-6)
        assert np.abs(w - w0).max() > 0.05


def test_clip_grad_norm():
    g = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    assert g["a"][0] == 3.0  # unchanged below the limit
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    assert global_norm(g) == pytest.approx(1.0)
    np.testing.assert_allclose(g["a"], [0.6])
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0.0)


def test_weight_noise_perturbs_then_restores_exactly():
    p = {"w": np.arange(5.0), "b": np.ones(3)}
    clean = {k: v.copy() for k, v in p.items()}
    seen = []
    for seed in (1, 1, 2):
        noise = WeightNoise(std=0.1, seed=seed, include=lambda k: k == "w")
        with noise.perturbed(p):
            seen.append(p["w"].copy())
            np.testing.assert_array_equal(p["b"], clean["b"])
        for k in p:
            np.testing.assert_array_equal(p[k], clean[k])
    assert 0 < np.abs(seen[0] - clean["w"]).max() < 1.0
    np.testing.assert_array_equal(seen[0], seen[1])
    assert not np.array_equal(seen[0], seen[2])
    with pytest.raises(RuntimeError):  # restored even when the body raises
        with WeightNoise(0.1).perturbed(p):
            raise RuntimeError
    np.testing.assert_array_equal(p["w"], clean["w"])


# -- save / load --------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model = CTCModel(3, 4, 2, 5, blank=0, seed=9, vocabulary=["_", "a", "b", "c", "d"],
                     features={"type": "fbank", "n_mels": 3, "deltas": 0}, stride=2)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def test_save_load_round_trip(saved):
    model, path = saved
    loaded = CTCModel.load(path)
    assert loaded.vocabulary == ["_", "a", "b", "c", "d"]
    assert loaded.features == {"type": "fbank", "n_mels": 3, "deltas": 0}
    assert loaded.dtype == np.float32 and loaded.lstm.num_layers == 2 and loaded.stride == 2
    for k in model.params:
        np.testing.assert_array_equal(loaded.params[k], model.params[k])
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.log_probs(x, [5, 3]), model.log_probs(x, [5, 3]))
    assert [f for f in os.listdir(path.parent) if f != "model.npz"] == []  # no temp left


def test_load_truncated_file(saved):
    _, path = saved
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated or corrupt"):
            CTCModel.load(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        CTCModel.load(path)
    with pytest.raises(FileNotFoundError):
        CTCModel.load(path.parent / "missing.npz")


def test_load_corrupt_file(saved):
    model, path = saved
    data = bytearray(path.read_bytes())
    raw = model.params["lstm.weight_hh_l1"].tobytes()
    at = bytes(data).find(raw)
    assert at > 0
    data[at + 7] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        CTCModel.load(path)


def _rewrite(path, edit):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    cfg = json.loads(arrays["__config__"].tobytes())
    edit(cfg, arrays)
    arrays["__config__"] = np.frombuffer(json.dumps(cfg).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("edit, match", [
    (lambda c, a: c["model"].update(hidden_size=5), "shape"),
    (lambda c, a: c["model"].update(num_layers=1), "weights do not match"),
    (lambda c, a: a.pop("out.bias"), "missing \\['out.bias'\\]"),
    (lambda c, a: a.__setitem__("out.bias", a["out.bias"] + 1), "checksum"),
    (lambda c, a: a.__setitem__("out.bias", a["out.bias"].astype(np.float64)), "dtype"),
    (lambda c, a: c.update(format_version=99), "format version 99"),
    (lambda c, a: c.update(format="something.else"), "not a ctcseq.CTCModel file"),
    (lambda c, a: c["model"].pop("blank"), "invalid model configuration"),
])
def test_load_mismatched_file(saved, edit, match):
    _, path = saved
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=match):
        CTCModel.load(path)


def test_load_plain_npz_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a ctcseq model file"):
        CTCModel.load(path)


def test_save_is_atomic(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()
    model.params["out.bias"] += 1.0

    def crash(f, **arrays):
        f.write(b"PK partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["model.npz"]
    CTCModel.load(path)  # still valid
    model.save(path)
    np.testing.assert_array_equal(CTCModel.load(path).params["out.bias"],
                                  model.params["out.bias"])
