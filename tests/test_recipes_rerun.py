"""Reruns of the TIMIT and LibriSpeech recipes with changed arguments (each
stage records what it was made from in <dir>/.args: recipes/lib/stage.sh),
transcripts in the wild (encodings, byte-order marks, macOS AppleDouble
files) and the --subset option, on the fake corpora of
test_data_prep_corpora.

The recipes run under bash with the real ``ctcseq prepare`` and a stand-in
for the other commands (features, train, decode, eval), which only leave
traces: what is tested is the recipes' bookkeeping, in seconds."""
import os
import shutil
import subprocess
import sys

import pytest

from ctcseq import datadir
from ctcseq.cli import main as ctcseq_main
from data_prep import folder, librispeech, timit
from data_prep.common import spread_over_speakers
from test_data_prep_corpora import (FAKE_SPEAKERS, LIBRI, REPO, make_folder, make_librispeech,
                                    make_timit, utts_of)

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# A stand-in for the ctcseq command: 'prepare' runs the real one, the others
# log their arguments and write what the next stage looks for.
STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
arg() { while [ $# -gt 1 ]; do [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
case "$1" in
  prepare) exec "$STUB_PYTHON" -m ctcseq.cli "$@" ;;
  features) mkdir -p "$3/npy"; touch "$3/npy/made-by-stub" ;;
  train) want=--out; out=$(arg "$@"); mkdir -p "$out"
         [ -f "$out/best.npz" ] || echo model > "$out/best.npz"
         echo lm > "$out/lm.json"; echo ckpt > "$out/checkpoint.npz" ;;
  decode) want=--out; out=$(arg "$@"); echo "utt a b" > "$out" ;;
  eval) echo "ER 12.50% [ 1 / 8, 1 sub, 0 del, 0 ins ] over 1 utterances" ;;
