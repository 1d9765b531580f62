"""The ctcseq command line, end to end on a tiny synthetic corpus, and its
error handling (one line on stderr, exit status 2, no traceback).

The corpus, its features and the tiny models trained on it are session
fixtures: any test builds what it needs when run alone, and a fixture that
cannot be built is an error, never a skip."""
import contextlib
import functools
import io
import json
import math
import subprocess
import sys
from types import SimpleNamespace

# espeakng_loader and wordfreq are required by pyproject.toml ('prepare
# synth' needs them): a broken install fails here instead of skipping
import espeakng_loader  # noqa: F401
import numpy as np
import pytest
import soundfile as sf
import wordfreq  # noqa: F401

from ctcseq import datadir
from ctcseq.cli import main

SPLITS = ("train", "dev", "test")


def ctcseq(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ctcseq.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def run(*args):
    """``ctcseq ARGS`` in this process; returns its stdout, fails unless it
    exits with status 0 (its stderr is in the test report)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in args])
    assert code == 0, f"ctcseq {' '.join(map(str, args))} exited with status {code}"
    return out.getvalue()


def table(path):
    return datadir.read_table(path)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny synthetic corpus, its (default fbank) features, and a phone
    model trained on it for two epochs with a token bigram LM."""
    root = tmp_path_factory.mktemp("cli")
    data, feats, model_dir = root / "data", root / "feats", root / "model"
    prepare_out = run("prepare", "synth", "--out", data, "--hours", "0.02", "--seed", "1",
                      "--jobs", "2")
    features_out = [run("features", data / s, feats / s, "--quiet") for s in SPLITS]
    train_out = run("train", "--train-data", data / "train", "--train-feats", feats / "train",
                    "--dev-data", data / "dev", "--dev-feats", feats / "dev",
                    "--symbols", data / "phones.txt", "--out", model_dir, "--hidden", "8",
                    "--layers", "1", "--epochs", "2", "--lm-order", "2", "--quiet")
    return SimpleNamespace(root=root, data=data, feats=feats, model_dir=model_dir,
                           model=model_dir / "best.npz", prepare_out=prepare_out,
                           features_out=features_out, train_out=train_out)


@pytest.fixture(scope="session")
def char_model(tiny):
    """A character model (with a <space> token) of the tiny corpus, one epoch."""
    out = tiny.root / "char_model"
    run("train", "--train-data", tiny.data / "train", "--train-feats", tiny.feats / "train",
        "--text", "text.chr", "--symbols", tiny.data / "chars.txt", "--out", out,
        "--hidden", "8", "--layers", "1", "--epochs", "1", "--quiet")
    return out / "best.npz"


@pytest.fixture(scope="session")
def speaker_model(tiny):
    """A phone model with per-speaker CMVN and two frames per step, one epoch."""
    out = tiny.root / "speaker_model"
    run("train", "--train-data", tiny.data / "train", "--train-feats", tiny.feats / "train",
        "--dev-data", tiny.data / "dev", "--dev-feats", tiny.feats / "dev",
        "--symbols", tiny.data / "phones.txt", "--out", out, "--hidden", "8", "--layers", "1",
        "--epochs", "1", "--stride", "2", "--cmvn", "speaker", "--quiet")
    return out / "best.npz"


# -- prepare, features, train, decode, eval --------------------------------------

def test_prepared_data_dirs_pass_validation(tiny):
    """What 'ctcseq prepare synth' writes is a valid data directory: complete,
    sorted, consistent, every wav present, labels inside its inventories."""
    from data_prep.phones import read_phone_list
    phones = read_phone_list(tiny.data / "phones.txt")
    chars = set(read_phone_list(tiny.data / "chars.txt"))
    for split in SPLITS:
        tables = datadir.validate_data_dir(tiny.data / split, phones=phones, check_audio=True)
        assert tables["wav.scp"] and "text.phn" in tables and "text.chr" in tables
        assert {c for v in tables["text.chr"].values() for c in v.split()} <= chars
    assert "train:" in tiny.prepare_out


def test_features_and_training_outputs(tiny, capsys):
    assert all("123 values per frame" in out for out in tiny.features_out)
    history = [json.loads(s) for s in (tiny.model_dir / "train.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert tiny.model.exists() and (tiny.model_dir / "curves.png").exists()
    assert (tiny.model_dir / "lm.json").exists() and "token 2-gram LM" in tiny.train_out
    # a finished run refuses to start over, and --resume has nothing left to do
    assert main(["train", "--train-data", str(tiny.data / "train"), "--train-feats",
                 str(tiny.feats / "train"), "--symbols", str(tiny.data / "phones.txt"),
                 "--out", str(tiny.model_dir), "--hidden", "8", "--layers", "1", "--epochs", "2",
                 "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_decode_greedy_and_token_lm_then_score(tiny, tmp_path, capsys):
    hyp = tmp_path / "hyp.txt"
    run("decode", tiny.model, "--feats", tiny.feats / "test", "--out", hyp)
    lines = hyp.read_text().splitlines()
    assert [s.split()[0] for s in lines] == sorted(table(tiny.data / "test" / "text.phn"))
    beam_hyp = tmp_path / "beam_hyp.txt"
    run("decode", tiny.model, "--feats", tiny.feats / "test", "--out", beam_hyp, "--beam", "4",
        "--lm", tiny.model_dir / "lm.json", "--alpha", "0.3", "--beta", "0.5")
    assert [s.split()[0] for s in beam_hyp.read_text().splitlines()] == \
        [s.split()[0] for s in lines]
    assert main(["decode", str(tiny.model), "--feats", str(tiny.feats / "test"),
                 "--lm", str(tiny.model_dir / "lm.json")]) == 2
    assert "--lm needs beam search" in capsys.readouterr().err
    assert main(["eval", str(tiny.data / "test" / "text.phn"), str(hyp), "--name", "PER",
                 "--utt2spk", str(tiny.data / "test" / "utt2spk"), "--worst", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PER ") and "REF:" in out and "speaker" in out


def test_decode_audio_files_and_report_bad_ones(tiny, tmp_path, capsys):
    wav = sorted((tiny.data / "wav" / "test").rglob("*.wav"))[0]
    stereo = tmp_path / "stereo_44k.flac"
    audio, sr = sf.read(wav)
    sf.write(stereo, np.stack([audio, audio], 1), 44100)  # other rate, format, channels
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    code = main(["decode", str(tiny.model), str(wav), str(stereo), str(junk)])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith(str(wav)) and lines[1].startswith(str(stereo))
    assert "junk.wav: cannot read audio" in captured.err


# -- word language models and lexicons -------------------------------------------

@pytest.fixture(scope="session")
def words(tiny):
    """The dev and test words: a uniform unigram ARPA model of them, and
    lexicons spelling them in phones (eSpeak's, as in the corpus's labels)
    and in characters (words with an apostrophe left out)."""
    from data_prep.phones import map_words
    root = tiny.root / "words"
    root.mkdir()
    prons = {}
    for split in ("dev", "test"):
        ipa, text = table(tiny.data / split / "text.ipa"), table(tiny.data / split / "text")
        for utt in text:
            for w, p in zip(text[utt].split(), ipa[utt].split()):
                prons.setdefault(w, set()).add(tuple(map_words([p.split("_")])))
    vocab = sorted(prons)
    lp = math.log10(1 / (len(vocab) + 2))
    arpa = root / "words.arpa"
    arpa.write_text("\\data\\\n" f"ngram 1={len(vocab) + 3}\n\n\\1-grams:\n-99\t<s>\n"
                    + "".join(f"{lp:.6f}\t{w}\n" for w in ["</s>", "<unk>"] + vocab)
                    + "\n\\end\\\n")
    phone_lex = root / "phones.lex"
    phone_lex.write_text("".join(f"{w} {' '.join(p)}\n" for w in vocab for p in sorted(prons[w])))
    char_lex = root / "chars.lex"
    char_lex.write_text("".join(f"{w} {' '.join(w)}\n" for w in vocab if "'" not in w))
    return SimpleNamespace(arpa=arpa, phone_lex=phone_lex, char_lex=char_lex, prons=prons,
                           char_words={w for w in vocab if "'" not in w})


def hypotheses(path):
    return {line.split()[0]: line.split()[1:] for line in path.read_text().splitlines()}


def spelt_with(tokens, spellings):
    """Whether tokens are whole spellings back to back (a constrained search
    never ends inside a word: test_lm.py::test_constrained_search_never_ends_mid_word)."""
    tokens, spellings = tuple(tokens), {tuple(s) for s in spellings}

    @functools.lru_cache(maxsize=None)
    def ok(i):
        return i == len(tokens) or any(tokens[i:i + len(s)] == s and ok(i + len(s))
                                       for s in spellings)
    return ok(0)


def test_decode_word_lm_with_a_lexicon_and_no_delimiter(tiny, words, tmp_path, capsys):
    """A phone model has no word-boundary token: the lexicon alone says where
    words end, and the output is lexicon pronunciations back to back."""
    hyp = tmp_path / "hyp.txt"
    run("decode", tiny.model, "--feats", tiny.feats / "test", "--beam", "8", "--lm", words.arpa,
        "--lexicon", words.phone_lex, "--alpha", "1", "--beta", "2", "--out", hyp)
    hyps = hypotheses(hyp)
    assert sorted(hyps) == sorted(table(tiny.data / "test" / "text.phn"))
    spellings = {p for ps in words.prons.values() for p in ps}
    assert all(spelt_with(h, spellings) for h in hyps.values()), hyps
    assert max(len(h) for h in hyps.values()) > 20     # many words: the test is not empty
    # the greedy output of this model is no such sequence: the lexicon did it
    greedy = tmp_path / "greedy.txt"
    run("decode", tiny.model, "--feats", tiny.feats / "test", "--out", greedy)
    assert not all(spelt_with(h, spellings) for h in hypotheses(greedy).values())
    # without a lexicon there is no telling where the words end
    assert main(["decode", str(tiny.model), "--feats", str(tiny.feats / "test"), "--beam", "8",
                 "--lm", str(words.arpa)]) == 2
    err = capsys.readouterr().err
    assert "needs a lexicon" in err and len(err.strip().splitlines()) == 1


def test_decode_word_lm_with_word_delimiter(char_model, tiny, words, tmp_path, capsys):
    """A character model's words end at <space> (the default delimiter) or at
    the token --word-delimiter names; with a lexicon, every word between
    delimiters is a lexicon word."""
    def decode(*extra):
        hyp = tmp_path / "hyp.txt"
        run("decode", char_model, "--feats", tiny.feats / "test", "--beam", "8", "--lm",
            words.arpa, "--lexicon", words.char_lex, "--alpha", "1", "--beta", "2", "--out",
            hyp, *extra)
        return hypotheses(hyp)

    def words_of(tokens, delimiter):
        pieces = "".join(" " if t == delimiter else t for t in tokens).split(" ")
        return [p for p in pieces[:-1] if p], pieces[-1]

    default = decode()
    assert decode("--word-delimiter", "<space>") == default
    apostrophe = decode("--word-delimiter", "'")
    for delimiter, hyps in (("<space>", default), ("'", apostrophe)):
        n_words = 0
        for tokens in hyps.values():
            complete, last = words_of(tokens, delimiter)
            assert set(complete) <= words.char_words, (delimiter, complete)
            assert last == "" or last in words.char_words, (delimiter, last)  # never cut short
            n_words += len(complete)
        assert n_words >= 4, (delimiter, hyps)
    # with "'" ending words, <space> is an ordinary token no lexicon word has
    assert not any("<space>" in h for h in apostrophe.values())
    capsys.readouterr()   # (the decodings' warnings: searches that kept no whole word)
    assert main(["decode", str(char_model), "--feats", str(tiny.feats / "test"), "--beam", "4",
                 "--lm", str(words.arpa), "--word-delimiter", "zz"]) == 2
    err = capsys.readouterr().err
    assert "'zz' is not one of the tokens" in err and len(err.strip().splitlines()) == 1


# -- alignment --------------------------------------------------------------------

def test_align_writes_ctm_and_reports_impossible_transcripts(tiny, tmp_path, capsys):
    model, feats = tiny.model, tiny.feats / "test"
    ctm = tmp_path / "ali.ctm"
    run("align", model, "--feats", feats, "--text", tiny.data / "test" / "text.phn", "--out", ctm)
    texts = {u: v.split() for u, v in table(tiny.data / "test" / "text.phn").items()}
    rows = [line.split() for line in ctm.read_text().splitlines()]
    for utt, phones in texts.items():
        mine = [r for r in rows if r[0] == utt]
        assert [r[4] for r in mine] == phones
        starts = [float(r[2]) for r in mine]
        assert starts == sorted(starts) and all(float(r[3]) >= 0.01 - 1e-9 for r in mine)
    # word times through a lexicon: each word spans its phones' span
    from data_prep.phones import map_words
    utt, ipa = next(iter(table(tiny.data / "test" / "text.ipa").items()))
    words = table(tiny.data / "test" / "text")[utt].split()
    prons = [map_words([w.split("_")]) for w in ipa.split()]
    assert [t for p in prons for t in p] == texts[utt]
    lex = tmp_path / "lexicon.txt"
    lex.write_text("".join(f"{w} {' '.join(p)}\n" for w, p in zip(words, prons)))
    (tmp_path / "words.txt").write_text(f"{utt} {' '.join(words)}\n")
    word_ctm = tmp_path / "words.ctm"
    run("align", model, "--feats", feats, "--text", tmp_path / "words.txt", "--lexicon", lex,
        "--out", word_ctm)
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
    assert main(["align", str(model), "--feats", str(feats), "--text",
                 str(tmp_path / "oov.txt"), "--lexicon", str(lex)]) == 1
    assert "['notaword'] are not in the lexicon" in capsys.readouterr().err
    # one audio file with a transcript far too long for it: clear error, exit 1
    wav = sorted((tiny.data / "wav" / "test").rglob("*.wav"))[0]
    code = main(["align", str(model), str(wav), "--transcript", " ".join(["aa"] * 2000)])
    assert code == 1 and "needs at least" in capsys.readouterr().err
    code = main(["align", str(model), str(wav), "--transcript", "aa nosuchphone"])
    assert code == 1 and "not in the model's vocabulary" in capsys.readouterr().err


def test_align_words(char_model, tiny, tmp_path, capsys):
    """align --words: a character model's alignment grouped at <space> into
    the transcript's words, each from its first letter's start to its last
    letter's end."""
    text = tiny.data / "test" / "text.chr"
    chars_ctm, words_ctm = tmp_path / "chars.ctm", tmp_path / "words.ctm"
    run("align", char_model, "--feats", tiny.feats / "test", "--text", text, "--out", chars_ctm)
    run("align", char_model, "--feats", tiny.feats / "test", "--text", text, "--words",
        "--out", words_ctm)
    char_rows = [line.split() for line in chars_ctm.read_text().splitlines()]
    word_rows = [line.split() for line in words_ctm.read_text().splitlines()]
    assert "<space>" not in {r[4] for r in char_rows}
    for utt, sentence in table(tiny.data / "test" / "text").items():
        mine = [r for r in word_rows if r[0] == utt]
        letters = [r for r in char_rows if r[0] == utt]
        assert [r[4] for r in mine] == sentence.split()
        first = 0
        for r in mine:
            span = letters[first:first + len(r[4])]
            assert "".join(c[4] for c in span) == r[4]
            assert r[2] == span[0][2] and r[1] == "1"
            assert float(r[2]) + float(r[3]) == pytest.approx(float(span[-1][2])
                                                             + float(span[-1][3]), abs=1e-6)
            first += len(r[4])
        assert first == len(letters)
    # a phone model has no word boundaries to group at
    assert main(["align", str(tiny.model), "--feats", str(tiny.feats / "test"), "--text",
                 str(tiny.data / "test" / "text.phn"), "--words"]) == 2
    assert "--words needs a model with a <space> token" in capsys.readouterr().err


# -- speakers ---------------------------------------------------------------------

def test_stride_and_speaker_cmvn(tiny, speaker_model, tmp_path):
    """--stride 2 --cmvn speaker: decoding with --utt2spk normalises each test
    speaker with statistics of all its utterances, and alignment times come
    in 20 ms steps."""
    from ctcseq.decode import greedy_decode
    from ctcseq.extract import FeatureStore
    from ctcseq.features import Normalizer
    from ctcseq.model import CTCModel
    data, feats = tiny.data, tiny.feats
    model = CTCModel.load(speaker_model)
    assert model.stride == 2
    norm = Normalizer.from_dict(model.features["normalizer"])
    train_spk = set(table(data / "train" / "utt2spk").values())
    assert norm.mode == "speaker" and set(norm.speakers) == train_spk
    hyp = tmp_path / "hyp.txt"
    utt2spk = data / "test" / "utt2spk"
    run("decode", speaker_model, "--feats", feats / "test", "--utt2spk", utt2spk, "--out", hyp)
    # the same by hand
    store = FeatureStore(feats / "test")
    spk = table(utt2spk)
    assert norm.adapt((store[u], spk[u]) for u in store.keys())
    expected = []
    for u in sorted(store.keys()):
        x = norm(store[u], spk[u])[:, None, :]
        labels = greedy_decode(model.log_probs(x, [len(x)]), model.output_lengths([len(x)]))[0]
        expected.append(" ".join([u] + [model.vocabulary[c] for c in labels]))
    assert [line.strip() for line in hyp.read_text().splitlines()] == expected
    # (a one-epoch model may emit blanks only, so check the adaptation itself)
    from ctcseq import Recognizer
    fresh = Recognizer(model).speaker_normalizer((store[u], spk[u]) for u in store.keys())
    assert set(fresh.speakers) == train_spk | set(spk.values())
    ctm = tmp_path / "ali.ctm"
    run("align", speaker_model, "--feats", feats / "test", "--text", data / "test" / "text.phn",
        "--utt2spk", utt2spk, "--out", ctm)
    rows = [line.split() for line in ctm.read_text().splitlines()]
    assert rows and all(float(r[3]) >= 0.02 - 1e-9 for r in rows)
    assert all(abs(float(r[2]) / 0.02 - round(float(r[2]) / 0.02)) < 1e-6 for r in rows)
    durs = table(data / "test" / "utt2dur")
    assert all(float(r[2]) + float(r[3]) <= float(durs[r[0]]) + 0.03 for r in rows)


def test_decode_speaker_pools_audio_files(tiny, speaker_model, capsys):
    """decode --speaker S: the audio files are one new speaker, normalised with
    the mean and standard deviation of all the frames of their pieces of
    speech together (worked out here with NumPy); without it each piece is
    normalised on its own."""
    from ctcseq.decode import greedy_decode
    from ctcseq.features import FeatureConfig, compute_features
    from ctcseq.model import CTCModel
    from ctcseq.segment import AudioSource, scan
    wavs = sorted(str(p) for p in (tiny.data / "wav" / "test").rglob("*.wav"))
    assert len(wavs) >= 2
    model = CTCModel.load(speaker_model)
    cfg = FeatureConfig.from_dict(model.features["config"])
    shift = model.stride * cfg.hop_ms / 1000
    pieces = []   # (file, piece, features)
    for w in wavs:
        src = AudioSource(w)
        for p in scan(src).pieces:
            pieces.append((w, p, compute_features(src.read(p.start, p.end, cfg.sample_rate),
                                                  cfg).astype(np.float64)))
    pooled = np.concatenate([f for _, _, f in pieces])
    mean, std = pooled.mean(0), pooled.std(0) + 1e-5
    tokens = {w: [] for w in wavs}
    for w, p, f in pieces:
        x = ((f - mean) / std).astype(np.float32)[:, None, :]
        labels, spans, _ = greedy_decode(model.log_probs(x, [len(x)]),
                                         model.output_lengths([len(x)]), return_timestamps=True)
        tokens[w] += [model.vocabulary[c] for c, (s, _) in zip(labels[0], spans[0])
                      if p.keep_start <= p.start + s * shift < p.keep_end]
    expected = [" ".join([w] + tokens[w]) for w in wavs]
    assert main(["decode", str(speaker_model), *wavs, "--speaker", "newcomer"]) == 0
    together = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in together] == expected
    assert main(["decode", str(speaker_model), *wavs]) == 0
    apart = capsys.readouterr().out.splitlines()
    assert apart != together                       # the option made a difference


# -- features -----------------------------------------------------------------------

def test_features_mfcc_and_config_file(tiny, tmp_path, capsys):
    """--kind mfcc: cepstra c1.. are the orthonormal DCT-II of the log-mel
    channels (built here from its formula), c0 the log energy, then HTK
    deltas; --config FILE replaces the options; features made with other
    settings than a model's are refused."""
    from ctcseq.extract import FeatureStore
    from ctcseq.features import FeatureConfig
    data = tiny.data / "test"
    fbank, mfcc = tmp_path / "fbank", tmp_path / "mfcc"
    assert "41 values per frame" in run("features", data, fbank, "--deltas", "0", "--jobs", "1",
                                        "--quiet")
    assert "26 values per frame" in run("features", data, mfcc, "--kind", "mfcc", "--deltas",
                                        "1", "--jobs", "1", "--quiet")
    assert FeatureStore(mfcc).config == FeatureConfig(kind="mfcc", deltas=1)
    n_mels = 40
    k, n = np.arange(13)[:, None], np.arange(n_mels)[None, :]
    dct = np.sqrt(2 / n_mels) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels))
    fb, mf = FeatureStore(fbank), FeatureStore(mfcc)
    assert sorted(mf.keys()) == sorted(table(data / "wav.scp"))
    for utt in mf.keys():
        log_mel, energy, m = fb[utt][:, :n_mels], fb[utt][:, n_mels], mf[utt]
        static = log_mel.astype(np.float64) @ dct.T
        static[:, 0] = energy
        np.testing.assert_allclose(m[:, :13], static, rtol=1e-4, atol=2e-3)
        padded = np.concatenate([m[:1, :13]] * 2 + [m[:, :13]] + [m[-1:, :13]] * 2)
        delta = sum(j * (padded[2 + j:len(m) + 2 + j] - padded[2 - j:len(m) + 2 - j])
                    for j in (1, 2)) / 10
        np.testing.assert_allclose(m[:, 13:], delta, rtol=1e-4, atol=2e-3)
    # a config file: its settings win over the options
    settings = {"kind": "mfcc", "n_mels": 23, "n_mfcc": 20, "energy": False, "deltas": 0,
                "hop_ms": 20.0}
    (tmp_path / "cfg.json").write_text(json.dumps(settings))
    out = run("features", data, tmp_path / "cfg", "--config", tmp_path / "cfg.json",
              "--kind", "fbank", "--deltas", "2", "--jobs", "1", "--quiet")
    assert "20 values per frame" in out
    store = FeatureStore(tmp_path / "cfg")
    assert store.config == FeatureConfig(**settings)
    for utt, wav in table(data / "wav.scp").items():
        samples = sf.info(datadir.resolve_wav(data, wav)).frames  # 16 kHz already
        assert store[utt].shape == (1 + (samples - 400) // 320, 20)
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "mfcc", "nmfcc": 3}))
    assert main(["features", str(data), str(tmp_path / "bad"), "--config",
                 str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "nmfcc" in err and len(err.strip().splitlines()) == 1
    # the fbank model cannot read MFCCs
    assert main(["decode", str(tiny.model), "--feats", str(mfcc)]) == 2
    assert "other settings than the model's" in capsys.readouterr().err


# -- errors and help ------------------------------------------------------------------

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


# -- forward: the network once per set --------------------------------------------

def test_forward_once_then_decode_and_align_from_the_saved_outputs(tiny, char_model, tmp_path,
                                                                   capsys):
    feats, text = tiny.feats / "test", tiny.data / "test" / "text.phn"
    lp = tmp_path / "test.npz"
    run("forward", tiny.model, "--feats", feats, "--out", lp)
    for opts in ([], ["--beam", "4", "--lm", tiny.model_dir / "lm.json", "--alpha", "0.7",
                      "--beta", "0.5"]):
        want, got = tmp_path / "want.txt", tmp_path / "got.txt"
        run("decode", tiny.model, "--feats", feats, "--out", want, *opts)
        run("decode", tiny.model, "--log-probs", lp, "--out", got, *opts)
        assert got.read_text() == want.read_text() and want.read_text()
    want, got = tmp_path / "want.ctm", tmp_path / "got.ctm"
    run("align", tiny.model, "--feats", feats, "--text", text, "--out", want)
    run("align", tiny.model, "--log-probs", lp, "--text", text, "--out", got)
    assert got.read_text() == want.read_text() and want.read_text()
    # outputs of another model are refused, in one line
    capsys.readouterr()
    assert main(["decode", str(char_model), "--log-probs", str(lp)]) == 2
    err = capsys.readouterr().err
    assert "computed with another model" in err and len(err.strip().splitlines()) == 1
    assert main(["decode", str(tiny.model), "--log-probs", str(tiny.model)]) == 2
    assert "not a log-probabilities file" in capsys.readouterr().err
