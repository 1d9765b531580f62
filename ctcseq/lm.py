"""N-gram language models for shallow fusion in :func:`ctcseq.decode.beam_search`.

* :func:`train_token_lm` trains a token (phone or character) n-gram model on
  the training transcripts: interpolated Kneser-Ney or Witten-Bell, any order.
* :func:`read_arpa` reads a word n-gram model in ARPA format (as written by
  KenLM's ``lmplz`` and SRILM's ``ngram-count``).
* :class:`WordLM` applies a word model at word boundaries, with an optional
  lexicon (word -> token sequences) whose prefix trie restricts the output to
  known words.

All models are held in back-off (ARPA) form in flat NumPy arrays, so that the
Numba beam search queries them without Python callbacks:

    log P(w | h) = log p(h w)                 if the n-gram h w is stored
                 = bow(h) + log P(w | h[1:])  otherwise (bow(h) = 0 if h is not
                                              stored as a context)

An interpolated model is exactly such a model (the stored p(h w) is the
interpolated probability and bow(h) the interpolation weight of h), so both
kinds share the scoring code.  Probabilities are natural logarithms here;
ARPA files hold base-10 logarithms and are converted on reading and writing.

Saved models (:meth:`NGramLM.save`) are standard JSON (RFC 8259), which any
JSON reader accepts, with the n-grams in columns per order (see
:meth:`NGramLM.to_dict`): a log-probability of minus infinity (a history
stored only for its back-off weight; the unknown token of a :class:`TokenLM`)
is written as ``null``.  Files written by older versions hold one
``[symbols, logp, bow]`` row per n-gram, and ``-Infinity`` where ``null`` is
now; :meth:`NGramLM.load` reads every form.  In memory a model is NumPy arrays
only (:attr:`NGramLM.grams` and the hash tables), never a Python object per
n-gram.
"""
import json
import math
import os
from collections import Counter, defaultdict

import numpy as np

from .datadir import atomic_write
from .errors import DataError, UserError
from .kernels import decode_cpu as _k

_LN10 = math.log(10.0)
# log10 probability KenLM gives words missing from a model without <unk>
_DEFAULT_UNK_LOG10 = -100.0


