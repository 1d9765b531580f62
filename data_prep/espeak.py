"""Small ctypes binding to the eSpeak NG library shipped by ``espeakng-loader``.

Only what the corpus builder needs is bound: initialise once per process,
choose a voice (language plus optional variant, e.g. ``"en-us+f3"``),
synthesise text with a speaking rate and pitch into float32 mono audio at the
library's native rate (22050 Hz), transcribe text into IPA phonemes with the
same voice, and collect the per-phoneme timing events the synthesiser reports.

The library keeps global state and is not re-entrant, so there is exactly one
engine per process (:func:`get_engine`); use a process pool, not threads, to
synthesise in parallel.  Nothing is downloaded: the shared library and its
``espeak-ng-data`` directory are both inside the installed wheel.

Examples
--------
>>> from data_prep.espeak import get_engine
>>> eng = get_engine()
>>> out = eng.synthesize("hello world", voice="en-us+f3", rate=160)
>>> out.audio.dtype, out.sample_rate
(dtype('float32'), 22050)
>>> eng.phonemize("hello world", voice="en-us")
[['h', 'ə', 'l', 'ˈoʊ'], ['w', 'ˈɜː', 'l', 'd']]
"""
from __future__ import annotations

import _ctypes
import atexit
import ctypes
import functools
import os
import shutil
import tempfile
import threading
import unicodedata
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EspeakError", "PhonemeEvent", "Synthesis", "Engine", "get_engine",
    "list_languages", "list_variants", "data_path", "data_with_variants", "use_data_path",
]

# espeak_AUDIO_OUTPUT: deliver audio to the callback, return when done.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options: phoneme events, as IPA, and never exit() the
# process on a fatal error (report it through the return value instead).
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
# espeak_Synth flags: UTF-8 text, pause at the end of the text.
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
# espeak_EVENT_TYPE
_EV_END_OF_LIST, _EV_WORD, _EV_END, _EV_MSG_TERMINATED, _EV_PHONEME = 0, 1, 5, 6, 7
# espeak_TextToPhonemes phonememode: bit 1 = IPA; bits 8-23 = separator
# between phonemes (eSpeak's own segmentation, so 'aɪ' or 'dʒ' stay whole).
_PHONEME_SEP = "_"
_IPA_MODE = 0x02 | (ord(_PHONEME_SEP) << 8)

RATE_RANGE = (80, 450)    # words per minute, as accepted by eSpeak NG
PITCH_RANGE = (0, 100)    # eSpeak's 0..100 scale, 50 is the voice default


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded or reported a failure."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # Mirrors espeak_EVENT in speak_lib.h.
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


