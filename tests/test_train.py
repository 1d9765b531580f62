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


def test_weight_average(tmp_path):
    t = train_fixture.build(str(tmp_path), max_epochs=1)
    start = {k: v.copy() for k, v in t.model.params.items()}
    t.cfg.max_epochs = 1
    seen = []
    real_step = t.opt.step

    def step(grads):  # record the weights after each update
        real_step(grads)
        seen.append({k: v.copy() for k, v in t.model.params.items()})

    t.opt.step = step
    t.run(log=lambda *_: None)
    expected = start
    for n, w in enumerate(seen):
        d = min(0.8, (1 + n) / (10 + n))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in w}
    last = {k: v.copy() for k, v in t.model.params.items()}
    with t.averaged_weights():
        for k, p in t.model.params.items():
            np.testing.assert_allclose(p, expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k, p in t.model.params.items():  # the trained weights are back
        np.testing.assert_array_equal(p, last[k])
    best = CTCModel.load(tmp_path / "best.npz")  # the averaged weights are the ones kept
    for k, p in best.params.items():
        np.testing.assert_allclose(p, expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
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
