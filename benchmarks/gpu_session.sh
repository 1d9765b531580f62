#!/usr/bin/env bash
# One prepared run for a session lent a GPU (see benchmarks/RESULTS.md):
# the real-GPU tests, then the CUDA benchmarks, logs under $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_session.sh            # about 5 minutes on an H200
#
# The GPU image has numba-cuda, cupy-cuda13x and torch (cu13); ctcseq and the
# rest of its requirements are installed here without touching those.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -m pip install -q --no-deps -e . && python -m pip install -q hypothesis pytest \
      librosa soundfile espeakng-loader wordfreq threadpoolctl matplotlib
  python -c "import numba, numba.cuda as c, torch; print('numba', numba.__version__,
      '| torch', torch.__version__, '| cuda available', c.is_available())"
} 2>&1 | tee "$out/setup.log"
CTCSEQ_TEST_GPU=1 timeout 240 python -m pytest -q -rs tests/test_cuda_gpu.py \
    tests/test_torch_adapter.py 2>&1 | tee "$out/tests.log"
timeout 240 python benchmarks/bench_cuda_ctc.py --repeats 20 2>&1 | tee "$out/bench_cuda_ctc.log"
