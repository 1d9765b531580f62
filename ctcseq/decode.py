"""Decoding CTC outputs: greedy (best path), prefix beam search with n-gram
language models, and forced alignment.

Score conventions
-----------------
All scores are natural logarithms.

* Greedy: the log-probability of the best path, sum over frames of the
  frame's largest log-probability.
* Beam search: ``score = log P_ctc(y | x) + alpha * log P_lm(y) + beta * |y|``.
  ``log P_ctc(y | x)`` is the CTC prefix probability the beam accumulated
  (paths pruned away are missing, so it is a lower bound on the exact value
  :func:`ctcseq.ctc_loss` gives, and equal to it when nothing was pruned).
  ``|y|`` counts tokens for a :class:`~ctcseq.lm.TokenLM` and words for a
  :class:`~ctcseq.lm.WordLM`; ``log P_lm`` includes the end-of-sentence
  symbol (and, for a word model, the word still being spelt at the end).
  Without a model the score is ``log P_ctc(y | x)`` alone.
* Forced alignment: the log-probability of the single best CTC path that
  collapses to the transcript (Viterbi).

Frames are indices into the time axis of ``log_probs``; multiply by the
frame shift for seconds.
"""
import contextlib
import math
from typing import List, NamedTuple

import numpy as np

from . import _checks, device
from .kernels import decode_cpu as _k
from .lm import NGramLM, TokenLM, WordLM


class Hypothesis(NamedTuple):
    """One beam-search result.

    tokens : list of int
        Labels, blanks removed and repeats merged.
    score : float
        Total score (see the module's score conventions).
    timestamps : list of int
        For each token, the frame at which it starts: the last frame at which
        most of the probability of the prefix ending in it arrived by
        appending it (made non-decreasing along the hypothesis).
    acoustic_score : float
        ``log P_ctc(y | x)`` as accumulated by the beam, without the LM.
    """
    tokens: List[int]
    score: float
    timestamps: List[int]
    acoustic_score: float


class Alignment(NamedTuple):
    """One forced alignment.

    starts, ends : ndarray of int64, shape (S,)
        First and one-past-last frame of each target token on the best path.
    score : float
        Log-probability of that path.
    """
    starts: np.ndarray
    ends: np.ndarray
    score: float


def _log_probs_and_lengths(log_probs, lengths, dev=None):
    """Validated log_probs (NumPy, or the Numba view of a CUDA array when
    ``dev`` is given) and int64 host lengths."""
    if dev is not None:
        log_probs = dev.view(log_probs)
        lengths = dev.host_copy(lengths)
    lp = _checks.log_probs(log_probs)
    T, N, C = lp.shape
    if lengths is None:
        il = np.full(N, T, np.int64)
    else:
        il = _checks.lengths(lengths, "lengths", N, T, "T", time_major=True)
    return lp, il


def _no_nan(lp, il, name, nan_rows=None):
    """Refuse NaN on valid frames (padding past the lengths may hold anything).
    nan_rows: (T, N) flags already computed (on the device)."""
    for n in range(lp.shape[1]):
        if nan_rows is not None:
            bad = nan_rows[:il[n], n] != 0
        else:
            bad = np.isnan(lp[:il[n], n]).any(axis=1)
        if bad.any():
            raise ValueError(f"{name} holds NaN at frame {int(np.argmax(bad))} of sequence "
                             f"{n}")


@contextlib.contextmanager
def _on_device(log_probs):
    """The activated :class:`ctcseq.device.Device` of CUDA log_probs, or None."""
    if device.is_cuda(log_probs):
        with device.Device(log_probs).activate() as dev:
            yield dev
    else:
        yield None