class NGramLM:
    """A back-off n-gram model over integer symbols ``0 .. V-1``.

    Parameters
    ----------
    order : int
        Highest n-gram order (1 = unigram).
    entries : dict mapping tuple of int -> (float, float)
        Every stored n-gram (symbols, oldest first) -> (natural-log
        probability, natural-log back-off weight).  The back-off weight of an
        n-gram is used when it is the history of a longer one.
    num_symbols : int
        V, the number of symbol ids (special symbols included).
    bos, eos : int
        Ids of the sentence start ``<s>`` (history only) and end ``</s>``.
    unk : int
        Id scored for unknown words; words whose unigram is not stored score
        ``unk_logp``.
    unk_logp : float
        Natural-log probability of a symbol with no unigram.
    vocab : list of str, optional
        Symbol names (word models), ``vocab[i]`` for id i.

    Attributes
    ----------
    grams : tuple of (ndarray, ndarray, ndarray)
        The n-grams by order: ``grams[n - 1]`` is (symbols, int64 (K_n, n),
        oldest first; log-probabilities, float64 (K_n,); back-off weights,
        float64 (K_n,)).  The model is held in these arrays, not in Python
        objects: a phone 6-gram of 610 000 n-grams takes about 40 MB.
    tables : tuple of ndarrays
        (ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals), the hash tables
        the kernels read (see :mod:`ctcseq.kernels.decode_cpu`).

    Raises
    ------
    ctcseq.errors.DataError (a ValueError)
        An n-gram is empty or longer than ``order``, holds a symbol outside
        ``[0, num_symbols)``, or a value is not a number (a log-probability
        may be minus infinity: a history stored only for its back-off weight).
    """

    kind = "ngram"

    def __init__(self, order, entries, num_symbols, bos, eos, unk, unk_logp, vocab=None):
        self._init(order, _grams_of_entries(entries, int(order)), num_symbols, bos, eos, unk,
                   unk_logp, vocab)

    def _init(self, order, grams, num_symbols, bos, eos, unk, unk_logp, vocab):
        self.order = int(order)
        self.num_symbols = int(num_symbols)
        self.bos, self.eos, self.unk = int(bos), int(eos), int(unk)
        self.unk_logp = float(unk_logp)
        self.vocab = list(vocab) if vocab is not None else None
        self.word_to_id = ({w: i for i, w in enumerate(self.vocab)}
                           if self.vocab is not None else None)
        self.grams = _checked_grams(grams, self.order, self.num_symbols)
        self.tables = _build_tables(self.grams, self.num_symbols)

    @property
    def entries(self):
        """The n-grams as a dict {symbols tuple: (logp, bow)}, built anew on
        each access (about 0.5 GB of Python objects per million n-grams:
        for inspection and small models; the model itself is :attr:`grams`)."""
        out = {}
        for syms, lp, bw in self.grams:
            out.update(zip(map(tuple, syms.tolist()), zip(lp.tolist(), bw.tolist())))
        return out

    def unigram_log_probs(self):
        """Natural-log unigram probabilities, float64 (V,); minus infinity
        for symbols with no stored unigram."""
        out = np.full(self.num_symbols, -np.inf)
        syms, lp, _ = self.grams[0]
        out[syms[:, 0]] = lp
        return out

    # -- queries -----------------------------------------------------------
    def log_prob(self, symbol, history=()):
        """Natural-log P(symbol | history); history oldest first (only the
        last ``order - 1`` symbols matter)."""
        return float(self.log_probs([symbol], [history])[0])

    def log_probs(self, symbols, histories):
        """Vectorised :meth:`log_prob`: one history per symbol."""
        H = max(self.order - 1, 1)
        n = len(symbols)
        hists = np.zeros((n, H), np.int64)
        hlens = np.zeros(n, np.int64)
        for i, h in enumerate(histories):
            h = list(h)[-(self.order - 1):] if self.order > 1 else []
            hists[i, :len(h)] = h
            hlens[i] = len(h)
        out = np.empty(n, np.float64)
        _k.ngram_logp_batch(*self.tables, self.num_symbols, self.unk_logp, hists, hlens,
                            np.asarray(symbols, np.int64), out)
        return out

    def sentence_log_prob(self, symbols):
        """Natural-log probability of a whole sentence, end symbol included."""
        seq = [self.bos] + list(symbols) + [self.eos]
        return float(np.sum(self.log_probs(seq[1:], [seq[:i] for i in range(1, len(seq))])))

    # -- persistence -------------------------------------------------------
    def to_dict(self):
        """A dict of standard-JSON values; :meth:`from_dict` inverts it.

        The n-grams are stored by order, in columns: ``"grams"`` is a list
        with, for n = 1 .. order, ``{"n": n, "symbols": [...], "logp": [...],
        "bow": [...]}`` where ``symbols`` holds the K_n n-grams' symbols one
        after the other (K_n * n ids, oldest first).  A log-probability of
        minus infinity is ``None`` (JSON ``null``); every other number is
        finite.
        """
        grams = [{"n": n, "symbols": syms.ravel().tolist(),
                  "logp": [None if x == -math.inf else x for x in lp.tolist()],
                  "bow": bw.tolist()}
                 for n, (syms, lp, bw) in enumerate(self.grams, 1)]
        return {"kind": self.kind, "order": self.order, "num_symbols": self.num_symbols,
                "bos": self.bos, "eos": self.eos, "unk": self.unk,
                "unk_logp": _finite_or_none(self.unk_logp), "vocab": self.vocab,
                "grams": grams, **self._extra()}

    def _extra(self):
        return {}

    @classmethod
    def from_dict(cls, d):
        """The model :meth:`to_dict` describes.  Also reads the row form of
        older versions (``"ngrams": [[symbols, logp, bow], ...]``, with
        ``-Infinity`` or ``null`` for minus infinity).

        Raises
        ------
        ctcseq.errors.DataError (a ValueError)
            ``d`` is not such a dict, or lacks a field.
        """
        if isinstance(d, dict):                 # the caller's dict and lists stay as they are
            d = dict(d)
            if isinstance(d.get("grams"), list):
                d["grams"] = list(d["grams"])
        return NGramLM._from_parsed(d)

    @staticmethod
    def _from_parsed(d):
        """:meth:`from_dict`, taking the n-grams out of ``d`` as it goes."""
        kind = d.get("kind") if isinstance(d, dict) else None
        klass = {"ngram": NGramLM, "token-ngram": TokenLM}.get(kind)
        if klass is None:
            raise DataError(f"not an n-gram model dict (kind = {kind!r})")
        try:
            order = int(d["order"])
            if "grams" in d or "ngrams" not in d:
                grams = _grams_of_columns(d.pop("grams"), order)
            else:
                grams = _grams_of_rows(d.pop("ngrams"), order)
            obj = klass.__new__(klass)
            NGramLM._init(obj, order, grams, d["num_symbols"], d["bos"], d["eos"],
                          d["unk"], _log_prob(d["unk_logp"]), d.get("vocab"))
            obj._restore(d)
        except KeyError as e:
            raise DataError(f"the {kind} model lacks its field {e.args[0]!r}") from None
        except DataError as e:
            raise DataError(f"the {kind} model: {e}") from None
        except (TypeError, ValueError) as e:
            raise DataError(f"the {kind} model holds a malformed value: {e}") from None
        return obj

    def _restore(self, d):
        pass

    def save(self, path):
        """Write the model as standard JSON (see :meth:`to_dict`), atomically."""
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, allow_nan=False)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (any version).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ctcseq.errors.DataError (a ValueError)
            The file is not such a model (the message says what it looks
            like: a CTC model, an ARPA file, ...), or ``cls`` is
            :class:`TokenLM` and the file holds another kind of model.
        """
        _require_file(path, "LM file")
        with open(path, "rb") as f:
            head = f.read(8)
        what = f"{path}: not an n-gram LM file (JSON from NGramLM.save, e.g. lm.json from " \
               f"'ctcseq train --lm-order')"
        if head.startswith(b"PK"):
            raise DataError(f"{what}: it is a .npz archive, such as a CTC model (best.npz) "
                            f"or a training checkpoint")
        if head.startswith(b"\x93NUMPY"):
            raise DataError(f"{what}: it is a NumPy array (.npy)")
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise DataError(f"{what}: it is a binary file, not UTF-8 text") from None
        if "\\data\\" in text[:4096] and not text.lstrip().startswith("{"):
            raise DataError(f"{what}: it looks like an ARPA file; read it with read_arpa "
                            f"('ctcseq decode --lm' does so for names ending in .arpa)")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not a valid JSON LM file (line {e.lineno}: "
                            f"{e.msg})") from None
        del text
        try:
            obj = NGramLM._from_parsed(d)       # frees each order's lists once converted
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
        if not isinstance(obj, cls):
            raise DataError(f"{path} holds a model of kind {obj.kind!r}; {cls.__name__} "
                            f"needs kind {cls.kind!r}")
        return obj

    def write_arpa(self, path, names=None):
        """Write the model in ARPA format (base-10 logarithms).

        names : list of str, optional
            Symbol names; default ``self.vocab``, else ``<s>``, ``</s>`` and
            the decimal ids.
        """
        if names is None:
            names = self.vocab or [str(i) for i in range(self.num_symbols)]
            if self.vocab is None:
                names[self.bos], names[self.eos] = "<s>", "</s>"
        grams = list(self.grams)
        syms, lp, bw = grams[0]
        if not np.any(syms[:, 0] == self.bos):       # ARPA lists <s> as a unigram
            grams[0] = (np.append(syms, [[self.bos]], axis=0), np.append(lp, -99.0 * _LN10),
                        np.append(bw, 0.0))
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(grams[n - 1][1])}\n")
            for n, (syms, lp, bw) in enumerate(grams, 1):
                f.write(f"\n\\{n}-grams:\n")
                rows, lp, bw = syms.tolist(), lp.tolist(), bw.tolist()
                for i in np.lexsort(syms.T[::-1]).tolist():     # by symbols, oldest first
                    words = " ".join(names[s] for s in rows[i])
                    lp10 = lp[i] / _LN10 if lp[i] != -math.inf else -99.0
                    line = f"{lp10:.7f}\t{words}"
                    if n < self.order and bw[i] != 0.0:
                        line += f"\t{bw[i] / _LN10:.7f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")


def _finite_or_none(logp):
    """A log-probability for JSON: None for minus infinity."""
    return None if logp == -math.inf else logp


def _log_prob(value):
    """Inverse of :func:`_finite_or_none`; also takes old files' -Infinity."""
    return -math.inf if value is None else float(value)


