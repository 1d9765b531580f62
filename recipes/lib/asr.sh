# recipes/lib/asr.sh: the stages every recipe shares (after ESPnet's asr.sh),
# built on stage.sh, so that all recipes rerun and resume alike:
#
#   2 features  log-mel + energy + deltas of each split (ctcseq features)
#   3 train     the BiLSTM-CTC model and a token n-gram (ctcseq train)
#   4 decode    the network's outputs of dev and test, computed once
#               (ctcseq forward: decode_{dev,test}/log_probs.npz), then
#               greedy, and beam search with the n-gram, its weight and
#               insertion bonus chosen on dev; a word n-gram too with $arpa
#               (stage 6 aligns from the same outputs)
#   5 score     error rates on test (ctcseq eval)
#   6 align     forced alignment of the test transcripts, compared with the
#               reference times (only a recipe that sets $align_check)
#
# A recipe's run.sh sources this file, parses its options, reads its
# settings (asr_settings: conf/<size>.sh beside run.sh), prepares its data
# (stage 1, its own) and calls asr_stages, which runs the stages of
# $stage..$stop_stage from these variables:
#
#   data exp            data directory root; experiment directory
#   train_set dev_set test_set
#                       the splits' data directories under $data
#   token_type          phn: text.phn, phones.txt, PER
#                       char: text.chr, chars.txt, CER and WER (characters
#                       joined into words at <space>)
#   jobs seed           feature extraction processes; training seed
#   nj                  feature extraction in this many shards (ctcseq
#                       features --shard J --num-shards nj), each started as
#                       $CTCSEQ_SHARD_CMD ctcseq features ... (empty: in the
#                       background here; e.g. "srun -N1 -n1 --exclusive" in a
#                       Slurm allocation), then merged; 1 (the default): one
#                       command with $jobs processes
#   device              where the network runs (ctcseq train/forward/decode/align
#                       --device): cpu (the default), cuda, auto.  Not recorded:
#                       a run may resume on the other device
#   mpi                 train on this many MPI processes: $CTCSEQ_MPIEXEC -n mpi
#                       ctcseq train ... (default mpiexec; srun under Slurm);
#                       1 (the default): plain ctcseq train.  Not recorded: a
#                       run may resume with another count (same data order,
#                       other float summation order)
#   train_opts          (array) the model and training options of ctcseq
#                       train, after --out (--lm-order and --seed follow)
#   model_desc          the model, for the log ("3 x 250 BiLSTM, up to 3 epochs")
#   lm_order            order of the token n-gram ctcseq train writes (lm.json)
#   beam lm_alphas lm_betas
#                       beam width; the LM weights and insertion bonuses tried on dev
#   eval_opts           (array) options of every ctcseq eval (--fold timit39); optional
#   eval_desc           what eval_opts score, for the log ("39 phones"); optional
#   speaker_desc        what utt2spk names, for the log ("speaker", the default)
#   arpa                char only: a word n-gram (ARPA, may be gzipped); optional
#   align_check         script comparing the alignment with test/phones.ctm
#                       (stage 6); empty (the default): no stage 6
#   align_desc          what test/phones.ctm holds, for the log
#   unrecorded          what a stage does with output that holds no record
#                       (.args) of its arguments: redo (the default: features
#                       extracted again, a model refused) or adopt (output
#                       made by this recipe before it kept records, after its
#                       inputs, is taken as made from the current arguments,
#                       as that recipe did: features completed, training
#                       resumed, where ctcseq train checks its own settings)
#
# What each stage records, and what a rerun does with it:
#   features  $exp/feats/<split>   the split's audio (utt2dur); another audio:
#                                  extracted again
#   train     $exp/model           data (utt2dur, transcripts, inventory) and
#                                  the options but --epochs and --patience,
#                                  which a resumed run may change (ctcseq train
#                                  extends a finished run); others: refused
#   decode    $exp/decode_test     model, features, references, search grid;
#                                  same: skipped, other: decoded again
#             $exp/decode_test_words  the same with $arpa
#   score, align                   refuse decodings and features that are not
#                                  those of the current model and data

. "$(dirname "${BASH_SOURCE[0]}")/stage.sh"

eval_opts=()
eval_desc=
speaker_desc=speaker
arpa=
align_check=
align_desc="the reference times"
unrecorded=redo
nj=1
mpi=1
device=cpu

log() { echo "== $(date +%H:%M:%S) $*"; }

