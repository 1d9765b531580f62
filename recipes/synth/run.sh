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
#                             [--hours H] [--jobs J] [--epochs E] [--name NAME]
set -euo pipefail

stage=1
stop_stage=6
size=default
jobs=2
seed=0
hours=
epochs=
name=
beam=32
lm_alphas="0.5 0.7"
lm_betas="1.5"
stride=2          # two 10 ms frames per BiLSTM step
cmvn=utterance    # each utterance normalised with its own statistics

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --small) size=small; shift ;;
    --tiny) size=tiny; shift ;;
    --hours) hours=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Sizes: default 12 h of audio, small for a quick look (< 3 min), tiny for tests.
# More hours and fewer epochs beat the reverse at equal cost (RESULTS.md).
case "$size" in
  default) : "${hours:=12}"; : "${epochs:=3}"; hidden=250; layers=3; batch_frames=4000; lr=2e-3; lr_decay=0.5; ema=0.999; patience=3; lm_order=6 ;;
  small)   : "${hours:=0.3}"; : "${epochs:=15}"; hidden=128; layers=2; batch_frames=2000; lr=3e-3; lr_decay=0.9; ema=0; patience=3; lm_order=4 ;;
  tiny)    : "${hours:=0.02}"; : "${epochs:=2}"; hidden=16; layers=1; batch_frames=3000; lr=3e-3; lr_decay=1; ema=0; patience=0; lm_order=3 ;;
esac
: "${name:=synth-$size}"
data=data/$name
exp=exp/$name

log() { echo "== $(date +%H:%M:%S) $*"; }

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$data/summary.json" ]; then
    log "stage 1: $data exists, skipping synthesis"
  else
    log "stage 1: synthesising $hours h into $data"
    ctcseq prepare synth --out "$data" --hours "$hours" --seed "$seed" --jobs "$jobs"
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
  log "stage 3: training ($layers x $hidden BiLSTM, up to $epochs epochs) $resume"
  ctcseq train --train-data "$data/train" --train-feats "$exp/feats/train" \
    --dev-data "$data/dev" --dev-feats "$exp/feats/dev" --symbols "$data/phones.txt" \
    --out "$exp/model" --hidden "$hidden" --layers "$layers" --epochs "$epochs" \
    --patience "$patience" --batch-frames "$batch_frames" --lr "$lr" --lr-decay "$lr_decay" --ema "$ema" --stride "$stride" \
    --cmvn "$cmvn" --lm-order "$lm_order" --seed "$seed" $resume
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  model=$exp/model/best.npz
  mkdir -p "$exp/decode_dev" "$exp/decode_test"
  log "stage 4: greedy decoding of the test set"
  ctcseq decode "$model" --feats "$exp/feats/test" --out "$exp/decode_test/hyp_greedy.txt"
  # beam search with the phone n-gram: pick the LM weight and insertion bonus on dev
  best=
  for alpha in $lm_alphas; do
    for beta in $lm_betas; do
      hyp=$exp/decode_dev/hyp_a${alpha}_b${beta}.txt
      ctcseq decode "$model" --feats "$exp/feats/dev" --beam "$beam" --lm "$exp/model/lm.json" \
        --alpha "$alpha" --beta "$beta" --out "$hyp"
      per=$(ctcseq eval "$data/dev/text.phn" "$hyp" --name PER | awk '{print $2}' | tr -d %)
      echo "dev PER ${per}% with beam $beam, alpha $alpha, beta $beta"
      if [ -z "$best" ] || awk "BEGIN{exit !($per < ${best%% *})}"; then best="$per $alpha $beta"; fi
    done
  done
  read -r best_per alpha beta <<< "$best"
  echo "$alpha $beta" > "$exp/decode_dev/lm_weights"
  log "stage 4: beam search ($beam) + phone ${lm_order}-gram on test, alpha $alpha, beta $beta (dev PER ${best_per}%)"
  ctcseq decode "$model" --feats "$exp/feats/test" --beam "$beam" --lm "$exp/model/lm.json" \
    --alpha "$alpha" --beta "$beta" --out "$exp/decode_test/hyp_beam_lm.txt"
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  log "stage 5: scoring (greedy)"
  ctcseq eval "$data/test/text.phn" "$exp/decode_test/hyp_greedy.txt" --name PER \
    | tee "$exp/decode_test/score_greedy.txt"
  log "stage 5: scoring (beam search + LM), per test voice"
  ctcseq eval "$data/test/text.phn" "$exp/decode_test/hyp_beam_lm.txt" --name PER \
    --utt2spk "$data/test/utt2spk" --details "$exp/decode_test/per_utt.txt" --worst 2 \
    | tee "$exp/decode_test/score.txt"
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  log "stage 6: forced alignment of the test set against eSpeak's timing"
  ctcseq align "$exp/model/best.npz" --feats "$exp/feats/test" --text "$data/test/text.phn" \
    --out "$exp/decode_test/align.ctm"
  python "$(dirname "$0")/local/compare_ctm.py" "$exp/decode_test/align.ctm" \
    "$data/test/phones.ctm" | tee "$exp/decode_test/align_check.txt"
fi
