"""Data-parallel training and sharded feature extraction over MPI.

The runs start ``mpiexec -n K`` (MPICH's, from ``pip install mpich``) in a
subprocess with a timeout; without mpi4py or mpiexec the tests skip.  The
training runs are tests/mpi_fixture.py: the tiny task of train_fixture.py
with dropout, SpecAugment, weight noise and a weight average, 3 epochs.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ctcseq.mpi import launched_size, shard_bounds

HERE = os.path.dirname(os.path.abspath(__file__))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC is not None


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and mpiexec "
                               "(pip install mpi4py mpich)")


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MV2_", "SLURM_", "CTCSEQ_MPI"))}
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env["NUMBA_NUM_THREADS"] = "1"
    return env


def _fixture(out, record, k=None, kill_at=0, check=True, env=None):
    cmd = [sys.executable, os.path.join(HERE, "mpi_fixture.py"), str(out), str(record)]
    if kill_at:
        cmd.append(str(kill_at))
    if k is not None:
        cmd = [MPIEXEC, "-n", str(k)] + cmd
    proc = subprocess.run(cmd, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=240)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _params(z):
    return {k: z[k] for k in z.files if k.startswith("param/")}


def test_launched_size_reads_the_launchers_variables():
    assert launched_size({}) == 1
    assert launched_size({"PMI_SIZE": "3"}) == 3
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launched_size({"SLURM_STEP_NUM_TASKS": "2", "PMI_SIZE": ""}) == 2


def test_shard_bounds_tile_the_batch():
    for n in range(0, 12):
        for size in (1, 2, 3, 5):
            parts = [shard_bounds(n, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


def test_a_single_process_imports_no_mpi():
    code = ("import sys; from ctcseq.mpi import world; w = world(); "
            "assert w.size == 1 and 'mpi4py' not in sys.modules, sys.modules.keys(); "
            "import ctcseq.cli, ctcseq.train")
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, timeout=120)


@needs_mpi
def test_k_processes_train_the_model_of_one(tmp_path):
    """K = 1 (plain and under mpiexec) bit for bit; K = 2, 3: the same losses
    to 1e-5 relative and the same weights to float-sum order."""
    runs = {}
    for k in (None, 1, 2, 3):
        rec = tmp_path / f"k{k}.npz"
        _fixture(tmp_path / f"k{k}", rec, k)
        runs[k] = np.load(rec)
    ref = runs[None]
    assert int(ref["size"]) == 1 and len(ref["losses"]) == 36
    assert np.all(np.isfinite(ref["losses"])) and ref["losses"][-1] < ref["losses"][0] / 2
    for k in (1, 2, 3):
        assert int(runs[k]["size"]) == k
        np.testing.assert_allclose(runs[k]["losses"], ref["losses"], rtol=1e-5, atol=0)
        for name, p in _params(ref).items():
            q = runs[k][name]
            if k == 1:
                assert np.array_equal(q, p), name
            else:
                np.testing.assert_allclose(q, p, rtol=0, atol=1e-4, err_msg=name)
    # the sums over ranks are really in another order: not the same bits
    assert not all(np.array_equal(runs[2][n], p) for n, p in _params(ref).items())
    # only rank 0 writes
    assert sorted(os.listdir(tmp_path / "k2")) == sorted(os.listdir(tmp_path / "kNone"))


@needs_mpi
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL every rank mid-epoch 2, restart with the same K: the weights
    of an uninterrupted K-process run, bit for bit; another K finishes too."""
    whole = tmp_path / "whole.npz"
    _fixture(tmp_path / "whole", whole, 2)
    proc = _fixture(tmp_path / "cut", tmp_path / "never.npz", 2, kill_at=17, check=False)
    assert proc.returncode != 0 and not (tmp_path / "never.npz").exists()
    shutil.copytree(tmp_path / "cut", tmp_path / "cut3")
    rec = tmp_path / "resumed.npz"
    _fixture(tmp_path / "cut", rec, 2)
    a, b = np.load(whole), np.load(rec)
    assert bool(b["resumed"]) and 0 < len(b["losses"]) < len(a["losses"])
    np.testing.assert_array_equal(b["losses"], a["losses"][-len(b["losses"]):])
    for name, p in _params(a).items():
        assert np.array_equal(b[name], p), name
    # resuming with 3 processes: allowed, same batches, other summation order
    rec3 = tmp_path / "resumed3.npz"
    _fixture(tmp_path / "cut3", rec3, 3)
    c = np.load(rec3)
    np.testing.assert_allclose(c["losses"], a["losses"][-len(c["losses"]):], rtol=1e-5)


