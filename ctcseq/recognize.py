"""Recognition as a library: transcribe and align recordings with a trained
model.

::

    from ctcseq import Recognizer

    rec = Recognizer.load("exp/synth-default/model/best.npz")
    result = rec.transcribe("my_recording.flac")
    print(result.symbols, result.score_per_frame)
    for tok in result.tokens:
        print(tok.symbol, tok.start, tok.end)          # seconds
    results = rec.transcribe(["a.wav", "b.flac", (samples, 8000)])  # batched
    ali = rec.align("a.wav", "hh ah l ow")
    if ali.poor:
        print(ali.warnings)

Every recording is read through :class:`ctcseq.segment.AudioSource` and cut
by :func:`ctcseq.segment.scan` into pieces of speech (at most
``max_seconds`` long, at pauses where possible).  Each piece is featurised
with the model's :class:`~ctcseq.features.FeatureConfig`, normalised with
its :class:`~ctcseq.features.Normalizer` (per-utterance CMVN is then per
piece), and the pieces are batched by length for the network.  A piece's
tokens are shifted by its start, only those whose start lies in the piece's
keep range are kept, and the pieces of one recording are stitched in time
order.

Memory
------
:meth:`Recognizer.transcribe` works through the pieces of all its inputs
in groups of about ``group_seconds`` of audio (default 1200 s): a group is
read, featurised, run through the network (batched by length within the
group) and decoded, then only its tokens, scores and N-best symbols are
kept and its arrays are dropped.  So memory is bounded by one group, not by
the length or number of the recordings; the results do not depend on the
grouping (N-best lists are combined across pieces exactly as before).
With per-speaker CMVN and a new ``speaker``, a first pass over the pieces
gathers that speaker's statistics (features made and dropped one piece at a
time).  :meth:`Recognizer.align` aligns the speech of a recording as one
piece, so its memory grows with the recording.

A recording with no speech gives an empty result with the warning "no
speech found".

Times
-----
All times are seconds from the start of the recording.  The network runs
at one output step per ``frame_shift = stride * hop_ms / 1000`` seconds
(20 ms for the default recipe); output step ``t`` of a piece starting at
``p`` seconds covers ``[p + t * frame_shift, p + (t + 1) * frame_shift)``.

* A token's ``start`` is the start of the first step that emitted it (CTC
  emits a token on a short spike).
* Its ``end`` is the start of the next token's first step, or, when a run
  of at least ``max_blank`` seconds (default 0.3 s) of blank steps lies
  between them, the start of that run: a pause ends the token before it.
  The last token of a piece ends at the first such run after it or at the
  end of the piece.  So ``start < end``, and tokens never overlap.  Blank
  steps are those where the blank is the most probable class (decoding)
  or where the alignment path is on the blank (alignment).
* A word runs from its first token's start to its last token's end.
* ``Token.emission`` is the span of steps on the path that emitted the
  token (the spike), as ``ctcseq align --feats/--log-probs`` writes it.

Scores
------
``score`` is the decoder's score (:mod:`ctcseq.decode`): the best path's
log-probability (greedy), the beam's ``log P_ctc + alpha log P_lm + beta
|y|`` (beam search), or the Viterbi path's log-probability (alignment),
summed over pieces.  ``score_per_frame`` divides it by the output steps.
A token's ``score`` is the log-probability of the token at its first step.

Alignment quality
-----------------
An alignment is flagged ``poor`` (with a warning) when its score per
frame is below ``POOR_SCORE_PER_FRAME`` or when the path leaves more than
``POOR_UNEXPLAINED_SECONDS`` of speech unexplained: steps that the path
puts on the blank although the network's most probable class there is a
token.  A transcript covering only part of the audio does both.  The
thresholds were measured on the synthetic corpus (see the constants).
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import os
import re
from typing import List, Optional, Tuple

import numpy as np

from .errors import CtcseqError, DataError, UserError

__all__ = ["Recognizer", "Token", "Word", "Alternative", "Result", "AlignmentResult",
           "utterance_id", "POOR_SCORE_PER_FRAME", "POOR_UNEXPLAINED_SECONDS"]

#: Alignments scoring below this log-probability per output step are poor.
#: Measured with the default recipe's model (exp/synth-default, 20 ms steps)
#: on 400 of its test recordings through :meth:`Recognizer.align`: correct
#: transcripts score -0.41 to -0.01 per step (median -0.06); the first three
#: quarters of each transcript -1.03 to -0.35, the first half -1.80 to -0.57.
POOR_SCORE_PER_FRAME = -0.5
#: ... and alignments that leave more than this many seconds of steps whose
#: most probable class is a token on the blank (speech the transcript does
#: not cover).  Same measurement: correct transcripts 0 to 0.08 s (95th
#: percentile 0.02 s); three quarters 0.08 to 0.50 s; half 0.14 to 1.0 s.
#: With both thresholds no correct transcript was flagged, all 400 halves
#: and 376 of the 400 three-quarter transcripts were.
POOR_UNEXPLAINED_SECONDS = 0.2

_WHITESPACE = re.compile(r"\s")


def utterance_id(name):
    """An utterance id for a path or name: every whitespace character
    replaced by ``_``, so that ``<utt> <tokens>`` lines stay parseable
    (``"my file.wav"`` -> ``"my_file.wav"``)."""
    return _WHITESPACE.sub("_", str(name))


@dataclasses.dataclass
class Token:
    """One recognised or aligned token.

    Attributes
    ----------
    symbol : str
        The model's name of the class.
    start, end : float
        Seconds from the start of the recording (see the module's Times).
    score : float
        Log-probability of the token at its first output step.
    emission : tuple of (int, int)
        Output steps ``[first, one-past-last)`` on the path that emitted the
        token, counted from ``offset``.
    offset : float
        Start of the piece the token was decoded in, seconds.
    """
    symbol: str
    start: float
    end: float
    score: float
    emission: Tuple[int, int]
    offset: float = 0.0


@dataclasses.dataclass
class Word:
    """A word: ``text`` and its span in seconds; ``tokens`` are the indices
    ``[first, one-past-last)`` of its tokens in the result's token list."""
    text: str
    start: float
    end: float
    tokens: Tuple[int, int]


@dataclasses.dataclass
class Alternative:
    """One entry of an N-best list: symbols, total and acoustic score."""
    symbols: List[str]
    score: float
    acoustic_score: float


@dataclasses.dataclass
class Result:
    """The transcription of one input.

    Attributes
    ----------
    utterance : str
        Its id (no whitespace: see :func:`utterance_id`).
    tokens : list of Token
    words : list of Word or None
        None when the model has no word delimiter and no lexicon was given.
    score, acoustic_score : float
        Summed over the pieces (see the module's Scores; where windows of a
        long stretch of speech overlap, the overlap counts in both).
    frames : int
        Output steps decoded (overlaps counted in both windows too).
    score_per_frame : float
        ``score / frames`` (0 with no frames).
    duration : float
        Seconds of audio (of features, for feature input).
    frame_shift : float
        Seconds per output step.
    nbest : list of Alternative
        Best first; only with ``nbest > 1``.
    warnings : list of str
        Each names the input.
    error : str or None
        Why the input could not be decoded (then everything else is empty).
    """
    utterance: str
    tokens: List[Token] = dataclasses.field(default_factory=list)
    words: Optional[List[Word]] = None
    score: float = 0.0
    acoustic_score: float = 0.0
    frames: int = 0
    duration: float = 0.0
    frame_shift: float = 0.0
    nbest: List[Alternative] = dataclasses.field(default_factory=list)
    warnings: List[str] = dataclasses.field(default_factory=list)
    error: Optional[str] = None

    @property
    def symbols(self):
        """The token names, in order."""
        return [t.symbol for t in self.tokens]

    @property
    def score_per_frame(self):
        return self.score / self.frames if self.frames else 0.0

    @property
    def ok(self):
        return self.error is None


@dataclasses.dataclass
class AlignmentResult(Result):
    """A forced alignment: a :class:`Result` whose tokens are the
    transcript's, plus its quality.

    Attributes
    ----------
    poor : bool
        The alignment is unreliable (see the module's Alignment quality);
        a warning says why.
    unexplained_seconds : float
        Seconds of steps the path puts on the blank where the network's most
        probable class is a token.
    """
    poor: bool = False
    unexplained_seconds: float = 0.0


class _Piece:
    """One decodable span: features and where it sits in its recording."""
    __slots__ = ("owner", "start", "keep_start", "keep_end", "feats", "lp")

    def __init__(self, owner, start, keep_start, keep_end, feats):
        self.owner, self.start = owner, start
        self.keep_start, self.keep_end = keep_start, keep_end
        self.feats, self.lp = feats, None


def _copy_normalizer(norm):
    from .features import Normalizer
    return Normalizer.from_dict(norm.to_dict())


class Recognizer:
    """A trained model with its features, normaliser and decoder settings.

    Parameters
    ----------
    model : ctcseq.CTCModel
        Trained with ``ctcseq train`` (it carries its feature settings and
        normaliser), or give ``feature_config`` and ``normalizer``.
    lm : str, TokenLM or WordLM, optional
        Language model for beam search: a token n-gram JSON file (``ctcseq
        train --lm-order``), a word ARPA file (``*.arpa``) or a loaded model.
    beam : int, default 0
        Beam width; 0 decodes greedily.
    alpha, beta : float
        LM weight and insertion bonus (see :func:`ctcseq.beam_search`).
    lexicon : str, optional
        Lexicon file ``WORD tok tok ...``: constrains a word LM's search, gives
        words to phone results, and makes :meth:`align` transcripts words
        (spelt with their first pronunciation).
    word_delimiter : str, optional
        The token that ends a word; default ``<space>`` when the model has it.
    max_blank : float, default 0.3
        Seconds of blank steps that end a token (see the module's Times).
    batch_frames : int, default 20000
        Padded feature frames per network batch.
    group_seconds : float, default 1200
        :meth:`transcribe` processes the pieces in groups of about this many
        seconds of audio (a group ends once it reaches it), which bounds its
        memory (see the module's Memory); results do not depend on it.
        Larger groups batch by length better: on a 1.44-hour recording
        (default recipe's model, greedy, 2 threads) 100 s groups took 33 s,
        300 s 28 s, 1200 s 25 s, as long as one group of everything (see
        benchmarks/bench_long.py for the peak memory).
    progress : bool, default False
        A progress line over the pieces on stderr for long inputs (more than
        one piece and a minute of speech).
    segment : dict, optional
        Options of :func:`ctcseq.segment.scan` (``max_seconds``, ...).
    feature_config, normalizer
        For a model without stored feature settings.

    Raises
    ------
    UserError
        Impossible settings; DataError: unusable model or LM files.
    """

    def __init__(self, model, lm=None, beam=0, alpha=0.5, beta=0.0, lexicon=None,
                 word_delimiter=None, max_blank=0.3, batch_frames=20000, group_seconds=1200.0,
                 progress=False, segment=None, feature_config=None, normalizer=None, name=None):
        from .features import FeatureConfig, Normalizer
        self.model = model
        where = name or "the model"
        if feature_config is None or normalizer is None:
            feats = model.features or {}
            try:
                feature_config = feature_config or FeatureConfig.from_dict(feats["config"])
                normalizer = normalizer or Normalizer.from_dict(feats["normalizer"])
            except (KeyError, TypeError) as e:
                raise DataError(f"{where}: the model carries no feature settings ({e}); it "
                                f"was not trained with 'ctcseq train'") from None
            except ValueError as e:   # FeatureConfig / Normalizer checks: the content
                raise DataError(f"{where}: the model's feature settings are invalid: "
                                f"{e}") from None
        self.feature_config, self.normalizer = feature_config, normalizer
        vocab = model.vocabulary
        if not (isinstance(vocab, list) and len(vocab) == model.num_classes):
            vocab = [str(c) for c in range(model.num_classes)]
        self.vocabulary = list(vocab)
        self.index = {s: i for i, s in enumerate(self.vocabulary)}
        if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or beam < 0:
            raise UserError(f"beam must be an integer >= 0 (0: greedy), got {beam!r}")
        self.beam = int(beam)
        for nm, v in (("alpha", alpha), ("beta", beta), ("max_blank", max_blank)):
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise UserError(f"{nm} must be a finite number, got {v!r}")
        if max_blank <= 0:
            raise UserError(f"max_blank must be > 0 seconds, got {max_blank}")
        self.alpha, self.beta, self.max_blank = float(alpha), float(beta), float(max_blank)
        if int(batch_frames) < 1:
            raise UserError(f"batch_frames must be >= 1, got {batch_frames}")
        self.batch_frames = int(batch_frames)
        if (isinstance(group_seconds, bool)
                or not isinstance(group_seconds, (int, float, np.floating, np.integer))
                or not group_seconds > 0):
            raise UserError(f"group_seconds must be a number > 0, got {group_seconds!r}")
        self.group_seconds = float(group_seconds)
        self.progress = progress
        self.segment = dict(segment or {})
        self.frame_shift = model.stride * feature_config.hop_ms / 1000.0
        if word_delimiter is not None and word_delimiter not in self.index:
            raise UserError(f"word_delimiter {word_delimiter!r} is not one of the tokens of "
                            f"the model")
        self.word_delimiter = word_delimiter or ("<space>" if "<space>" in self.index
                                                 else None)
        self.lexicon_path = lexicon
        self.lexicon = None   # {word: first pronunciation}
        self.spellings = None   # {token tuple: word}, for words of lexicon-decoded results
        if lexicon is not None:
            from .lm import read_lexicon
            self.lexicon, self.spellings = {}, {}
            for word, toks in read_lexicon(lexicon):
                self.lexicon.setdefault(word, toks)
                self.spellings.setdefault(tuple(toks), word)
        self.lm = self._load_lm(lm, word_delimiter)
        if self.lm is not None and not self.beam:
            raise UserError("lm needs beam search: give beam > 0")

    @classmethod
    def load(cls, model_path, lm=None, beam=0, alpha=0.5, beta=0.0, lexicon=None,
             word_delimiter=None, **options):
        """A Recognizer of a model file (``best.npz`` of ``ctcseq train``);
        the other arguments as for the constructor."""
        from .model import CTCModel
        model = CTCModel.load(model_path)
        return cls(model, lm=lm, beam=beam, alpha=alpha, beta=beta, lexicon=lexicon,
                   word_delimiter=word_delimiter, name=str(model_path), **options)

    def _load_lm(self, lm, word_delimiter):
        from .lm import TokenLM, WordLM, read_arpa
        model = self.model
        if lm is None or isinstance(lm, WordLM):
            return lm
        if isinstance(lm, TokenLM):
            path, tlm = "lm", lm
        elif isinstance(lm, (str, os.PathLike)):
            path = os.fspath(lm)
            if path.endswith(".arpa"):
                return WordLM(read_arpa(path), self.vocabulary,
                              word_delimiter=word_delimiter or self.word_delimiter,
                              lexicon=self.lexicon_path)
            tlm = TokenLM.load(path)
        else:
            raise UserError(f"lm must be a file name, a TokenLM or a WordLM, got "
                            f"{type(lm).__name__}")
        if (tlm.num_classes, tlm.blank) != (model.num_classes, model.blank):
            raise UserError(f"{path} was trained for {tlm.num_classes} classes with blank "
                            f"{tlm.blank}; the model has {model.num_classes} with blank "
                            f"{model.blank} (an LM of another model?)")
        return tlm

    # -- the network -----------------------------------------------------------

    def speaker_normalizer(self, items):
        """A copy of the normaliser with statistics for new speakers.

        items : iterable of (features (T, D), speaker or None); in
        per-speaker mode every speaker not seen in training gets the
        statistics of all its items (otherwise a plain copy).
        """
        norm = _copy_normalizer(self.normalizer)
        norm.adapt((f, s) for f, s in items if s is not None)
        return norm

    def _forward(self, x, lengths):
        # a cache-free, reentrant forward where the model has one
        fwd = getattr(self.model, "infer_log_probs", None) or self.model.log_probs
        return fwd(x, lengths)

    def log_probs(self, features, speakers=None):
        """The network's outputs of feature matrices, batched by length.

        Parameters
        ----------
        features : dict of key -> ndarray (T, D)
            Raw (unnormalised) features made with :attr:`feature_config`.
        speakers : dict of key -> str, optional
            For per-speaker CMVN (new speakers get statistics from all their
            utterances).

        Returns
        -------
        dict of key -> ndarray (ceil(T / stride), C)
        """
        speakers = speakers or {}
        norm = self.speaker_normalizer((features[k], speakers.get(k)) for k in features)
        return self._log_probs(features, speakers, norm)

    def _log_probs(self, features, speakers, norm):
        from .dataset import padded_batches
        items = [(k, norm(f, speakers.get(k))) for k, f in features.items()]
        out = {}
        for keys, x, lengths in padded_batches(items, self.model.dtype, self.batch_frames):
            lp = self._forward(x, lengths)
            for n, (key, n_out) in enumerate(zip(keys, self.model.output_lengths(lengths))):
                out[key] = lp[:n_out, n]
        return out

    # -- decoding ----------------------------------------------------------------

    def _search(self, lp, lengths, nbest):
        """Per sequence: list (best first) of (labels, starts, emission ends or
        None, score, acoustic score)."""
        from .decode import beam_search, greedy_decode
        blank = self.model.blank
        if not self.beam:
            labels, spans, scores = greedy_decode(lp, lengths, blank=blank,
                                                  return_timestamps=True)
            return [[(lab, sp[:, 0], sp[:, 1], float(sc), float(sc))]
                    for lab, sp, sc in zip(labels, spans, scores)]
        hyps = beam_search(lp, lengths, beam_width=self.beam, blank=blank, lm=self.lm,
                           alpha=self.alpha, beta=self.beta, nbest=nbest)
        return [[(h.tokens, np.asarray(h.timestamps, np.int64), None, h.score,
                  h.acoustic_score) for h in hs] for hs in hyps]

    def _check_nbest(self, nbest):
        if isinstance(nbest, bool) or not isinstance(nbest, (int, np.integer)) or nbest < 1:
            raise UserError(f"nbest must be an integer >= 1, got {nbest!r}")
        if nbest > 1 and nbest > self.beam:
            raise UserError(f"nbest = {nbest} needs beam search with beam >= nbest "
                            f"(beam = {self.beam})")
        return int(nbest)

    def _decode_pieces(self, pieces, nbest):
        """Fill each piece's hypotheses (its log_probs must be set)."""
        from .dataset import padded_batches
        items = [(i, p.lp) for i, p in enumerate(pieces)]
        dtype = pieces[0].lp.dtype if pieces else self.model.dtype
        out = [None] * len(pieces)
        for keys, lp, lengths in padded_batches(items, dtype, self.batch_frames):
            for key, hyps in zip(keys, self._search(lp, lengths, nbest)):
                out[key] = hyps
        return out

    def _tokens(self, labels, starts, emit_ends, lp, blank_steps, offset):
        """Tokens of one piece (times absolute: shifted by offset)."""
        from .decode import token_spans
        starts = _strictly_increasing(np.asarray(starts, np.int64), lp.shape[0])
        if emit_ends is None:   # beam search: the spike is its first step
            emit_ends = starts + 1
        spans = token_spans(starts, blank_steps, max(1, round(self.max_blank
                                                               / self.frame_shift)))
        sh = self.frame_shift
        offset = float(offset)
        return [Token(self.vocabulary[c], offset + int(s) * sh, offset + int(e) * sh,
                      float(lp[s, c]), (int(s), int(ee)), offset)
                for c, (s, e), ee in zip(labels, spans, emit_ends)]

    def _outcome(self, p, hyps):
        """What a recording keeps of a decoded piece (its log-probs are not
        needed after this): (start, frames, best tokens in the keep range,
        score, acoustic score, alternatives [(score, ac, symbols)], warning
        or None)."""
        blank_steps = p.lp.argmax(axis=1) == self.model.blank
        best, score, ac, alts = [], 0.0, 0.0, []
        for j, (labels, starts, ends, sc, a) in enumerate(hyps):
            toks = self._tokens(labels, starts, ends, p.lp, blank_steps, p.start)
            toks = [t for t in toks if p.keep_start <= t.start < p.keep_end]
            if j == 0:
                best, score, ac = toks, sc, a
            alts.append((sc, a, [t.symbol for t in toks]))
        warning = None
        if not alts:   # a lexicon-constrained beam with no whole word: nothing
            alts.append((0.0, 0.0, []))
            end = p.start + p.lp.shape[0] * self.frame_shift
            warning = (f"{p.owner.utterance}: no hypothesis survived the search in "
                       f"{p.start:.2f}-{end:.2f} s")
        return p.start, p.lp.shape[0], best, score, ac, alts, warning

    def _assemble(self, result, outcomes, nbest):
        """Stitch a recording's piece outcomes (in time order) into result."""
        best_tokens = []
        per_piece = []   # list of alternatives per piece: (score, ac, symbols)
        for _, frames, toks, score, ac, alts, warning in outcomes:
            result.frames += frames
            best_tokens += toks
            result.score += score
            result.acoustic_score += ac
            if warning is not None:
                result.warnings.append(warning)
            per_piece.append(alts)
        # pieces overlap: a token's end never runs past the next token's start
        # (starts strictly increase: keep ranges tile the recording)
        for a, b in zip(best_tokens, best_tokens[1:]):
            a.end = min(a.end, b.start)
        result.tokens = best_tokens
        result.words = self._words(best_tokens)
        if nbest > 1:
            result.nbest = [Alternative(s, sc, ac) for sc, ac, s in _kbest(per_piece, nbest)]

    def _words(self, tokens, words=None):
        """Words of a token list: at the word delimiter, or by the lexicon's
        spellings (``words`` given: the transcript's words, in order)."""
        from .decode import word_spans
        if words is not None:
            out, i = [], 0
            for w in words:
                n = len(self.lexicon[w])
                out.append(Word(w, tokens[i].start, tokens[i + n - 1].end, (i, i + n)))
                i += n
            return out
        if self.word_delimiter is not None:
            syms = [t.symbol for t in tokens]
            spans = word_spans(syms, [t.start for t in tokens], [t.end for t in tokens],
                               self.word_delimiter)
            # word_spans casts times to int: take them from the tokens instead
            return [Word("".join(syms[a:b]), tokens[a].start, tokens[b - 1].end, (a, b))
                    for a, b, _, _ in spans]
        if self.spellings is not None:
            seg = _segment([t.symbol for t in tokens], self.spellings)
            if seg is not None:
                return [Word(w, tokens[a].start, tokens[b - 1].end, (a, b)) for w, a, b in seg]
        return None

    # -- inputs --------------------------------------------------------------------

    def _inputs(self, audio, sample_rate, names):
        """[(source, sample_rate, name)] and whether a single input was given."""
        single = not isinstance(audio, list)
        items = [audio] if single else audio
        if names is not None and len(names) != len(items):
            raise UserError(f"names: {len(names)} names for {len(items)} inputs")
        out = []
        for i, a in enumerate(items):
            sr = sample_rate
            if isinstance(a, tuple):
                if len(a) != 2:
                    raise UserError(f"audio[{i}]: give (samples, sample_rate), got a tuple of "
                                    f"{len(a)}")
                a, sr = a
            if isinstance(a, (str, os.PathLike)):
                name = os.fspath(a)
                sr = None
            elif isinstance(a, np.ndarray):
                name = "<array>" if single else f"array{i}"
            else:
                raise UserError(f"audio{'' if single else f'[{i}]'}: expected a file name or "
                                f"a NumPy array of samples, got {type(a).__name__}")
            if names is not None:
                name = names[i]
            out.append((a, sr, name))
        return out, single

    def _plan(self, inputs, results, whole=False):
        """Scan each input: [(result, source, spans)] of those with speech
        (an error or warnings go into their result).  Spans are (start, end,
        keep_start, keep_end) seconds; only the detector's frame energies are
        read into memory."""
        from .segment import AudioSource, scan
        cfg = self.feature_config
        plan = []
        for (source, sample_rate, name), result in zip(inputs, results):
            try:
                src = AudioSource(source, sample_rate=sample_rate, name=name)
                result.duration = src.duration
                if src.duration * 1000 < cfg.win_ms:
                    raise DataError(f"{name}: too short ({1000 * src.duration:.1f} ms; one "
                                    f"frame needs {cfg.win_ms:g} ms)")
                sc = scan(src, **self.segment)
            except CtcseqError as e:
                result.error = " ".join(str(e).split())
                continue
            if sc.peak > 1:
                result.warnings.append(f"{name}: samples outside [-1, 1] (peak {sc.peak:.3g})")
            spans = [(p.start, p.end, p.keep_start, p.keep_end) for p in sc.pieces]
            if whole and spans:   # one transcript: one piece over all the speech
                spans = [(spans[0][0], spans[-1][1], -math.inf, math.inf)]
            if not spans:
                result.warnings.append(f"{name}: no speech found")
                continue
            plan.append((result, src, spans))
        return plan

    def _pieces(self, plan, quiet=False):
        """Yield the pieces of a plan with their features, one at a time (a
        piece too short for a frame is skipped with a warning; an input that
        fails to read gets its error, and its further pieces are skipped).
        quiet: add no warnings (a second pass over the same plan)."""
        from .features import AudioError, compute_features
        cfg = self.feature_config
        for result, src, spans in plan:
            for start, end, ks, ke in spans:
                if result.error is not None:
                    break
                try:
                    y = src.read(start, end, cfg.sample_rate)
                    feats = compute_features(y, cfg,
                                             name=f"{src.name} ({start:.2f}-{end:.2f} s)")
                except AudioError as e:   # a piece shorter than one frame: nothing to hear
                    if not quiet:
                        result.warnings.append(f"{e}; skipped")
                    continue
                except CtcseqError as e:
                    result.error = " ".join(str(e).split())
                    break
                yield _Piece(result, float(start), ks, ke, feats)

    def _normalizer(self, plan, speaker):
        """The normaliser for these inputs: with per-speaker CMVN and a new
        speaker, its statistics come from all the pieces together (a first
        pass that keeps no features)."""
        norm = _copy_normalizer(self.normalizer)
        if speaker is not None and norm.per_speaker and speaker not in norm.speakers:
            norm.adapt((p.feats, speaker) for p in self._pieces(plan, quiet=True))
        return norm

    def _network(self, pieces, speaker, norm):
        """Set each piece's log-probs (features dropped), batched by length."""
        feats = {i: p.feats for i, p in enumerate(pieces)}
        spk = {i: speaker for i in feats} if speaker is not None else {}
        for k, lp in self._log_probs(feats, spk, norm).items():
            pieces[k].lp = lp
            pieces[k].feats = None

    def _groups(self, pieces):
        """Lists of consecutive pieces, each ending once it holds
        group_seconds of features."""
        limit = self.group_seconds * 1000 / self.feature_config.hop_ms
        group, frames = [], 0
        for p in pieces:
            group.append(p)
            frames += p.feats.shape[0]
            if frames >= limit:
                yield group
                group, frames = [], 0
        if group:
            yield group

    # -- public API ----------------------------------------------------------------

    def transcribe(self, audio, sample_rate=None, nbest=1, speaker=None, names=None):
        """Transcribe recordings.

        Parameters
        ----------
        audio : str, path-like, ndarray, (ndarray, sample_rate), or a list of these
            Files (any format soundfile reads, any rate, mono or multichannel)
            or samples, shape (samples,) or (samples, channels).
        sample_rate : int, optional
            Rate of array inputs given without one, Hz.
        nbest : int, default 1
            Alternatives per input (needs beam search with beam >= nbest).
        speaker : str, optional
            All inputs are this speaker (per-speaker CMVN models: normalised
            with statistics of all their pieces together).
        names : list of str, optional
            Ids of the inputs (default: the paths, whitespace replaced by ``_``;
            arrays ``<array>`` or ``array<i>``).

        Returns
        -------
        Result, or a list of Result for a list
            An input that cannot be decoded (missing, unreadable, empty, too
            short, NaN samples) gets a result with ``error`` set, naming it;
            the others are decoded.

        Raises
        ------
        UserError
            Bad arguments (not bad audio).
        """
        from .progress import Progress
        nbest = self._check_nbest(nbest)
        inputs, single = self._inputs(audio, sample_rate, names)
        results = [Result(utterance_id(name), frame_shift=self.frame_shift)
                   for _, _, name in inputs]
        plan = self._plan(inputs, results)
        norm = self._normalizer(plan, speaker)
        n_pieces = sum(len(spans) for _, _, spans in plan)
        speech = sum(b - a for _, _, spans in plan for a, b, _, _ in spans)
        bar = Progress(n_pieces, "recognize", "piece",
                       enabled=bool(self.progress) and n_pieces > 1 and speech > 60)
        outcomes = {id(r): [] for r in results}   # per result: the pieces' outcomes
        for group in self._groups(self._pieces(plan)):
            self._network(group, speaker, norm)
            for p, hs in zip(group, self._decode_pieces(group, nbest)):
                outcomes[id(p.owner)].append(self._outcome(p, hs))
                p.lp = None   # only the outcome stays
            bar.update(len(group))
        bar.close()
        for r in results:   # an input that failed half-way keeps nothing
            mine = [] if r.error else sorted(outcomes[id(r)], key=lambda o: o[0])
            self._assemble(r, mine, nbest)
        return results[0] if single else results

    def decode_log_probs(self, log_probs, nbest=1):
        """Decode network outputs saved earlier (e.g. by ``ctcseq forward``).

        Parameters
        ----------
        log_probs : dict of key -> ndarray (T, C)
        nbest : int

        Returns
        -------
        dict of key -> Result (ids as given)
        """
        nbest = self._check_nbest(nbest)
        keys = list(log_probs)
        pieces = []
        results = {}
        for k in keys:
            r = Result(str(k), frame_shift=self.frame_shift,
                       duration=log_probs[k].shape[0] * self.frame_shift)
            results[k] = r
            p = _Piece(r, 0.0, -math.inf, math.inf, None)
            p.lp = log_probs[k]
            pieces.append(p)
        hyps = self._decode_pieces(pieces, nbest)
        for p, h in zip(pieces, hyps):
            self._assemble(p.owner, [self._outcome(p, h)], nbest)
        return results

    def transcribe_features(self, features, speakers=None, nbest=1):
        """Transcribe feature matrices (a feature directory's utterances).

        features : dict of key -> ndarray (T, D), unnormalised; speakers as
        for :meth:`log_probs`.  Returns dict of key -> Result.
        """
        return self.decode_log_probs(self.log_probs(features, speakers), nbest)

    # -- alignment -------------------------------------------------------------------

    def _labels(self, transcript, name):
        """(symbols, words or None) of a transcript (words with a lexicon)."""
        toks = transcript.split() if isinstance(transcript, str) else list(transcript)
        words = None
        if self.lexicon is not None:
            missing = sorted({w for w in toks if w not in self.lexicon})
            if missing:
                raise DataError(f"{name}: word(s) {missing} are not in the lexicon")
            words = toks
            toks = [t for w in words for t in self.lexicon[w]]
        unknown = [t for t in toks if t not in self.index or self.index[t] == self.model.blank]
        if unknown:
            raise DataError(f"{name}: symbol(s) {sorted(set(unknown))} are not in the model's "
                            f"vocabulary")
        if not toks:
            raise DataError(f"{name}: empty transcript")
        return toks, words

    def _align_one(self, r, lp, offset, symbols, words):
        """Align one piece's outputs lp (T, C) to symbols; fills r."""
        from .decode import forced_align
        labels = np.array([self.index[t] for t in symbols], np.int64)
        try:
            ali = forced_align(lp[:, None], labels[None], [lp.shape[0]], [len(labels)],
                               blank=self.model.blank)[0]
        except ValueError as e:
            r.error = f"{r.utterance}: {' '.join(str(e).split())}"
            return
        path_blank = np.ones(lp.shape[0], bool)
        for s, e in zip(ali.starts, ali.ends):
            path_blank[s:e] = False
        r.tokens = self._tokens(labels, ali.starts, ali.ends, lp, path_blank, offset)
        r.frames, r.score = lp.shape[0], ali.score
        r.acoustic_score = ali.score
        r.words = self._words(r.tokens, words)
        unexplained = np.count_nonzero(path_blank & (lp.argmax(1) != self.model.blank))
        r.unexplained_seconds = unexplained * self.frame_shift
        why = []
        if r.score_per_frame < POOR_SCORE_PER_FRAME:
            why.append(f"score per frame {r.score_per_frame:.2f} < {POOR_SCORE_PER_FRAME}")
        if r.unexplained_seconds > POOR_UNEXPLAINED_SECONDS:
            why.append(f"{r.unexplained_seconds:.2f} s of speech not covered by the "
                       f"transcript")
        if why:
            r.poor = True
            r.warnings.append(f"{r.utterance}: poor alignment ({'; '.join(why)}); does the "
                              f"transcript cover all the audio?")

    def align(self, audio, transcript, sample_rate=None, speaker=None, names=None):
        """Forced alignment of transcripts to recordings.

        Parameters
        ----------
        audio : as for :meth:`transcribe` (one input or a list)
        transcript : str or list of str (one per input)
            Tokens separated by spaces (words, with a lexicon).
        sample_rate, speaker, names : as for :meth:`transcribe`

        Returns
        -------
        AlignmentResult, or a list of them
            The speech of each recording (from the first piece of speech to
            the end of the last) is aligned as one piece; inputs that cannot
            be read or aligned (no speech, a transcript too long for the
            audio, unknown symbols) get ``error`` set.
        """
        inputs, single = self._inputs(audio, sample_rate, names)
        texts = [transcript] if single else list(transcript)
        if len(texts) != len(inputs):
            raise UserError(f"{len(inputs)} inputs but {len(texts)} transcripts")
        results, pieces, labels = [], [], []
        for (source, sr, name), text in zip(inputs, texts):
            r = AlignmentResult(utterance_id(name), frame_shift=self.frame_shift)
            results.append(r)
            try:
                lab = self._labels(text, r.utterance)
            except DataError as e:
                r.error, lab = str(e), None
            labels.append(lab)
            if lab is None:
                continue
            ps = list(self._pieces(self._plan([(source, sr, name)], [r], whole=True)))
            if not ps and r.error is None:
                r.error = f"{r.utterance}: no speech to align"
            pieces += ps
        # a speaker's statistics come from all its pieces together
        norm = self.speaker_normalizer((p.feats, speaker) for p in pieces)
        self._network(pieces, speaker, norm)
        for r, lab in zip(results, labels):
            mine = [p for p in pieces if p.owner is r]
            if mine and lab is not None:
                self._align_one(r, mine[0].lp, mine[0].start, *lab)
        return results[0] if single else results

    def align_log_probs(self, log_probs, transcripts):
        """Align saved network outputs or features' outputs.

        log_probs : dict key -> (T, C); transcripts : dict key -> str or list
        of tokens (words with a lexicon).  Returns dict key -> AlignmentResult
        for the keys of transcripts that have outputs, in transcript order.
        """
        out = {}
        for k, text in transcripts.items():
            if k not in log_probs:
                continue
            lp = log_probs[k]
            r = AlignmentResult(str(k), frame_shift=self.frame_shift,
                                duration=lp.shape[0] * self.frame_shift)
            out[k] = r
            try:
                symbols, words = self._labels(text, r.utterance)
            except DataError as e:
                r.error = str(e)
                continue
            self._align_one(r, lp, 0.0, symbols, words)
        return out


def _strictly_increasing(starts, T):
    """Beam-search start frames are non-decreasing: spread ties one step
    apart (within [0, T)), as every token needs a step of its own."""
    s = starts.copy()
    for i in range(1, s.size):
        s[i] = max(s[i], s[i - 1] + 1)
    for i in range(s.size - 1, -1, -1):
        s[i] = min(s[i], (s[i + 1] - 1) if i + 1 < s.size else T - 1)
    return s


def _kbest(per_piece, n):
    """The n best stitchings of independent per-piece N-best lists:
    [(score, acoustic score, symbols)], best first (exact: the best n of the
    sums keep only sums of each stage's best n)."""
    combos = [(0.0, 0.0, [])]
    for alts in per_piece:
        merged = [(a[0] + sc, a[1] + ac, a[2] + syms) for a in combos
                  for sc, ac, syms in alts]
        combos = heapq.nlargest(n, merged, key=lambda c: c[0])
    return combos


def _segment(symbols, spellings):
    """Split symbols into lexicon words: [(word, first, end)] or None."""
    longest = max((len(s) for s in spellings), default=0)
    best = [None] * (len(symbols) + 1)
    best[0] = []
    for i in range(len(symbols)):
        if best[i] is None:
            continue
        for n in range(1, min(longest, len(symbols) - i) + 1):
            w = spellings.get(tuple(symbols[i:i + n]))
            if w is not None and best[i + n] is None:
                best[i + n] = best[i] + [(w, i, i + n)]
    return best[len(symbols)]
