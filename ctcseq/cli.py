"""The ``ctcseq`` command line: prepare, features, train, forward, decode,
align, eval.

User errors (a missing file, a bad setting, malformed data: a
:class:`ctcseq.errors.CtcseqError`, or a missing or unreadable file the user
named) end with a one-line message on stderr and exit status 2.  Anything
else is a bug and shows its traceback; ``ctcseq --debug COMMAND ...`` shows
the traceback of user errors too.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .errors import CtcseqError, DataError, UserError

EXIT_USAGE = 2

# OSErrors that mean "the file the user named is not there / not usable"
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


# -- prepare -------------------------------------------------------------------

def cmd_prepare(args, rest):
    if args.corpus not in ("synth", "timit", "librispeech", "folder"):
        raise UserError(f"unknown corpus {args.corpus!r}")
    import importlib
    builder = importlib.import_module(f"data_prep.{args.corpus}")
    # each builder parses its own options and, by its documented contract,
    # raises ValueError for bad arguments and bad corpus files (as its own
    # 'python -m data_prep.X' entry point reports them): one line here too
    try:
        return builder.main(rest)
    except ValueError as e:
        if isinstance(e, CtcseqError):
            raise
        raise UserError(str(e)) from e


# -- features ------------------------------------------------------------------

def _feature_config(args):
    from .features import FeatureConfig
    # FeatureConfig checks its settings with plain ValueErrors: here they are
    # the user's options or --config file
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"--config {args.config}: not a JSON file ({e})") from None
        if not isinstance(d, dict):
            raise DataError(f"--config {args.config}: expected a JSON object of settings")
        try:
            return FeatureConfig.from_dict(d)
        except (TypeError, ValueError) as e:
            raise DataError(f"--config {args.config}: {e}") from None
    try:
        return FeatureConfig(kind=args.kind, sample_rate=args.sample_rate, n_mels=args.n_mels,
                             n_mfcc=args.n_mfcc, energy=not args.no_energy,
                             deltas=args.deltas, win_ms=args.win_ms, hop_ms=args.hop_ms)
    except ValueError as e:
        raise UserError(str(e)) from None


def cmd_features(args, rest):
    from .datadir import read_table, resolve_wav
    from .extract import extract_corpus
    cfg = _feature_config(args)
    wav_scp = read_table(os.path.join(args.data, "wav.scp"))
    wavs = {utt: resolve_wav(args.data, path) for utt, path in wav_scp.items()}
    res = extract_corpus(wavs, args.out, cfg, jobs=args.jobs, progress=not args.quiet)
    print(f"features: {res['extracted']} extracted, {res['skipped']} already there, "
          f"{len(res['failed'])} failed -> {args.out} ({cfg.dim} values per frame)")
    return 0


# -- train ---------------------------------------------------------------------

def cmd_train(args, rest):
    import numba

    from .dataset import load_examples, read_text, vocabulary_from_texts
    from .datadir import read_table
    from .extract import FeatureStore
    from .features import Normalizer
    from .model import CTCModel
    from .progress import format_duration
    from .train import TrainConfig, Trainer

    if args.threads:
        if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
            raise UserError(f"--threads must be in [1, {numba.config.NUMBA_NUM_THREADS}], "
                            f"got {args.threads}")
        numba.set_num_threads(args.threads)
    if args.dev_data and not args.dev_feats:
        raise UserError("--dev-data needs --dev-feats, its feature directory")
    ckpt = os.path.join(args.out, "checkpoint.npz")
    if os.path.exists(ckpt) and not args.resume:
        raise UserError(f"{ckpt} exists: pass --resume to continue that run, or choose "
                        f"another --out")
    train_text = read_text(os.path.join(args.train_data, args.text))
    vocab = vocabulary_from_texts([train_text], args.symbols)
    store = FeatureStore(args.train_feats)
    if args.dev_data and FeatureStore(args.dev_feats).config != store.config:
        raise UserError(f"--dev-feats {args.dev_feats} holds features made with other "
                        f"settings than --train-feats {args.train_feats}")
    # settings checked before the (slow) reading of the features
    cfg = TrainConfig(optimizer=args.optimizer, lr=args.lr, lr_decay=args.lr_decay,
                      momentum=args.momentum,
                      batch_frames=args.batch_frames, max_epochs=args.epochs,
                      patience=args.patience, clip=args.clip, weight_noise=args.weight_noise,
                      dropout=args.dropout, freq_masks=args.freq_masks,
                      freq_width=args.freq_width, time_masks=args.time_masks,
                      time_width=args.time_width, feature_blocks=1 + store.config.deltas,
                      ema=args.ema,
                      checkpoint_every=args.checkpoint_every, seed=args.seed)
    utt2spk = read_table(os.path.join(args.train_data, "utt2spk"))
    # read the training features once: fit the statistics on them, then normalise
    train, skipped = load_examples(args.train_data, args.train_feats, vocab, None, args.text)
    if not train:
        raise DataError(f"none of the {len(skipped)} utterances of "
                        f"{os.path.join(args.train_data, args.text)} has features in "
                        f"{args.train_feats}")
    norm = Normalizer("speaker" if args.per_speaker_cmvn else args.cmvn).fit(
        (e.feats, utt2spk.get(e.utt)) for e in train)
    for e in train:
        e.feats = norm(e.feats, utt2spk.get(e.utt))
    dev, dev_skipped = [], []
    if args.dev_data:
        dev, dev_skipped = load_examples(args.dev_data, args.dev_feats, vocab, None, args.text)
        dev_spk = read_table(os.path.join(args.dev_data, "utt2spk"))
        # dev speakers are new: in speaker mode they get their own statistics,
        # as test speakers will at decoding time (not stored with the model)
        dev_norm = Normalizer.from_dict(norm.to_dict())
        dev_norm.adapt((e.feats, dev_spk.get(e.utt)) for e in dev)
        for e in dev:
            e.feats = dev_norm(e.feats, dev_spk.get(e.utt))
    model = CTCModel(store.config.dim, args.hidden, args.layers, len(vocab), blank=0,
                     peepholes=not args.no_peepholes, seed=args.seed,
                     init_range=args.init_range, vocabulary=vocab, stride=args.stride,
                     features={"config": store.config.to_dict(), "normalizer": norm.to_dict(),
                               "text": args.text})
    n_weights = sum(p.size for p in model.params.values())
    frames = sum(e.feats.shape[0] for e in train)
    print(f"train: {len(train)} utterances "
          f"({format_duration(frames * store.config.hop_ms / 1000)}), dev: {len(dev)}, "
          f"{len(vocab)} classes, {n_weights / 1e6:.2f}M weights"
          + (f"; {len(skipped)} without features skipped" if skipped else "")
          + (f"; {len(dev_skipped)} dev without features skipped" if dev_skipped else ""))
    if args.lm_order:
        from .lm import train_token_lm
        lm = train_token_lm([e.labels for e in train], len(vocab), order=args.lm_order)
        os.makedirs(args.out, exist_ok=True)
        lm.save(os.path.join(args.out, "lm.json"))
        print(f"token {args.lm_order}-gram LM of the training transcripts -> "
              f"{os.path.join(args.out, 'lm.json')}")
    trainer = Trainer(model, train, dev, args.out, cfg, progress=not args.quiet)
    if args.resume and trainer.resume():
        st = trainer.state
        if st["done"] or st["epoch"] >= cfg.max_epochs:
            print(f"the run in {args.out} has finished ({st['epoch']} epochs"
                  + (", early stop" if st["done"] else "")
                  + "): nothing to do" + ("" if st["done"] else
                                          "; a larger --epochs extends it"))
        else:
            print(f"resuming at epoch {st['epoch'] + 1}, batch {st['batch']}")
    history = trainer.run()
    best = trainer.state["best_dev_err"]
    skipped = sum(h.get("skipped_updates", 0) for h in history)
    print(f"done: {len(history)} epochs; best model {os.path.join(args.out, 'best.npz')}"
          + (f" (dev error {100 * best:.2f}% at epoch {trainer.state['best_epoch']})"
             if dev and best is not None else "")
          + (f"; {skipped} updates skipped in all (non-finite loss or gradient)"
             if skipped else ""))
    return 0


# -- decode --------------------------------------------------------------------

def _load_model(path):
    from .features import FeatureConfig, Normalizer
    from .model import CTCModel
    model = CTCModel.load(path)
    feats = model.features or {}
    try:
        cfg = FeatureConfig.from_dict(feats["config"])
        norm = Normalizer.from_dict(feats["normalizer"])
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: the model carries no feature settings ({e}); it was not "
                        f"trained with 'ctcseq train'") from None
    except ValueError as e:   # FeatureConfig / Normalizer checks: the file's content
        raise DataError(f"{path}: the model's feature settings are invalid: {e}") from None
    return model, cfg, norm


def _model_feats(path, cfg):
    """The feature directory at path, which must match the model's settings."""
    from .extract import FeatureStore
    store = FeatureStore(path)
    if store.config != cfg:
        raise UserError(f"{path} holds features made with other settings than the model's")
    return store


