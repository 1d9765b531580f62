"""Build the default synthetic speech corpus, offline, with eSpeak NG.

Random sentences are drawn from the English word-frequency list bundled in
the ``wordfreq`` package (read from its installed data; nothing is
downloaded), spoken by many eSpeak voices -- English accents x voice
variants -- at random speaking rates, pitches and pitch ranges, and written
as Kaldi-style data directories ``train``, ``dev`` and ``test`` (see
:mod:`ctcseq.datadir`) plus ``phones.txt`` and ``chars.txt``.

Labels come from eSpeak's own phonemiser with the same voice that spoke the
audio, mapped to the fixed 40-phone inventory of :mod:`data_prep.phones`.

The split is by *voice variant*: every variant (timbre) belongs to exactly one
split and is spoken in every accent there, so no test voice -- not even in
another accent -- is heard in training.  Test holds Klatt modes 3 and 4 that
no training voice uses, which makes per-voice error rates informative.

Training voices are augmented (``augment``, on by default; dev and test never
are): most training utterances are *warped* -- rendered at a slower eSpeak
rate, then played back faster by resampling from ``warp x 22050`` Hz, which
scales pitch and every formant by ``warp`` (a shorter or longer vocal tract)
while keeping the intended speaking rate -- and half get an echo (a feedback
comb filter).  Named eSpeak variants differ mostly in exactly these ways
(formant scales, pitch, echo), so this multiplies the timbres training
hears without touching the voice-disjoint split.

Training also hears *random voices* (``random_variants``, 48 by default):
eSpeak variant files drawn at random -- pitch, a formant scale with
per-formant jitter, formant heights and widths, voicing and consonant
levels, flutter, roughness, spectral tone, breath, syllable length and
loudness per stress level, and eSpeak's own echo, within the span of
eSpeak's own variants (pitch reaches a little past it: a male voice's top
pitch can be 72 Hz where eSpeak's lowest is 83, a female base 220 Hz where
its highest is 204) -- written to ``voices/`` in the corpus and loaded
through a private eSpeak data directory (:func:`data_prep.espeak.data_with_variants`).

Audio is 16-bit PCM WAV at 16 kHz by default (resampled from eSpeak's 22050
Hz with a polyphase filter, the usual rate for speech front ends);
``--sample-rate 22050`` keeps the native rate.

Everything is determined by ``--seed``: the plan (sentences, voices, rates,
pitches, eSpeak's noise seed) is drawn in the parent process, workers render
in any order, and results are gathered in plan order, so the same seed gives
byte-identical text files and audio whatever ``--jobs`` is.

Example
-------
::

    python -m data_prep.synth --out corpus --hours 3 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ctcseq import datadir
from ctcseq.progress import format_duration

from . import phones as phones_mod
from .common import RECORD, char_tokens, prepare_out_dir, write_json
from .espeak import PITCH_RANGE, RATE_RANGE

__all__ = ["ACCENTS", "DEFAULT_SPLIT", "Utterance", "build_vocabulary", "plan_corpus",
           "render", "build_corpus", "main"]

# Speaker-id prefix -> eSpeak language voice.  en-shaw (Shavian script) is left
# out: it is an orthography, not an accent.
ACCENTS = {
    "en-us": "en-us",
    "en-us-nyc": "en-us-nyc",
    "en-gb": "en",
    "en-gb-x-rp": "en-gb-x-rp",
    "en-gb-scotland": "en-gb-scotland",
    "en-gb-x-gbclan": "en-gb-x-gbclan",
    "en-gb-x-gbcwmd": "en-gb-x-gbcwmd",
    "en-029": "en-029",
}

# Voice variants per split.  Left out: whisper/whisperf/caleb (no voicing),
# heavy-echo and robot variants (RicishayMax*, Demonic, Storm, UniRobot,
# robosoft*, anikaRobot, announcer), names with spaces, and near-duplicates of
# variants placed in another split (steph2, Michael, miguel ...).
DEFAULT_SPLIT = {
    "train": (
        "m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f5",
        "Alex", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Mike",
        "aunty", "belinda", "boris", "edward", "gustave", "iven", "iven3", "john",
        "linda", "marcelo", "max", "norbert", "pablo", "paul", "pedro", "quincy",
        "rob", "steph", "travis", "klatt", "klatt2", "adam", "david",
    ),
    "dev": (
        "m6", "f4", "Andrea", "Hugo", "grandpa", "iven2", "ian", "shelby",
        "klatt5", "benjamin",
    ),
    "test": (
        "m8", "Alicia", "Henrique", "michel", "Nguyen", "anika", "Marco", "zac",
        "croak", "edward2", "klatt3", "klatt4",
    ),
}
SPLITS = ("train", "dev", "test")
# eSpeak amplitude (0..200, default 100): at 100 the loudest variants (iven,
# paul, klatt4) clip now and then; 75 keeps them within range.
VOLUME = 75
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
# Training-voice augmentation: share of warped utterances and the warp range
# (log-uniform; eSpeak's female and child-like variants scale formants by up
# to ~1.45 over the default voice), share with an echo, its delay and gain.
WARP_SHARE, WARP_RANGE = 0.8, (0.8, 1.3)
ECHO_SHARE, ECHO_MS, ECHO_GAIN = 0.5, (20, 150), (0.1, 0.6)
# Random training voices: how many, and their name prefix.
RANDOM_VARIANTS, RANDOM_PREFIX = 48, "rnd"
# Warped audio is read at native * warp rounded to this many Hz, so the
# resampling ratio to the output rate stays a small fraction.
_WARP_STEP_HZ = 50

_WORD_RE = re.compile(r"[a-z]+('[a-z]+)?")
_VOWEL_RE = re.compile(r"[aeiouy]")
# Seconds of audio per character of text at 175 words/minute, measured on
# eSpeak NG 1.52 (including its end-of-sentence pause); only used to plan how
# many sentences reach the requested hours -- the summary reports real hours.
_SEC_PER_CHAR_AT_175 = 0.060


@dataclass(frozen=True)
class Utterance:
    """One planned utterance (everything needed to render it)."""

    utt: str
    split: str
    spk: str
    voice: str        # eSpeak voice name, e.g. "en-us+m3"
    text: str
    rate: int         # words per minute
    pitch: int        # 0..100
    pitch_range: int  # 0..100
    seed: int         # eSpeak noise seed
    warp: float = 1.0     # playback-rate factor: pitch and formants x warp
    echo_ms: int = 0      # echo delay (0: none)
    echo_gain: float = 0.0


# --------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------

def candidate_words(n_words):
    """The ``n_words`` most frequent English words of wordfreq's bundled list
    that are lower-case a-z with at most one inner apostrophe, with their
    frequencies.

    Raises
    ------
    ImportError
        If ``wordfreq`` is not installed.
    """
    if n_words < 1:
        raise ValueError(f"n_words must be >= 1, got {n_words}")
    import wordfreq
    freqs = wordfreq.get_frequency_dict("en", wordlist="large")   # bundled msgpack, offline
    out = []
    for word in wordfreq.top_n_list("en", 3 * n_words, wordlist="large"):
        if _WORD_RE.fullmatch(word):
            out.append((word, freqs[word]))
            if len(out) == n_words:
                break
    return out


def word_problem(word, per_voice):
    """Why ``word`` is unsuitable, or None.

    Parameters
    ----------
    word : str
    per_voice : list of list of list of str
        eSpeak's phonemes of ``word`` alone, one entry per accent.

    Notes
    -----
    eSpeak expands abbreviations ("mr" -> mister), reads roman numerals
    ("ii" -> roman two) and spells acronyms ("bbc"); the audio then no longer
    matches the character transcript.  These are caught by: more than one
    spoken word, no vowel letter, a single letter other than "a"/"i", or more
    phones than letters + 1 in any accent (spelled letters take 2 phones).
    """
    letters = len(word.replace("'", ""))
    if letters == 1 and word not in ("a", "i"):
        return "single letter"
    if not _VOWEL_RE.search(word):
        return "no vowel letter"
    for words in per_voice:
        if len(words) != 1:
            return "read as several words"
        try:
            n = len(phones_mod.map_words(words))
        except phones_mod.UnknownPhoneError as err:
            return f"unknown phoneme {err.symbol}"
        if n > letters + 1:
            return "more phones than letters + 1"
    return None


def _phonemize_words(voice, words):
    from .espeak import get_engine
    eng = get_engine()
    return [eng.phonemize(w, voice) for w in words]


def build_vocabulary(n_words, voices, pool=None, exclude=()):
    """Words eSpeak pronounces sanely in every voice, with their frequencies.

    Parameters
    ----------
    n_words : int
        Number of candidate words taken from the top of the frequency list.
    voices : list of str
        eSpeak language voices to check.
    pool : concurrent.futures.Executor, optional
        Phonemise in parallel (one task per voice).
    exclude : collection of str
        Words never to use (e.g. a list of offensive words; none is built in).

    Returns
    -------
    vocab : list of (str, float)
    dropped : collections.Counter
        Reason -> number of words left out.
    """
    exclude = set(exclude)
    cands = [(w, f) for w, f in candidate_words(n_words) if w not in exclude]
    words = [w for w, _ in cands]
    mapper = pool.map if pool is not None else map
    per_voice = list(mapper(_phonemize_words, voices, [words] * len(voices)))
    vocab, dropped = [], Counter()
    for i, (word, freq) in enumerate(cands):
        why = word_problem(word, [pv[i] for pv in per_voice])
        if why is None:
            vocab.append((word, freq))
        else:
            dropped["unknown phoneme" if why.startswith("unknown") else why] += 1
    if exclude:
        dropped["excluded"] = n_words - len(cands)
    return vocab, dropped


# --------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------

def _speaker_id(accent, variant):
    return f"{accent}_{variant.lower()}"


def plan_corpus(vocab, hours, seed, accents=ACCENTS, split=DEFAULT_SPLIT,
                fractions=DEFAULT_FRACTIONS, words_per_sentence=(4, 12),
                rate=(130, 220), pitch=(25, 75), pitch_range=(20, 80), flatten=0.5,
                augment=True, random_variants=0):
    """Draw every utterance of the corpus (no audio yet).

    Parameters
    ----------
    vocab : list of (str, float)
        Words and frequencies, from :func:`build_vocabulary`.
    hours : float
        Target total audio, split by ``fractions``; the estimate is within
        roughly 10 %, the summary reports the real figure.
    seed : int
        Everything drawn here depends only on it (and the arguments).
    accents : dict
        Speaker-id prefix -> eSpeak language voice.
    split : dict
        Split name -> voice variants.  Each variant must be in one split.
    fractions : tuple of 3 floats
        Share of hours for train, dev, test.
    words_per_sentence, rate, pitch, pitch_range : (int, int)
        Inclusive ranges drawn uniformly per utterance.
    flatten : float
        Words are drawn with probability proportional to frequency**flatten
        (1 = natural Zipf text dominated by "the", 0 = uniform over vocab).
    augment : bool
        Warp and echo training utterances (see the module docstring);
        dev and test are never augmented.
    random_variants : int
        Random voices added to the training variants (names
        :func:`random_variant_names`); their files must be made available
        to eSpeak when rendering (:func:`build_corpus` does).

    Returns
    -------
    list of Utterance
        Sorted by split, then utterance id.
    """
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"fractions must be 3 non-negative shares, got {fractions}")
    if not vocab:
        raise ValueError("vocab is empty")
    limits = {"words_per_sentence": (1, 1000), "rate": RATE_RANGE,
              "pitch": PITCH_RANGE, "pitch_range": PITCH_RANGE}
    for name, (lo, hi) in (("words_per_sentence", words_per_sentence), ("rate", rate),
                           ("pitch", pitch), ("pitch_range", pitch_range)):
        if not limits[name][0] <= lo <= hi <= limits[name][1]:
            raise ValueError(f"{name} must be a (low, high) range within {limits[name]}, "
                             f"got {(lo, hi)}")
    # Speaker ids lower-case the variant, so compare case-insensitively.
    seen = Counter(v.lower() for vs in split.values() for v in vs)
    dup = sorted(v for v, n in seen.items() if n > 1)
    if dup:
        raise ValueError(f"split: variants listed more than once: {dup}")
    words = [w for w, _ in vocab]
    p = np.array([f for _, f in vocab], dtype=np.float64) ** flatten
    p /= p.sum()
    total = sum(fractions)
    plan = []
    for k, name in enumerate(SPLITS):
        target = hours * 3600.0 * fractions[k] / total
        if target <= 0:
            continue
        if not split.get(name):
            raise ValueError(f"split: no variants for {name!r}")
        # One generator per split: changing one split's size leaves the others.
        rng = np.random.default_rng([seed, k])
        variants = list(split[name])
        if name == "train":
            variants += random_variant_names(random_variants)
        voices = [(a, v) for v in variants for a in accents]
        per_spk = Counter()
        est = 0.0
        while est < target:
            # Shuffled rounds over all voices keep per-voice counts balanced.
            for j in rng.permutation(len(voices)):
                if est >= target:
                    break
                accent, variant = voices[j]
                spk = _speaker_id(accent, variant)
                n = int(rng.integers(words_per_sentence[0], words_per_sentence[1] + 1))
                text = " ".join(words[i] for i in rng.choice(len(words), size=n, p=p))
                r = int(rng.integers(rate[0], rate[1] + 1))
                utt = Utterance(
                    utt=f"{spk}-{per_spk[spk]:05d}", split=name, spk=spk,
                    voice=f"{accents[accent]}+{variant}", text=text, rate=r,
                    pitch=int(rng.integers(pitch[0], pitch[1] + 1)),
                    pitch_range=int(rng.integers(pitch_range[0], pitch_range[1] + 1)),
                    seed=int(rng.integers(1, 2**31 - 1)))
                if augment and name == "train":
                    utt = _augmented(utt, rng)
                per_spk[spk] += 1
                plan.append(utt)
                est += (len(text) + 1) * _SEC_PER_CHAR_AT_175 * 175.0 / r
    return sorted(plan, key=lambda u: (SPLITS.index(u.split), u.utt.encode()))


def random_variant_names(n):
    return [f"{RANDOM_PREFIX}{i:03d}" for i in range(n)]


def random_variant(rng, name):
    """The text of an eSpeak variant file for a random voice.

    Ranges follow what eSpeak's own variants use: base pitch 60-110 Hz
    (male) or 140-220 Hz (female), a pitch range of 1.2-1.7 times the base;
    formants 0-5 scaled together (0.85-1.15 male, 1.0-1.35 female) with
    +-10% jitter each, heights and widths 60-150%; voicing 35-150%,
    consonant levels (unvoiced 50-150, voiced 20-150), flutter, roughness,
    and now and then a spectral tone (equaliser), breath (aspiration noise
    on the formants), syllable lengths (-20..260 ms) and amplitudes (12-38)
    per stress level, or eSpeak's own echo (20-150 ms, level 10-80/256).
    """
    female = rng.random() < 0.5
    low = rng.uniform(140, 220) if female else rng.uniform(60, 110)
    scale = rng.uniform(1.0, 1.35) if female else rng.uniform(0.85, 1.15)
    lines = ["language variant", f"name {name}", f"gender {'female' if female else 'male'}",
             f"pitch {low:.0f} {low * rng.uniform(1.2, 1.7):.0f}"]
    for k in range(9):
        freq = 100 * scale * rng.uniform(0.9, 1.1) if k <= 5 else rng.uniform(90, 110)
        lines.append(f"formant {k} {freq:.0f} {rng.uniform(60, 150):.0f} "
                     f"{rng.uniform(60, 150):.0f}")
    lines += [f"voicing {rng.uniform(35, 150):.0f}",
              f"consonants {rng.uniform(50, 150):.0f} {rng.uniform(20, 150):.0f}",
              f"flutter {rng.integers(0, 21)}", f"roughness {rng.integers(0, 6)}"]
    if rng.random() < 0.5:
        lines.append("tone " + " ".join(f"{f} {rng.integers(60, 256)}"
                                        for f in (600, 1200, 2000, 3000)))
    if rng.random() < 0.25:
        lines.append("breath 0 " + " ".join(str(rng.integers(0, 9)) for _ in range(7)))
    # Syllable length and loudness by stress level (8 levels): the named
    # training variants change them little (11 of 42, mostly by tens of ms),
    # and long unstressed syllables cost a test voice more than any other
    # trait (recipes/synth/RESULTS.md).
    if rng.random() < 0.5:
        lines.append("stressAdd " + " ".join(str(rng.integers(-20, 261)) for _ in range(8)))
    if rng.random() < 0.5:
        lines.append("stressAmp " + " ".join(str(rng.integers(12, 39)) for _ in range(8)))
    # eSpeak's own echo (delay ms, level in 1/256ths, fed back): the comb
    # filter of the augmentation alone left the model sensitive to it (RESULTS.md)
    if rng.random() < 1 / 3:
        lines.append(f"echo {rng.integers(20, 151)} {rng.integers(10, 81)}")
    return "\n".join(lines) + "\n"


def random_variants_of(seed, n):
    """{name: file text} of the ``n`` random voices of corpus seed ``seed``."""
    return {name: random_variant(np.random.default_rng([seed, 1000 + i]), name)
            for i, name in enumerate(random_variant_names(n))}


def _augmented(u, rng):
    """``u`` with a random warp and echo (drawn from ``rng``)."""
    warp, echo_ms, echo_gain = 1.0, 0, 0.0
    if rng.random() < WARP_SHARE:
        warp = float(np.exp(rng.uniform(*np.log(WARP_RANGE))))
        warp = round(warp * 22050 / _WARP_STEP_HZ) * _WARP_STEP_HZ / 22050
    if rng.random() < ECHO_SHARE:
        echo_ms = int(rng.integers(ECHO_MS[0], ECHO_MS[1] + 1))
        echo_gain = round(float(rng.uniform(*ECHO_GAIN)), 3)
    # speak slower by warp so the warped playback keeps the drawn rate
    rate = int(np.clip(round(u.rate / warp), *RATE_RANGE))
    return dataclasses.replace(u, rate=rate, warp=warp, echo_ms=echo_ms, echo_gain=echo_gain)


def _echo(audio, sample_rate, delay_ms, gain):
    """Feedback comb filter y[n] = x[n] + gain * y[n - d], scaled by 1 - gain
    so the level stays about the same."""
    from scipy.signal import lfilter
    d = max(1, round(delay_ms * sample_rate / 1000))
    a = np.zeros(d + 1)
    a[0], a[d] = 1.0, -gain
    return lfilter([1.0 - gain], a, audio).astype(np.float32)


# --------------------------------------------------------------------------
# render (runs in workers)
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _resample_filter(up, down):
    # The filter scipy's resample_poly designs by default, built once.
    from scipy.signal import firwin
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def _resample(audio, native, target):
    if native == target:
        return audio
    from math import gcd
    from scipy.signal import resample_poly
    g = gcd(native, target)
    up, down = target // g, native // g
    return resample_poly(audio, up, down, window=_resample_filter(up, down)).astype(np.float32)


def _wav_relpath(u):
    return f"wav/{u.split}/{u.spk}/{u.utt}.wav"


def _ctm(events, phonemes, native_rate):
    """Per-phone ``(start_s, dur_s, phone)`` from the synthesiser's events.

    A phoneme mapped to k phones has its span split evenly between them; an
    /r/ merged away by :func:`data_prep.phones.expand` gives its span to the
    phone before.  Returns None if the events do not match the phonemiser's
    output (then the timing is not trustworthy).
    """
    if [e.phoneme for e in events] != phonemes:
        return None
    pairs = phones_mod.expand(phonemes)
    groups = []                       # (source index, [phones])
    for phone, i in pairs:
        if groups and groups[-1][0] == i:
            groups[-1][1].append(phone)
        else:
            groups.append((i, [phone]))
    out = []
    for g, (i, names) in enumerate(groups):
        last = groups[g + 1][0] - 1 if g + 1 < len(groups) else i
        start, end = events[i].sample, events[last].end
        step = (end - start) / len(names)
        for j, name in enumerate(names):
            out.append((round((start + j * step) / native_rate, 3),
                        round(step / native_rate, 3), name))
    return out


def render(batch, out_dir, sample_rate):
    """Synthesise and write a batch of utterances; runs in a worker process.

    Returns
    -------
    list of dict
        Per utterance: ``utt``, ``phones``, ``ipa``, ``dur``, ``ctm`` (or
        None) -- or ``utt`` and ``error`` if its phonemes have no mapping.
    """
    import soundfile as sf
    from .espeak import get_engine
    eng = get_engine()
    results = []
    for u in batch:
        syn = eng.synthesize(u.text, u.voice, rate=u.rate, pitch=u.pitch,
                             pitch_range=u.pitch_range, volume=VOLUME, seed=u.seed)
        words = eng.phonemize(u.text, u.voice)     # same voice, still selected
        flat = [ph for w in words for ph in w]
        try:
            phones = phones_mod.map_words(words)
        except phones_mod.UnknownPhoneError as err:
            results.append({"utt": u.utt, "error": str(err)})
            continue
        # playing eSpeak's samples at native * warp Hz scales every frequency by warp
        source_rate = round(syn.sample_rate * u.warp)
        audio = _resample(syn.audio, source_rate, sample_rate)
        if u.echo_ms > 0:
            audio = _echo(audio, sample_rate, u.echo_ms, u.echo_gain)
        audio = np.clip(audio, -1.0, 32767 / 32768)
        path = os.path.join(out_dir, _wav_relpath(u))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        sf.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)   # no half-written wav survives an interruption
        results.append({
            "utt": u.utt, "phones": phones,
            "ipa": " ".join("_".join(w) for w in words),
            "dur": len(audio) / sample_rate,
            "ctm": _ctm(syn.events, flat, source_rate),
        })
    return results


# --------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------

def _write_split(out_dir, name, utts, results):
    d = os.path.join(out_dir, name)
    ok = [(u, r) for u, r in zip(utts, results) if "error" not in r]
    datadir.write_data_dir(
        d,
        wav_scp={u.utt: _wav_relpath(u) for u, _ in ok},
        text={u.utt: u.text for u, _ in ok},
        utt2spk={u.utt: u.spk for u, _ in ok},
        extra={
            "text.phn": {u.utt: r["phones"] for u, r in ok},
            "text.chr": {u.utt: " ".join(char_tokens(u.text)) for u, _ in ok},
            "text.ipa": {u.utt: r["ipa"] for u, r in ok},
            "utt2dur": {u.utt: f"{r['dur']:.3f}" for u, r in ok},
            "utt2synth": {u.utt: f"voice={u.voice} rate={u.rate} pitch={u.pitch} "
                                 f"range={u.pitch_range} volume={VOLUME} seed={u.seed} "
                                 f"warp={u.warp:.4f} echo={u.echo_ms}ms/{u.echo_gain:g}"
                          for u, _ in ok},
        })
    datadir.write_ctm(os.path.join(d, "phones.ctm"),
                    {u.utt: r["ctm"] for u, r in ok if r["ctm"] is not None})
    return ok


CORPUS_ENTRIES = ("wav", "train", "dev", "test", "voices", "phones.txt", "chars.txt",
                  "config.json", "summary.json", RECORD)   # RECORD: a recipe's .args


def _batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def build_corpus(out_dir, hours=3.0, seed=0, jobs=None, sample_rate=16000, n_words=10000,
                 accents=ACCENTS, split=DEFAULT_SPLIT, fractions=DEFAULT_FRACTIONS,
                 exclude_words=(), overwrite=False, batch_size=32, log=print,
                 random_variants=RANDOM_VARIANTS, **plan_kw):
    """Build the whole corpus into ``out_dir``.

    Parameters
    ----------
    out_dir : str
        Output root; receives ``train/ dev/ test/`` data dirs, ``wav/``,
        ``phones.txt``, ``chars.txt``, ``config.json`` and ``summary.json``.
    hours : float
        Target hours of audio in total (tiny values such as 0.002 give a few
        seconds, for tests).
    seed : int
        Seed of everything random.
    jobs : int, optional
        Worker processes (default: CPU count); 1 renders in this process.
    sample_rate : int
        Output rate; 16000 (default) or eSpeak's native 22050.
    n_words : int
        Candidate words taken from the top of the frequency list.
    accents, split, fractions
        See :func:`plan_corpus`.
    exclude_words : collection of str
        Words left out of the vocabulary.
    overwrite : bool
        Replace an existing corpus in ``out_dir`` (only the entries this
        function writes are removed).  Without it a non-empty ``out_dir`` is
        refused.  A rebuild is quick (the default 3 h take about half a
        minute), so there is no partial resume.
    batch_size : int
        Utterances per worker task.
    random_variants : int
        Random training voices (see :func:`random_variant`); their files
        are written to ``out_dir/voices/``.
    log : callable
        Receives progress and summary lines.
    **plan_kw
        Passed to :func:`plan_corpus` (``rate``, ``pitch`` ...).

    Returns
    -------
    dict
        The summary (also written to ``summary.json``).
    """
    if sample_rate not in (8000, 16000, 22050, 24000, 44100, 48000):
        raise ValueError(f"sample_rate must be a usual audio rate, got {sample_rate}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    jobs = jobs or os.cpu_count() or 1
    from . import espeak
    known = set(espeak.list_variants())
    unknown = sorted(v for vs in split.values() for v in vs if v not in known)
    if unknown:
        raise ValueError(f"split: variants unknown to eSpeak NG: {unknown}")
    if not isinstance(random_variants, (int, np.integer)) or random_variants < 0:
        raise ValueError(f"random_variants must be an integer >= 0, got {random_variants!r}")
    named = {v for vs in split.values() for v in vs}
    room = espeak.room_for_variants(named)
    if random_variants > room:
        raise ValueError(f"random_variants: eSpeak's voice list holds {room} more variants "
                         f"besides the {len(named)} named ones, not {random_variants}")
    prepare_out_dir(out_dir, overwrite, CORPUS_ENTRIES)
    t0 = time.perf_counter()
    voices = sorted(set(accents.values()))
    extra = random_variants_of(seed, random_variants)
    if extra:
        os.makedirs(os.path.join(out_dir, "voices"))
        for name, text in extra.items():
            with open(os.path.join(out_dir, "voices", name), "w", encoding="utf-8",
                      newline="\n") as f:
                f.write(text)
    work = tempfile.mkdtemp(prefix="ctcseq-espeak-")
    # only the named variants in the private directory: eSpeak's voice list is
    # short (see espeak.MAX_VOICES), and the random voices need the room
    espeak_data = espeak.data_with_variants(extra, work, keep=named) if extra else None
    # spawn, not fork: each worker must own a freshly initialised eSpeak.
    pool = (ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                                initializer=espeak.use_data_path, initargs=(espeak_data,))
            if jobs > 1 else None)
    if pool is None and espeak_data:
        espeak.use_data_path(espeak_data)
    try:
        vocab, dropped = build_vocabulary(n_words, voices, pool, exclude_words)
        t_vocab = time.perf_counter() - t0
        plan = plan_corpus(vocab, hours, seed, accents, split, fractions,
                           random_variants=random_variants, **plan_kw)
        batches = _batches(plan, batch_size)
        mapper = pool.map if pool is not None else map
        results = [r for rs in mapper(render, batches, [out_dir] * len(batches),
                                      [sample_rate] * len(batches)) for r in rs]
    finally:
        if pool is not None:
            pool.shutdown()
        elif espeak_data:
            espeak.use_data_path(None)
        shutil.rmtree(work, ignore_errors=True)
    t_synth = time.perf_counter() - t0 - t_vocab

    phones_mod.write_phone_list(os.path.join(out_dir, "phones.txt"))
    chars = sorted({c for u in plan for c in u.text if c != " "}) + [datadir.SPACE]
    with open(os.path.join(out_dir, "chars.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{c} {i}\n" for i, c in enumerate(chars, start=1))

    summary = {"seed": seed, "sample_rate": sample_rate, "vocabulary": len(vocab),
               "words_dropped": dict(sorted(dropped.items())), "splits": {}}
    phone_counts = Counter()
    errors = [r for r in results if "error" in r]
    for name in SPLITS:
        idx = [i for i, u in enumerate(plan) if u.split == name]
        if not idx:
            continue
        ok = _write_split(out_dir, name, [plan[i] for i in idx], [results[i] for i in idx])
        counts = Counter(p for _, r in ok for p in r["phones"])
        phone_counts.update(counts)
        summary["splits"][name] = {
            "hours": round(sum(r["dur"] for _, r in ok) / 3600, 4),
            "utterances": len(ok),
            "speakers": len({u.spk for u, _ in ok}),
            "variants": sorted({u.voice.split("+", 1)[1] for u, _ in ok}),
            "phones": sum(counts.values()),
            "without_alignment": sum(r["ctm"] is None for _, r in ok),
        }
    total = sum(phone_counts.values())
    summary["unmapped_utterances"] = [f"{r['utt']}: {r['error']}" for r in errors]
    summary["phone_share"] = {p: round(phone_counts[p] / max(total, 1), 5) for p in phones_mod.PHONES}
    write_json(os.path.join(out_dir, "summary.json"), summary)
    cfg = {"hours": hours, "seed": seed, "sample_rate": sample_rate, "n_words": n_words,
           "random_variants": random_variants,
           "exclude_words": sorted(exclude_words),
           "accents": accents, "split": {k: list(v) for k, v in split.items()},
           "fractions": list(fractions), **{k: list(v) if isinstance(v, tuple) else v
                                            for k, v in plan_kw.items()}}
    write_json(os.path.join(out_dir, "config.json"), cfg)
    for line in _summary_lines(summary, phone_counts, jobs, t_vocab, t_synth):
        log(line)
    return summary


def _summary_lines(summary, phone_counts, jobs, t_vocab, t_synth):
    yield (f"vocabulary: {summary['vocabulary']} words "
           f"(dropped: {', '.join(f'{k} {v}' for k, v in summary['words_dropped'].items()) or 'none'})")
    for name, s in summary["splits"].items():
        yield (f"{name:5s}: {format_duration(s['hours'] * 3600)}, "
               f"{s['utterances']} utterances, "
               f"{s['speakers']} speakers (accent+variant; {len(s['variants'])} variants), "
               f"{s['phones']} phones, {s['without_alignment']} without alignment")
    if summary["unmapped_utterances"]:
        yield f"left out, unmapped phonemes: {len(summary['unmapped_utterances'])}"
        for e in summary["unmapped_utterances"][:5]:
            yield f"  {e}"
    common = ", ".join(f"{p} {n}" for p, n in phone_counts.most_common(5))
    rare = ", ".join(f"{p} {phone_counts[p]}" for p in sorted(phones_mod.PHONES, key=lambda p: phone_counts[p])[:5])
    yield f"phones: {len(phones_mod.PHONES)} in inventory; most frequent {common}; rarest {rare}"
    yield f"time: vocabulary {t_vocab:.1f} s, synthesis {t_synth:.1f} s with {jobs} process(es)"


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def _int_range(text):
    lo, _, hi = text.partition(":")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH integers, got {text!r}") from None


def _fractions(text):
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected TRAIN,DEV,TEST shares, got {text!r}")
    return parts


def _parser(prog="ctcseq prepare synth"):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output directory (corpus root); required unless --list-voices")
    ap.add_argument("--hours", type=float, default=3.0, help="total hours of audio (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPUs)")
    ap.add_argument("--sample-rate", type=int, default=16000, help="output rate in Hz (default 16000)")
    ap.add_argument("--words", type=int, default=10000, help="candidate vocabulary size (default 10000)")
    ap.add_argument("--fractions", type=_fractions, default=DEFAULT_FRACTIONS,
                    help="train,dev,test shares of hours (default 0.8,0.1,0.1)")
    ap.add_argument("--rate", type=_int_range, default=(130, 220), help="words/minute LOW:HIGH")
    ap.add_argument("--pitch", type=_int_range, default=(25, 75), help="eSpeak pitch LOW:HIGH (0..100)")
    ap.add_argument("--pitch-range", type=_int_range, default=(20, 80), help="intonation range LOW:HIGH")
    ap.add_argument("--sentence-words", type=_int_range, default=(4, 12), help="words per sentence LOW:HIGH")
    ap.add_argument("--accents", default=",".join(ACCENTS),
                    help="comma-separated subset of: " + ", ".join(ACCENTS))
    for name in SPLITS:
        ap.add_argument(f"--{name}-variants", default=None,
                        help=f"comma-separated eSpeak variants for {name} (default: built-in list)")
    ap.add_argument("--exclude-words", default=None,
                    help="file of words (one a line) never to use")
    ap.add_argument("--random-variants", type=int, default=RANDOM_VARIANTS,
                    help=f"random eSpeak voices added to training (default {RANDOM_VARIANTS})")
    ap.add_argument("--no-augment", action="store_true",
                    help="no warp or echo on training utterances (see the module docstring)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace a corpus already in --out")
    ap.add_argument("--list-voices", action="store_true", help="print accents and variants, then exit")
    return ap


def main(argv=None, prog="ctcseq prepare synth"):
    """Command-line entry: ``ctcseq prepare synth --out DIR ...`` (or
    ``python -m data_prep.synth``).

    Bad arguments raise ValueError (``ctcseq prepare`` and ``python -m``
    turn it into one line on stderr and exit status 2)."""
    args = _parser(prog).parse_args(argv)
    if args.list_voices:
        from .espeak import list_variants
        print("accents:", " ".join(f"{k}={v}" for k, v in ACCENTS.items()))
        for name in SPLITS:
            print(f"{name}:", " ".join(DEFAULT_SPLIT[name]))
        print("all variants:", " ".join(list_variants()))
        return 0
    if not args.out:
        raise ValueError("--out is required")
    unknown = [a for a in args.accents.split(",") if a not in ACCENTS]
    if unknown:
        raise ValueError(f"--accents: unknown {unknown}; choose from {list(ACCENTS)}")
    accents = {a: ACCENTS[a] for a in args.accents.split(",")}
    split = {name: tuple(getattr(args, f"{name}_variants").split(","))
             if getattr(args, f"{name}_variants") else DEFAULT_SPLIT[name] for name in SPLITS}
    exclude = ()
    if args.exclude_words:
        with open(args.exclude_words, encoding="utf-8") as f:
            exclude = {w.strip().lower() for w in f if w.strip()}
    _build_from_args(args, accents, split, exclude)
    return 0


def _build_from_args(args, accents, split, exclude):
    build_corpus(args.out, hours=args.hours, seed=args.seed, jobs=args.jobs, exclude_words=exclude,
                 overwrite=args.overwrite,
                 sample_rate=args.sample_rate, n_words=args.words, accents=accents,
                 split=split, fractions=args.fractions, rate=args.rate, pitch=args.pitch,
                 pitch_range=args.pitch_range, words_per_sentence=args.sentence_words,
                 augment=not args.no_augment, random_variants=args.random_variants)


if __name__ == "__main__":
    # Re-import so worker processes pickle data_prep.synth.render, not __main__.render.
    from data_prep.folder import run_cli
    from data_prep.synth import main as _main
    sys.exit(run_cli(lambda argv: _main(argv, prog="python -m data_prep.synth")))
