"""ctcseq.segment: audio read by spans, the energy voice activity detector,
and pieces of bounded length (synthetic signals: noise bursts, tones, silences)."""
import numpy as np
import pytest
import soundfile as sf

from ctcseq.errors import DataError, UserError
from ctcseq.features import load_audio
from ctcseq.segment import AudioSource, Piece, frame_energies, scan

SR = 8000
FRAME_TOL = 0.04   # s: a detected edge may be off by a frame (25 ms) and a hop


def bursts(layout, sr=SR, amp=0.3, seed=0):
    """Concatenate ('s', seconds) silences and ('n', seconds) noise bursts,
    speech-like: modulated at 4 Hz over 20 dB; returns the signal and the
    bursts' (start, end) times."""
    rng = np.random.default_rng(seed)
    parts, spans, t = [], [], 0
    for kind, sec in layout:
        n = int(round(sec * sr))
        envelope = amp * (0.55 - 0.45 * np.cos(2 * np.pi * 4 * np.arange(n) / sr))
        parts.append(envelope * rng.standard_normal(n) if kind == "n" else np.zeros(n))
        if kind == "n":
            spans.append((t / sr, (t + n) / sr))
        t += n
    return np.concatenate(parts).astype(np.float32), spans


def check_keep_ranges(pieces, duration):
    for p in pieces:
        assert 0 <= p.start <= p.keep_start < p.keep_end <= p.end <= duration
    for p, q in zip(pieces, pieces[1:]):
        assert p.keep_end <= q.keep_start            # never overlap
        if q.start < p.end:                           # spans overlap: meet in the middle
            assert q.keep_start == p.keep_end == pytest.approx((q.start + p.end) / 2)


# -- detector -------------------------------------------------------------------------

def test_frame_energies_match_a_direct_computation_across_blocks():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3 * SR + 123, 2)) * np.linspace(0.01, 1, 3 * SR + 123)[:, None]
         + 0.5).astype(np.float32)    # a DC offset too
    db, hop, win, peak = frame_energies(AudioSource(x, SR), block_seconds=0.37)
    assert (hop, win) == (80, 200) and peak == np.abs(x).max()
    m = x.astype(np.float64).mean(axis=1)
    n_full = 1 + (len(m) - win) // hop
    ref = [np.var(m[i * hop:i * hop + win]) for i in range(n_full)]
    ref.append(np.var(m[(n_full - 1) * hop + win:]))   # the samples left over
    np.testing.assert_allclose(db, 10 * np.log10(ref), atol=1e-3)


def test_pieces_at_pauses_padded_by_margin():
    x, spans = bursts([("s", 0.5), ("n", 1.0), ("s", 0.6), ("n", 0.8), ("s", 0.15),
                       ("n", 0.5), ("s", 1.0)])
    audio = AudioSource(x, SR)
    r = scan(audio, min_pause=0.3, margin=0.2)
    # the 0.15 s pause is bridged, the 0.6 s one cuts
    assert len(r.pieces) == 2
    expect = [(spans[0][0] - 0.2, spans[0][1] + 0.2), (spans[1][0] - 0.2, spans[2][1] + 0.2)]
    for p, (s, e) in zip(r.pieces, expect):
        assert p.start == pytest.approx(s, abs=FRAME_TOL)
        assert p.end == pytest.approx(e, abs=FRAME_TOL)
    assert r.speech_seconds == pytest.approx(spans[2][1] - spans[1][0] + 1.0, abs=3 * FRAME_TOL)
    check_keep_ranges(r.pieces, audio.duration)
    # margins clip to the recording
    r = scan(AudioSource(x[int(0.45 * SR):int(1.55 * SR)], SR), margin=0.2)
    assert len(r.pieces) == 1 and r.pieces[0].start == 0 and r.pieces[0].end == 1.1


