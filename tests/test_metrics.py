"""Error rates, alignment and TIMIT folding."""
import itertools

import numpy as np
import pytest

from ctcseq.metrics import (ErrorCounts, align, alignment_picture, error_rate, fold, score,
                            timit_fold_map)


def brute_distance(a, b):
    # independent reference: classic recursion with memo
    from functools import lru_cache

    @lru_cache(None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j - 1) + (a[i - 1] != b[j - 1]), d(i - 1, j) + 1, d(i, j - 1) + 1)
    return d(len(a), len(b))


def test_counts_on_a_known_case():
    pairs, c = align("a b c d".split(), "a x c d e".split())
    assert (c.sub, c.dele, c.ins, c.ref_len) == (1, 0, 1, 4)
    assert pairs == [("a", "a"), ("b", "x"), ("c", "c"), ("d", "d"), (None, "e")]
    _, c = align("a b c".split(), [])
    assert (c.sub, c.dele, c.ins) == (0, 3, 0) and c.rate == 1.0
    _, c = align([], ["z"])
    assert c.ins == 1 and np.isnan(c.rate)


def test_alignment_is_minimal_and_consistent():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = list(rng.integers(0, 3, rng.integers(0, 7)))
        b = list(rng.integers(0, 3, rng.integers(0, 7)))
        pairs, c = align(a, b)
        assert c.errors == brute_distance(tuple(a), tuple(b))
        assert [r for r, _ in pairs if r is not None] == a
        assert [h for _, h in pairs if h is not None] == b


def test_corpus_rate_pools_edits():
    assert error_rate([["a", "b"], ["c", "d", "e", "f"]], [["a", "x"], ["c", "d", "e", "f"]]) == 1 / 6
    with pytest.raises(ValueError, match="differ in length"):
        error_rate([["a"]], [])


def test_score_requires_every_hypothesis():
    refs = {"u1": ["a", "b"], "u2": ["c"]}
    total, per = score(refs, {"u1": ["a"], "u2": ["c"]})
    assert total.errors == 1 and per["u1"].dele == 1
    with pytest.raises(ValueError, match="no hypothesis for 1"):
        score(refs, {"u1": ["a"]})
    with pytest.raises(ValueError, match="not in the references"):
        score(refs, {"u1": ["a"], "u2": ["c"], "u3": []})


def test_timit_folding():
    m39, m48 = timit_fold_map(39), timit_fold_map(48)
    sixty_one = [k for k in m39 if k != "q"]
    assert len({m39[p] for p in sixty_one if p in m48}) == 39
    assert len({m48[p] for p in m48 if m48[p] is not None}) == 48
    assert m39["q"] is None and m39["ao"] == "aa" and m39["pcl"] == "sil" and m39["ix"] == "ih"
    assert fold(["h#", "q", "ao", "pau"], m39) == ["sil", "aa", "sil"]
    total, _ = score({"u": ["ao", "ix", "q"]}, {"u": ["aa", "ih"]}, fold_map=m39)
    assert total.errors == 0 and total.ref_len == 2
    with pytest.raises(ValueError, match="not in the fold map"):
        fold(["xyz"], m39)


def test_alignment_picture_marks_edits():
    pic = alignment_picture("a b c".split(), "a x c d".split())
    lines = pic.splitlines()
    assert lines[0].startswith("REF: a b c") and lines[1].startswith("HYP: a x c d")
    assert lines[2].split() == ["S", "I"]


def test_error_counts_add():
    assert (ErrorCounts(1, 2, 3, 10) + ErrorCounts(1, 0, 0, 5)).rate == 7 / 15
