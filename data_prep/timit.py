"""TIMIT (LDC93S1) as Kaldi-style data directories, the standard split.

Input is the LDC layout ``ROOT/{TRAIN,TEST}/DR1..DR8/<SPK>/<UTT>.{WAV,PHN,WRD,TXT}``
in upper or lower case (``timit/TIMIT/TRAIN/DR1/FCJF0/SA1.WAV`` and
``timit/train/dr1/fcjf0/sa1.wav`` both occur); ROOT may also be the folder
one level above (``timit/`` holding ``TIMIT/`` or ``data/``).  The ``.WAV``
files are NIST SPHERE, which libsndfile reads; copies converted to RIFF
(``SA1.WAV.wav``) are accepted too.  Nothing is copied: ``wav.scp`` holds
absolute paths into ROOT, so the output can be moved but ROOT cannot.

Output (``OUT/``)::

    phones.txt      the 48 training phones, "<phone> <index>" (0 is the CTC blank)
    summary.json    utterances / speakers / hours per split, what was skipped
    train/          all 462 TRAIN speakers (3696 utterances)
    dev/            the 50 standard dev speakers, from TEST (400 utterances)
    test/           the 24 core-test speakers (192 utterances); --full-test:
                    every TEST speaker except the dev ones (118, 944 utterances)

each a data directory (see :mod:`ctcseq.datadir`) with ``wav.scp``, ``text``
(lower-case words from ``.WRD``, else ``.TXT``), ``utt2spk``, ``spk2utt``,
``utt2dur`` and

``text.phn``
    the CTC target: the ``.PHN`` phones folded to Lee and Hon's 48 classes,
    ``q`` deleted, ``h#`` kept as ``sil`` (as Kaldi's TIMIT recipe does).
``text.phn61``
    the 61 phones of ``.PHN`` as they are.
``phones.ctm``
    the ``.PHN`` times of the ``text.phn`` labels (one line per label).

SA1/SA2 (read by every speaker) are left out everywhere.  Scoring folds
48 -> 39 (``ctcseq eval --fold timit39``).  Speaker ids are the lower-case
TIMIT speaker codes (``fcjf0``; the first letter is the sex) and utterance
ids ``<spk>_<utt>`` (``fcjf0_si1027``).

Example
-------
::

    python -m data_prep.timit --timit /corpora/timit --out data/timit

``--subset N`` keeps N utterances of each split, spread over its speakers,
for a quick look (only their audio headers are read).  A tree that lacks
some of the standard dev or core-test speakers is refused with their
number and the first few names; ``--test-speakers`` / ``--dev-speakers``
give lists of speakers it has instead.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import resources

from ctcseq import datadir
from ctcseq.progress import format_duration

from .common import (RECORD, examples, prepare_out_dir, read_text_lines, readable_subset,
                     report, run_cli, spread_over_speakers, write_json)
from .phones import write_phone_list

__all__ = ["read_phone_map", "read_speaker_list", "find_timit_root", "scan_split",
           "read_phn", "read_words", "fold_phones", "build_timit", "main"]

SPLITS = ("train", "dev", "test")
OUT_ENTRIES = SPLITS + ("phones.txt", "summary.json", RECORD)
_AUDIO_EXTS = ("wav", "wav.wav")       # LDC SPHERE .WAV; a RIFF copy named .WAV.wav
_DIALECT_RE = re.compile(r"dr[1-8]")


# --------------------------------------------------------------------------
# reference lists
# --------------------------------------------------------------------------

def read_phone_map():
    """TIMIT's 61 phones -> their 48-class name (None for ``q``, which is deleted).

    From ``ctcseq/resources/phones.60-48-39.map``, the map
    :func:`ctcseq.metrics.timit_fold_map` scores with.
    """
    text = resources.files("ctcseq.resources").joinpath("phones.60-48-39.map").read_text()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = parts[1] if len(parts) > 1 else None
    return out


def phones48():
    """The 48 training phones, sorted."""
    return sorted({p for p in read_phone_map().values() if p is not None})


def read_speaker_list(path=None, name=None):
    """Lower-case speaker ids, one a line (``#`` comments and blank lines skipped).

    Parameters
    ----------
    path : str, optional
        A list file; default: the packaged list ``name``.
    name : {"test", "dev"}
        Which packaged list (``data_prep/resources/timit_<name>_spk.list``).
    """
    if path is None:
        res = resources.files("data_prep").joinpath(f"resources/timit_{name}_spk.list")
        lines = res.read_text().splitlines()
    else:
        if not os.path.isfile(path):
            raise ValueError(f"speaker list {path!r} does not exist")
        lines = [line for _, line in read_text_lines(path)]
    return [s.split("#")[0].strip().lower() for s in lines if s.split("#")[0].strip()]


# --------------------------------------------------------------------------
# corpus tree
# --------------------------------------------------------------------------

def _subdirs(path):
    """{lower-case name: path} of the visible sub-directories."""
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return {}
    return {n.lower(): os.path.join(path, n) for n in names
            if not n.startswith(".") and os.path.isdir(os.path.join(path, n))}


def find_timit_root(root):
    """The TRAIN and TEST directories of a TIMIT tree (any letter case).

    ROOT itself or one of its sub-directories (``TIMIT/``, ``data/``) must
    hold both.

    Returns
    -------
    dict
        ``{"train": path, "test": path}``.

    Raises
    ------
    ValueError
        ROOT missing, or no directory with both TRAIN and TEST.
    """
    if not os.path.isdir(root):
        raise ValueError(f"--timit {root!r}: no such directory")
    for cand in [root] + list(_subdirs(root).values()):
        sub = _subdirs(cand)
        if "train" in sub and "test" in sub:
            return {"train": sub["train"], "test": sub["test"]}
        if "train" in sub or "test" in sub:
            missing = "TEST" if "train" in sub else "TRAIN"
            raise ValueError(f"--timit {root!r}: {cand} has no {missing} directory")
    raise ValueError(f"--timit {root!r}: no TRAIN and TEST directories there or one level "
                     "below (expected ROOT/TRAIN/DR1/FCJF0/SI1027.WAV ...)")


def scan_split(split_dir):
    """Speakers and utterance files of TRAIN or TEST.

    Returns
    -------
    dict
        ``{spk: {utt: {"wav": path, "phn": path, "wrd": path, "txt": path}}}``
        with lower-case ids; a missing file has no key.  Every utterance
        found is listed, SA ones included.

    Raises
    ------
    ValueError
        No dialect-region directory, or a speaker in two of them.
    """
    regions = {n: p for n, p in _subdirs(split_dir).items() if _DIALECT_RE.fullmatch(n)}
    if not regions:
        raise ValueError(f"{split_dir}: no dialect-region directories DR1..DR8")
    out, where = {}, {}
    for _, region in sorted(regions.items()):
        for spk, spk_dir in _subdirs(region).items():
            if spk in out:
                raise ValueError(f"speaker {spk} is in both {where[spk]} and {spk_dir}")
            where[spk] = spk_dir
            out[spk] = _utterance_files(spk_dir)
    return out


def _utterance_files(spk_dir):
    utts = {}
    for fn in sorted(os.listdir(spk_dir)):
        utt, dot, ext = fn.lower().partition(".")
        kind = "wav" if ext in _AUDIO_EXTS else ext
        if fn.startswith(".") or not dot or kind not in ("wav", "phn", "wrd", "txt"):
            continue
        files = utts.setdefault(utt, {})
        # the LDC .WAV before a converted copy (.WAV.wav); upper case (sorted first)
        # before lower case when a case-sensitive file system holds both
        rank = _AUDIO_EXTS.index(ext) if kind == "wav" else 0
        if kind not in files or rank < files[kind][0]:
            files[kind] = (rank, os.path.abspath(os.path.join(spk_dir, fn)))
    return {u: {k: p for k, (_, p) in f.items()} for u, f in utts.items()}


# --------------------------------------------------------------------------
# transcripts
# --------------------------------------------------------------------------

def read_phn(path, phone_map):
    """``.PHN`` lines ``<start> <end> <phone>`` (sample indices) -> list of tuples.

    Raises
    ------
    ValueError
        A malformed line, or a phone that is not one of TIMIT's 61.
    """
    out = []
    with open(path, encoding="ascii", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
                raise ValueError(f"{path}:{n}: expected '<start> <end> <phone>', got {line!r}")
            phone = parts[2].lower()
            if phone not in phone_map:
                raise ValueError(f"{path}:{n}: {parts[2]!r} is not a TIMIT phone")
            out.append((int(parts[0]), int(parts[1]), phone))
    return out


def read_words(wrd=None, txt=None):
    """Lower-case words of an utterance, from ``.WRD`` (else ``.TXT``), or None."""
    if wrd:
        with open(wrd, encoding="ascii", errors="replace") as f:
            words = [line.split()[2].lower() for line in f if len(line.split()) >= 3]
        if words:
            return words
    if txt:
        with open(txt, encoding="ascii", errors="replace") as f:
            parts = f.read().split(maxsplit=2)     # "<start> <end> The sentence."
        sentence = parts[2] if len(parts) == 3 else ""
        # .WRD spelling: keep letters, apostrophes and hyphens, drop punctuation
        words = [w.strip("'-") for w in re.sub(r"[^a-z'\- ]", " ", sentence.lower()).split()]
        words = [w for w in words if w]
        if words:
            return words
    return None


def fold_phones(segments, phone_map):
    """61-phone segments -> 48-phone segments; ``q`` is dropped (Kaldi's choice)."""
    return [(s, e, phone_map[p]) for s, e, p in segments if phone_map[p] is not None]


# --------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------

def _check_lists(test_spk, dev_spk, tree, test_file=None, dev_file=None):
    for label, spks, opt, given in (("core test", test_spk, "--test-speakers", test_file),
                                    ("dev", dev_spk, "--dev-speakers", dev_file)):
        missing = [s for s in spks if s not in tree["test"]]
        if missing:
            in_train = [s for s in missing if s in tree["train"]]
            source = given or "the standard list"
            raise ValueError(
                f"{label} speaker(s) not found in TEST: {examples(missing)}"
                + (f" ({examples(in_train)} in TRAIN)" if in_train else "")
                + f"; {len(missing)} of the {len(spks)} in {source} are missing"
                + (f" ({opt} FILE gives the speakers to use instead)" if not given else ""))
    both = sorted(set(test_spk) & set(dev_spk))
    if both:
        raise ValueError(f"speaker(s) in both the dev and the test list: {examples(both)}")


def _split_speakers(tree, test_spk, dev_spk, full_test):
    test = sorted(s for s in tree["test"] if s not in set(dev_spk)) if full_test \
        else sorted(test_spk)
    return {"train": [("train", s) for s in sorted(tree["train"])],
            "dev": [("test", s) for s in sorted(dev_spk)],
            "test": [("test", s) for s in test]}


def _utterances(tree, speakers, phone_map, skipped):
    """(utt id, spk, files, phones61, words) of the non-SA utterances with complete files."""
    out = []
    for part, spk in speakers:
        for utt, files in sorted(tree[part][spk].items()):
            if utt.startswith("sa"):
                continue
            uid = f"{spk}_{utt}"
            if "wav" not in files:
                skipped.append(f"{uid}: no audio file")
                continue
            if "phn" not in files:
                skipped.append(f"{uid}: no .PHN file")
                continue
            words = read_words(files.get("wrd"), files.get("txt"))
            if words is None:
                skipped.append(f"{uid}: no words (.WRD and .TXT missing or empty)")
                continue
            segs = read_phn(files["phn"], phone_map)
            if not fold_phones(segs, phone_map):
                skipped.append(f"{uid}: no phones in .PHN")
                continue
            out.append((uid, spk, files, segs, words))
    return out


def _write_split(out_dir, name, utts, info, phone_map):
    wav, text, utt2spk, phn, phn61, dur, ctm = {}, {}, {}, {}, {}, {}, {}
    for uid, spk, files, segs, words in utts:
        seconds, rate = info[files["wav"]]
        folded = fold_phones(segs, phone_map)
        wav[uid], text[uid], utt2spk[uid] = files["wav"], " ".join(words), spk
        phn[uid] = [p for _, _, p in folded]
        phn61[uid] = [p for _, _, p in segs]
        dur[uid] = f"{seconds:.3f}"
        ctm[uid] = [(s / rate, (e - s) / rate, p) for s, e, p in folded]
    d = os.path.join(out_dir, name)
    datadir.write_data_dir(d, wav, text, utt2spk,
                           extra={"text.phn": phn, "text.phn61": phn61, "utt2dur": dur})
    datadir.write_ctm(os.path.join(d, "phones.ctm"), ctm)
    return {"utterances": len(wav), "speakers": len(set(utt2spk.values())),
            "hours": round(sum(float(v) for v in dur.values()) / 3600, 4),
            "phones": sum(len(v) for v in phn.values())}


def build_timit(timit, out_dir, full_test=False, test_speakers=None, dev_speakers=None,
                overwrite=False, jobs=4, log=print, subset=0):
    """Write ``train``, ``dev`` and ``test`` data directories and ``phones.txt``.

    Parameters
    ----------
    timit : str
        The TIMIT root (holding TRAIN and TEST, or one level above them).
    out_dir : str
        Output root.
    full_test : bool
        Test on every TEST speaker not in dev (118) instead of the core 24.
    test_speakers, dev_speakers : str, optional
        Speaker list files replacing the packaged core-test and dev lists.
    overwrite : bool
        Replace the output of an earlier run in ``out_dir``.
    jobs : int
        Threads reading audio headers.
    log : callable
        Receives report lines (warnings start with ``warning:``).
    subset : int
        Keep at most this many utterances of each split (0: all), spread
        over its speakers; for a quick run.

    Returns
    -------
    dict
        The summary (also in ``summary.json``).

    Raises
    ------
    ValueError
        Missing root or TRAIN/TEST, a listed speaker not in TEST, a malformed
        ``.PHN``, an empty split.
    """
    if subset < 0:
        raise ValueError(f"--subset must be >= 0, got {subset}")
    tree = {k: scan_split(p) for k, p in find_timit_root(timit).items()}
    test_spk = read_speaker_list(test_speakers, "test")
    dev_spk = read_speaker_list(dev_speakers, "dev")
    _check_lists(test_spk, dev_spk, tree, test_speakers, dev_speakers)
    phone_map = read_phone_map()
    skipped = []
    utts = {name: _utterances(tree, spks, phone_map, skipped)
            for name, spks in _split_speakers(tree, test_spk, dev_spk, full_test).items()}
    for name, us in utts.items():
        if not us:
            raise ValueError(f"--timit {timit!r}: no usable {name} utterances")
    info = {}
    for name, us in utts.items():
        if subset:
            us = spread_over_speakers(us, lambda u: u[1])
        kept, got, bad = readable_subset(us, lambda u: u[2]["wav"], subset, jobs)
        info.update(got)
        skipped += [f"{u[0]}: {got[u[2]['wav']]}" for u in bad]
        utts[name] = sorted(kept, key=lambda u: u[0])
    for line in skipped[:10]:
        log(f"warning: skipped {line}")
    if len(skipped) > 10:
        log(f"warning: ... {len(skipped)} utterances skipped in all")

    prepare_out_dir(out_dir, overwrite, OUT_ENTRIES)
    write_phone_list(os.path.join(out_dir, "phones.txt"), phones48())
    summary = {"timit": os.path.abspath(timit), "full_test": full_test, "subset": subset,
               "splits": {}, "skipped": skipped}
    for name in SPLITS:
        s = summary["splits"][name] = _write_split(out_dir, name, utts[name], info, phone_map)
        log(f"{name:5s}: {s['utterances']} utterances, {s['speakers']} speakers, "
            f"{format_duration(s['hours'] * 3600)}, {s['phones']} phones")
    write_json(os.path.join(out_dir, "summary.json"), summary)   # last: marks completion
    return summary


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def _parser(prog="ctcseq prepare timit"):
    ap = argparse.ArgumentParser(prog=prog,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--timit", required=True, help="TIMIT root (holding TRAIN/ and TEST/)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--full-test", action="store_true",
                    help="test on all 118 non-dev TEST speakers, not the 24 core ones")
    ap.add_argument("--test-speakers", help="core-test speaker list (default: the standard 24)")
    ap.add_argument("--dev-speakers", help="dev speaker list (default: the standard 50)")
    ap.add_argument("--subset", type=int, default=0, metavar="N",
                    help="keep N utterances of each split, spread over its speakers, for a "
                    "quick run (default 0: all)")
    ap.add_argument("--jobs", type=int, default=4, help="threads reading audio headers (4)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace what an earlier run wrote in --out")
    return ap


def main(argv=None, prog="ctcseq prepare timit"):
    """Command-line entry: ``ctcseq prepare timit --timit ROOT --out DIR``
    (``python -m data_prep.timit`` runs it too)."""
    args = _parser(prog).parse_args(argv)
    build_timit(args.timit, args.out, full_test=args.full_test,
                test_speakers=args.test_speakers, dev_speakers=args.dev_speakers,
                overwrite=args.overwrite, jobs=args.jobs, subset=args.subset,
                log=report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: main(argv, prog="python -m data_prep.timit")))