@needs_mpi
def test_k_processes_on_simulated_gpus_with_device_buffers(tmp_path):
    """2 processes, the model on "cuda" (the CUDA simulator), gradients
    reduced as device buffers (CTCSEQ_MPI_CUDA_AWARE=1): the losses and
    weights of one process on the CPU."""
    pytest.importorskip("numba.cuda")
    small = {"MPI_FIXTURE_DEVICE": "small-cpu"}
    _fixture(tmp_path / "cpu", tmp_path / "cpu.npz", env={**small, "NUMBA_ENABLE_CUDASIM": "0"})
    _fixture(tmp_path / "gpu", tmp_path / "gpu.npz", 2,
             env={"MPI_FIXTURE_DEVICE": "cuda", "NUMBA_ENABLE_CUDASIM": "1",
                  "CTCSEQ_MPI_CUDA_AWARE": "1"})
    a, b = np.load(tmp_path / "cpu.npz"), np.load(tmp_path / "gpu.npz")
    assert int(b["size"]) == 2 and len(a["losses"]) == len(b["losses"]) > 2
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-10)
    for name, p in _params(a).items():
        np.testing.assert_allclose(b[name], p, rtol=1e-9, atol=1e-12, err_msg=name)


# -- the command line --------------------------------------------------------

def _ctcseq(*args, k=None, check=True):
    cmd = [sys.executable, "-m", "ctcseq.cli", *map(str, args)]
    if k is not None:
        cmd = [MPIEXEC, "-n", str(k)] + cmd
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi")
    _ctcseq("prepare", "synth", "--out", root / "data", "--hours", "0.01", "--seed", "2",
            "--jobs", "2")
    return root


def _arrays(feats):
    from ctcseq.extract import FeatureStore
    store = FeatureStore(feats)
    return {u: store[u] for u in store.keys()}


def test_sharded_features_equal_one_extraction(corpus, tmp_path):
    data = corpus / "data" / "train"
    _ctcseq("features", data, tmp_path / "one", "--quiet")
    ref = _arrays(tmp_path / "one")
    assert len(ref) >= 6
    # shards run one after the other: the directory is incomplete until the last
    for j in (2, 3):
        out = _ctcseq("features", data, tmp_path / "sh", "--quiet", "--shard", j,
                      "--num-shards", 3).stdout
        assert "waiting for the other shards" in out
    bad = _ctcseq("features", data, tmp_path / "sh", "--merge", "--num-shards", 3, check=False)
    assert bad.returncode == 2 and "shard(s) 1 of 3 have not finished" in bad.stderr
    bad = _ctcseq("train", "--train-data", data, "--train-feats", tmp_path / "sh",
                  "--out", tmp_path / "m", check=False)
    assert bad.returncode == 2 and "sharded extraction has not finished" in bad.stderr
    _ctcseq("features", data, tmp_path / "sh", "--quiet", "--shard", 1, "--num-shards", 3)
    got = _arrays(tmp_path / "sh")
    assert got.keys() == ref.keys() and all(np.array_equal(got[u], ref[u]) for u in ref)
    again = _ctcseq("features", data, tmp_path / "sh", "--quiet", "--shard", 2,
                    "--num-shards", 3).stdout
    assert "0 extracted" in again
    assert "merged" in _ctcseq("features", data, tmp_path / "sh", "--merge",
                               "--num-shards", 3).stdout