def _write_lines(lines, path):
    """To the file ``path``, or to stdout when path is None."""
    if path:
        from .datadir import atomic_write
        with atomic_write(path, "w", durable=False, encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
    else:
        for line in lines:
            print(line)


def _make_decoder(args, model):
    """(log_probs, lengths) -> list of label lists: greedy, or beam search
    with an optional language model."""
    from .decode import beam_search, greedy_decode
    if args.beam < 0:
        raise UserError(f"--beam must be >= 0 (0: greedy), got {args.beam}")
    for name in ("alpha", "beta"):
        if not math.isfinite(getattr(args, name)):
            raise UserError(f"--{name} must be a finite number, got {getattr(args, name)}")
    if not args.beam:
        if args.lm:
            raise UserError("--lm needs beam search: add --beam N")
        return lambda lp, lengths: greedy_decode(lp, lengths, blank=model.blank)
    lm = None
    if args.lm:
        from .lm import TokenLM, WordLM, read_arpa
        if args.lm.endswith(".arpa"):
            delim = args.word_delimiter or ("<space>" if "<space>" in model.vocabulary else None)
            lm = WordLM(read_arpa(args.lm), model.vocabulary, word_delimiter=delim,
                        lexicon=args.lexicon)
        else:
            lm = TokenLM.load(args.lm)
            if (lm.num_classes, lm.blank) != (model.num_classes, model.blank):
                raise UserError(f"--lm {args.lm} was trained for {lm.num_classes} classes "
                                f"with blank {lm.blank}; the model has {model.num_classes} "
                                f"with blank {model.blank} (an LM of another model?)")

    def decode(lp, lengths):
        hyps = beam_search(lp, lengths, beam_width=args.beam, blank=model.blank, lm=lm,
                           alpha=args.alpha, beta=args.beta)
        return [h[0].tokens if h else [] for h in hyps]
    return decode


def _speakers(args, keys, norm, feats_of):
    """Speaker of each key (None: unknown), from --utt2spk or --speaker; in
    per-speaker CMVN mode new speakers get statistics from all their
    utterances first (an utterance without a speaker uses its own)."""
    from .datadir import read_table
    if args.utt2spk:
        utt2spk = read_table(args.utt2spk)
        spk = {k: utt2spk.get(k) for k in keys}
    else:
        spk = {k: args.speaker for k in keys}
    if norm.mode == "speaker":
        norm.adapt((feats_of(k), s) for k, s in spk.items() if s is not None)
    return spk


def _padded_batches(items, dtype, batch_frames=20000):
    """items: list of (key, (T, D) array); yields (keys, x (T, N, D) padded,
    lengths) for batches of similar length (always the same batches)."""
    import numpy as np
    from .train import Example, make_batches, pad_batch
    examples = [Example(k, a, np.zeros(0, np.int64)) for k, a in items]
    for idx in make_batches([e.feats.shape[0] for e in examples], batch_frames,
                            np.random.default_rng(0)):
        batch = [examples[i] for i in idx]
        x, lengths, _, _ = pad_batch(batch, dtype)
        yield [e.utt for e in batch], x, lengths


def _batched_log_probs(model, norm, items, batch_frames=20000):
    """items: list of (key, feats, speaker); yields (keys, log_probs (T', N, C),
    output lengths) for batches of similar length."""
    for keys, x, lengths in _padded_batches([(k, norm(f, s)) for k, f, s in items],
                                            model.dtype, batch_frames):
        yield keys, model.log_probs(x, lengths), model.output_lengths(lengths)

def _file_digest(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _log_probs_of(args, model, norm, feats_of, keys):
    """{key: (T', C) log-probabilities}, one batched forward pass over the
    features ``feats_of(key)`` (speakers from --utt2spk / --speaker)."""
    spk = _speakers(args, keys, norm, feats_of)
    out = {}
    for batch, lp, lengths in _batched_log_probs(model, norm,
                                                 [(k, feats_of(k), spk[k]) for k in keys]):
        for n, key in enumerate(batch):
            out[key] = lp[:lengths[n], n]
    return out


def _load_log_probs(path, model_path, model):
    """The archive of ``ctcseq forward``, checked against the model."""
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            lps = {k: z[k] for k in z.files if k != "__meta__"}
    except (KeyError, ValueError, OSError) as e:
        if isinstance(e, _USER_OS_ERRORS):
            raise
        raise DataError(f"{path}: not a log-probabilities file of 'ctcseq forward' "
                        f"({' '.join(str(e).split())})") from None
    if meta.get("model_sha256") != _file_digest(model_path):
        raise UserError(f"{path} was computed with another model than {model_path} "
                        f"({meta.get('model')}); run 'ctcseq forward' again")
    for k, lp in lps.items():
        if lp.ndim != 2 or lp.shape[1] != model.num_classes:
            raise DataError(f"{path}: {k} has shape {lp.shape}, not (T, {model.num_classes})")
    return lps


def cmd_forward(args, rest):
    import io

    import numpy as np
    from .datadir import atomic_write
    model, cfg, norm = _load_model(args.model)
    store = _model_feats(args.feats, cfg)
    lps = _log_probs_of(args, model, norm, store.__getitem__, sorted(store.keys()))
    meta = dict(model=os.path.abspath(args.model), model_sha256=_file_digest(args.model),
                feats=os.path.abspath(args.feats), utt2spk=args.utt2spk)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), **lps)
    with atomic_write(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"ctcseq forward: {len(lps)} utterances, "
          f"{sum(v.shape[0] for v in lps.values())} steps -> {args.out}", file=sys.stderr)
    return 0


