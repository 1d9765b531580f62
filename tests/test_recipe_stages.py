"""The three recipes on the shared stages (recipes/lib/asr.sh): the commands
they run, and the reruns of the synthetic recipe.

Every recipe runs under bash with stand-ins for ``ctcseq`` and ``python``
first on PATH: they log their arguments and write what the next stage looks
for, so that a whole recipe takes a second or two.  The command lists are
compared with references in tests/data/recipe_commands/, which were made
from the recipes as they were before the shared stages (the synthetic one
of commit e993a0b, the TIMIT and LibriSpeech ones with their stage records,
recipes/lib/stage.sh): a recipe must run the same commands with the same
arguments in the same order.  The stage records (.args) are bookkeeping and
not compared.

When a change of commands is meant, write the references again from the
changed recipes and read the diff:

    python tests/test_recipe_stages.py --write recipes
"""
import difflib
import os
import shutil
import subprocess
import sys

import pytest

from test_recipes_rerun import ok, one_line_error  # noqa: E402  (shared checks of a recipe run)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO, "recipes")
REFERENCES = os.path.join(REPO, "tests", "data", "recipe_commands")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# The stand-in for ctcseq.  Each call is one line of the log: its arguments,
# shell-quoted.  The dev error rate that `eval` prints depends on the
# hypothesis file, so that the choice of the LM weights shows in the final
# decoding's arguments.
CTCSEQ = r"""#!/usr/bin/env bash
# one write per call: shards run at once and append to the same log
line=$(printf ctcseq; printf ' %q' "$@"); printf '%s\n' "$line" >> "$STUB_LOG"
opt() { local want=$1; shift
        while [ $# -gt 1 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
split_files() {   # DIR DURATION: a data directory of one utterance
  mkdir -p "$1"
  echo "u1 /corpus/u1.wav" > "$1/wav.scp"; echo "u1 $2" > "$1/utt2dur"
  echo "u1 s1" > "$1/utt2spk"; echo "u1 HELLO" > "$1/text"
  echo "u1 hh ah" > "$1/text.phn"; echo "u1 h i" > "$1/text.chr"
  echo "u1 1 0.00 0.10 hh" > "$1/phones.ctm"
}
case "$1" in
  prepare)
    out=$(opt --out "$@"); mkdir -p "$out"
    parts=; in_parts=
    for a in "$@"; do
      case "$a" in --parts) in_parts=1 ;; --*) in_parts= ;; *) [ -z "$in_parts" ] || parts="$parts $a" ;; esac
    done
    h=$(opt --hours "$@"); s=$(opt --seed "$@")
    if [ -n "$parts" ]; then
      for p in $parts; do split_files "$out/${p//-/_}" 1.5; done
    else
      for sp in train dev test; do split_files "$out/$sp" "${h:-1.5}"; done
    fi
    echo "hh 1" > "$out/phones.txt"; echo "h 1" > "$out/chars.txt"
    printf '{\n "hours": %s,\n "seed": %s\n}\n' "${h:-3}" "${s:-0}" > "$out/config.json"
    echo "{}" > "$out/summary.json" ;;
  features) mkdir -p "$3/npy"; echo "{}" > "$3/feats.json"; touch "$3/npy/u1.npy" ;;
  train) out=$(opt --out "$@"); mkdir -p "$out"
         echo model > "$out/best.npz"; echo lm > "$out/lm.json"; echo ckpt > "$out/checkpoint.npz" ;;
  decode|align) out=$(opt --out "$@"); echo "u1 hh ah" > "$out" ;;
  forward) out=$(opt --out "$@"); echo lp > "$out" ;;
  eval) name=$(opt --name "$@"); n=$(printf '%s' "$3" | cksum | awk '{print $1 % 1000}')
        echo "$name $((n / 10)).$((n % 10))% [ 1 / 8, 1 sub, 0 del, 0 ins ] over 1 utterances"
        d=$(opt --details "$@"); [ -z "$d" ] || echo "u1 12.5%" > "$d" ;;
esac
"""