def test_margins_before_and_after_the_speech():
    x, spans = bursts([("s", 0.8), ("n", 1.0), ("s", 1.2), ("n", 0.7), ("s", 0.9)])
    audio = AudioSource(x, SR)
    r = scan(audio, margin=(0.1, 0.35))
    assert len(r.pieces) == 2
    for p, (s, e) in zip(r.pieces, spans):
        assert p.start == pytest.approx(s - 0.1, abs=FRAME_TOL)
        assert p.end == pytest.approx(e + 0.35, abs=FRAME_TOL)
    # one number pads both sides; the default pads only after the speech
    assert scan(audio, margin=0.25).pieces == scan(audio, margin=(0.25, 0.25)).pieces
    assert scan(audio).pieces == scan(audio, margin=(0.0, 0.3)).pieces
    # a trailing margin longer than the pause: the spans overlap, keep ranges meet
    r = scan(audio, margin=(0.0, 1.5))
    assert r.pieces[0].end > r.pieces[1].start
    check_keep_ranges(r.pieces, audio.duration)
    for bad in (-0.1, (0.1,), (0.1, -0.2), (0.1, 0.2, 0.3), "0.2", (float("nan"), 0.1), True):
        with pytest.raises(UserError, match="margin"):
            scan(audio, margin=bad)


def test_min_pause_decides_which_pauses_cut():
    x, _ = bursts([("s", 0.3), ("n", 0.5), ("s", 0.25), ("n", 0.5), ("s", 0.3)])
    assert len(scan(AudioSource(x, SR), min_pause=0.3).pieces) == 1
    assert len(scan(AudioSource(x, SR), min_pause=0.2).pieces) == 2


@pytest.mark.parametrize("signal", ["digital silence", "dc 1e30", "dc -0.7", "faint noise",
                                    "steady noise"])
def test_no_speech_in_silence_constants_and_noise(signal):
    rng = np.random.default_rng(2)
    x = {"digital silence": np.zeros(SR),
         "dc 1e30": np.full(SR, 1e30, np.float32),
         "dc -0.7": np.full(SR, -0.7),
         "faint noise": 10 ** (-70 / 20) * rng.standard_normal(SR),     # -70 dBFS
         "steady noise": 0.03 * rng.standard_normal(2 * SR)}[signal]    # the noise floor
    r = scan(AudioSource(x, SR))
    assert r.pieces == [] and r.speech_seconds == 0
    assert r.peak == pytest.approx(np.abs(x).max())


def test_a_file_of_constant_1e30_is_no_speech(tmp_path):
    path = tmp_path / "dc.wav"
    sf.write(path, np.full((SR, 2), 1e30, np.float32), SR, subtype="FLOAT")
    r = scan(AudioSource(path))
    assert r.pieces == [] and r.peak == pytest.approx(1e30)


def test_quiet_speech_over_its_noise_floor_is_found():
    # bursts at -40 dBFS (rms) in noise 20 dB lower: above the absolute floor
    x, spans = bursts([("s", 0.5), ("n", 0.6), ("s", 0.5)], amp=0.01)
    x = x + 0.001 * np.random.default_rng(3).standard_normal(len(x)).astype(np.float32)
    r = scan(AudioSource(x, SR), margin=0)
    assert len(r.pieces) == 1
    assert r.pieces[0].start == pytest.approx(spans[0][0], abs=FRAME_TOL)
    assert r.pieces[0].end == pytest.approx(spans[0][1], abs=FRAME_TOL)


def test_peak_reports_samples_outside_full_scale():
    x, _ = bursts([("s", 0.3), ("n", 0.5), ("s", 0.3)])
    x[1000, ] = 3.5
    assert scan(AudioSource(np.stack([x, -x], 1), SR)).peak == 3.5