# asr_usage: the header comment of run.sh (its --help).
asr_usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"
}

# asr_settings SIZE: read the settings of SIZE, conf/SIZE.sh beside run.sh.
asr_settings() {
  local conf
  conf=$(dirname "$0")/conf/$1.sh
  [ -f "$conf" ] || stage_refuse "no settings for size '$1' ($conf)"
  . "$conf"
}

# in_range N: whether stage N is to run
in_range() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# the files of a token type: transcripts, inventory, error rate
asr_tokens() {
  case "$token_type" in
    phn)  text=text.phn; symbols=phones.txt; metric=PER; token_name=phone ;;
    char) text=text.chr; symbols=chars.txt; metric=CER; token_name=character ;;
    *) stage_refuse "token_type must be phn or char, got '$token_type'" ;;
  esac
}

# what the features of a split are made from: its audio, known by the utterance
# ids and durations (utt2dur), so that a corpus moved elsewhere keeps them
asr_feats_args() {
  printf '%s\n' "data $data/$1" "audio $(stage_sig "$data/$1/utt2dur")" "settings default"
}
# refuse to use features that are not those of the current data directory
asr_check_feats() {
  [ "$(stage_state "$exp/feats/$1" "$(asr_feats_args "$1")")" = same ] ||
    stage_refuse "$exp/feats/$1 does not hold the features of $data/$1 (run stage 2)"
}

# the data and settings of the model: one line an option of train_opts, but
# --epochs and --patience (ctcseq train lets a resumed run change them)
asr_train_args() {
  local key val
  printf '%s\n' "train $data/$train_set $(stage_sig "$data/$train_set/utt2dur" "$data/$train_set/$text")" \
    "dev $data/$dev_set $(stage_sig "$data/$dev_set/utt2dur" "$data/$dev_set/$text")" \
    "symbols $(stage_sig "$data/$symbols")"
  set -- "${train_opts[@]}" --lm-order "$lm_order" --seed "$seed"
  while [ $# -gt 0 ]; do
    key=${1#--}; key=${key//-/_}
    if [ $# -gt 1 ] && [ "${2#--}" = "$2" ]; then val=$2; shift 2; else val=yes; shift; fi
    case "$key" in epochs|patience) ;; *) echo "$key $val" ;; esac
  done
}

asr_decode_args() {
  local opts=${eval_opts[*]+${eval_opts[*]}}
  printf '%s\n' "model $(stage_sig "$exp/model/best.npz" "$exp/model/lm.json")" \
    "feats $(stage_sig "$exp/feats/$dev_set/$STAGE_RECORD" "$exp/feats/$test_set/$STAGE_RECORD")" \
    "refs $data/$dev_set $data/$test_set $(stage_sig "$data/$dev_set/$text" "$data/$test_set/$text")" \
    "search beam $beam alphas $lm_alphas betas $lm_betas" \
    "eval ${opts:-default}"
}

# the word n-gram decoding: the model, the test features and the ARPA file
asr_words_args() {
  printf '%s\n' "model $(stage_sig "$exp/model/best.npz")" \
    "feats $data/$test_set $(stage_sig "$exp/feats/$test_set/$STAGE_RECORD")" \
    "arpa $(stage_abspath "$arpa") $(stage_sig "$arpa")" "search beam $beam alpha 0.5 beta 1"
}

# refuse to score a decoding that is not of the current model and data
asr_check_decoding() {   # DIR ARGS
  case $(stage_state "$1" "$2") in
    none) stage_refuse "$1 holds no complete decoding (run stage 4)" ;;
    changed) stage_refuse "$1 was decoded from other inputs ($(stage_diff "$1" "$2"));" \
               "run stage 4 again" ;;
  esac
}

# '<utt> c h a r <space> c h a r ...' -> '<utt> char char ...'
chars_to_words() {
  awk '{ printf "%s", $1; w = "";
         for (i = 2; i <= NF; i++) {
           if ($i == "<space>") { if (w != "") printf " %s", w; w = "" } else w = w $i }
         if (w != "") printf " %s", w; print "" }' "$1" > "$2"
}

# whether FILE was written after every other file given (all exist)
made_after() {
  local f=$1 g; shift
  [ -e "$f" ] || return 1
  for g in "$@"; do [ "$f" -nt "$g" ] || return 1; done
}

