"""CTC prefix beam search: ctcseq (Numba, CPU) against pyctcdecode (pure Python).

Side by side in one run, on the same synthetic log-probabilities: T = 500
frames, 29 symbols (blank, space, a-z, apostrophe), utterances spelling
English sentences with noisy frame posteriors.  Both decoders use the same
pruning: tokens below log-probability -5 are not tried (``token_min_logp``),
beams more than 10 nats below the best are dropped (``beam_prune_logp``).

The word LM is a Kneser-Ney trigram trained by ctcseq on the English text of
Python's own documentation (``pydoc_data``), written as an ARPA file, read by
KenLM for pyctcdecode and by ``ctcseq.lm.read_arpa`` for ctcseq.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_decode.py
"""
import argparse
import math
import os
import re
import tempfile
import time

import numba
import numpy as np

from ctcseq.decode import beam_search
from ctcseq.lm import WordLM, read_arpa, train_token_lm

LABELS = [""] + [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]
TOKENS = ["<blank>"] + LABELS[1:]


def corpus():
    """Sentences (lists of words) from Python's bundled documentation."""
    from pydoc_data.topics import topics
    text = " ".join(topics.values()).lower()
    sents = []
    for s in re.split(r"[.!?\n]+", text):
        words = re.findall(r"[a-z']+", s)
        words = [w.strip("'") for w in words if w.strip("'")]
        if len(words) >= 3:
            sents.append(words)
    return sents


def write_word_arpa(sents, path, order=3):
    """Train a word KN model with ctcseq's trainer (words as 'classes')."""
    vocab = sorted({w for s in sents for w in s})
    wid = {w: i + 1 for i, w in enumerate(vocab)}          # 0 plays the blank
    lm = train_token_lm([[wid[w] for w in s] for s in sents], len(vocab) + 1, order=order)
    names = ["<blank>"] + vocab + ["</s>", "<s>"]
    lm.write_arpa(path, names)
    return len(vocab)


def utterances(sents, n, T, rng, noise=1.0, peak=4.5):
    """(T, n, C) float32 log-probs spelling random sentences, 2-4 frames per
    character plus blanks, logits = peak * one-hot + noise."""
    C = len(LABELS)
    idx = {ch: i for i, ch in enumerate(LABELS)}
    lp = np.empty((T, n, C), np.float32)
    for j in range(n):
        frames = []
        while len(frames) < T:
            s = sents[rng.integers(len(sents))]
            for ch in " ".join(s) + " ":
                frames += [idx[ch]] * int(rng.integers(1, 3)) + [0] * int(rng.integers(0, 3))
        lab = np.array(frames[:T])
        x = noise * rng.standard_normal((T, C))
        x[np.arange(T), lab] += peak
        x -= x.max(1, keepdims=True)
        lp[:, j] = x - np.log(np.exp(x).sum(1, keepdims=True))
    return lp


def edit_distance(a, b):
    """Levenshtein distance between two strings."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def text_of(tokens):
    return "".join(LABELS[t] for t in tokens).strip()


def time_per_utt(fn, items, repeats):
    """Seconds per item: the best of ``repeats`` runs of each item, averaged
    over the items (the best run is the one least disturbed by other jobs)."""
    fn(items[0])                                   # warm-up / JIT
    per = []
    for it in items:
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(it)
            ts.append(time.perf_counter() - t0)
        per.append(min(ts))
    return float(np.mean(per))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--utts", type=int, default=8, help="utterances timed one by one")
    ap.add_argument("--batch", type=int, default=64, help="utterances in the batch run")
    ap.add_argument("--beams", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=1.0)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    from pyctcdecode import build_ctcdecoder
    rng = np.random.default_rng(0)
    sents = corpus()
    T = 500
    lp = utterances(sents, max(args.utts, args.batch), T, rng)
    one = [lp[:, j:j + 1] for j in range(args.utts)]
    print(f"T = {T}, C = {len(LABELS)}, {args.utts} utterances timed one by one on one "
          f"thread each, batch of {args.batch} on {args.threads} threads; both with "
          "token_min_logp = prune_threshold = -5, beam_prune_logp = -beam_threshold = -10")
    with tempfile.TemporaryDirectory() as d:
        arpa = os.path.join(d, "words.arpa")
        t0 = time.perf_counter()
        V = write_word_arpa(sents, arpa)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        word = read_arpa(arpa)
        t_read = time.perf_counter() - t0
        n_grams = sum(len(lp) for _, lp, _ in word.grams)
        print(f"word trigram: {V} words, {n_grams} n-grams; trained in "
              f"{t_train:.1f} s, read_arpa in {t_read:.2f} s")
        wlm = WordLM(word, TOKENS, word_delimiter=" ")
        py_plain = build_ctcdecoder(LABELS)
        py_lm = build_ctcdecoder(LABELS, kenlm_model_path=arpa, alpha=args.alpha,
                                 beta=args.beta)
        print(f"\n{'LM':<6} {'beam':>5} {'pyctcdecode ms/utt':>19} {'ctcseq ms/utt':>14} "
              f"{'speed-up':>9} {'ctcseq batch utt/s':>19} {'outputs differ':>15}")
        for use_lm in (False, True):
            py = py_lm if use_lm else py_plain
            lm = wlm if use_lm else None
            for beam in args.beams:
                kw = dict(beam_width=beam, prune_threshold=-5.0, beam_threshold=10.0, lm=lm,
                          alpha=args.alpha, beta=args.beta)

                def ours(x):
                    return beam_search(x, **kw)[0][0].tokens

                def theirs(x):
                    return py.decode(x[:, 0], beam_width=beam, beam_prune_logp=-10.0,
                                     token_min_logp=-5.0)

                n_py = max(2, args.utts // (1 if beam <= 16 else 4))
                t_py = time_per_utt(theirs, one[:n_py], repeats=2 if beam <= 16 else 1)
                numba.set_num_threads(1)           # one utterance, one thread each
                t_us = time_per_utt(ours, one, repeats=5)
                numba.set_num_threads(args.threads)
                # character disagreement between the two outputs
                pairs = [(text_of(ours(x)), " ".join(theirs(x).split())) for x in one[:n_py]]
                diff = (sum(edit_distance(a, b) for a, b in pairs)
                        / max(1, sum(len(b) for _, b in pairs)))
                batch = lp[:, :args.batch]
                beam_search(batch, **kw)
                best = math.inf
                for _ in range(3):
                    t0 = time.perf_counter()
                    beam_search(batch, **kw)
                    best = min(best, time.perf_counter() - t0)
                thr = args.batch / best
                print(f"{'word' if use_lm else 'none':<6} {beam:>5} {1e3 * t_py:>19.1f} "
                      f"{1e3 * t_us:>14.2f} {t_py / t_us:>8.0f}x {thr:>19.0f} "
                      f"{diff:>14.2%}")


if __name__ == "__main__":
    main()