def _decode_feats(model, norm, items, decoder):
    """items: list of (key, feats, speaker) -> {key: [symbols]}."""
    out = {}
    for keys, lp, lengths in _batched_log_probs(model, norm, items):
        for key, labels in zip(keys, decoder(lp, lengths)):
            out[key] = [model.vocabulary[c] for c in labels]
    return out


def cmd_decode(args, rest):
    from .features import AudioError, compute_features, load_audio
    if (args.lexicon or args.word_delimiter) and not (args.lm or "").endswith(".arpa"):
        raise UserError("--lexicon and --word-delimiter go with a word LM: add --lm FILE.arpa "
                        "(and --beam N)")
    model, cfg, norm = _load_model(args.model)
    decoder = _make_decoder(args, model)
    if args.log_probs:
        if args.feats or args.audio:
            raise UserError("--log-probs replaces --feats and audio files: give one of them")
        lps = _load_log_probs(args.log_probs, args.model, model)
        hyps = {}
        dtype = next(iter(lps.values())).dtype if lps else model.dtype
        for keys, lp, lengths in _padded_batches(sorted(lps.items()), dtype):
            for key, labels in zip(keys, decoder(lp, lengths)):
                hyps[key] = [model.vocabulary[c] for c in labels]
        lines = [f"{u} {' '.join(h)}" for u, h in sorted(hyps.items())]
        failures = 0
    elif args.feats:
        store = _model_feats(args.feats, cfg)
        keys = sorted(store.keys())
        spk = _speakers(args, keys, norm, store.__getitem__)
        hyps = _decode_feats(model, norm, [(u, store[u], spk[u]) for u in keys], decoder)
        lines = [f"{u} {' '.join(h)}" for u, h in sorted(hyps.items())]
        failures = 0
    else:
        if not args.audio:
            raise UserError("give audio files to decode, or --feats DIR")
        items, failures = [], 0
        for path in args.audio:
            try:
                items.append((path, compute_features(load_audio(path, cfg.sample_rate), cfg,
                                                     name=path)))
            except AudioError as e:
                print(f"ctcseq decode: {e}", file=sys.stderr)
                failures += 1
        feats = dict(items)
        spk = _speakers(args, list(feats), norm, feats.__getitem__)
        hyps = _decode_feats(model, norm, [(p, f, spk[p]) for p, f in items], decoder)
        lines = [f"{p} {' '.join(hyps[p])}" for p, _ in items]
    _write_lines(lines, args.out)
    return 1 if failures else 0