asr_features() {
  local split feats args
  for split in "$train_set" "$dev_set" "$test_set"; do
    feats=$exp/feats/$split
    [ -f "$data/$split/wav.scp" ] || stage_refuse "$data/$split is not prepared (run stage 1)"
    args=$(asr_feats_args "$split")
    case $(stage_state "$feats" "$args") in
      changed) log "stage 2: $feats was made from other audio ($(stage_diff "$feats" "$args")):" \
                 "extracting again"
               rm -rf "$feats" ;;
      none) if [ -e "$feats" ]; then
              if [ "$unrecorded" = adopt ] && made_after "$feats/feats.json" "$data/$split/utt2dur"; then
                log "stage 2: $feats holds no record of its audio, and was made after" \
                  "$data/$split: keeping it"
              else
                log "stage 2: $feats holds no record of its audio: extracting again"
                rm -rf "$feats"
              fi
            fi ;;
    esac
    stage_record "$feats" "$args"     # before extracting: an interrupted run resumes
    if [ "$nj" -gt 1 ]; then
      asr_sharded_features "$split" "$feats"
    else
      log "stage 2: features of $split"
      ctcseq features "$data/$split" "$feats" --jobs "$jobs"
    fi
  done
}

# asr_sharded_features SPLIT FEATS: $nj shards at once, then their merge;
# a rerun skips the shards that finished
asr_sharded_features() {
  local j pids=() failed=0
  log "stage 2: features of $1 in $nj shards${CTCSEQ_SHARD_CMD:+ ($CTCSEQ_SHARD_CMD)}"
  for j in $(seq 1 "$nj"); do
    ${CTCSEQ_SHARD_CMD:-} ctcseq features "$data/$1" "$2" --jobs 1 --quiet \
      --shard "$j" --num-shards "$nj" &
    pids+=("$!")
  done
  for j in "${pids[@]}"; do wait "$j" || failed=1; done
  [ "$failed" = 0 ] || stage_refuse "stage 2: a shard of $1 failed (above); rerun to redo" \
    "only the unfinished ones"
  ctcseq features "$data/$1" "$2" --merge --num-shards "$nj"
}

asr_train() {
  local args resume newest text_opt='' model=$exp/model
  asr_check_feats "$train_set"; asr_check_feats "$dev_set"
  args=$(asr_train_args)
  case $(stage_state "$model" "$args") in
    changed) stage_refuse "$model was trained with other data or settings" \
               "($(stage_diff "$model" "$args")); remove it or choose another --name" ;;
    none) if [ -f "$model/checkpoint.npz" ] || [ -f "$model/best.npz" ]; then
            newest=$model/checkpoint.npz; [ -f "$newest" ] || newest=$model/best.npz
            if [ "$unrecorded" = adopt ] &&
               made_after "$newest" "$data/$train_set/utt2dur" "$data/$dev_set/utt2dur"; then
              log "stage 3: $model holds no record of its data and settings, and was made" \
                "after $data/$train_set: resuming it (ctcseq train checks its settings)"
            else
              stage_refuse "$model holds a model with no record of its data and settings;" \
                "remove it or choose another --name"
            fi
          fi ;;
  esac
  stage_record "$model" "$args"   # before training: a resumed run has the same
  resume=
  [ -f "$model/checkpoint.npz" ] && resume=--resume
  log "stage 3: training ($model_desc) $resume"
  # --text only where it is not ctcseq train's default (text.phn)
  [ "$text" = text.phn ] || text_opt="--text $text"
  local launch=()
  [ "$mpi" -gt 1 ] && launch=(${CTCSEQ_MPIEXEC:-mpiexec} -n "$mpi")
  ${launch[@]+"${launch[@]}"} ctcseq train ${device_opt[@]+"${device_opt[@]}"} \
    --train-data "$data/$train_set" --train-feats "$exp/feats/$train_set" \
    --dev-data "$data/$dev_set" --dev-feats "$exp/feats/$dev_set" \
    $text_opt --symbols "$data/$symbols" \
    --out "$model" "${train_opts[@]}" --lm-order "$lm_order" --seed "$seed" $resume
}

