"""A tiny synthetic sequence-labelling task shared by the training tests
(also run in a subprocess that kills itself mid-epoch)."""
import os
import signal
import sys

import numpy as np

from ctcseq.model import CTCModel
from ctcseq.train import Example, TrainConfig, Trainer

NUM_LABELS = 4  # classes 1..4, blank 0
DIM = 6


def render(labels, rng):
    """Each label a burst of 3-5 frames around its own mean, gaps of noise."""
    means = np.eye(NUM_LABELS + 1, DIM) * 3.0
    frames = []
    for lab in labels:
        frames += [means[0]] * rng.integers(1, 3)
        frames += [means[lab]] * rng.integers(3, 6)
    frames += [means[0]] * 2
    x = np.array(frames) + rng.normal(0, 0.6, size=(len(frames), DIM))
    return x.astype(np.float32)


def examples(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = rng.integers(1, NUM_LABELS + 1, size=rng.integers(2, 6))
        out.append(Example(f"u{i}", render(labels, rng), labels))
    return out


def build(out_dir, max_epochs=5, checkpoint_every=2):
    model = CTCModel(DIM, 24, 1, NUM_LABELS + 1, seed=1)
    cfg = TrainConfig(optimizer="adam", lr=0.03, lr_decay=0.7, batch_frames=120, max_epochs=max_epochs,
                      patience=0, checkpoint_every=checkpoint_every, weight_noise=0.01, seed=3,
                      dropout=0.1, time_masks=1, time_width=2, ema=0.8)
    return Trainer(model, examples(60, 0), examples(15, 1), out_dir, cfg, progress=False)


def build_small(out_dir, device="cpu"):
    """A smaller task (and model) for the CUDA simulator, float64."""
    model = CTCModel(DIM, 4, 1, NUM_LABELS + 1, seed=1, dtype=np.float64, device=device)
    cfg = TrainConfig(optimizer="adam", lr=0.03, batch_frames=120, max_epochs=1, patience=0,
                      checkpoint_every=0, weight_noise=0.01, seed=3, dropout=0.1,
                      time_masks=1, time_width=2, ema=0.8)
    train = [Example(e.utt, e.feats.astype(np.float64), e.labels) for e in examples(12, 0)]
    dev = [Example(e.utt, e.feats.astype(np.float64), e.labels) for e in examples(3, 1)]
    return Trainer(model, train, dev, out_dir, cfg, progress=False)


if __name__ == "__main__":
    # python train_fixture.py OUT_DIR KILL_AT: SIGKILL ourselves at the KILL_AT-th batch
    out_dir, kill_at = sys.argv[1], int(sys.argv[2])
    trainer = build(out_dir)
    calls = [0]
    real = trainer.model.loss_and_grads

    def counting(*a, **k):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    trainer.model.loss_and_grads = counting
    trainer.run(log=lambda *_: None)
