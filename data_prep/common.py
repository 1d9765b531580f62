"""Small helpers the corpus builders share (:mod:`data_prep.synth`,
:mod:`data_prep.timit`, :mod:`data_prep.librispeech`, :mod:`data_prep.folder`):
ids and character tokens, audio headers, the output directory, reports and
the command-line wrapper."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

from ctcseq import datadir

__all__ = ["AUDIO_EXTENSIONS", "RECORD", "sanitize_id", "char_tokens", "chars_inventory",
           "audio_info", "read_text_lines", "spread_over_speakers", "readable_subset",
           "prepare_out_dir", "write_json", "examples", "report", "run_cli"]

# Extensions of the formats libsndfile reads (lower case, without the dot).
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "oga", "opus", "mp3", "sph", "nist", "aiff", "aif",
                    "au", "snd", "w64", "caf")
_SHOW = 5   # names shown when reporting unmatched files
# What the recipes (recipes/lib/stage.sh) record in an output directory: the
# arguments it was made from.  Builders list it among their own entries, so
# that --overwrite removes it (a record of other arguments must not survive).
RECORD = ".args"


def sanitize_id(name):
    """An utterance/speaker id from a name: whitespace -> ``_``, ``/`` -> ``-``."""
    out = re.sub(r"\s+", "_", name.strip()).replace("/", "-").replace("\\", "-")
    if not out:
        raise ValueError(f"cannot make an id of the empty name {name!r}")
    return out


def char_tokens(text, lower=True):
    """Character tokens of a word string, ``<space>`` between words.

    >>> char_tokens("Hi  there")
    ['h', 'i', '<space>', 't', 'h', 'e', 'r', 'e']
    """
    words = (text.lower() if lower else text).split()
    out = []
    for i, word in enumerate(words):
        if i:
            out.append(datadir.SPACE)
        out.extend(word)
    return out


def chars_inventory(token_lists):
    """Sorted characters seen, then ``<space>`` (the layout of synth's chars.txt)."""
    seen = {t for toks in token_lists for t in toks if t != datadir.SPACE}
    return sorted(seen) + [datadir.SPACE]


def audio_info(paths, jobs=4):
    """Duration and sample rate of audio files, read from their headers.

    Parameters
    ----------
    paths : iterable of str
    jobs : int
        Threads (the work is file-system latency, not CPU).

    Returns
    -------
    dict of str -> (float, int) or str
        ``(seconds, sample_rate)``, or the error message of an unreadable file.
    """
    import soundfile as sf

    def one(path):
        try:
            info = sf.info(path)
        except Exception as e:  # soundfile raises several types; all mean "cannot read"
            return path, f"cannot read audio ({e})"
        if info.frames <= 0:
            return path, "empty audio (0 samples)"
        return path, (info.frames / info.samplerate, info.samplerate)

    paths = list(paths)
    if jobs <= 1 or len(paths) < 2:
        return dict(map(one, paths))
    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, paths))


def read_text_lines(path, encoding="utf-8"):
    """``(line number, line)`` of a text file, for transcripts and lists.

    A UTF-8 byte-order mark at the start is dropped (it would otherwise
    stick to the first name).  A line that is not valid in ``encoding``
    raises ValueError naming the file, the line and the byte, instead of
    Python's bare "'utf-8' codec can't decode byte 0xff in position 34".
    """
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf") and \
                    encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig"):
                raw = raw[3:]
            try:
                yield n, raw.decode(encoding)
            except UnicodeDecodeError as e:
                bad = raw[e.start:e.start + 1]
                raise ValueError(
                    f"{path}:{n}: not {encoding} text (byte 0x{bad.hex()} at column "
                    f"{e.start + 1}); convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                    " or remove it") from None
            except LookupError:
                raise ValueError(f"unknown text encoding {encoding!r}") from None


def spread_over_speakers(utts, speaker_of):
    """Utterances reordered to take every speaker's first, then second ... one.

    The first N of the result are a subset of N utterances spread over as
    many speakers as possible; ties follow the order of ``utts`` (sorted
    input gives a deterministic choice).

    >>> spread_over_speakers(["a1", "a2", "a3", "b1"], lambda u: u[0])
    ['a1', 'b1', 'a2', 'a3']
    """
    utts = list(utts)
    rank, seen = [], {}
    for i, u in enumerate(utts):
        spk = speaker_of(u)
        rank.append((seen.get(spk, 0), i))
        seen[spk] = seen.get(spk, 0) + 1
    return [utts[i] for _, i in sorted(rank)]


def readable_subset(candidates, path_of, subset=0, jobs=4):
    """Audio headers of the candidates, stopping once ``subset`` of them read.

    Parameters
    ----------
    candidates : list
        Utterances in order of preference (see :func:`spread_over_speakers`).
    path_of : callable
        Utterance -> audio path.
    subset : int
        Keep at most this many readable ones (0: all).  Headers are read
        only as far as needed, so a subset of a large corpus is quick.

    Returns
    -------
    kept : list
        The readable utterances chosen, in the order of ``candidates``.
    info : dict of str -> (float, int) or str
        :func:`audio_info` of every header read.
    bad : list
        Utterances whose audio could not be read.
    """
    if subset < 0:
        raise ValueError(f"--subset must be >= 0, got {subset}")
    want = subset or len(candidates)
    kept, bad, info, i = [], [], {}, 0
    while len(kept) < want and i < len(candidates):
        batch = candidates[i:i + want - len(kept)]
        i += len(batch)
        info.update(audio_info([path_of(u) for u in batch], jobs))
        for u in batch:
            (bad if isinstance(info[path_of(u)], str) else kept).append(u)
    return kept, info, bad


def prepare_out_dir(out_dir, overwrite, entries):
    """Create ``out_dir``, refusing to clobber anything unexpected.

    A non-empty ``out_dir`` is refused unless ``overwrite``; then only the
    names in ``entries`` (what the builder writes) are removed, and any other
    file is refused too.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir!r} exists and is not a directory")
    present = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    if present and not overwrite:
        raise ValueError(f"--out {out_dir!r} is not empty; pass --overwrite to replace "
                         "what a previous run wrote there")
    foreign = sorted(set(present) - set(entries))
    if foreign:
        raise ValueError(f"--out {out_dir!r} holds files this builder did not write: "
                         f"{foreign[:_SHOW]}; refusing to overwrite")
    for name in present:
        path = os.path.join(out_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def examples(names, n=_SHOW):
    """``'a, b, c ...'``: the first few of a sorted collection, for messages."""
    names = sorted(names)
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def report(line):
    """Print a report line: warnings (``warning: ...``) to stderr, the rest to stdout."""
    print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)


def run_cli(main, argv=None):
    """Run a builder's ``main``; a ValueError becomes one line on stderr, status 2."""
    try:
        return main(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
