#!/usr/bin/env bash
# BiLSTM-CTC character recognition on LibriSpeech (OpenSLR 12).
#
# Stages (each resumable; --stage/--stop-stage pick a range):
#   1 prepare   data/librispeech/{train_clean_100,dev_clean,test_clean} from the
#               unpacked corpus (--root: LibriSpeech/ or the folder holding it);
#               parts prepared by earlier runs from the same --root are kept
#   2 features  40 log-mel + energy, deltas, delta-deltas (123 per frame)
#   3 train     3 x 250 peephole BiLSTM over characters (a-z, ', <space>), Adam;
#               dev CER each epoch; a character n-gram of the training text
#   4 decode    greedy, and beam search with the character n-gram whose weight
#               and insertion bonus are chosen on dev; with --arpa also a word
#               n-gram (e.g. 3-gram.pruned.1e-7.arpa.gz of OpenSLR 11), in
#               exp/<name>/decode_test_words
#   5 score     CER and WER (characters joined into words at <space>) on test
#
# Usage: recipes/librispeech/run.sh --root ROOT [--tiny] [--subset N] [--stage N]
#          [--stop-stage N] [--train-part P] [--dev-part P] [--test-part P]
#          [--arpa FILE] [--jobs J] [--epochs E] [--seed S] [--name NAME]
#        [--nj N] [--mpi K]   features in N shards at once; training on K MPI
#                             processes (mpiexec; see recipes/README.md and
#                             recipes/slurm.sbatch for a cluster)
#        [--device cpu|cuda|auto]  where the network trains and runs (cpu)
#
# Cost: train-clean-100 is 100 h (36 M frames); an epoch of the 3 x 250 model
# takes hours on a few CPU cores (the synthetic recipe's 2.4 h take 2.5 min an
# epoch on 2 cores).  --subset N keeps N utterances of each part (spread over
# the readers): data/librispeech-subN, exp/<name>-subN.  --tiny is a 1 x 16
# model on --subset 20 (unless --subset is given; --subset 0: all data): all
# stages in a minute or two, to check them.
#
# Sizes: the default settings are conf/default.sh; --tiny reads conf/tiny.sh.
#
# The experiment is exp/librispeech (-tiny, -<train part> when not
# train-clean-100, -subN).  Each stage records in its output directory (.args)
# what it was made from (recipes/lib/asr.sh).  A rerun reuses what matches,
# makes again the data directories, features and decodings whose arguments
# changed (saying so), and refuses, in one line, to resume training a model
# with other data or settings (use another --name); --epochs may grow, to
# extend a finished run.
set -euo pipefail
. "$(dirname "$0")/../lib/asr.sh"

stage=1
stop_stage=5
root=
size=default
subset=
train_part=train-clean-100
dev_part=dev-clean
test_part=test-clean
jobs=2
seed=0
epochs=
name=

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --tiny) size=tiny; shift ;;
    --subset) subset=$2; shift 2 ;;
    --train-part) train_part=$2; shift 2 ;;
    --dev-part) dev_part=$2; shift 2 ;;
    --test-part) test_part=$2; shift 2 ;;
    --arpa) arpa=$2; shift 2 ;;
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
lm_order=4
beam=16
lm_alphas="0 0.3 0.6"
lm_betas="0 1"
asr_settings "$size"
: "${subset:=0}"
case "$subset" in
  ''|*[!0-9]*) stage_refuse "--subset wants a number of utterances, got '$subset'" ;;
esac
subset=$((10#$subset))
sub=; [ "$subset" -eq 0 ] || sub=-sub$subset
train=${train_part//-/_}; dev=${dev_part//-/_}; test=${test_part//-/_}   # Kaldi's dir names
if [ -z "$name" ]; then   # librispeech, librispeech-tiny, librispeech-train_clean_360 ...
  name=librispeech; [ "$size" = default ] || name=librispeech-$size
  [ "$train_part" = train-clean-100 ] || name=$name-$train
fi
data=data/librispeech$sub
exp=exp/$name$sub

train_set=$train; dev_set=$dev; test_set=$test
token_type=char
train_opts=(--hidden "$hidden" --layers "$layers" --epochs "$epochs" --patience "$patience"
            --batch-frames "$batch_frames" --lr "$lr")
model_desc="$layers x $hidden BiLSTM on characters, up to $epochs epochs"

if in_range 1; then
  # without --root, the corpus the data directories were made from
  [ -n "$root" ] || root=$(stage_get "$data" root)
  [ -n "$root" ] || stage_refuse "stage 1 needs --root ROOT (LibriSpeech/)"
  root_abs=$(stage_abspath "$root")
  want=$(printf '%s\n' "$train_part" "$dev_part" "$test_part" | LC_ALL=C sort -u | tr '\n' ' ')
  parts=$want
  if [ -f "$data/summary.json" ] && [ "$(stage_get "$data" root)" = "$root_abs" ] &&
     [ "$(stage_get "$data" subset)" = "$subset" ]; then
    # the same corpus: keep the parts prepared before (those still there), add these
    for p in $(stage_get "$data" parts); do
      if [ -d "$root_abs/$p" ] || [ -d "$root_abs/LibriSpeech/$p" ]; then parts="$parts $p"; fi
    done
    parts=$(printf '%s\n' $parts | LC_ALL=C sort -u | tr '\n' ' ')
  fi
  args=$(printf '%s\n' "root $root_abs" "parts ${parts% }" "subset $subset")
  if ! asr_prepared "$args"; then
    log "stage 1: data directories of ${parts% } into $data"
    # --overwrite replaces only what the builder writes (a stale or unfinished run);
    # the parts of earlier runs are in $parts, one character inventory for all
    ctcseq prepare librispeech --root "$root" --out "$data" --parts $parts \
      --subset "$subset" --overwrite
    stage_record "$data" "$args"
  fi
fi

asr_stages
