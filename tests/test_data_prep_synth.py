"""Tests of data_prep: phone mapping, Kaldi data dirs, eSpeak binding, tiny corpus."""
import filecmp
import os

# espeakng_loader, wordfreq, librosa and soundfile are required by
# pyproject.toml: a broken install fails here instead of skipping
import espeakng_loader
import librosa
import numpy as np
import pytest
import soundfile as sf
import wordfreq  # noqa: F401

from ctcseq import datadir
from data_prep import phones

# --------------------------------------------------------------------------
# phone inventory and IPA mapping (no eSpeak needed)
# --------------------------------------------------------------------------


def test_inventory_is_about_forty_unique_ascii_phones():
    assert len(phones.PHONES) == 40
    assert len(set(phones.PHONES)) == 40
    assert all(p.isascii() and p.isalpha() and p.islower() for p in phones.PHONES)
    targets = {p for v in phones.IPA_TO_PHONES.values() for p in v}
    assert targets == set(phones.PHONES)      # every phone is reachable


@pytest.mark.parametrize("ipa, key", [
    ("ˈaɪ", "aɪ"), ("ˌoʊ", "oʊ"),             # stress dropped
    ("ˈa:", "aː"), ("iːː", "iː"),             # ASCII colon, doubled length
    ("d͡ʒ", "dʒ"), ("a͜ɪ", "aɪ"),              # tie bars
])
def test_normalize_ipa(ipa, key):
    assert phones.normalize_ipa(ipa) == key


def test_unknown_symbol_is_reported_not_dropped():
    with pytest.raises(phones.UnknownPhoneError) as err:
        phones.map_words([["k", "ˈæ", "t"], ["ˈæ", "x", "m"]])
    assert err.value.symbol == "x"
    assert "U+0078" in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(phones.UnknownPhoneError):
        phones.ipa_to_phones("ɬ")


def test_r_coloured_vowel_before_onset_r_gives_one_r():
    # eSpeak's "security": ... j ˈʊɹ ɹ ᵻ ...
    assert phones.map_words([["k", "j", "ˈʊɹ", "ɹ", "ᵻ"]]) == ["k", "y", "uh", "r", "ih"]
    # two /r/ phonemes in a row are both kept (not created by the mapping)
    assert phones.map_words([["ɹ"], ["ɹ"]]) == ["r", "r"]


def test_phone_list_round_trip(tmp_path):
    path = tmp_path / "phones.txt"
    phones.write_phone_list(path)
    assert phones.read_phone_list(path) == phones.PHONES
    assert path.read_text().splitlines()[0] == "aa 1"


# --------------------------------------------------------------------------
# Kaldi data directories
# --------------------------------------------------------------------------


def _tiny_dir(path):
    datadir.write_data_dir(
        path,
        wav_scp={"b_s1-2": "wav/2.wav", "a_s0-1": "wav/1.wav"},
        text={"b_s1-2": "hello", "a_s0-1": "world"},
        utt2spk={"b_s1-2": "b_s1", "a_s0-1": "a_s0"},
        extra={"text.phn": {"b_s1-2": ["hh", "ah"], "a_s0-1": ["w", "er"]}})


def test_kaldi_write_read_validate(tmp_path):
    d = tmp_path / "data"
    _tiny_dir(d)
    assert (d / "wav.scp").read_text() == "a_s0-1 wav/1.wav\nb_s1-2 wav/2.wav\n"
    assert (d / "spk2utt").read_text() == "a_s0 a_s0-1\nb_s1 b_s1-2\n"
    tables = datadir.validate_data_dir(d, phones=phones.PHONES)
    assert tables["text.phn"]["b_s1-2"] == "hh ah"
    assert datadir.resolve_wav(d, "wav/1.wav") == str(tmp_path / "wav" / "1.wav")


def test_kaldi_validate_reports_problems(tmp_path):
    d = tmp_path / "data"
    _tiny_dir(d)
    (d / "text").write_text("b_s1-2 hello\na_s0-1 world\n")              # unsorted
    (d / "text.phn").write_text("a_s0-1 w er\nb_s1-2 hh xx\n")          # bad label
    with pytest.raises(datadir.DataDirError) as err:
        datadir.validate_data_dir(d, phones=phones.PHONES, check_audio=True)
    msg = str(err.value)
    assert "text is not sorted" in msg
    assert "['xx']" in msg
    assert "wav files missing" in msg
    os.remove(d / "spk2utt")
    with pytest.raises(datadir.DataDirError, match="missing spk2utt"):
        datadir.validate_data_dir(d)


