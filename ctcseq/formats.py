"""Output formats of recognition results (:mod:`ctcseq.recognize`).

* ``text``: ``<utt> <tok> <tok> ...`` lines (what ``ctcseq eval`` reads).
* ``ctm``: ``<utt> 1 <start s> <duration s> <unit>`` lines, words when the
  results have words (else tokens, the word delimiter left out).
* ``json``: one JSON object per line: ``utterance``, ``tokens`` and ``words``
  (each ``{"symbol"/"text", "start", "end"[, "score"]}``, seconds), ``score``,
  ``acoustic_score``, ``score_per_frame``, ``frames``, ``duration``,
  ``warnings``, ``error`` (null when decoded), ``nbest`` (with nbest > 1),
  and for alignments ``poor`` and ``unexplained_seconds``.
* ``srt`` and ``vtt``: subtitles of one recording's words, a cue every
  ``max_words`` words, ``max_seconds`` seconds or pause of at least
  ``min_gap`` seconds.  Results without words (a phone model with no
  lexicon) are refused with a :class:`~ctcseq.errors.UserError`: cues of
  phones are no subtitles.

Results with an ``error`` are left out of every format but JSON, which
records them.
"""
from __future__ import annotations

import json
import math

from .errors import UserError

__all__ = ["FORMATS", "text_lines", "ctm_lines", "json_lines", "srt", "vtt", "cues",
           "format_results"]

FORMATS = ("text", "ctm", "json", "srt", "vtt")


def text_lines(results):
    """``<utt> <symbols>`` lines of the decoded results (an empty
    transcript gives ``"<utt> "``, as ``ctcseq decode`` always wrote)."""
    return [f"{r.utterance} {' '.join(r.symbols)}" for r in results if r.error is None]


def _units(r, words, skip):
    """(name, start, end, first token, last token) of the result's units."""
    if words and r.words is not None:
        return [(w.text, w.start, w.end, r.tokens[w.tokens[0]], r.tokens[w.tokens[1] - 1])
                for w in r.words]
    return [(t.symbol, t.start, t.end, t, t) for t in r.tokens if t.symbol not in skip]


def ctm_lines(results, words=True, times="spans", skip=("<space>",)):
    """CTM lines ``utt 1 start duration unit`` (seconds, 3 decimals).

    Parameters
    ----------
    results : iterable of Result
    words : bool, default True
        Words where a result has them, else tokens.
    times : {"spans", "emission"}
        ``spans``: the tokens' and words' start and end (see
        :mod:`ctcseq.recognize`); ``emission``: the steps on the path that
        emitted each token (a word from its first token's first to its
        last token's last), as ``ctcseq align --feats`` always wrote.
    skip : tuple of str
        Tokens left out of token lines (the word delimiter).
    """
    if times not in ("spans", "emission"):
        raise UserError(f"times must be 'spans' or 'emission', got {times!r}")
    out = []
    for r in results:
        if r.error is not None:
            continue
        for name, start, end, first, last in _units(r, words, skip):
            if times == "emission":
                sh = r.frame_shift
                # frames times the shift, as decode.to_ctm: the same digits
                s, e = first.emission[0], last.emission[1]
                out.append(f"{r.utterance} 1 {first.offset + s * sh:.3f} "
                           f"{(last.offset + e * sh) - (first.offset + s * sh):.3f} {name}"
                           if first.offset or last.offset else
                           f"{r.utterance} 1 {s * sh:.3f} {(e - s) * sh:.3f} {name}")
            else:
                out.append(f"{r.utterance} 1 {start:.3f} {end - start:.3f} {name}")
    return out


def _num(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def json_lines(results):
    """One JSON object per result (see the module's description)."""
    out = []
    for r in results:
        d = {"utterance": r.utterance,
             "tokens": [{"symbol": t.symbol, "start": _num(t.start), "end": _num(t.end),
                         "score": _num(t.score)} for t in r.tokens],
             "words": None if r.words is None else
             [{"text": w.text, "start": _num(w.start), "end": _num(w.end)} for w in r.words],
             "score": _num(r.score), "acoustic_score": _num(r.acoustic_score),
             "score_per_frame": _num(r.score_per_frame), "frames": r.frames,
             "duration": _num(r.duration), "warnings": list(r.warnings), "error": r.error}
        if r.nbest:
            d["nbest"] = [{"symbols": a.symbols, "score": _num(a.score),
                           "acoustic_score": _num(a.acoustic_score)} for a in r.nbest]
        if hasattr(r, "poor"):
            d["poor"] = r.poor
            d["unexplained_seconds"] = _num(r.unexplained_seconds)
        out.append(json.dumps(d, ensure_ascii=False))
    return out


def cues(result, max_words=7, max_seconds=5.0, min_gap=1.0):
    """Subtitle cues of one result's words: [(start s, end s, text)].

    A cue ends after ``max_words`` words, before a word that would make it
    longer than ``max_seconds``, and at a pause of at least ``min_gap``.

    Raises
    ------
    UserError
        The result has no words, or an error.
    """
    if result.error is not None:
        raise UserError(f"{result.utterance}: no subtitles: {result.error}")
    if result.words is None:
        raise UserError(f"{result.utterance}: subtitles need words: a model with a word "
                        f"delimiter token (<space>) or a lexicon; this result has tokens "
                        f"only (use the text, ctm or json format)")
    out, cur = [], []
    for w in result.words:
        if cur and (len(cur) >= max_words or w.end - cur[0].start > max_seconds
                    or w.start - cur[-1].end >= min_gap):
            out.append(cur)
            cur = []
        cur.append(w)
    if cur:
        out.append(cur)
    return [(c[0].start, c[-1].end, " ".join(w.text for w in c)) for c in out]


def _timestamp(seconds, sep):
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_times(c, prev_end_ms):
    """Millisecond start and end, ordered, each cue at least 1 ms long and
    never before the previous one's end."""
    start = max(int(round(c[0] * 1000)), prev_end_ms)
    end = max(int(round(c[1] * 1000)), start + 1)
    return start, end


def srt(result, **options):
    """SubRip subtitles of one result: lines (numbered cues, ``HH:MM:SS,mmm``);
    options as for :func:`cues`."""
    lines, prev = [], 0
    for i, c in enumerate(cues(result, **options), 1):
        s, prev = _cue_times(c, prev)
        lines += [str(i), f"{_timestamp(s / 1000, ',')} --> {_timestamp(prev / 1000, ',')}",
                  c[2], ""]
    return lines


def vtt(result, **options):
    """WebVTT subtitles of one result: lines (``WEBVTT`` header,
    ``HH:MM:SS.mmm`` cues); options as for :func:`cues`."""
    lines, prev = ["WEBVTT", ""], 0
    for c in cues(result, **options):
        s, prev = _cue_times(c, prev)
        lines += [f"{_timestamp(s / 1000, '.')} --> {_timestamp(prev / 1000, '.')}", c[2], ""]
    return lines


def format_results(results, fmt, times="spans"):
    """Lines of results in format ``fmt`` (one of :data:`FORMATS`); srt and
    vtt take exactly one decoded result."""
    results = list(results)
    if fmt == "text":
        return text_lines(results)
    if fmt == "ctm":
        return ctm_lines(results, times=times)
    if fmt == "json":
        return json_lines(results)
    if fmt in ("srt", "vtt"):
        ok = [r for r in results if r.error is None]
        if len(ok) != 1:
            raise UserError(f"{fmt} subtitles are of one recording: got {len(ok)} decoded "
                            f"inputs")
        return (srt if fmt == "srt" else vtt)(ok[0])
    raise UserError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
