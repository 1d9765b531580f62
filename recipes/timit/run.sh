#!/usr/bin/env bash
# BiLSTM-CTC phone recognition on TIMIT (LDC93S1), after Graves, Mohamed and
# Hinton, "Speech recognition with deep recurrent neural networks" (ICASSP 2013).
#
# Stages (each resumable; --stage/--stop-stage pick a range):
#   1 prepare   data/timit/{train,dev,test} from the TIMIT tree (--timit ROOT):
#               462 train speakers, the 50 standard dev and 24 core-test speakers
#               (--dev-speakers / --test-speakers FILE: other lists), SA sentences
#               left out; targets: 48 phones, q deleted (as Kaldi)
#   2 features  40 log-mel + energy, deltas, delta-deltas (123 per frame, as Graves)
#   3 train     3 x 250 peephole BiLSTM (Graves's CTC-3l-250h); dev PER each epoch
#   4 decode    greedy, and beam search with a phone 3-gram whose weight and
#               insertion bonus are chosen on dev (small grid)
#   5 score     PER on the core test set, folded to 39 phones (Lee & Hon)
#   6 align     forced alignment of the test transcripts against TIMIT's
#               hand-labelled phone boundaries
#
# Usage: recipes/timit/run.sh --timit ROOT [--graves|--tiny] [--full-test]
#            [--subset N] [--test-speakers FILE] [--dev-speakers FILE]
#            [--stage N] [--stop-stage N] [--jobs J] [--epochs E] [--seed S] [--name NAME]
#        [--nj N] [--mpi K]   features in N shards at once; training on K MPI
#                             processes (mpiexec; see recipes/README.md and
#                             recipes/slurm.sbatch for a cluster)
#        [--device cpu|cuda|auto]  where the network trains and runs (cpu)
#
# --subset N keeps N utterances of each split (spread over the speakers):
# data/timit-subN, exp/<name>-subN.  --tiny is a 1 x 16 model on --subset 20
# (unless --subset is given; --subset 0: all data): all stages in a minute or two.
#
# Sizes: the default settings are conf/default.sh; --graves and --tiny read
# conf/graves.sh and conf/tiny.sh.
#
# Each stage records in its output directory (.args) what it was made from
# (recipes/lib/asr.sh).  A rerun reuses what matches, makes again the data
# directories, features and decodings whose arguments changed (saying so), and
# refuses, in one line, to resume training a model with other data or settings
# (use another --name); --epochs may grow, to extend a finished run.
set -euo pipefail
. "$(dirname "$0")/../lib/asr.sh"

stage=1
stop_stage=6
timit=
size=default
full_test=
subset=
test_speakers=
dev_speakers=
jobs=2
seed=0
epochs=
name=

while [ $# -gt 0 ]; do
  case "$1" in
    --timit) timit=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --graves) size=graves; shift ;;
    --tiny) size=tiny; shift ;;
    --full-test) full_test=--full-test; shift ;;
    --subset) subset=$2; shift 2 ;;
    --test-speakers) test_speakers=$2; shift 2 ;;
    --dev-speakers) dev_speakers=$2; shift 2 ;;
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

# Settings of every size; then the size's own (conf/<size>.sh).
beam=16
lm_alphas="0 0.3 0.6"
lm_betas="0 1"
init_range=
asr_settings "$size"
: "${subset:=0}"
case "$subset" in
  ''|*[!0-9]*) stage_refuse "--subset wants a number of utterances, got '$subset'" ;;
esac
subset=$((10#$subset))
sub=; [ "$subset" -eq 0 ] || sub=-sub$subset
if [ -z "$name" ]; then   # timit, timit-graves, timit-tiny
  name=timit; [ "$size" = default ] || name=timit-$size
fi
data=data/timit${full_test:+-full}$sub
exp=exp/$name${full_test:+-full}$sub

train_set=train; dev_set=dev; test_set=test
token_type=phn
lm_order=3
train_opts=(--hidden "$hidden" --layers "$layers" --epochs "$epochs" --optimizer "$optimizer"
            --lr "$lr" --momentum 0.9 --weight-noise "$weight_noise"
            ${init_range:+--init-range "$init_range"} --patience "$patience"
            --batch-frames "$batch_frames")
model_desc="$layers x $hidden BiLSTM, $optimizer, up to $epochs epochs"
# hypotheses are 48-phone strings; --fold timit39 scores them on the usual 39 classes
eval_opts=(--fold timit39)
eval_desc="39 phones"
align_check=$(dirname "$0")/../synth/local/compare_ctm.py
align_desc="TIMIT's hand-labelled boundaries"

# "standard", or the absolute path and checksum of a speaker list
list_arg() {
  if [ -z "$1" ]; then echo standard; else echo "$(stage_abspath "$1") $(stage_sig "$1")"; fi
}

if in_range 1; then
  # without --timit, the tree the data directories were made from
  [ -n "$timit" ] || timit=$(stage_get "$data" timit)
  [ -n "$timit" ] || stage_refuse "stage 1 needs --timit ROOT (the TIMIT tree)"
  args=$(printf '%s\n' "timit $(stage_abspath "$timit")" "full_test ${full_test:-no}" \
    "test_speakers $(list_arg "$test_speakers")" "dev_speakers $(list_arg "$dev_speakers")" \
    "subset $subset")
  if ! asr_prepared "$args"; then
    log "stage 1: data directories from $timit into $data"
    # --overwrite replaces only what the builder writes (a stale or unfinished run)
    ctcseq prepare timit --timit "$timit" --out "$data" $full_test --subset "$subset" \
      ${test_speakers:+--test-speakers "$test_speakers"} \
      ${dev_speakers:+--dev-speakers "$dev_speakers"} --overwrite
    stage_record "$data" "$args"
  fi
fi

asr_stages