def test_kaldi_rejects_whitespace_ids(tmp_path):
    with pytest.raises(ValueError, match="key"):
        datadir.write_table(tmp_path / "t", {"a b": "x"})


# --------------------------------------------------------------------------
# eSpeak binding
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    from data_prep.espeak import get_engine
    return get_engine()


@pytest.mark.parametrize("voice, word, expected", [
    ("en-us", "cat", "k ae t"),
    ("en-us", "church", "ch er ch"),
    ("en-us", "thinking", "th ih ng k ih ng"),
    ("en-us", "better", "b eh dx er"),          # flap
    ("en-us", "measure", "m eh zh er"),
    ("en-us", "button", "b ah t ah n"),         # glottal stop, syllabic n
    ("en-us", "bottle", "b aa dx ah l"),        # syllabic l
    ("en-us", "car", "k aa r"),                 # r-coloured vowel
    ("en-us", "security", "s ih k y uh r ih dx iy"),
    ("en", "water", "w ao t ah"),               # non-rhotic GB
    ("en", "fire", "f ay ah"),                  # triphthong
    ("en", "hair", "hh eh ah"),                 # centring diphthong
    ("en", "go", "g ow"),
    ("en-gb-scotland", "what", "w ah t"),       # ʍ
])
def test_known_words(engine, voice, word, expected):
    assert " ".join(phones.map_words(engine.phonemize(word, voice))) == expected


def test_missing_library_is_a_clear_error(monkeypatch):
    from data_prep import espeak
    monkeypatch.setattr(espeakng_loader, "get_library_path",
                        lambda: "/nonexistent/libespeak-ng.so")
    with pytest.raises(espeak.EspeakError, match="cannot load the eSpeak NG library"):
        espeak._load_library()


def test_synthesize_matches_phonemize(engine):
    out = engine.synthesize("the houses were quiet", "en-us+f3", rate=160, pitch=40)
    assert out.sample_rate == engine.sample_rate == 22050
    assert out.audio.dtype == np.float32 and out.audio.ndim == 1
    assert 0.5 < len(out.audio) / out.sample_rate < 5
    assert np.abs(out.audio).max() > 0.05
    spoken = [e.phoneme for e in out.events]
    assert spoken == [p for w in engine.phonemize("the houses were quiet", "en-us+f3") for p in w]
    starts = [e.sample for e in out.events]
    assert starts == sorted(starts) and all(e.end > e.sample for e in out.events)
    assert [e.word for e in out.events][-1] == 3


def test_synthesize_is_repeatable(engine):
    a = engine.synthesize("testing one two", "en-us+klatt3", seed=5).audio
    engine.synthesize("something else first", "en-gb-x-rp+m2", rate=300)
    b = engine.synthesize("testing one two", "en-us+klatt3", seed=5).audio
    assert np.array_equal(a, b)


def test_bad_engine_arguments(engine):
    with pytest.raises(ValueError, match="voice"):
        engine.synthesize("hi", "xx-nonexistent")
    with pytest.raises(ValueError, match="variant"):
        engine.synthesize("hi", "en-us+nope")
    with pytest.raises(ValueError, match="rate"):
        engine.synthesize("hi", "en-us", rate=10)
    with pytest.raises(ValueError, match="pitch"):
        engine.synthesize("hi", "en-us", pitch=101)


# --------------------------------------------------------------------------
# tiny corpus, built twice (in-process and with a process pool)
# --------------------------------------------------------------------------

TINY = dict(hours=0.004, seed=7, n_words=400, log=lambda line: None)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    from data_prep.synth import build_corpus
    a = tmp_path_factory.mktemp("corpus_a")
    b = tmp_path_factory.mktemp("corpus_b")
    summary = build_corpus(str(a), jobs=1, **TINY)
    build_corpus(str(b), jobs=2, **TINY)
    return a, b, summary


def _all_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def test_corpus_is_deterministic(corpora):
    a, b, _ = corpora
    files = _all_files(a)
    assert files == _all_files(b)
    assert any(f.endswith(".wav") for f in files)
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert mismatch == [] and errors == []


