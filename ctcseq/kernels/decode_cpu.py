"""CTC decoding kernels on the CPU (Numba): greedy, prefix beam search with
shallow-fusion n-gram language models, and Viterbi forced alignment.

All kernels take and fill plain arrays (no Python objects, no callbacks), one
sequence per ``prange`` step, so that a ``numba.cuda`` twin can keep the same
signatures.  Scores are natural-log probabilities in float64.

Hash tables are open-addressing arrays of int64 keys (-1 = empty slot) whose
size is a power of two; a key's value sits in a parallel array at the slot
that :func:`find_slot` returns.  The n-gram model is stored in back-off (ARPA)
form: contexts form a trie keyed by ``ctx_id * V + word`` built from the most
recent word backwards (root context 0), with a back-off weight per context;
n-gram probabilities are keyed by ``ctx_id * V + word``.
"""
import math

import numpy as np
from numba import njit, prange

_NEG_INF = -np.inf
_LN2 = math.log(2.0)
_JIT = dict(cache=True, error_model="numpy")

LM_NONE = 0
LM_TOKEN = 1
LM_WORD = 2


# --- hash tables -------------------------------------------------------------

@njit(inline="always", **_JIT)
def _hash(key, mask):
    # Fibonacci-style mixing; int64 products wrap, the mask keeps it >= 0.
    h = key * 2654435761
    return (h ^ (h >> 29)) & mask


@njit(inline="always", **_JIT)
def _probe(keys, key):
    """Slot holding ``key``, or the empty slot (-1) where it would go."""
    mask = keys.shape[0] - 1
    i = _hash(key, mask)
    while keys[i] != key and keys[i] != -1:
        i = (i + 1) & mask
    return i


@njit(**_JIT)
def find_slot(keys, key):
    """Slot of ``key`` in the table ``keys``, or -1 if absent."""
    i = _probe(keys, key)
    return i if keys[i] == key else -1


@njit(**_JIT)
def _insert(keys, key):
    """Slot of ``key``, inserting it if absent (the table must have room)."""
    i = _probe(keys, key)
    keys[i] = key
    return i


@njit(inline="always", **_JIT)
def _pow2_at_least(n):
    c = 8
    while c < n:
        c *= 2
    return c


@njit(**_JIT)
def build_table(keys_in):
    """Hash table holding ``keys_in`` (int64, >= 0) at load factor <= 1/2.

    Returns (keys, slots): the table and the slot of each input key, so that
    the caller can scatter values into parallel arrays.
    """
    n = keys_in.shape[0]
    keys = np.full(_pow2_at_least(2 * n + 2), -1, np.int64)
    slots = np.empty(n, np.int64)
    for j in range(n):
        slots[j] = _insert(keys, keys_in[j])
    return keys, slots


# --- n-gram scoring ------------------------------------------------------------

@njit(**_JIT)
def ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V, unk_logp,
               hist, hlen, w):
    """Natural-log P(w | hist[:hlen]) of a back-off n-gram model.

    ``hist`` holds word ids, most recent last.  Walks the context trie from
    the most recent word back; the answer is the probability stored with the
    longest context c_j for which (c_j, w) exists, plus the back-off weights
    of the longer contexts that do exist.
    """
    s = find_slot(prob_keys, w)          # unigram: context 0
    if s < 0:
        return unk_logp
    best = prob_vals[s]
    acc = 0.0
    ctx = 0
    for j in range(hlen):
        cs = find_slot(ctx_keys, ctx * V + hist[hlen - 1 - j])
        if cs < 0:
            break
        ctx = ctx_child[cs]
        acc += ctx_bow[ctx]
        s = find_slot(prob_keys, ctx * V + w)
        if s >= 0:
            best = prob_vals[s]
            acc = 0.0
    return best + acc


