"""Long recordings in bounded memory: audio read by spans, an energy-based
voice activity detector, and pieces of bounded length with overlap.

A recording of any length is decoded piece by piece: :func:`scan` makes one
streaming pass over it (blocks of a few seconds, never the whole signal) and
returns the stretches of speech as :class:`Piece` spans; the caller reads each
with :meth:`AudioSource.read`, which seeks to the span and resamples only it.
Memory is bounded by the longest piece (``max_seconds`` plus the margins), plus
one float per 10 ms frame for the detector (1.4 MB an hour).

The detector
------------
1. Frame energies of the mono signal, frames of ``frame_ms`` every
   ``hop_ms`` (25 ms / 10 ms), with each frame's mean removed (the DC, and
   a constant signal gives exactly 0 whatever its value, 1e30 included: see
   :func:`_frame_power`), in dB relative to a full-scale square wave
   (0 dBFS = mean square 1).  Per-frame mean removal, unlike a recursive
   DC blocker, leaves no ringing after a loud sound that would delay the
   end of speech.
2. Threshold: ``max(floor_db, noise_db + margin_db)`` where ``noise_db`` is the
   ``noise_percentile``-th percentile of the recording's frame energies (its
   noise floor); the absolute floor keeps digital silence, constant samples
   and very faint noise from ever being speech.
3. Frames above the threshold are speech; pauses shorter than ``min_pause``
   are bridged (the hangover: dips inside and between words do not cut),
   runs of speech shorter than ``min_speech`` are dropped (clicks).
4. Each run is a piece, padded by ``margin`` seconds (before, after: see
   :data:`DEFAULT_MARGIN`) and clipped to the recording.  A run longer than
   ``max_seconds`` is first split at its longest internal pauses (shorter
   than ``min_pause``, but the best places there are); a stretch that
   still exceeds ``max_seconds`` is cut into windows of at most
   ``max_seconds`` that overlap by ``overlap_seconds`` (the last one ends at
   the stretch's end).  Each overlap is centred on the quietest
   frame of the latter half of the range it may take (between
   ``(max_seconds + overlap_seconds) / 2`` and ``max_seconds`` after the
   window's start), so the keep ranges meet between sounds where they can:
   a window is at least ``(max_seconds + overlap_seconds) / 2`` long, except
   the last.

Keep ranges: each piece owns the tokens that start in ``[keep_start,
keep_end)``.  Consecutive keep ranges never overlap; where two pieces' spans
overlap (windows of one stretch, or runs whose margins meet) the boundary is
the middle of the overlap, so the keep ranges are contiguous there; elsewhere
a piece keeps its whole span.
"""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np

from .errors import DataError, UserError

__all__ = ["AudioSource", "Piece", "Scan", "scan", "frame_energies", "VAD_DEFAULTS",
           "DEFAULT_MARGIN"]

#: Detector settings accepted by :func:`scan` as keyword arguments.
VAD_DEFAULTS = dict(
    frame_ms=25.0,          # analysis frame
    hop_ms=10.0,            # frame step
    floor_db=-60.0,         # absolute threshold, dB re full scale (mean square)
    noise_percentile=2.0,   # which low percentile of frame energies is the noise floor
    margin_db=6.0,          # speech is this far above the noise floor
    min_speech=0.05,        # s; shorter runs of speech are dropped
)

_BLOCK_SECONDS = 10.0   # scan reads this much per block
_RESAMPLE_CONTEXT = 0.05  # s of extra signal each side of a span, for the resampler


def _integer_scale(dtype):
    """Offset and scale mapping an integer PCM dtype to [-1, 1), as libsndfile does."""
    info = np.iinfo(dtype)
    if info.min == 0:            # unsigned (8-bit WAV): centred on the middle
        half = (int(info.max) + 1) / 2
        return half, 1.0 / half
    return 0.0, 1.0 / (-float(info.min))


