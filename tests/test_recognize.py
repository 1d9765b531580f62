"""ctcseq.Recognizer: transcription and alignment of recordings as a library,
checked against the pipeline done by hand (segment -> features -> CMVN ->
network -> decoder), with tiny random-weight models and synthetic audio."""
import itertools

import numpy as np
import pytest
import soundfile as sf

from ctcseq import CTCModel, Recognizer
from ctcseq.cli import main
from ctcseq.decode import beam_search, greedy_decode, token_spans
from ctcseq.features import FeatureConfig, Normalizer, compute_features
from ctcseq.recognize import POOR_SCORE_PER_FRAME, _kbest, utterance_id
from ctcseq.segment import AudioSource, scan

SR = 16000
CFG = FeatureConfig(n_mels=8, deltas=0)


def tones(parts, seed=0):
    """Concatenated parts: a float = seconds of digital silence, a pair
    (seconds, Hz) = a gliding tone with a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for p in parts:
        if isinstance(p, tuple):
            t = np.arange(int(p[0] * SR)) / SR
            out.append(0.3 * np.sin(2 * np.pi * p[1] * t * (1 + 0.3 * t))
                       + 0.02 * rng.standard_normal(t.size))
        else:
            out.append(np.zeros(int(p * SR)))
    return np.concatenate(out).astype(np.float32)


def make_model(vocabulary, stride=1, seed=3):
    y = tones([(1.0, 300)])
    feats = compute_features(y, CFG)
    norm = Normalizer("utterance").fit([(feats, None)])
    # a wide init range: random weights that emit several tokens, not blanks only
    return CTCModel(CFG.dim, 6, 1, len(vocabulary), vocabulary=vocabulary, init_range=1.5,
                    seed=seed, stride=stride,
                    features={"config": CFG.to_dict(), "normalizer": norm.to_dict(),
                              "text": "text.chr"})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recognize")
    model = make_model(["<blk>", "a", "b", "<space>"])
    path = root / "model.npz"
    model.save(path)
    long = tones([0.5, (1.2, 300), 0.6, (2.5, 700), 0.4])
    short = tones([0.2, (0.8, 500), 0.2], seed=1)
    files = {}
    for name, y in (("long.wav", long), ("with space.flac", short)):
        files[name] = root / name
        sf.write(files[name], y, SR)
    return type("S", (), dict(root=root, model=model, path=path, long=long, short=short,
                              files=files))


def by_hand(model, y, **segment):
    """Symbols and absolute token starts of greedy decoding, done by hand."""
    norm = Normalizer.from_dict(model.features["normalizer"])
    shift = model.stride * CFG.hop_ms / 1000
    src = AudioSource(y, sample_rate=SR)
    symbols, starts = [], []
    for p in scan(src, **segment).pieces:
        x = norm(compute_features(src.read(p.start, p.end, CFG.sample_rate), CFG))[:, None]
        lp = model.log_probs(x, [len(x)])
        labels, spans, _ = greedy_decode(lp, model.output_lengths([len(x)]),
                                         return_timestamps=True)
        for c, (s, _) in zip(labels[0], spans[0]):
            if p.keep_start <= p.start + s * shift < p.keep_end:
                symbols.append(model.vocabulary[c])
                starts.append(p.start + s * shift)
    return symbols, starts


def test_transcribe_path_array_and_list_match_the_pipeline_by_hand(setup):
    seg = {"max_seconds": 1.0, "overlap_seconds": 0.3}   # several pieces, windows
    rec = Recognizer.load(setup.path, segment=seg)
    symbols, starts = by_hand(setup.model, setup.long, **seg)
    assert len(symbols) >= 5 and len(scan(AudioSource(setup.long, sample_rate=SR),
                                          **seg).pieces) >= 4
    from_path = rec.transcribe(str(setup.files["long.wav"]))
    from_array = rec.transcribe(setup.long, sample_rate=SR)
    for r in (from_path, from_array):
        assert r.ok and r.symbols == symbols
        np.testing.assert_allclose([t.start for t in r.tokens], starts, atol=1e-9)
    both = rec.transcribe([setup.files["with space.flac"], (setup.long, SR)])
    assert [r.symbols for r in both] == [rec.transcribe(setup.short, sample_rate=SR).symbols,
                                         symbols]
    assert both[0].utterance == utterance_id(setup.files["with space.flac"])
    assert " " not in both[0].utterance and both[1].utterance == "array1"
    # a stereo copy of the same recording is heard alike (channels averaged)
    stereo = np.stack([setup.short, setup.short], 1)
    assert rec.transcribe(stereo, sample_rate=SR).symbols == both[0].symbols


def test_pieces_are_processed_in_bounded_groups(setup, monkeypatch, capsys):
    """Memory is bounded by a group: pieces are featurised lazily, and when
    the network runs only the current group's pieces hold arrays (features
    or log-probs); the results equal one group over everything."""
    from ctcseq import recognize
    made = []

    class Tracked(recognize._Piece):
        def __init__(self, *a):
            super().__init__(*a)
            made.append(self)

    monkeypatch.setattr(recognize, "_Piece", Tracked)
    y = tones([p for i in range(60) for p in (0.4, (0.8, 300 + 10 * i))] + [0.4])
    total = len(scan(AudioSource(y, sample_rate=SR)).pieces)
    assert total == 60
    group_seconds = 8.0
    frames_limit = group_seconds * 1000 / CFG.hop_ms
    rec = Recognizer.load(setup.path, beam=3, group_seconds=group_seconds, progress=True)
    calls = []
    forward = rec._forward

    def checked_forward(x, lengths):
        holding = [p for p in made if p.feats is not None or p.lp is not None]
        frames = sum(p.feats.shape[0] for p in holding)   # none holds log-probs yet
        longest = max(p.feats.shape[0] for p in holding)
        assert all(p.lp is None for p in holding)
        assert frames < frames_limit + longest          # the group, no more
        calls.append((len(made), frames))
        return forward(x, lengths)

    rec._forward = checked_forward
    grouped = rec.transcribe(y, sample_rate=SR, nbest=2)
    assert len(made) == total and not any(p.feats is not None or p.lp is not None
                                          for p in made)
    assert len(calls) >= 5 and calls[0][0] < total / 3   # lazy: later pieces not read yet
    assert "recognize:" in capsys.readouterr().err        # over a minute of speech: a bar
    made.clear()
    one = Recognizer.load(setup.path, beam=3, group_seconds=1e6).transcribe(
        y, sample_rate=SR, nbest=2)
    assert len(made) == total and grouped.symbols and grouped.symbols == one.symbols
    assert [t.start for t in grouped.tokens] == [t.start for t in one.tokens]
    assert grouped.score == pytest.approx(one.score) and grouped.frames == one.frames
    assert [a.symbols for a in grouped.nbest] == [a.symbols for a in one.nbest]
    with pytest.raises(ValueError, match="group_seconds"):
        Recognizer.load(setup.path, group_seconds=0)


def test_a_new_speaker_is_normalised_with_all_its_pieces_across_groups(setup, tmp_path):
    y = tones([0.5, (1.2, 300), 0.6, (2.5, 700), 0.4, (1.5, 450), 0.5])
    model = make_model(["<blk>", "a", "b", "<space>"])
    norm = Normalizer("speaker").fit([(compute_features(tones([(1.0, 300)]), CFG), "old")])
    model.features = dict(model.features, normalizer=norm.to_dict())
    path = tmp_path / "spk.npz"
    model.save(path)
    src = AudioSource(y, sample_rate=SR)
    pieces = scan(src, max_seconds=1.0, overlap_seconds=0.3).pieces
    feats = [compute_features(src.read(p.start, p.end, CFG.sample_rate), CFG) for p in pieces]
    norm.adapt([(f, "new") for f in feats])     # the reference: all pieces at once
    want = []
    for p, f in zip(pieces, feats):
        x = norm(f, "new")[:, None]
        labels, spans, _ = greedy_decode(model.log_probs(x, [len(x)]),
                                         model.output_lengths([len(x)]),
                                         return_timestamps=True)
        want += [model.vocabulary[c] for c, (s, _) in zip(labels[0], spans[0])
                 if p.keep_start <= p.start + s * CFG.hop_ms / 1000 < p.keep_end]
    rec = Recognizer.load(path, group_seconds=1.0,
                          segment={"max_seconds": 1.0, "overlap_seconds": 0.3})
    got = rec.transcribe(y, sample_rate=SR, speaker="new")
    assert len(pieces) >= 5 and len(want) >= 5 and got.symbols == want
    # its own statistics differ from those of each piece alone
    assert rec.transcribe(y, sample_rate=SR).symbols != want


def test_token_and_word_spans_tile_the_recording(setup):
    rec = Recognizer.load(setup.path, segment={"max_seconds": 1.0, "overlap_seconds": 0.3})
    r = rec.transcribe(setup.long, sample_rate=SR)
    toks = r.tokens
    assert len(toks) >= 5 and r.words
    for a, b in zip(toks, toks[1:]):
        assert a.start < a.end <= b.start
    assert 0 <= toks[0].start and toks[-1].end <= len(setup.long) / SR + r.frame_shift
    # a pause (digital silence, no speech piece) is never inside a token
    assert not any(t.start < 2.0 < t.end for t in toks)   # silence 1.7 .. 2.3 s, no piece
    # words: the delimiter splits, each word spans its tokens
    for w in r.words:
        a, b = w.tokens
        assert w.text == "".join(t.symbol for t in toks[a:b]) and "<space>" not in w.text
        assert (w.start, w.end) == (toks[a].start, toks[b - 1].end)


def test_token_spans_against_a_reference():
    """token_spans: the next start, or the first run of >= max_blank blank
    frames after the token's first frame (brute force reference)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        T = int(rng.integers(1, 40))
        blank = rng.random(T) < 0.7
        starts = np.sort(rng.choice(T, size=int(rng.integers(0, min(T, 6) + 1)),
                                    replace=False))
        blank[starts] = False      # a token's first frame is its own (greedy, alignment)
        g = int(rng.integers(1, 5))
        got = token_spans(starts, blank, g)
        for i, s in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else T
            end = stop
            for t in range(s + 1, stop):
                run = 0
                while t + run < T and blank[t + run]:
                    run += 1
                if run >= g and (t == 0 or not blank[t - 1] or t == s + 1):
                    end = t
                    break
            assert tuple(got[i]) == (s, max(end, s + 1)), (blank, starts, g)


