"""Training examples from a Kaldi-style data directory and its features."""
from __future__ import annotations

import os

import numpy as np

from .datadir import read_table
from .errors import DataError
from .extract import FeatureStore
from .train import Example, make_batches

__all__ = ["BLANK_SYMBOL", "vocabulary_from_texts", "load_examples", "read_text",
           "length_batches", "padded_batches"]

BLANK_SYMBOL = "<blk>"


def read_text(path):
    """``utt tok tok ...`` lines -> {utt: [tok, ...]}."""
    return {utt: value.split() for utt, value in read_table(path).items()}


def vocabulary_from_texts(texts, symbols_file=None):
    """Class list: the blank first, then the symbols.

    Parameters
    ----------
    texts : iterable of dict[str, list[str]]
        Transcripts whose symbols are collected (sorted) when no
        ``symbols_file`` is given.
    symbols_file : str, optional
        One symbol per line (first field), e.g. a corpus's ``phones.txt``;
        fixes the inventory and its order.
    """
    if symbols_file:
        with open(symbols_file, encoding="utf-8") as f:
            try:
                symbols = [line.split()[0] for line in f
                           if line.strip() and not line.startswith("#")]
            except UnicodeDecodeError:
                raise DataError(f"{symbols_file}: not UTF-8 text; expected one symbol per "
                                f"line") from None
        if len(set(symbols)) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise DataError(f"{symbols_file}: symbol(s) listed more than once: {dup[:10]}")
    else:
        symbols = sorted({tok for text in texts for toks in text.values() for tok in toks})
    if BLANK_SYMBOL in symbols:
        symbols.remove(BLANK_SYMBOL)
    if not symbols:
        raise DataError(f"{symbols_file or 'the transcripts'}: no symbols (empty "
                        f"transcripts?)")
    return [BLANK_SYMBOL] + symbols


def load_examples(data_dir, feats_dir, vocabulary, normalizer=None, text_name="text.phn"):
    """Examples for every utterance that has both features and a transcript.

    Parameters
    ----------
    data_dir : str
        Kaldi-style data directory holding ``text_name`` and ``utt2spk``.
    feats_dir : str
        Feature directory from :func:`ctcseq.extract.extract_corpus`.
    vocabulary : list of str
        Class symbols (index 0 the blank).
    normalizer : ctcseq.features.Normalizer, optional
        Applied with each utterance's speaker.
    text_name : str
        Transcript file inside data_dir (``text.phn`` phones, ``text.chr``
        characters, ``text`` words).

    Returns
    -------
    examples : list of Example
    skipped : list of str
        Utterances without features (e.g. unreadable audio).

    Raises
    ------
    ctcseq.errors.DataError (a ValueError)
        A transcript holds a symbol that is not in the vocabulary, or a
        feature file is unusable.
    """
    text = read_text(os.path.join(data_dir, text_name))
    utt2spk = read_table(os.path.join(data_dir, "utt2spk"))
    store = FeatureStore(feats_dir)
    index = {s: i for i, s in enumerate(vocabulary)}
    examples, skipped = [], []
    for utt in sorted(text):
        if utt not in store:
            skipped.append(utt)
            continue
        unknown = [t for t in text[utt] if t not in index or t == BLANK_SYMBOL]
        if unknown:
            raise DataError(f"{data_dir}/{text_name}: utterance {utt} has symbol(s) "
                            f"{sorted(set(unknown))} that are not in the vocabulary")
        feats = store[utt]
        if normalizer is not None:
            feats = normalizer(feats, utt2spk.get(utt))
        examples.append(Example(utt, feats, np.array([index[t] for t in text[utt]], np.int64)))
    return examples, skipped


def length_batches(lengths, batch_frames=20000):
    """Batches of similar length for inference: always the same batches.

    Parameters
    ----------
    lengths : sequence of int, shape (N,)
        Frames of each sequence.
    batch_frames : int
        A batch holds at most this many padded frames (longest x count); a
        longer sequence gets a batch of its own.

    Returns
    -------
    list of ndarray of int
        Indices into ``lengths``, one array per batch; every index once.
    """
    if int(batch_frames) < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    # the training bucketing with a fixed seed: ties and batch order never vary
    return make_batches(np.asarray(lengths, dtype=np.int64), int(batch_frames),
                        np.random.default_rng(0))


def padded_batches(items, dtype, batch_frames=20000):
    """Zero-padded, time-major batches of arrays of similar length.

    Parameters
    ----------
    items : list of (key, ndarray of shape (T_i, D))
    dtype : numpy dtype of the batches
    batch_frames : int
        See :func:`length_batches`.

    Yields
    ------
    keys : list
        The keys of the batch's items.
    x : ndarray, shape (T, n, D)
        The items, zero past each length (T the longest).
    lengths : ndarray of int, shape (n,)
    """
    items = list(items)
    for idx in length_batches([a.shape[0] for _, a in items], batch_frames):
        batch = [items[i] for i in idx]
        lengths = np.array([a.shape[0] for _, a in batch])
        x = np.zeros((lengths.max(), len(batch), batch[0][1].shape[1]), dtype)
        for n, (_, a) in enumerate(batch):
            x[:lengths[n], n] = a
        yield [k for k, _ in batch], x, lengths
