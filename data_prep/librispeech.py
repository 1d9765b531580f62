"""LibriSpeech (OpenSLR 12) as Kaldi-style data directories, for characters.

Input is the layout of the released archives,
``ROOT/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` with one
``<spk>-<chapter>.trans.txt`` per chapter (``<utt id> WORDS IN UPPER CASE``
lines); ROOT may be the ``LibriSpeech/`` folder the archives unpack to or the
folder above it.  Nothing is copied: ``wav.scp`` holds absolute paths.

Output (``OUT/``)::

    chars.txt       characters of all prepared parts + <space>, "<char> <index>"
    summary.json    utterances / speakers / hours per part, what was skipped
    <part>/         one data directory per part, "-" -> "_" as in Kaldi
                    (train_clean_100, dev_clean, test_clean ...)

with ``wav.scp``, ``text`` (lower-case words), ``text.chr`` (characters,
``<space>`` between words: the CTC target), ``utt2spk`` (speaker = the
reader, ``<spk>``, which starts every utterance id), ``spk2utt`` and
``utt2dur``.

Example
-------
::

    python -m data_prep.librispeech --root /corpora/LibriSpeech --out data/librispeech \\
        --parts train-clean-100 dev-clean test-clean

``--subset N`` keeps N utterances of each part, spread over its readers, for
a quick look at the corpus (only their audio headers are read).

Transcripts are UTF-8 (a byte-order mark is allowed); a line that is not
stops the run with its file and line named.  Hidden files (``.*``, such as
the ``._*.trans.txt`` AppleDouble files macOS leaves beside the originals)
are ignored, as are hidden directories.
"""
from __future__ import annotations

import argparse
import os
import sys

from ctcseq import datadir
from ctcseq.progress import format_duration

from .common import (RECORD, char_tokens, chars_inventory, examples, prepare_out_dir,
                     read_text_lines, readable_subset, report, run_cli, spread_over_speakers,
                     write_json)
from .phones import write_phone_list

__all__ = ["PARTS", "DEFAULT_PARTS", "find_parts", "scan_part", "build_librispeech", "main"]

PARTS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
         "test-clean", "test-other")
DEFAULT_PARTS = ("train-clean-100", "dev-clean", "test-clean")


def dir_name(part):
    """Data directory name of a part: ``train-clean-100`` -> ``train_clean_100``."""
    return part.replace("-", "_")


def find_parts(root, parts):
    """Directories of the requested parts under ROOT or ROOT/LibriSpeech.

    Raises
    ------
    ValueError
        ROOT missing, or a part missing (the message lists the parts found).
    """
    if not os.path.isdir(root):
        raise ValueError(f"--root {root!r}: no such directory")
    base = root
    if not any(os.path.isdir(os.path.join(root, p)) for p in parts) \
            and os.path.isdir(os.path.join(root, "LibriSpeech")):
        base = os.path.join(root, "LibriSpeech")
    missing = [p for p in parts if not os.path.isdir(os.path.join(base, p))]
    if missing:
        found = [p for p in sorted(os.listdir(base)) if os.path.isdir(os.path.join(base, p))
                 and not p.startswith(".")]
        raise ValueError(f"--root {root!r}: part(s) {', '.join(missing)} not found in {base} "
                         f"(directories there: {examples(found) or 'none'})")
    return {p: os.path.join(base, p) for p in parts}