def test_bad_inputs_each_get_one_message_and_the_others_are_decoded(setup, capsys):
    root = setup.root / "bad"
    root.mkdir()
    good, junk, empty, silent, nan, short = (root / n for n in (
        "good.wav", "junk.wav", "empty.wav", "silent.wav", "nan.wav", "short.wav"))
    missing = root / "missing.wav"
    sf.write(good, setup.short, SR)
    junk.write_bytes(b"not audio at all")
    sf.write(empty, np.zeros(0, np.float32), SR)
    sf.write(silent, np.zeros(SR, np.float32), SR)
    y = setup.short.copy()
    y[5000] = np.nan
    sf.write(nan, y, SR, subtype="FLOAT")
    sf.write(short, setup.short[:80], SR)              # 5 ms: less than one frame
    rec = Recognizer.load(setup.path)
    files = [good, junk, empty, silent, nan, short, missing]
    res = rec.transcribe(files)
    want = rec.transcribe(good)
    assert res[0].ok and res[0].symbols == want.symbols and want.symbols
    for r, f, what in ((res[1], junk, "cannot read"), (res[2], empty, "empty"),
                       (res[4], nan, "NaN"), (res[5], short, "too short"),
                       (res[6], missing, "no such file")):
        assert r.error and str(f) in r.error and what in r.error, r.error
        assert not r.tokens
    assert res[3].ok and not res[3].tokens and any("no speech" in w for w in res[3].warnings)
    # the command line: one line per bad file on stderr, the others decoded, status 1
    capsys.readouterr()
    assert main(["decode", str(setup.path), *map(str, files)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good} {' '.join(want.symbols)}", f"{silent} "]
    lines = err.strip().splitlines()
    assert len(lines) == 6 and all(any(str(f) in s for s in lines) for f in files[1:])
    assert "System error" not in err


def test_loud_samples_are_reported(setup):
    rec = Recognizer.load(setup.path)
    r = rec.transcribe(setup.short * 5, sample_rate=SR)
    assert r.ok and any("outside [-1, 1] (peak" in w for w in r.warnings)


def test_nbest_is_the_best_stitching_of_the_pieces(setup):
    seg = {"max_seconds": 1.0, "overlap_seconds": 0.3}
    rec = Recognizer.load(setup.path, beam=4, segment=seg)
    r = rec.transcribe(setup.long, sample_rate=SR, nbest=3)
    assert len(r.nbest) == 3 and r.nbest[0].symbols == r.symbols
    assert r.nbest[0].score == pytest.approx(r.score)
    scores = [a.score for a in r.nbest]
    assert scores == sorted(scores, reverse=True)
    # _kbest against all combinations
    rng = np.random.default_rng(0)
    pieces = [[(float(s), 0.0, [f"p{i}h{j}"]) for j, s in enumerate(rng.normal(size=k))]
              for i, k in enumerate((3, 1, 4, 2))]
    brute = sorted((sum(c[0] for c in combo), [c[2][0] for c in combo])
                   for combo in itertools.product(*pieces))[::-1][:5]
    got = _kbest(pieces, 5)
    assert [g[2] for g in got] == [b[1] for b in brute]
    np.testing.assert_allclose([g[0] for g in got], [b[0] for b in brute])
    with pytest.raises(ValueError, match="nbest"):
        Recognizer.load(setup.path).transcribe(setup.short, sample_rate=SR, nbest=2)


def test_beam_search_tokens_equal_the_decoder(setup):
    rec = Recognizer.load(setup.path, beam=4)
    lp = {"u": np.log(np.random.default_rng(2).dirichlet(np.ones(4) * 0.3, size=30))}
    r = rec.decode_log_probs(lp)["u"]
    want = beam_search(lp["u"][:, None], [30], beam_width=4)[0][0]
    assert r.symbols == [setup.model.vocabulary[c] for c in want.tokens]
    assert r.score == pytest.approx(want.score)
    assert all(a.start < a.end <= b.start for a, b in zip(r.tokens, r.tokens[1:]))


def spiky(T, spans, C=4):
    """Log-probabilities: the blank everywhere but on the given
    {(first, end): class} frame spans."""
    p = np.full((T, C), 0.01)
    p[:, 0] = 0.97
    for (s, e), c in spans.items():
        p[s:e] = 0.01
        p[s:e, c] = 0.97
    return np.log(p / p.sum(1, keepdims=True))


def test_alignment_spans_and_poor_alignments(setup):
    rec = Recognizer(setup.model)
    sh = rec.frame_shift
    assert sh == pytest.approx(0.01)
    # a b, a pause, a b again, each token a run of frames; 100 frames
    lp = spiky(100, {(5, 17): 1, (18, 30): 2, (60, 72): 1, (75, 87): 2})
    res = rec.align_log_probs({"full": lp, "half": lp}, {"full": "a b a b", "half": "a b"})
    full, half = res["full"], res["half"]
    assert full.symbols == ["a", "b", "a", "b"] and not full.poor and not full.warnings
    # spans: to the next start, or to the pause (>= 0.3 s of blanks) after a token
    assert [(round(t.start / sh), round(t.end / sh)) for t in full.tokens] == \
        [(5, 18), (18, 30), (60, 75), (75, 100)]
    assert [t.emission for t in full.tokens] == [(5, 17), (18, 30), (60, 72), (75, 87)]
    # the model has a <space> token but the transcript none: one word
    assert [(w.text, w.start, w.end) for w in full.words] == [("abab", 0.05, 1.0)]
    # the second half of the speech is not in the transcript: 24 frames of it
    # left on the blank
    assert half.poor and half.unexplained_seconds >= 0.24 - 1e-9
    assert "poor alignment" in half.warnings[0] and "not covered" in half.warnings[0]
    assert full.score_per_frame > -0.1 > POOR_SCORE_PER_FRAME > half.score_per_frame


def test_align_audio_files_and_the_command_line(setup, tmp_path, capsys):
    rec = Recognizer.load(setup.path)
    files = [setup.files["long.wav"], setup.files["with space.flac"]]
    res = rec.align(files, ["a b a", "b <space> a"])
    assert [r.symbols for r in res] == [["a", "b", "a"], ["b", "<space>", "a"]]
    for r in res:
        assert all(a.start < a.end <= b.start for a, b in zip(r.tokens, r.tokens[1:]))
    # the leading 0.5 s of silence is not speech (no margin before speech by default)
    assert res[0].tokens[0].start >= 0.5 - 0.03   # a frame early at most
    too_long = rec.align(files[1], " ".join(["a", "b"] * 500))
    assert too_long.error and "needs at least" in too_long.error
    text = tmp_path / "text"
    text.write_text(f"long a b a\n{utterance_id('with space')} b <space> a\n")
    ctm = tmp_path / "out.ctm"
    assert main(["align", str(setup.path), *map(str, files), "--text", str(text), "--out",
                 str(ctm)]) == 0
    rows = [line.split() for line in ctm.read_text().splitlines()]
    assert [r[4] for r in rows] == ["a", "b", "a", "b", "a"]   # <space> is not a token line
    want = [t for r in res for t in r.tokens if t.symbol != "<space>"]
    np.testing.assert_allclose([float(r[2]) for r in rows], [t.start for t in want],
                               atol=5e-4)
    np.testing.assert_allclose([float(r[3]) for r in rows], [t.end - t.start for t in want],
                               atol=1e-3)
    assert {r[0] for r in rows} == {utterance_id(f) for f in files}
