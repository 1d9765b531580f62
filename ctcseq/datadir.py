"""Kaldi-style data directories: write, read and validate.

A data directory is a folder of plain-text tables, one ``<key> <value>`` line
per entry, sorted by key in C-locale (byte) order, which a person can read,
grep and edit.  The files written here:

``wav.scp``
    ``<utt> <path>``; a relative path is relative to the data directory's
    *parent* (the corpus root), so a corpus can be moved or copied whole.
``text``
    ``<utt> <words>``: the word transcript, lower case.
``utt2spk`` / ``spk2utt``
    Speaker of each utterance and its inverse.  Utterance ids start with the
    speaker id, so both files sort consistently (a Kaldi requirement).
``text.phn``
    ``<utt> <phone> <phone> ...``: phone transcript in the fixed inventory
    (see :mod:`data_prep.phones`), the CTC target for phone recognition.
``text.chr``
    ``<utt> <char> ...``: character transcript, ``<space>`` between words.
``text.ipa``
    eSpeak's raw IPA, phonemes joined by ``_``, words by spaces; kept so the
    phone mapping can be audited or redone without resynthesising.
``utt2dur``
    Duration in seconds (3 decimals).
``utt2synth``
    How the utterance was synthesised (voice, rate, pitch, range, seed).
``phones.ctm``
    Per-phone timing reported by the synthesiser, CTM lines
    ``<utt> 1 <start> <dur> <phone>``; for checking forced alignment.

Only ``wav.scp``, ``text``, ``utt2spk`` and ``spk2utt`` are required by
:func:`validate_data_dir`; any other ``utt``-keyed table present is checked
for the same utterance set.
"""
from __future__ import annotations

import contextlib
import os
import secrets

from .errors import DataError

__all__ = ["REQUIRED", "UTT_TABLES", "write_table", "read_table", "spk2utt_of",
           "write_data_dir", "read_data_dir", "validate_data_dir", "resolve_wav",
           "write_ctm", "read_ctm", "DataDirError", "atomic_write"]

REQUIRED = ("wav.scp", "text", "utt2spk", "spk2utt")
# Optional utterance-keyed tables this package knows about.
UTT_TABLES = ("text.phn", "text.chr", "text.ipa", "utt2dur", "utt2synth")
SPACE = "<space>"


class DataDirError(DataError):
    """A data directory is malformed; the message lists every problem found."""