class _Voice(ctypes.Structure):
    # Mirrors espeak_VOICE in speak_lib.h.
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int),
                ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                             ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme as actually synthesised.

    Attributes
    ----------
    phoneme : str
        IPA name of the phoneme, stress mark attached to the vowel as eSpeak
        writes it (e.g. ``'ˈaɪ'``).
    sample : int
        Start of the phoneme in samples at the native rate.
    end : int
        End of the phoneme: start of the next phoneme or pause.
    word : int
        Index of the word (0-based) the phoneme belongs to.
    """

    phoneme: str
    sample: int
    end: int
    word: int


@dataclass
class Synthesis:
    """Result of :meth:`Engine.synthesize`.

    Attributes
    ----------
    audio : numpy.ndarray
        float32 mono samples in [-1, 1) at ``sample_rate``.
    sample_rate : int
        Native rate of the library (22050 Hz).
    events : list of PhonemeEvent
        Phonemes in the order they were spoken, pauses left out.
    """

    audio: np.ndarray
    sample_rate: int
    events: list = field(default_factory=list)


_DATA_OVERRIDE = None


def data_path():
    """Path of the ``espeak-ng-data`` directory in use: the one shipped by
    ``espeakng-loader``, or the one set by :func:`use_data_path`.

    Raises
    ------
    EspeakError
        If ``espeakng_loader`` is not installed or its data is missing.
    """
    if _DATA_OVERRIDE is not None:
        return _DATA_OVERRIDE
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakError("espeakng-loader is not installed; "
                          "pip install espeakng-loader") from err
    path = espeakng_loader.get_data_path()   # raises RuntimeError if absent
    if not os.path.isdir(path):
        raise EspeakError(f"eSpeak NG data directory missing: {path}")
    return path


def _link_or_copy(src, dst):
    try:
        os.symlink(src, dst, target_is_directory=os.path.isdir(src))
    except (OSError, NotImplementedError):     # no symlinks (e.g. Windows without rights)
        (shutil.copytree if os.path.isdir(src) else shutil.copyfile)(src, dst)


# eSpeak NG's voice list holds 348 entries (language files and variants
# together; measured, N_VOICES_LIST is 350) and silently drops the rest,
# languages included: a language missing from the list can't be selected.
MAX_VOICES = 348


def _count_files(path):
    return sum(len(files) for _, _, files in os.walk(path))


def room_for_variants(keep=None):
    """How many new variants :func:`data_with_variants` can add while keeping
    the shipped variants ``keep`` (default: all)."""
    src = data_path()
    n_kept = len(os.listdir(os.path.join(src, "voices", "!v"))) if keep is None else len(set(keep))
    return MAX_VOICES - _count_files(os.path.join(src, "lang")) - n_kept


def data_with_variants(variants, work_dir, keep=None):
    """A data directory that is the shipped one plus extra voice variants.

    eSpeak looks variants up by name in ``<data>/voices/!v`` only (a path in
    the name is not followed), so new ones need a data directory of their
    own.  This builds it under ``work_dir``: links to every shipped entry,
    with ``voices/!v`` a real directory holding links to the shipped
    variants and the new files.

    Parameters
    ----------
    variants : dict of str to str
        Variant name -> contents of its file (eSpeak's voice-file syntax:
        ``pitch``, ``formant``, ``voicing`` ... lines).
    work_dir : str
        Empty or new directory; receives ``espeak-ng-data/``.
    keep : iterable of str, optional
        The shipped variants to keep (default: all).  eSpeak lists at most
        348 voices, languages and variants together; leaving out the
        shipped variants a corpus does not use makes room for new ones.

    Returns
    -------
    str
        The new data directory, for :func:`use_data_path`.
    """
    src = data_path()
    shipped = os.listdir(os.path.join(src, "voices", "!v"))
    clash = sorted(set(variants) & set(shipped))
    if clash:
        raise ValueError(f"variants: names already used by eSpeak's own variants: {clash}")
    for name in variants:
        if not name or len(name) > 20 or not name.replace("_", "").isalnum():
            raise ValueError(f"variants: names must be 1-20 letters, digits or _, got {name!r}")
    if keep is not None:
        keep = set(keep)
        unknown = sorted(keep - set(shipped))
        if unknown:
            raise ValueError(f"keep: not variants of eSpeak NG: {unknown}")
        shipped = [name for name in shipped if name in keep]
    room = room_for_variants(shipped)
    if len(variants) > room:
        raise ValueError(f"variants: eSpeak lists at most {MAX_VOICES} voices: with "
                         f"{len(shipped)} shipped variants kept, {room} new ones fit, not "
                         f"{len(variants)}")
    dst = os.path.join(work_dir, "espeak-ng-data")
    os.makedirs(os.path.join(dst, "voices", "!v"))
    for name in os.listdir(src):
        if name != "voices":
            _link_or_copy(os.path.join(src, name), os.path.join(dst, name))
    for name in os.listdir(os.path.join(src, "voices")):
        if name != "!v":
            _link_or_copy(os.path.join(src, "voices", name), os.path.join(dst, "voices", name))
    for name in shipped:
        _link_or_copy(os.path.join(src, "voices", "!v", name),
                      os.path.join(dst, "voices", "!v", name))
    for name, text in variants.items():
        with open(os.path.join(dst, "voices", "!v", name), "w", encoding="utf-8") as f:
            f.write(text)
    return dst


def use_data_path(path):
    """Use the data directory ``path`` in this process from now on (None: the
    shipped one); an engine already running is re-initialised with it."""
    global _DATA_OVERRIDE
    if path is not None and not os.path.isdir(os.path.join(path, "voices")):
        raise EspeakError(f"not an eSpeak NG data directory: {path}")
    _DATA_OVERRIDE = path
    _variants.cache_clear()
    if _ENGINE is not None and _ENGINE_PID == os.getpid():
        _ENGINE.reset()


def _private_copy(path):
    """Copy the shared library into a per-process temporary directory.

    A private copy (own inode, own handle) makes :meth:`Engine.reset` really
    unload it even if a parent process loaded the original before ``fork``,
    and spares concurrent workers from contending on one file's mappings
    (each reload maps it afresh; on a shared file two workers ran at half
    speed).
    """
    tmp = tempfile.mkdtemp(prefix=f"espeak-{os.getpid()}-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    dst = os.path.join(tmp, os.path.basename(path))
    shutil.copyfile(path, dst)
    return dst


def _load_library(path=None):
    """Load the eSpeak NG library (``path`` or the one ``espeakng-loader`` ships)."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakError("espeakng-loader is not installed; "
                          "pip install espeakng-loader") from err
    path = path or espeakng_loader.get_library_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as err:
        raise EspeakError(f"cannot load the eSpeak NG library {path}: {err}") from err
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_Terminate.restype = ctypes.c_int
    return lib