# -- align ---------------------------------------------------------------------

def cmd_align(args, rest):
    import numpy as np
    from .dataset import read_text
    from .decode import forced_align, to_ctm, word_spans
    from .features import AudioError, compute_features, load_audio
    model, cfg, norm = _load_model(args.model)
    index = {s: i for i, s in enumerate(model.vocabulary)}
    saved = None
    if args.log_probs:
        if args.feats or args.audio:
            raise UserError("--log-probs replaces --feats and audio files: give one of them")
        saved = _load_log_probs(args.log_probs, args.model, model)
    if args.feats or saved is not None:
        source = args.feats or args.log_probs
        if not args.text:
            raise UserError(f"{'--feats' if args.feats else '--log-probs'} needs --text, "
                            "the transcripts to align")
        store = _model_feats(args.feats, cfg) if saved is None else saved
        texts = read_text(args.text)
        missing = [u for u in sorted(texts) if u not in store]
        if texts and len(missing) == len(texts):
            raise DataError(f"no utterance of {args.text} has features in {source} "
                            f"(another feature directory?)")
        what = "features" if saved is None else "saved outputs"
        for u in missing[:20]:
            print(f"ctcseq align: {u}: no {what} in {source}", file=sys.stderr)
        if len(missing) > 20:
            print(f"ctcseq align: ... and {len(missing) - 20} more without {what}",
                  file=sys.stderr)
        feats = {u: store[u] for u in sorted(texts) if u in store}
    else:
        if len(args.audio) != 1 or args.transcript is None:
            raise UserError("give one audio file and --transcript, or --feats and --text")
        path = args.audio[0]
        missing = []
        try:
            feats = {path: compute_features(load_audio(path, cfg.sample_rate), cfg, name=path)}
        except AudioError as e:   # a ValueError of ctcseq.features: the user's file
            raise DataError(str(e)) from None
        texts = {path: args.transcript.split()}
    lexicon = None
    if args.lexicon:
        from .lm import read_lexicon
        lexicon = {}
        for word, toks in read_lexicon(args.lexicon):
            lexicon.setdefault(word, toks)  # the first pronunciation
    shift = model.stride * cfg.hop_ms / 1000.0   # seconds per output step
    space = index.get("<space>")
    # the network's outputs, then alignment utterance by utterance
    log_probs = {k: v[:, None] for k, v in (
        feats if saved is not None
        else _log_probs_of(args, model, norm, feats.__getitem__, list(feats))).items()}
    lines, failures = [], len(missing)
    for key in feats:
        symbols, words = texts[key], None
        if lexicon is not None:  # word transcripts: spell them with the lexicon
            missing = sorted({w for w in symbols if w not in lexicon})
            if missing:
                print(f"ctcseq align: {key}: word(s) {missing} are not in the lexicon",
                      file=sys.stderr)
                failures += 1
                continue
            words = symbols
            symbols = [t for w in words for t in lexicon[w]]
        unknown = [t for t in symbols if t not in index or index[t] == model.blank]
        if unknown:
            print(f"ctcseq align: {key}: symbol(s) {sorted(set(unknown))} are not in the "
                  f"model's vocabulary", file=sys.stderr)
            failures += 1
            continue
        lp = log_probs[key]
        labels = np.array([[index[t] for t in symbols]], np.int64).reshape(1, -1)
        try:
            ali = forced_align(lp, labels, [lp.shape[0]], [len(symbols)], blank=model.blank)[0]
        except ValueError as e:
            print(f"ctcseq align: {key}: {e}", file=sys.stderr)
            failures += 1
            continue
        if words is not None:
            ends = np.cumsum([len(lexicon[w]) for w in words])
            spans = [(ali.starts[e - len(lexicon[w])], ali.ends[e - 1])
                     for w, e in zip(words, ends)]
            lines += to_ctm(key, spans, words, shift)
        elif args.words:
            if space is None:
                raise UserError("--words needs a model with a <space> token")
            spans = word_spans(labels[0], ali.starts, ali.ends, space)
            words = ["".join(symbols[a:b]) for a, b, _, _ in spans]
            lines += to_ctm(key, [(s, e) for _, _, s, e in spans], words, shift)
        else:
            keep = [i for i, t in enumerate(symbols) if t != "<space>"]
            lines += to_ctm(key, [(ali.starts[i], ali.ends[i]) for i in keep],
                            [symbols[i] for i in keep], shift)
    _write_lines(lines, args.out)
    return 1 if failures else 0


