"""Test-session settings.

CUDA kernels run under Numba's CUDA simulator unless ``CTCSEQ_TEST_GPU=1``
asks for the real device (tests/test_cuda_gpu.py).  The variable must be set
before anything imports ``numba.cuda``, hence here.
"""
import os

if os.environ.get("CTCSEQ_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def pytest_collection_modifyitems(config, items):
    """Run the JAX tests last: JAX starts threads that make a later os.fork
    (tests/test_lstm.py forks on purpose) liable to deadlock."""
    items.sort(key=lambda item: "test_jax_adapter" in item.nodeid)