PYTHON = r"""#!/usr/bin/env bash
line=$(printf python; printf ' %q' "$@"); printf '%s\n' "$line" >> "$STUB_LOG"
echo "2 labels in 1 utterances (0 skipped)"
"""

TIMIT, LIBRI = "/corpora/timit", "/corpora/LibriSpeech"

# name: (recipe, runs one after the other in one working directory)
SCENARIOS = {
    "synth-default": ("synth", [[]]),
    "synth-small": ("synth", [["--small"]]),
    "synth-tiny": ("synth", [["--tiny"]]),
    "synth-options": ("synth", [
        ["--tiny", "--hours", "0.05", "--epochs", "4", "--seed", "3", "--jobs", "1",
         "--name", "mine", "--stop-stage", "3"],
        ["--tiny", "--hours", "0.05", "--epochs", "4", "--seed", "3", "--jobs", "1",
         "--name", "mine", "--stage", "3"]]),
    "synth-stages": ("synth", [["--small", "--stop-stage", "2"],
                               ["--small", "--stage", "3", "--stop-stage", "3"],
                               ["--small", "--stage", "3", "--stop-stage", "4"],
                               ["--small", "--stage", "5"]]),
    "timit-default": ("timit", [["--timit", TIMIT]]),
    "timit-graves": ("timit", [["--timit", TIMIT, "--graves"]]),
    "timit-tiny": ("timit", [["--timit", TIMIT, "--tiny"], ["--tiny"]]),
    "timit-options": ("timit", [
        ["--timit", TIMIT, "--full-test", "--subset", "5", "--test-speakers", "test.list",
         "--dev-speakers", "dev.list", "--epochs", "2", "--seed", "1", "--jobs", "1",
         "--name", "mine", "--stop-stage", "2"],
        ["--full-test", "--subset", "5", "--test-speakers", "test.list",
         "--dev-speakers", "dev.list", "--epochs", "2", "--seed", "1", "--jobs", "1",
         "--name", "mine", "--stage", "2"]]),
    "timit-refusals": ("timit", [["--timit", TIMIT, "--tiny", "--stop-stage", "3"],
                                 ["--tiny", "--seed", "1", "--stage", "3"],
                                 ["--tiny", "--stage", "5"],
                                 ["--tiny", "--stage", "4", "--stop-stage", "4"],
                                 ["--tiny", "--stage", "5"]]),
    "librispeech-default": ("librispeech", [["--root", LIBRI]]),
    "librispeech-refusals": ("librispeech", [
        ["--root", LIBRI, "--tiny", "--arpa", "missing.arpa"],
        ["--tiny", "--stage", "2", "--stop-stage", "2", "--train-part", "train-other-500"],
        ["--tiny", "--stage", "5", "--arpa", "lm.arpa"]]),
    "librispeech-tiny-arpa": ("librispeech", [["--root", LIBRI, "--tiny", "--arpa", "lm.arpa"],
                                              ["--tiny", "--arpa", "lm.arpa"]]),
    "librispeech-options": ("librispeech", [
        ["--root", LIBRI, "--train-part", "train-clean-360", "--dev-part", "dev-other",
         "--test-part", "test-other", "--subset", "3", "--epochs", "2", "--seed", "2",
         "--jobs", "1", "--name", "mine"]]),
}


def stub_env(tmp):
    """PATH with the stand-ins first, and their log; returns (env, log path)."""
    bin_dir = os.path.join(tmp, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    for name, text in (("ctcseq", CTCSEQ), ("python", PYTHON)):
        with open(os.path.join(bin_dir, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(bin_dir, name), 0o755)
    log = os.path.join(tmp, "calls.log")
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], STUB_LOG=log)
    return env, log


def run_recipe(recipes, recipe, args, work, env, log):
    """One run of recipes/<recipe>/run.sh in work: (CompletedProcess, logged calls)."""
    open(log, "w").close()
    proc = subprocess.run(["bash", os.path.join(recipes, recipe, "run.sh"), *args], cwd=work,
                          env=env, capture_output=True, text=True, timeout=120)
    with open(log) as f:
        calls = f.read().replace(recipes.rstrip(os.sep) + os.sep, "recipes/").splitlines()
    return proc, calls


