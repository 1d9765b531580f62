"""Runs the tiny training task of train_fixture.py on however many processes
started it (``mpiexec -n K python mpi_fixture.py OUT RECORD [KILL_AT]``), for
tests/test_mpi.py.

Rank 0 writes RECORD (.npz): the loss of every update made, the final
weights, and the ranks' count.  With KILL_AT, every rank SIGKILLs itself
just before its KILL_AT-th update (counted over this process's life), after
the checkpoint of the batch before it may have been written.

With MPI_FIXTURE_DEVICE=cuda (and NUMBA_ENABLE_CUDASIM=1) a smaller task
trains on the simulated GPU instead (the simulator is slow).
"""
import os
import signal
import sys

import numpy as np

import train_fixture
from ctcseq.mpi import world

if __name__ == "__main__":
    out_dir, record = sys.argv[1], sys.argv[2]
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    comm = world()
    device = os.environ.get("MPI_FIXTURE_DEVICE", "cpu")
    if device == "cpu":
        trainer = train_fixture.build(out_dir, max_epochs=3, checkpoint_every=2)
    else:   # "small-cpu" or "cuda"
        trainer = train_fixture.build_small(out_dir, "cuda" if device == "cuda" else "cpu")
    trainer.comm = comm if comm.size > 1 else None
    trainer.is_root = comm.is_root
    resumed = trainer.resume()
    losses = []
    real = trainer._loss_and_grads

    def recording(*a, **k):
        if len(losses) + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        loss, grads = real(*a, **k)
        losses.append(loss)
        return loss, grads

    trainer._loss_and_grads = recording
    trainer.run(log=lambda *_: None)
    if comm.is_root:
        np.savez(record, losses=np.array(losses), size=comm.size, resumed=resumed,
                 **{f"param/{k}": v for k, v in trainer.model.params.items()})
