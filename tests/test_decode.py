"""Greedy decoding, prefix beam search and forced alignment against exhaustive
references on tiny cases; LM fusion bookkeeping; bad inputs."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctc_reference import collapse, log_softmax
from ctcseq.ctc import ctc_loss
from ctcseq.decode import (beam_search, forced_align, greedy_decode, to_ctm,
                           word_spans)
from ctcseq.lm import NGramLM, WordLM, read_arpa, train_token_lm


def random_lp(rng, T, N, C, scale=1.0, dtype=np.float64):
    return log_softmax(scale * rng.standard_normal((T, N, C))).astype(dtype)


def peaked_lp(rng, T, N, C, p=0.95):
    """Each frame gives probability p to one random class."""
    best = rng.integers(0, C, size=(T, N))
    probs = np.full((T, N, C), (1 - p) / (C - 1))
    np.put_along_axis(probs, best[..., None], p, axis=2)
    return np.log(probs)


def exact_scores(lp1, blank):
    """Every label sequence of length <= T and its exact log P(y | x)."""
    T, C = lp1.shape
    labels = [c for c in range(C) if c != blank]
    seqs = [s for L in range(T + 1) for s in itertools.product(labels, repeat=L)]
    N = len(seqs)
    S = max(T, 1)
    tg = np.ones((N, S), np.int64) * labels[0]
    for i, s in enumerate(seqs):
        tg[i, :len(s)] = s
    lp = np.repeat(lp1[:, None, :], N, axis=1)
    nll = ctc_loss(lp, tg, np.full(N, T), [len(s) for s in seqs], blank=blank,
                   reduction="none")
    return seqs, -nll


# --- beam search == exhaustive search -----------------------------------------

@pytest.mark.parametrize("T,C,blank,scale", [(1, 3, 0, 1.0), (3, 3, 0, 2.0), (4, 4, 0, 1.0),
                                             (5, 3, 2, 1.5), (5, 4, 1, 0.5)])
def test_wide_beam_equals_exhaustive_search(T, C, blank, scale):
    rng = np.random.default_rng(T * 10 + C)
    lp = random_lp(rng, T, 1, C, scale)
    seqs, logp = exact_scores(lp[:, 0], blank)
    order = np.argsort(-logp)
    nbest = 5 if len(seqs) >= 5 else len(seqs)
    hyps = beam_search(lp, beam_width=400, blank=blank, prune_threshold=-np.inf,
                       nbest=nbest)[0]
    assert len(hyps) == nbest
    for h, i in zip(hyps, order[:nbest]):
        assert tuple(h.tokens) == seqs[i]
        assert h.score == pytest.approx(logp[i], abs=1e-9)
        assert h.acoustic_score == h.score


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 4), C=st.integers(2, 4), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.1, 1.0, 4.0]), data=st.data())
def test_wide_beam_equals_exhaustive_search_property(T, C, seed, scale, data):
    blank = data.draw(st.integers(0, C - 1))
    lp = random_lp(np.random.default_rng(seed), T, 1, C, scale)
    seqs, logp = exact_scores(lp[:, 0], blank)
    h = beam_search(lp, beam_width=128, blank=blank, prune_threshold=-np.inf)[0][0]
    assert h.score == pytest.approx(logp.max(), abs=1e-9)
    assert logp[seqs.index(tuple(h.tokens))] == pytest.approx(h.score, abs=1e-9)


def test_narrow_beam_scores_are_lower_bounds():
    rng = np.random.default_rng(3)
    lp = random_lp(rng, 5, 1, 4, 0.5)
    seqs, logp = exact_scores(lp[:, 0], 0)
    exact = dict(zip(seqs, logp))
    for h in beam_search(lp, beam_width=3, nbest=3, prune_threshold=-np.inf)[0]:
        assert h.score <= exact[tuple(h.tokens)] + 1e-12


# --- beam search vs greedy --------------------------------------------------------

def test_beam_one_equals_greedy_on_confident_frames():
    rng = np.random.default_rng(1)
    T, N, C = 60, 8, 6
    lp = peaked_lp(rng, T, N, C, p=0.95)
    lengths = rng.integers(0, T + 1, size=N)
    greedy = greedy_decode(lp, lengths)
    beams = beam_search(lp, lengths, beam_width=1)
    assert any(len(g) > 3 for g in greedy)
    for g, b in zip(greedy, beams):
        assert b[0].tokens == g


def test_best_beam_never_worse_than_greedy_path():
    rng = np.random.default_rng(2)
    T, N, C = 40, 16, 5
    for scale in (0.3, 1.0, 3.0):
        lp = random_lp(rng, T, N, C, scale)
        _, _, gscore = greedy_decode(lp, return_timestamps=True)
        for beam in (1, 2, 8):
            hyps = beam_search(lp, beam_width=beam)
            for n in range(N):
                assert hyps[n][0].score >= gscore[n] - 1e-9


def test_greedy_against_python_reference():
    rng = np.random.default_rng(4)
    T, N, C = 30, 5, 4
    lp = random_lp(rng, T, N, C, 2.0).astype(np.float32)
    lengths = np.array([30, 0, 1, 17, 29])
    lp[20:, 3] = np.nan           # past its length: never read
    labels, spans, scores = greedy_decode(lp, lengths, blank=1, return_timestamps=True)
    for n in range(N):
        path = np.argmax(lp[:lengths[n], n], axis=1)
        assert labels[n] == collapse(path.tolist(), 1)
        assert scores[n] == pytest.approx(float(np.sum(np.max(lp[:lengths[n], n], axis=1))),
                                          rel=1e-5)
        for tok, (s, e) in zip(labels[n], spans[n]):
            assert (path[s:e] == tok).all()
            assert s == 0 or path[s - 1] != tok
            assert e == lengths[n] or path[e] != tok


def test_batch_equals_one_by_one_and_padding_is_ignored():
    rng = np.random.default_rng(5)
    T, N, C = 50, 6, 7
    lp = random_lp(rng, T, N, C, 2.0)
    lengths = np.array([50, 10, 0, 33, 49, 1])
    padded = lp.copy()
    for n in range(N):
        padded[lengths[n]:, n] = np.nan
    batch = beam_search(padded, lengths, beam_width=8, nbest=3)
    for n in range(N):
        one = beam_search(lp[:lengths[n], n:n + 1], beam_width=8, nbest=3)[0]
        assert [h.tokens for h in one] == [h.tokens for h in batch[n]]
        assert np.allclose([h.score for h in one], [h.score for h in batch[n]])
    assert batch[2][0].tokens == [] and batch[2][0].score == 0.0


def test_beam_timestamps_match_greedy_on_confident_frames():
    rng = np.random.default_rng(6)
    lp = peaked_lp(rng, 40, 3, 5, p=0.97)
    labels, spans, _ = greedy_decode(lp, return_timestamps=True)
    hyps = beam_search(lp, beam_width=4)
    for n in range(3):
        assert hyps[n][0].tokens == labels[n]
        assert hyps[n][0].timestamps == spans[n][:, 0].tolist()


def test_pruning_options_restrict_tokens():
    rng = np.random.default_rng(7)
    lp = random_lp(rng, 20, 2, 6, 0.2)
    best = np.argmax(lp, axis=2)
    # top_k = 1: only each frame's best non-blank token can be emitted
    top_nonblank = [[c for c in np.argsort(-lp[t, 0]) if c != 0][0] for t in range(20)]
    hyp = beam_search(lp[:, :1], beam_width=8, top_k=1)[0][0]
    assert hyp.tokens
    for tok, t in zip(hyp.tokens, hyp.timestamps):
        assert tok == top_nonblank[t]
    # a threshold above every log-probability leaves only the frame's best class
    hyp = beam_search(lp, beam_width=8, prune_threshold=0.0)
    for n in range(2):
        assert set(hyp[n][0].tokens) <= set(best[:, n].tolist()) - {0}


# --- language-model fusion ---------------------------------------------------------

def test_token_lm_score_decomposition_and_effect():
    rng = np.random.default_rng(8)
    C = 5
    lm = train_token_lm([[1, 2, 3], [1, 2, 3, 4], [2, 3, 4]] * 3, C, order=3)
    lp = random_lp(rng, 25, 3, C, 1.0)
    alpha, beta = 0.8, 0.3
    for n, hyps in enumerate(beam_search(lp, beam_width=16, lm=lm, alpha=alpha, beta=beta,
                                         nbest=4)):
        for h in hyps:
            expected = (h.acoustic_score + alpha * lm.sentence_log_prob(h.tokens)
                        + beta * len(h.tokens))
            assert h.score == pytest.approx(expected, abs=1e-9)
        assert [h.score for h in hyps] == sorted([h.score for h in hyps], reverse=True)
    # a dominant LM pulls the output towards the training sentences
    flat = log_softmax(np.zeros((12, 1, C)))
    out = beam_search(flat, beam_width=32, lm=lm, alpha=5.0, beta=0.0)[0][0].tokens
    assert out in ([1, 2, 3], [2, 3, 4], [1, 2, 3, 4])


ARPA_WORDS = """\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.0\t<s>\t-0.3
-0.5\t</s>
-0.7\tab\t-0.2
-0.9\tba\t-0.25
-1.2\taa\t-0.1
-2.0\t<unk>