def scenario_commands(recipes, name, tmp):
    """The log of a scenario: for each run its arguments and exit status, then
    the commands it ran."""
    recipe, runs = SCENARIOS[name]
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    for f in ("test.list", "dev.list"):
        with open(os.path.join(work, f), "w") as fh:
            fh.write("mdab0\n")
    with open(os.path.join(work, "lm.arpa"), "w") as fh:
        fh.write("\\data\\\nngram 1=1\n\n\\1-grams:\n-0.5 HELLO\n\n\\end\\\n")
    env, log = stub_env(tmp)
    out = []
    for args in runs:
        proc, calls = run_recipe(os.path.abspath(recipes), recipe, args, work, env, log)
        out.append(f"## run.sh {' '.join(args)}: exit {proc.returncode}")
        out += calls
    return out


def reference(name):
    with open(os.path.join(REFERENCES, name + ".txt")) as f:
        return f.read().splitlines()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_commands_as_before(name, tmp_path):
    got = scenario_commands(RECIPES, name, str(tmp_path))
    want = reference(name)
    assert got == want, "\n" + "\n".join(difflib.unified_diff(want, got, "before", "now",
                                                              lineterm=""))


# --------------------------------------------------------------------------
# Reruns of the synthetic recipe (the main job)
# --------------------------------------------------------------------------

