"""Sequence-labelling error rates: PER, CER, WER with S, D and I counts.

The error rate is (substitutions + deletions + insertions) / reference
length, from a minimum edit distance alignment (unit costs; among equal-cost
alignments substitutions are preferred, then deletions).
"""
from __future__ import annotations

import dataclasses
import os
from importlib import resources

import numpy as np

__all__ = ["align", "ErrorCounts", "error_rate", "score", "timit_fold_map", "fold",
           "alignment_picture", "timing_agreement"]


@dataclasses.dataclass
class ErrorCounts:
    """Edit operations against a reference of ``ref_len`` tokens."""

    sub: int = 0
    dele: int = 0
    ins: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """Errors per reference token (nan for an empty reference)."""
        return self.errors / self.ref_len if self.ref_len else float("nan")

    def __add__(self, other):
        return ErrorCounts(self.sub + other.sub, self.dele + other.dele,
                           self.ins + other.ins, self.ref_len + other.ref_len)


def align(ref, hyp):
    """Minimum edit distance alignment.

    Parameters
    ----------
    ref, hyp : sequences of hashable tokens

    Returns
    -------
    pairs : list of (ref_token or None, hyp_token or None)
        None on the reference side is an insertion, on the hypothesis side a
        deletion; unequal tokens a substitution.
    counts : ErrorCounts
    """
    ref, hyp = list(ref), list(hyp)
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=np.int64)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]),
                          d[i - 1, j] + 1, d[i, j - 1] + 1)
    pairs, counts = [], ErrorCounts(ref_len=n)
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            counts.sub += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            pairs.append((ref[i - 1], None))
            counts.dele += 1
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            counts.ins += 1
            j -= 1
    pairs.reverse()
    return pairs, counts


def error_rate(refs, hyps):
    """Corpus error rate: total edits / total reference tokens.

    refs, hyps : sequences of token sequences, paired in order.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps differ in length ({len(refs)} vs {len(hyps)})")
    total = ErrorCounts()
    for r, h in zip(refs, hyps):
        total = total + align(r, h)[1]
    return total.rate


def score(refs: dict, hyps: dict, fold_map=None):
    """Score hypotheses against references, utterance by utterance.

    Parameters
    ----------
    refs, hyps : dict[str, list[str]]
        Utterance id -> tokens.  Every reference needs a hypothesis (a missing
        one is an error, not a silent deletion); extra hypotheses are errors.
    fold_map : dict[str, str or None], optional
        Applied to both sides first (e.g. TIMIT 61 -> 39); None deletes.

    Returns
    -------
    total : ErrorCounts
    per_utt : dict[str, ErrorCounts]
    """
    missing = sorted(set(refs) - set(hyps))
    extra = sorted(set(hyps) - set(refs))
    if missing:
        raise ValueError(f"hyps: no hypothesis for {len(missing)} utterance(s), "
                         f"e.g. {missing[:3]}")
    if extra:
        raise ValueError(f"hyps: {len(extra)} utterance(s) not in the references, "
                         f"e.g. {extra[:3]}")
    total, per = ErrorCounts(), {}
    for utt in sorted(refs):
        r, h = refs[utt], hyps[utt]
        if fold_map is not None:
            r, h = fold(r, fold_map), fold(h, fold_map)
        per[utt] = align(r, h)[1]
        total = total + per[utt]
    return total, per


def timit_fold_map(to=39):
    """TIMIT's standard 61 -> 48 or 61 -> 39 phone folding (Lee & Hon, 1989).

    ``q`` (glottal stop) maps to None: it is deleted.  Phones already folded
    (48- or 39-set names) map to themselves, so folded and unfolded
    transcripts can be scored together.
    """
    if to not in (39, 48):
        raise ValueError(f"to must be 39 or 48, got {to}")
    col = 2 if to == 39 else 1
    text = resources.files("ctcseq.resources").joinpath("phones.60-48-39.map").read_text()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        out[parts[0]] = parts[col] if len(parts) == 3 else None
    for v in list(out.values()):
        if v is not None:
            out.setdefault(v, v)
    if to == 39:  # 48-set names that fold further
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out[parts[1]] = parts[2]
    return out


def fold(tokens, fold_map):
    """Map tokens through fold_map (None deletes; unknown tokens are errors)."""
    out = []
    for t in tokens:
        if t not in fold_map:
            raise ValueError(f"token {t!r} is not in the fold map")
        if fold_map[t] is not None:
            out.append(fold_map[t])
    return out


def alignment_picture(ref, hyp, width=100):
    """Three text lines (REF, HYP, and S/D/I markers) showing an alignment,
    wrapped at ``width`` characters."""
    pairs, _ = align(ref, hyp)
    rows = [[], [], []]
    for r, h in pairs:
        rs, hs = r if r is not None else "*" * len(str(h)), h if h is not None else "*" * len(str(r))
        w = max(len(str(rs)), len(str(hs)))
        mark = " " if r == h else ("I" if r is None else "D" if h is None else "S")
        rows[0].append(str(rs).ljust(w))
        rows[1].append(str(hs).ljust(w))
        rows[2].append(mark.ljust(w))
    lines = []
    out = ["", "", ""]
    for k in range(len(pairs)):
        if len(out[0]) + len(rows[0][k]) + 1 > width and out[0]:
            lines += [f"REF: {out[0]}", f"HYP: {out[1]}", f"     {out[2]}".rstrip(), ""]
            out = ["", "", ""]
        for i in range(3):
            out[i] += rows[i][k] + " "
    lines += [f"REF: {out[0]}", f"HYP: {out[1]}", f"     {out[2]}".rstrip()]
    return os.linesep.join(line.rstrip() if line.startswith(("REF", "HYP")) else line
                           for line in lines)


def timing_agreement(aligned, reference, tolerance=0.02):
    """How well aligned label times agree with reference times.

    Parameters
    ----------
    aligned, reference : dict[str, list of (start_s, dur_s, label)]
        Per utterance, as :func:`ctcseq.datadir.read_ctm` returns; utterances
        whose label sequences differ are skipped.
    tolerance : float
        Seconds by which a reference span is widened.

    Returns
    -------
    dict
        ``inside``: share of labels whose aligned span centre lies inside the
        widened reference span (CTC alignments are peaky, so this is the main
        figure); ``median_start_error`` and ``p90_start_error`` in seconds;
        ``labels`` and ``utterances`` compared; ``skipped`` utterances.
    """
    inside, dev, skipped = [], [], 0
    for utt, segs in aligned.items():
        ref = reference.get(utt, [])
        if [s[2] for s in segs] != [s[2] for s in ref]:
            skipped += 1
            continue
        for (start, dur, _), (rstart, rdur, _) in zip(segs, ref):
            centre = start + dur / 2
            inside.append(rstart - tolerance <= centre <= rstart + rdur + tolerance)
            dev.append(abs(start - rstart))
    if not dev:
        raise ValueError("no utterance has the same labels in both alignments")
    return {"inside": float(np.mean(inside)), "median_start_error": float(np.median(dev)),
            "p90_start_error": float(np.percentile(dev, 90)), "labels": len(dev),
            "utterances": len(aligned) - skipped, "skipped": skipped}