class Engine:
    """The process-wide eSpeak NG instance; obtain it with :func:`get_engine`.

    Calls are serialised by a lock because the library is not re-entrant.
    The engine loads a private copy of the shared library (see
    :func:`_private_copy`); the data directory is used in place.

    Attributes
    ----------
    sample_rate : int
        Native output rate reported by ``espeak_Initialize`` (22050 Hz).
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._voice = None
        self._chunks = []
        self._events = []
        # Keep a reference: ctypes frees the trampoline with the Python object.
        self._callback = _CALLBACK(self._on_audio)
        self._libc = ctypes.CDLL(None) if os.name == "posix" else None
        self._lib = None
        self._path = None
        self._open()

    def _open(self):
        if self._path is None:
            try:
                import espeakng_loader
                self._path = _private_copy(espeakng_loader.get_library_path())
            except (ImportError, OSError):
                self._path = None       # _load_library reports a missing package
        self._lib = _load_library(self._path)
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path().encode(),
                                           _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate})")
        self.sample_rate = rate
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice = None

    def reset(self):
        """Reload the library so the next synthesis starts from a clean state.

        eSpeak keeps static state between calls (e.g. the phase of its pitch
        flutter), so the same call gives slightly different audio depending
        on what the process spoke before; ``espeak_Initialize`` does not
        clear it, unloading the library does (about 1 ms).  Where the
        platform cannot unload a library this only re-initialises.
        """
        with self._lock:
            self._lib.espeak_Terminate()
            close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
            if close is not None:
                close(self._lib._handle)
            self._open()

    def _on_audio(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EV_END_OF_LIST:
            ev = events[i]
            if ev.type == _EV_WORD:
                self._events.append(("word", ev.sample, ""))
            elif ev.type == _EV_PHONEME:
                # An empty name is a pause; kept as the end of the phoneme before.
                self._events.append(("phoneme", ev.sample, ev.id.string.decode("utf-8", "replace")))
            elif ev.type == _EV_END:
                self._events.append(("phoneme", ev.sample, ""))
            i += 1
        return 0    # 0 = continue synthesis

    def set_voice(self, voice):
        """Select a voice such as ``"en-us"`` or ``"en-gb-scotland+klatt"``.

        Raises
        ------
        ValueError
            If eSpeak does not know ``voice``.
        """
        if voice == self._voice:
            return
        if not isinstance(voice, str) or not voice:
            raise ValueError(f"voice must be a non-empty string, got {voice!r}")
        _, plus, variant = voice.partition("+")
        # eSpeak silently ignores an unknown variant; refuse it instead.
        if plus and variant not in list_variants():
            raise ValueError(f"voice {voice!r}: unknown variant {variant!r}")
        status = self._lib.espeak_SetVoiceByName(voice.encode())
        if status != 0:
            raise ValueError(f"voice {voice!r} unknown to eSpeak NG (status {status})")
        self._voice = voice

    def synthesize(self, text, voice, rate=175, pitch=50, pitch_range=50, volume=100, seed=0,
                   fresh=True):
        """Speak ``text`` and return the audio and the phonemes spoken.

        Parameters
        ----------
        text : str
            Plain text (no SSML).
        voice : str
            eSpeak voice name, optionally with ``+variant``.
        rate : int
            Speaking rate in words per minute, within :data:`RATE_RANGE`.
        pitch, pitch_range : int
            Base pitch and intonation range on eSpeak's 0..100 scale.
        volume : int
            Amplitude on eSpeak's 0..200 scale; some variants clip at the
            default 100.
        seed : int
            Seed of eSpeak's noise generators (its own and libc's ``rand``,
            which its Klatt voices use).
        fresh : bool
            Call :meth:`reset` first, so the audio depends only on the
            arguments, not on what this process synthesised before.

        Returns
        -------
        Synthesis
        """
        if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
            raise ValueError(f"rate must be in {RATE_RANGE} words/minute, got {rate}")
        for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
            if not PITCH_RANGE[0] <= value <= PITCH_RANGE[1]:
                raise ValueError(f"{name} must be in {PITCH_RANGE}, got {value}")
        if not 0 <= volume <= 200:
            raise ValueError(f"volume must be in (0, 200), got {volume}")
        data = text.encode("utf-8") + b"\0"
        with self._lock:
            if fresh:
                self.reset()
            self.set_voice(voice)
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range),
                                 (_VOLUME, volume)):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            if self._libc is not None:
                self._libc.srand(int(seed) & 0x7FFFFFFF)
            self._chunks, self._events = [], []
            status = self._lib.espeak_Synth(data, len(data), 0, 0, 0,
                                            _CHARS_UTF8 | _ENDPAUSE, None, None)
            if status != 0:
                raise EspeakError(f"espeak_Synth failed with status {status} for {text!r}")
            self._lib.espeak_Synchronize()
            chunks, raw = self._chunks, self._events
            self._chunks, self._events = [], []
        audio = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16))
        events = _phoneme_events(raw, len(audio))
        return Synthesis(audio.astype(np.float32) / 32768.0, self.sample_rate, events)

    def phonemize(self, text, voice):
        """Transcribe ``text`` into IPA phonemes with ``voice``'s language rules.

        Returns
        -------
        list of list of str
            One list per word, each phoneme one string as eSpeak segments it
            (stress marks attached to the following vowel).
        """
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        clauses = []
        with self._lock:
            self.set_voice(voice)
            # One call per clause; eSpeak advances ptr and sets it to NULL at the end.
            while ptr.value:
                out = self._lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _IPA_MODE)
                if out:
                    clauses.append(out.decode("utf-8"))
        return [[p for p in word.split(_PHONEME_SEP) if p]
                for clause in clauses for word in clause.split()]

    def list_languages(self):
        """Language voices as ``(identifier, name, language)`` tuples."""
        with self._lock:
            arr = self._lib.espeak_ListVoices(None)
            out, i = [], 0
            while arr[i]:
                v = arr[i].contents
                # languages: repeated (priority byte, NUL-terminated name); take the first.
                lang = ctypes.string_at(v.languages)[1:].decode()
                out.append((v.identifier.decode(), v.name.decode(), lang))
                i += 1
        return out


def _is_modifier(name):
    return all(unicodedata.category(c) in ("Lm", "Mn") for c in name)


def _phoneme_events(raw, n_samples):
    """Turn raw ``(kind, sample, name)`` callback records into PhonemeEvents.

    A phoneme ends where the next phoneme or pause starts.  A name made only
    of modifier letters (eSpeak reports Scottish 'eʲ' as 'e' then 'ʲ') is
    merged into the phoneme before, so events match ``phonemize``.
    """
    events, word = [], -1
    open_ = None                           # [name, start, word] awaiting its end
    for kind, sample, name in raw:
        if kind == "word":
            word += 1
            continue
        if name and open_ is not None and _is_modifier(name):
            open_[0] += name
            continue
        if open_ is not None:
            events.append(PhonemeEvent(open_[0], open_[1], sample, open_[2]))
            open_ = None
        if name:
            open_ = [name, sample, max(word, 0)]
    if open_ is not None:
        events.append(PhonemeEvent(open_[0], open_[1], n_samples, open_[2]))
    return events


_ENGINE = None
_ENGINE_PID = None


def get_engine():
    """The eSpeak engine of this process, initialised on first use.

    A forked child re-initialises its own (the parent's state is not shared
    safely across ``fork``).

    Raises
    ------
    EspeakError
        If the library cannot be loaded or initialised.
    """
    global _ENGINE, _ENGINE_PID
    if _ENGINE is None or _ENGINE_PID != os.getpid():
        _ENGINE, _ENGINE_PID = Engine(), os.getpid()
    return _ENGINE


def list_languages():
    """Language voices known to eSpeak, see :meth:`Engine.list_languages`."""
    return get_engine().list_languages()


@functools.lru_cache(maxsize=1)
def _variants():
    vdir = os.path.join(data_path(), "voices", "!v")
    return tuple(sorted(f for f in os.listdir(vdir) if os.path.isfile(os.path.join(vdir, f))))


def list_variants():
    """Names of the voice variants (``+name`` suffixes) shipped with the data."""
    return list(_variants())