@pytest.fixture
def synth(tmp_path):
    """run(*args) -> (CompletedProcess, commands) of recipes/synth/run.sh in tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir()
    env, log = stub_env(str(tmp_path))

    def run(*args):
        return run_recipe(RECIPES, "synth", list(args), str(work), env, log)

    run.work = work
    return run


def kinds(calls):
    """'prepare', 'features', ... of each ctcseq call; 'python' for the others."""
    return [c.split()[1] if c.startswith("ctcseq ") else c.split()[0] for c in calls]


def test_synth_rerun_skips_what_is_done(synth):
    ok(synth()[0])
    proc, calls = synth()
    out = ok(proc)
    # the corpus and the decodings are kept; features and training resume
    assert "stage 1: data/synth-default exists, made with these arguments: skipping" in out
    assert "decode_test holds the decoding of this model and data, skipping" in out
    assert kinds(calls) == ["features"] * 3 + ["train", "eval", "eval", "align", "python"]
    assert calls[3].endswith(" --seed 0 --resume")
    # a finished run is extended with more epochs, not refused
    proc, calls = synth("--stage", "3", "--stop-stage", "3", "--epochs", "4")
    ok(proc)
    assert " --epochs 4 " in calls[0] and calls[0].endswith("--resume")


def test_synth_other_arguments(synth):
    ok(synth("--tiny", "--stop-stage", "3")[0])
    # another --hours under the same name: the corpus and the features are
    # made again, and the model trained on the old corpus is not resumed
    proc, calls = synth("--tiny", "--hours", "0.05")
    line = one_line_error(proc)
    assert "data/synth-tiny was made with other arguments (hours: 0.02 -> 0.05)" \
        in proc.stdout
    assert calls[0] == ("ctcseq prepare synth --out data/synth-tiny --hours 0.05 --seed 0 "
                        "--jobs 2 --overwrite")
    assert "stage 2: exp/synth-tiny/feats/train was made from other audio" in proc.stdout
    assert kinds(calls) == ["prepare"] + ["features"] * 3
    assert line.startswith("run.sh: exp/synth-tiny/model was trained with other data or "
                           "settings (train: data/synth-tiny/train ")
    assert "; dev: data/synth-tiny/dev " in line and "symbols" not in line
    assert line.endswith("); remove it or choose another --name")
    # other training settings: refused, whatever the stage asked for
    line = one_line_error(synth("--tiny", "--hours", "0.05", "--seed", "1", "--stage", "3")[0])
    assert "seed: 0 -> 1" in line
    # an unfinished synthesis (no summary.json) is replaced
    (synth.work / "data" / "synth-small" / "wav").mkdir(parents=True)
    proc, calls = synth("--small", "--stop-stage", "1")
    ok(proc)
    assert calls == ["ctcseq prepare synth --out data/synth-small --hours 0.3 --seed 0 "
                     "--jobs 2 --overwrite"]


def test_synth_outputs_without_records(synth):
    """What the recipe made before it kept records is kept, as it was then,
    unless its inputs are newer than it."""
    ok(synth("--tiny")[0])
    data, exp = synth.work / "data" / "synth-tiny", synth.work / "exp" / "synth-tiny"

    def forget_records():
        for record in list(data.rglob(".args")) + list(exp.rglob(".args")):
            record.unlink()

    def age(path, seconds):     # mtime `seconds` ago, of path and all under it
        for p in [path, *path.rglob("*")]:
            os.utime(p, (p.stat().st_mtime - seconds,) * 2)

    forget_records()
    age(data, 300); age(exp / "feats", 200)
    proc, calls = synth("--tiny")
    out = ok(proc)
    assert "stage 1: data/synth-tiny exists, made with these arguments: skipping" in out
    assert "exp/synth-tiny/feats/train holds no record of its audio, and was made after" in out
    assert "exp/synth-tiny/model holds no record of its data and settings" in out
    assert kinds(calls) == ["features"] * 3 + ["train"] + ["forward", "forward"] + \
        ["decode", "decode", "eval", "decode", "eval", "decode", "eval", "eval", "align", "python"]
    assert calls[3].endswith("--resume")
    # ... and now it has its records: a rerun is a plain rerun
    assert (data / ".args").read_text() == "hours 0.02\nseed 0\n"
    assert "skipping" in ok(synth("--tiny", "--stage", "4", "--stop-stage", "4")[0])
    # a model older than its data is not resumed on it; features older than
    # their data are extracted again
    forget_records()
    age(exp, 400)
    proc, calls = synth("--tiny")
    assert "exp/synth-tiny/feats/dev holds no record of its audio: extracting again" in proc.stdout
    line = one_line_error(proc)
    assert line == ("run.sh: exp/synth-tiny/model holds a model with no record of its data and "
                    "settings; remove it or choose another --name")
    # a corpus of other hours than its config.json says: synthesised again
    forget_records()
    proc, calls = synth("--tiny", "--hours", "0.5", "--stop-stage", "1")
    assert "data/synth-tiny holds no record of its arguments: making it again" in ok(proc)
    assert calls[0].endswith("--hours 0.5 --seed 0 --jobs 2 --overwrite")


# --------------------------------------------------------------------------
# Options and settings files
# --------------------------------------------------------------------------

@pytest.mark.parametrize("recipe, sizes", [("synth", ["default", "small", "tiny"]),
                                           ("timit", ["default", "graves", "tiny"]),
                                           ("librispeech", ["default", "tiny"])])
def test_help_and_settings_files(recipe, sizes, tmp_path):
    script = os.path.join(RECIPES, recipe, "run.sh")
    proc = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    header = []
    with open(script) as f:
        next(f)
        for line in f:
            if not line.startswith("#"):
                break
            header.append(line)
    assert proc.stdout == "".join(header)
    assert "Usage: recipes/" + recipe + "/run.sh" in proc.stdout
    for size in sizes:
        assert f"conf/{size}.sh" in proc.stdout
    assert sorted(os.listdir(os.path.join(RECIPES, recipe, "conf"))) == \
        sorted(s + ".sh" for s in sizes)
    proc = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "run.sh: unknown option --bogus (see --help)\n"


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description="write the reference command lists")
    ap.add_argument("--write", metavar="RECIPES_DIR", required=True,
                    help="the recipes to take them from (e.g. recipes)")
    a = ap.parse_args()
    os.makedirs(REFERENCES, exist_ok=True)
    for name in sorted(SCENARIOS):
        with tempfile.TemporaryDirectory() as tmp:
            lines = scenario_commands(a.write, name, tmp)
        with open(os.path.join(REFERENCES, name + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}: {len(lines)} lines", file=sys.stderr)