@needs_mpi
def test_mpiexec_features_and_training(corpus, tmp_path):
    data = corpus / "data"
    for split in ("train", "dev"):
        _ctcseq("features", data / split, tmp_path / split, "--quiet")
    # under mpiexec each process takes a shard by itself
    out = _ctcseq("features", data / "train", tmp_path / "mpi_feats", "--quiet", k=2).stdout
    assert out.count("features by 2 processes") == 1, out
    ref = _arrays(tmp_path / "train")
    got = _arrays(tmp_path / "mpi_feats")
    assert got.keys() == ref.keys() and all(np.array_equal(got[u], ref[u]) for u in ref)
    assert sorted(os.listdir(tmp_path / "mpi_feats" / "shards")) == ["1-of-2.txt", "2-of-2.txt"]

    args = ["train", "--train-data", data / "train", "--train-feats", tmp_path / "train",
            "--dev-data", data / "dev", "--dev-feats", tmp_path / "dev",
            "--symbols", data / "phones.txt", "--hidden", 8, "--layers", 1, "--epochs", 2,
            "--batch-frames", 1500, "--dropout", 0.1, "--lm-order", 2, "--quiet"]
    one = _ctcseq(*args, "--out", tmp_path / "one")
    two = _ctcseq(*args, "--out", tmp_path / "two", k=2)
    assert two.stdout.count("done: 2 epochs") == 1 and "2 MPI processes" in two.stdout
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))

    def log(d):
        import json
        with open(d / "train.jsonl") as f:
            return [json.loads(line) for line in f]
    a, b = log(tmp_path / "one"), log(tmp_path / "two")
    for x, y in zip(a, b):
        np.testing.assert_allclose(y["train_loss"], x["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(y["dev_loss"], x["dev_loss"], rtol=1e-5)
        assert y["dev_err"] == x["dev_err"]


@needs_mpi
def test_an_error_under_mpiexec_is_one_line_and_stops_every_process(corpus, tmp_path):
    data = corpus / "data" / "train"
    _ctcseq("features", data, tmp_path / "f", "--quiet")
    proc = _ctcseq("train", "--train-data", data, "--train-feats", tmp_path / "f",
                   "--out", tmp_path / "m", "--hidden", 8, "--layers", 1, "--epochs", 1,
                   "--batch-frames", 0, k=2, check=False)
    assert proc.returncode != 0 and "batch_frames must be >= 1" in proc.stderr


def test_recipes_shard_features_launch_mpiexec_and_pass_the_device(tmp_path):
    """--nj 3 --mpi 2 --device cuda: three shards then a merge per split,
    training under mpiexec -n 2, the network on the GPU (stand-ins for
    ctcseq and mpiexec log their arguments)."""
    from test_recipe_stages import RECIPES, stub_env
    env, log = stub_env(str(tmp_path))
    with open(tmp_path / "bin" / "mpiexec", "w") as f:
        f.write('#!/usr/bin/env bash\nline=$(printf mpiexec; printf " %q" "$@"); '
                'printf "%s\\n" "$line" >> "$STUB_LOG"\nshift 2\nexec "$@"\n')
    os.chmod(tmp_path / "bin" / "mpiexec", 0o755)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(["bash", os.path.join(RECIPES, "synth", "run.sh"), "--tiny",
                           "--nj", "3", "--mpi", "2", "--device", "cuda", "--stop-stage", "4"],
                          cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(log) as f:
        calls = f.read().splitlines()
    for split in ("train", "dev", "test"):
        feats = f"exp/synth-tiny/feats/{split}"
        shards = sorted(c for c in calls if c.startswith(f"ctcseq features data/synth-tiny/"
                                                         f"{split} {feats} --jobs 1"))
        assert shards == [f"ctcseq features data/synth-tiny/{split} {feats} --jobs 1 --quiet "
                          f"--shard {j} --num-shards 3" for j in (1, 2, 3)], calls
        merge = calls.index(f"ctcseq features data/synth-tiny/{split} {feats} --merge "
                            f"--num-shards 3")
        assert all(calls.index(s) < merge for s in shards)
    train = [i for i, c in enumerate(calls) if c.startswith("ctcseq train")]
    assert len(train) == 1 and calls[train[0] - 1].startswith("mpiexec -n 2 ctcseq train")
    assert calls[train[0] - 1][len("mpiexec -n 2 "):] == calls[train[0]]
    assert calls[train[0]].startswith("ctcseq train --device cuda ")
    forward = [c for c in calls if c.startswith("ctcseq forward")]
    assert len(forward) == 2 and all(c.startswith("ctcseq forward --device cuda ") for c in forward)