def test_corpus_data_dirs_consistent(corpora):
    a, _, summary = corpora
    inventory = phones.read_phone_list(a / "phones.txt")
    assert inventory == phones.PHONES
    for split in ("train", "dev", "test"):
        tables = datadir.validate_data_dir(a / split, phones=inventory, check_audio=True)
        assert len(tables["wav.scp"]) == summary["splits"][split]["utterances"] > 0
        for utt, chars in datadir.read_table(a / split / "text.chr").items():
            assert "".join(c if c != datadir.SPACE else " " for c in chars.split()) == tables["text"][utt]


def test_split_is_by_voice(corpora):
    from data_prep.synth import DEFAULT_SPLIT
    a, _, _ = corpora
    variants, speakers = {}, {}
    for split in ("train", "dev", "test"):
        synth = datadir.read_table(a / split / "utt2synth")
        variants[split] = {v.split()[0].split("+")[1] for v in synth.values()}
        speakers[split] = set(datadir.read_table(a / split / "utt2spk").values())
        assert variants[split] <= set(DEFAULT_SPLIT[split])
    for x, y in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not variants[x] & variants[y]
        assert not speakers[x] & speakers[y]
        assert not set(DEFAULT_SPLIT[x]) & set(DEFAULT_SPLIT[y])
    klatt_train = {v for v in DEFAULT_SPLIT["train"] if v.startswith("klatt")}
    klatt_test = {v for v in DEFAULT_SPLIT["test"] if v.startswith("klatt")}
    assert klatt_test and not klatt_test & klatt_train


def test_corpus_audio(corpora):
    a, _, _ = corpora
    for split in ("train", "dev", "test"):
        durs = datadir.read_table(a / split / "utt2dur")
        for utt, path in datadir.read_table(a / split / "wav.scp").items():
            audio, rate = sf.read(datadir.resolve_wav(a / split, path), dtype="float32")
            assert rate == 16000 and audio.ndim == 1
            assert abs(len(audio) / rate - float(durs[utt])) < 1e-3
            assert np.abs(audio).max() > 0.05


def test_corpus_alignment_matches_labels(corpora):
    a, _, _ = corpora
    for split in ("train", "dev", "test"):
        ctm = datadir.read_ctm(a / split / "phones.ctm")
        labels = datadir.read_table(a / split / "text.phn")
        durs = datadir.read_table(a / split / "utt2dur")
        assert set(ctm) == set(labels)
        for utt, segs in ctm.items():
            assert [s[2] for s in segs] == labels[utt].split()
            starts = [s[0] for s in segs]
            assert starts == sorted(starts)
            assert segs[-1][0] + segs[-1][1] <= float(durs[utt]) + 1e-3


def test_bad_build_arguments(tmp_path):
    from data_prep.synth import build_corpus, plan_corpus
    with pytest.raises(ValueError, match="hours"):
        plan_corpus([("a", 1.0)], hours=0, seed=0)
    with pytest.raises(ValueError, match="split"):
        plan_corpus([("a", 1.0)], hours=1, seed=0,
                    split={"train": ("m1",), "dev": ("m1",), "test": ("m2",)})
    with pytest.raises(ValueError, match="rate"):
        plan_corpus([("a", 1.0)], hours=1, seed=0, rate=(10, 500))
    with pytest.raises(ValueError, match="unknown"):
        build_corpus(str(tmp_path), split={"train": ("nope",), "dev": ("m1",), "test": ("m2",)},
                     **TINY)
    with pytest.raises(ValueError, match="random_variants: eSpeak's voice list"):
        build_corpus(str(tmp_path / "many"), **{**TINY, "random_variants": 1000})
    assert not (tmp_path / "many").exists()  # refused before anything is written


def test_command_line_and_overwrite(tmp_path, capsys):
    from data_prep.synth import main
    out = tmp_path / "corpus"
    args = ["--out", str(out), "--hours", "0.002", "--words", "300", "--jobs", "1",
            "--accents", "en-us,en-gb", "--sample-rate", "22050", "--seed", "3"]
    assert main(args) == 0
    assert "train:" in capsys.readouterr().out
    for split in ("train", "dev", "test"):
        datadir.validate_data_dir(out / split, phones=phones.PHONES, check_audio=True)
    with pytest.raises(ValueError, match="not empty"):
        main(args)
    assert main(args + ["--overwrite"]) == 0
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"):
        main(args + ["--overwrite"])


