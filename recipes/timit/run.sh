#!/usr/bin/env bash
# BiLSTM-CTC phone recognition on TIMIT (LDC93S1), after Graves, Mohamed and
# Hinton, "Speech recognition with deep recurrent neural networks" (ICASSP 2013).
#
# Stages (each resumable; --stage/--stop-stage pick a range):
#   1 prepare   data/<name>/{train,dev,test} from the TIMIT tree (--timit ROOT):
#               462 train speakers, the 50 standard dev and 24 core-test speakers,
#               SA sentences left out; targets: 48 phones, q deleted (as Kaldi)
#   2 features  40 log-mel + energy, deltas, delta-deltas (123 per frame, as Graves)
#   3 train     3 x 250 peephole BiLSTM (Graves's CTC-3l-250h); dev PER each epoch
#   4 decode    greedy, and beam search with a phone 3-gram whose weight and
#               insertion bonus are chosen on dev (small grid)
#   5 score     PER on the core test set, folded to 39 phones (Lee & Hon)
#   6 align     forced alignment of the test transcripts against TIMIT's
#               hand-labelled phone boundaries
#
# Usage: recipes/timit/run.sh --timit ROOT [--graves|--tiny] [--full-test]
#                             [--stage N] [--stop-stage N] [--jobs J]
#                             [--epochs E] [--seed S] [--name NAME]
set -euo pipefail

stage=1
stop_stage=6
timit=
size=default
full_test=
jobs=2
seed=0
epochs=
name=
beam=16
lm_alphas="0 0.3 0.6"
lm_betas="0 1"

while [ $# -gt 0 ]; do
  case "$1" in
    --timit) timit=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --graves) size=graves; shift ;;
    --tiny) size=tiny; shift ;;
    --full-test) full_test=--full-test; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Training settings.
#   default: Adam, lr 1e-3, batches of up to 8000 frames (~25 utterances), early
#            stopping on dev PER. The practical choice: it converges in tens of
#            epochs where plain SGD at Graves's rate needs a hundred or more.
#   graves:  the paper's optimiser: SGD, lr 1e-4, momentum 0.9, one utterance or
#            two per update (TIMIT utterances are 300-800 frames), uniform init
#            in [-0.1, 0.1], Gaussian weight noise std 0.075. The paper adds the
#            noise only after a noise-free run has converged, starting from its
#            weights; here the noise is on from the start (slower, same target).
#            The paper trains on 61 phones; this recipe trains on the 48 of Lee
#            and Hon, as Kaldi does; both are scored on 39.
#   tiny:    a few seconds of everything, to check that the stages run.
init_range=
case "$size" in
  default) : "${epochs:=40}"; hidden=250; layers=3; optimizer=adam; lr=1e-3
           batch_frames=8000; weight_noise=0; patience=5 ;;
  graves)  : "${epochs:=150}"; hidden=250; layers=3; optimizer=sgd; lr=1e-4
           batch_frames=1000; weight_noise=0.075; patience=10; init_range=0.1 ;;
  tiny)    : "${epochs:=1}"; hidden=16; layers=1; optimizer=adam; lr=3e-3
           batch_frames=3000; weight_noise=0; patience=0
           beam=4; lm_alphas="0 0.3"; lm_betas="0" ;;
esac
if [ -z "$name" ]; then   # timit, timit-graves, timit-tiny
  name=timit; [ "$size" = default ] || name=timit-$size
fi
data=data/timit${full_test:+-full}
exp=exp/$name${full_test:+-full}

