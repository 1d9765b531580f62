"""Running on several processes with MPI (``mpi4py``): who we are, and the
few collective operations training and feature extraction need.

``mpiexec -n K ctcseq train ...`` (or ``srun`` under Slurm) starts K copies
of the same command.  :func:`world` tells them apart.  It reads the launcher's
environment first (MPICH/Hydra and Slurm's PMI set ``PMI_SIZE``, Open MPI
``OMPI_COMM_WORLD_SIZE``, Slurm ``SLURM_STEP_NUM_TASKS``) and imports
``mpi4py`` only when that says there is more than one process, so a plain
``ctcseq train`` (or ``mpiexec -n 1``) runs exactly as without MPI and never
imports it.  ``CTCSEQ_MPI=1`` forces MPI for launchers this does not know.

The communicator is ``MPI.COMM_WORLD``.  A model on a GPU sends its
gradients through the host, or as device memory when the MPI library is
CUDA-aware and ``CTCSEQ_MPI_CUDA_AWARE=1`` says so (Open MPI with UCX and
CUDA, MVAPICH2-GDR, MPICH built with CUDA; the ``mpich`` wheel is not).  Data-parallel training
(:class:`ctcseq.train.Trainer`) splits every batch between the ranks and sums
their gradients with one ``Allreduce`` per step; see there.
"""
from __future__ import annotations

import os

from .errors import UserError

__all__ = ["world", "launched_size", "Single", "MpiComm", "shard_bounds"]

# set by the launchers for each process they start: the number of processes
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                   "SLURM_STEP_NUM_TASKS")


def launched_size(environ=None):
    """How many processes the launcher says it started (1 if none)."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


class Single:
    """The communicator of a run on one process: every collective is the
    identity, nothing is imported."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    is_root = True
    cuda_aware = False

    def allreduce_sum(self, buf):
        return buf

    def bcast_arrays(self, arrays):
        return arrays

    def allgather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        raise SystemExit(code)


class MpiComm:
    """``MPI.COMM_WORLD`` behind the interface of :class:`Single`."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise UserError(
                f"started as one of {launched_size()} MPI processes, but mpi4py is not "
                f"installed: pip install \"ctcseq[mpi]\" (mpi4py + mpich), or point mpi4py "
                f"at your site's MPI (see recipes/README.md)") from None
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        self.is_root = self.rank == 0
        # whether the MPI library reads GPU memory itself (mpi4py passes CuPy
        # arrays through __cuda_array_interface__); it cannot be asked
        # portably, so the user says so
        self.cuda_aware = os.environ.get("CTCSEQ_MPI_CUDA_AWARE") == "1"

    def allreduce_sum(self, buf):
        """Sum a contiguous NumPy buffer over all ranks, in place."""
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        return buf

    def bcast_arrays(self, arrays):
        """Rank 0's values of a dict of NumPy arrays, in place on every rank."""
        for key in sorted(arrays):
            self.comm.Bcast(arrays[key], root=0)
        return arrays

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code=1):
        """Stop every rank: the others would wait forever in a collective."""
        self.comm.Abort(code)


_WORLD = None


def world():
    """The communicator of this run: :class:`Single`, or :class:`MpiComm`
    when started by an MPI launcher with more than one process (or with
    ``CTCSEQ_MPI=1``)."""
    global _WORLD
    if _WORLD is None:
        if launched_size() > 1 or os.environ.get("CTCSEQ_MPI") == "1":
            comm = MpiComm()
            _WORLD = comm if comm.size > 1 else Single()
        else:
            _WORLD = Single()
    return _WORLD


def shard_bounds(n, size, rank):
    """The contiguous share ``[lo, hi)`` of ``n`` items that ``rank`` of
    ``size`` takes (sizes differ by at most one; a share may be empty)."""
    return n * rank // size, n * (rank + 1) // size
