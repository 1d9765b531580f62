# recipes/lib/stage.sh: what a recipe stage was made from, and whether a rerun
# may reuse it.  Source it from a recipe:
#
#   . "$(dirname "$0")/../lib/stage.sh"
#
# A stage that writes a directory DIR records the arguments it was made from
# in DIR/.args, one "key value ..." line each: paths made absolute
# (stage_abspath), input files by their checksum (stage_sig), settings as
# given.  On a rerun the recipe builds the same lines and asks stage_state:
#
#   none     DIR holds no record (nothing there yet, an interrupted first
#            run, or output of a run that kept no record: of unknown origin)
#   same     DIR was made from these arguments: reuse it (or resume)
#   changed  DIR was made from other ones; stage_diff says which, in one line
#
# and then redoes the stage (data it can remake) or refuses with one line
# (stage_refuse; a trained model is not thrown away).  Which stage does which
# is the recipe's choice; this file only keeps the records.  A stage that
# resumes (features, training) records before it starts, so that an
# interrupted run is never resumed with other arguments; a stage that is
# redone as a whole records when it has finished.
#
# The data_prep builders know .args: `ctcseq prepare ... --overwrite` removes
# it with the rest of their output, so a record never outlives its data.

STAGE_RECORD=.args

# stage_abspath PATH: PATH made absolute (symbolic links resolved); as given
# when its folder does not exist.
stage_abspath() {
  local p=$1 d
  if [ -d "$p" ]; then (cd "$p" && pwd -P); return; fi
  d=$(dirname "$p")
  if [ -d "$d" ]; then echo "$(cd "$d" && pwd -P)/$(basename "$p")"; else echo "$p"; fi
}

# stage_sig FILE...: "cksum:bytes" of each file's content, "missing" for a
# file that does not exist; on one line.
stage_sig() {
  local f out=
  for f in "$@"; do
    if [ -f "$f" ]; then
      out="$out${out:+ }$(cksum < "$f" | awk '{print $1 ":" $2}')"
    else
      out="$out${out:+ }missing"
    fi
  done
  echo "$out"
}

# stage_state DIR ARGS: none, same or changed (see above).
stage_state() {
  local rec=$1/$STAGE_RECORD
  if [ ! -f "$rec" ]; then
    echo none
  elif [ "$(cat "$rec")" = "$2" ]; then
    echo same
  else
    echo changed
  fi
}

# stage_get DIR KEY: the value recorded for KEY (empty when none).
stage_get() {
  [ -f "$1/$STAGE_RECORD" ] || return 0
  awk -v k="$2" '$1 == k { sub(/^[^ ]+ ?/, ""); print; exit }' "$1/$STAGE_RECORD"
}

# stage_diff DIR ARGS: what changed, on one line: "key: OLD -> NEW; ...".
stage_diff() {
  printf '%s\n' "$2" | awk -v rec="$1/$STAGE_RECORD" '
    function val(line) { sub(/^[^ ]+ ?/, "", line); return line }
    function add(s) { out = out (out == "" ? "" : "; ") s }
    BEGIN { while ((getline line < rec) > 0) { split(line, f, " "); old[f[1]] = val(line)
                                                keys[++n] = f[1] } }
    { k = $1; v = val($0); seen[k] = 1
      if (!(k in old)) add(k ": (none) -> " v)
      else if (old[k] != v) add(k ": " old[k] " -> " v) }
    END { for (i = 1; i <= n; i++)
            if (!(keys[i] in seen)) add(keys[i] ": " old[keys[i]] " -> (none)")
          print out }'
}

# stage_record DIR ARGS: write DIR/.args (DIR is created).
stage_record() {
  mkdir -p "$1"
  printf '%s\n' "$2" > "$1/$STAGE_RECORD"
}

# stage_forget DIR: remove the record (before redoing what DIR holds).
stage_forget() {
  rm -f "$1/$STAGE_RECORD"
}

# stage_refuse MESSAGE...: one line on stderr, exit status 2.  Not inside $(...).
stage_refuse() {
  echo "${0##*/}: $*" >&2
  exit 2
}
