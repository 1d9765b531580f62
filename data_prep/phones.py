"""Fixed phone inventory and the eSpeak IPA -> phone mapping.

The inventory is the 39 phones of the CMU Pronouncing Dictionary (ARPAbet,
written lower case, stress dropped) plus ``dx`` for the alveolar flap that
eSpeak's American voices produce in "better" and "water": 40 phones.
ASCII names keep the Kaldi files readable and easy to edit, and CMUdict /
TIMIT users know them.

Every English accent eSpeak NG ships (en-us, en-us-nyc, en (GB), en-gb-x-rp,
en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd, en-029) writes its own IPA
phoneme names; :data:`IPA_TO_PHONES` maps each of them to one or more phones
by *phonetic quality* (what the audio contains), not by the standard
(CMUdict) spelling of the word.  The treatment of the awkward cases:

stress marks (ˈ ˌ)
    Dropped: lexical stress is not a phone identity here.
length marks (ː, and the ASCII ':' one eSpeak voice emits)
    Kept in the lookup key because eSpeak uses them to tell phonemes apart
    (Scottish ``e`` vs ``eː``); ':' is read as 'ː' and doubled 'ːː' as one.
tie bars (U+0361, U+035C)
    Removed; eSpeak segments affricates and diphthongs itself (the binding
    asks for a phoneme separator), so ``dʒ`` and ``aɪ`` arrive as one unit.
diphthongs
    One phone where ARPAbet has one (``aɪ`` -> ay, ``əʊ`` -> ow ...).
    Centring diphthongs of non-rhotic accents become vowel + ah
    (``eə`` -> eh ah, ``aɪə`` -> ay ah); r-coloured ones of rhotic accents
    become vowel + r (``ɑːɹ`` -> aa r) or er, and the ``r r`` this gives
    before an onset /r/ is collapsed (:func:`expand`).
syllabic consonants
    ah + consonant, as CMUdict writes them (``əl``/``l̩`` -> ah l,
    ``n̩`` -> ah n).
glottal stop, dental stops
    ``ʔ`` -> t (eSpeak uses it for a glottalled /t/), ``t̪``/``d̪`` -> t/d.
word boundaries
    Not a phone: transcripts keep words apart only in the raw IPA file;
    phone transcripts are a flat sequence (CTC targets).

Anything not in the table raises :class:`UnknownPhoneError` (never silently
dropped); the corpus builder leaves out words containing such symbols and
reports how many.
"""
from __future__ import annotations

import unicodedata

__all__ = ["PHONES", "IPA_TO_PHONES", "UnknownPhoneError", "normalize_ipa",
           "ipa_to_phones", "expand", "map_words", "write_phone_list", "read_phone_list"]

# Inventory, in ARPAbet order (vowels, then consonants).  Index = line number
# in phones.txt; the CTC blank is *not* part of it (the model adds its own).
PHONES = (
    "aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow",
    "oy", "uh", "uw",
    "b", "ch", "d", "dh", "dx", "f", "g", "hh", "jh", "k", "l", "m", "n", "ng",
    "p", "r", "s", "sh", "t", "th", "v", "w", "y", "z", "zh",
)

# eSpeak IPA phoneme (after normalize_ipa) -> phones.  Comments give the
# accent/word where eSpeak NG 1.52 produces it, from phonemising the 20k most
# frequent wordfreq English words with each English voice.
IPA_TO_PHONES = {
    # --- monophthongs ---
    "ɪ": ("ih",), "ᵻ": ("ih",),          # ᵻ: reduced vowel of "houses"
    "ɪʲ": ("ih",),                        # en-gb-scotland, rare
    "i": ("iy",), "iː": ("iy",),          # i: happy-tensing, "only"
    "ɛ": ("eh",), "e": ("eh",),           # e: en-gb-scotland "were"
    "eː": ("ey",), "eʲ": ("ey",),         # Scottish FACE monophthong
    "æ": ("ae",), "a": ("ae",),           # a: GB / Scottish / Caribbean TRAP
    "ɑ": ("aa",), "ɑː": ("aa",), "aː": ("aa",), "aa": ("aa",),  # aa: en-029 "after"
    "ɒ": ("aa",),                         # GB LOT, CMUdict writes AA
    "ɔ": ("ao",), "ɔː": ("ao",),
    "o": ("ow",), "oː": ("ow",),          # Scottish GOAT monophthong
    "ʊ": ("uh",),
    "u": ("uw",), "uː": ("uw",), "ʉ": ("uw",), "ʉː": ("uw",),  # ʉ: Scottish
    "ʌ": ("ah",), "ə": ("ah",), "ɐ": ("ah",),
    "ɜ": ("er",), "ɜː": ("er",), "ɚ": ("er",), "ɝ": ("er",),
    "əɹ": ("er",), "ʌɹ": ("er",),         # Scottish NURSE ("first", "work")
    "əɪ": ("er",),                        # en-us-nyc NURSE ("were")
    # --- closing diphthongs ---
    "eɪ": ("ey",), "ei": ("ey",),         # ei: en-gb-x-gbcwmd FLEECE ("be")
    "aɪ": ("ay",),
    "ɔɪ": ("oy",), "oɪ": ("oy",),
    "aʊ": ("aw",), "æʊ": ("aw",), "ʌʉ": ("aw",),   # Lancaster / Scottish MOUTH
    "oʊ": ("ow",), "əʊ": ("ow",), "ʌʊ": ("ow",),
    "əu": ("ow",),                        # en-gb-x-gbcwmd GOOSE ("to")
    # --- centring and r-coloured diphthongs, triphthongs ---
    "iə": ("iy", "ah"), "ɪə": ("ih", "ah"),
    "eə": ("eh", "ah"), "ɛə": ("eh", "ah"),
    "ʊə": ("uh", "ah"), "oə": ("ow", "ah"), "ɔə": ("ao", "ah"),
    "ɑə": ("aa", "ah"),                   # en-029 "are"
    "aɪə": ("ay", "ah"), "aʊə": ("aw", "ah"),
    "ɑːɹ": ("aa", "r"), "ɔːɹ": ("ao", "r"), "ɛɹ": ("eh", "r"),
    "ɪɹ": ("ih", "r"), "ʊɹ": ("uh", "r"), "ʉɹ": ("uw", "r"),
    "aɪɚ": ("ay", "er"),
    # --- syllabic consonants ---
    "əl": ("ah", "l"), "l̩": ("ah", "l"), "n̩": ("ah", "n"), "m̩": ("ah", "m"),
    # --- consonants ---
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",),
    "ɡ": ("g",), "g": ("g",),
    "t̪": ("t",), "d̪": ("d",),            # en-029 TH-stopping
    "ʔ": ("t",),                          # glottalled /t/ ("certain")
    "ɾ": ("dx",),                         # American flap ("better")
    "tʃ": ("ch",), "dʒ": ("jh",),
    "f": ("f",), "v": ("v",), "θ": ("th",), "ð": ("dh",),
    "s": ("s",), "z": ("z",), "ʃ": ("sh",), "ʒ": ("zh",), "h": ("hh",),
    "m": ("m",), "n": ("n",), "ŋ": ("ng",),
    "l": ("l",), "ɹ": ("r",), "r": ("r",),
    "w": ("w",), "ʍ": ("w",), "j": ("y",),
}