def _collapse(best, value, il, blank):
    """Greedy results from per-frame best classes (T, N) and their
    log-probabilities, as decode_cpu.greedy computes them."""
    N = il.shape[0]
    labels, spans, scores = [], [], np.zeros(N, np.float64)
    for n in range(N):
        b = best[:il[n], n]
        if b.size:
            scores[n] = np.cumsum(value[:il[n], n])[-1]  # sequential, as on the CPU
        starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]]) if b.size else np.zeros(0, int)
        ends = np.r_[starts[1:], b.size]
        keep = b[starts] != blank
        labels.append(b[starts][keep].tolist())
        spans.append(np.stack([starts[keep], ends[keep]], axis=1).astype(np.int64))
    return labels, spans, scores


def greedy_decode(log_probs, lengths=None, blank=0, return_timestamps=False):
    """Best-path decoding: the most probable class per frame, repeats merged,
    blanks removed.

    Parameters
    ----------
    log_probs : ndarray, shape (T, N, C), float32 or float64
        Per-frame log-probabilities; frames past ``lengths[n]`` are ignored
        (NaN allowed there, refused on valid frames, here and below).
    lengths : array of int, shape (N,), optional
        Valid frames per sequence, each in [0, T]; default all T.
    blank : int, default 0
    return_timestamps : bool, default False
        Also return the frame span of each token.

    Returns
    -------
    labels : list of N lists of int
    spans : list of N ndarrays of shape (len(labels[n]), 2), int64
        Only with ``return_timestamps``: first and one-past-last frame of the
        run of frames that emitted each token.
    scores : ndarray, shape (N,), float64
        Only with ``return_timestamps``: log-probability of the best path.
    """
    with _on_device(log_probs) as dev:
        lp, il = _log_probs_and_lengths(log_probs, lengths, dev)
        T, N, C = lp.shape
        blank = _checks.label_index(blank, "blank", C)
        if dev is not None:
            from .kernels import decode_cuda
            best, value, nan_rows = decode_cuda.greedy_rows(dev, lp, il)
            _no_nan(lp, il, "log_probs", nan_rows)
            labels, spans, sc = _collapse(best, value, il, blank)
            return (labels, spans, sc) if return_timestamps else labels
        _no_nan(lp, il, "log_probs")
        tok = np.zeros((N, T), np.int64)
        st = np.zeros((N, T), np.int64)
        en = np.zeros((N, T), np.int64)
        ln = np.zeros(N, np.int64)
        sc = np.zeros(N, np.float64)
        _k.greedy(lp, il, blank, tok, st, en, ln, sc)
        labels = [tok[n, :ln[n]].tolist() for n in range(N)]
        if not return_timestamps:
            return labels
        spans = [np.stack([st[n, :ln[n]], en[n, :ln[n]]], axis=1) for n in range(N)]
        return labels, spans, sc


def _lm_args(lm, C, blank):
    """The kernel's LM arguments (mode, order, V, bos, eos, unk_logp, unk_word,
    5 n-gram tables, 3 lexicon arrays, delimiter, constrain, partial OOV score)."""
    empty_i = np.full(8, -1, np.int64)
    empty_f = np.zeros(8, np.float64)
    if lm is None:
        return (_k.LM_NONE, 1, 1, 0, 0, 0.0, 0, empty_i, empty_i, empty_f, empty_i, empty_f,
                empty_i, empty_i, empty_i, -1, False, 0.0)
    if isinstance(lm, TokenLM):
        if lm.num_classes != C or lm.blank != blank:
            raise ValueError(f"lm was trained for C = {lm.num_classes} classes with blank = "
                             f"{lm.blank}; log_probs has C = {C} and blank = {blank}")
        return (_k.LM_TOKEN, lm.order, lm.num_symbols, lm.bos, lm.eos, lm.unk_logp, lm.unk,
                *lm.tables, empty_i, empty_i, empty_i, -1, False, 0.0)
    if isinstance(lm, WordLM):
        if len(lm.tokens) != C:
            raise ValueError(f"lm has {len(lm.tokens)} tokens; log_probs has C = {C} classes")
        if lm.delimiter >= 0 and lm.delimiter == blank:
            raise ValueError("the word delimiter of lm is the blank")
        g = lm.ngram
        return (_k.LM_WORD, g.order, g.num_symbols, g.bos, g.eos, g.unk_logp, g.unk,
                *g.tables, lm.lex_keys, lm.lex_child, lm.lex_word, lm.delimiter,
                lm.constrain, lm.partial_oov_score)
    if isinstance(lm, NGramLM):
        raise ValueError("a word NGramLM must be wrapped in WordLM(ngram, tokens, ...) to "
                         "tell the decoder how words are spelt")
    raise ValueError(f"lm must be None, a TokenLM or a WordLM, got {type(lm).__name__}")


