"""Acoustic features: log-mel filterbanks and MFCCs, with deltas.

Framing follows Kaldi/HTK: frames of ``win_ms`` every ``hop_ms`` with no
padding at the edges (a signal of n samples gives 1 + (n - win) // hop
frames), pre-emphasis, a Hamming window, the power spectrum, a mel filterbank
and the natural log.  Energy is the log of the frame's raw sample energy.
Deltas are HTK regression coefficients over +-``delta_window`` frames with
the edge frames repeated.

Graves et al. (2013): 40 filterbank channels + energy, with deltas and
delta-deltas = 123 values per frame (the default here).  Graves et al. (2006):
12 MFCCs + energy with deltas = 26 (``FeatureConfig(kind="mfcc",
deltas=1)``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os

import numpy as np

__all__ = ["FeatureConfig", "AudioError", "load_audio", "compute_features",
           "add_deltas", "Normalizer"]

_LOG_FLOOR = 1e-10  # floor inside the logs, so silence gives finite features


class AudioError(ValueError):
    """An audio file is unreadable, empty or too short; the message names it."""


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How to turn audio into feature frames.

    Attributes
    ----------
    kind : {"fbank", "mfcc"}
        Log-mel filterbank or mel-frequency cepstral coefficients.
    sample_rate : int
        Audio is resampled to this rate (Hz) before analysis.
    n_mels : int
        Mel filterbank channels (the fbank size; MFCCs are computed from it).
    n_mfcc : int
        Cepstral coefficients kept, c0 included (kind="mfcc" only).
    energy : bool
        fbank: append the log frame energy.  mfcc: replace c0 by it.
    deltas : int
        0 static only, 1 add deltas, 2 add deltas and delta-deltas.
    win_ms, hop_ms : float
        Frame length and shift in milliseconds.
    fmin, fmax : float
        Mel filterbank edges in Hz; fmax = 0 means the Nyquist frequency.
    preemphasis : float
        Coefficient of the pre-emphasis filter y[n] - p y[n-1] (0 disables).
    delta_window : int
        Deltas regress over +-delta_window frames.
    """

    kind: str = "fbank"
    sample_rate: int = 16000
    n_mels: int = 40
    n_mfcc: int = 13
    energy: bool = True
    deltas: int = 2
    win_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 20.0
    fmax: float = 0.0
    preemphasis: float = 0.97
    delta_window: int = 2

    def __post_init__(self):
        if self.kind not in ("fbank", "mfcc"):
            raise ValueError(f"kind must be 'fbank' or 'mfcc', got {self.kind!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {self.n_mels}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"n_mfcc must be in [1, n_mels = {self.n_mels}], got {self.n_mfcc}")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if not 0 < self.hop_ms <= self.win_ms:
            raise ValueError(f"need 0 < hop_ms <= win_ms, got hop_ms={self.hop_ms}, "
                             f"win_ms={self.win_ms}")
        nyquist = self.sample_rate / 2
        fmax = self.fmax or nyquist
        if not 0 <= self.fmin < fmax <= nyquist:
            raise ValueError(f"need 0 <= fmin < fmax <= {nyquist} Hz, got fmin={self.fmin}, "
                             f"fmax={self.fmax}")
        if not 0 <= self.preemphasis < 1:
            raise ValueError(f"preemphasis must be in [0, 1), got {self.preemphasis}")
        if self.delta_window < 1:
            raise ValueError(f"delta_window must be >= 1, got {self.delta_window}")

    @property
    def win_length(self) -> int:
        """Frame length in samples."""
        return int(round(self.win_ms * self.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return int(round(self.hop_ms * self.sample_rate / 1000))

    @property
    def static_dim(self) -> int:
        if self.kind == "fbank":
            return self.n_mels + int(self.energy)
        return self.n_mfcc

    @property
    def dim(self) -> int:
        """Values per frame."""
        return self.static_dim * (1 + self.deltas)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown feature settings: {sorted(unknown)}")
        return cls(**d)


def load_audio(path, sample_rate):
    """Read any file soundfile can (wav, flac, ogg, ...) as mono float32.

    Parameters
    ----------
    path : str or path-like
    sample_rate : int
        Target rate in Hz; other rates are resampled (librosa, soxr).

    Returns
    -------
    ndarray, shape (n_samples,), float32
        Channels averaged.

    Raises
    ------
    AudioError
        Missing, unreadable or empty file.
    """
    import soundfile as sf

    try:
        y, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types; all mean "cannot read"
        raise AudioError(f"{path}: cannot read audio ({e})") from None
    if y.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    y = y.mean(axis=1)
    if sr != sample_rate:
        import librosa
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _mel_filters(cfg: FeatureConfig, n_fft: int):
    import librosa
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=n_fft, n_mels=cfg.n_mels,
                               fmin=cfg.fmin, fmax=cfg.fmax or cfg.sample_rate / 2,
                               htk=True, norm=None).astype(np.float64)


def compute_features(audio, cfg: FeatureConfig = FeatureConfig(), name="audio"):
    """Feature frames of one signal.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,)
        Mono samples at ``cfg.sample_rate``.
    cfg : FeatureConfig
    name : str
        Used in error messages (e.g. the file name).

    Returns
    -------
    ndarray, shape (n_frames, cfg.dim), float32
        n_frames = 1 + (n_samples - win_length) // hop_length.

    Raises
    ------
    AudioError
        Shorter than one frame, or not finite.
    """
    y = np.asarray(audio, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono samples), got shape {y.shape}")
    win, hop = cfg.win_length, cfg.hop_length
    if y.shape[0] < win:
        raise AudioError(f"{name}: too short ({y.shape[0]} samples, "
                         f"{1000 * y.shape[0] / cfg.sample_rate:.1f} ms; one frame needs {win})")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{name}: audio holds NaN or infinite samples")
    n_frames = 1 + (y.shape[0] - win) // hop
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n_frames, win), strides=(hop * y.strides[0], y.strides[0]))
    log_energy = np.log(np.maximum(np.einsum("ij,ij->i", frames, frames), _LOG_FLOOR))
    x = frames - frames.mean(axis=1, keepdims=True)  # remove DC per frame
    if cfg.preemphasis:
        x = np.concatenate([x[:, :1] * (1 - cfg.preemphasis),
                            x[:, 1:] - cfg.preemphasis * x[:, :-1]], axis=1)
    x = x * np.hamming(win)
    n_fft = 1 << (win - 1).bit_length()
    power = np.abs(np.fft.rfft(x, n=n_fft, axis=1)) ** 2
    log_mel = np.log(np.maximum(power @ _mel_filters(cfg, n_fft).T, _LOG_FLOOR))
    if cfg.kind == "fbank":
        static = np.concatenate([log_mel, log_energy[:, None]], axis=1) if cfg.energy else log_mel
    else:
        from scipy.fft import dct
        static = dct(log_mel, type=2, norm="ortho", axis=1)[:, : cfg.n_mfcc]
        if cfg.energy:
            static[:, 0] = log_energy
    return add_deltas(static, cfg.deltas, cfg.delta_window).astype(np.float32)


