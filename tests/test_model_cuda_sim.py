"""The model on device "cuda" under Numba's CUDA simulator, against the same
model on the CPU: the BiLSTM's time loops (kernels/lstm_cuda.py), the CTC
kernels, the Adam kernel and the training loop, with NumPy as the simulated
device's array module (the real-GPU run of the same is tests/test_cuda_gpu.py).
Tiny shapes: the simulator runs every GPU thread as an OS thread.
"""
import numpy as np
import pytest

import ctcseq
from ctcseq.errors import UserError

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
pytestmark = pytest.mark.skipif(not ctcseq.device.simulating(),
                                reason="simulator tests (set NUMBA_ENABLE_CUDASIM=1)")

from ctcseq.device import placement  # noqa: E402
from ctcseq.model import CTCModel  # noqa: E402
from ctcseq.train import Example, TrainConfig, Trainer  # noqa: E402


def batch(seed=0, T=9, N=3, D=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, D))
    lengths = np.array([T, 6, 4])[:N]
    targets = np.array([[1, 2, 1], [2, 2, 0], [3, 0, 0]])[:N]
    return x, lengths, targets, np.array([3, 2, 1])[:N]


def test_placement_names_and_errors():
    assert placement("cpu").name == "cpu" and not placement("cpu").is_cuda
    sim = placement("cuda")
    assert sim.is_cuda and sim.sim and sim.xp is np
    with pytest.raises(UserError, match="device must be one of cpu, cuda, auto"):
        placement("gpu")


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("stride,peepholes", [(1, True), (2, True), (2, False)])
def test_loss_gradients_and_outputs_match_the_cpu(dtype, tol, stride, peepholes):
    x, lengths, targets, tlens = batch()
    x = x.astype(dtype)
    out = {}
    for dev in ("cpu", "cuda"):
        m = CTCModel(4, 5, 2, 4, dtype=dtype, stride=stride, peepholes=peepholes, seed=1,
                     device=dev)
        loss, grads = m.loss_and_grads(x, lengths, targets, tlens, dropout=0.2,
                                       rng=np.random.default_rng(5))
        out[dev] = (loss, {k: m.place.to_host(v).copy() for k, v in grads.items()},
                    m.infer_log_probs(x, lengths), m.place.to_host(m.log_probs(x, lengths)))
        assert m.place.name == dev
    (l0, g0, i0, p0), (l1, g1, i1, p1) = out["cpu"], out["cuda"]
    np.testing.assert_allclose(l1, l0, rtol=tol)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=tol, atol=tol, err_msg=k)
        assert np.abs(g0[k]).max() > 0, k   # every parameter takes part
    ol = -(-lengths // stride)
    for n, L in enumerate(ol):
        np.testing.assert_allclose(i1[:L, n], i0[:L, n], rtol=tol, atol=tol)
        np.testing.assert_allclose(p1[:L, n], p0[:L, n], rtol=tol, atol=tol)
    assert isinstance(i1, np.ndarray)


def test_the_cuda_kernels_run(monkeypatch):
    """The model on "cuda" goes through the CUDA time loops, CTC and Adam."""
    from ctcseq.kernels import ctc_cuda, lstm_cuda, optim_cuda
    calls = []
    for mod, name in ((lstm_cuda, "lstm_forward_dir"), (lstm_cuda, "lstm_backward_dir"),
                      (ctc_cuda, "ctc_loss"), (optim_cuda, "adam_update")):
        real = getattr(mod, name)

        def spy(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)
        monkeypatch.setattr(mod, name, spy)
    x, lengths, targets, tlens = batch()
    m = CTCModel(4, 3, 1, 4, dtype=np.float64, device="cuda")
    opt = ctcseq.Adam(m.params, device=m.place)
    _, grads = m.loss_and_grads(x, lengths, targets, tlens)
    opt.step(grads)
    assert {"lstm_forward_dir", "lstm_backward_dir", "ctc_loss", "adam_update"} <= set(calls)


def examples(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = rng.integers(1, 4, size=rng.integers(1, 4))
        T = 3 * len(labels) + int(rng.integers(1, 4))
        out.append(Example(f"u{i}", rng.standard_normal((T, 3)).astype(np.float64), labels))
    return out


def trainer(out_dir, device, epochs=2, optimizer="adam"):
    model = CTCModel(3, 4, 1, 4, dtype=np.float64, seed=2, device=device)
    cfg = TrainConfig(optimizer=optimizer, lr=0.05, batch_frames=40, max_epochs=epochs,
                      patience=0, checkpoint_every=0, weight_noise=0.01, dropout=0.1,
                      time_masks=1, time_width=2, ema=0.5, seed=4)
    return Trainer(model, examples(10, 0), examples(4, 1), str(out_dir), cfg, progress=False)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_on_the_simulated_gpu_matches_the_cpu(tmp_path, optimizer):
    hist = {}
    for dev in ("cpu", "cuda"):
        t = trainer(tmp_path / dev, dev, optimizer=optimizer)
        hist[dev] = (t.run(log=lambda *_: None), t.model.host_params())
    for a, b in zip(hist["cpu"][0], hist["cuda"][0]):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(b["dev_loss"], a["dev_loss"], rtol=1e-10)
    for k, p in hist["cpu"][1].items():
        np.testing.assert_allclose(hist["cuda"][1][k], p, rtol=1e-9, atol=1e-12, err_msg=k)
    # one file format: the GPU's best.npz loads on the CPU
    m = CTCModel.load(tmp_path / "cuda" / "best.npz")
    assert m.place.name == "cpu"


def test_checkpoints_resume_on_the_other_device(tmp_path):
    """One epoch on one device, the second on the other: the weights of two
    epochs on the CPU (to rounding)."""
    whole = trainer(tmp_path / "whole", "cpu")
    whole.run(log=lambda *_: None)
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        d = tmp_path / f"{first}-{second}"
        trainer(d, first, epochs=1).run(log=lambda *_: None)
        t = trainer(d, second)
        assert t.resume()
        t.run(log=lambda *_: None)
        got, want = t.model.host_params(), whole.model.host_params()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- the command line ------------------------------------------------------------

def tiny_corpus(root, n=4, frames=24):
    """A data directory and a feature directory of random features."""
    from ctcseq.datadir import atomic_write
    from ctcseq.features import FeatureConfig
    cfg = FeatureConfig()
    data, feats = root / "data", root / "feats"
    (feats / "npy").mkdir(parents=True)
    data.mkdir()
    rng = np.random.default_rng(0)
    phones = ["aa", "b", "k"]
    with open(data / "text.phn", "w") as t, open(data / "utt2spk", "w") as s, \
            open(feats / "feats.scp", "w") as scp:
        for i in range(n):
            t.write(f"u{i} " + " ".join(rng.choice(phones, 3)) + "\n")
            s.write(f"u{i} s{i % 2}\n")
            np.save(feats / "npy" / f"u{i}.npy",
                    rng.standard_normal((frames + i, cfg.dim)).astype(np.float32))
            scp.write(f"u{i} npy/u{i}.npy\n")
    import json
    from ctcseq.extract import FORMAT_VERSION
    with atomic_write(str(feats / "feats.json"), "w") as f:
        json.dump({"format_version": FORMAT_VERSION, "config": cfg.to_dict()}, f)
    return data, feats


def test_cli_trains_and_forwards_on_the_simulated_gpu(tmp_path, capsys):
    import json

    from ctcseq.cli import main
    data, feats = tiny_corpus(tmp_path)
    logs, lps = {}, {}
    for dev in ("cpu", "cuda"):
        out = tmp_path / dev
        assert main(["train", "--train-data", str(data), "--train-feats", str(feats),
                     "--out", str(out), "--hidden", "3", "--layers", "1", "--epochs", "2",
                     "--batch-frames", "60", "--quiet", "--device", dev]) == 0
        assert f"on {dev}" in capsys.readouterr().out
        with open(out / "train.jsonl") as f:
            logs[dev] = [json.loads(line)["train_loss"] for line in f]
        assert main(["forward", str(out / "best.npz"), "--feats", str(feats), "--out",
                     str(tmp_path / f"{dev}.npz"), "--device", dev]) == 0
        with np.load(tmp_path / f"{dev}.npz") as z:
            lps[dev] = {k: z[k] for k in z.files if k != "__meta__"}
    np.testing.assert_allclose(logs["cuda"], logs["cpu"], rtol=1e-5)
    for k in lps["cpu"]:
        np.testing.assert_allclose(lps["cuda"][k], lps["cpu"][k], atol=1e-4)


def test_cli_says_in_one_line_when_cuda_cannot_work(tmp_path):
    """Without the simulator and without CuPy or a GPU (as in CI)."""
    import os
    import subprocess
    import sys
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: whether a GPU works depends on the machine")
    except ImportError:
        pass
    data, feats = tiny_corpus(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-m", "ctcseq.cli", "train", "--train-data",
                           str(data), "--train-feats", str(feats), "--out", str(tmp_path / "m"),
                           "--device", "cuda"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "ctcseq train: error: device 'cuda' needs" in proc.stderr