def test_augmentation_only_in_train(corpora):
    a, _, _ = corpora
    for split in ("train", "dev", "test"):
        synth = datadir.read_table(a / split / "utt2synth")
        warps = [float(v.split("warp=")[1].split()[0]) for v in synth.values()]
        echoes = [v.split("echo=")[1] for v in synth.values()]
        if split == "train":
            assert any(w != 1.0 for w in warps) and any(e != "0ms/0" for e in echoes)
            assert all(0.8 - 1e-3 <= w <= 1.3 + 1e-3 for w in warps)
        else:
            assert set(warps) == {1.0} and set(echoes) == {"0ms/0"}


def test_plan_without_augmentation():
    from data_prep.synth import plan_corpus
    vocab = [("one", 1.0), ("two", 0.5), ("three", 0.25)]
    plan = plan_corpus(vocab, 0.01, seed=3, augment=False)
    assert {(u.warp, u.echo_ms) for u in plan} == {(1.0, 0)}
    aug = plan_corpus(vocab, 0.01, seed=3)
    # dev and test are drawn the same way either way
    assert [u for u in plan if u.split != "train"] == [u for u in aug if u.split != "train"]
    # a warped utterance is spoken slower by its warp, so playback keeps the drawn rate
    warped = [u for u in aug if u.warp != 1.0]
    assert warped and all(130 / 1.3 - 1 <= u.rate * u.warp <= 220 + 1 for u in warped)


def test_warp_scales_duration_pitch_and_timing(tmp_path):
    from data_prep.synth import Utterance, render
    out = {}
    for warp in (1.0, 1.25):
        u = Utterance(utt=f"x-{warp}", split="train", spk="x", voice="en-us+m3",
                      text="the quick brown fox jumps over the lazy dog", rate=160, pitch=50,
                      pitch_range=50, seed=1, warp=warp)
        r = render([u], str(tmp_path), 16000)[0]
        audio, sr = sf.read(tmp_path / f"wav/train/x/x-{warp}.wav")
        f0, _, _ = librosa.pyin(audio, fmin=50, fmax=400, sr=sr)
        out[warp] = len(audio) / sr, np.nanmedian(f0), r["ctm"][-1][0]
    (d1, p1, c1), (d2, p2, c2) = out[1.0], out[1.25]
    assert d1 / d2 == pytest.approx(1.25, rel=0.01)
    assert c1 / c2 == pytest.approx(1.25, rel=0.01)      # phone times follow the audio
    assert p2 / p1 == pytest.approx(1.25, rel=0.05)


def test_echo_is_a_feedback_comb():
    from data_prep.synth import _echo
    x = np.zeros(100, np.float32)
    x[0] = 1.0
    y = _echo(x, 1000, 10, 0.5)          # 10 ms at 1 kHz = 10 samples
    expected = np.zeros(100)
    expected[::10] = 0.5 * 0.5 ** np.arange(10)
    np.testing.assert_allclose(y, expected, atol=1e-7)


def test_random_voices_in_training_only(corpora):
    from data_prep.synth import RANDOM_VARIANTS, random_variants_of
    a, _, _ = corpora
    files = sorted(os.listdir(a / "voices"))
    assert len(files) == RANDOM_VARIANTS
    expected = random_variants_of(TINY["seed"], RANDOM_VARIANTS)
    assert {f: (a / "voices" / f).read_text() for f in files} == expected
    for split in ("dev", "test"):
        assert not any("+rnd" in v for v in datadir.read_table(a / split / "utt2synth").values())
    # (the tiny corpus has too few utterances to be sure to hold one; the plan shows the share)
    from data_prep.synth import DEFAULT_SPLIT, plan_corpus
    plan = plan_corpus([("one", 1.0), ("two", 0.5)], 1.0, seed=1,
                       random_variants=RANDOM_VARIANTS)
    train = [u.voice.split("+")[1] for u in plan if u.split == "train"]
    share = sum(v.startswith("rnd") for v in train) / len(train)
    n_named = len(DEFAULT_SPLIT["train"])
    assert share == pytest.approx(RANDOM_VARIANTS / (RANDOM_VARIANTS + n_named), abs=0.05)
    assert not any(u.voice.split("+")[1].startswith("rnd") for u in plan if u.split != "train")