_STRESS = "ˈˌ"
_TIES = "\u0361\u035c"


class UnknownPhoneError(ValueError):
    """An eSpeak phoneme has no entry in :data:`IPA_TO_PHONES`.

    Attributes
    ----------
    symbol : str
        The normalised phoneme that was not found.
    """

    def __init__(self, symbol, context=""):
        self.symbol = symbol
        where = f" in {context!r}" if context else ""
        super().__init__(f"unknown IPA phoneme {symbol!r} "
                         f"(code points {' '.join(f'U+{ord(c):04X}' for c in symbol)}){where}; "
                         "add it to data_prep.phones.IPA_TO_PHONES")


def normalize_ipa(phoneme):
    """Normalise one eSpeak IPA phoneme into a lookup key.

    NFC-normalises, removes stress marks and tie bars, reads ASCII ':' as
    'ː' and collapses a doubled length mark.

    Examples
    --------
    >>> normalize_ipa("ˈa:")
    'aː'
    >>> normalize_ipa("d͡ʒ")
    'dʒ'
    """
    if not isinstance(phoneme, str):
        raise ValueError(f"phoneme must be a str, got {type(phoneme).__name__}")
    key = unicodedata.normalize("NFC", phoneme)
    key = "".join(c for c in key if c not in _STRESS and c not in _TIES)
    key = key.replace(":", "ː")
    while "ːː" in key:
        key = key.replace("ːː", "ː")
    return key


def ipa_to_phones(phoneme):
    """Phones for one eSpeak IPA phoneme.

    Raises
    ------
    UnknownPhoneError
        If the normalised phoneme is not in :data:`IPA_TO_PHONES`.

    Examples
    --------
    >>> ipa_to_phones("ˈaɪə")
    ('ay', 'ah')
    """
    key = normalize_ipa(phoneme)
    try:
        return IPA_TO_PHONES[key]
    except KeyError:
        raise UnknownPhoneError(key, phoneme) from None


def expand(phonemes):
    """Map a flat sequence of eSpeak phonemes to ``(phone, source_index)`` pairs.

    eSpeak writes an r-coloured vowel followed by an onset /r/ ("security":
    ``ʊɹ`` ``ɹ``), which would give ``r r``; such a repeated ``r`` is
    collapsed into one, since the audio holds a single /r/.

    Raises
    ------
    UnknownPhoneError
        On the first phoneme without a mapping.
    """
    out = []
    prev = ()
    for i, ph in enumerate(phonemes):
        mapped = ipa_to_phones(ph)
        # Only an /r/ onset right after an r-coloured vowel (vowel + r) merges.
        skip = mapped[0] == "r" and len(prev) > 1 and prev[-1] == "r"
        out.extend((phone, i) for phone in mapped[1 if skip else 0:])
        prev = mapped
    return out


def map_words(words):
    """Map eSpeak's per-word phonemes into one flat phone sequence.

    Parameters
    ----------
    words : list of list of str
        As returned by :meth:`data_prep.espeak.Engine.phonemize`.

    Returns
    -------
    list of str

    Raises
    ------
    UnknownPhoneError
        On the first phoneme without a mapping.
    """
    return [phone for phone, _ in expand([ph for word in words for ph in word])]


def write_phone_list(path, phones=PHONES):
    """Write ``phones.txt``: one ``<phone> <index>`` line per phone (Kaldi style).

    Indices start at 1 so that 0 stays free for the CTC blank.
    """
    if len(set(phones)) != len(phones):
        raise ValueError("phones must be unique")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i, p in enumerate(phones, start=1):
            f.write(f"{p} {i}\n")


def read_phone_list(path):
    """Read a file written by :func:`write_phone_list`; returns the phones in order."""
    phones = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if len(parts) != 2 or parts[1] != str(n):
                raise ValueError(f"path {path}: line {n} is not '<phone> {n}': {line!r}")
            phones.append(parts[0])
    return tuple(phones)


def _check_table():
    bad = {k: v for k, v in IPA_TO_PHONES.items() if not v or set(v) - set(PHONES)}
    if bad:
        raise AssertionError(f"IPA_TO_PHONES maps outside PHONES: {bad}")


_check_table()