# -- eval ----------------------------------------------------------------------

def cmd_eval(args, rest):
    from .dataset import read_text
    from .datadir import read_table
    from .metrics import ErrorCounts, alignment_picture, fold, score, timit_fold_map
    refs, hyps = read_text(args.ref), read_text(args.hyp)
    fold_map = None
    if args.fold:
        fold_map = timit_fold_map(39 if args.fold == "timit39" else 48)
    try:   # score checks the two files against each other (plain ValueErrors)
        total, per = score(refs, hyps, fold_map)
    except ValueError as e:
        raise DataError(f"{args.hyp} against {args.ref}: {e}") from None
    name = args.name
    print(f"{name} {100 * total.rate:.2f}% [ {total.errors} / {total.ref_len}, "
          f"{total.sub} sub, {total.dele} del, {total.ins} ins ] over {len(per)} utterances")
    if args.utt2spk:
        utt2spk = read_table(args.utt2spk)
        groups = {}
        for utt, c in per.items():
            spk = utt2spk.get(utt, "?")
            groups[spk] = groups.get(spk, ErrorCounts()) + c
        width = max(len(s) for s in groups)
        print(f"{'speaker'.ljust(width)}  {name:>6}  sub  del  ins  tokens")
        for spk, c in sorted(groups.items(), key=lambda kv: -kv[1].rate):
            print(f"{spk.ljust(width)}  {100 * c.rate:5.2f}%  {c.sub:3d}  {c.dele:3d}  "
                  f"{c.ins:3d}  {c.ref_len:6d}")
    if args.details:
        from .datadir import atomic_write
        with atomic_write(args.details, "w", durable=False, encoding="utf-8") as f:
            for utt, c in sorted(per.items()):
                f.write(f"{utt} {100 * c.rate:.2f} {c.sub} {c.dele} {c.ins} {c.ref_len}\n")
    if args.worst:
        worst = sorted(per.items(), key=lambda kv: (-kv[1].errors, kv[0]))[: args.worst]
        for utt, c in worst:
            r, h = refs[utt], hyps[utt]
            if fold_map is not None:
                r, h = fold(r, fold_map), fold(h, fold_map)
            print(f"\n{utt}: {c.errors} errors ({c.sub} sub, {c.dele} del, {c.ins} ins)")
            print(alignment_picture(r, h))
    return 0