@njit(**_JIT)
def ngram_logp_batch(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V, unk_logp,
                     hists, hlens, words, out):
    """``out[i] = ngram_logp(..., hists[i], hlens[i], words[i])``."""
    for i in range(words.shape[0]):
        out[i] = ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V,
                            unk_logp, hists[i], hlens[i], words[i])


# --- greedy --------------------------------------------------------------------

@njit(parallel=True, **_JIT)
def greedy(lp, lengths, blank, out_tokens, out_start, out_end, out_len, out_score):
    """Best path: argmax per frame, merge repeats, drop blanks.

    out_tokens, out_start, out_end : (N, T) int64, filled up to out_len[n];
    start/end are the first and one-past-last frame of each token's run.
    out_score : (N,) float64, log-probability of the best path.
    """
    N = lp.shape[1]
    C = lp.shape[2]
    for n in prange(N):
        prev = -1
        k = 0
        score = 0.0
        for t in range(lengths[n]):
            best = 0
            bv = lp[t, n, 0]
            for c in range(1, C):
                v = lp[t, n, c]
                if v > bv:
                    bv = v
                    best = c
            score += bv
            if best != prev:
                if k > 0 and out_end[n, k - 1] < 0:
                    out_end[n, k - 1] = t
                if best != blank:
                    out_tokens[n, k] = best
                    out_start[n, k] = t
                    out_end[n, k] = -1
                    k += 1
            prev = best
        if k > 0 and out_end[n, k - 1] < 0:
            out_end[n, k - 1] = lengths[n]
        out_len[n] = k
        out_score[n] = score


# --- prefix beam search ---------------------------------------------------------

@njit(inline="always", **_JIT)
def _lae(a, b):
    """log(exp(a) + exp(b))."""
    if a < b:
        a, b = b, a
    if b == _NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@njit(**_JIT)
def _lm_step(mode, alpha, beta, ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V,
             unk_logp, unk_word, lex_keys, lex_child, lex_word, delim, constrain, oov_pen, C,
             hist, hlen, lex, c):
    """Shallow-fusion score of appending token c to a prefix in LM state
    (hist[:hlen], lex).  Returns (delta, new_lex, word): delta is added to
    the prefix's LM score (-inf forbids the extension), word >= 0 is a word
    (or token) to push onto the history."""
    if mode == LM_TOKEN:
        lpw = ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V, unk_logp,
                         hist, hlen, c)
        return alpha * lpw + beta, 0, c
    # word LM: lex is the lexicon-trie node of the word being spelt (0: none
    # started, -2: spelling no word of the lexicon, unconstrained mode only)
    if c == delim:
        if lex == 0:
            return 0.0, 0, -1
        w = unk_word
        if lex > 0:
            w = lex_word[lex]
        if w < 0:
            if constrain:
                return _NEG_INF, 0, -1
            w = unk_word
        lpw = ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V, unk_logp,
                         hist, hlen, w)
        # the word's score replaces the penalty its spelling carried
        return alpha * lpw + beta - (oov_pen if lex == -2 else 0.0), 0, w
    if lex == -2:
        return 0.0, -2, -1
    s = find_slot(lex_keys, lex * C + c)
    if s < 0:
        if constrain:
            return _NEG_INF, 0, -1
        return oov_pen, -2, -1
    return 0.0, lex_child[s], -1


@njit(**_JIT)
def _lm_final(mode, alpha, beta, ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V,
              unk_logp, unk_word, lex_keys, lex_child, lex_word, delim, constrain, oov_pen, C,
              eos, hist, hlen, order, lex):
    """LM score added at the end of the utterance: the word being spelt (word
    LM) then the end-of-sentence symbol."""
    total = 0.0
    h = hist.copy()
    n = hlen
    if mode == LM_WORD and lex != 0:
        d, _, w = _lm_step(mode, alpha, beta, ctx_keys, ctx_child, ctx_bow, prob_keys,
                           prob_vals, V, unk_logp, unk_word, lex_keys, lex_child, lex_word,
                           delim, constrain, oov_pen, C, h, n, lex, delim)
        if d == _NEG_INF:
            return _NEG_INF
        total += d
        n = _push(h, n, w, order - 1)
    lpw = ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals, V, unk_logp,
                     h, n, eos)
    return total + alpha * lpw


