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


def _fixture(out, record, k=None, kill_at=0, check=True):
    cmd = [sys.executable, os.path.join(HERE, "mpi_fixture.py"), str(out), str(record)]
    if kill_at:
        cmd.append(str(kill_at))
    if k is not None:
        cmd = [MPIEXEC, "-n", str(k)] + cmd
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
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