asr_decode() {
  local model=$exp/model/best.npz args best alpha beta hyp err best_err words
  [ -f "$model" ] || stage_refuse "$model: no trained model (run stage 3)"
  asr_check_feats "$dev_set"; asr_check_feats "$test_set"
  if [ -n "$arpa" ] && [ ! -f "$arpa" ]; then stage_refuse "--arpa $arpa: no such file"; fi
  [ "$(stage_state "$exp/model" "$(asr_train_args)")" = same ] ||
    echo "warning: $exp/model was not trained on $data/$train_set with this run's settings" >&2
  args=$(asr_decode_args)
  if [ "$(stage_state "$exp/decode_test" "$args")" = same ]; then
    log "stage 4: $exp/decode_test holds the decoding of this model and data, skipping"
  else
    rm -rf "$exp/decode_dev" "$exp/decode_test"
    mkdir -p "$exp/decode_dev" "$exp/decode_test"
    # the network runs once per set; every decoding (and stage 6) reads its outputs
    log "stage 4: network outputs of the dev and test sets"
    ctcseq forward ${device_opt[@]+"${device_opt[@]}"} "$model" --feats "$exp/feats/$dev_set" \
      --out "$exp/decode_dev/log_probs.npz"
    ctcseq forward ${device_opt[@]+"${device_opt[@]}"} "$model" --feats "$exp/feats/$test_set" \
      --out "$exp/decode_test/log_probs.npz"
    log "stage 4: greedy decoding of the test set"
    ctcseq decode "$model" --log-probs "$exp/decode_test/log_probs.npz" \
      --out "$exp/decode_test/hyp_greedy.txt"
    # beam search with the token n-gram: pick the LM weight and insertion bonus on dev
    best=
    for alpha in $lm_alphas; do
      for beta in $lm_betas; do
        hyp=$exp/decode_dev/hyp_a${alpha}_b${beta}.txt
        ctcseq decode "$model" --log-probs "$exp/decode_dev/log_probs.npz" --beam "$beam" \
          --lm "$exp/model/lm.json" --alpha "$alpha" --beta "$beta" --out "$hyp"
        err=$(ctcseq eval "$data/$dev_set/$text" "$hyp" ${eval_opts[@]+"${eval_opts[@]}"} \
          --name "$metric" | awk '{print $2}' | tr -d %)
        echo "dev $metric ${err}%${eval_desc:+ ($eval_desc)} with beam $beam, alpha $alpha, beta $beta"
        if [ -z "$best" ] || awk "BEGIN{exit !($err < ${best%% *})}"; then best="$err $alpha $beta"; fi
      done
    done
    read -r best_err alpha beta <<< "$best"
    echo "$alpha $beta" > "$exp/decode_dev/lm_weights"
    log "stage 4: beam search ($beam) + $token_name ${lm_order}-gram on test, alpha $alpha," \
      "beta $beta (dev $metric ${best_err}%)"
    ctcseq decode "$model" --log-probs "$exp/decode_test/log_probs.npz" --beam "$beam" \
      --lm "$exp/model/lm.json" --alpha "$alpha" --beta "$beta" \
      --out "$exp/decode_test/hyp_beam_lm.txt"
    stage_record "$exp/decode_test" "$args"    # last: the decoding is complete
  fi
  [ -n "$arpa" ] || return 0
  words=$exp/decode_test_words
  args=$(asr_words_args)
  if [ "$(stage_state "$words" "$args")" = same ]; then
    log "stage 4: $words holds the decoding with $arpa, skipping"
    return 0
  fi
  if [ "$(stage_state "$words" "$args")" = changed ]; then
    log "stage 4: $words was decoded from other inputs ($(stage_diff "$words" "$args")):" \
      "decoding again"
  fi
  rm -rf "$words"; mkdir -p "$words"
  # OpenSLR's LibriSpeech LMs are upper case, the character sets are lower case
  log "stage 4: lower-casing $arpa into $words/words.arpa"
  case "$arpa" in *.gz) zcat "$arpa" ;; *) cat "$arpa" ;; esac \
    | tr 'A-Z' 'a-z' > "$words/words.arpa"
  # the word LM's weights are not tuned (decoding dev once per setting is slow)
  log "stage 4: beam search ($beam) + word n-gram $arpa on test (alpha 0.5, beta 1)"
  local source=(--log-probs "$exp/decode_test/log_probs.npz")
  [ -f "$exp/decode_test/log_probs.npz" ] || source=(--feats "$exp/feats/$test_set")
  ctcseq decode ${device_opt[@]+"${device_opt[@]}"} "$model" "${source[@]}" --beam "$beam" \
    --lm "$words/words.arpa" \
    --alpha 0.5 --beta 1 --out "$words/hyp_beam_words.txt"
  stage_record "$words" "$args"    # last: the decoding is complete
}

