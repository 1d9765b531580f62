"""Training loop: batching, learning, checkpoints, exact resume after kill -9."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import train_fixture
from ctcseq.model import CTCModel
from ctcseq.train import TrainConfig, make_batches, mask_batch


def test_make_batches_cover_everything_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 100, size=200)
    batches = make_batches(lengths, 400, np.random.default_rng(1))
    flat = np.sort(np.concatenate(batches))
    np.testing.assert_array_equal(flat, np.arange(200))
    for b in batches:
        assert lengths[b].max() * len(b) <= 400
    again = make_batches(lengths, 400, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    long = make_batches([1000, 10], 400, np.random.default_rng(0))
    assert sorted(len(b) for b in long) == [1, 1]


def test_mask_batch_hides_bands_and_spans_within_each_length():
    T, N, F = 200, 3, 10
    x = np.ones((T, N, 3 * F), np.float32)
    lengths = np.array([200, 120, 40])
    mask_batch(x, lengths, np.random.default_rng(0), freq_masks=2, freq_width=4,
               time_masks=2, time_width=30, blocks=3)
    blocks = x.reshape(T, N, 3, F)
    for n, L in enumerate(lengths):
        assert (x[L:, n] == 1).all()  # padding untouched
        frames = (x[:L, n] == 0).all(axis=1)  # fully masked frames: the time spans
        assert 0 < frames.sum() <= 2 * (L // 20)
        rest = blocks[:L, n][~frames]
        hidden = (rest == 0).all(axis=0)  # (3, F): channels hidden in every frame left
        assert (rest[:, hidden == 0] == 1).all()  # nothing else is touched
        assert (hidden == hidden[0]).all()  # the same channels in statics and deltas
        assert 0 < hidden[0].sum() <= 8
    again = np.ones_like(x)
    mask_batch(again, lengths, np.random.default_rng(0), 2, 4, 2, 30, 3)
    np.testing.assert_array_equal(again, x)
    with pytest.raises(ValueError, match="blocks"):
        mask_batch(x, lengths, np.random.default_rng(0), 1, 2, blocks=7)


def test_bad_train_config():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="batch_frames"):
        TrainConfig(batch_frames=0)
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig(dropout=1.0)
    with pytest.raises(ValueError, match="freq_width"):
        TrainConfig(freq_width=-1)
    with pytest.raises(ValueError, match="feature_blocks"):
        TrainConfig(feature_blocks=0)


def test_learns_and_resume_after_kill_is_exact(tmp_path):
    # uninterrupted run
    full = train_fixture.build(str(tmp_path / "full"))
    history = full.run(log=lambda *_: None)
    assert len(history) == 5
    assert history[-1]["dev_err"] < 0.05 and history[0]["dev_err"] > 0.5
    lines = (tmp_path / "full" / "train.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1, 2, 3, 4, 5]
    assert (tmp_path / "full" / "curves.png").exists() or not _has_matplotlib()
    best = CTCModel.load(tmp_path / "full" / "best.npz")
    assert best.config()["model"] == full.model.config()["model"]

    # killed in the middle of epoch 2 (SIGKILL just after its 3rd batch's
    # checkpoint), then resumed in this process
    lengths = [e.feats.shape[0] for e in full.train]
    n_first = len(make_batches(lengths, full.cfg.batch_frames,
                               np.random.default_rng([full.cfg.seed, 0])))
    kill_at = n_first + 4
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(train_fixture.__file__)}
    proc = subprocess.run([sys.executable, train_fixture.__file__, str(killed), str(kill_at)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr
    resumed = train_fixture.build(str(killed))
    assert resumed.resume()
    assert resumed.state["epoch"] == 1 and resumed.state["batch"] == 2  # mid-epoch checkpoint
    resumed.run(log=lambda *_: None)
    for k, p in full.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], p, err_msg=k)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.state["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("ema, epochs", [(0.8, 1), (0.5, 2)])
def test_weight_average_by_hand(tmp_path, monkeypatch, ema, epochs):
    """The average follows TrainConfig's documented rule, checked against
    values worked out by hand rather than the rule's own code.

    The optimiser is stubbed so that update k (k = 1, 2, ...) sets every
    weight to s k, and the average starts from zero.  Update n + 1 uses the
    decay d_n = min(ema, (1 + n) / (10 + n)).  While d_n is below ema,
    a_1 = (1 - 1/10) s = 0.9 s, and a_n = 0.9 n s gives
    a_{n+1} = d_n a_n + (1 - d_n)(n + 1) s = (n + 1)(0.9 n + 9) s / (10 + n)
    = 0.9 (n + 1) s: the average is 0.9 n s until (1 + n) / (10 + n) reaches
    ema (n = 35 for 0.8, n = 8 for 0.5).  With ema = 0.5, from a_9 = 8.1 s on,
    e_n = a_n - (n - 1) s halves at every update (e_{n+1} = 0.5 a_n +
    0.5 (n + 1) s - n s = 0.5 e_n), so a_n = (n - 1 + 0.1 / 2**(n - 9)) s.
    Dev evaluation and best.npz see the average; training goes on from the
    trained weights.
    """
    import ctcseq.train as tr

    def by_hand(n):
        return 0.9 * n if ema == 0.8 or n <= 9 else n - 1 + 0.1 / 2 ** (n - 9)

    s = 0.01
    t = train_fixture.build(str(tmp_path), max_epochs=epochs)
    t.cfg.ema = ema
    for k in t.model.params:
        t.model.params[k][...] = 0.0
        t.ema[k][...] = 0.0
    updates = [0]

    def step(grads):
        updates[0] += 1
        for p in t.model.params.values():
            p[...] = s * updates[0]

    t.opt.step = step
    seen = []  # (updates so far, the weights dev evaluation sees)

    def evaluate(model, *args, **kwargs):
        seen.append((updates[0], {k: v.copy() for k, v in model.params.items()}))
        return 1.0 / len(seen), 0.5 / len(seen)  # every epoch the best so far

    monkeypatch.setattr(tr, "evaluate", evaluate)
    t.run(log=lambda *_: None)
    assert len(seen) == epochs and seen[0][0] >= 10  # both regimes when ema = 0.5
    for n, weights in seen:
        for k, p in weights.items():
            np.testing.assert_allclose(p, s * by_hand(n), rtol=1e-5, err_msg=(n, k))
    n = updates[0]
    for k, p in t.model.params.items():  # the trained weights are back
        np.testing.assert_array_equal(p, np.float32(s * n), err_msg=k)
    best = CTCModel.load(tmp_path / "best.npz")  # the averaged weights are the ones kept
    for k, p in best.params.items():
        np.testing.assert_allclose(p, s * by_hand(n), rtol=1e-5, err_msg=k)
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def test_resume_refuses_other_settings(tmp_path):
    t = train_fixture.build(str(tmp_path), max_epochs=1)
    t.run(log=lambda *_: None)
    other = train_fixture.build(str(tmp_path), max_epochs=2, checkpoint_every=5)
    with pytest.raises(ValueError, match="other training settings"):
        other.resume()
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="unreadable"):
        train_fixture.build(str(tmp_path), max_epochs=1).resume()


def test_learning_rate_decays_per_epoch(tmp_path, monkeypatch):
    import ctcseq.train as tr
    t = train_fixture.build(str(tmp_path), max_epochs=3)
    seen = []
    monkeypatch.setattr(tr, "evaluate", lambda *a, **k: seen.append(t.opt.lr) or (1.0, 0.5))
    t.run(log=lambda *_: None)
    assert seen == pytest.approx([0.03, 0.03 * 0.7, 0.03 * 0.49], rel=1e-12)
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=0.0)
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)


def test_early_stopping_waits_while_dev_loss_falls_at_equal_error(tmp_path, monkeypatch):
    # A young model outputs only blanks: 100% error for several epochs while
    # the dev loss falls.  That must not count against patience.
    import ctcseq.train as tr
    results = iter([(3.0, 1.0), (2.9, 1.0), (2.8, 1.0), (2.7, 1.0), (1.0, 0.4), (1.1, 0.5),
                    (1.2, 0.6)])
    monkeypatch.setattr(tr, "evaluate", lambda *a, **k: next(results))
    t = train_fixture.build(str(tmp_path), max_epochs=7)
    t.cfg.patience = 2
    history = t.run(log=lambda *_: None)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6, 7]
    assert t.state["best_epoch"] == 5
    results = iter([(3.0, 1.0), (3.1, 1.0), (3.2, 1.0), (0.5, 0.1)])
    monkeypatch.setattr(tr, "evaluate", lambda *a, **k: next(results))
    t = train_fixture.build(str(tmp_path / "b"), max_epochs=4)
    t.cfg.patience = 2
    history = t.run(log=lambda *_: None)
    assert len(history) == 3 and t.state["done"]  # stopped: no error or loss progress