# -- parser --------------------------------------------------------------------

def _add_speaker_options(parser):
    """--utt2spk / --speaker, read by :func:`_speakers` (decode and align)."""
    parser.add_argument("--utt2spk", help="with --feats: '<utt> <speaker>' table (e.g. "
                        "data/test/utt2spk); a model trained with --cmvn speaker then "
                        "normalises each speaker with statistics of all its utterances")
    parser.add_argument("--speaker",
                        help="audio files: all are this one speaker (see --utt2spk)")


def build_parser():
    p = argparse.ArgumentParser(prog="ctcseq", description="BiLSTM-CTC sequence labelling: "
                                "prepare data, extract features, train, decode, score.",
                                epilog="User errors end with one line on stderr and exit "
                                "status 2; --debug shows their traceback too.")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of user errors too (bad settings, bad data), "
                   "not only of bugs")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --debug also after the command name ('prepare' hands its options to the builder)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of user errors too")

    pp = sub.add_parser("prepare", help="build a corpus as Kaldi-style data directories",
                        description="Build a corpus. 'synth' synthesises the default offline "
                        "corpus with eSpeak NG; 'timit' (--timit ROOT) and 'librispeech' "
                        "(--root ROOT) write data directories for a copy of those corpora; "
                        "'folder' (--audio DIR --transcript FILE) one for a folder of audio "
                        "files. Options after the corpus name go to its builder (see "
                        "'ctcseq prepare timit --help').", add_help=True)
    pp.add_argument("corpus", choices=["synth", "timit", "librispeech", "folder"],
                    help="which corpus")
    pp.set_defaults(func=cmd_prepare, passthrough=True)

    pf = sub.add_parser("features", parents=[debug],
                        help="extract features of a data directory",
                        description="Extract features for every utterance of DATA's wav.scp "
                        "into OUT (parallel, resumable; unusable files are listed, not fatal).")
    pf.add_argument("data", help="data directory with wav.scp")
    pf.add_argument("out", help="feature directory to (re)fill")
    pf.add_argument("--config", help="JSON file of feature settings (overrides the options below)")
    pf.add_argument("--kind", choices=["fbank", "mfcc"], default="fbank",
                    help="log-mel filterbank or MFCC (default fbank)")
    pf.add_argument("--sample-rate", type=int, default=16000, help="analysis rate in Hz (16000)")
    pf.add_argument("--n-mels", type=int, default=40, help="mel channels (40)")
    pf.add_argument("--n-mfcc", type=int, default=13, help="cepstra incl. c0, for mfcc (13)")
    pf.add_argument("--no-energy", action="store_true", help="no log-energy term")
    pf.add_argument("--deltas", type=int, default=2, choices=[0, 1, 2],
                    help="0 static, 1 +deltas, 2 +delta-deltas (2)")
    pf.add_argument("--win-ms", type=float, default=25.0, help="frame length in ms (25)")
    pf.add_argument("--hop-ms", type=float, default=10.0, help="frame shift in ms (10)")
    pf.add_argument("--jobs", type=int, default=2, help="worker processes (2)")
    pf.add_argument("--quiet", action="store_true", help="no progress line")
    pf.set_defaults(func=cmd_features)

    pt = sub.add_parser("train", parents=[debug], help="train a BiLSTM-CTC model",
                        description="Train a BiLSTM-CTC model; checkpoints every epoch (and "
                        "every --checkpoint-every batches) so --resume continues a killed run "
                        "exactly. Writes OUT/best.npz, OUT/train.jsonl, OUT/curves.png.")
    pt.add_argument("--train-data", required=True, help="training data directory")
    pt.add_argument("--train-feats", required=True, help="its feature directory")
    pt.add_argument("--dev-data", help="dev data directory (model selection, early stopping)")
    pt.add_argument("--dev-feats", help="its feature directory")
    pt.add_argument("--out", required=True, help="experiment directory")
    pt.add_argument("--text", default="text.phn",
                    help="transcript file in the data directories (text.phn, text.chr, text)")
    pt.add_argument("--symbols", help="symbol inventory file (one per line); default: the "
                    "symbols seen in the training transcripts")
    pt.add_argument("--hidden", type=int, default=250, help="LSTM units per direction (250)")
    pt.add_argument("--layers", type=int, default=3, help="BiLSTM layers (3)")
    pt.add_argument("--no-peepholes", action="store_true", help="plain LSTM cells")
    pt.add_argument("--init-range", type=float, default=None,
                    help="uniform init range (default 1/sqrt(hidden))")
    pt.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                    help="adam, or sgd with momentum (Graves) (adam)")
    pt.add_argument("--lr", type=float, default=1e-3, help="learning rate (1e-3)")
    pt.add_argument("--lr-decay", type=float, default=1.0,
                    help="multiply the learning rate by this after every epoch (1: constant)")
    pt.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    pt.add_argument("--batch-frames", type=int, default=8000,
                    help="padded frames per batch; batches are bucketed by length (8000)")
    pt.add_argument("--epochs", type=int, default=20, help="maximum epochs (20)")
    pt.add_argument("--patience", type=int, default=3,
                    help="stop after this many epochs without a better dev error (3)")
    pt.add_argument("--clip", type=float, default=5.0, help="global gradient-norm clip (5)")
    pt.add_argument("--weight-noise", type=float, default=0.0,
                    help="Gaussian weight noise std, Graves 2013 (0: off)")
    pt.add_argument("--dropout", type=float, default=0.0,
                    help="dropout on the outputs of every BiLSTM layer, training only (0: off)")
    pt.add_argument("--freq-masks", type=int, default=0,
                    help="SpecAugment: frequency bands masked per utterance (0: off)")
    pt.add_argument("--freq-width", type=int, default=0,
                    help="SpecAugment: widest frequency band, in channels (0)")
    pt.add_argument("--time-masks", type=int, default=0,
                    help="SpecAugment: time spans masked per utterance (0: off)")
    pt.add_argument("--time-width", type=int, default=0,
                    help="SpecAugment: longest time span, in frames; at most 1/20 of the "
                    "utterance (0)")
    pt.add_argument("--ema", type=float, default=0.0,
                    help="evaluate and keep a moving average of the weights with this decay "
                    "per update, e.g. 0.998 (0: off)")
    pt.add_argument("--checkpoint-every", type=int, default=50,
                    help="also checkpoint every N batches (50; 0: per epoch only)")
    pt.add_argument("--cmvn", choices=["global", "speaker", "utterance"], default="global",
                    help="feature normalisation: training-set statistics (global), each "
                    "speaker's own (speaker; decode/align with --utt2spk), or each "
                    "utterance's own (utterance; suits new voices and single files) (global)")
    pt.add_argument("--per-speaker-cmvn", action="store_true",
                    help="same as --cmvn speaker")
    pt.add_argument("--stride", type=int, default=1,
                    help="stack this many frames per BiLSTM step: 2 halves the cost of "
                    "training and decoding (1)")
    pt.add_argument("--lm-order", type=int, default=0,
                    help="also train a token n-gram LM of this order on the training "
                    "transcripts, saved as OUT/lm.json for 'decode --lm' (0: none)")
    pt.add_argument("--seed", type=int, default=0, help="initialisation and batch order (0)")
    pt.add_argument("--threads", type=int, default=0, help="Numba threads (default: all cores)")
    pt.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.npz")
    pt.add_argument("--quiet", action="store_true", help="no progress line")
    pt.set_defaults(func=cmd_train)

    pd = sub.add_parser("decode", parents=[debug],
                        help="transcribe audio files (or a feature directory)",
                        description="Transcribe audio files with a trained model: one line "
                        "'<file> <symbols>' per file. Files that cannot be read are reported "
                        "and skipped (exit status 1).")
    pd.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    pd.add_argument("audio", nargs="*", help="audio files (any format soundfile reads)")
    pd.add_argument("--feats", help="decode a feature directory instead: '<utt> <symbols>' lines")
    pd.add_argument("--log-probs", help="decode the network outputs that 'ctcseq forward' "
                    "saved (of the same model) instead of running the network again")
    pd.add_argument("--out", help="write the lines to this file instead of stdout")
    pd.add_argument("--beam", type=int, default=0,
                    help="prefix beam search with this beam width (default 0: greedy)")
    pd.add_argument("--lm", help="language model: a token n-gram JSON from 'ctcseq train "
                    "--lm-order' (e.g. OUT/lm.json), or a word ARPA file (*.arpa)")
    pd.add_argument("--alpha", type=float, default=0.5, help="LM weight (0.5)")
    pd.add_argument("--beta", type=float, default=0.0,
                    help="insertion bonus per token (token LM) or word (word LM) (0)")
    pd.add_argument("--lexicon", help="word ARPA LM: lexicon file 'word tok tok ...' that "
                    "constrains the output to known words")
    pd.add_argument("--word-delimiter", help="word ARPA LM: the token that ends a word "
                    "(default <space> when the model has it)")
    _add_speaker_options(pd)
    pd.set_defaults(func=cmd_decode)

    pw = sub.add_parser("forward", parents=[debug],
                        help="save a model's log-probabilities of a feature directory",
                        description="Run the network once over a feature directory and "
                        "save its per-frame log-probabilities (an .npz archive, one array "
                        "per utterance), so that several decodings and alignments of the "
                        "same set ('ctcseq decode/align MODEL --log-probs FILE') need not "
                        "run it again.")
    pw.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    pw.add_argument("--feats", required=True, help="feature directory")
    pw.add_argument("--out", required=True, help="archive to write (.npz)")
    pw.add_argument("--utt2spk", help="'<utt> <speaker>' table, for a model trained with "
                    "--cmvn speaker (as for decode)")
    pw.set_defaults(func=cmd_forward, speaker=None)

    pa = sub.add_parser("align", parents=[debug],
                        help="forced alignment: token (or word) times as CTM",
                        description="Align transcripts to audio with a trained model "
                        "(Viterbi path through the CTC trellis) and write CTM lines "
                        "'<utt> 1 <start s> <duration s> <symbol>'. Transcripts too long "
                        "for their audio, and transcripts without features, are reported "
                        "and skipped (exit status 1).")
    pa.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    pa.add_argument("audio", nargs="*", help="one audio file (with --transcript)")
    pa.add_argument("--transcript", help="the audio file's transcript, symbols separated by "
                    "spaces (e.g. phones)")
    pa.add_argument("--feats", help="align a feature directory instead (with --text)")
    pa.add_argument("--log-probs", help="align the network outputs that 'ctcseq forward' "
                    "saved (of the same model), with --text")
    pa.add_argument("--text", help="'<utt> <symbols>' transcripts for --feats "
                    "(e.g. data/test/text.phn)")
    pa.add_argument("--words", action="store_true",
                    help="word times (models with a <space> token, e.g. characters)")
    pa.add_argument("--lexicon", help="lexicon file 'WORD tok tok ...': the transcripts are "
                    "words, spelt with their first pronunciation; writes word times")
    pa.add_argument("--out", help="write the CTM to this file instead of stdout")
    _add_speaker_options(pa)
    pa.set_defaults(func=cmd_align)

    pe = sub.add_parser("eval", parents=[debug],
                        help="error rate of hypotheses against references",
                        description="Score '<utt> <tokens>' hypotheses against references: "
                        "error rate with substitutions, deletions and insertions.")
    pe.add_argument("ref", help="reference transcripts (e.g. data/test/text.phn)")
    pe.add_argument("hyp", help="hypotheses ('ctcseq decode --feats ... --out')")
    pe.add_argument("--fold", choices=["timit39", "timit48"],
                    help="fold TIMIT phones before scoring (Lee & Hon)")
    pe.add_argument("--utt2spk", help="also report the error rate per speaker")
    pe.add_argument("--details", help="write per-utterance counts to this file")
    pe.add_argument("--worst", type=int, default=0,
                    help="print alignments of the N worst utterances")
    pe.add_argument("--name", default="ER", help="label of the rate (PER, CER, WER)")
    pe.set_defaults(func=cmd_eval)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # 'prepare CORPUS ...' hands everything after the corpus name to its builder
    rest = []
    i = 0
    while i < len(argv) and argv[i] == "--debug":   # global options before the command
        i += 1
    if len(argv) >= i + 2 and argv[i] == "prepare" and not argv[i + 1].startswith("-"):
        argv, rest = argv[:i + 2], argv[i + 2:]
    args = parser.parse_args(argv)
    try:
        return args.func(args, rest) or 0
    except KeyboardInterrupt:
        print(f"ctcseq {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CtcseqError, *_USER_OS_ERRORS) as e:
        # the user's mistake or data: one line; anything else is a bug and
        # keeps its traceback
        if args.debug:
            raise
        print(f"ctcseq {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE


def _one_line(e):
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
