#!/usr/bin/env bash
# BiLSTM-CTC phone recognition on the synthetic eSpeak NG corpus (offline).
#
# Stages (each resumable; --stage/--stop-stage pick a range):
#   1 prepare   synthesise data/<name>/{train,dev,test} (Kaldi-style dirs);
#               training voices: 42 eSpeak variants + 48 random ones, warped
#               and echoed (see data_prep/README.md); dev/test: other variants
#   2 features  40 log-mel + energy, deltas, delta-deltas (123 per frame)
#   3 train     3 x 250 peephole BiLSTM on pairs of stacked frames (20 ms
#               steps), per-utterance CMVN, Adam on batches of 4000 frames
#               (rate x0.5 per epoch), 3 epochs over 12 h; dev PER
#               (moving-average weights) each epoch
#   4 decode    greedy, and beam search with a phone 6-gram of the training
#               transcripts, whose weight and insertion bonus are chosen on
#               dev (small grid)
#   5 score     PER over all test voices and per voice (never heard in training)
#   6 align     forced alignment of the test transcripts, compared with the
#               phoneme timing eSpeak reported while synthesising
#
# Usage: recipes/synth/run.sh [--small|--tiny] [--stage N] [--stop-stage N]
#                             [--hours H] [--jobs J] [--epochs E] [--seed S]
#                             [--name NAME]
#        [--nj N] [--mpi K]   features in N shards at once; training on K MPI
#                             processes (mpiexec; see recipes/README.md and
#                             recipes/slurm.sbatch for a cluster)
#        [--device cpu|cuda|auto]  where the network trains and runs (cpu)
#
# Sizes: the settings above are conf/default.sh; --small (0.3 h, 2 x 128,
# 1-2 minutes; up to 4 on a slow machine's first run, which compiles the
# Numba kernels) and --tiny (for tests) read conf/small.sh, conf/tiny.sh.
# The experiment is data/<name>, exp/<name> (name: synth-<size>).
#
# Each stage records in its output directory (.args) what it was made from
# (recipes/lib/asr.sh).  A rerun skips the synthesis and the decoding that
# match, resumes features and training, synthesises and extracts again what
# other arguments (--hours, --seed) call for (saying so), and refuses, in one
# line, to resume training a model with other data or settings (use another
# --name); --epochs may grow, to extend a finished run.
set -euo pipefail
. "$(dirname "$0")/../lib/asr.sh"

stage=1
stop_stage=6
size=default
jobs=2
seed=0
hours=
epochs=
name=

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --small) size=small; shift ;;
    --tiny) size=tiny; shift ;;
    --hours) hours=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --nj) nj=$2; shift 2 ;;
    --mpi) mpi=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h|--help) asr_usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Settings of every size; then the size's own (hours, epochs, model, LM order).
beam=32
lm_alphas="0.5 0.7"
lm_betas="1.5"
stride=2          # two 10 ms frames per BiLSTM step
cmvn=utterance    # each utterance normalised with its own statistics
asr_settings "$size"
: "${name:=synth-$size}"
data=data/$name
exp=exp/$name

train_set=train; dev_set=dev; test_set=test
token_type=phn
train_opts=(--hidden "$hidden" --layers "$layers" --epochs "$epochs" --patience "$patience"
            --batch-frames "$batch_frames" --lr "$lr" --lr-decay "$lr_decay" --ema "$ema"
            --stride "$stride" --cmvn "$cmvn")
model_desc="$layers x $hidden BiLSTM, up to $epochs epochs"
speaker_desc="test voice"
align_check=$(dirname "$0")/local/compare_ctm.py
align_desc="eSpeak's timing"
# outputs of this recipe from before it kept records: kept, as it kept them then
unrecorded=adopt

# whether $data/config.json is of a corpus of $hours hours and seed $seed
synthesised_with() {
  [ -f "$data/config.json" ] &&
    awk -v h="$hours" -v s="$seed" '
      /^ "hours": / { v = $2; sub(/,$/, "", v); hh = v }
      /^ "seed": /  { v = $2; sub(/,$/, "", v); ss = v }
      END { exit !(hh != "" && ss != "" && hh + 0 == h + 0 && ss + 0 == s + 0) }' "$data/config.json"
}

if in_range 1; then
  args=$(printf '%s\n' "hours $(awk -v h="$hours" 'BEGIN { print h + 0 }')" "seed $seed")
  if [ "$(stage_state "$data" "$args")" = none ] && [ -f "$data/summary.json" ] &&
      synthesised_with; then
    stage_record "$data" "$args"     # synthesised before the recipe kept records
  fi
  if ! asr_prepared "$args"; then
    # --overwrite replaces only what the builder writes (a stale or unfinished run)
    overwrite=
    [ -z "$(ls -A "$data" 2>/dev/null)" ] || overwrite=--overwrite
    log "stage 1: synthesising $hours h into $data"
    ctcseq prepare synth --out "$data" --hours "$hours" --seed "$seed" --jobs "$jobs" $overwrite
    stage_record "$data" "$args"
  fi
fi

asr_stages