@njit(inline="always", **_JIT)
def _push(h, n, w, H):
    """Append w to the history h[:n], keeping the last H entries."""
    if H <= 0:
        return 0
    if n < H:
        h[n] = w
        return n + 1
    for i in range(H - 1):
        h[i] = h[i + 1]
    h[H - 1] = w
    return H


@njit(**_JIT)
def _select_top(score, idx, n, k):
    """Reorder idx[:n] so that idx[:k] index the k largest score[idx[.]]
    (Hoare quickselect, in place, no allocation)."""
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = score[idx[(lo + hi) // 2]]
        i = lo
        j = hi
        while i <= j:
            while score[idx[i]] > pivot:
                i += 1
            while score[idx[j]] < pivot:
                j -= 1
            if i <= j:
                tmp = idx[i]
                idx[i] = idx[j]
                idx[j] = tmp
                i += 1
                j -= 1
        if k - 1 <= j:
            hi = j
        elif k - 1 >= i:
            lo = i
        else:
            break


@njit(**_JIT)
def _search_one(lp, T, blank, beam, prune_thr, top_k, beam_thr, nbest,
                mode, alpha, beta, order, V, bos, eos, unk_logp, unk_word,
                ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals,
                lex_keys, lex_child, lex_word, delim, constrain, oov_pen,
                out_tokens, out_frames, out_len, out_score, out_ac):
    C = lp.shape[1]
    H = max(order - 1, 1)
    # word LM without a delimiter token: word ends are virtual tokens WB = C
    # in the prefix trie, taken without a frame (Graves's token passing)
    implicit = mode == LM_WORD and delim < 0
    WB = C
    # prefix trie: every prefix ever kept is a node; (parent, token) -> node is
    # unique, so equal prefixes are equal node ids
    cap = T * beam * (2 if implicit else 1) + 1
    parent = np.empty(cap, np.int64)
    token = np.empty(cap, np.int64)
    rlast = np.empty(cap, np.int64)               # last real (non-WB) token
    frame = np.empty(cap, np.int64)
    depth = np.empty(cap, np.int64)
    lmsc = np.empty(cap, np.float64)
    hist = np.empty((cap, H), np.int64)
    hlen = np.empty(cap, np.int64)
    lex = np.empty(cap, np.int64)
    trie_keys = np.full(_pow2_at_least(2 * cap), -1, np.int64)
    trie_node = np.empty(trie_keys.shape[0], np.int64)
    parent[0] = -1
    token[0] = -1
    rlast[0] = -1
    frame[0] = -1
    depth[0] = 0
    lmsc[0] = 0.0
    hist[0, 0] = bos
    hlen[0] = 1 if (mode != LM_NONE and order > 1) else 0
    lex[0] = 0
    nodes = 1
    K = C + 2                                   # key = (parent + 1) * K + token + 1

    bnode = np.empty(beam, np.int64)
    bpb = np.empty(beam, np.float64)
    bpnb = np.empty(beam, np.float64)
    nb = 1
    bnode[0] = 0
    bpb[0] = 0.0
    bpnb[0] = _NEG_INF

    kmax = C if top_k <= 0 else min(top_k, C)
    M = beam * ((2 * kmax if implicit else kmax) + 1)
    cparent = np.empty(M, np.int64)
    ctoken = np.empty(M, np.int64)
    cnode = np.empty(M, np.int64)
    cpb = np.empty(M, np.float64)
    cpnb = np.empty(M, np.float64)
    cext = np.empty(M, np.float64)               # mass arriving by extension
    clm = np.empty(M, np.float64)
    cscore = np.empty(M, np.float64)
    cidx = np.empty(M, np.int64)
    cand_of = np.empty(cap, np.int64)             # candidate of a beam node ...
    cand_t = np.full(cap, -1, np.int64)           # ... valid in frame cand_t
    dcache = np.empty(cap, np.float64)            # word LM: score of ending the word
    dcache_t = np.zeros(cap, np.int64)            # 1 once dcache is set
    dword = np.empty(cap, np.int64)               # ... and the word it ends
    cnl = np.empty(M, np.int64)                   # new candidates' lexicon node ...
    cw = np.empty(M, np.int64)                    # ... and word (or token) pushed
    cwb = np.zeros(M, np.int64)                   # 1: close the parent's word first
    tcache = np.full((cap if mode == LM_TOKEN else 1, C), np.nan)   # token LM cache
    sel = np.empty(C, np.int64)
    tmp_h = np.empty(H, np.int64)

    for t in range(T):
        row = lp[t]
        # tokens to extend with: above the threshold, at most kmax, best first;
        # the frame's most probable class always qualifies
        amax = 0
        for c in range(1, C):
            if row[c] > row[amax]:
                amax = c
        ns = 0
        for c in range(C):
            if c != blank and (row[c] >= prune_thr or c == amax):
                sel[ns] = c
                ns += 1
        if ns > kmax:
            _select_top(row, sel, ns, kmax)
            ns = kmax
        # candidates 0 .. nb-1: the beam's prefixes themselves (a blank, or a
        # repeat of the last token merged into it)
        for i in range(nb):
            p = bnode[i]
            cand_of[p] = i
            cand_t[p] = t
            cparent[i] = parent[p]
            ctoken[i] = token[p]
            cnode[i] = p
            cpb[i] = bpb[i] + row[blank] if bpnb[i] == _NEG_INF else \
                _lae(bpb[i], bpnb[i]) + row[blank]
            cpnb[i] = bpnb[i] + row[rlast[p]] if rlast[p] >= 0 else _NEG_INF
            cext[i] = _NEG_INF
            clm[i] = lmsc[p]
        nc = nb
        # then the extensions; an extension that is a prefix in the beam (a
        # trie child stamped this frame) is merged into its candidate, any
        # other is new, since (parent, token) pairs are unique
        for i in range(nb):
            p = bnode[i]
            pb = bpb[i]
            tot = _lae(pb, bpnb[i])
            last = rlast[p]
            for q in range(ns):
                c = sel[q]
                contrib = (pb if c == last else tot) + row[c]
                if implicit and lex_word[lex[p]] >= 0:
                    root_c = find_slot(lex_keys, c)       # lexicon root is node 0
                    if root_c >= 0:
                        # end p's word, then start a new one with c
                        wts = find_slot(trie_keys, (p + 1) * K + WB + 1)
                        wbn = trie_node[wts] if wts >= 0 else -1
                        node2 = -1
                        if wbn >= 0:
                            ts2 = find_slot(trie_keys, (wbn + 1) * K + c + 1)
                            if ts2 >= 0:
                                node2 = trie_node[ts2]
                        if node2 >= 0 and cand_t[node2] == t:
                            j = cand_of[node2]
                            cpnb[j] = _lae(cpnb[j], contrib)
                            cext[j] = _lae(cext[j], contrib)
                        else:
                            if dcache_t[p] == 0:
                                dd, _, w = _lm_step(mode, alpha, beta, ctx_keys, ctx_child,
                                                    ctx_bow, prob_keys, prob_vals, V, unk_logp,
                                                    unk_word, lex_keys, lex_child, lex_word,
                                                    delim, constrain, oov_pen, C, hist[p],
                                                    hlen[p], lex[p], delim)
                                dcache[p] = dd
                                dword[p] = w
                                dcache_t[p] = 1
                            j = nc
                            nc += 1
                            cparent[j] = wbn if wbn >= 0 else p
                            cwb[j] = 1 if wbn < 0 else 0
                            ctoken[j] = c
                            cnode[j] = node2
                            cpb[j] = _NEG_INF
                            cpnb[j] = contrib
                            cext[j] = contrib
                            clm[j] = lmsc[node2] if node2 >= 0 else lmsc[p] + dcache[p]
                            cnl[j] = lex_child[root_c]
                            cw[j] = -1
                key = (p + 1) * K + c + 1
                ts = find_slot(trie_keys, key)
                node = trie_node[ts] if ts >= 0 else -1
                if node >= 0 and cand_t[node] == t:
                    j = cand_of[node]
                    cpnb[j] = _lae(cpnb[j], contrib)
                    cext[j] = _lae(cext[j], contrib)
                    continue
                if node >= 0:
                    d = lmsc[node]
                elif mode == LM_NONE:
                    d = 0.0
                elif mode == LM_WORD and c != delim:
                    # spelling on inside a word: a lexicon-trie step, no LM query
                    lx = lex[p]
                    cw[nc] = -1
                    if lx == -2:
                        d = lmsc[p]
                        cnl[nc] = -2
                    else:
                        ls = find_slot(lex_keys, lx * C + c)
                        if ls >= 0:
                            d = lmsc[p]
                            cnl[nc] = lex_child[ls]
                        elif constrain:
                            d = _NEG_INF
                        else:
                            d = lmsc[p] + oov_pen
                            cnl[nc] = -2
                elif mode == LM_TOKEN:
                    # token LM: log P(c | prefix) cached per prefix and token
                    v = tcache[p, c]
                    if v != v:
                        v = ngram_logp(ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals,
                                       V, unk_logp, hist[p], hlen[p], c)
                        tcache[p, c] = v
                    d = lmsc[p] + alpha * v + beta
                    cnl[nc] = 0
                    cw[nc] = c
                elif mode == LM_WORD and dcache_t[p] == 1:
                    # ending the word: its LM score is cached per prefix
                    d = lmsc[p] + dcache[p]
                    cnl[nc] = 0
                    cw[nc] = dword[p]
                else:
                    dd, nl, w = _lm_step(mode, alpha, beta, ctx_keys, ctx_child, ctx_bow,
                                         prob_keys, prob_vals, V, unk_logp, unk_word,
                                         lex_keys, lex_child, lex_word, delim, constrain,
                                         oov_pen, C, hist[p], hlen[p], lex[p], c)
                    if mode == LM_WORD:
                        dcache[p] = dd
                        dword[p] = w
                        dcache_t[p] = 1
                    d = lmsc[p] + dd
                    cnl[nc] = nl
                    cw[nc] = w
                if d == _NEG_INF:
                    continue
                j = nc
                nc += 1
                cparent[j] = p
                cwb[j] = 0
                ctoken[j] = c
                cnode[j] = node
                cpb[j] = _NEG_INF
                cpnb[j] = contrib
                cext[j] = contrib
                clm[j] = d
        # keep the `beam` best candidates (partial selection, no full sort)
        best = _NEG_INF
        for j in range(nc):
            sc = _lae(cpb[j], cpnb[j]) + clm[j]
            cscore[j] = sc
            cidx[j] = j
            if sc > best:
                best = sc
        keep = nc
        if nc > beam:
            _select_top(cscore, cidx, nc, beam)
            keep = beam
        nb = 0
        for r in range(keep):
            j = cidx[r]
            sc = cscore[j]
            if sc == _NEG_INF or sc < best - beam_thr:
                continue
            node = cnode[j]
            if node >= 0 and cext[j] > sc - clm[j] - _LN2:
                # most of the prefix's mass starts its last token here
                frame[node] = t
            if node < 0:
                p = cparent[j]
                c = ctoken[j]
                if cwb[j] == 1:
                    # p's word-end node (another candidate may have made it)
                    wts = find_slot(trie_keys, (p + 1) * K + WB + 1)
                    if wts >= 0:
                        p = trie_node[wts]
                    else:
                        wb = nodes
                        nodes += 1
                        parent[wb] = p
                        token[wb] = WB
                        rlast[wb] = rlast[p]
                        frame[wb] = frame[p]
                        depth[wb] = depth[p]
                        lmsc[wb] = lmsc[p] + dcache[p]
                        for a in range(hlen[p]):
                            hist[wb, a] = hist[p, a]
                        hlen[wb] = _push(hist[wb], hlen[p], dword[p], order - 1)
                        lex[wb] = 0
                        dcache_t[wb] = 0
                        trie_node[_insert(trie_keys, (p + 1) * K + WB + 1)] = wb
                        p = wb
                node = nodes
                nodes += 1
                parent[node] = p
                token[node] = c
                rlast[node] = c
                frame[node] = t
                depth[node] = depth[p] + 1
                lmsc[node] = clm[j]
                n_h = hlen[p]
                for a in range(n_h):
                    hist[node, a] = hist[p, a]
                lex[node] = 0
                if mode != LM_NONE:
                    lex[node] = cnl[j]
                    dcache_t[node] = 0
                    if cw[j] >= 0:
                        n_h = _push(hist[node], n_h, cw[j], order - 1)
                hlen[node] = n_h
                ts = _insert(trie_keys, (p + 1) * K + c + 1)
                trie_node[ts] = node
            bnode[nb] = node
            bpb[nb] = cpb[j]
            bpnb[nb] = cpnb[j]
            nb += 1

    # end of utterance: LM end terms, then rank
    fin = np.empty(nb, np.float64)
    for i in range(nb):
        p = bnode[i]
        fin[i] = _lae(bpb[i], bpnb[i]) + lmsc[p]
        if mode != LM_NONE:
            for a in range(hlen[p]):
                tmp_h[a] = hist[p, a]
            fin[i] += _lm_final(mode, alpha, beta, ctx_keys, ctx_child, ctx_bow, prob_keys,
                                prob_vals, V, unk_logp, unk_word, lex_keys, lex_child,
                                lex_word, delim, constrain, oov_pen, C, eos, tmp_h, hlen[p], order,
                                lex[p])
    idx = np.argsort(-fin, kind="mergesort")
    k = 0
    for r in range(min(nbest, nb)):
        i = idx[r]
        # -inf: no way to end this prefix.  With a lexicon constraint that means
        # it stops inside a word, which is no answer; otherwise the best is
        # still returned (all paths impossible acoustically, say)
        if fin[i] == _NEG_INF and (k > 0 or constrain):
            break
        p = bnode[i]
        d = depth[p]
        out_len[k] = d
        out_score[k] = fin[i]
        out_ac[k] = _lae(bpb[i], bpnb[i])
        q = p
        nxt = T
        for a in range(d - 1, -1, -1):
            while token[q] == WB:
                q = parent[q]
            out_tokens[k, a] = token[q]
            # frames of shared prefixes may have moved on; keep them ordered
            nxt = min(frame[q], nxt)
            out_frames[k, a] = nxt
            q = parent[q]
        k += 1
    return k


@njit(parallel=True, **_JIT)
def prefix_beam_search(lp, lengths, blank, beam, prune_thr, top_k, beam_thr, nbest,
                       mode, alpha, beta, order, V, bos, eos, unk_logp, unk_word,
                       ctx_keys, ctx_child, ctx_bow, prob_keys, prob_vals,
                       lex_keys, lex_child, lex_word, delim, constrain, oov_pen,
                       out_tokens, out_frames, out_len, out_score, out_ac, out_count):
    """CTC prefix beam search (Hannun et al., 2014) over a batch.

    Parameters
    ----------
    lp : (T, N, C) float32/float64 log-probabilities.
    lengths : (N,) int64 valid frames.
    beam, nbest : beam width and hypotheses returned (nbest <= beam).
    prune_thr : a token is tried at a frame only if its log-probability there
        is >= prune_thr (the frame's best class always is); top_k (<= 0: all)
        caps the tokens tried per frame.
    beam_thr : candidates scoring more than beam_thr below the frame's best
        are dropped (inf: off).
    mode : LM_NONE, LM_TOKEN or LM_WORD, with the n-gram tables and, for
        LM_WORD, the lexicon trie (lex_keys, lex_child, lex_word), the word
        delimiter token (-1: none, words end wherever the lexicon allows),
        whether to forbid words outside the lexicon and otherwise the score
        (oov_pen) a prefix carries while the word it is spelling has left the
        lexicon.
    out_tokens, out_frames : (N, nbest, T) int64; out_len, out_count (N,)
    and (N, nbest) int64; out_score, out_ac : (N, nbest) float64 total and
    acoustic (CTC prefix) log-scores.
    """
    N = lp.shape[1]
    for n in prange(N):
        out_count[n] = _search_one(lp[:, n, :], lengths[n], blank, beam, prune_thr, top_k,
                               beam_thr, nbest, mode, alpha, beta, order, V, bos, eos,
                               unk_logp, unk_word, ctx_keys, ctx_child, ctx_bow, prob_keys,
                               prob_vals, lex_keys, lex_child, lex_word, delim, constrain,
                               oov_pen, out_tokens[n], out_frames[n], out_len[n], out_score[n],
                               out_ac[n])


# --- Viterbi forced alignment -----------------------------------------------------

@njit(parallel=True, **_JIT)
def viterbi_align(lp, targets, offsets, il, tl, blank, out_start, out_end, out_score):
    """Most probable CTC path that collapses to each target.

    targets : concatenated labels, sequence n at offsets[n] : offsets[n] + tl[n].
    out_start, out_end : (N, S) int64, first and one-past-last frame of each
    target token on the best path.  out_score : (N,) float64 path
    log-probability (-inf if infeasible).
    """
    N = lp.shape[1]
    for n in prange(N):
        T = il[n]
        S = tl[n]
        L = 2 * S + 1
        off = offsets[n]
        if T == 0:
            out_score[n] = 0.0 if S == 0 else _NEG_INF
            continue
        ext = np.empty(L, np.int64)
        for s in range(L):
            ext[s] = blank if s % 2 == 0 else targets[off + s // 2]
        delta = np.full((T, L), _NEG_INF)
        back = np.zeros((T, L), np.int8)
        delta[0, 0] = lp[0, n, blank]
        if L > 1:
            delta[0, 1] = lp[0, n, ext[1]]
        for t in range(1, T):
            for s in range(L):
                b = delta[t - 1, s]
                arg = 0
                if s >= 1 and delta[t - 1, s - 1] > b:
                    b = delta[t - 1, s - 1]
                    arg = 1
                if s >= 2 and s % 2 == 1 and ext[s] != ext[s - 2] and delta[t - 1, s - 2] > b:
                    b = delta[t - 1, s - 2]
                    arg = 2
                if b != _NEG_INF:
                    delta[t, s] = b + lp[t, n, ext[s]]
                    back[t, s] = arg
        s = L - 1
        if L > 1 and delta[T - 1, L - 2] > delta[T - 1, L - 1]:
            s = L - 2
        out_score[n] = delta[T - 1, s]
        if out_score[n] == _NEG_INF:
            continue
        for k in range(S):
            out_start[n, k] = -1
        for t in range(T - 1, -1, -1):
            if s % 2 == 1:
                k = s // 2
                if out_start[n, k] == -1:       # last frame of token k
                    out_end[n, k] = t + 1
                out_start[n, k] = t
            if t > 0:
                s -= back[t, s]