class TokenLM(NGramLM):
    """A token n-gram model over a CTC model's classes (see
    :func:`train_token_lm`).  Token ids are the class ids; ``eos = C`` and
    ``bos = C + 1``; the blank is never predicted."""

    kind = "token-ngram"

    def __init__(self, order, entries, num_classes, blank, method):
        super().__init__(order, entries, num_classes + 2, bos=num_classes + 1,
                         eos=num_classes, unk=num_classes, unk_logp=-math.inf)
        self.num_classes, self.blank, self.method = int(num_classes), int(blank), method

    def _extra(self):
        return {"num_classes": self.num_classes, "blank": self.blank, "method": self.method}

    def _restore(self, d):
        self.num_classes, self.blank, self.method = d["num_classes"], d["blank"], d["method"]

    @property
    def predicted(self):
        """Ids the model predicts: every class but the blank, then eos."""
        return [c for c in range(self.num_classes) if c != self.blank] + [self.eos]


def _require_file(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


# --- training ------------------------------------------------------------------

_METHODS = ("kneser-ney", "modified-kneser-ney", "witten-bell")


def train_token_lm(transcripts, num_classes, order=3, method="kneser-ney", blank=0):
    """Train a token n-gram model on label sequences.

    Parameters
    ----------
    transcripts : iterable of sequences of int
        Training label sequences (class ids in [0, C), never the blank).
    num_classes : int
        C, the CTC model's number of classes, blank included.
    order : int, default 3
        Highest n-gram order, >= 1.
    method : {"kneser-ney", "modified-kneser-ney", "witten-bell"}
        Interpolated Kneser-Ney (one absolute discount per order,
        D = n1 / (n1 + 2 n2), lower orders on continuation counts), the same
        with Chen & Goodman's three discounts per order (counts 1, 2 and 3+),
        or interpolated Witten-Bell.  All interpolate down to a uniform
        distribution over the C - 1 tokens and ``</s>``, so every token has a
        non-zero probability after every history.
    blank : int, default 0

    Returns
    -------
    TokenLM
        P(. | h) sums to one over the C - 1 non-blank tokens plus ``</s>`` for
        every history h.
    """
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise UserError(f"order must be an integer >= 1, got {order!r}")
    if method not in _METHODS:
        raise UserError(f"method must be one of {_METHODS}, got {method!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0 <= blank < num_classes:
        raise UserError(f"blank = {blank} is outside [0, {num_classes})")
    C = int(num_classes)
    eos, bos = C, C + 1
    sents = []
    for i, tr in enumerate(transcripts):
        s = [int(x) for x in tr]
        bad = [x for x in s if not 0 <= x < C or x == blank]
        if bad:
            raise DataError(f"transcripts[{i}] holds {bad[0]}, the blank or a label "
                            f"outside [0, {C}) (blank = {blank})")
        sents.append(s)
    if not sents:
        raise DataError("transcripts is empty")
    predicted = [c for c in range(C) if c != blank] + [eos]
    entries = _interpolated(sents, order, method, predicted, bos, eos)
    return TokenLM(order, entries, C, blank, method)


def _discounts(counts, method):
    """Absolute discounts of one order, indexed by min(count, 3): Kneser-Ney's
    single D = n1 / (n1 + 2 n2), or Chen & Goodman's three (counts 1, 2 and
    3+) from the counts-of-counts n1..n4.  0.5 where the counts-of-counts
    are too few to estimate them."""
    D = [0.0, 0.5, 0.5, 0.5]
    if method == "witten-bell":
        return D
    coc = Counter(c for ws in counts.values() for c in ws.values())
    if not (coc[1] and coc[2]):
        return D
    y = coc[1] / (coc[1] + 2.0 * coc[2])
    if method == "kneser-ney":
        d = min(max(y, 0.05), 0.95)
        return [0.0, d, d, d]
    D[1] = 1.0 - 2.0 * y * coc[2] / coc[1]
    if coc[3]:
        D[2] = 2.0 - 3.0 * y * coc[3] / coc[2]
        if coc[4]:
            D[3] = 3.0 - 4.0 * y * coc[4] / coc[3]
    # a discount must stay inside (0, count) for every probability to stay positive
    return [0.0] + [min(max(D[k], 0.05), k - 0.05) for k in (1, 2, 3)]


def _interpolated(sents, order, method, predicted, bos, eos):
    """Back-off entries {gram: (logp, bow)} of an interpolated model."""
    # counts[n][h][w]: history h of length n - 1
    raw = [None] + [defaultdict(Counter) for _ in range(order)]
    for s in sents:
        seq = [bos] + s + [eos]
        for i in range(1, len(seq)):
            for n in range(1, order + 1):
                if i - n + 1 < 0:
                    break
                raw[n][tuple(seq[i - n + 1:i])][seq[i]] += 1
    counts = [None] * (order + 1)
    counts[order] = raw[order]
    if method != "witten-bell":
        # lower orders: number of distinct left contexts (raw counts for grams
        # opening with <s>, which have no left context)
        for n in range(1, order):
            cont = defaultdict(Counter)
            for h, ws in raw[n + 1].items():
                for w in ws:
                    cont[h[1:]][w] += 1
            for h, ws in raw[n].items():
                if h and h[0] == bos:
                    cont[h] = Counter(ws)
            counts[n] = cont
    else:
        counts[1:order] = raw[1:order]

    V = len(predicted)
    prob = [dict() for _ in range(order + 1)]  # prob[n][(h..., w)] = p
    gamma = [dict() for _ in range(order + 1)]  # gamma[n][h] = interpolation weight

    def interp(w, h):
        """Interpolated P(w | h) of order len(h) + 1 (orders <= len(h) + 1 done)."""
        p = prob[len(h) + 1].get(h + (w,))
        if p is not None:
            return p
        return gamma[len(h) + 1].get(h, 1.0) * lower(w, h)

    def lower(w, h):
        """The estimate an order-(len(h) + 1) gram interpolates with."""
        return interp(w, h[1:]) if h else 1.0 / V

    for n in range(1, order + 1):
        D = _discounts(counts[n], method)
        for h, ws in counts[n].items():
            tot = sum(ws.values())
            t1 = len(ws)
            if method != "witten-bell":
                g = sum(D[min(c, 3)] for c in ws.values()) / tot
                for w, c in ws.items():
                    prob[n][h + (w,)] = max(c - D[min(c, 3)], 0.0) / tot + g * lower(w, h)
            else:
                g = t1 / (tot + t1)
                for w, c in ws.items():
                    prob[n][h + (w,)] = (c + t1 * lower(w, h)) / (tot + t1)
            gamma[n][h] = g
        if n == 1:
            # unigrams are stored for every predicted symbol (no lower order)
            g = gamma[1].get((), 1.0)
            for w in predicted:
                if (w,) not in prob[1]:
                    prob[1][(w,)] = g / V
    entries = {}
    for n in range(1, order + 1):
        for gram, p in prob[n].items():
            bw = gamma[n + 1].get(gram) if n < order else None
            entries[gram] = (math.log(p), math.log(bw) if bw else 0.0)
        # histories with no n-gram of their own still need their back-off weight
        if n < order:
            for h, g in gamma[n + 1].items():
                if len(h) == n and h not in entries:
                    entries[h] = (-math.inf, math.log(g))
    return entries


# --- the n-gram arrays, and the back-off tables for the kernels --------------------

def _grams_of_entries(entries, order):
    """{symbols tuple: (logp, bow)} -> the arrays of :attr:`NGramLM.grams`."""
    by_order = [([], [], []) for _ in range(order)]
    for g, (lp, bw) in dict(entries).items():
        if not 1 <= len(g) <= order:
            raise DataError(f"n-gram {tuple(g)} has {len(g)} symbols; the order is {order}")
        syms, lps, bws = by_order[len(g) - 1]
        syms.extend(g)
        lps.append(lp)
        bws.append(bw)
    return [_arrays(n, *cols) for n, cols in enumerate(by_order, 1)]


def _grams_of_rows(rows, order):
    """Older files' ``[[symbols, logp, bow], ...]`` -> the arrays (``null`` and
    ``-Infinity`` are minus infinity; a repeated n-gram keeps its last values)."""
    return _grams_of_entries({tuple(g): (_log_prob(lp), float(bw)) for g, lp, bw in rows},
                             order)


def _grams_of_columns(columns, order):
    """``to_dict``'s ``"grams"`` -> the arrays."""
    if not isinstance(columns, list) or len(columns) != order:
        raise DataError(f"'grams' must be a list of {order} orders (one per n = 1 .. "
                        f"{order})")
    out = []
    for n in range(1, order + 1):
        col, columns[n - 1] = columns[n - 1], None      # its lists freed once converted
        if not isinstance(col, dict) or col.get("n") != n:
            raise DataError(f"'grams'[{n - 1}] must be the {n}-grams' columns, "
                            f"{{\"n\": {n}, \"symbols\": ..., \"logp\": ..., \"bow\": ...}}")
        lp = [-math.inf if x is None else x for x in col["logp"]]
        out.append(_arrays(n, col["symbols"], lp, col["bow"]))
    return out


def _arrays(n, symbols, logp, bow):
    """Flat symbols, log-probabilities and back-off weights of the n-grams of
    order n -> (int64 (K, n), float64 (K,), float64 (K,))."""
    lp = np.asarray(logp, np.float64).reshape(-1)
    bw = np.asarray(bow, np.float64).reshape(-1)
    flat = np.asarray(symbols)
    if flat.size and flat.dtype.kind not in "iu":
        raise DataError(f"the {n}-grams' symbols must be integers")
    if flat.ndim != 1 or flat.size != n * lp.size or bw.size != lp.size:
        raise DataError(f"the {n}-grams' columns disagree: {flat.size} symbols, {lp.size} "
                        f"log-probabilities, {bw.size} back-off weights (want "
                        f"{n} symbols per log-probability and back-off weight)")
    return flat.astype(np.int64).reshape(-1, n), lp, bw


def _checked_grams(grams, order, V):
    """The arrays, checked, each order's repeated n-grams reduced to their last."""
    out = []
    for n, (syms, lp, bw) in enumerate(grams, 1):
        bad = (syms < 0) | (syms >= V)
        if bad.any():
            raise DataError(f"one of the {n}-grams holds symbol {int(syms[bad][0])}, outside "
                            f"[0, {V}) (num_symbols = {V})")
        if np.isnan(lp).any() or (lp == np.inf).any() or not np.isfinite(bw).all():
            raise DataError(f"the {n}-grams hold a log-probability of +inf or NaN, or a "
                            f"back-off weight that is not a finite number")
        ids = _row_ids(syms, V)
        sorted_ids = np.sort(ids)
        if (sorted_ids[1:] == sorted_ids[:-1]).any():
            # the last of each repeated n-gram, in first-seen order (a dict's update)
            _, last = np.unique(ids[::-1], return_index=True)
            keep = np.sort(len(ids) - 1 - last)
            syms, lp, bw = syms[keep], lp[keep], bw[keep]
        out.append((np.ascontiguousarray(syms), lp, bw))
    if len(out) != order:
        raise DataError(f"{len(out)} orders of n-grams for a model of order {order}")
    return tuple(out)


def _row_ids(rows, V):
    """Ids of the rows of an int array with symbols in [0, V): equal rows,
    equal ids."""
    n = rows.shape[1]
    if n * math.log2(max(V, 2)) < 62:          # the row as a number in base V
        return rows @ (V ** np.arange(n - 1, -1, -1, dtype=np.int64))
    ids = np.zeros(rows.shape[0], np.int64)
    for j in range(n):
        ids = np.unique(ids * V + rows[:, j], return_inverse=True)[1].reshape(-1)
    return ids


def _build_tables(grams, V):
    """Hash tables of a back-off model (see :mod:`ctcseq.kernels.decode_cpu`).

    A context (history) h has the id of the trie node reached from the root
    (id 0, the empty history) along its symbols from the most recent back:
    ``ctx_keys`` holds ``id(h[1:]) * V + h[0]`` -> ``id(h)``.  The contexts are
    every n-gram's history and every n-gram with a back-off weight, with all
    their shorter suffixes; they are numbered one length at a time, so each
    length is one sort of the keys.
    """
    hists = []                          # (rows, role, n): a history of length rows.shape[1]
    for n, (syms, lp, bw) in enumerate(grams, 1):
        hists.append((syms[:, :-1], "history", n))
        backs = np.flatnonzero(bw != 0.0)
        hists.append((syms[backs], "context", n))
    node = [np.zeros(len(h), np.int64) for h, _, _ in hists]
    ctx_keys, ctx_vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    count = 1
    for length in range(1, max(h.shape[1] for h, _, _ in hists) + 1):
        live = [i for i, (h, _, _) in enumerate(hists) if h.shape[1] >= length and len(h)]
        if not live:
            continue
        keys = np.concatenate([node[i] * V + hists[i][0][:, -length] for i in live])
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.reshape(-1) + count
        at = 0
        for i in live:
            node[i] = inv[at:at + len(hists[i][0])]
            at += len(hists[i][0])
        ctx_keys.append(uniq)
        ctx_vals.append(np.arange(count, count + len(uniq), dtype=np.int64))
        count += len(uniq)
    bows = np.zeros(count, np.float64)
    pkeys, pvals = [], []
    for (_, role, n), ids in zip(hists, node):
        syms, lp, bw = grams[n - 1]
        if role == "history":
            finite = lp != -math.inf
            pkeys.append(ids[finite] * V + syms[finite, -1])
            pvals.append(lp[finite])
        else:
            bows[ids] = bw[bw != 0.0]
    ck, cslots = _k.build_table(np.concatenate(ctx_keys))
    child = np.zeros(ck.shape[0], np.int64)
    child[cslots] = np.concatenate(ctx_vals)
    pk, pslots = _k.build_table(np.concatenate(pkeys))
    pv = np.zeros(pk.shape[0], np.float64)
    pv[pslots] = np.concatenate(pvals)
    return ck, child, bows, pk, pv


# --- ARPA -------------------------------------------------------------------------

def read_arpa(path):
    """Read a word n-gram model in ARPA format.

    Parameters
    ----------
    path : str
        The ARPA file: a ``\\data\\`` section with ``ngram N=count`` lines,
        then one ``\\N-grams:`` section per order whose lines are
        ``log10(p) w1 ... wN [log10(bow)]``, then ``\\end\\``.

    Returns
    -------
    NGramLM
        With ``vocab`` the unigram words in file order; ``<s>``/``</s>`` are
        added if the file lacks them; words missing from the model score as
        ``<unk>`` if present, else log10 p = -100 as KenLM does.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ctcseq.errors.DataError (a ValueError)
        On a malformed or truncated file, naming the line number.
    """
    _require_file(path, "ARPA file")
    with open(path, encoding="utf-8", errors="replace") as f:
        return _read_arpa(_Lines(f), path)


class _Lines:
    """A text file's lines as ``text.split("\\n")`` gives them, read one at a
    time (an ARPA file can be far larger than its model's arrays): ``cur`` is
    line ``i`` (0-based), None past the end."""

    def __init__(self, f):
        self._it = self._split(f)
        self.i = -1
        self.advance()

    @staticmethod
    def _split(f):
        line = "\n"
        for line in f:
            yield line[:-1] if line.endswith("\n") else line
        if line.endswith("\n"):
            yield ""

    def advance(self):
        self.i += 1
        self.cur = next(self._it, None)

    def skip_blank(self):
        while self.cur is not None and not self.cur.strip():
            self.advance()


def _read_arpa(lines, path):
    def err(lineno, msg):
        return DataError(f"{path}, line {lineno}: {msg}")

    while lines.cur is not None and lines.cur.strip() != "\\data\\":
        lines.advance()
    if lines.cur is None:
        raise err(1, "no \\data\\ section: not an ARPA file")
    lines.advance()
    counts = {}
    while lines.cur is not None and lines.cur.strip():
        ln = lines.cur.strip()
        if not ln.startswith("ngram "):
            raise err(lines.i + 1, f"expected 'ngram N=count' in the \\data\\ section, "
                                   f"got {ln!r}")
        try:
            n, c = ln[6:].split("=")
            n, c = int(n), int(c)
        except ValueError:
            raise err(lines.i + 1, f"malformed count line {ln!r}") from None
        if n != len(counts) + 1 or c < 0:
            raise err(lines.i + 1, f"unexpected count line {ln!r} (orders must be 1, 2, ... "
                                   "with counts >= 0)")
        counts[n] = c
        lines.advance()
    if not counts:
        raise err(lines.i + 1, "the \\data\\ section lists no n-gram counts")
    order = len(counts)
    vocab, word_id, grams = [], {}, []

    for n in range(1, order + 1):
        lines.skip_blank()
        if lines.cur is None:
            raise err(lines.i, f"file ends before the \\{n}-grams: section (truncated?)")
        if lines.cur.strip() != f"\\{n}-grams:":
            raise err(lines.i + 1, f"expected '\\{n}-grams:', got {lines.cur.strip()!r}")
        lines.advance()
        syms, lps, bws = [], [], []
        for _ in range(counts[n]):
            line = lines.cur
            if line is None or not line.strip() or line.startswith("\\"):
                raise err(lines.i + 1, f"the \\{n}-grams: section ends after fewer than the "
                                       f"{counts[n]} n-grams announced (truncated?)")
            parts = line.split()
            if len(parts) not in (n + 1, n + 2):
                raise err(lines.i + 1, f"expected 'log10(p) w1 .. w{n} [log10(bow)]', "
                                       f"got {len(parts)} fields")
            try:
                lp = float(parts[0])
                bw = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
            except ValueError:
                raise err(lines.i + 1, f"probability or back-off weight is not a number: "
                                       f"{line.strip()!r}") from None
            if not (math.isfinite(lp) and math.isfinite(bw)) or lp > 0:
                raise err(lines.i + 1, f"log10 probability must be finite and <= 0, back-off "
                                       f"finite: {line.strip()!r}")
            if n == 1:
                w = parts[1]
                j = word_id.get(w)
                if j is None:
                    j = word_id[w] = len(vocab)
                    vocab.append(w)
                syms.append(j)
            else:
                try:
                    syms.extend([word_id[w] for w in parts[1:n + 1]])
                except KeyError as e:
                    raise err(lines.i + 1, f"word {e.args[0]!r} has no unigram") from None
            lps.append(lp * _LN10)
            bws.append(bw * _LN10)
            lines.advance()
        grams.append(_arrays(n, np.asarray(syms, np.int64), lps, bws))
    lines.skip_blank()
    if lines.cur is None:
        raise err(lines.i, "missing \\end\\ (truncated?)")
    if lines.cur.strip() != "\\end\\":
        raise err(lines.i + 1, f"expected \\end\\ after {counts[order]} {order}-grams, got "
                               f"{lines.cur.strip()!r} (more n-grams than announced?)")
    for w in ("<s>", "</s>"):
        if w not in word_id:
            word_id[w] = len(vocab)
            vocab.append(w)
    bos, eos = word_id["<s>"], word_id["</s>"]
    if "<unk>" in word_id:
        unk = word_id["<unk>"]
        unk_logp = None         # its unigram's, once repeated unigrams are resolved
    else:
        unk = len(vocab)        # an id past the vocabulary: no unigram stored
        unk_logp = _DEFAULT_UNK_LOG10 * _LN10
    lm = NGramLM.__new__(NGramLM)
    lm._init(order, grams, len(vocab) + 1, bos, eos, unk, 0.0 if unk_logp is None else unk_logp,
             vocab)
    if unk_logp is None:
        lm.unk_logp = float(lm.unigram_log_probs()[unk])
    return lm


# --- word models at word boundaries ---------------------------------------------------

def read_lexicon(path):
    """Read a lexicon file: one ``WORD tok1 tok2 ...`` per line (several
    lines per word for several pronunciations).

    Returns
    -------
    list of (str, list of str)
        (word, token names) pairs in file order.
    """
    _require_file(path, "lexicon file")
    out = []
    with open(path, encoding="utf-8") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; expected 'WORD tok1 tok2 ...' "
                            f"lines") from None
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError(f"{path}, line {lineno}: expected 'WORD tok1 tok2 ...', "
                            f"got {line.strip()!r}")
        out.append((parts[0], parts[1:]))
    if not out:
        raise DataError(f"{path}: the lexicon is empty")
    return out


class WordLM:
    """A word n-gram model applied at word boundaries of a token output.

    Parameters
    ----------
    ngram : NGramLM
        Word model, e.g. from :func:`read_arpa`.
    tokens : list of str
        The CTC model's token names, ``tokens[c]`` for class c (the blank
        entry is ignored).
    word_delimiter : str or None, default " "
        Token that ends a word (must be in ``tokens``).  None: the output has
        no word-boundary token (e.g. phones); words then end wherever the
        lexicon allows, and the beam keeps the segmentations apart as
        Graves's token passing does.  Needs a lexicon.
    lexicon : str, dict or list of (word, tokens) pairs, optional
        Word spellings (lists of token names; several per word allowed), or a
        lexicon file for :func:`read_lexicon`.  Default: every model word
        spelt letter by letter; words with a letter missing from ``tokens``
        are left out.
    constrain : bool, optional
        Only let the beam spell words of the lexicon (Graves's
        token-passing constraint).  Default: True when a lexicon is given,
        False otherwise (unknown words then score as ``<unk>``).
    partial_oov_score : float, default -10.0
        Unconstrained mode: natural-log score a prefix carries while the word
        it is spelling is no prefix of any lexicon word (as pyctcdecode's
        ``unk_score_offset``); replaced by the word's LM score at the word's
        end.  Must be <= 0.

    Notes
    -----
    A word's LM score ``alpha * log P(word | previous words) + beta`` is added
    when the delimiter that ends it is appended (or at the end of the
    utterance, with ``</s>``).  Words that share a spelling keep the one with
    the higher unigram probability.
    """

    kind = "word"

    def __init__(self, ngram, tokens, word_delimiter=" ", lexicon=None, constrain=None,
                 partial_oov_score=-10.0):
        if not isinstance(ngram, NGramLM) or ngram.vocab is None:
            raise UserError("ngram must be a word NGramLM (e.g. from read_arpa)")
        tokens = list(tokens)
        tok_id = {t: i for i, t in enumerate(tokens)}
        if word_delimiter is None:
            if lexicon is None:
                raise UserError("word_delimiter=None (no word-boundary token) needs a lexicon")
            if constrain is False:
                raise UserError("word_delimiter=None needs constrain=True: word ends are "
                                "only known inside the lexicon")
        elif word_delimiter not in tok_id:
            raise UserError(f"word_delimiter {word_delimiter!r} is not one of the tokens")
        self.ngram, self.tokens = ngram, tokens
        self.delimiter = -1 if word_delimiter is None else tok_id[word_delimiter]
        self.constrain = (lexicon is not None) if constrain is None else bool(constrain)
        self.partial_oov_score = float(partial_oov_score)
        if not self.partial_oov_score <= 0.0:
            raise UserError(f"partial_oov_score must be <= 0, got {partial_oov_score!r}")
        if lexicon is None:
            pairs = [(w, list(w)) for w in ngram.vocab if w not in ("<s>", "</s>", "<unk>")]
            pairs = [(w, s) for w, s in pairs if all(ch in tok_id for ch in s)
                     and tok_id.get(word_delimiter) not in [tok_id[ch] for ch in s]]
        else:
            if isinstance(lexicon, (str, os.PathLike)):
                pairs = read_lexicon(lexicon)
            elif isinstance(lexicon, dict):
                pairs = [(w, list(s)) for w, s in lexicon.items()]
            else:
                pairs = [(w, list(s)) for w, s in lexicon]
            for w, s in pairs:
                missing = [t for t in s if t not in tok_id]
                if missing:
                    raise DataError(f"lexicon word {w!r} uses token {missing[0]!r}, which "
                                    "is not one of the model's tokens")
                if not s or (word_delimiter is not None and word_delimiter in s):
                    raise DataError(f"lexicon word {w!r} has an empty spelling or contains "
                                    "the word delimiter")
        self._build_trie([(w, [tok_id[t] for t in s]) for w, s in pairs])

    def _build_trie(self, pairs):
        C = len(self.tokens)
        w2i = self.ngram.word_to_id
        uni = self.ngram.unigram_log_probs()
        uni = np.append(uni, -np.inf)       # an unk id past the symbols: no unigram
        child = {}
        word_at = [-1]
        for w, seq in pairs:
            node = 0
            for c in seq:
                nxt = child.get((node, c))
                if nxt is None:
                    nxt = child[(node, c)] = len(word_at)
                    word_at.append(-1)
                node = nxt
            wid = w2i.get(w, self.ngram.unk)
            old = word_at[node]
            if old < 0 or uni[min(wid, len(uni) - 1)] > uni[min(old, len(uni) - 1)]:
                word_at[node] = wid
        keys = np.asarray([n * C + c for (n, c) in child], np.int64)
        lk, slots = _k.build_table(keys)
        lc = np.zeros(lk.shape[0], np.int64)
        lc[slots] = np.asarray(list(child.values()), np.int64)
        self.lex_keys, self.lex_child = lk, lc
        self.lex_word = np.asarray(word_at, np.int64)
        self.num_lexicon_nodes = len(word_at)