def _finite(x, name):
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return v


def _positive_int(x, name, lo=1):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {x!r}")
    return int(x)


def beam_search(log_probs, lengths=None, beam_width=16, blank=0, prune_threshold=-10.0,
                top_k=None, beam_threshold=None, lm=None, alpha=0.5, beta=0.0, nbest=1):
    """CTC prefix beam search (Hannun et al., 2014), batched, with optional
    shallow fusion of an n-gram language model.

    Parameters
    ----------
    log_probs : ndarray, shape (T, N, C), float32 or float64
        Per-frame log-probabilities.
    lengths : array of int, shape (N,), optional
        Valid frames per sequence, each in [0, T]; default all T.
    beam_width : int, default 16
        Prefixes kept after every frame, >= 1.
    blank : int, default 0
    prune_threshold : float, default -10.0
        A token is tried as an extension at a frame only if its
        log-probability there is >= prune_threshold (natural log); the
        frame's most probable class is always tried.  ``-inf`` disables.
    top_k : int, optional
        Try at most the top_k most probable non-blank tokens per frame.
    beam_threshold : float, optional
        Drop prefixes scoring more than this below the frame's best (> 0).
    lm : TokenLM or WordLM, optional
        Language model fused with weight alpha and insertion bonus beta.
    alpha, beta : float
        LM weight and bonus per token (TokenLM) or word (WordLM).
    nbest : int, default 1
        Hypotheses returned per sequence, 1 <= nbest <= beam_width.

    Returns
    -------
    list of N lists of Hypothesis
        Best first; fewer than nbest when fewer prefixes survived, and none
        when a lexicon constrains the search and no prefix in the beam ends
        on a whole word.

    Notes
    -----
    Prefixes are nodes of a trie with parent pointers; (parent, token) pairs
    are hashed, so a prefix reached by two routes is one candidate whose
    probabilities are summed.  Work per frame is O(beam_width x tokens
    tried); memory per sequence O(T x beam_width), plus a T x beam_width x C
    cache of token-LM scores with a :class:`~ctcseq.lm.TokenLM`.

    With a :class:`~ctcseq.lm.WordLM` without a word delimiter, prefixes
    that spell the same tokens with different word ends are kept apart (each
    with the full acoustic probability of the tokens); the result lists each
    token sequence once, with its best segmentation's score.

    The search runs on the CPU: CUDA log_probs are copied to the host.

    With beam_width = 1 the search keeps the single most probable *prefix*,
    which equals greedy decoding when each frame's best class is clearly
    ahead (e.g. >= 0.9) but may differ on flat frames, where the prefix's
    summed probability and the best single path disagree.
    """
    if device.is_cuda(log_probs):  # the search runs on the CPU
        with _on_device(log_probs) as dev:
            log_probs = dev.download(dev.view(log_probs))
            lengths = dev.host_copy(lengths)
    lp, il = _log_probs_and_lengths(log_probs, lengths)
    T, N, C = lp.shape
    blank = _checks.label_index(blank, "blank", C)
    beam = _positive_int(beam_width, "beam_width")
    nbest = _positive_int(nbest, "nbest")
    if nbest > beam:
        raise ValueError(f"nbest = {nbest} exceeds beam_width = {beam}")
    pt = float(prune_threshold)
    if math.isnan(pt):
        raise ValueError("prune_threshold is NaN")
    k = 0 if top_k is None else _positive_int(top_k, "top_k")
    bt = math.inf
    if beam_threshold is not None:
        bt = float(beam_threshold)
        if not bt > 0:
            raise ValueError(f"beam_threshold must be > 0, got {beam_threshold!r}")
    alpha = _finite(alpha, "alpha")
    beta = _finite(beta, "beta")
    lmargs = _lm_args(lm, C, blank)
    _no_nan(lp, il, "log_probs")
    Tm = max(T, 1)
    # without a delimiter token, hypotheses may differ only in where words
    # end: ask for the whole beam and keep the best per token sequence
    dedupe = isinstance(lm, WordLM) and lm.delimiter < 0
    nk = beam if dedupe else nbest
    out_tokens = np.zeros((N, nk, Tm), np.int64)
    out_frames = np.zeros((N, nk, Tm), np.int64)
    out_len = np.zeros((N, nk), np.int64)
    out_score = np.zeros((N, nk), np.float64)
    out_ac = np.zeros((N, nk), np.float64)
    out_count = np.zeros(N, np.int64)
    mode, order, V, bos, eos, unk_logp, unk_word = lmargs[:7]
    _k.prefix_beam_search(lp, il, blank, beam, pt, k, bt, nk, mode, alpha, beta, order,
                          V, bos, eos, unk_logp, unk_word, *lmargs[7:], out_tokens,
                          out_frames, out_len, out_score, out_ac, out_count)
    result = []
    for n in range(N):
        hyps, seen = [], set()
        for j in range(out_count[n]):
            m = out_len[n, j]
            toks = out_tokens[n, j, :m].tolist()
            if dedupe:
                if tuple(toks) in seen:
                    continue
                seen.add(tuple(toks))
            hyps.append(Hypothesis(toks, float(out_score[n, j]),
                                   out_frames[n, j, :m].tolist(), float(out_ac[n, j])))
        result.append(hyps[:nbest])
    return result