def test_a_long_stretch_is_cut_into_overlapping_windows():
    # 45 s of modulated noise without a pause, between 1 s of silence on each side
    x, spans = bursts([("s", 1.0), ("n", 45.0), ("s", 1.0)])
    a, b = spans[0]
    audio = AudioSource(x, SR)
    r = scan(audio, max_seconds=10.0, overlap_seconds=1.4, margin=0.2)
    ps = r.pieces
    # windows of (10 + 1.4) / 2 to 10 s: 6 to 9 of them
    assert 6 <= len(ps) <= 9
    assert ps[0].start == pytest.approx(a - 0.2, abs=FRAME_TOL)
    assert ps[-1].end == pytest.approx(b + 0.2, abs=FRAME_TOL)
    for p in ps:
        assert p.end - p.start <= 10.0 + 2 * 0.2 + 1e-9
    for p in ps[:-1]:
        assert p.end - p.start >= 5.7 + 2 * 0.2 - 1e-9
    for p, q in zip(ps, ps[1:]):
        assert p.end - q.start == pytest.approx(1.4 + 2 * 0.2)   # the overlap, with margins
        # keep ranges meet at a quiet point: a minimum of the 4 Hz envelope
        phase = ((p.keep_end - a) * 4) % 1
        assert min(phase, 1 - phase) < 0.15, p
    check_keep_ranges(ps, audio.duration)
    # the keep ranges tile the stretch: contiguous from its first to its last piece
    assert all(p.keep_end == q.keep_start for p, q in zip(ps, ps[1:]))
    assert ps[0].keep_start <= a and ps[-1].keep_end >= b


def test_a_long_stretch_with_short_pauses_is_split_at_the_longest():
    # 3 s bursts separated by pauses shorter than min_pause; the 0.25 s ones are the cuts
    layout = [("s", 0.5)]
    for gap in [0.1, 0.25, 0.1, 0.1, 0.25, 0.1]:
        layout += [("n", 3.0), ("s", gap)]
    layout += [("n", 3.0), ("s", 0.5)]
    x, spans = bursts(layout)
    r = scan(AudioSource(x, SR), max_seconds=10.0, min_pause=0.3, margin=0.2)
    assert len(r.pieces) == 3
    cuts = [(spans[1][1], spans[2][0]), (spans[4][1], spans[5][0])]
    for p, q, (g0, g1) in zip(r.pieces, r.pieces[1:], cuts):
        assert p.keep_end == q.keep_start
        assert g0 - FRAME_TOL < p.keep_end < g1 + FRAME_TOL
    for p in r.pieces:
        assert p.end - p.start <= 10.4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_ranges_own_every_instant_of_speech_once(seed):
    # random bursts and pauses around min_pause, with short max_seconds: splits,
    # windows and margins that meet, all at once
    rng = np.random.default_rng(seed)
    layout = [("s", rng.uniform(0, 0.3))]
    for _ in range(12):
        layout += [("n", rng.uniform(0.1, 4.0)), ("s", rng.choice([0.05, 0.2, 0.35, 1.0]))]
    x, spans = bursts(layout, seed=seed)
    audio = AudioSource(x, SR)
    r = scan(audio, max_seconds=2.0, overlap_seconds=0.5, min_pause=0.3, margin=0.2)
    check_keep_ranges(r.pieces, audio.duration)
    for p in r.pieces:
        assert p.end - p.start <= 2.0 + 2 * 0.2 + 1e-9
    for a, b in spans:
        for t in np.arange(a + FRAME_TOL, b - FRAME_TOL, 0.01):
            owners = [p for p in r.pieces if p.keep_start <= t < p.keep_end]
            assert len(owners) == 1, (t, owners)
            assert owners[0].start <= t < owners[0].end


def test_scan_options_are_checked():
    audio = AudioSource(np.zeros(100), SR)
    with pytest.raises(UserError, match="overlap_seconds"):
        scan(audio, max_seconds=2, overlap_seconds=2)
    with pytest.raises(UserError, match="frame_mss"):
        scan(audio, frame_mss=20)