asr_score() {
  local dir=$exp/decode_test hyps hyp kind out
  asr_check_decoding "$dir" "$(asr_decode_args)"
  if [ "$token_type" = phn ]; then
    log "stage 5: scoring (greedy)${eval_desc:+, $eval_desc}"
    ctcseq eval "$data/$test_set/$text" "$dir/hyp_greedy.txt" ${eval_opts[@]+"${eval_opts[@]}"} \
      --name "$metric" | tee "$dir/score_greedy.txt"
    log "stage 5: scoring (beam search + LM)${eval_desc:+, $eval_desc}, per $speaker_desc"
    ctcseq eval "$data/$test_set/$text" "$dir/hyp_beam_lm.txt" ${eval_opts[@]+"${eval_opts[@]}"} \
      --name "$metric" --utt2spk "$data/$test_set/utt2spk" --details "$dir/per_utt.txt" --worst 2 \
      | tee "$dir/score.txt"
    return 0
  fi
  hyps="$dir/hyp_greedy.txt $dir/hyp_beam_lm.txt"
  if [ -n "$arpa" ]; then
    asr_check_decoding "$exp/decode_test_words" "$(asr_words_args)"
    hyps="$hyps $exp/decode_test_words/hyp_beam_words.txt"
  fi
  # ctcseq eval scores the tokens it is given: CER on characters (<space> counts
  # as one), WER after joining the characters into words
  for hyp in $hyps; do
    kind=$(basename "$hyp" .txt); kind=${kind#hyp_}; out=$(dirname "$hyp")
    log "stage 5: scoring $kind"
    chars_to_words "$hyp" "${hyp%.txt}.words.txt"
    ctcseq eval "$data/$test_set/$text" "$hyp" ${eval_opts[@]+"${eval_opts[@]}"} --name CER \
      | tee "$out/score_$kind.txt"
    ctcseq eval "$data/$test_set/text" "${hyp%.txt}.words.txt" --name WER \
      --details "$out/wer_utt_$kind.txt" | tee -a "$out/score_$kind.txt"
  done
}

asr_align() {
  local model=$exp/model/best.npz dir=$exp/decode_test
  [ -f "$model" ] || stage_refuse "$model: no trained model (run stage 3)"
  asr_check_feats "$test_set"
  mkdir -p "$dir"
  log "stage 6: forced alignment of the test set against $align_desc"
  # stage 4's network outputs when they are this model's and data's
  local source=(--feats "$exp/feats/$test_set")
  if [ "$(stage_state "$dir" "$(asr_decode_args)")" = same ] && [ -f "$dir/log_probs.npz" ]; then
    source=(--log-probs "$dir/log_probs.npz")
  fi
  ctcseq align ${device_opt[@]+"${device_opt[@]}"} "$model" "${source[@]}" \
    --text "$data/$test_set/$text" --out "$dir/align.ctm"
  python "$align_check" "$dir/align.ctm" "$data/$test_set/phones.ctm" | tee "$dir/align_check.txt"
}

# asr_prepared ARGS: stage 1's bookkeeping, the same in every recipe.  True
# (logged as skipped) when $data holds a finished preparation made from ARGS;
# otherwise logs why it is made again and returns 1 (the recipe then prepares
# it, with --overwrite, and calls stage_record "$data" ARGS).
asr_prepared() {
  local state
  state=$(stage_state "$data" "$1")
  if [ "$state" = same ] && [ -f "$data/summary.json" ]; then
    log "stage 1: $data exists, made with these arguments: skipping"
    return 0
  fi
  if [ "$state" = changed ]; then
    log "stage 1: $data was made with other arguments ($(stage_diff "$data" "$1")):" \
      "making it again"
  elif [ -f "$data/summary.json" ]; then
    log "stage 1: $data holds no record of its arguments: making it again"
  fi
  return 1
}

# asr_stages: stages 2 to 6 of $stage..$stop_stage
asr_stages() {
  asr_tokens
  device_opt=()
  case "$device" in
    cpu) ;;
    cuda|auto) device_opt=(--device "$device") ;;
    *) stage_refuse "--device must be cpu, cuda or auto, got '$device'" ;;
  esac
  if in_range 2; then asr_features; fi
  if in_range 3; then asr_train; fi
  if in_range 4; then asr_decode; fi
  if in_range 5; then asr_score; fi
  if [ -n "$align_check" ] && in_range 6; then asr_align; fi
  return 0
}
