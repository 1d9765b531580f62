#!/usr/bin/env bash
# One prepared run for a session lent a GPU (see benchmarks/RESULTS.md), logs
# under $OUT (or ./gpu-out), in this order, each step under a timeout:
#
#   setup    the GPU, versions; ctcseq installed editable (CuPy only if missing)   <= 2 min
#   tests    tests/test_cuda_gpu.py (kernels and model at real sizes) + the torch
#            adapter on CUDA, CTCSEQ_TEST_GPU=1                                    <= 2.5 min
#   lstm     benchmarks/bench_cuda_lstm.py --quick (BiLSTM vs cuDNN, Adam,
#            training rate)                                                        <= 2.7 min
#   ctc      benchmarks/bench_cuda_ctc.py (CTC vs torch native / cuDNN)            <= 1.3 min
#   recipe   recipes/synth/run.sh --small --device cuda: wall time and PER         <= 2.3 min
#
#   bash benchmarks/gpu_session.sh                 # all of it: at most ~10.8 minutes
#   bash benchmarks/gpu_session.sh tests lstm      # only these steps (setup always runs)
#
# One command of a device session may run 10 minutes at most: if the first
# steps were slow, run the rest in a second call (e.g. "ctc recipe").  The
# main job on the GPU (recipes/synth/run.sh --device cuda) is not run here:
# it takes longer than a session holds a GPU.  $OUT/summary.txt collects each
# step's status and seconds, and the recipe's PER.
#
# The GPU image has numba-cuda, cupy-cuda13x and torch (cu13); ctcseq and the
# rest of its requirements are installed here without touching those.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
steps=${*:-tests lstm ctc recipe}
summary=$out/summary.txt

# run NAME TIMEOUT CMD...: CMD under a timeout, its output in $out/NAME.log;
# status and seconds appended to the summary
run() {
  local name=$1 limit=$2 t0 rc
  shift 2
  echo "== $(date +%H:%M:%S) $name (timeout ${limit} s): $*" | tee -a "$summary"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc$([ $rc -eq 124 ] && echo ' (timed out)') after $(( $(date +%s) - t0 )) s" \
    | tee -a "$summary"
  return $rc
}

wants() { case " $steps " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

setup() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import cupy" 2>/dev/null || python -m pip install -q cupy-cuda13x
  python -m pip install -q --no-deps -e . && python -m pip install -q hypothesis pytest \
      librosa soundfile espeakng-loader wordfreq threadpoolctl matplotlib
  python -c "import numba, numba.cuda as c, cupy, torch; print('numba', numba.__version__,
      '| cupy', cupy.__version__, '| torch', torch.__version__, '| cuda available',
      c.is_available(), '| torch cuda', torch.cuda.is_available())"
}

recipe() {
  # a fresh small run of its own name, so that an earlier one is not resumed
  local name=synth-small-cuda t0 rc
  rm -rf "data/$name" "exp/$name"
  t0=$(date +%s)
  bash recipes/synth/run.sh --small --device cuda --name "$name"
  rc=$?
  echo "recipe wall time: $(( $(date +%s) - t0 )) s (exit $rc)"
  python - "exp/$name/model/train.jsonl" <<'EOF' || true
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"training: {len(rows)} epochs, {sum(r['seconds'] for r in rows):.1f} s in the "
      f"training loops; last dev error {100 * rows[-1]['dev_err']:.2f}%")
EOF
  for f in score_greedy.txt score.txt; do
    [ -f "exp/$name/decode_test/$f" ] && echo "$f: $(grep -m1 PER "exp/$name/decode_test/$f")"
    [ -f "exp/$name/decode_test/$f" ] && cp "exp/$name/decode_test/$f" "$out/recipe_$f"
  done
  cp "exp/$name/model/train.jsonl" "$out/recipe_train.jsonl" 2>/dev/null
  return $rc
}

: > "$summary"
# the steps that are functions run in a child bash under the timeout
export out
export -f setup recipe
run setup 120 bash -c setup
if wants tests; then
  run tests 150 env CTCSEQ_TEST_GPU=1 python -m pytest -q -rs tests/test_cuda_gpu.py \
      tests/test_torch_adapter.py
fi
if wants lstm; then
  run bench_cuda_lstm 160 python benchmarks/bench_cuda_lstm.py --quick --budget 120
fi
if wants ctc; then
  run bench_cuda_ctc 80 python benchmarks/bench_cuda_ctc.py --repeats 10
fi
if wants recipe; then
  run recipe 140 bash -c recipe
  grep -E "^(recipe wall time|training:|score)" "$out/recipe.log" >> "$summary"
fi
echo "== done; logs in $out" | tee -a "$summary"