log() { echo "== $(date +%H:%M:%S) $*"; }

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$data/summary.json" ]; then
    log "stage 1: $data exists, skipping data preparation"
  else
    [ -n "$timit" ] || { echo "run.sh: stage 1 needs --timit ROOT (the TIMIT tree)" >&2; exit 2; }
    log "stage 1: data directories from $timit into $data"
    # --overwrite: only an unfinished earlier run (no summary.json) can be there
    ctcseq prepare timit --timit "$timit" --out "$data" $full_test --overwrite
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for split in train dev test; do
    log "stage 2: features of $split"
    ctcseq features "$data/$split" "$exp/feats/$split" --jobs "$jobs"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  resume=
  [ -f "$exp/model/checkpoint.npz" ] && resume=--resume
  log "stage 3: training ($layers x $hidden BiLSTM, $optimizer, up to $epochs epochs) $resume"
  ctcseq train --train-data "$data/train" --train-feats "$exp/feats/train" \
    --dev-data "$data/dev" --dev-feats "$exp/feats/dev" --symbols "$data/phones.txt" \
    --out "$exp/model" --hidden "$hidden" --layers "$layers" --epochs "$epochs" \
    --optimizer "$optimizer" --lr "$lr" --momentum 0.9 --weight-noise "$weight_noise" \
    ${init_range:+--init-range "$init_range"} --patience "$patience" \
    --batch-frames "$batch_frames" --lm-order 3 --seed "$seed" $resume
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  model=$exp/model/best.npz
  mkdir -p "$exp/decode_dev" "$exp/decode_test"
  log "stage 4: greedy decoding of the test set"
  ctcseq decode "$model" --feats "$exp/feats/test" --out "$exp/decode_test/hyp_greedy.txt"
  # beam search with the phone 3-gram: pick the LM weight and insertion bonus on dev
  best=
  for alpha in $lm_alphas; do
    for beta in $lm_betas; do
      hyp=$exp/decode_dev/hyp_a${alpha}_b${beta}.txt
      ctcseq decode "$model" --feats "$exp/feats/dev" --beam "$beam" --lm "$exp/model/lm.json" \
        --alpha "$alpha" --beta "$beta" --out "$hyp"
      per=$(ctcseq eval "$data/dev/text.phn" "$hyp" --fold timit39 --name PER \
        | awk '{print $2}' | tr -d %)
      echo "dev PER ${per}% (39 phones) with beam $beam, alpha $alpha, beta $beta"
      if [ -z "$best" ] || awk "BEGIN{exit !($per < ${best%% *})}"; then best="$per $alpha $beta"; fi
    done
  done
  read -r best_per alpha beta <<< "$best"
  echo "$alpha $beta" > "$exp/decode_dev/lm_weights"
  log "stage 4: beam search ($beam) + phone 3-gram on test, alpha $alpha, beta $beta (dev PER ${best_per}%)"
  ctcseq decode "$model" --feats "$exp/feats/test" --beam "$beam" --lm "$exp/model/lm.json" \
    --alpha "$alpha" --beta "$beta" --out "$exp/decode_test/hyp_beam_lm.txt"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # hypotheses are 48-phone strings; --fold timit39 scores them on the usual 39 classes
  log "stage 5: scoring (greedy), 39 phones"
  ctcseq eval "$data/test/text.phn" "$exp/decode_test/hyp_greedy.txt" --fold timit39 --name PER \
    | tee "$exp/decode_test/score_greedy.txt"
  log "stage 5: scoring (beam search + LM), 39 phones, per speaker"
  ctcseq eval "$data/test/text.phn" "$exp/decode_test/hyp_beam_lm.txt" --fold timit39 --name PER \
    --utt2spk "$data/test/utt2spk" --details "$exp/decode_test/per_utt.txt" --worst 2 \
    | tee "$exp/decode_test/score.txt"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: forced alignment of the test set against TIMIT's hand-labelled boundaries"
  ctcseq align "$exp/model/best.npz" --feats "$exp/feats/test" --text "$data/test/text.phn" \
    --out "$exp/decode_test/align.ctm"
  python "$(dirname "$0")/../synth/local/compare_ctm.py" "$exp/decode_test/align.ctm" \
    "$data/test/phones.ctm" | tee "$exp/decode_test/align_check.txt"
fi