esac
"""


@pytest.fixture
def recipe(tmp_path):
    """run(name, *args) -> CompletedProcess of recipes/<name>/run.sh in tmp_path/work;
    run.calls() -> the stand-in's log since the last call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ctcseq").write_text(STUB)
    (bin_dir / "ctcseq").chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "calls.log"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               STUB_LOG=str(log), STUB_PYTHON=sys.executable)

    def run(name, *args):
        log.write_text("")
        proc = subprocess.run(["bash", os.path.join(REPO, "recipes", name, "run.sh"),
                               *map(str, args)],
                              cwd=work, env=env, capture_output=True, text=True, timeout=120)
        run.last_calls = log.read_text().splitlines()
        return proc

    run.work = work
    return run


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def one_line_error(proc):
    """The recipe stopped with status 2 and a single line on stderr."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------
# LibriSpeech
# --------------------------------------------------------------------------

LIBRI4 = {**LIBRI, "test-clean": {("61", "70968"): ["HE BEGAN A CONFUSED COMPLAINT"]},
          "train-clean-360": {("14", "208"): ["MISTER QUILTER IS THE APOSTLE"]}}


def test_librispeech_another_train_part_adds_it(tmp_path, recipe):
    root = make_librispeech(tmp_path / "corpora", LIBRI4)
    ok(recipe("librispeech", "--root", root, "--stop-stage", 2))
    data = recipe.work / "data" / "librispeech"
    assert sorted(os.listdir(data / "train_clean_100")) and not (data / "train_clean_360").exists()
    out = ok(recipe("librispeech", "--root", root, "--stop-stage", 2,
                    "--train-part", "train-clean-360"))
    assert "train-clean-100 train-clean-360" in out            # says what it prepares
    # the new part is prepared beside the old ones, which are kept
    assert utts_of(data / "train_clean_360") == ["14-208-0000"]
    assert utts_of(data / "train_clean_100") == ["103-1240-0000", "103-1240-0001",
                                                 "1034-121119-0000"]
    # its own experiment, its own features
    exp = recipe.work / "exp" / "librispeech-train_clean_360"
    assert (exp / "feats" / "train_clean_360" / "npy" / "made-by-stub").exists()
    # same arguments again: nothing prepared, features kept
    out = ok(recipe("librispeech", "--stop-stage", 2, "--train-part", "train-clean-100"))
    assert "made with these arguments: skipping" in out
    assert not any(c.startswith("prepare") for c in recipe.last_calls)
    # a part stage 1 did not prepare: one line that says so, not a missing wav.scp
    line = one_line_error(recipe("librispeech", "--stage", 2, "--stop-stage", 2,
                                 "--train-part", "train-other-500"))
    assert "data/librispeech/train_other_500 is not prepared (run stage 1)" in line


def test_librispeech_another_arpa_and_stale_model(tmp_path, recipe):
    root = make_librispeech(tmp_path / "corpora", LIBRI4)
    for name, word in (("a.arpa", "GO"), ("b.arpa", "HEAR")):
        (tmp_path / name).write_text(f"\\data\\\nngram 1=3\n\n\\1-grams:\n-1 <s>\n-1 </s>\n"
                                     f"-0.5 {word}\n\n\\end\\\n")
    ok(recipe("librispeech", "--root", root, "--tiny", "--arpa", tmp_path / "a.arpa"))
    exp = recipe.work / "exp" / "librispeech-tiny-sub20"
    words = exp / "decode_test_words"
    assert "-0.5 go" in (words / "words.arpa").read_text()
    assert (words / "score_beam_words.txt").exists()
    # another --arpa: the word LM and its decoding are made again, and only they
    out = ok(recipe("librispeech", "--tiny", "--arpa", tmp_path / "b.arpa", "--stage", 4))
    assert "-0.5 hear" in (words / "words.arpa").read_text()
    assert f"word n-gram {tmp_path / 'b.arpa'}" in out
    decodes = [c for c in recipe.last_calls if c.startswith("decode")]
    assert len(decodes) == 1 and "words.arpa" in decodes[0]
    # the same settings resume training; other ones are refused, in one line
    ok(recipe("librispeech", "--tiny", "--stage", 3, "--stop-stage", 3))
    assert recipe.last_calls[-1].startswith("train") and "--resume" in recipe.last_calls[-1]
    line = one_line_error(recipe("librispeech", "--tiny", "--seed", 1, "--stage", 3))
    assert "model was trained with other data or settings" in line and "seed: 0 -> 1" in line
    # a decoding of another model is not scored
    (exp / "model" / "best.npz").write_text("retrained")
    line = one_line_error(recipe("librispeech", "--tiny", "--stage", 5))
    assert "decode_test was decoded from other inputs" in line and "run stage 4" in line
    assert recipe.last_calls == []


# --------------------------------------------------------------------------
# TIMIT
# --------------------------------------------------------------------------

def test_timit_own_lists_and_another_tree(tmp_path, recipe):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    # a partial tree with the standard lists: the count, and the way out
    line = one_line_error(recipe("timit", "--timit", root, "--stop-stage", 1))
    assert "23 of the 24 in the standard list are missing" in line and "--test-speakers" in line
    (tmp_path / "test.list").write_text("mdab0\n")
    (tmp_path / "dev.list").write_text("faks0\nmbdg0\n")
    lists = ("--test-speakers", tmp_path / "test.list", "--dev-speakers", tmp_path / "dev.list")
    ok(recipe("timit", "--timit", root, *lists, "--stop-stage", 3))
    data, exp = recipe.work / "data" / "timit", recipe.work / "exp" / "timit"
    assert utts_of(data / "test") == ["mdab0_si1039", "mdab0_sx139"]
    # another copy of TIMIT, without one training speaker: data made again from it
    other = make_timit(tmp_path / "timit2", {k: v for k, v in FAKE_SPEAKERS.items()
                                             if k[2] != "marc0"}, "lower")
    for split in timit.SPLITS:
        (exp / "feats" / split / "npy" / "fcjf0_si1027.npy").write_text("features")
    proc = recipe("timit", "--timit", other, *lists, "--stop-stage", 3)
    assert "made with other arguments (timit: " in proc.stdout
    assert all(p.startswith(str(other)) for p in
               datadir.read_table(data / "train" / "wav.scp").values())
    assert utts_of(data / "train") == ["fcjf0_si1027", "fcjf0_sx127"]
    # training features made again (other utterances), dev and test kept (the same)
    assert "stage 2: exp/timit/feats/train was made from other audio" in proc.stdout
    assert not (exp / "feats" / "train" / "npy" / "fcjf0_si1027.npy").exists()
    assert (exp / "feats" / "test" / "npy" / "fcjf0_si1027.npy").exists()
    # ... and the model trained on the old data is not resumed on the new
    line = one_line_error(proc)
    assert "exp/timit/model was trained with other data or settings (train: " in line
    # another list: the data directories follow it
    (tmp_path / "test.list").write_text("mrcz0\n")
    ok(recipe("timit", *lists, "--stop-stage", 1))               # --timit: the recorded one
    assert utts_of(data / "test") == ["mrcz0_si1541", "mrcz0_sx101"]


def test_timit_tiny_takes_a_subset(tmp_path, recipe):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    (tmp_path / "test.list").write_text("mdab0\n")
    (tmp_path / "dev.list").write_text("faks0\nmbdg0\n")
    lists = ("--test-speakers", tmp_path / "test.list", "--dev-speakers", tmp_path / "dev.list")
    ok(recipe("timit", "--timit", root, *lists, "--tiny", "--subset", 3, "--stop-stage", 2))
    data = recipe.work / "data" / "timit-sub3"
    assert [len(utts_of(data / s)) for s in timit.SPLITS] == [3, 3, 2]
    assert (recipe.work / "exp" / "timit-tiny-sub3" / "feats" / "dev").is_dir()
    # --tiny alone: 20 utterances per split (here: all there are)
    ok(recipe("timit", "--timit", root, *lists, "--tiny", "--stop-stage", 1))
    assert [len(utts_of(recipe.work / "data" / "timit-sub20" / s))
            for s in timit.SPLITS] == [4, 4, 2]


# --------------------------------------------------------------------------
# --subset in the builders
# --------------------------------------------------------------------------

def test_subset_spreads_over_speakers(tmp_path):
    assert spread_over_speakers(["a1", "a2", "a3", "b1", "c1", "c2"], lambda u: u[0]) == \
        ["a1", "b1", "c1", "a2", "c2", "a3"]
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    (tmp_path / "t").write_text("mdab0\n")
    (tmp_path / "d").write_text("faks0\nmbdg0\n")
    s = timit.build_timit(str(root), str(tmp_path / "o"), test_speakers=str(tmp_path / "t"),
                          dev_speakers=str(tmp_path / "d"), subset=2, log=lambda _: None)
    assert utts_of(tmp_path / "o" / "train") == ["fcjf0_si1027", "marc0_si1188"]
    assert utts_of(tmp_path / "o" / "dev") == ["faks0_si943", "mbdg0_si1463"]
    assert s["subset"] == 2 and s["splits"]["test"]["utterances"] == 2
    # LibriSpeech: an unreadable file is replaced by the next utterance
    libri = make_librispeech(tmp_path / "corpora")
    chapter = libri / "LibriSpeech" / "train-clean-100" / "103" / "1240"
    (chapter / "103-1240-0000.flac").write_bytes(b"not audio")
    logs = []
    s = librispeech.build_librispeech(str(libri), str(tmp_path / "l"), parts=["train-clean-100"],
                                      subset=1, log=logs.append)
    assert utts_of(tmp_path / "l" / "train_clean_100") == ["1034-121119-0000"]
    assert s["parts"]["train_clean_100"]["skipped"][0].startswith("103-1240-0000: cannot read")
    with pytest.raises(ValueError, match="--subset must be >= 0"):
        librispeech.build_librispeech(str(libri), str(tmp_path / "m"), subset=-1)


# --------------------------------------------------------------------------
# transcripts in the wild
# --------------------------------------------------------------------------

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02\x00\x00\x00\x09\xff\xfe"


def test_librispeech_appledouble_bom_and_latin1(tmp_path):
    root = make_librispeech(tmp_path / "corpora")
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    # what macOS leaves beside the files it copied: skipped, as the ._*.flac are
    (chapter / "._84-121123.trans.txt").write_bytes(APPLEDOUBLE)
    (chapter / "._84-121123-0000.flac").write_bytes(APPLEDOUBLE)
    trans = chapter / "84-121123.trans.txt"
    trans.write_bytes(b"\xef\xbb\xbf" + trans.read_bytes())        # a byte-order mark
    librispeech.build_librispeech(str(root), str(tmp_path / "o"), parts=["dev-clean"],
                                  log=lambda _: None)
    assert utts_of(tmp_path / "o" / "dev_clean") == ["174-50561-0000", "84-121123-0000",
                                                     "84-121123-0001"]
    trans.write_bytes(b"84-121123-0000 GO DO YOU HEAR\n84-121123-0001 CAF\xc9 NOIR\n")
    with pytest.raises(ValueError) as e:
        librispeech.build_librispeech(str(root), str(tmp_path / "p"), parts=["dev-clean"],
                                      log=lambda _: None)
    assert str(e.value).startswith(f"{trans}:2: not utf-8 text (byte 0xc9 at column 19)")


def test_folder_bom_latin1_and_help(tmp_path, capsys):
    audio = make_folder(tmp_path / "audio")
    trans = tmp_path / "trans.txt"
    trans.write_bytes("\ufeffhello Hello World\nalice/sub/bye Café au lait\n"
                      .encode("utf-8"))
    folder.build_folder(str(audio), str(trans), str(tmp_path / "d"), log=lambda _: None)
    text = datadir.read_table(tmp_path / "d" / "text")
    assert text == {"alice-sub-bye": "Café au lait", "hello": "Hello World"}
    trans.write_bytes("hello Hello World\nalice/sub/bye Café au lait\n".encode("latin-1"))
    assert ctcseq_main(["prepare", "folder", "--audio", str(audio), "--transcript", str(trans),
                        "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{trans}:2: not utf-8 text (byte 0xe9 at column 18)" in err[0]
    assert ctcseq_main(["prepare", "folder", "--audio", str(audio), "--transcript", str(trans),
                        "--out", str(tmp_path / "e"), "--encoding", "latin-1"]) == 0
    assert datadir.read_table(tmp_path / "e" / "text")["alice-sub-bye"] == "Café au lait"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        ctcseq_main(["prepare", "folder", "--help"])
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: ctcseq prepare folder") and "data_prep" not in \
        help_text.split("See")[0]
    assert "become '_'" in help_text and "case included" in help_text
