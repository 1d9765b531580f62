"""Token n-gram training (against direct interpolated formulas), normalisation,
persistence, the ARPA reader and lexicons."""
import itertools
import math
from collections import Counter, defaultdict

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


def reference_prob(sents, order, method, V_pred, bos, eos):
    """Direct recursive interpolated estimate (no back-off form)."""
    raw = defaultdict(Counter)
    for s in sents:
        seq = [bos] + s + [eos]
        for i in range(1, len(seq)):
            for n in range(1, order + 1):
                if i - n + 1 >= 0:
                    raw[tuple(seq[i - n + 1:i])][seq[i]] += 1

    def counts(h, n):
        if method == "witten-bell" or n == order or (h and h[0] == bos):
            return raw.get(h, Counter())
        c = Counter()
        for hh, ws in raw.items():
            if len(hh) == n and hh[1:] == h:
                for w in ws:
                    c[w] += 1
        return c

    discounts = {}

    def D(n, c):
        """Discount of a count c at order n (Chen & Goodman's formulas)."""
        if n not in discounts:
            coc = Counter()
            for hh in {hh for hh in raw if len(hh) == n - 1}:
                coc.update(counts(hh, n).values())
            d = {0: 0.0, 1: 0.5, 2: 0.5, 3: 0.5}
            if coc[1] and coc[2]:
                y = coc[1] / (coc[1] + 2.0 * coc[2])
                if method == "kneser-ney":
                    d = {0: 0.0, **dict.fromkeys((1, 2, 3), min(max(y, 0.05), 0.95))}
                else:
                    for k in (1, 2, 3):
                        if coc[k] and coc[k + 1]:
                            d[k] = min(max(k - (k + 1) * y * coc[k + 1] / coc[k], 0.05),
                                       k - 0.05)
            discounts[n] = d
        return discounts[n][min(c, 3)]

    def p(w, h):
        n = len(h) + 1
        low = p(w, h[1:]) if h else 1.0 / V_pred
        c = counts(h, n)
        tot = sum(c.values())
        if tot == 0:
            return low
        t1 = len(c)
        if method == "witten-bell":
            return (c[w] + t1 * low) / (tot + t1)
        return (max(c[w] - D(n, c[w]), 0) + sum(D(n, k) for k in c.values()) * low) / tot

    return p


@pytest.mark.parametrize("method", ["kneser-ney", "modified-kneser-ney", "witten-bell"])
def test_token_lm_matches_direct_interpolation(method):
    order = 3
    lm = train_token_lm(CORPUS, C, order=order, method=method)
    ref = reference_prob(CORPUS, order, method, C, lm.bos, lm.eos)
    pred = lm.predicted
    for h in histories(lm, 2):
        got = np.exp(lm.log_probs(pred, [h] * len(pred)))
        want = [ref(w, tuple(h)) for w in pred]
        assert got == pytest.approx(want, rel=1e-12)


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