class AudioSource:
    """One recording: a path (any format soundfile reads) or an in-memory
    ``(array, sample_rate)`` pair.

    Opening reads only the header.

    Parameters
    ----------
    source : str, path-like or ndarray
        A file path, or samples of shape (samples,) or (samples, channels):
        floats (full scale 1) or integer PCM (scaled as libsndfile does:
        int16 / 32768, ...).
    sample_rate : int, optional
        Rate in Hz of an array source (required then; not allowed for a path).
    name : str, optional
        Name used in messages; default the path, or ``"<array>"``.

    Attributes
    ----------
    name : str
    sample_rate : int
        Native rate, Hz.
    frames : int
        Samples per channel.
    channels : int
    duration : float
        Seconds (``frames / sample_rate``).

    Raises
    ------
    DataError
        A missing (``"<path>: no such file"``), unreadable (not audio,
        corrupt) or empty file, or an empty array.
    UserError
        A bad argument (no rate for an array, an array of 3 dimensions, ...).
    """

    def __init__(self, source, sample_rate=None, name=None):
        if isinstance(source, (str, os.PathLike)):
            self._init_path(os.fspath(source), sample_rate, name)
        else:
            self._init_array(source, sample_rate, name)
        self.duration = self.frames / self.sample_rate

    def _init_path(self, path, sample_rate, name):
        import soundfile as sf
        self.name = str(name) if name is not None else path
        if sample_rate is not None:
            raise UserError(f"{self.name}: sample_rate is read from the file; do not give it")
        if not os.path.exists(path):
            raise DataError(f"{self.name}: no such file")
        if os.path.isdir(path):
            raise DataError(f"{self.name}: is a directory, not an audio file")
        try:
            with sf.SoundFile(path) as f:
                self.sample_rate, self.frames, self.channels = f.samplerate, f.frames, f.channels
        except Exception as e:  # soundfile raises several types; all mean "cannot read"
            raise DataError(f"{self.name}: cannot read audio ({e})") from None
        if self.frames <= 0:
            raise DataError(f"{self.name}: empty audio (0 samples)")
        self._path, self._array = path, None

    def _init_array(self, source, sample_rate, name):
        self.name = str(name) if name is not None else "<array>"
        a = np.asarray(source)
        if a.ndim not in (1, 2):
            raise UserError(f"{self.name}: audio array must have shape (samples,) or "
                            f"(samples, channels), not {a.shape}")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise UserError(f"{self.name}: audio array must hold floats or integer PCM, "
                            f"not {a.dtype}")
        if sample_rate is None:
            raise UserError(f"{self.name}: sample_rate is required with an array")
        if (isinstance(sample_rate, bool) or not float(sample_rate).is_integer()
                or sample_rate <= 0):
            raise UserError(f"{self.name}: sample_rate must be a positive integer, "
                            f"not {sample_rate!r}")
        if a.ndim == 1:
            a = a[:, None]
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise DataError(f"{self.name}: empty audio (0 samples)")
        self.sample_rate, self.frames, self.channels = int(sample_rate), a.shape[0], a.shape[1]
        self._path, self._array = None, a

    def __repr__(self):
        return (f"AudioSource({self.name!r}, {self.sample_rate} Hz, {self.channels} ch, "
                f"{self.duration:.3f} s)")

    # -- raw access, at the native rate -------------------------------------------------
    def _as_float(self, block):
        """float32 (n, channels) of a slice of the array source."""
        if np.issubdtype(block.dtype, np.integer):
            offset, scale = _integer_scale(block.dtype)
            return ((block.astype(np.float64) - offset) * scale).astype(np.float32)
        return block.astype(np.float32, copy=False)

    def _read_native(self, s0, s1):
        """float32 (s1 - s0, channels) samples [s0, s1) at the native rate (seek + read)."""
        if self._array is not None:
            return self._as_float(self._array[s0:s1])
        import soundfile as sf
        try:
            with sf.SoundFile(self._path) as f:
                f.seek(s0)
                return f.read(s1 - s0, dtype="float32", always_2d=True)
        except Exception as e:
            raise DataError(f"{self.name}: cannot read audio ({e})") from None

    def _blocks(self, blocksize):
        """Yield float32 (n, channels) blocks covering the recording in order."""
        if self._array is not None:
            for s in range(0, self.frames, blocksize):
                yield self._as_float(self._array[s:s + blocksize])
            return
        import soundfile as sf
        try:
            with sf.SoundFile(self._path) as f:
                while True:
                    b = f.read(blocksize, dtype="float32", always_2d=True)
                    if len(b) == 0:
                        return
                    yield b
        except Exception as e:
            raise DataError(f"{self.name}: cannot read audio ({e})") from None

    def _check_finite(self, block, first_sample):
        """DataError naming the time of the first NaN/inf sample of ``block``."""
        bad = ~np.isfinite(block)
        if bad.any():
            i = int(np.argmax(bad.any(axis=1)))
            what = "NaN" if np.isnan(block[i][bad[i]][0]) else "infinite"
            raise DataError(f"{self.name}: {what} sample at {(first_sample + i) / self.sample_rate:.3f} s "
                            f"(sample {first_sample + i}); audio must be finite")

    # -- public --------------------------------------------------------------------------
    def read(self, start=0.0, end=None, sample_rate=16000):
        """Mono samples of ``[start, end)`` seconds, resampled.

        Reads only that part of the file (seek), plus ``0.05`` s of context
        each side for the resampler, so the result equals the same span of
        the whole recording resampled at once (to float rounding) and memory
        is bounded by the span's length.

        Parameters
        ----------
        start, end : float
            Seconds; ``end=None`` or past the end means the end of the
            recording.  Sample ``j`` of the result is at time
            ``(round(start * sample_rate) + j) / sample_rate``.
        sample_rate : int
            Output rate, Hz.

        Returns
        -------
        ndarray, shape (round(end * sample_rate) - round(start * sample_rate),), float32
            Channels averaged (as :func:`ctcseq.features.load_audio`); may be
            a sample shorter at the recording's end, where the resampled
            recording ends.

        Raises
        ------
        UserError
            ``start < 0``, ``end < start``, a bad ``sample_rate``.
        DataError
            NaN or infinite samples in the span (naming their time).
        """
        if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or sample_rate <= 0:
            raise UserError(f"sample_rate must be a positive integer, not {sample_rate!r}")
        sample_rate = int(sample_rate)
        start = float(start)
        end = max(start, self.duration) if end is None else float(end)
        if not (math.isfinite(start) and start >= 0):
            raise UserError(f"{self.name}: start must be >= 0 seconds, not {start}")
        if not end >= start:
            raise UserError(f"{self.name}: end ({end}) must not be before start ({start})")
        end = min(end, self.duration)
        start = min(start, end)
        sr, tsr = self.sample_rate, sample_rate
        if sr == tsr:
            s0, s1 = round(start * sr), round(end * sr)
            y = self._read_native(s0, s1)
            self._check_finite(y, s0)
            return np.ascontiguousarray(y.mean(axis=1), dtype=np.float32)
        # The resampled recording has sample j at time j / tsr and
        # ceil(frames * tsr / sr) samples.  Read from a native sample c0 that
        # falls on that grid (a multiple of sr / gcd), with context each side,
        # so that the chunk's output grid is the whole recording's.
        total = -(-self.frames * tsr // sr)
        j0 = min(round(start * tsr), total)
        j1 = min(round(end * tsr), total)
        if j1 <= j0:
            return np.zeros(0, np.float32)
        g = math.gcd(sr, tsr)
        step_in, step_out = sr // g, tsr // g
        ctx = math.ceil(_RESAMPLE_CONTEXT * sr)
        c0 = max(0, (j0 * sr // tsr) - ctx) // step_in * step_in
        c1 = min(self.frames, -(-j1 * sr // tsr) + ctx)
        y = self._read_native(c0, c1)
        self._check_finite(y, c0)
        import librosa
        z = librosa.resample(y.mean(axis=1), orig_sr=sr, target_sr=tsr)
        off = c0 // step_in * step_out
        return np.ascontiguousarray(z[j0 - off:j1 - off], dtype=np.float32)


class Piece(NamedTuple):
    """A span of a recording to decode, and the part of it whose tokens it owns.

    Attributes
    ----------
    start, end : float
        Seconds, absolute: the span to read and decode.
    keep_start, keep_end : float
        The piece owns the tokens whose start time falls in
        ``[keep_start, keep_end)`` (consecutive pieces' keep ranges tile the
        speech without overlap; ``start <= keep_start < keep_end <= end``).
    """
    start: float
    end: float
    keep_start: float
    keep_end: float


class Scan(NamedTuple):
    """What :func:`scan` found.

    Attributes
    ----------
    pieces : list of Piece
        In time order; ``[]`` when the recording holds no speech.
    peak : float
        Largest ``|sample|`` over all channels; > 1 means samples outside
        [-1, 1] (the caller reports it).
    speech_seconds : float
        Total length of the stretches of speech (before margins; the pauses
        shorter than ``min_pause`` inside them included).
    """
    pieces: list
    peak: float
    speech_seconds: float


def _vad_options(options):
    unknown = set(options) - set(VAD_DEFAULTS)
    if unknown:
        raise UserError(f"scan: unknown option(s) {', '.join(sorted(unknown))}; "
                        f"known: {', '.join(VAD_DEFAULTS)}")
    opts = {**VAD_DEFAULTS, **options}
    for k in ("frame_ms", "hop_ms"):
        if not opts[k] > 0:
            raise UserError(f"scan: {k} must be > 0, not {opts[k]}")
    if not 0 <= opts["noise_percentile"] <= 100:
        raise UserError(f"scan: noise_percentile must be in [0, 100], not {opts['noise_percentile']}")
    if not opts["min_speech"] >= 0:
        raise UserError(f"scan: min_speech must be >= 0, not {opts['min_speech']}")
    return opts


def _frame_power(frames):
    """Mean square of each row about its mean, shape (n,).  Rows are first
    shifted by their first sample, so a constant row gives exactly 0 whatever
    its value (1e30 included), where the mean alone would leave a rounding
    residue of 1e14."""
    d = frames - frames[:, :1]
    d = d - d.mean(axis=1, keepdims=True)
    return np.einsum("ij,ij->i", d, d) / frames.shape[1]


def _to_db(power):
    """float32 dB of mean squares, -200 for exact zeros (4 bytes a frame: an hour is 1.4 MB)."""
    with np.errstate(divide="ignore"):
        return np.maximum(10 * np.log10(power), -200.0).astype(np.float32)


def frame_energies(audio, *, frame_ms=25.0, hop_ms=10.0, block_seconds=None):
    """One streaming pass over a recording: frame energies with each frame's
    mean removed, the peak, the check for NaN and infinite samples.

    Parameters
    ----------
    audio : AudioSource
    frame_ms, hop_ms : float
        Frame length and step, ms (rounded to whole native samples).
    block_seconds : float, optional
        Length of the blocks read (default 10 s).

    Returns
    -------
    energy_db : ndarray, shape (n_frames,), float32
        ``10 log10(mean((x - mean(x))**2))`` of frame ``i`` = mono samples
        ``x = [i*hop, i*hop+win)`` (the last frame may be shorter: it covers
        the samples left); -200 for exact zeros.
    hop, win : int
        In native samples.
    peak : float
        Largest ``|sample|`` over all channels.

    Raises
    ------
    DataError
        NaN or infinite samples, naming the time of the first one.
    """
    sr = audio.sample_rate
    hop = max(1, round(hop_ms * sr / 1000))
    win = max(hop, round(frame_ms * sr / 1000))
    block = hop * max(1, round((block_seconds or _BLOCK_SECONDS) * sr / hop))
    peak = 0.0
    chunks = []
    tail = np.zeros(0)       # mono samples from frame index `next_frame` on
    next_frame = 0
    pos = 0                  # absolute index of the next block's first sample
    for x in audio._blocks(block):
        audio._check_finite(x, pos)
        if len(x):
            peak = max(peak, float(np.max(np.abs(x))))
        buf = np.concatenate([tail, x.astype(np.float64).mean(axis=1)])
        n_full = (len(buf) - win) // hop + 1 if len(buf) >= win else 0
        if n_full:
            frames = np.lib.stride_tricks.sliding_window_view(buf, win)[::hop][:n_full]
            chunks.append(_to_db(_frame_power(frames)))
        tail = buf[n_full * hop:]
        next_frame += n_full
        pos += len(x)
    # the samples after the last full frame: one shorter frame (a recording
    # shorter than one frame still gets one)
    covered = (next_frame - 1) * hop + win if next_frame else 0
    if pos > covered:
        chunks.append(_to_db(_frame_power(tail[max(0, covered - next_frame * hop):][None, :])))
    db = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return db, hop, win, peak


def _runs(mask):
    """(starts, stops) of the runs of True in a 1-D bool array (stop exclusive)."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _split(a, b, gaps, max_seconds):
    """Split the stretch [a, b] at internal gaps (list of (g0, g1, length)) so
    that parts are at most max_seconds where a gap allows; longest gaps first."""
    if b - a <= max_seconds or not gaps:
        return [(a, b)]
    # the longest gap that leaves both sides non-empty, ties to the middle
    mid = (a + b) / 2
    g0, g1, _ = max(gaps, key=lambda g: (round(g[2], 6), -abs((g[0] + g[1]) / 2 - mid)))
    left = [g for g in gaps if g[1] <= g0]
    right = [g for g in gaps if g[0] >= g1]
    return _split(a, g0, left, max_seconds) + _split(g1, b, right, max_seconds)


def _windows(a, b, max_seconds, overlap_seconds, frame_db, hop_s, win_s):
    """Windows of at most max_seconds covering [a, b], each overlapping the
    next by overlap_seconds, with the middle of each overlap (where the keep
    ranges meet) at the quietest frame of the second half of the window's
    possible range (a pause between sounds, when there is one)."""
    out = []
    s, half = a, overlap_seconds / 2
    search = (max_seconds - overlap_seconds) / 2
    while b - s > max_seconds:
        hi = s + max_seconds - half          # latest boundary: the window ends at hi + half
        lo = hi - search                     # the next window starts >= search after s
        # frames whose centre i * hop_s + win_s / 2 lies in [lo, hi]
        i0 = max(0, math.ceil((lo - win_s / 2) / hop_s))
        i1 = min(len(frame_db), math.floor((hi - win_s / 2) / hop_s) + 1)
        c = hi if i1 <= i0 else min(hi, max(lo, (i0 + int(np.argmin(frame_db[i0:i1])))
                                            * hop_s + win_s / 2))
        out.append((s, c + half))
        s = c - half
    out.append((s, b))
    return out


def _margins(margin):
    """(before, after) seconds of a margin given as one number or a pair."""
    pair = tuple(margin) if isinstance(margin, (tuple, list)) else (margin, margin)
    if len(pair) != 2 or not all(isinstance(m, (int, float, np.integer, np.floating))
                                 and not isinstance(m, bool) and m >= 0 and math.isfinite(m)
                                 for m in pair):
        raise UserError(f"scan: margin must be seconds >= 0 or a pair (before, after) of "
                        f"them, not {margin!r}")
    return float(pair[0]), float(pair[1])


#: Default ``margin`` of :func:`scan`: (before, after) the speech, seconds.
#: Measured with the default recipe's model (exp/synth-default) on a long
#: recording of all 1228 synthetic dev utterances joined by 0.3-1.0 s
#: pauses (benchmarks/bench_long.py), PER of the stitched result (decoding
#: each file: 7.37% with (0.2, 0.2), 7.23% with this default):
#: (0.2, 0.2) 7.88%, (0.1, 0.1) 7.87%, (0.5, 0.5) 10.60%, (0, 0) 8.82%,
#: (0.1, 0.3) 7.68%, (0.03, 0.2) 8.29%, (0.01, 0.2) 8.04%, (0, 0.15) 7.70%,
#: (0, 0.2) 7.60%, (0, 0.3) 7.54%, (0, 0.4) 7.75%, (0, 0.5) 8.24%.  Its
#: training files start with speech: even 10 ms of silence before it costs
#: insertions, while the ends of the files hold silence that a trailing
#: margin restores.  (The detector's onset is the start of the first 25 ms
#: frame above the threshold, so a margin of 0 still starts up to 25 ms
#: early; give a leading margin for models trained on recordings with
#: silence before the speech.)
DEFAULT_MARGIN = (0.0, 0.3)


def scan(audio, *, max_seconds=20.0, overlap_seconds=1.0, min_pause=0.3,
         margin=DEFAULT_MARGIN, **vad_options):
    """Find the speech of a recording, as pieces to decode one at a time.

    One streaming pass over the recording in blocks (memory bounded whatever
    its length); the detector is described in the module's docstring.

    Parameters
    ----------
    audio : AudioSource
    max_seconds : float
        Longest stretch of speech in one piece (before margins); a longer one
        is split at its longest pauses, else cut into overlapping windows.
    overlap_seconds : float
        Overlap of consecutive windows of one stretch (< max_seconds).
    min_pause : float
        Seconds: pieces are cut at pauses at least this long; shorter ones
        are bridged.
    margin : float or (float, float)
        Seconds of context added before and after each stretch (clipped to
        the recording): one number for both sides, or ``(before, after)``;
        default :data:`DEFAULT_MARGIN`.
    **vad_options
        Detector settings, see :data:`VAD_DEFAULTS` (frame_ms, hop_ms,
        floor_db, noise_percentile, margin_db, min_speech).

    Returns
    -------
    Scan
        ``pieces`` (each at most ``max_seconds`` plus both margins long),
        ``peak``, ``speech_seconds``.

    Raises
    ------
    DataError
        NaN or infinite samples (naming the file and the time of the first
        one), or a file that cannot be read.
    UserError
        Impossible settings.
    """
    if not isinstance(audio, AudioSource):
        raise UserError(f"scan: audio must be an AudioSource, not {type(audio).__name__}")
    if not max_seconds > 0:
        raise UserError(f"scan: max_seconds must be > 0, not {max_seconds}")
    if not 0 <= overlap_seconds < max_seconds:
        raise UserError(f"scan: overlap_seconds must be in [0, max_seconds), not {overlap_seconds}")
    if not min_pause >= 0:
        raise UserError(f"scan: min_pause must be >= 0, not {min_pause}")
    before, after = _margins(margin)
    opts = _vad_options(vad_options)
    db, hop, win, peak = frame_energies(audio, frame_ms=opts["frame_ms"], hop_ms=opts["hop_ms"])
    sr, dur = audio.sample_rate, audio.duration
    noise = float(np.percentile(db, opts["noise_percentile"])) if len(db) else -200.0
    threshold = max(opts["floor_db"], noise + opts["margin_db"])
    starts, stops = _runs(db > threshold)
    # times: frame i covers [i*hop, i*hop + win) samples
    t0 = starts * hop / sr
    t1 = np.minimum((stops - 1) * hop + win, audio.frames) / sr
    # bridge pauses shorter than min_pause; the bridged ones stay candidates for splitting
    stretches = []   # [start, end, [(gap_start, gap_end, length), ...]]
    for a, b in zip(t0.tolist(), t1.tolist()):
        if stretches and a - stretches[-1][1] < min_pause:
            s = stretches[-1]
            if a > s[1]:
                s[2].append((s[1], a, a - s[1]))
            s[1] = max(s[1], b)
        else:
            stretches.append([a, b, []])
    # drop clicks: stretches with less speech than min_speech
    stretches = [s for s in stretches
                 if (s[1] - s[0]) - sum(g[2] for g in s[2]) >= opts["min_speech"]]
    speech_seconds = float(sum(s[1] - s[0] for s in stretches))
    spans = []       # (start, end) before margins; consecutive windows overlap
    for a, b, gaps in stretches:
        for c, d in _split(a, b, gaps, max_seconds):
            spans.extend(_windows(c, d, max_seconds, overlap_seconds, db, hop / sr, win / sr))
    pieces = []
    for i, (a, b) in enumerate(spans):
        start, end = max(0.0, a - before), min(dur, b + after)
        keep_start = start
        if i:
            prev = pieces[-1]
            if start < prev.end:   # spans overlap: meet in the middle of the overlap
                keep_start = (start + prev.end) / 2
                pieces[-1] = prev._replace(keep_end=keep_start)
        pieces.append(Piece(start, end, keep_start, end))
    return Scan(pieces, peak, speech_seconds)