def scan_part(part_dir):
    """Transcripts and audio of one part.

    Returns
    -------
    texts : dict of str -> str
        Utterance id -> transcript as written (upper case).
    audio : dict of str -> str
        Utterance id -> absolute path of its ``.flac``.

    Raises
    ------
    ValueError
        A malformed or duplicate transcript line.
    """
    texts, audio = {}, {}
    for dirpath, dirnames, filenames in os.walk(part_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            path = os.path.join(dirpath, fn)
            if fn.startswith("."):      # ._*.trans.txt, ._*.flac: macOS AppleDouble files
                continue
            if fn.endswith(".trans.txt"):
                _read_trans(path, texts)
            elif fn.endswith(".flac"):
                audio[fn[:-len(".flac")]] = os.path.abspath(path)
    return texts, audio


def _read_trans(path, texts):
    for n, line in read_text_lines(path):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: {parts[0]!r} has no transcript")
        if parts[0] in texts:
            raise ValueError(f"{path}:{n}: duplicate utterance {parts[0]!r}")
        texts[parts[0]] = parts[1].strip()


def _speaker(utt, where):
    spk, dash, rest = utt.partition("-")
    if not dash or not spk or not rest:
        raise ValueError(f"{where}: utterance id {utt!r} is not <speaker>-<chapter>-<n>")
    return spk


def _prepare_part(part, part_dir, jobs, log, subset=0):
    """Tables of one part (``subset`` utterances of it, if > 0), plus a list
    of skipped utterances."""
    texts, audio = scan_part(part_dir)
    no_audio = sorted(set(texts) - set(audio))
    no_text = sorted(set(audio) - set(texts))
    skipped = [f"{u}: no audio" for u in no_audio] + [f"{u}: no transcript" for u in no_text]
    if no_audio:
        log(f"warning: {part}: {len(no_audio)} transcript(s) without audio: {examples(no_audio)}")
    if no_text:
        log(f"warning: {part}: {len(no_text)} audio file(s) without transcript: "
            f"{examples(no_text)}")
    utts = sorted(set(texts) & set(audio))
    if subset:
        utts = spread_over_speakers(utts, lambda u: u.partition("-")[0])
    utts, info, bad = readable_subset(utts, audio.__getitem__, subset, jobs)
    utts.sort()
    for u in bad[:5]:
        log(f"warning: {audio[u]}: {info[audio[u]]}")
    skipped += [f"{u}: {info[audio[u]]}" for u in bad]
    if not utts:
        raise ValueError(f"{part_dir}: no utterance with both a transcript and readable audio")
    tables = {
        "wav.scp": {u: audio[u] for u in utts},
        "text": {u: " ".join(texts[u].lower().split()) for u in utts},
        "utt2spk": {u: _speaker(u, part_dir) for u in utts},
        "utt2dur": {u: f"{info[audio[u]][0]:.3f}" for u in utts},
    }
    tables["text.chr"] = {u: char_tokens(t) for u, t in tables["text"].items()}
    return tables, skipped


def build_librispeech(root, out_dir, parts=DEFAULT_PARTS, overwrite=False, jobs=4, log=print,
                      subset=0):
    """Write one data directory per part and ``chars.txt``.

    Parameters
    ----------
    root : str
        ``LibriSpeech/`` (holding the parts) or the folder above it.
    out_dir : str
        Output root.
    parts : sequence of str
        Parts to prepare (directory names, e.g. ``train-clean-100``).
    overwrite : bool
        Replace the output of an earlier run in ``out_dir``.
    jobs : int
        Threads reading audio headers.
    log : callable
        Receives report lines (warnings start with ``warning:``).
    subset : int
        Keep at most this many utterances of each part (0: all), spread over
        its readers; for a quick run on a large corpus.

    Returns
    -------
    dict
        The summary (also in ``summary.json``).
    """
    parts = list(dict.fromkeys(parts))
    if not parts:
        raise ValueError("--parts: give at least one part")
    if subset < 0:
        raise ValueError(f"--subset must be >= 0, got {subset}")
    dirs = find_parts(root, parts)
    prepared = {p: _prepare_part(p, d, jobs, log, subset) for p, d in dirs.items()}
    prepare_out_dir(out_dir, overwrite, [dir_name(p) for p in PARTS + tuple(parts)]
                    + ["chars.txt", "summary.json", RECORD])
    # one inventory for every part, so dev/test never hold a symbol training lacks
    chars = chars_inventory(v for tables, _ in prepared.values()
                            for v in tables["text.chr"].values())
    write_phone_list(os.path.join(out_dir, "chars.txt"), chars)
    summary = {"root": os.path.abspath(root), "subset": subset, "parts": {}}
    for part, (tables, skipped) in prepared.items():
        name = dir_name(part)
        datadir.write_data_dir(os.path.join(out_dir, name), tables["wav.scp"], tables["text"],
                               tables["utt2spk"],
                               extra={k: tables[k] for k in ("text.chr", "utt2dur")})
        s = summary["parts"][name] = {
            "utterances": len(tables["text"]),
            "speakers": len(set(tables["utt2spk"].values())),
            "hours": round(sum(float(v) for v in tables["utt2dur"].values()) / 3600, 4),
            "skipped": skipped}
        log(f"{name}: {s['utterances']} utterances, {s['speakers']} speakers, "
            f"{format_duration(s['hours'] * 3600)}"
            + (f", {len(skipped)} skipped" if skipped else ""))
    write_json(os.path.join(out_dir, "summary.json"), summary)    # last: marks completion
    return summary


def _parser(prog="ctcseq prepare librispeech"):
    ap = argparse.ArgumentParser(prog=prog,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="LibriSpeech/ or the folder holding it")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS),
                    help=f"parts to prepare (default: {' '.join(DEFAULT_PARTS)})")
    ap.add_argument("--subset", type=int, default=0, metavar="N",
                    help="keep N utterances of each part, spread over its readers, for a "
                    "quick run (default 0: all)")
    ap.add_argument("--jobs", type=int, default=4, help="threads reading audio headers (4)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace what an earlier run wrote in --out")
    return ap


def main(argv=None, prog="ctcseq prepare librispeech"):
    """Command-line entry: ``ctcseq prepare librispeech --root ROOT --out DIR``
    (``python -m data_prep.librispeech`` runs it too)."""
    args = _parser(prog).parse_args(argv)
    build_librispeech(args.root, args.out, parts=args.parts, overwrite=args.overwrite,
                      jobs=args.jobs, subset=args.subset,
                      log=report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: main(argv, prog="python -m data_prep.librispeech")))
