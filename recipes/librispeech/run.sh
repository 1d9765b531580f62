#!/usr/bin/env bash
# BiLSTM-CTC character recognition on LibriSpeech (OpenSLR 12).
#
# Stages (each resumable; --stage/--stop-stage pick a range):
#   1 prepare   data/<name>/{train_clean_100,dev_clean,test_clean} from the
#               unpacked corpus (--root: LibriSpeech/ or the folder holding it)
#   2 features  40 log-mel + energy, deltas, delta-deltas (123 per frame)
#   3 train     3 x 250 peephole BiLSTM over characters (a-z, ', <space>), Adam;
#               dev CER each epoch; a character n-gram of the training text
#   4 decode    greedy, and beam search with the character n-gram whose weight
#               and insertion bonus are chosen on dev; with --arpa also a word
#               n-gram (e.g. 3-gram.pruned.1e-7.arpa.gz of OpenSLR 11)
#   5 score     CER and WER (characters joined into words at <space>) on test
#
# Usage: recipes/librispeech/run.sh --root ROOT [--tiny] [--stage N] [--stop-stage N]
#          [--train-part P] [--dev-part P] [--test-part P] [--arpa FILE]
#          [--jobs J] [--epochs E] [--seed S] [--name NAME]
#
# Cost: train-clean-100 is 100 h (36 M frames); an epoch of the 3 x 250 model
# takes hours on a few CPU cores (the synthetic recipe's 2.4 h take 2.5 min an
# epoch on 2 cores). --tiny checks that the stages run, on any subset.
set -euo pipefail

stage=1
stop_stage=5
root=
size=default
train_part=train-clean-100
dev_part=dev-clean
test_part=test-clean
arpa=
jobs=2
seed=0
epochs=
name=
lm_order=4
beam=16
lm_alphas="0 0.3 0.6"
lm_betas="0 1"

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --tiny) size=tiny; shift ;;
    --train-part) train_part=$2; shift 2 ;;
    --dev-part) dev_part=$2; shift 2 ;;
    --test-part) test_part=$2; shift 2 ;;
    --arpa) arpa=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$size" in
  default) : "${epochs:=20}"; hidden=250; layers=3; batch_frames=8000; lr=1e-3; patience=3 ;;
  tiny)    : "${epochs:=1}"; hidden=16; layers=1; batch_frames=3000; lr=3e-3; patience=0
           beam=4; lm_alphas="0 0.3"; lm_betas="0" ;;
esac
if [ -z "$name" ]; then
  name=librispeech; [ "$size" = default ] || name=librispeech-$size