def forced_align(log_probs, targets, input_lengths, target_lengths, blank=0):
    """Viterbi alignment of each transcript to its frames.

    Parameters
    ----------
    log_probs : ndarray, shape (T, N, C), float32 or float64
    targets : ndarray of int, shape (N, S) padded, or (sum(target_lengths),)
        Transcripts (labels in [0, C), never the blank), as for
        :func:`ctcseq.ctc_loss`.
    input_lengths, target_lengths : array of int, shape (N,)
    blank : int, default 0

    Returns
    -------
    list of N Alignment
        Token spans (frames, end exclusive) on the most probable CTC path
        collapsing to the transcript, and that path's log-probability.

    Raises
    ------
    ValueError
        For bad arguments, and for a transcript that needs more frames than
        the sequence has (S labels plus one blank between each repeated
        pair), naming the sequence.
    """
    with _on_device(log_probs) as dev:
        lp, il = _log_probs_and_lengths(log_probs, None, dev)
        T, N, C = lp.shape
        if dev is not None:
            targets, input_lengths, target_lengths = map(
                dev.host_copy, (targets, input_lengths, target_lengths))
        il = _checks.lengths(input_lengths, "input_lengths", N, T, "T", time_major=True)
        blank = _checks.label_index(blank, "blank", C)
        flat, offsets, tl = _checks.targets(targets, target_lengths, N, C, blank)
        if dev is not None:
            from .kernels import ctc_cuda
            _, nan_rows = ctc_cuda.scan_nan(dev, lp, dev.upload(il), rows=True)
            _no_nan(lp, il, "log_probs", dev.download(nan_rows))
        else:
            _no_nan(lp, il, "log_probs")
        for n in range(N):
            seq = flat[offsets[n]:offsets[n] + tl[n]]
            need = int(tl[n]) + int(np.count_nonzero(seq[1:] == seq[:-1]))
            if need > il[n]:
                raise ValueError(f"the transcript of sequence {n} needs at least {need} frames "
                                 f"({tl[n]} labels + {need - tl[n]} blanks between repeats) but "
                                 f"input_lengths[{n}] = {il[n]}")
        if dev is not None:
            from .kernels import decode_cuda
            st, en, sc = decode_cuda.viterbi_align(dev, lp, flat, offsets, il, tl, blank)
        else:
            S = max(int(tl.max()), 1)
            st = np.full((N, S), -1, np.int64)
            en = np.full((N, S), -1, np.int64)
            sc = np.zeros(N, np.float64)
            _k.viterbi_align(lp, flat, offsets, il, tl, blank, st, en, sc)
        return [Alignment(st[n, :tl[n]].copy(), en[n, :tl[n]].copy(), float(sc[n]))
                for n in range(N)]


