"""The ctcseq command line, end to end on a tiny synthetic corpus, and its
error handling (one line on stderr, exit status 2, no traceback)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ctcseq.cli import main

pytest.importorskip("espeakng_loader")
pytest.importorskip("wordfreq")


def ctcseq(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ctcseq.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    assert main(["prepare", "synth", "--out", str(data), "--hours", "0.02", "--seed", "1",
                 "--jobs", "2"]) == 0
    return root, data


def test_every_stage_on_a_tiny_corpus(corpus, capsys):
    root, data = corpus
    feats = root / "feats"
    for split in ("train", "dev", "test"):
        assert main(["features", str(data / split), str(feats / split), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "123 values per frame" in out
    model_dir = root / "model"
    assert main(["train", "--train-data", str(data / "train"), "--train-feats",
                 str(feats / "train"), "--dev-data", str(data / "dev"), "--dev-feats",
                 str(feats / "dev"), "--symbols", str(data / "phones.txt"), "--out",
                 str(model_dir), "--hidden", "8", "--layers", "1", "--epochs", "2",
                 "--lm-order", "2", "--quiet"]) == 0
    history = [json.loads(s) for s in (model_dir / "train.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert (model_dir / "best.npz").exists() and (model_dir / "curves.png").exists()
    # a finished run refuses to start over, and --resume has nothing left to do
    assert main(["train", "--train-data", str(data / "train"), "--train-feats",
                 str(feats / "train"), "--symbols", str(data / "phones.txt"),
                 "--out", str(model_dir), "--hidden", "8", "--layers", "1", "--epochs", "2",
                 "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err

    hyp = root / "hyp.txt"
    assert main(["decode", str(model_dir / "best.npz"), "--feats", str(feats / "test"),
                 "--out", str(hyp)]) == 0
    lines = hyp.read_text().splitlines()
    test_utts = (data / "test" / "text.phn").read_text().splitlines()
    assert [s.split()[0] for s in lines] == [s.split()[0] for s in test_utts]
    beam_hyp = root / "beam_hyp.txt"
    assert main(["decode", str(model_dir / "best.npz"), "--feats", str(feats / "test"),
                 "--out", str(beam_hyp), "--beam", "4", "--lm", str(model_dir / "lm.json"),
                 "--alpha", "0.3", "--beta", "0.5"]) == 0
    assert [s.split()[0] for s in beam_hyp.read_text().splitlines()] == \
        [s.split()[0] for s in lines]
    assert main(["decode", str(model_dir / "best.npz"), "--feats", str(feats / "test"),
                 "--lm", str(model_dir / "lm.json")]) == 2
    assert "--lm needs beam search" in capsys.readouterr().err
    assert main(["eval", str(data / "test" / "text.phn"), str(hyp), "--name", "PER",
                 "--utt2spk", str(data / "test" / "utt2spk"), "--worst", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PER ") and "REF:" in out and "speaker" in out


def test_decode_audio_files_and_report_bad_ones(corpus, tmp_path, capsys):
    root, data = corpus
    model = root / "model" / "best.npz"
    if not model.exists():
        pytest.skip("needs the model trained by test_every_stage_on_a_tiny_corpus")
    wav = sorted((data / "wav" / "test").rglob("*.wav"))[0]
    stereo = tmp_path / "stereo_44k.flac"
    audio, sr = sf.read(wav)
    sf.write(stereo, np.stack([audio, audio], 1), 44100)  # other rate, format, channels
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    code = main(["decode", str(model), str(wav), str(stereo), str(junk)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith(str(wav)) and lines[1].startswith(str(stereo))
    assert "junk.wav: cannot read audio" in captured.err


def test_align_writes_ctm_and_reports_impossible_transcripts(corpus, tmp_path, capsys):
    root, data = corpus
    model = root / "model" / "best.npz"
    if not model.exists():
        pytest.skip("needs the model trained by test_every_stage_on_a_tiny_corpus")
    ctm = tmp_path / "ali.ctm"
    assert main(["align", str(model), "--feats", str(root / "feats" / "test"), "--text",
                 str(data / "test" / "text.phn"), "--out", str(ctm)]) == 0
    texts = {u: v.split() for u, v in
             (line.split(" ", 1) for line in (data / "test" / "text.phn").read_text().splitlines())}
    rows = [line.split() for line in ctm.read_text().splitlines()]
    for utt, phones in texts.items():
        mine = [r for r in rows if r[0] == utt]
        assert [r[4] for r in mine] == phones
        starts = [float(r[2]) for r in mine]
        assert starts == sorted(starts) and all(float(r[3]) >= 0.01 - 1e-9 for r in mine)
    # word times through a lexicon: each word spans its phones' span
    from data_prep.phones import map_words
    utt, ipa = (data / "test" / "text.ipa").read_text().splitlines()[0].split(" ", 1)
    words = dict(line.split(" ", 1) for line in
                 (data / "test" / "text").read_text().splitlines())[utt].split()
    prons = [map_words([w.split("_")]) for w in ipa.split()]
    assert [t for p in prons for t in p] == texts[utt]
    lex = tmp_path / "lexicon.txt"
    lex.write_text("".join(f"{w} {' '.join(p)}\n" for w, p in zip(words, prons)))
    (tmp_path / "words.txt").write_text(f"{utt} {' '.join(words)}\n")
    word_ctm = tmp_path / "words.ctm"
    assert main(["align", str(model), "--feats", str(root / "feats" / "test"), "--text",
                 str(tmp_path / "words.txt"), "--lexicon", str(lex), "--out",
                 str(word_ctm)]) == 0
    phone_rows = [r for r in rows if r[0] == utt]
    word_rows = [line.split() for line in word_ctm.read_text().splitlines()]
    assert [r[4] for r in word_rows] == words
    first = 0
    for r, p in zip(word_rows, prons):
        last = phone_rows[first + len(p) - 1]
        assert r[2] == phone_rows[first][2]
        assert float(r[2]) + float(r[3]) == pytest.approx(float(last[2]) + float(last[3]))
        first += len(p)
    (tmp_path / "oov.txt").write_text(f"{utt} {words[0]} notaword\n")
    assert main(["align", str(model), "--feats", str(root / "feats" / "test"), "--text",
                 str(tmp_path / "oov.txt"), "--lexicon", str(lex)]) == 1
    assert "['notaword'] are not in the lexicon" in capsys.readouterr().err
    # one audio file with a transcript far too long for it: clear error, exit 1
    wav = sorted((data / "wav" / "test").rglob("*.wav"))[0]
    code = main(["align", str(model), str(wav), "--transcript", " ".join(["aa"] * 2000)])
    assert code == 1 and "needs at least" in capsys.readouterr().err
    code = main(["align", str(model), str(wav), "--transcript", "aa nosuchphone"])
    assert code == 1 and "not in the model's vocabulary" in capsys.readouterr().err


def test_stride_and_speaker_cmvn(corpus, tmp_path):
    """--stride 2 --cmvn speaker: decoding with --utt2spk normalises each test
    speaker with statistics of all its utterances, and alignment times come
    in 20 ms steps."""
    from ctcseq.decode import greedy_decode
    from ctcseq.extract import FeatureStore
    from ctcseq.features import Normalizer
    from ctcseq.model import CTCModel
    root, data = corpus
    feats = root / "feats"
    if not (feats / "test").exists():
        pytest.skip("needs the features made by test_every_stage_on_a_tiny_corpus")
    out = tmp_path / "model"
    assert main(["train", "--train-data", str(data / "train"), "--train-feats",
                 str(feats / "train"), "--dev-data", str(data / "dev"), "--dev-feats",
                 str(feats / "dev"), "--symbols", str(data / "phones.txt"), "--out", str(out),
                 "--hidden", "8", "--layers", "1", "--epochs", "1", "--stride", "2",
                 "--cmvn", "speaker", "--quiet"]) == 0
    model = CTCModel.load(out / "best.npz")
    assert model.stride == 2
    norm = Normalizer.from_dict(model.features["normalizer"])
    train_spk = set((data / "train" / "utt2spk").read_text().split()[1::2])
    assert norm.mode == "speaker" and set(norm.speakers) == train_spk
    hyp = tmp_path / "hyp.txt"
    utt2spk = data / "test" / "utt2spk"
    assert main(["decode", str(out / "best.npz"), "--feats", str(feats / "test"),
                 "--utt2spk", str(utt2spk), "--out", str(hyp)]) == 0
    # the same by hand
    store = FeatureStore(feats / "test")
    spk = dict(line.split() for line in utt2spk.read_text().splitlines())
    assert norm.adapt((store[u], spk[u]) for u in store.keys())
    expected = []
    for u in sorted(store.keys()):
        x = norm(store[u], spk[u])[:, None, :]
        labels = greedy_decode(model.log_probs(x, [len(x)]), model.output_lengths([len(x)]))[0]
        expected.append(" ".join([u] + [model.vocabulary[c] for c in labels]))
    assert [line.strip() for line in hyp.read_text().splitlines()] == expected
    # (a one-epoch model may emit blanks only, so check the adaptation itself)
    from ctcseq import cli
    fresh = Normalizer.from_dict(model.features["normalizer"])
    args = type("Args", (), {"utt2spk": str(utt2spk), "speaker": None})()
    assert cli._speakers(args, sorted(store.keys()), fresh, store.__getitem__) == spk
    assert set(fresh.speakers) == train_spk | set(spk.values())
    ctm = tmp_path / "ali.ctm"
    assert main(["align", str(out / "best.npz"), "--feats", str(feats / "test"), "--text",
                 str(data / "test" / "text.phn"), "--utt2spk", str(utt2spk), "--out",
                 str(ctm)]) == 0
    rows = [line.split() for line in ctm.read_text().splitlines()]
    assert rows and all(float(r[3]) >= 0.02 - 1e-9 for r in rows)
    assert all(abs(float(r[2]) / 0.02 - round(float(r[2]) / 0.02)) < 1e-6 for r in rows)
    durs = dict(line.split() for line in (data / "test" / "utt2dur").read_text().splitlines())
    assert all(float(r[2]) + float(r[3]) <= float(durs[r[0]]) + 0.03 for r in rows)


@pytest.mark.parametrize("args,message", [
    (["features", "/nonexistent/data", "/tmp/x"], "No such file"),
    (["decode", "/nonexistent/model.npz", "a.wav"], "no model file"),
    (["eval", "/nonexistent/ref", "/nonexistent/hyp"], "No such file"),
    (["train", "--train-data", "/nonexistent", "--train-feats", "/nonexistent", "--out",
      "/tmp/ctcseq-cli-test-out"], "No such file"),
])
def test_user_errors_are_one_line(args, message):
    proc = ctcseq(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_help_explains_every_command():
    proc = ctcseq("--help")
    assert proc.returncode == 0
    for cmd in ("prepare", "features", "train", "decode", "align", "eval"):
        assert cmd in proc.stdout
    proc = ctcseq("train", "--help")
    assert "--resume" in proc.stdout and "--weight-noise" in proc.stdout