def _voice_settings(text):
    """(attribute, value) of every number an eSpeak voice file sets, '//'
    comments dropped: formants as 'formant freq/height/width', tone as
    'tone freq/level' pairs, the per-stress-level lists and breath pooled,
    the others by position ('pitch 0' is the base, 'pitch 1' the top)."""
    out = []
    for line in text.splitlines():
        key, *vals = line.split("//")[0].split() or [None]
        try:
            nums = [float(v) for v in vals]
        except ValueError:      # name, language, gender
            continue
        if key == "formant":
            out += [(f"formant {c}", v) for c, v in zip(("freq", "height", "width"), nums[1:])]
        elif key == "tone":
            out += [("tone freq" if i % 2 == 0 else "tone level", v) for i, v in enumerate(nums)]
        elif key in ("stressAdd", "stressAmp", "breath"):
            out += [(key, v) for v in nums]
        elif key is not None:
            out += [(f"{key} {i}", v) for i, v in enumerate(nums)]
    return out


def _gender(text):
    for line in text.splitlines():
        if line.split()[:1] == ["gender"]:
            return line.split()[1].lower()
    return None


@pytest.fixture(scope="module")
def espeak_variants():
    """eSpeak NG's own variant files, as shipped: the attributes they set,
    the smallest and largest value each gets, and the span of the base
    pitches of those marked male and of those marked female."""
    from data_prep import espeak
    vdir = os.path.join(espeak.data_path(), "voices", "!v")
    keys, values, base = set(), {}, {"male": [], "female": []}
    for name in espeak.list_variants():
        with open(os.path.join(vdir, name), encoding="utf-8", errors="replace") as f:
            text = f.read()
        keys |= {line.split()[0] for line in text.splitlines() if line.split()}
        for attr, v in _voice_settings(text):
            values.setdefault(attr, []).append(v)
        pitch = [v for a, v in _voice_settings(text) if a == "pitch 0"]
        if pitch and _gender(text) in base:
            base[_gender(text)].append(pitch[0])
    spans = {a: (min(v), max(v)) for a, v in values.items()}
    return keys, spans, {g: (min(v), max(v)) for g, v in base.items()}


def test_random_variant_text():
    from data_prep.synth import random_variant
    text = random_variant(np.random.default_rng(5), "rnd005")
    lines = [line.split() for line in text.splitlines()]
    assert lines[0] == ["language", "variant"]   # what eSpeak needs first
    assert ["name", "rnd005"] in lines
    assert sorted(int(v[1]) for v in lines if v[0] == "formant") == list(range(9))
    (lo, hi), = [map(int, v[1:]) for v in lines if v[0] == "pitch"]
    assert lo < hi                                  # eSpeak's 'pitch <base> <top>'
    assert random_variant(np.random.default_rng(5), "rnd005") == text
    assert random_variant(np.random.default_rng(6), "rnd005") != text


def test_random_voices_stay_within_espeaks_own(espeak_variants):
    """The random voices lie 'within the span of eSpeak's own variants'
    (data_prep/synth.py): every attribute they set is one eSpeak's shipped
    variant files use, every value lies between the smallest and largest
    those files give it, and the base pitch is on the side of its gender
    that eSpeak's own male and female voices are.  Both genders occur, all
    voices differ, and the attributes documented as occasional are set in
    some voices only."""
    from data_prep.synth import random_variant
    keys, spans, base = espeak_variants
    n, texts, seen = 300, set(), {}
    for i in range(n):
        text = random_variant(np.random.default_rng([9, i]), "rnd")
        texts.add(text)
        for key in {line.split()[0] for line in text.splitlines()}:
            assert key in keys
            seen[key] = seen.get(key, 0) + 1
        for attr, v in _voice_settings(text):
            if attr != "pitch 1":   # the top pitch: test_random_voices_top_pitch
                assert spans[attr][0] <= v <= spans[attr][1], (attr, v, spans[attr])
        gender = _gender(text)
        seen[gender] = seen.get(gender, 0) + 1
        pitch = dict(_voice_settings(text))["pitch 0"]
        # a male voice no higher than eSpeak's highest male one, a female
        # voice no lower than its lowest female one (by their base pitch)
        assert (pitch <= base["male"][1]) if gender == "male" else (pitch >= base["female"][0])
    assert len(texts) == n
    assert seen["male"] + seen["female"] == n and min(seen["male"], seen["female"]) > 0
    for key in ("tone", "breath", "stressAdd", "stressAmp", "echo"):
        assert 0 < seen[key] < n, key


