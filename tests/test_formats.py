"""Output formats of recognition results: text, CTM, JSON lines, SRT and
WebVTT subtitles, through the library and `ctcseq decode --format`."""
import json
import re

import numpy as np
import pytest
import soundfile as sf

from ctcseq import Recognizer, datadir
from ctcseq.cli import main
from ctcseq.decode import forced_align, to_ctm
from ctcseq.errors import UserError
from ctcseq.formats import ctm_lines, format_results, json_lines, srt, text_lines, vtt
from ctcseq.recognize import utterance_id
from test_recognize import SR, make_model, tones

SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")
VTT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    chars, phones = root / "chars.npz", root / "phones.npz"
    make_model(["<blk>", "a", "b", "<space>"]).save(chars)
    make_model(["<blk>", "aa", "b", "k"], seed=5).save(phones)
    wav = root / "my recording.wav"
    sf.write(wav, tones([0.3, (1.5, 300), 0.5, (2.0, 600), 0.3]), SR)
    rec = Recognizer.load(chars, segment={"max_seconds": 1.0, "overlap_seconds": 0.3})
    result = rec.transcribe(wav)
    assert result.ok and len(result.words) >= 3
    return type("E", (), dict(root=root, chars=chars, phones=phones, wav=wav, rec=rec,
                              result=result))


def cue_times(lines, pattern):
    out = []
    for line in lines:
        m = pattern.match(line)
        if m:
            g = list(map(int, m.groups()))
            out.append(((g[0] * 60 + g[1]) * 60 + g[2] + g[3] / 1000,
                        (g[4] * 60 + g[5]) * 60 + g[6] + g[7] / 1000))
    return out


def test_json_lines_are_json_with_the_results_times(env):
    r = env.result
    bad = env.rec.transcribe([env.wav, env.root / "missing.wav"])[1]
    lines = json_lines([r, bad])
    d, e = map(json.loads, lines)
    assert d["utterance"] == r.utterance and " " not in d["utterance"]
    assert [t["symbol"] for t in d["tokens"]] == r.symbols
    np.testing.assert_allclose([t["start"] for t in d["tokens"]], [t.start for t in r.tokens],
                               atol=1e-6)
    np.testing.assert_allclose([w["end"] for w in d["words"]], [w.end for w in r.words],
                               atol=1e-6)
    assert d["score"] == pytest.approx(r.score, abs=1e-6) and d["error"] is None
    assert d["score_per_frame"] == pytest.approx(r.score / r.frames, abs=1e-6)
    assert e["error"] and "missing.wav" in e["error"] and e["tokens"] == []


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_subtitles_are_well_formed_and_ordered(env, kind):
    lines = (srt if kind == "srt" else vtt)(env.result, max_words=2)
    times = cue_times(lines, SRT_TIME if kind == "srt" else VTT_TIME)
    words = env.result.words
    assert len(times) == -(-len(words) // 2) or len(times) > len(words) // 2
    for (s, e), nxt in zip(times, times[1:] + [(np.inf, np.inf)]):
        assert s < e <= nxt[0]
    assert times[0][0] == pytest.approx(words[0].start, abs=1e-3)
    assert times[-1][1] == pytest.approx(words[-1].end, abs=1e-3)
    texts = [ln for ln in lines if ln and not (SRT_TIME.match(ln) or VTT_TIME.match(ln))
             and not ln.isdigit() and ln != "WEBVTT"]
    assert " ".join(texts).split() == [w.text for w in words]
    if kind == "srt":
        numbers = [ln for ln in lines if ln.isdigit()]
        assert numbers == [str(i) for i in range(1, len(times) + 1)]
    else:
        assert lines[0] == "WEBVTT"


def test_subtitles_of_token_only_results_are_refused(env):
    r = Recognizer.load(env.phones).transcribe(env.wav)
    assert r.ok and r.words is None
    for fmt in ("srt", "vtt"):
        with pytest.raises(UserError, match="subtitles need words"):
            format_results([r], fmt)


def test_ctm_and_text_lines_parse(env, tmp_path):
    r = env.result
    ctm = tmp_path / "r.ctm"
    ctm.write_text("\n".join(ctm_lines([r])) + "\n")
    rows = datadir.read_ctm(ctm)[r.utterance]
    assert [x[2] for x in rows] == [w.text for w in r.words]
    np.testing.assert_allclose([x[0] for x in rows], [w.start for w in r.words], atol=5e-4)
    tokens = ctm_lines([r], words=False)
    assert [ln.split()[4] for ln in tokens] == [s for s in r.symbols if s != "<space>"]
    (line,) = text_lines([r])
    assert line.split() == [utterance_id(env.wav), *r.symbols]


def test_emission_ctm_is_that_of_the_alignment_path(env):
    """times='emission' writes what decode.to_ctm writes of forced_align's
    spans (the recipe's format)."""
    lp = np.log(np.random.default_rng(0).dirichlet(np.ones(4) * 0.3, size=40))
    res = env.rec.align_log_probs({"u1": lp}, {"u1": "a b b a"})["u1"]
    ali = forced_align(lp[:, None], np.array([[1, 2, 2, 1]]), [40], [4])[0]
    assert ctm_lines([res], words=False, times="emission") == to_ctm(
        "u1", zip(ali.starts, ali.ends), ["a", "b", "b", "a"], env.rec.frame_shift)


def test_decode_command_formats_and_ids(env, capsys):
    result = Recognizer.load(env.chars).transcribe(env.wav)   # the command's settings
    capsys.readouterr()
    for fmt in ("text", "ctm", "json", "srt", "vtt"):
        assert main(["decode", str(env.chars), str(env.wav), "--format", fmt]) == 0
        out = capsys.readouterr().out.splitlines()
        if fmt == "text":
            assert out == text_lines([result]) and " " not in out[0].split(" ")[0]
        elif fmt == "json":
            assert json.loads(out[0])["utterance"] == utterance_id(env.wav)
            assert utterance_id(env.wav).endswith("my_recording.wav")
        elif fmt == "ctm":
            assert out == ctm_lines([result])
        else:
            assert cue_times(out, SRT_TIME if fmt == "srt" else VTT_TIME)
    # subtitles are of one recording
    assert main(["decode", str(env.chars), str(env.wav), str(env.wav), "--format", "srt"]) == 2
    assert "one recording" in capsys.readouterr().err