fi
data=data/librispeech
exp=exp/$name
train=${train_part//-/_}; dev=${dev_part//-/_}; test=${test_part//-/_}   # Kaldi's dir names

log() { echo "== $(date +%H:%M:%S) $*"; }

# '<utt> c h a r <space> c h a r ...' -> '<utt> char char ...'
chars_to_words() {
  awk '{ printf "%s", $1; w = "";
         for (i = 2; i <= NF; i++) {
           if ($i == "<space>") { if (w != "") printf " %s", w; w = "" } else w = w $i }
         if (w != "") printf " %s", w; print "" }' "$1" > "$2"
}

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  if [ -f "$data/summary.json" ]; then
    log "stage 1: $data exists, skipping data preparation"
  else
    [ -n "$root" ] || { echo "run.sh: stage 1 needs --root ROOT (LibriSpeech/)" >&2; exit 2; }
    log "stage 1: data directories of $train_part, $dev_part, $test_part into $data"
    # --overwrite: only an unfinished earlier run (no summary.json) can be there
    ctcseq prepare librispeech --root "$root" --out "$data" \
      --parts "$train_part" "$dev_part" "$test_part" --overwrite
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  for split in "$train" "$dev" "$test"; do
    log "stage 2: features of $split"
    ctcseq features "$data/$split" "$exp/feats/$split" --jobs "$jobs"
  done
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  resume=
  [ -f "$exp/model/checkpoint.npz" ] && resume=--resume
  log "stage 3: training ($layers x $hidden BiLSTM on characters, up to $epochs epochs) $resume"
  ctcseq train --train-data "$data/$train" --train-feats "$exp/feats/$train" \
    --dev-data "$data/$dev" --dev-feats "$exp/feats/$dev" \
    --text text.chr --symbols "$data/chars.txt" \
    --out "$exp/model" --hidden "$hidden" --layers "$layers" --epochs "$epochs" \
    --patience "$patience" --batch-frames "$batch_frames" --lr "$lr" \
    --lm-order "$lm_order" --seed "$seed" $resume
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  model=$exp/model/best.npz
  mkdir -p "$exp/decode_dev" "$exp/decode_test"
  log "stage 4: greedy decoding of the test set"
  ctcseq decode "$model" --feats "$exp/feats/$test" --out "$exp/decode_test/hyp_greedy.txt"
  # beam search with the character n-gram: pick the LM weight and insertion bonus on dev
  best=
  for alpha in $lm_alphas; do
    for beta in $lm_betas; do
      hyp=$exp/decode_dev/hyp_a${alpha}_b${beta}.txt
      ctcseq decode "$model" --feats "$exp/feats/$dev" --beam "$beam" --lm "$exp/model/lm.json" \
        --alpha "$alpha" --beta "$beta" --out "$hyp"
      cer=$(ctcseq eval "$data/$dev/text.chr" "$hyp" --name CER | awk '{print $2}' | tr -d %)
      echo "dev CER ${cer}% with beam $beam, alpha $alpha, beta $beta"
      if [ -z "$best" ] || awk "BEGIN{exit !($cer < ${best%% *})}"; then best="$cer $alpha $beta"; fi
    done
  done
  read -r best_cer alpha beta <<< "$best"
  echo "$alpha $beta" > "$exp/decode_dev/lm_weights"
  log "stage 4: beam search ($beam) + character $lm_order-gram on test, alpha $alpha," \
    "beta $beta (dev CER ${best_cer}%)"
  ctcseq decode "$model" --feats "$exp/feats/$test" --beam "$beam" --lm "$exp/model/lm.json" \
    --alpha "$alpha" --beta "$beta" --out "$exp/decode_test/hyp_beam_lm.txt"
  if [ -n "$arpa" ]; then
    # OpenSLR's LibriSpeech LMs are upper case, the character set is lower case
    words_lm=$exp/model/words.arpa
    if [ ! -f "$words_lm" ]; then
      log "stage 4: lower-casing $arpa into $words_lm"
      case "$arpa" in *.gz) zcat "$arpa" ;; *) cat "$arpa" ;; esac \
        | tr 'A-Z' 'a-z' > "$words_lm.tmp"
      mv "$words_lm.tmp" "$words_lm"
    fi
    # the word LM's weights are not tuned (decoding dev once per setting is slow)
    log "stage 4: beam search ($beam) + word n-gram $arpa on test (alpha 0.5, beta 1)"
    ctcseq decode "$model" --feats "$exp/feats/$test" --beam "$beam" --lm "$words_lm" \
      --alpha 0.5 --beta 1 --out "$exp/decode_test/hyp_beam_words.txt"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  # ctcseq eval scores the tokens it is given: CER on characters (<space> counts
  # as one), WER after joining the characters into words
  for hyp in "$exp"/decode_test/hyp_*.txt; do
    case "$hyp" in *.words.txt) continue ;; esac
    kind=$(basename "$hyp" .txt); kind=${kind#hyp_}
    log "stage 5: scoring $kind"
    chars_to_words "$hyp" "${hyp%.txt}.words.txt"
    ctcseq eval "$data/$test/text.chr" "$hyp" --name CER | tee "$exp/decode_test/score_$kind.txt"
    ctcseq eval "$data/$test/text" "${hyp%.txt}.words.txt" --name WER \
      --details "$exp/decode_test/wer_utt_$kind.txt" | tee -a "$exp/decode_test/score_$kind.txt"
  done
fi