def test_random_voices_top_pitch(espeak_variants):
    """The top pitch stays within eSpeak's own span, except that a male
    voice's may reach down to 72 Hz (60 Hz x 1.2), as data_prep/synth.py
    documents (eSpeak's lowest is 83 Hz, 'announcer')."""
    from data_prep.synth import random_variant
    _, spans, _ = espeak_variants
    lo, hi = spans["pitch 1"]
    assert lo > 72
    for i in range(1000):
        top = dict(_voice_settings(random_variant(np.random.default_rng([9, i]), "rnd")))
        assert 72 <= top["pitch 1"] <= hi, (i, top["pitch 0"], top["pitch 1"], (lo, hi))


def test_random_voices_are_spoken_at_their_pitch(engine, tmp_path):
    """eSpeak reads a random voice file: speech in a female random voice has
    its median F0 between the base and top pitch its file gives (the
    default voice speaks near 100 Hz)."""
    from data_prep import espeak
    from data_prep.synth import random_variants_of
    variants = random_variants_of(0, 8)
    female = [name for name, text in variants.items() if _gender(text) == "female"][:3]
    assert female
    path = espeak.data_with_variants(variants, str(tmp_path))
    espeak.use_data_path(path)
    try:
        for name in female:
            lo, hi = [v for a, v in _voice_settings(variants[name]) if a.startswith("pitch")]
            syn = engine.synthesize("this is a test of the voice", f"en-us+{name}", pitch=50)
            f0, _, _ = librosa.pyin(syn.audio, fmin=50, fmax=500, sr=syn.sample_rate)
            assert lo <= np.nanmedian(f0) <= hi * 1.05, (name, np.nanmedian(f0), lo, hi)
    finally:
        espeak.use_data_path(None)


def test_voice_list_has_room_for_the_random_voices(engine, tmp_path):
    """eSpeak's voice list is short: past it, languages drop out of it and
    can no longer be selected.  The private data directory keeps only the
    named variants, so the random voices fit with every language listed."""
    from data_prep import espeak
    from data_prep.synth import DEFAULT_SPLIT, RANDOM_VARIANTS, random_variants_of
    languages = engine.list_languages()
    named = {v for vs in DEFAULT_SPLIT.values() for v in vs}
    room = espeak.room_for_variants(named)
    assert room >= RANDOM_VARIANTS
    with pytest.raises(ValueError, match="at most 348 voices"):
        espeak.data_with_variants(random_variants_of(0, room + 1), str(tmp_path / "a"),
                                  keep=named)
    with pytest.raises(ValueError, match="keep"):
        espeak.data_with_variants({}, str(tmp_path / "b"), keep={"nope"})
    extra = random_variants_of(0, room)
    path = espeak.data_with_variants(extra, str(tmp_path / "c"), keep=named)
    espeak.use_data_path(path)
    try:
        assert set(espeak.list_variants()) == named | set(extra)
        assert engine.list_languages() == languages  # every language still selectable
    finally:
        espeak.use_data_path(None)


def test_extra_variants_are_spoken(engine, tmp_path):
    """A variant file outside eSpeak's data is used through a private data
    directory: its pitch is what the file says."""
    from data_prep import espeak
    shipped = espeak.list_variants()
    high = "language variant\nname high\npitch 260 300\n"
    low = "language variant\nname low\npitch 70 80\n"
    path = espeak.data_with_variants({"xhigh": high, "xlow": low}, str(tmp_path))
    with pytest.raises(ValueError, match="already used"):
        espeak.data_with_variants({"m3": high}, str(tmp_path / "again"))
    espeak.use_data_path(path)
    try:
        assert set(espeak.list_variants()) == set(shipped) | {"xhigh", "xlow"}
        f0 = {}
        for v in ("xhigh", "xlow"):
            syn = engine.synthesize("this is a test of the voice", f"en-us+{v}", pitch=50)
            f, _, _ = librosa.pyin(syn.audio, fmin=50, fmax=500, sr=syn.sample_rate)
            f0[v] = np.nanmedian(f)
    finally:
        espeak.use_data_path(None)
    assert espeak.list_variants() == shipped
    assert f0["xhigh"] > 200 > 100 > f0["xlow"]