@contextlib.contextmanager
def atomic_write(path, mode="wb", durable=True, **open_kwargs):
    """Write ``path`` all at once or not at all: a context manager that
    yields a file object on a temporary file in the same directory, then
    renames it over ``path`` (``os.replace``) when the block ends normally.

    If the block raises (or the process is interrupted) the temporary file
    is removed and any previous file at ``path`` is left as it was; a
    process killed outright leaves at most a ``.<name>.*.tmp`` file, which
    never has the final name.

    Parameters
    ----------
    path : str or os.PathLike
    mode : "wb" or "w"
    durable : bool, default True
        Flush the file and then its directory to disk (``fsync``), so that
        after a power cut ``path`` holds either the old or the new content.
        False skips both fsyncs (for many small files that can be recomputed,
        such as features): the rename still never exposes a partial file to
        a running reader.
    **open_kwargs
        Passed to ``open`` (e.g. ``encoding="utf-8"``, ``newline="\n"``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


def _create_temporary(directory, name):
    """A new file ``.<name>.<random>.tmp`` in directory, created with the
    permissions ``open`` gives (0o666 less the umask; ``tempfile.mkstemp``
    would make it private to its owner): (fd, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(directory):
    """Make a rename in ``directory`` durable (not possible on every platform)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def is_temporary(name):
    """Whether a file name is one :func:`atomic_write` gives its temporary files."""
    return name.startswith(".") and name.endswith(".tmp")


def _c_order(key):
    # LC_ALL=C sort order is byte order of the UTF-8 encoding.
    return key.encode("utf-8")


def _check_key(key, what):
    if not key or any(c.isspace() for c in key):
        raise DataError(f"{what} must be non-empty without whitespace, got {key!r}")


def write_table(path, table):
    """Write ``{key: value}`` as sorted ``key value`` lines.

    ``value`` may be a string or a sequence of strings (joined by spaces).
    """
    lines = []
    for key in sorted(table, key=_c_order):
        _check_key(key, f"key in {os.path.basename(path)}")
        value = table[key]
        if not isinstance(value, str):
            value = " ".join(value)
        if "\n" in value:
            raise DataError(f"value of {key!r} in {path} contains a newline")
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    with atomic_write(path, "w", durable=False, encoding="utf-8", newline="\n") as f:
        f.writelines(lines)


def read_table(path):
    """Read a ``key value`` table into an insertion-ordered dict.

    Raises
    ------
    DataDirError
        On a duplicate key.
    """
    table = {}
    with open(path, encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                key, _, value = line.partition(" ")
                if key in table:
                    raise DataDirError(f"{path}:{n}: duplicate key {key!r}")
                table[key] = value.strip()
        except UnicodeDecodeError:
            raise DataDirError(f"{path}: not UTF-8 text; expected '<key> <value>' lines "
                               f"(is it a binary file?)") from None
    return table


def spk2utt_of(utt2spk):
    """Invert ``utt2spk`` into ``{spk: 'utt1 utt2 ...'}`` with sorted utterances."""
    out = {}
    for utt in sorted(utt2spk, key=_c_order):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in out.items()}


def write_data_dir(path, wav_scp, text, utt2spk, extra=None):
    """Write a data directory (created if needed).

    Parameters
    ----------
    path : str
        Directory to write.
    wav_scp, text, utt2spk : dict
        Required tables keyed by utterance id.
    extra : dict of str -> dict, optional
        More utterance-keyed tables by file name (e.g. ``{"text.phn": ...}``).
    """
    if set(wav_scp) != set(text) or set(wav_scp) != set(utt2spk):
        raise DataError("wav_scp, text and utt2spk must have the same utterances")
    os.makedirs(path, exist_ok=True)
    write_table(os.path.join(path, "wav.scp"), wav_scp)
    write_table(os.path.join(path, "text"), text)
    write_table(os.path.join(path, "utt2spk"), utt2spk)
    write_table(os.path.join(path, "spk2utt"), spk2utt_of(utt2spk))
    for name, table in (extra or {}).items():
        if set(table) != set(wav_scp):
            raise DataError(f"extra table {name!r} must have the same utterances as wav_scp")
        write_table(os.path.join(path, name), table)


def read_data_dir(path):
    """Read every known table present in a data directory.

    Returns
    -------
    dict of str -> dict
        File name -> table, for the required files and any of
        :data:`UTT_TABLES` that exist.
    """
    out = {}
    for name in REQUIRED + UTT_TABLES:
        fn = os.path.join(path, name)
        if os.path.exists(fn):
            out[name] = read_table(fn)
    return out


def resolve_wav(data_dir, wav_path):
    """Absolute path of a ``wav.scp`` entry (relative = relative to the corpus root)."""
    if os.path.isabs(wav_path):
        return wav_path
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(data_dir)), wav_path))


def _sorted_keys_problem(path):
    keys = []
    with open(path, encoding="utf-8") as f:
        keys = [line.split(" ", 1)[0].rstrip("\n") for line in f if line.strip()]
    enc = [_c_order(k) for k in keys]
    if enc != sorted(enc):
        return f"{os.path.basename(path)} is not sorted in C (byte) order"
    if len(set(keys)) != len(keys):
        return f"{os.path.basename(path)} has duplicate keys"
    return None


def validate_data_dir(path, phones=None, check_audio=False):
    """Check that a data directory is complete, sorted and consistent.

    Parameters
    ----------
    path : str
        The data directory.
    phones : collection of str, optional
        If given, every label in ``text.phn`` must be one of these.
    check_audio : bool
        Also check that every ``wav.scp`` file exists.

    Returns
    -------
    dict of str -> dict
        The tables, as :func:`read_data_dir`.

    Raises
    ------
    DataDirError
        Listing every problem found.
    """
    if not os.path.isdir(path):
        raise DataDirError(f"path {path!r} is not a directory")
    problems = [f"missing {name}" for name in REQUIRED
                if not os.path.exists(os.path.join(path, name))]
    if problems:
        raise DataDirError(f"{path}: " + "; ".join(problems))
    for name in REQUIRED + UTT_TABLES:
        fn = os.path.join(path, name)
        if os.path.exists(fn):
            p = _sorted_keys_problem(fn)
            if p:
                problems.append(p)
    tables = read_data_dir(path)
    utts = set(tables["wav.scp"])
    if not utts:
        problems.append("wav.scp is empty")
    for name, table in tables.items():
        if name != "spk2utt" and set(table) != utts:
            diff = sorted(set(table) ^ utts)[:5]
            problems.append(f"{name} and wav.scp differ in utterances, e.g. {diff}")
    utt2spk = tables["utt2spk"]
    if tables["spk2utt"] != spk2utt_of(utt2spk):
        problems.append("spk2utt is not the inverse of utt2spk")
    bad_prefix = [u for u, s in utt2spk.items() if not u.startswith(s)]
    if bad_prefix:
        problems.append(f"utterance ids must start with their speaker id, e.g. {bad_prefix[:3]}")
    for name in ("text", "text.phn", "text.chr"):
        empty = [u for u, v in tables.get(name, {}).items() if not v]
        if empty:
            problems.append(f"{name} has empty transcripts, e.g. {empty[:3]}")
    if phones is not None and "text.phn" in tables:
        known = set(phones)
        unknown = sorted({p for v in tables["text.phn"].values() for p in v.split()} - known)
        if unknown:
            problems.append(f"text.phn has labels outside the inventory: {unknown}")
    if check_audio:
        missing = [u for u, w in tables["wav.scp"].items()
                   if not os.path.isfile(resolve_wav(path, w))]
        if missing:
            problems.append(f"{len(missing)} wav files missing, e.g. {missing[:3]}")
    if problems:
        raise DataDirError(f"{path}: " + "; ".join(problems))
    return tables


def write_ctm(path, segments):
    """Write CTM lines ``<utt> 1 <start> <dur> <label>`` sorted by utterance.

    Parameters
    ----------
    segments : dict of str -> list of (float, float, str)
        Per utterance, ``(start_s, dur_s, label)`` in time order.
    """
    with atomic_write(path, "w", durable=False, encoding="utf-8", newline="\n") as f:
        for utt in sorted(segments, key=_c_order):
            for start, dur, label in segments[utt]:
                f.write(f"{utt} 1 {start:.3f} {dur:.3f} {label}\n")


def read_ctm(path):
    """Read a CTM file into ``{utt: [(start_s, dur_s, label), ...]}``."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if len(parts) != 5:
                raise DataDirError(f"{path}:{n}: expected 5 fields, got {line!r}")
            out.setdefault(parts[0], []).append((float(parts[2]), float(parts[3]), parts[4]))
    return out