def add_deltas(static, order=2, window=2):
    """Append HTK regression deltas (and delta-deltas) along time.

    Parameters
    ----------
    static : ndarray, shape (n_frames, d)
    order : {0, 1, 2}
    window : int
        d_t = sum_{k=1..window} k (x_{t+k} - x_{t-k}) / (2 sum k^2), edges
        repeated.

    Returns
    -------
    ndarray, shape (n_frames, d * (1 + order))
    """
    parts = [np.asarray(static, dtype=np.float64)]
    k = np.arange(1, window + 1)
    denom = 2.0 * np.sum(k * k)
    for _ in range(order):
        x = parts[-1]
        padded = np.concatenate([np.repeat(x[:1], window, 0), x, np.repeat(x[-1:], window, 0)])
        n = x.shape[0]
        d = np.zeros_like(x)
        for j in k:
            d += j * (padded[window + j: window + j + n] - padded[window - j: window - j + n])
        parts.append(d / denom)
    return np.concatenate(parts, axis=1)


class Normalizer:
    """Mean and variance normalisation (CMVN) of feature frames.

    Three modes:

    ``"global"``
        One mean and standard deviation from the training set, stored with
        the model and applied to every utterance.
    ``"speaker"``
        Each speaker is normalised with its own statistics.  Those of the
        training speakers come from :meth:`fit`; a speaker met later gets
        its own from its utterances through :meth:`adapt` (what ``ctcseq
        decode --utt2spk`` does), and an utterance whose speaker has no
        statistics is normalised with its own, i.e. as its own speaker.
    ``"utterance"``
        Each utterance with its own statistics (its standard deviation
        floored at a tenth of the global one, for very short inputs).
        Removes a fixed channel or spectral tilt and needs nothing but the
        utterance, which suits new voices and single files.

    The global statistics are always fitted and stored; :meth:`to_dict`
    gives plain lists, so they travel inside a model file.

    Parameters
    ----------
    mode : {"global", "speaker", "utterance"}
    per_speaker : bool
        Old spelling of ``mode="speaker"`` (kept for model files and callers
        written before the modes existed).
    """

    MODES = ("global", "speaker", "utterance")

    def __init__(self, mode="global", per_speaker=False):
        if per_speaker:
            mode = "speaker"
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.mean = None
        self.std = None
        self.speakers = {}

    @property
    def per_speaker(self):
        return self.mode == "speaker"

    @staticmethod
    def _acc(feats):
        f = np.asarray(feats, dtype=np.float64)
        return f.shape[0], f.sum(0), (f * f).sum(0)

    @staticmethod
    def _add(total, acc):
        return acc if total is None else tuple(a + b for a, b in zip(total, acc))

    @staticmethod
    def _stats(acc):
        n, s, ss = acc
        mean = s / n
        var = np.maximum(ss / n - mean * mean, 0.0)
        return mean, np.sqrt(var) + 1e-5  # a constant dimension stays finite

    @classmethod
    def _speaker_stats(cls, items):
        per = {}
        for feats, spk in items:
            if spk is None or np.shape(feats)[0] == 0:
                continue
            per[spk] = cls._add(per.get(spk), cls._acc(feats))
        return {spk: cls._stats(acc) for spk, acc in per.items()}

    def fit(self, items):
        """items: iterable of (features (n_frames, d), speaker or None)."""
        items = list(items)
        total = None
        for feats, _ in items:
            total = self._add(total, self._acc(feats))
        if total is None or total[0] == 0:
            raise ValueError("items: no feature frames to compute statistics from")
        self.mean, self.std = self._stats(total)
        self.speakers = self._speaker_stats(items) if self.mode == "speaker" else {}
        return self

    def adapt(self, items):
        """Statistics for speakers not seen in :meth:`fit` (``"speaker"`` mode).

        items: iterable of (features, speaker), every utterance of the new
        speakers; speakers that already have statistics keep them.
        Returns the speakers added.  A no-op in the other modes.
        """
        if self.mode != "speaker":
            return []
        new = self._speaker_stats((f, s) for f, s in items if s not in self.speakers)
        self.speakers.update(new)
        return sorted(new)

    def __call__(self, feats, speaker=None):
        """Normalised copy of feats (n_frames, d) as float32."""
        if self.mean is None:
            raise ValueError("Normalizer has no statistics: call fit() or from_dict() first")
        f = np.asarray(feats, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.mean.shape[0]:
            raise ValueError(f"feats must have shape (n_frames, {self.mean.shape[0]}), "
                             f"got {f.shape}")
        if self.mode == "global" or f.shape[0] == 0:
            mean, std = self.mean, self.std
        elif self.mode == "speaker" and speaker in self.speakers:
            mean, std = self.speakers[speaker]
        else:   # utterance mode, or a speaker without statistics: its own
            mean, std = self._stats(self._acc(f))
            std = np.maximum(std, 0.1 * self.std)
        return ((f - mean) / std).astype(np.float32)

    def to_dict(self):
        return {"mode": self.mode, "per_speaker": self.per_speaker,
                "mean": self.mean.tolist(), "std": self.std.tolist(),
                "speakers": {k: [m.tolist(), s.tolist()] for k, (m, s) in self.speakers.items()}}

    @classmethod
    def from_dict(cls, d):
        out = cls(d.get("mode", "speaker" if d.get("per_speaker") else "global"))
        out.mean = np.asarray(d["mean"], dtype=np.float64)
        out.std = np.asarray(d["std"], dtype=np.float64)
        out.speakers = {k: (np.asarray(m), np.asarray(s)) for k, (m, s) in
                        d.get("speakers", {}).items()}
        if out.mean.shape != out.std.shape or out.mean.ndim != 1:
            raise ValueError("normalizer statistics are malformed (mean/std shapes differ)")
        return out

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))
