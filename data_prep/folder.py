"""A data directory from a folder of audio files and a transcript file.

Audio files are searched recursively (any extension in
:data:`AUDIO_EXTENSIONS`); the transcript file has one ``<name> <transcript>``
line per utterance, where ``<name>`` is the file's stem (``hello``) or its
path relative to the audio folder without extension (``spk1/hello``).
Files without a transcript and transcripts without a file are reported
(counts and the first few names) and left out; only "nothing matches" is an
error.

``--unit`` says what the transcripts hold:

``words`` (default)
    Ordinary text.  ``text`` is written as given (case and punctuation
    kept, runs of whitespace made single spaces); ``text.chr`` holds its
    characters lower-cased, with ``<space>`` between words, and
    ``chars.txt`` the characters seen (plus ``<space>``).  Nothing else is
    normalised: punctuation and digits stay, each a symbol of its own
    (``"Hello, 42!"`` -> ``h e l l o , <space> 4 2 !``), so a model learns
    to output them.  Remove or spell them out in the transcripts first if
    you do not want that.
``chars``
    Space-separated character tokens with ``<space>`` between words, kept as
    given in ``text.chr`` (and ``chars.txt``); ``text`` gets the words they
    spell.
``phones``
    Space-separated phones: ``text.phn`` and ``phones.txt``; ``text`` gets
    the same phone string (there are no words).

Utterance ids come from the names (whitespace replaced by ``_``, ``/`` by
``-``; a file ``hello there.wav`` is named ``hello_there`` in the
transcript file, or ``spk1/hello_there`` by its relative path).  The
speaker is the utterance itself unless ``--utt2spk FILE``
(``<name> <speaker>`` lines) or ``--spk-from-dir`` (the file's parent folder)
says otherwise; an utterance id that does not start with its speaker id gets
it as a prefix (``<spk>-<name>``), as Kaldi requires.  ``wav.scp`` holds
absolute paths, since the audio is not copied.

Scoring: ``ctcseq eval`` compares tokens exactly, case included.  A
character model outputs lower case, so score its words against the words
spelled by ``text.chr`` (``<space>`` -> word boundary), not against
``text``, where ``Hello`` differs from ``hello`` and ``world!`` from
``world``.

The transcript file is read as UTF-8 (a byte-order mark is allowed);
``--encoding`` names another (``latin-1`` ...).  A line that does not decode
stops the run with its file and line named.

Example
-------
::

    ctcseq prepare folder --audio recordings --transcript prompts.txt \\
        --out data/mine --spk-from-dir
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from ctcseq import datadir
from ctcseq.progress import format_duration

from .common import (AUDIO_EXTENSIONS, RECORD, _SHOW, audio_info, char_tokens,
                     chars_inventory, examples, prepare_out_dir, read_text_lines, report,
                     run_cli, sanitize_id, write_json)
from .phones import write_phone_list

__all__ = ["UNITS", "find_audio", "read_transcripts", "build_folder", "main"]

UNITS = ("words", "chars", "phones")


# --------------------------------------------------------------------------
# folder of audio
# --------------------------------------------------------------------------

def _strip_audio_ext(name):
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext.lower() in AUDIO_EXTENSIONS else name


def find_audio(audio_dir, extensions=AUDIO_EXTENSIONS):
    """Audio files under ``audio_dir``, recursively.

    Returns
    -------
    dict of str -> str
        Relative path without extension, ``/``-separated and with whitespace
        replaced by ``_`` -> absolute path.

    Raises
    ------
    ValueError
        If ``audio_dir`` is not a directory, or two files differ only in
        their extension.
    """
    if not os.path.isdir(audio_dir):
        raise ValueError(f"--audio {audio_dir!r} is not a directory")
    exts = {e.lower().lstrip(".") for e in extensions}
    out = {}
    for dirpath, dirnames, filenames in os.walk(audio_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            stem, dot, ext = fn.rpartition(".")
            if not dot or ext.lower() not in exts or fn.startswith("."):
                continue
            rel = os.path.relpath(os.path.join(dirpath, stem), audio_dir).replace(os.sep, "/")
            key = re.sub(r"\s+", "_", rel)
            path = os.path.abspath(os.path.join(dirpath, fn))
            if key in out:
                raise ValueError(f"--audio: {out[key]} and {path} have the same name; "
                                 "keep one of them")
            out[key] = path
    return out


def read_transcripts(path, encoding="utf-8"):
    """``<name> <transcript>`` lines -> ``{name: transcript}`` (blank lines skipped).

    A UTF-8 byte-order mark is dropped; ``encoding`` names another encoding.

    Raises
    ------
    ValueError
        A missing file, a line that does not decode (file and line named),
        a duplicate name or a name without transcript.
    """
    if not os.path.isfile(path):
        raise ValueError(f"transcript file {path!r} does not exist")
    out = {}
    for n, line in read_text_lines(path, encoding):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].strip():
            raise ValueError(f"{path}:{n}: {parts[0]!r} has no transcript")
        name = _strip_audio_ext(parts[0].replace("\\", "/"))
        if name in out:
            raise ValueError(f"{path}:{n}: duplicate name {name!r}")
        out[name] = " ".join(parts[1].split())
    return out


def _match(names, audio):
    """Pair transcript names with audio keys: the relative path, else a unique stem.

    Returns ``({name: key}, unmatched names, ambiguous names)``.
    """
    by_stem = {}
    for key in audio:
        by_stem.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    pairs, missing, ambiguous = {}, [], []
    for name in names:
        if name in audio:
            pairs[name] = name
        elif len(by_stem.get(name, ())) == 1:
            pairs[name] = by_stem[name][0]
        elif name in by_stem:
            ambiguous.append(name)
        else:
            missing.append(name)
    return pairs, missing, ambiguous


def _speakers(pairs, utt2spk_file, spk_from_dir, audio_dir, encoding="utf-8"):
    """{name: speaker id} by the chosen rule."""
    if utt2spk_file and spk_from_dir:
        raise ValueError("give --utt2spk or --spk-from-dir, not both")
    if utt2spk_file:
        table = read_transcripts(utt2spk_file, encoding)
        missing = [n for n in pairs if n not in table]
        if missing:
            raise ValueError(f"--utt2spk {utt2spk_file}: no speaker for {len(missing)} "
                             f"utterance(s): {examples(missing)}")
        return {n: sanitize_id(table[n]) for n in pairs}
    if spk_from_dir:
        top = os.path.basename(os.path.abspath(audio_dir))
        return {n: sanitize_id(k.rsplit("/", 2)[-2] if "/" in k else top)
                for n, k in pairs.items()}
    return {n: None for n in pairs}


def build_folder(audio_dir, transcript, out_dir, unit="words", utt2spk=None,
                 spk_from_dir=False, overwrite=False, jobs=4, log=print, encoding="utf-8"):
    """Write one data directory for a folder of audio and a transcript file.

    Parameters
    ----------
    audio_dir : str
        Folder searched recursively for audio files.
    transcript : str
        ``<name> <transcript>`` lines.
    out_dir : str
        The data directory to write (also receives ``chars.txt`` or
        ``phones.txt`` and ``summary.json``).
    unit : {"words", "chars", "phones"}
        What the transcripts hold (see the module docstring).
    utt2spk : str, optional
        ``<name> <speaker>`` lines.
    spk_from_dir : bool
        Speaker = the audio file's parent folder.
    overwrite : bool
        Replace a data directory this function wrote before.
    jobs : int
        Threads reading audio headers.
    log : callable
        Receives report lines.
    encoding : str
        Of the transcript and ``utt2spk`` files (a UTF-8 byte-order mark is
        dropped).

    Returns
    -------
    dict
        The summary (also in ``summary.json``).
    """
    if unit not in UNITS:
        raise ValueError(f"--unit must be one of {UNITS}, got {unit!r}")
    audio = find_audio(audio_dir)
    texts = read_transcripts(transcript, encoding)
    pairs, missing, ambiguous = _match(texts, audio)
    if ambiguous:
        raise ValueError(f"{transcript}: name(s) matching several audio files, give the "
                         f"relative path instead: {examples(ambiguous)}")
    without_text = sorted(set(audio) - set(pairs.values()))
    if missing:
        log(f"warning: {len(missing)} transcript(s) without audio, left out: {examples(missing)}")
    if without_text:
        log(f"warning: {len(without_text)} audio file(s) without transcript, left out: "
            f"{examples(without_text)}")
    if not pairs:
        raise ValueError(f"no transcript in {transcript} matches an audio file in {audio_dir} "
                         f"(transcript names e.g. {examples(texts, 3)}; "
                         f"audio e.g. {examples(audio, 3)})")
    spk = _speakers(pairs, utt2spk, spk_from_dir, audio_dir, encoding)
    info = audio_info([audio[k] for k in pairs.values()], jobs)
    unreadable = [n for n, k in pairs.items() if isinstance(info[audio[k]], str)]
    for n in unreadable[:_SHOW]:
        log(f"warning: {audio[pairs[n]]}: {info[audio[pairs[n]]]}")
    if unreadable:
        log(f"warning: {len(unreadable)} unreadable audio file(s) left out")
    names = [n for n in pairs if n not in unreadable]
    if not names:
        raise ValueError(f"none of the matching audio files in {audio_dir} can be read")

    utts, utt2spk_t = {}, {}
    for n in names:
        utt = sanitize_id(n)
        s = spk[n] or utt
        if not utt.startswith(s):
            utt = f"{s}-{utt}"
        if utt in utts:
            raise ValueError(f"{transcript}: {utts[utt]!r} and {n!r} give the same "
                             f"utterance id {utt!r}")
        utts[utt] = n
        utt2spk_t[utt] = s
    wav = {u: audio[pairs[n]] for u, n in utts.items()}
    dur = {u: f"{info[wav[u]][0]:.3f}" for u in utts}
    extra = {"utt2dur": dur}
    symbols_file = "chars.txt"
    if unit == "words":
        text = {u: texts[n] for u, n in utts.items()}
        extra["text.chr"] = {u: char_tokens(texts[n]) for u, n in utts.items()}
        symbols = chars_inventory(extra["text.chr"].values())
    elif unit == "chars":
        extra["text.chr"] = {u: texts[n] for u, n in utts.items()}
        text = {u: " ".join("".join(t if t != datadir.SPACE else " " for t in v.split()).split())
                for u, v in extra["text.chr"].items()}
        symbols = chars_inventory(v.split() for v in extra["text.chr"].values())
    else:
        text = {u: texts[n] for u, n in utts.items()}
        extra["text.phn"] = dict(text)
        symbols = sorted({p for v in text.values() for p in v.split()})
        symbols_file = "phones.txt"
    empty = [utts[u] for u, v in text.items() if not v]
    if empty:
        raise ValueError(f"{transcript}: transcripts with no words: {examples(empty)}")

    prepare_out_dir(out_dir, overwrite, datadir.REQUIRED + datadir.UTT_TABLES
                    + ("chars.txt", "phones.txt", "summary.json", RECORD))
    datadir.write_data_dir(out_dir, wav, text, utt2spk_t, extra)
    write_phone_list(os.path.join(out_dir, symbols_file), symbols)
    summary = {"audio": os.path.abspath(audio_dir), "transcript": os.path.abspath(transcript),
               "unit": unit, "utterances": len(utts), "speakers": len(set(utt2spk_t.values())),
               "hours": round(sum(info[w][0] for w in wav.values()) / 3600, 4),
               "symbols": len(symbols), "transcripts_without_audio": len(missing),
               "audio_without_transcript": len(without_text), "unreadable": len(unreadable)}
    write_json(os.path.join(out_dir, "summary.json"), summary)
    log(f"{out_dir}: {summary['utterances']} utterances, {summary['speakers']} speakers, "
        f"{format_duration(summary['hours'] * 3600)}, {len(symbols)} symbols in "
        f"{symbols_file}")
    return summary


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def _parser(prog="ctcseq prepare folder"):
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Transcripts: with --unit words, 'text' keeps them as given; 'text.chr' is "
        "lower-cased\nwith punctuation and digits kept as characters of their own. "
        "Spaces in file names\nbecome '_' ('hello there.wav' is 'hello_there'). "
        "'ctcseq eval' compares tokens exactly,\ncase included: score a character model's "
        "words against the words of text.chr,\nnot against text. See data_prep/README.md.")
    ap.add_argument("--audio", required=True, help="folder of audio files (searched recursively)")
    ap.add_argument("--transcript", required=True, help="file of '<name> <transcript>' lines")
    ap.add_argument("--out", required=True, help="data directory to write")
    ap.add_argument("--unit", choices=UNITS, default="words",
                    help="what the transcripts hold (default words)")
    ap.add_argument("--utt2spk", help="file of '<name> <speaker>' lines")
    ap.add_argument("--spk-from-dir", action="store_true",
                    help="speaker = the audio file's parent folder")
    ap.add_argument("--encoding", default="utf-8",
                    help="of the transcript and --utt2spk files (default utf-8; a byte-order "
                    "mark is allowed)")
    ap.add_argument("--jobs", type=int, default=4, help="threads reading audio headers (4)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace a data directory written before")
    return ap


def main(argv=None, prog="ctcseq prepare folder"):
    """Command-line entry: ``ctcseq prepare folder --audio DIR --transcript F --out D``
    (``python -m data_prep.folder`` runs it too)."""
    args = _parser(prog).parse_args(argv)
    build_folder(args.audio, args.transcript, args.out, unit=args.unit, utt2spk=args.utt2spk,
                 spk_from_dir=args.spk_from_dir, overwrite=args.overwrite, jobs=args.jobs,
                 log=report, encoding=args.encoding)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: main(argv, prog="python -m data_prep.folder")))