def word_spans(tokens, starts, ends, delimiter):
    """Group token spans into word spans at a delimiter token.

    Parameters
    ----------
    tokens : sequence of int
    starts, ends : sequence of int
        Frame span of each token (e.g. from :func:`forced_align`).
    delimiter : int
        Token separating words (e.g. the space character).

    Returns
    -------
    list of (first token index, one-past-last token index, start frame, end frame)
        One entry per word (delimiters excluded).
    """
    out, first = [], None
    for i, tkn in enumerate(list(tokens) + [delimiter]):
        if tkn == delimiter:
            if first is not None:
                out.append((first, i, int(starts[first]), int(ends[i - 1])))
            first = None
        elif first is None:
            first = i
    return out


def token_spans(starts, blank_frames, max_blank):
    """Frame spans of tokens as a listener hears them: each token from its
    first frame to the next token's first frame, or to the start of the first
    long run of blank frames before it.

    CTC emits a token on one or a few frames (its spike); the frames after
    it, until the next token, are blanks that still belong to the sound of
    that token, except a long run of blanks, which is a pause.

    Parameters
    ----------
    starts : sequence of int, shape (S,)
        First frame of each token, strictly increasing.
    blank_frames : array of bool, shape (T,)
        True where the frame belongs to no token (the blank is the most
        probable class, or the alignment path is on a blank).
    max_blank : int
        A run of at least this many blank frames is a pause that ends the
        token before it (>= 1).

    Returns
    -------
    ndarray of int64, shape (S, 2)
        [start, end) frames; ``start < end <= next start``, the last token
        ending at T at the latest.
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    blank = np.asarray(blank_frames, dtype=bool).reshape(-1)
    T, S = blank.shape[0], starts.shape[0]
    max_blank = _positive_int(max_blank, "max_blank")
    if S and (starts[0] < 0 or starts[-1] >= T or np.any(np.diff(starts) <= 0)):
        raise ValueError(f"starts must be strictly increasing frames in [0, {T}), got "
                         f"{starts.tolist()}")
    # first frame of the long blank run covering each frame (T when none): a
    # run of length >= max_blank starting at a is recorded for all its frames
    pause_at = np.full(T + 1, T, np.int64)
    t = 0
    while t < T:
        if blank[t]:
            u = t
            while u < T and blank[u]:
                u += 1
            if u - t >= max_blank:
                pause_at[t:u] = t
            t = u
        else:
            t += 1
    # the first long-run start at or after each frame
    nxt = np.minimum.accumulate(pause_at[::-1])[::-1]
    out = np.zeros((S, 2), np.int64)
    for i in range(S):
        stop = starts[i + 1] if i + 1 < S else T
        end = min(stop, nxt[starts[i] + 1]) if starts[i] + 1 <= T else stop
        out[i] = starts[i], max(end, starts[i] + 1)
    return out


def to_ctm(utterance, spans, names, frame_shift, channel=1):
    """CTM lines ``utt channel start duration name`` (seconds).

    spans : iterable of (start frame, end frame); names : the unit names.
    """
    return [f"{utterance} {channel} {s * frame_shift:.3f} {(e - s) * frame_shift:.3f} {nm}"
            for (s, e), nm in zip(spans, names)]