# -- errors ---------------------------------------------------------------------------

def test_nan_and_inf_name_the_file_and_the_time(tmp_path):
    x, _ = bursts([("n", 3.0)])
    x[int(2.5 * SR)] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan\.wav: NaN sample at 2\.500 s"):
        scan(AudioSource(path))
    with pytest.raises(DataError, match=r"NaN sample at 2\.500 s"):
        AudioSource(path).read(2.0, 3.0)
    x[int(2.5 * SR)] = 0
    x[int(0.25 * SR)] = -np.inf
    with pytest.raises(DataError, match=r"<array>: infinite sample at 0\.250 s"):
        scan(AudioSource(x, SR))


def test_missing_unreadable_and_empty_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.wav: no such file"):
        AudioSource(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio at all\n")
    with pytest.raises(DataError, match=r"bad\.wav: cannot read audio"):
        AudioSource(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(DataError, match=r"empty\.wav: empty audio"):
        AudioSource(empty)
    with pytest.raises(DataError, match="empty audio"):
        AudioSource(np.zeros((0, 2)), SR)
    with pytest.raises(UserError, match="sample_rate"):
        AudioSource(np.zeros(10))


# -- reading --------------------------------------------------------------------------

def test_header_only_and_attributes(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros((22050, 2), np.float32), 44100)
    a = AudioSource(path)
    assert (a.name, a.sample_rate, a.frames, a.channels, a.duration) == \
        (str(path), 44100, 22050, 2, 0.5)
    assert AudioSource(np.zeros(800), 8000, name="x").name == "x"


@pytest.mark.parametrize("rate,subtype", [(44100, "PCM_16"), (22050, "FLOAT"), (16000, "PCM_24")])
def test_read_span_equals_the_whole_file_read_at_once(tmp_path, rate, subtype):
    rng = np.random.default_rng(4)
    n = int(3.3 * rate)
    t = np.arange(n) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n),
                  0.2 * np.sin(2 * np.pi * 1234 * t)], 1)
    path = tmp_path / "st.wav"
    sf.write(path, x, rate, subtype=subtype)
    whole = load_audio(path, 16000)      # today's loader: mono mix, then resample
    a = AudioSource(path)
    assert len(a.read()) == len(whole)
    np.testing.assert_allclose(a.read(), whole, atol=1e-6)
    for start, end in [(0.5, 1.25), (1.0003, 2.7), (2.9, None)]:
        y = a.read(start, end)
        j0 = round(start * 16000)
        j1 = len(whole) if end is None else round(end * 16000)
        assert y.dtype == np.float32 and len(y) == j1 - j0
        np.testing.assert_allclose(y, whole[j0:j1], atol=1e-6)
    assert len(a.read(4.0)) == 0


def test_integer_and_multichannel_arrays_read_like_files(tmp_path):
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal((4000, 3)) * 3000).astype(np.int16)
    path = tmp_path / "i.wav"
    sf.write(path, pcm, SR, subtype="PCM_16")
    from_file = AudioSource(path).read(0.1, 0.4, sample_rate=SR)
    from_array = AudioSource(pcm, SR).read(0.1, 0.4, sample_rate=SR)
    np.testing.assert_array_equal(from_array, from_file)
    np.testing.assert_allclose(from_array, pcm[800:3200].mean(axis=1) / 32768, rtol=1e-6)


def test_read_arguments_are_checked():
    a = AudioSource(np.zeros(800), SR)
    with pytest.raises(UserError, match="start"):
        a.read(-1.0)
    with pytest.raises(UserError, match="end"):
        a.read(0.5, 0.2)
    with pytest.raises(UserError, match="sample_rate"):
        a.read(sample_rate=0)


def test_piece_is_a_named_tuple():
    p = Piece(0.0, 1.0, 0.0, 1.0)
    assert p._fields == ("start", "end", "keep_start", "keep_end")
