"""Feature extraction and normalisation."""
import numpy as np
import pytest
import soundfile as sf

from ctcseq.features import (AudioError, FeatureConfig, Normalizer, add_deltas,
                             compute_features, load_audio)


def tone(freq, seconds=0.5, sr=16000, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_default_is_graves_2013_fbank_123():
    cfg = FeatureConfig()
    f = compute_features(tone(440), cfg)
    assert cfg.dim == 123 and f.shape == (1 + (8000 - 400) // 160, 123)
    assert f.dtype == np.float32 and np.all(np.isfinite(f))


def test_mfcc_graves_2006_26():
    cfg = FeatureConfig(kind="mfcc", deltas=1)
    f = compute_features(tone(440), cfg)
    assert cfg.dim == 26 and f.shape[1] == 26


def test_tone_peaks_in_the_right_mel_channel():
    import librosa
    cfg = FeatureConfig(deltas=0, energy=False)
    for freq in (300.0, 1000.0, 3000.0):
        f = compute_features(tone(freq), cfg)
        centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=8000, htk=True)[1:-1]
        peak = int(np.argmax(f.mean(0)))
        assert abs(centres[peak] - freq) < 0.15 * freq + 60


def test_energy_is_log_frame_energy():
    y = tone(500)
    cfg = FeatureConfig(deltas=0)
    f = compute_features(y, cfg)
    frame = y[160 * 3: 160 * 3 + 400].astype(np.float64)
    np.testing.assert_allclose(f[3, -1], np.log(np.sum(frame ** 2)), rtol=1e-5)
    # mfcc with energy: c0 replaced by the same value
    m = compute_features(y, FeatureConfig(kind="mfcc", deltas=0))
    np.testing.assert_allclose(m[3, 0], f[3, -1], rtol=1e-6)


def test_deltas_of_a_ramp_are_its_slope():
    x = np.arange(20, dtype=float)[:, None] * np.array([[1.0, -2.0]])
    d = add_deltas(x, order=2, window=2)
    assert d.shape == (20, 6)
    np.testing.assert_allclose(d[2:-2, 2:4], [[1.0, -2.0]] * 16)
    np.testing.assert_allclose(d[4:-4, 4:6], 0.0, atol=1e-12)


def test_silence_is_finite():
    f = compute_features(np.zeros(4000, np.float32))
    assert np.all(np.isfinite(f))


def test_audio_formats_rates_and_channels(tmp_path):
    y = tone(700, sr=44100)
    stereo = np.stack([y, 0.5 * y], axis=1)
    for ext in ("wav", "flac", "ogg"):
        p = tmp_path / f"a.{ext}"
        sf.write(p, stereo, 44100)
        a = load_audio(p, 16000)
        assert a.dtype == np.float32 and abs(a.shape[0] - 8000) <= 2
        # channels averaged: amplitude 0.75 * 0.5
        assert 0.3 < np.max(np.abs(a)) < 0.45


def test_bad_audio_gives_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="missing.wav: cannot read audio"):
        load_audio(tmp_path / "missing.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match="junk.wav: cannot read audio"):
        load_audio(junk, 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: empty audio"):
        load_audio(empty, 16000)
    with pytest.raises(AudioError, match="short.wav: too short"):
        compute_features(np.zeros(100), name="short.wav")
    with pytest.raises(AudioError, match="NaN"):
        compute_features(np.full(1000, np.nan))


@pytest.mark.parametrize("kw,match", [
    (dict(kind="plp"), "kind"), (dict(deltas=3), "deltas"), (dict(hop_ms=30.0), "hop_ms"),
    (dict(fmax=9000.0), "fmax"), (dict(kind="mfcc", n_mfcc=50), "n_mfcc"),
    (dict(sample_rate=0), "sample_rate"),
])
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        FeatureConfig(**kw)


def test_config_round_trip():
    cfg = FeatureConfig(kind="mfcc", n_mels=23, deltas=1)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown feature settings"):
        FeatureConfig.from_dict({**cfg.to_dict(), "nfft": 512})


def test_normalizer_global_and_per_speaker(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(5.0, 2.0, size=(300, 3))
    b = rng.normal(-1.0, 0.5, size=(200, 3))
    glob = Normalizer().fit([(a, "spk1"), (b, "spk2")])
    both = glob(np.concatenate([a, b]))
    np.testing.assert_allclose(both.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(both.std(0), 1.0, atol=1e-4)
    per = Normalizer(per_speaker=True).fit([(a, "spk1"), (b, "spk2")])
    np.testing.assert_allclose(per(b, "spk2").mean(0), 0.0, atol=1e-5)
    # an unseen speaker without statistics is normalised as its own speaker
    np.testing.assert_allclose(per(b, "unseen").mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(per(b, "unseen").std(0), 1.0, atol=1e-4)
    # ... and adapt() gives a new speaker statistics from all its utterances
    c1, c2 = rng.normal(3.0, 1.0, size=(50, 3)), rng.normal(1.0, 1.0, size=(50, 3))
    assert per.adapt([(c1, "new"), (c2, "new"), (b, "spk2")]) == ["new"]
    np.testing.assert_allclose(np.concatenate([per(c1, "new"), per(c2, "new")]).mean(0), 0.0,
                               atol=1e-5)
    assert per(c1, "new").mean() > 0.5 > -0.5 > per(c2, "new").mean()
    np.testing.assert_allclose(per(b, "spk2").mean(0), 0.0, atol=1e-5)  # kept its own
    path = tmp_path / "cmvn.json"
    per.save(path)
    again = Normalizer.load(path)
    assert again.mode == "speaker"
    np.testing.assert_array_equal(again(a, "spk1"), per(a, "spk1"))
    np.testing.assert_array_equal(again(c1, "new"), per(c1, "new"))
    assert glob.adapt([(c1, "new")]) == []
    with pytest.raises(ValueError, match=r"shape \(n_frames, 3\)"):
        glob(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="no statistics"):
        Normalizer()(a)
    with pytest.raises(ValueError, match="mode must be one of"):
        Normalizer("cepstral")


def test_normalizer_per_utterance():
    rng = np.random.default_rng(1)
    a = rng.normal(5.0, 2.0, size=(300, 3))
    b = rng.normal(-1.0, 0.5, size=(200, 3)) + np.array([0.0, 10.0, -3.0])  # a "channel"
    utt = Normalizer("utterance").fit([(a, None), (b, None)])
    for x in (a, b):
        np.testing.assert_allclose(utt(x).mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(utt(x).std(0), 1.0, atol=1e-4)
    # a fixed offset of every frame (a channel) is removed entirely
    np.testing.assert_allclose(utt(b + 7.0), utt(b), atol=1e-5)
    # a constant input stays finite: the deviation is floored by the global one
    flat = utt(np.ones((3, 3)))
    assert np.isfinite(flat).all() and np.abs(flat).max() == 0
    assert Normalizer.from_dict(utt.to_dict()).mode == "utterance"
    # model files written before the modes existed
    old = {"per_speaker": True, "mean": [0.0] * 3, "std": [1.0] * 3, "speakers": {}}
    assert Normalizer.from_dict(old).mode == "speaker"


# --- corpus extraction -----------------------------------------------------

def _corpus(tmp_path):
    wavs = {}
    for i in range(5):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, tone(300 + 100 * i, seconds=0.3, sr=22050), 22050)
        wavs[f"spk_u{i}"] = str(p)
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    wavs["spk_bad"] = str(tmp_path / "bad.wav")
    sf.write(tmp_path / "short.wav", np.zeros(50, np.float32), 16000)
    wavs["spk_short"] = str(tmp_path / "short.wav")
    return wavs


@pytest.mark.parametrize("jobs", [1, 2])
def test_extract_corpus_parallel_resumable_with_failures(tmp_path, jobs, capsys):
    from ctcseq.extract import FeatureStore, extract_corpus
    wavs = _corpus(tmp_path)
    out = tmp_path / "feats"
    res = extract_corpus(wavs, str(out), jobs=jobs)
    assert res["extracted"] == 5 and res["skipped"] == 0
    assert set(res["failed"]) == {"spk_bad", "spk_short"}
    assert "too short" in res["failed"]["spk_short"]
    assert "spk_bad" in capsys.readouterr().err  # failures listed at the end
    store = FeatureStore(str(out))
    assert sorted(store.keys()) == [f"spk_u{i}" for i in range(5)]
    direct = compute_features(load_audio(wavs["spk_u2"], 16000))
    np.testing.assert_array_equal(store["spk_u2"], direct)
    # a killed run leaves only whole files: delete one and rerun -> only it is redone
    os_remove = (out / "npy" / "spk_u3.npy")
    os_remove.unlink()
    mtime = (out / "npy" / "spk_u1.npy").stat().st_mtime_ns
    res2 = extract_corpus(wavs, str(out), jobs=jobs)
    assert res2["extracted"] == 1 and res2["skipped"] == 4
    assert (out / "npy" / "spk_u1.npy").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="other settings"):
        extract_corpus(wavs, str(out), FeatureConfig(kind="mfcc"))


def test_feature_store_errors(tmp_path):
    from ctcseq.extract import FeatureStore
    with pytest.raises(ValueError, match="not a feature directory"):
        FeatureStore(str(tmp_path))
    (tmp_path / "feats.json").write_text("{truncated")
    with pytest.raises(ValueError, match="corrupt"):
        FeatureStore(str(tmp_path))


def test_extract_corpus_compiles_librosa_before_its_workers(tmp_path, monkeypatch):
    """librosa compiles Numba gufuncs into a shared cache as it is imported;
    two workers doing it at once can corrupt that cache (numba #10128), so
    the parent imports those modules before the pool starts."""
    import sys

    import ctcseq.extract as ex
    events = []
    real_load = ex._load_librosa_kernels

    def load():
        real_load()
        events.append(("load", "librosa.util.utils" in sys.modules
                       and "librosa.core.audio" in sys.modules))

    class SerialPool:
        def __init__(self, *args, **kwargs):
            events.append(("pool", None))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, items, chunksize=1):
            return map(fn, items)

    monkeypatch.setattr(ex, "_load_librosa_kernels", load)
    monkeypatch.setattr(ex, "ProcessPoolExecutor", SerialPool)
    res = ex.extract_corpus(_corpus(tmp_path), str(tmp_path / "feats"), jobs=2, progress=False)
    assert res["extracted"] == 5
    assert events == [("load", True), ("pool", None)]