\\2-grams:
-0.2\t<s> ab
-0.3\tab ba
-0.4\tba </s>
-0.1\tab </s>

\\end\\
"""


@pytest.fixture
def word_lm(tmp_path):
    p = tmp_path / "w.arpa"
    p.write_text(ARPA_WORDS)
    return read_arpa(str(p))


def spell(words, tokens, T_per=3, sep=" "):
    """Confident log-probs spelling the words separated by sep (None: no
    separator)."""
    tid = {t: i for i, t in enumerate(tokens)}
    seq = []
    for k, w in enumerate(words):
        if k and sep is not None:
            seq.append(tid[sep])
        seq += [tid[ch] for ch in w]
    frames = []
    for c in seq:
        frames += [c] * T_per + [0]
    T, C = len(frames), len(tokens)
    lp = np.full((T, 1, C), math.log(0.02 / (C - 1)))
    lp[np.arange(T), 0, frames] = math.log(0.98)
    return lp


def test_word_lm_scores_words_at_boundaries(word_lm):
    tokens = ["_", " ", "a", "b"]
    lm = WordLM(word_lm, tokens, word_delimiter=" ")
    lp = spell(["ab", "ba"], tokens)
    alpha, beta = 0.7, 1.5
    h = beam_search(lp, beam_width=8, lm=lm, alpha=alpha, beta=beta)[0][0]
    assert h.tokens == [2, 3, 1, 3, 2]
    lm_part = (-0.2 - 0.3 - 0.4) * math.log(10)        # <s> ab ba </s>, all bigrams
    assert h.score == pytest.approx(h.acoustic_score + alpha * lm_part + 2 * beta, abs=1e-9)
    # an unknown word scores as <unk> (unconstrained without a lexicon)
    h = beam_search(spell(["bb"], tokens), beam_width=8, lm=lm, alpha=1.0)[0][0]
    assert h.tokens == [3, 3]
    unk = word_lm.word_to_id["<unk>"]
    eos = word_lm.eos
    lm_part = word_lm.log_prob(unk, [word_lm.bos]) + word_lm.log_prob(eos, [word_lm.bos, unk])
    assert h.score == pytest.approx(h.acoustic_score + lm_part, abs=1e-9)


def test_lexicon_constrains_output_to_known_words(word_lm):
    tokens = ["_", " ", "a", "b"]
    lp = spell(["ab", "bb"], tokens)           # "bb" is not a word
    free = beam_search(lp, beam_width=16, lm=WordLM(word_lm, tokens, partial_oov_score=0.0),
                       alpha=0.1)[0][0]
    assert free.tokens == [2, 3, 1, 3, 3]
    lex = {"ab": ["a", "b"], "ba": ["b", "a"], "aa": ["a", "a"]}
    con = beam_search(lp, beam_width=16, lm=WordLM(word_lm, tokens, lexicon=lex),
                      alpha=0.1, nbest=4)[0]
    words = {"ab", "ba", "aa"}
    assert con
    for h in con:
        text = "".join(tokens[t] for t in h.tokens).split()
        assert text and set(text) <= words
        assert np.isfinite(h.score)


def segmentations(seq, lexicon):
    """Every way of cutting seq (a string) into lexicon words."""
    if not seq:
        return [[]]
    out = []
    for w, spelling in lexicon.items():
        sp = "".join(spelling)
        if seq.startswith(sp):
            out += [[w] + rest for rest in segmentations(seq[len(sp):], lexicon)]
    return out


@pytest.mark.parametrize("beta", [0.0, -5.0])
def test_lexicon_without_delimiter_picks_the_best_segmentation(word_lm, beta):
    tokens = ["_", "a", "b"]                   # e.g. phones: no word-boundary token
    lex = {"ab": ["a", "b"], "ba": ["b", "a"], "aa": ["a", "a"], "abba": list("abba")}
    lm = WordLM(word_lm, tokens, word_delimiter=None, lexicon=lex)
    lp = spell(["abba"], tokens, sep=None)
    alpha = 1.0
    hyps = beam_search(lp, beam_width=16, lm=lm, alpha=alpha, beta=beta, nbest=3)[0]
    h = hyps[0]
    assert h.tokens == [1, 2, 2, 1]
    ids = word_lm.word_to_id

    def lm_score(words):
        return word_lm.sentence_log_prob([ids.get(w, word_lm.unk) for w in words])

    segs = segmentations("abba", lex)
    assert sorted(map(tuple, segs)) == [("ab", "ba"), ("abba",)]
    best = max(alpha * lm_score(sg) + beta * len(sg) for sg in segs)
    assert h.score == pytest.approx(h.acoustic_score + best, abs=1e-9)
    # beta decides: two cheap words, or one unknown word when words are penalised
    assert (lm_score(["ab", "ba"]) + beta * 2 > lm_score(["abba"]) + beta) == (beta == 0.0)
    # one entry per token sequence, every one a sequence of lexicon words
    assert len({tuple(x.tokens) for x in hyps}) == len(hyps)
    for x in hyps:
        assert segmentations("".join(tokens[t] for t in x.tokens), lex)
    # without the lexicon there is nothing to tell where words end
    with pytest.raises(ValueError, match="needs a lexicon"):
        WordLM(word_lm, tokens, word_delimiter=None)


def test_lexicon_without_delimiter_constrains_output(word_lm):
    tokens = ["_", "a", "b"]
    lex = {"ab": ["a", "b"], "ba": ["b", "a"], "aa": ["a", "a"]}
    lm = WordLM(word_lm, tokens, word_delimiter=None, lexicon=lex)
    lp = spell(["abb"], tokens, sep=None)        # no segmentation into words
    for x in beam_search(lp, beam_width=16, lm=lm, alpha=0.1, nbest=4)[0]:
        assert segmentations("".join(tokens[t] for t in x.tokens), lex)
        assert np.isfinite(x.score)


# --- forced alignment ------------------------------------------------------------

def brute_best_path(lp1, target, blank):
    T, C = lp1.shape
    best, arg = -np.inf, None
    for path in itertools.product(range(C), repeat=T):
        if collapse(path, blank) == list(target):
            s = sum(lp1[t, c] for t, c in enumerate(path))
            if s > best:
                best, arg = s, path
    return best, arg


@pytest.mark.parametrize("T,C,target,blank", [(1, 2, [1], 0), (3, 3, [1, 1], 0),
                                              (5, 3, [2, 1], 0), (6, 4, [3, 1, 3], 0),
                                              (5, 3, [0, 1], 2), (4, 3, [], 0),
                                              (6, 3, [1, 2, 2], 0)])
def test_forced_align_equals_brute_force(T, C, target, blank):
    rng = np.random.default_rng(T * 7 + C)
    lp = random_lp(rng, T, 2, C, 1.5)
    tl = [len(target), len(target)]
    tg = np.array([target, target], dtype=np.int64).reshape(2, len(target))
    al = forced_align(lp, tg, [T, T], tl, blank=blank)
    for n in range(2):
        best, path = brute_best_path(lp[:, n], target, blank)
        assert al[n].score == pytest.approx(best, abs=1e-12)
        # spans from the brute-force argmax path (ties have probability 0)
        k, prev = -1, None
        starts, ends = [], []
        for t, c in enumerate(path):
            if c != blank and (c != prev):
                starts.append(t)
                ends.append(t + 1)
            elif c != blank:
                ends[-1] = t + 1
            prev = c
        assert al[n].starts.tolist() == starts
        assert al[n].ends.tolist() == ends


def test_forced_align_lengths_and_words():
    rng = np.random.default_rng(9)
    T, C = 30, 4
    lp = random_lp(rng, T, 2, C)
    tg = [1, 3, 2, 3, 1, 1, 2]                 # concatenated: [1, 3, 2] and [3, 1, 1, 2]
    al = forced_align(lp, tg, [20, 30], [3, 4])
    for a, L in zip(al, (20, 30)):
        assert (np.diff(a.starts) > 0).all() and (a.ends > a.starts).all()
        assert (a.starts[1:] >= a.ends[:-1]).all() and a.ends[-1] <= L
    spans = word_spans([1, 3, 2], al[0].starts, al[0].ends, delimiter=3)
    assert [s[:2] for s in spans] == [(0, 1), (2, 3)]
    lines = to_ctm("utt1", [(s[2], s[3]) for s in spans], ["w1", "w2"], 0.01)
    assert lines[0].startswith("utt1 1 ") and lines[1].endswith(" w2")


# --- bad inputs ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(beam_width=0), "beam_width"), (dict(beam_width=-3), "beam_width"),
    (dict(beam_width=2.5), "beam_width"), (dict(beam_width=True), "beam_width"),
    (dict(nbest=5, beam_width=4), "nbest"), (dict(top_k=0), "top_k"),
    (dict(blank=4), "blank"), (dict(lengths=[5, 11]), "lengths"),
    (dict(lengths=[5]), "lengths"), (dict(alpha=np.nan), "alpha"),
    (dict(beam_threshold=-1.0), "beam_threshold"), (dict(prune_threshold=np.nan),
                                                    "prune_threshold"),
    (dict(lm="model.arpa"), "lm must be"),
])
def test_beam_search_bad_arguments(kwargs, match):
    lp = random_lp(np.random.default_rng(0), 10, 2, 4)
    with pytest.raises(ValueError, match=match):
        beam_search(lp, **kwargs)


def test_bad_log_probs_and_lm_mismatch(word_lm):
    with pytest.raises(ValueError, match="log_probs"):
        greedy_decode(np.zeros((4, 2), np.float64))
    with pytest.raises(ValueError, match="log_probs"):
        beam_search(np.zeros((4, 2, 3), np.int64))
    lp = random_lp(np.random.default_rng(0), 10, 2, 4)
    lp[7, 1, 2] = np.nan
    for call in (lambda: greedy_decode(lp), lambda: beam_search(lp),
                 lambda: forced_align(lp, [[1], [1]], [10, 10], [1, 1])):
        with pytest.raises(ValueError, match="NaN at frame 7 of sequence 1"):
            call()
    assert beam_search(lp, [10, 7])[1]                      # NaN past the length: fine
    lp = random_lp(np.random.default_rng(0), 10, 1, 4)
    lm = train_token_lm([[1, 2]], 5)
    with pytest.raises(ValueError, match="C = 5"):
        beam_search(lp, lm=lm)
    with pytest.raises(ValueError, match="WordLM"):
        beam_search(lp, lm=word_lm)
    with pytest.raises(ValueError, match="tokens"):
        beam_search(lp, lm=WordLM(word_lm, ["_", " ", "a"]))


def test_forced_align_bad_inputs():
    lp = random_lp(np.random.default_rng(0), 5, 2, 4)
    with pytest.raises(ValueError, match=r"sequence 1 needs at least 6 frames"):
        forced_align(lp, [[1, 2, 0, 0], [1, 1, 2, 2]], [5, 5], [2, 4])
    with pytest.raises(ValueError, match=r"sequence 0 needs at least 5 frames \(4 labels \+ 1 blanks"):
        forced_align(lp, [[1, 2, 3, 3], [1, 1, 2, 2]], [3, 5], [4, 1])
    with pytest.raises(ValueError, match="blank label"):
        forced_align(lp, [[1, 0], [1, 2]], [5, 5], [2, 2])
    with pytest.raises(ValueError, match="outside"):
        forced_align(lp, [[1, 7], [1, 2]], [5, 5], [2, 2])
    with pytest.raises(ValueError, match="input_lengths"):
        forced_align(lp, [[1, 2], [1, 2]], [6, 5], [2, 2])
    with pytest.raises(ValueError, match="target_lengths"):
        forced_align(lp, [[1, 2], [1, 2]], [5, 5], [3, 2])
