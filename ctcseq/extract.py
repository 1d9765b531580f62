"""Feature extraction of a whole corpus: parallel, cached on disk, resumable.

Layout of a feature directory::

    feats.json          format version and the FeatureConfig used
    feats.scp           "<utt> <file>" for every extracted utterance (sorted)
    failed.txt          "<utt> <reason>" for files that could not be used
    npy/<utt>.npy       (n_frames, dim) float32, one file per utterance
    shards/J-of-N.txt   with sharded extraction: what shard J of N did,
                        "<utt> ok" or "<utt> failed <reason>" per utterance

Sharded extraction (Kaldi's ``JOB=1:N``, a Slurm array job, or the ranks of
``mpiexec``): :func:`extract_corpus` with ``shard=J, num_shards=N`` extracts
every N-th utterance (in sorted order, starting at the J-th) into the shared
directory and records it in ``shards/``; :func:`merge_shards` (called by the
last shard to finish, or on its own) checks that every utterance was done
by exactly one shard and writes ``feats.scp`` and ``failed.txt``.  Until
then the directory is incomplete and :class:`FeatureStore` says which shards
are missing.

Each ``.npy`` is written to a temporary name and renamed, so an interrupted
run leaves no half-written file and a rerun extracts only what is missing
(a temporary file that a killed run left behind is removed by the next run).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from .datadir import atomic_write, is_temporary
from .errors import DataError, UserError
from .features import AudioError, FeatureConfig, compute_features, load_audio
from .progress import Progress

__all__ = ["extract_corpus", "merge_shards", "shard_utterances", "FeatureStore",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _extract_one(job):
    utt, wav, out, cfg_dict = job
    cfg = FeatureConfig.from_dict(cfg_dict)
    try:
        feats = compute_features(load_audio(wav, cfg.sample_rate), cfg, name=wav)
    except AudioError as e:
        return utt, str(e)
    # no fsync per file: features can be recomputed, and the rename alone never
    # shows a partial file under the final name
    with atomic_write(out, durable=False) as f:
        np.save(f, feats)
    return utt, None


def _remove_stale_temporaries(npy_dir):
    """Temporary files of a run that was killed before it could remove them
    (those of older versions were named ``<utt>.npy.tmp.npy``)."""
    for name in os.listdir(npy_dir):
        if is_temporary(name) or name.endswith(".npy.tmp.npy"):
            try:
                os.unlink(os.path.join(npy_dir, name))
            except FileNotFoundError:
                pass


def _load_librosa_kernels():
    """Import the librosa modules the workers use, in this process first.

    They compile Numba gufuncs with ``cache=True`` as they are imported.
    Two workers compiling them into an empty cache at the same moment can
    leave cache files that disagree with each other, and any later process
    that loads them crashes (numba issue #10128): on a fresh install that
    was the first ``--jobs 2`` extraction.  Compiled here once, the cache is
    complete before any worker starts, and the workers only read it.
    """
    import librosa.core.audio  # noqa: F401  (resampling; has gufuncs)
    import librosa.filters  # noqa: F401  (mel filters)
    import librosa.util.utils  # noqa: F401  (has gufuncs; librosa imports it lazily)


def _check_or_write_config(out_dir, cfg):
    meta_path = os.path.join(out_dir, "feats.json")
    meta = {"format_version": FORMAT_VERSION, "config": cfg.to_dict()}
    if os.path.exists(meta_path):
        old = _read_meta(meta_path)
        if old != meta:
            raise UserError(
                f"{out_dir} holds features extracted with other settings "
                f"({old.get('config')}); remove it or choose another directory")
    else:
        with atomic_write(meta_path, "w") as f:
            json.dump(meta, f, indent=1)


def _read_meta(meta_path):
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{meta_path} is corrupt: {e}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path} is corrupt: not a JSON object")
    return meta


def shard_utterances(utts, shard, num_shards):
    """The utterances shard ``shard`` (1-based) of ``num_shards`` extracts:
    every num_shards-th in sorted order, so shards of a length-sorted or
    speaker-sorted list get similar shares."""
    if not (isinstance(num_shards, int) and num_shards >= 1):
        raise UserError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    if not (isinstance(shard, int) and 1 <= shard <= num_shards):
        raise UserError(f"shard must be an integer in [1, {num_shards}] (the 1-based number "
                        f"of this shard), got {shard!r}")
    return sorted(utts)[shard - 1::num_shards]


def _shard_record(out_dir, shard, num_shards):
    return os.path.join(out_dir, "shards", f"{shard}-of-{num_shards}.txt")


def _read_shard_record(path):
    done, failed = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            utt, _, rest = line.rstrip("\n").partition(" ")
            if rest == "ok":
                done.append(utt)
            else:
                failed[utt] = rest.partition(" ")[2]
    return done, failed


def extract_corpus(wavs, out_dir, cfg=FeatureConfig(), jobs=2, progress=True, shard=None,
                   num_shards=1):
    """Extract features for every utterance, skipping those already on disk.

    Parameters
    ----------
    wavs : dict[str, str]
        Utterance id -> audio path (e.g. a data directory's ``wav.scp``).
    out_dir : str
        Feature directory (created); see the module docstring.
    cfg : FeatureConfig
    jobs : int
        Worker processes (1 runs in this process).
    progress : bool
        Print a progress line on stderr.
    shard, num_shards : int, optional
        Extract only shard ``shard`` (1-based) of ``num_shards``
        (:func:`shard_utterances`) and record it; the shard that completes
        the set merges them (see the module docstring).  A shard whose
        record exists is skipped.

    Returns
    -------
    dict
        ``{"extracted": int, "skipped": int, "failed": {utt: reason}}``
        (of this shard), and with shards ``"merged"``: whether the directory
        is complete now.  Unusable files (unreadable, empty, too short) are
        listed, not fatal.
    """
    if jobs < 1:
        raise UserError(f"jobs must be >= 1, got {jobs}")
    if shard is None and num_shards != 1:
        raise UserError(f"num_shards {num_shards} needs shard, the number of this shard")
    if shard is not None:
        mine = shard_utterances(wavs, shard, num_shards)
        record = _shard_record(out_dir, shard, num_shards)
    for utt in wavs:
        if not utt or "/" in utt or os.sep in utt or utt.startswith("."):
            raise DataError(f"wavs: utterance id {utt!r} cannot name a file")
    npy_dir = os.path.join(out_dir, "npy")
    os.makedirs(npy_dir, exist_ok=True)
    _check_or_write_config(out_dir, cfg)
    if shard is not None:
        return _extract_shard(wavs, mine, out_dir, cfg, jobs, progress, record, num_shards)
    _remove_stale_temporaries(npy_dir)
    res = _extract_into(wavs, sorted(wavs), out_dir, cfg, jobs, progress)
    _write_index(out_dir, wavs, res["failed"])
    return res


def _extract_into(wavs, utts, out_dir, cfg, jobs, progress):
    """Extract ``utts`` that have no feature file yet; report failures."""
    npy_dir = os.path.join(out_dir, "npy")
    todo, skipped = [], 0
    for utt in utts:
        out = os.path.join(npy_dir, utt + ".npy")
        if os.path.exists(out):
            skipped += 1
        else:
            todo.append((utt, wavs[utt], out, cfg.to_dict()))
    failed = {}
    bar = Progress(len(todo), "features", "utt", enabled=progress and bool(todo))
    if jobs == 1 or len(todo) < 2:
        results = map(_extract_one, todo)
        for utt, err in results:
            if err:
                failed[utt] = err
            bar.update()
    else:
        _load_librosa_kernels()
        # spawn, not fork: the parent may already run Numba's thread pool
        # results come back a chunk at a time: small chunks on small sets keep
        # the progress line (and its ETA) moving
        chunksize = max(1, min(16, len(todo) // (8 * jobs)))
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for utt, err in pool.map(_extract_one, todo, chunksize=chunksize):
                if err:
                    failed[utt] = err
                bar.update()
    bar.close()
    if failed and progress:
        print(f"features: {len(failed)} file(s) could not be used (see "
              f"{os.path.join(out_dir, 'failed.txt')}):", file=sys.stderr)
        for utt, err in sorted(failed.items())[:20]:
            print(f"  {utt}: {err}", file=sys.stderr)
    return {"extracted": len(todo) - len(failed), "skipped": skipped, "failed": failed}


def _extract_shard(wavs, mine, out_dir, cfg, jobs, progress, record, num_shards):
    if os.path.exists(record):
        done, failed = _read_shard_record(record)
        if sorted(done + list(failed)) == mine:
            return {"extracted": 0, "skipped": len(mine), "failed": failed,
                    "merged": merge_shards(wavs, out_dir, num_shards, wait=True)}
    # stale temporaries are not removed here: another shard may be writing
    # its own at this moment.  The directory is incomplete until this shard
    # is done: an index of an earlier run must not pass for its index.
    try:
        os.unlink(os.path.join(out_dir, "feats.scp"))
    except FileNotFoundError:
        pass
    res = _extract_into(wavs, mine, out_dir, cfg, jobs, progress)
    os.makedirs(os.path.dirname(record), exist_ok=True)
    with atomic_write(record, "w", encoding="utf-8") as f:
        f.writelines(f"{u} ok\n" if u not in res["failed"] else
                     f"{u} failed {' '.join(res['failed'][u].split())}\n" for u in mine)
    res["merged"] = merge_shards(wavs, out_dir, num_shards, wait=True)
    return res


def merge_shards(wavs, out_dir, num_shards, wait=False):
    """Check the shard records of a sharded extraction and write the index.

    Parameters
    ----------
    wavs : dict[str, str]
        All utterances (the data directory's ``wav.scp``).
    out_dir : str
    num_shards : int
    wait : bool
        A shard that is not finished is not an error: return False (the
        last shard to finish merges).

    Returns
    -------
    bool
        True when ``feats.scp`` and ``failed.txt`` were written.

    Raises
    ------
    ctcseq.errors.DataError
        Shards are missing (and not ``wait``), an utterance was done by two
        shards or by none, or a recorded feature file is gone.
    """
    records = [_shard_record(out_dir, j, num_shards) for j in range(1, num_shards + 1)]
    missing = [j for j, r in enumerate(records, 1) if not os.path.exists(r)]
    if missing:
        if wait:
            return False
        raise DataError(f"{out_dir}: shard(s) {_ranges(missing)} of {num_shards} have not "
                        f"finished (no {os.path.join('shards', f'J-of-{num_shards}.txt')}); "
                        f"run them first")
    seen, failed = {}, {}
    for j, r in enumerate(records, 1):
        done, bad = _read_shard_record(r)
        for u in done + list(bad):
            if u in seen:
                raise DataError(f"{out_dir}: utterance {u} was extracted by shards {seen[u]} "
                                f"and {j} of {num_shards} (was the data directory changed "
                                f"between shards? remove {os.path.dirname(r)} and rerun them)")
            seen[u] = j
        failed.update(bad)
        for u in done:
            if not os.path.exists(os.path.join(out_dir, "npy", u + ".npy")):
                failed[u] = "its feature file is missing (deleted after shard " \
                            f"{j} extracted it?)"
    absent = sorted(set(wavs) - set(seen))
    if absent:
        raise DataError(f"{out_dir}: {len(absent)} utterance(s) of the data directory were "
                        f"done by no shard (e.g. {absent[:5]}); the data directory changed "
                        f"after the shards ran: remove {os.path.join(out_dir, 'shards')} and "
                        f"rerun them")
    _write_index(out_dir, wavs, {u: e for u, e in failed.items() if u in wavs})
    return True


def _ranges(numbers):
    return ", ".join(str(n) for n in numbers[:20]) + (" ..." if len(numbers) > 20 else "")


def _write_index(out_dir, wavs, failed):
    lines = [f"{utt} npy/{utt}.npy\n" for utt in sorted(wavs)
             if os.path.exists(os.path.join(out_dir, "npy", utt + ".npy"))]
    with atomic_write(os.path.join(out_dir, "feats.scp"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    with atomic_write(os.path.join(out_dir, "failed.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{u} {e}\n" for u, e in sorted(failed.items()))


class FeatureStore:
    """Read access to a feature directory written by :func:`extract_corpus`.

    ``store[utt]`` is the (n_frames, dim) float32 array; ``store.config`` the
    FeatureConfig; ``len(store)``, ``utt in store`` and ``store.keys()`` as
    for a dict.

    Raises
    ------
    ctcseq.errors.DataError (a ValueError)
        ``path`` is not a (complete) feature directory, or a feature file is
        unreadable, of the wrong shape, empty or not finite (on access).
    """

    def __init__(self, path):
        self.path = path = os.fspath(path)
        meta_path = os.path.join(path, "feats.json")
        if not os.path.isfile(meta_path):
            raise DataError(f"{path} is not a feature directory (no feats.json)")
        meta = _read_meta(meta_path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{meta_path}: unsupported format version "
                            f"{meta.get('format_version')!r} (expected {FORMAT_VERSION})")
        try:
            self.config = FeatureConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{meta_path}: invalid feature settings: {e}") from None
        self._files = {}
        scp = os.path.join(path, "feats.scp")
        if not os.path.isfile(scp):
            shards = os.path.join(path, "shards")
            done = sorted(os.listdir(shards)) if os.path.isdir(shards) else []
            if done:
                raise DataError(f"{path} is an incomplete feature directory: a sharded "
                                f"extraction has not finished (done: "
                                f"{', '.join(d[:-4] for d in done[:10])}"
                                f"{' ...' if len(done) > 10 else ''}); run the missing "
                                f"shards, or 'ctcseq features DATA {path} --merge "
                                f"--num-shards N' to see what is missing")
            raise DataError(f"{path} is an incomplete feature directory (no feats.scp: was "
                            f"the extraction interrupted? run it again)")
        with open(scp, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) != 2:
                    raise DataError(f"{scp} line {lineno}: expected '<utt> <file>'")
                self._files[parts[0]] = os.path.join(path, parts[1])

    def keys(self):
        return self._files.keys()

    def __len__(self):
        return len(self._files)

    def __contains__(self, utt):
        return utt in self._files

    def __getitem__(self, utt):
        path = self._files[utt]
        try:
            feats = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: unreadable feature file (truncated or corrupt?): "
                            f"{e}") from None
        if not isinstance(feats, np.ndarray) or feats.ndim != 2 \
                or feats.shape[1] != self.config.dim:
            raise DataError(f"{path}: expected shape (n, {self.config.dim}), got "
                            f"{getattr(feats, 'shape', type(feats).__name__)}")
        if feats.shape[0] == 0:
            raise DataError(f"{path}: no frames")
        if not np.isfinite(feats).all():
            raise DataError(f"{path}: holds NaN or infinite values")
        return feats
