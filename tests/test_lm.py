"""Token n-gram training (against probabilities worked out by hand), normalisation,
persistence, the ARPA reader and lexicons."""
import itertools
import json
import math

import numpy as np
import pytest

from ctcseq.lm import NGramLM, TokenLM, WordLM, read_arpa, read_lexicon, train_token_lm

LN10 = math.log(10)
CORPUS = [[1, 2, 3], [1, 2, 2, 4], [3, 3, 1], [4], [2, 1, 2, 3, 4, 1], [1, 2, 3]]
C = 6          # classes 0 (blank) .. 5; token 5 never occurs


def histories(lm, max_len):
    """Every history the model can meet: <s> + tokens, or tokens alone (a
    truncated history), up to max_len symbols."""
    toks = [c for c in range(lm.num_classes) if c != lm.blank]
    out = [()]
    for L in range(1, max_len + 1):
        out += list(itertools.product(toks, repeat=L))
        out += [(lm.bos,) + h for h in itertools.product(toks, repeat=L - 1)]
    return out


@pytest.mark.parametrize("method", ["kneser-ney", "modified-kneser-ney", "witten-bell"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_token_lm_sums_to_one_for_every_history(method, order):
    lm = train_token_lm(CORPUS, C, order=order, method=method)
    pred = lm.predicted
    assert len(pred) == C                        # C - 1 tokens + </s>
    for h in histories(lm, min(order, 3)):
        lp = lm.log_probs(pred, [h] * len(pred))
        assert np.all(np.isfinite(lp))
        assert math.fsum(np.exp(lp)) == pytest.approx(1.0, abs=1e-12)


# --- hand-worked examples ---------------------------------------------------------
# Probabilities worked out by hand from the published formulas (Chen & Goodman
# 1998, "An empirical study of smoothing techniques for language modeling":
# interpolated Kneser-Ney, its modified form, Witten-Bell) on tiny corpora,
# with train_token_lm's documented conventions: sentences are <s> ... </s>;
# lower orders count distinct left contexts, except after <s> (no left
# context: raw counts); the unigrams interpolate with a uniform distribution
# over the predicted symbols (the tokens and </s>); discounts per order from
# the counts-of-counts n1..n4, clamped to [0.05, 0.95] (Kneser-Ney) or
# [0.05, k - 0.05] (modified, k = 1, 2, 3), and 0.5 where the counts-of-counts
# they need are zero.

A, B = 1, 2                       # tokens of AB; class 0 is the blank
AB = [[A, B], [A, A, B]]          # <s> a b </s>, <s> a a b </s>
E3, S3 = 3, 4                     # </s> and <s> of a 3-class model


def check(lm, table):
    """table: {history: {symbol: probability}}, every predicted symbol listed."""
    for h, row in table.items():
        assert sorted(row) == sorted(lm.predicted)
        got = np.exp(lm.log_probs(list(row), [h] * len(row)))
        assert got == pytest.approx(list(row.values()), rel=1e-12), h


# AB, bigram Kneser-Ney.  Unigram continuation counts N(. w): a 2 (after <s>
# and a), b 1, </s> 1; n1 = 2, n2 = 1: D = 2 / (2 + 2) = 1/2; gamma = 1/2 x 3
# types / 4 = 3/8, so P(a) = 1.5/4 + 3/8 x 1/3 = 1/2, P(b) = P(</s>) = 1/4.
# Bigram counts <s>a 2, ab 2, aa 1, b</s> 2: n1 = 1, n2 = 3, D = 1/7.
# P(. | a) = (c - 1/7) / 3 + (2/7)/3 x P(.): b 13/21 + 2/21 x 1/4 = 9/14,
# a 6/21 + 1/21 = 1/3, </s> 1/42; after <s>: a 13/14 + 1/14 x 1/2 = 27/28.
KN_AB2 = {
    (): {A: 1 / 2, B: 1 / 4, E3: 1 / 4},
    (S3,): {A: 27 / 28, B: 1 / 56, E3: 1 / 56},
    (A,): {A: 1 / 3, B: 9 / 14, E3: 1 / 42},
    (B,): {A: 1 / 28, B: 1 / 56, E3: 53 / 56},
}
# AB, trigram Kneser-Ney.  Trigrams <s>ab 1, <s>aa 1, aab 1, ab</s> 2:
# n1 = 3, n2 = 1, D3 = 3/5.  Middle order: continuation counts after a
# (b 2: <s>ab and aab; a 1) and after b (</s> 1), raw counts after <s>
# (a 2): n1 = 2, n2 = 2, D2 = 1/3; unigrams as above.
# P2(. | a): b (2 - 1/3)/3 + 2/9 x 1/4 = 11/18, a 2/9 + 2/9 x 1/2 = 1/3,
# </s> 1/18.  P2(. | b): </s> 2/3 + 1/3 x 1/4 = 3/4, a 1/6, b 1/12.
# P2(. | <s>): a 5/6 + 1/6 x 1/2 = 11/12, b = </s> = 1/24.
# P3(. | <s> a) = (c - 3/5)/2 + 3/5 P2(. | a): b 1/5 + 11/30 = 17/30,
# a 1/5 + 1/5 = 2/5, </s> 1/30.  P3(. | a b): </s> 7/10 + 3/10 x 3/4 =
# 37/40, a 1/20, b 1/40.  P3(. | a a): b 2/5 + 11/30 = 23/30, a 1/5,
# </s> 1/30.  An unseen history (b a) is P2(. | a).
KN_AB3 = {
    (S3, A): {A: 2 / 5, B: 17 / 30, E3: 1 / 30},
    (A, B): {A: 1 / 20, B: 1 / 40, E3: 37 / 40},
    (A, A): {A: 1 / 5, B: 23 / 30, E3: 1 / 30},
    (B, A): {A: 1 / 3, B: 11 / 18, E3: 1 / 18},
    (A,): {A: 1 / 3, B: 11 / 18, E3: 1 / 18},
    (B,): {A: 1 / 6, B: 1 / 12, E3: 3 / 4},
    (S3,): {A: 11 / 12, B: 1 / 24, E3: 1 / 24},
    (): {A: 1 / 2, B: 1 / 4, E3: 1 / 4},
}
# AB, bigram Witten-Bell (raw counts at every order): unigrams a 3, b 2,
# </s> 2 of 7, 3 types: P(.) = (c + 3 x 1/3) / 10 = 2/5, 3/10, 3/10.
# P(. | <s>) = (c + 1 x P(.)) / 3: a 4/5, b 1/10, </s> 1/10;
# P(. | a) = (c + 2 P(.)) / 5: b 13/25, a 9/25, </s> 3/25.
WB_AB2 = {
    (): {A: 2 / 5, B: 3 / 10, E3: 3 / 10},
    (S3,): {A: 4 / 5, B: 1 / 10, E3: 1 / 10},
    (A,): {A: 9 / 25, B: 13 / 25, E3: 3 / 25},
}


@pytest.mark.parametrize("order, method, table", [
    (2, "kneser-ney", KN_AB2), (3, "kneser-ney", KN_AB3), (2, "witten-bell", WB_AB2)])
def test_token_lm_by_hand(order, method, table):
    check(train_token_lm(AB, 3, order=order, method=method), table)


# One sentence, unigrams: A x4, B x3, C x2, D x2, E, F, G once, </s> once,
# token 8 unseen; 15 counts, 8 types, 9 predicted symbols.
# n1 = 4, n2 = 2, n3 = 1, n4 = 1, Y = n1 / (n1 + 2 n2) = 1/2.
# Kneser-Ney: D = Y = 1/2, gamma = 1/2 x 8 / 15: P = (c - 1/2)/15 + 4/135.
# Modified: D1 = 1 - 2Y n2/n1 = 1/2, D2 = 2 - 3Y n3/n2 = 5/4,
# D3+ = 3 - 4Y n4/n3 = 1, gamma = (4 x 1/2 + 2 x 5/4 + 2 x 1) / 15 = 6.5/15,
# P = (c - D(c))/15 + 6.5/135.  Witten-Bell: P = (c + 8/9) / 23.
SPREAD = [[1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7]]
SPREAD_P = {
    "kneser-ney": [35.5, 26.5, 17.5, 17.5, 8.5, 8.5, 8.5, 4, 8.5],
    "modified-kneser-ney": [33.5, 24.5, 13.25, 13.25, 11, 11, 11, 6.5, 11],
    "witten-bell": [x * 135 / 207 for x in (44, 35, 26, 26, 17, 17, 17, 8, 17)],
}


@pytest.mark.parametrize("method", sorted(SPREAD_P))
def test_token_unigram_discounts_by_hand(method):
    lm = train_token_lm(SPREAD, 9, order=1, method=method)
    check(lm, {(): dict(zip(lm.predicted, np.array(SPREAD_P[method]) / 135))})


# The clamps.  (1) Tokens 1..10 twice, 11 once, </s> twice, 12 unseen (23
# counts, 12 types, 13 predicted): n1 = 1, n2 = 11, Y = 1/23 < 0.05.
# Kneser-Ney: D = 0.05 (not 1/23), gamma = 0.6/23, P = (c - 0.05)/23 + 0.6/299.
# Modified: D1 = 1 - 2Y x 11 = 1/23 -> 0.05, D2 = 0.5 (n3 = 0), gamma =
# (0.05 + 11 x 0.5)/23, P = (c - D(c))/23 + 5.55/299.
# (2) Tokens 1..39 once, 40 twice, </s> once, 41 unseen (42 counts, 41 types,
# 42 predicted): n1 = 40, n2 = 1, Y = 40/42 > 0.95.  Kneser-Ney: D = 0.95,
# gamma = 0.95 x 41/42, P = (c - 0.95)/42 + 38.95/1764.  Modified: D1 =
# 1 - 2Y/40 = 40/42 -> 0.95, D2 = 0.5, gamma = (40 x 0.95 + 0.5)/42,
# P = (c - D(c))/42 + 38.5/1764.
# (3) Modified only: A, B x3, C x2, D once, </s> once, 5 unseen (10 counts,
# 6 predicted): n1 = 2, n2 = 1, n3 = 2, n4 = 0, Y = 1/2, D1 = 1/2,
# D2 = 2 - 3Y x 2 = -1 -> 0.05, D3+ = 0.5 (n4 = 0), gamma = (1 + 0.05 + 1)/10,
# P = (c - D(c))/10 + 2.05/60.
CLAMPS = [
    ([list(range(1, 11)), list(range(1, 12))], 13, "kneser-ney",
     [25.95] * 10 + [12.95, 0.6, 25.95], 299),
    ([list(range(1, 11)), list(range(1, 12))], 13, "modified-kneser-ney",
     [25.05] * 10 + [17.9, 5.55, 25.05], 299),
    ([list(range(1, 40)) + [40, 40]], 42, "kneser-ney",
     [41.05] * 39 + [83.05, 38.95, 41.05], 1764),
    ([list(range(1, 40)) + [40, 40]], 42, "modified-kneser-ney",
     [40.6] * 39 + [101.5, 38.5, 40.6], 1764),
    ([[1, 1, 1, 2, 2, 2, 3, 3, 4]], 6, "modified-kneser-ney",
     [17.05, 17.05, 13.75, 5.05, 2.05, 5.05], 60),
]


@pytest.mark.parametrize("sents, C, method, numer, denom", CLAMPS)
def test_discount_clamps_by_hand(sents, C, method, numer, denom):
    lm = train_token_lm(sents, C, order=1, method=method)
    check(lm, {(): dict(zip(lm.predicted, np.array(numer) / denom))})


def test_kneser_ney_counts_contexts_not_occurrences():
    """Token 1 occurs 4 times, always after 2; token 3 3 times, after 3
    different tokens.  Kneser-Ney's lower order prefers 3 (a likelier
    continuation of a new context); Witten-Bell's raw counts prefer 1."""
    sents = [[2, 1]] * 4 + [[3], [2, 3], [4, 3]]
    kn = train_token_lm(sents, 5, order=2, method="kneser-ney")
    wb = train_token_lm(sents, 5, order=2, method="witten-bell")
    assert kn.log_prob(3, ()) > kn.log_prob(1, ())
    assert wb.log_prob(1, ()) > wb.log_prob(3, ())
    # after 2, where both were seen, 1 (seen 4 times) beats 3 (once) in both
    assert kn.log_prob(1, [2]) > kn.log_prob(3, [2]) and wb.log_prob(1, [2]) > wb.log_prob(3, [2])


def test_token_lm_prefers_seen_continuations():
    lm = train_token_lm(CORPUS, C, order=3)
    assert lm.log_prob(3, [1, 2]) > lm.log_prob(5, [1, 2])
    assert lm.log_prob(lm.eos, [2, 3]) > lm.log_prob(5, [2, 3])


def test_token_lm_save_load_and_arpa_round_trip(tmp_path):
    lm = train_token_lm(CORPUS, C, order=3, method="witten-bell")
    p = tmp_path / "lm.json"
    lm.save(str(p))
    back = NGramLM.load(str(p))
    assert isinstance(back, TokenLM) and back.method == "witten-bell"
    hs = histories(lm, 2)
    pred = lm.predicted
    for h in hs:
        assert np.array_equal(back.log_probs(pred, [h] * len(pred)),
                              lm.log_probs(pred, [h] * len(pred)))
    names = [f"t{i}" for i in range(lm.num_symbols)]
    names[lm.eos], names[lm.bos] = "</s>", "<s>"
    arpa = tmp_path / "lm.arpa"
    lm.write_arpa(str(arpa), names)
    word = read_arpa(str(arpa))
    for h in hs:
        hw = [word.word_to_id[names[s]] for s in h]
        for w in pred:
            a = word.log_prob(word.word_to_id[names[w]], hw)
            assert a == pytest.approx(lm.log_prob(w, h), abs=1e-6)   # 7 decimals in ARPA


def test_token_lm_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        train_token_lm(CORPUS, C, order=0)
    with pytest.raises(ValueError, match="method"):
        train_token_lm(CORPUS, C, method="good-turing")
    with pytest.raises(ValueError, match=r"transcripts\[1\] holds 0"):
        train_token_lm([[1], [2, 0]], C)
    with pytest.raises(ValueError, match=r"transcripts\[0\] holds 9"):
        train_token_lm([[9]], C)
    with pytest.raises(ValueError, match="empty"):
        train_token_lm([], C)


# --- ARPA ------------------------------------------------------------------------

ARPA = """some header text the reader skips

\\data\\
ngram 1=5
ngram 2=3
ngram 3=1

\\1-grams:
-99\t<s>\t-0.5
-1.0\t</s>
-0.6\ta\t-0.3
-0.8\tb\t-0.2
-1.5\t<unk>

\\2-grams:
-0.4\t<s> a\t-0.1
-0.3\ta b\t-0.7
-0.9\tb </s>

\\3-grams:
-0.05\t<s> a b

\\end\\
"""


@pytest.fixture
def arpa_path(tmp_path):
    p = tmp_path / "m.arpa"
    p.write_text(ARPA)
    return p


def test_arpa_probabilities_and_back_off(arpa_path):
    lm = read_arpa(str(arpa_path))
    i = lm.word_to_id
    s, e, a, b, unk = i["<s>"], i["</s>"], i["a"], i["b"], i["<unk>"]
    assert lm.order == 3 and (lm.bos, lm.eos, lm.unk) == (s, e, unk)
    # stored n-grams
    assert lm.log_prob(b, [s, a]) == pytest.approx(-0.05 * LN10)
    assert lm.log_prob(b, [a]) == pytest.approx(-0.3 * LN10)
    assert lm.log_prob(a, [s]) == pytest.approx(-0.4 * LN10)
    # back-off once: bow(<s> a) + P(</s> | a) = bow(<s> a) + bow(a) + P(</s>)
    assert lm.log_prob(e, [s, a]) == pytest.approx((-0.1 - 0.3 - 1.0) * LN10)
    # a b -> a: bow(a b) + bow(b) + P(a)
    assert lm.log_prob(a, [a, b]) == pytest.approx((-0.7 - 0.2 - 0.6) * LN10)
    # bigram context only: bow(b) + P(b)
    assert lm.log_prob(b, [b]) == pytest.approx((-0.2 - 0.8) * LN10)
    # unknown history word: its context does not exist, no back-off weight
    assert lm.log_prob(a, [unk]) == pytest.approx(-0.6 * LN10)
    # sentence score: <s> a b </s>, the last factor backing off from (a b)
    assert lm.sentence_log_prob([a, b]) == pytest.approx((-0.4 - 0.05 - 0.7 - 0.9) * LN10)


def test_arpa_back_off_chain(arpa_path):
    """P(</s> | a b) backs off from the trigram context (a b) to (b)."""
    lm = read_arpa(str(arpa_path))
    i = lm.word_to_id
    # (a b) is a context with bow -0.7 and no trigram ending in </s>; (b) </s> is stored
    assert lm.log_prob(i["</s>"], [i["a"], i["b"]]) == pytest.approx((-0.7 - 0.9) * LN10)


@pytest.mark.parametrize("edit,lineno,match", [
    (lambda t: t.replace("\\data\\", "\\dada\\"), 1, "no \\\\data"),
    (lambda t: t.replace("ngram 2=3", "ngram 2=three"), 5, "malformed count"),
    (lambda t: t.replace("ngram 2=3", "ngram 2=4"), 19, "fewer than the 4"),
    (lambda t: t.replace("-0.3\ta b\t-0.7", "-0.3\ta b c d e"), 17, "fields"),
    (lambda t: t.replace("-0.8\tb\t-0.2", "-0.8x\tb\t-0.2"), 12, "not a number"),
    (lambda t: t.replace("-0.9\tb </s>", "-0.9\tb zz"), 18, "'zz' has no unigram"),
    (lambda t: t.replace("\\3-grams:", "\\4-grams:"), 20, "expected '\\\\3-grams:'"),
    (lambda t: t[:t.index("\\3-grams:")], 20, "truncated"),
    (lambda t: t.replace("\\end\\\n", ""), 23, "missing \\\\end"),
    (lambda t: t.replace("-0.05\t<s> a b", "-0.05\t<s> a b\n-0.1\ta b b"), 22,
     "more n-grams than announced"),
    (lambda t: t.replace("-1.0\t</s>", "1.0\t</s>"), 10, "<= 0"),
])
def test_malformed_arpa_names_the_line(tmp_path, edit, lineno, match):
    p = tmp_path / "bad.arpa"
    p.write_text(edit(ARPA))
    with pytest.raises(ValueError, match=match) as info:
        read_arpa(str(p))
    assert f"line {lineno}:" in str(info.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="ARPA file not found"):
        read_arpa(str(tmp_path / "nope.arpa"))
    with pytest.raises(FileNotFoundError, match="lexicon file not found"):
        read_lexicon(str(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match="LM file not found"):
        NGramLM.load(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "token-ngram",\n "order": }')
    with pytest.raises(ValueError, match="line 2"):
        NGramLM.load(str(bad))


# --- lexicons ------------------------------------------------------------------

def test_lexicon_file_and_errors(tmp_path, arpa_path):
    lm = read_arpa(str(arpa_path))
    tokens = ["<b>", "|", "AH", "B", "IY"]
    p = tmp_path / "lex.txt"
    p.write_text("a AH\na IY\n\nb B IY\n")
    assert read_lexicon(str(p)) == [("a", ["AH"]), ("a", ["IY"]), ("b", ["B", "IY"])]
    w = WordLM(lm, tokens, word_delimiter="|", lexicon=str(p))
    assert w.constrain and w.num_lexicon_nodes == 5        # root, AH, IY, B, B-IY
    assert sorted(w.lex_word[w.lex_word >= 0].tolist()) == sorted(
        [lm.word_to_id["a"]] * 2 + [lm.word_to_id["b"]])
    p.write_text("a AH\nb\n")
    with pytest.raises(ValueError, match="line 2"):
        read_lexicon(str(p))
    with pytest.raises(ValueError, match="'b' uses token 'OW'"):
        WordLM(lm, tokens, word_delimiter="|", lexicon={"a": ["AH"], "b": ["OW"]})
    with pytest.raises(ValueError, match="word_delimiter"):
        WordLM(lm, tokens, word_delimiter=" ")
    with pytest.raises(ValueError, match="delimiter"):
        WordLM(lm, tokens, word_delimiter="|", lexicon={"a": ["AH", "|"]})


@pytest.mark.parametrize("delimiter", ["|", None])
def test_constrained_search_never_ends_mid_word(arpa_path, delimiter):
    """With a lexicon, every hypothesis spells lexicon words only: a beam
    whose prefixes all stop inside a word has nothing valid to return."""
    from ctcseq.decode import beam_search
    lm = read_arpa(str(arpa_path))
    tokens = ["<b>", "|", "AH", "B", "IY"]
    w = WordLM(lm, tokens, word_delimiter=delimiter, lexicon={"a": ["AH"], "b": ["B", "IY"]})
    # the frames say "B", then nothing: B alone is no word
    p = np.array([[.01, .01, .01, .96, .01], [.96, .01, .01, .01, .01]])
    hyps = beam_search(np.log(p)[:, None, :], beam_width=1, lm=w, alpha=1.0)[0]
    spellings = {("AH",), ("B", "IY")}
    for h in hyps:
        assert math.isfinite(h.score), (h.tokens, h.score)
        names = [tokens[t] for t in h.tokens]
        if delimiter:   # one word between delimiters
            words = " ".join(names).split("|")
            assert all(tuple(w.split()) in spellings for w in words if w.strip()), names
        else:           # words back to back
            while names:
                w = next((w for w in spellings if tuple(names[:len(w)]) == w), None)
                assert w is not None, names
                names = names[len(w):]


# --- the arrays and their hash tables ----------------------------------------------

def backed_off(entries, unk_logp, w, h):
    """ARPA back-off read straight from {gram: (logp, bow)} (a log-probability of
    minus infinity: the gram is stored only as a history)."""
    acc = 0.0
    for k in range(len(h), -1, -1):
        ctx = tuple(h[len(h) - k:])
        lp = entries.get(ctx + (w,), (-math.inf, 0.0))[0]
        if lp != -math.inf:
            return acc + lp
        acc += entries.get(ctx, (0.0, 0.0))[1] if ctx else 0.0
    return unk_logp


def random_entries(rng, V, order, per_order):
    entries = {}
    for n in range(1, order + 1):
        for _ in range(per_order):
            g = tuple(int(x) for x in rng.integers(0, V, n))
            lp = -math.inf if (n > 1 and rng.random() < 0.15) else float(-rng.random() * 5)
            bw = float(-rng.random()) if (n < order and rng.random() < 0.6) else 0.0
            entries[g] = (lp, bw)
    return entries


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tables_give_the_back_off_of_every_history(seed):
    """Random models (histories stored only for their back-off weight, grams
    whose history is no gram, symbols with no unigram) against back-off read
    from the dict; every history of up to order - 1 symbols."""
    rng = np.random.default_rng(seed)
    V, order = 6, 4
    entries = random_entries(rng, V, order, 60)
    lm = NGramLM(order, entries, V, bos=V - 1, eos=V - 2, unk=V - 2, unk_logp=-7.5)
    assert lm.entries == entries
    for L in range(order):
        for h in itertools.product(range(V), repeat=L):
            got = lm.log_probs(list(range(V)), [h] * V)
            want = [backed_off(entries, -7.5, w, h) for w in range(V)]
            np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_grams_are_arrays_and_round_trip_through_json(tmp_path):
    rng = np.random.default_rng(5)
    entries = random_entries(rng, 9, 3, 40)
    lm = NGramLM(3, entries, 9, bos=8, eos=7, unk=7, unk_logp=-math.inf)
    assert [g[0].shape[1] for g in lm.grams] == [1, 2, 3]
    assert sum(len(g[1]) for g in lm.grams) == len(entries)
    lm.save(tmp_path / "lm.json")
    back = NGramLM.load(tmp_path / "lm.json")
    assert back.entries == entries
    d = json.loads((tmp_path / "lm.json").read_text())
    again = NGramLM.from_dict(d)
    assert d == json.loads((tmp_path / "lm.json").read_text())      # left as it was
    assert again.entries == entries
    for a, b in zip(back.tables, lm.tables):
        np.testing.assert_array_equal(a, b)


def test_repeated_ngrams_keep_their_last_values(tmp_path):
    """As a dict (and the older row form) would: a repeated n-gram in a file's
    columns or an ARPA file keeps its last values."""
    lm = NGramLM(2, {(0,): (-1.0, -0.5), (1,): (-2.0, 0.0), (0, 1): (-0.3, 0.0)}, 3,
                 bos=2, eos=1, unk=1, unk_logp=-9.0)
    d = lm.to_dict()
    d["grams"][1] = {"n": 2, "symbols": [0, 1, 0, 1], "logp": [-0.3, -0.1], "bow": [0, 0]}
    twice = NGramLM.from_dict(d)
    assert twice.entries[(0, 1)] == (-0.1, 0.0) and twice.log_prob(1, [0]) == -0.1
    assert len(twice.grams[1][1]) == 1
    arpa = tmp_path / "twice.arpa"
    arpa.write_text(ARPA.replace("ngram 2=3", "ngram 2=4").replace(
        "-0.9\tb </s>\n", "-0.9\tb </s>\n-0.2\ta b\t-0.6\n"))
    word = read_arpa(str(arpa))
    i = word.word_to_id
    assert word.log_prob(i["b"], [i["a"]]) == pytest.approx(-0.2 * LN10)
    assert word.log_prob(i["</s>"], [i["a"], i["b"]]) == pytest.approx((-0.6 - 0.9) * LN10)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["grams"][1].update(symbols=d["grams"][1]["symbols"][:-1]), "disagree"),
    (lambda d: d["grams"][0].update(symbols=[0, 1, 5]), r"symbol 5, outside \[0, 3\)"),
    (lambda d: d["grams"][0].update(symbols=[0, 1, -1]), "symbol -1"),
    (lambda d: d["grams"][0].update(symbols=[0, 1, "a"]), "integers"),
    (lambda d: d["grams"][0].update(bow=[0, None, 0]), "malformed|back-off"),
    (lambda d: d["grams"].pop(), "list of 2 orders"),
    (lambda d: d["grams"][1].update(n=3), "2-grams' columns"),
    (lambda d: d.pop("grams"), "lacks its field 'grams'"),
])
def test_malformed_columns_are_refused_by_name(tmp_path, edit, match):
    lm = NGramLM(2, {(0,): (-1.0, -0.5), (1,): (-2.0, 0.0), (2,): (-1.0, 0.0),
                     (0, 1): (-0.3, 0.0)}, 3, bos=2, eos=1, unk=1, unk_logp=-9.0)
    d = lm.to_dict()
    edit(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=match) as info:
        NGramLM.load(p)
    assert str(p) in str(info.value)
