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
import contextlib
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
    from .extract import extract_corpus, merge_shards
    from .mpi import world
    cfg = _feature_config(args)
    wav_scp = read_table(os.path.join(args.data, "wav.scp"))
    wavs = {utt: resolve_wav(args.data, path) for utt, path in wav_scp.items()}
    if args.merge:
        if args.shard is not None:
            raise UserError("--merge checks all the shards: give --num-shards N, not --shard")
        merge_shards(wavs, args.out, args.num_shards)
        failed = read_table(os.path.join(args.out, "failed.txt"))
        print(f"features: {args.num_shards} shards merged: {len(wavs) - len(failed)} "
              f"utterances, {len(failed)} failed -> {args.out}")
        return 0
    comm = world()
    shard, num_shards = args.shard, args.num_shards
    if shard is None and comm.size > 1:   # mpiexec -n K: one shard per process
        if num_shards != 1:
            raise UserError("under mpiexec each process takes one shard: leave out "
                            "--num-shards, or give --shard too")
        shard, num_shards = comm.rank + 1, comm.size
    res = extract_corpus(wavs, args.out, cfg, jobs=args.jobs,
                         progress=not args.quiet and comm.is_root, shard=shard,
                         num_shards=num_shards)
    of = f" (shard {shard} of {num_shards})" if shard is not None else ""
    if comm.size > 1:
        counts = comm.allgather((res["extracted"], res["skipped"], len(res["failed"]),
                                 res["merged"]))
        if not comm.is_root:
            return 0
        res = {"extracted": sum(c[0] for c in counts), "skipped": sum(c[1] for c in counts),
               "failed": [None] * sum(c[2] for c in counts), "merged": any(c[3] for c in counts)}
        of = f" by {comm.size} processes"
    print(f"features{of}: {res['extracted']} extracted, {res['skipped']} already there, "
          f"{len(res['failed'])} failed -> {args.out} ({cfg.dim} values per frame)"
          + ("" if res.get("merged", True) else "; waiting for the other shards"))
    return 0


# -- export --------------------------------------------------------------------

def cmd_export(args, rest):
    from .export import export_onnx, export_safetensors
    from .model import CTCModel
    if not (args.onnx or args.safetensors):
        raise UserError("nothing to do: give --onnx FILE and/or --safetensors FILE")
    model = CTCModel.load(args.model)
    if args.onnx:
        export_onnx(model, args.onnx, opset=args.opset)
        print(f"ctcseq export: {args.model} -> {args.onnx} (ONNX, opset {args.opset})",
              file=sys.stderr)
    if args.safetensors:
        export_safetensors(model, args.safetensors)
        print(f"ctcseq export: {args.model} -> {args.safetensors} (safetensors)",
              file=sys.stderr)
    return 0


# -- train ---------------------------------------------------------------------

def cmd_train(args, rest):
    from .mpi import world
    comm = world()
    if comm.size == 1:
        return _train(args, comm)
    # under mpiexec: only process 0 prints (and writes: see Trainer)
    with open(os.devnull, "w") as devnull:
        out = contextlib.nullcontext() if comm.is_root else contextlib.redirect_stdout(devnull)
        with out:
            return _train(args, comm)


def _use_gpu(local_rank):
    try:
        import cupy
        cupy.cuda.Device(local_rank % cupy.cuda.runtime.getDeviceCount()).use()
    except Exception:  # noqa: BLE001 - placement() reports what is missing
        pass


def _threads_per_process(comm):
    """The cores of this machine shared between its MPI processes."""
    import numba
    n = max(1, (os.cpu_count() or 1) // comm.local_size)
    return min(n, numba.config.NUMBA_NUM_THREADS)


def _train(args, comm):
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
    elif comm.size > 1:
        numba.set_num_threads(_threads_per_process(comm))
    if comm.size > 1:
        # BLAS too: K processes with a thread per core each would oversubscribe
        from threadpoolctl import threadpool_limits
        threadpool_limits(numba.get_num_threads())
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
    if args.device != "cpu":
        if comm.size > 1:   # one process per GPU of its machine
            _use_gpu(comm.local_rank)
        model.to(args.device)
    n_weights = sum(p.size for p in model.params.values())
    frames = sum(e.feats.shape[0] for e in train)
    print(f"train: {len(train)} utterances on {model.place.name} "
          f"({format_duration(frames * store.config.hop_ms / 1000)}), dev: {len(dev)}, "
          f"{len(vocab)} classes, {n_weights / 1e6:.2f}M weights"
          + (f"; {len(skipped)} without features skipped" if skipped else "")
          + (f"; {len(dev_skipped)} dev without features skipped" if dev_skipped else ""))
    if args.lm_order and comm.is_root:
        from .lm import train_token_lm
        lm = train_token_lm([e.labels for e in train], len(vocab), order=args.lm_order)
        os.makedirs(args.out, exist_ok=True)
        lm.save(os.path.join(args.out, "lm.json"))
        print(f"token {args.lm_order}-gram LM of the training transcripts -> "
              f"{os.path.join(args.out, 'lm.json')}")
    if comm.size > 1:
        print(f"data-parallel on {comm.size} MPI processes, {numba.get_num_threads()} "
              f"thread(s) each: each takes its share of every batch")
    trainer = Trainer(model, train, dev, args.out, cfg, progress=not args.quiet, comm=comm)
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


def _recognizer(args, decoding=True):
    """The Recognizer of args.model with the decoder options (checked here
    first, so that messages name the options)."""
    from .recognize import Recognizer
    if decoding:
        if args.beam < 0:
            raise UserError(f"--beam must be >= 0 (0: greedy), got {args.beam}")
        for name in ("alpha", "beta"):
            if not math.isfinite(getattr(args, name)):
                raise UserError(f"--{name} must be a finite number, got {getattr(args, name)}")
        if args.lm and not args.beam:
            raise UserError("--lm needs beam search: add --beam N")
        if args.nbest < 1:
            raise UserError(f"--nbest must be >= 1, got {args.nbest}")
        if args.nbest > 1 and args.nbest > args.beam:
            raise UserError(f"--nbest {args.nbest} needs --beam N with N >= {args.nbest}")
        rec = Recognizer.load(args.model, lm=args.lm, beam=args.beam, alpha=args.alpha,
                              beta=args.beta, lexicon=args.lexicon,
                              word_delimiter=args.word_delimiter,
                              progress=not getattr(args, "quiet", False))
    else:
        rec = Recognizer.load(args.model, lexicon=getattr(args, "lexicon", None),
                              progress=not getattr(args, "quiet", False))
    if args.device != "cpu":   # the network there; features and search stay on the host
        rec.model.to(args.device)
    return rec


def _speaker_table(args, keys):
    """Speaker of each key (None: unknown), from --utt2spk or --speaker."""
    from .datadir import read_table
    if args.utt2spk:
        utt2spk = read_table(args.utt2spk)
        return {k: utt2spk.get(k) for k in keys}
    return {k: args.speaker for k in keys}


def _file_digest(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    rec = _recognizer(args, decoding=False)
    store = _model_feats(args.feats, rec.feature_config)
    keys = sorted(store.keys())
    lps = rec.log_probs({k: store[k] for k in keys}, _speaker_table(args, keys))
    meta = dict(model=os.path.abspath(args.model), model_sha256=_file_digest(args.model),
                feats=os.path.abspath(args.feats), utt2spk=args.utt2spk)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), **lps)
    with atomic_write(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"ctcseq forward: {len(lps)} utterances, "
          f"{sum(v.shape[0] for v in lps.values())} steps -> {args.out}", file=sys.stderr)
    return 0


def _report(command, results):
    """Warnings and errors of results on stderr, one line each; the number
    of errors."""
    errors = 0
    for r in results:
        for w in r.warnings:
            print(f"ctcseq {command}: warning: {w}", file=sys.stderr)
        if r.error is not None:
            print(f"ctcseq {command}: {r.error}", file=sys.stderr)
            errors += 1
    return errors


def cmd_decode(args, rest):
    from .formats import format_results
    if (args.lexicon or args.word_delimiter) and not (args.lm or "").endswith(".arpa"):
        raise UserError("--lexicon and --word-delimiter go with a word LM: add --lm FILE.arpa "
                        "(and --beam N)")
    if args.nbest > 1 and args.format != "json":
        raise UserError("--nbest N lists alternatives in --format json only")
    rec = _recognizer(args)
    nbest = args.nbest
    if args.log_probs:
        if args.feats or args.audio:
            raise UserError("--log-probs replaces --feats and audio files: give one of them")
        lps = _load_log_probs(args.log_probs, args.model, rec.model)
        found = rec.decode_log_probs(dict(sorted(lps.items())), nbest=nbest)
        results = [found[k] for k in sorted(found)]
    elif args.feats:
        store = _model_feats(args.feats, rec.feature_config)
        keys = sorted(store.keys())
        found = rec.transcribe_features({k: store[k] for k in keys},
                                        _speaker_table(args, keys), nbest=nbest)
        results = [found[k] for k in keys]
    if args.log_probs or args.feats:
        # a whole set: one summary line, not a line per utterance
        warned = [r for r in results if r.warnings]
        if warned:
            print(f"ctcseq decode: warning: {len(warned)} of {len(results)} utterances have "
                  f"warnings, e.g. {warned[0].warnings[0]} ('--format json' lists them)",
                  file=sys.stderr)
        failures = 0
    else:
        if not args.audio:
            raise UserError("give audio files to decode, or --feats DIR")
        results = rec.transcribe(list(args.audio), nbest=nbest, speaker=args.speaker)
        failures = _report("decode", results)
    _write_lines(format_results(results, args.format), args.out)
    return 1 if failures else 0


# -- align ---------------------------------------------------------------------

def _audio_transcripts(args):
    """The transcript of each audio file: --transcript (one file), or the
    --text line whose key is the file's id (its path, whitespace replaced
    by '_'), its name, or its name without extension."""
    from .dataset import read_text
    from .recognize import utterance_id
    if args.transcript is not None:
        if len(args.audio) != 1 or args.text:
            raise UserError("--transcript is the transcript of one audio file: give one file "
                            "(several files take --text FILE)")
        return list(args.audio), [args.transcript.split()], 0
    if not args.text:
        raise UserError("give audio files with --transcript (one file) or --text FILE, or "
                        "--feats/--log-probs with --text")
    texts = read_text(args.text)
    files, transcripts, missing = [], [], 0
    for path in args.audio:
        base = os.path.basename(path)
        for key in (utterance_id(path), utterance_id(base),
                    utterance_id(os.path.splitext(base)[0])):
            if key in texts:
                files.append(path)
                transcripts.append(texts[key])
                break
        else:
            print(f"ctcseq align: {path}: no transcript in {args.text}", file=sys.stderr)
            missing += 1
    return files, transcripts, missing


def cmd_align(args, rest):
    from .dataset import read_text
    from .formats import ctm_lines, json_lines
    rec = _recognizer(args, decoding=False)
    if args.words and "<space>" not in rec.index:
        raise UserError("--words needs a model with a <space> token")
    words = bool(args.words or args.lexicon)
    saved = None
    if args.log_probs:
        if args.feats or args.audio:
            raise UserError("--log-probs replaces --feats and audio files: give one of them")
        saved = _load_log_probs(args.log_probs, args.model, rec.model)
    if args.feats or saved is not None:
        source = args.feats or args.log_probs
        if not args.text:
            raise UserError(f"{'--feats' if args.feats else '--log-probs'} needs --text, "
                            "the transcripts to align")
        store = _model_feats(args.feats, rec.feature_config) if saved is None else saved
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
        keys = [u for u in sorted(texts) if u in store]
        if saved is None:
            saved = rec.log_probs({k: store[k] for k in keys}, _speaker_table(args, keys))
        found = rec.align_log_probs(saved, {k: texts[k] for k in keys})
        results = [found[k] for k in keys]
        times = args.times or "emission"
        failures = len(missing)
        for r in results:
            if r.error is not None:
                print(f"ctcseq align: {r.error}", file=sys.stderr)
                failures += 1
        poor = sum(r.poor for r in results)
        if poor:   # a summary, not a line per utterance of a whole test set
            print(f"ctcseq align: warning: {poor} of {len(results)} alignments look poor "
                  f"(score per frame or speech the transcript does not cover; "
                  f"'--format json' says which)", file=sys.stderr)
    else:
        if not args.audio:
            raise UserError("give audio files with --transcript or --text, or --feats and "
                            "--text")
        files, transcripts, failures = _audio_transcripts(args)
        results = rec.align(files, transcripts, speaker=args.speaker) if files else []
        failures += _report("align", results)
        times = args.times or "spans"
    lines = (json_lines(results) if args.format == "json"
             else ctm_lines(results, words=words, times=times))
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
    """--utt2spk / --speaker, read by :func:`_speaker_table` (decode and align)."""
    parser.add_argument("--utt2spk", help="with --feats: '<utt> <speaker>' table (e.g. "
                        "data/test/utt2spk); a model trained with --cmvn speaker then "
                        "normalises each speaker with statistics of all its utterances")
    parser.add_argument("--speaker",
                        help="audio files: all are this one speaker (see --utt2spk)")


def _add_device_option(parser):
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="where the network runs: cpu (default), cuda (a GPU: needs pip "
                        "install \"ctcseq[cuda]\" and a CUDA 13 driver), auto (the GPU when "
                        "one works)")


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
    pf.add_argument("--shard", type=int, metavar="J",
                    help="extract only shard J (1..N) of --num-shards N: every N-th utterance "
                    "(Kaldi's JOB=1:N, a Slurm array job); the shard that completes the set "
                    "writes the index, a finished shard is skipped on rerun (under mpiexec -n "
                    "K each process takes a shard itself)")
    pf.add_argument("--num-shards", type=int, default=1, metavar="N",
                    help="the number of shards (with --shard or --merge)")
    pf.add_argument("--merge", action="store_true",
                    help="check that the N shards did every utterance once, report missing "
                    "or failed ones, and write the index")
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
    _add_device_option(pt)
    pt.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.npz")
    pt.add_argument("--quiet", action="store_true", help="no progress line")
    pt.set_defaults(func=cmd_train)

    pd = sub.add_parser("decode", parents=[debug],
                        help="transcribe audio files (or a feature directory)",
                        description="Transcribe audio files with a trained model (long "
                        "recordings are cut at pauses and decoded in pieces): by default one "
                        "line '<file> <symbols>' per file, the file's path with each "
                        "whitespace character replaced by '_'. Files that cannot be read "
                        "(missing, not audio, empty, too short, NaN samples) are reported "
                        "on stderr, one line each, and skipped (exit status 1); warnings "
                        "(no speech, samples outside [-1, 1]) are reported too.")
    pd.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    pd.add_argument("audio", nargs="*", help="audio files (any format soundfile reads)")
    pd.add_argument("--feats", help="decode a feature directory instead: '<utt> <symbols>' lines")
    pd.add_argument("--log-probs", help="decode the network outputs that 'ctcseq forward' "
                    "saved (of the same model) instead of running the network again")
    pd.add_argument("--out", help="write the lines to this file instead of stdout")
    pd.add_argument("--format", choices=["text", "ctm", "json", "srt", "vtt"], default="text",
                    help="text: '<utt> <symbols>' lines (default); ctm: token (or word) "
                    "times; json: one object per input with tokens, words, times, scores "
                    "and warnings; srt/vtt: subtitles of one recording (needs words: a "
                    "<space> token or a word LM with --lexicon)")
    pd.add_argument("--nbest", type=int, default=1,
                    help="with --format json and --beam N: list the N best alternatives (1)")
    pd.add_argument("--quiet", action="store_true",
                    help="no progress line for long recordings")
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
    _add_device_option(pd)
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
    _add_device_option(pw)
    pw.set_defaults(func=cmd_forward, speaker=None)

    px = sub.add_parser("export", parents=[debug],
                        help="write a trained model as ONNX and/or safetensors",
                        description="Export a trained model for deployment: an ONNX graph "
                        "(x (T, N, features) float32, lengths (N,) int64 -> log_probs, "
                        "output_lengths; the BiLSTM as ONNX LSTM nodes with peepholes; feature "
                        "settings, normaliser and vocabulary in its metadata) and/or its "
                        "weights and configuration as safetensors. Needs pip install "
                        "\"ctcseq[export]\".")
    px.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    px.add_argument("--onnx", metavar="FILE", help="write the ONNX graph to FILE")
    px.add_argument("--safetensors", metavar="FILE",
                    help="write the weights and configuration to FILE")
    px.add_argument("--opset", type=int, default=17, help="ONNX opset, 14 or newer (17)")
    px.set_defaults(func=cmd_export)

    pa = sub.add_parser("align", parents=[debug],
                        help="forced alignment: token (or word) times as CTM",
                        description="Align transcripts to audio with a trained model "
                        "(Viterbi path through the CTC trellis) and write CTM lines "
                        "'<utt> 1 <start s> <duration s> <symbol>'. Transcripts too long "
                        "for their audio, unreadable audio, and transcripts without "
                        "features are reported and skipped (exit status 1); alignments "
                        "that look poor (a transcript covering only part of the audio) "
                        "are reported as warnings.")
    pa.add_argument("model", help="model file (best.npz from 'ctcseq train')")
    pa.add_argument("audio", nargs="*", help="audio files (one with --transcript, several "
                    "with --text)")
    pa.add_argument("--transcript", help="the audio file's transcript, symbols separated by "
                    "spaces (e.g. phones)")
    pa.add_argument("--feats", help="align a feature directory instead (with --text)")
    pa.add_argument("--log-probs", help="align the network outputs that 'ctcseq forward' "
                    "saved (of the same model), with --text")
    pa.add_argument("--text", help="'<utt> <symbols>' transcripts for --feats and "
                    "--log-probs (e.g. data/test/text.phn), or for audio files, <utt> being "
                    "the file's path, name or name without extension (whitespace as '_')")
    pa.add_argument("--times", choices=["spans", "emission"],
                    help="CTM times: spans (each token from its first frame to the next "
                    "token's, or to a pause of 0.3 s or more; the default for audio files) "
                    "or emission (the frames on the path that emitted it, the CTC spike; "
                    "the default for --feats and --log-probs, which the recipes compare)")
    pa.add_argument("--format", choices=["ctm", "json"], default="ctm",
                    help="ctm lines (default), or one JSON object per transcript with "
                    "token and word times, the score per frame and a 'poor' flag")
    pa.add_argument("--words", action="store_true",
                    help="word times (models with a <space> token, e.g. characters)")
    pa.add_argument("--lexicon", help="lexicon file 'WORD tok tok ...': the transcripts are "
                    "words, spelt with their first pronunciation; writes word times")
    pa.add_argument("--out", help="write the CTM to this file instead of stdout")
    _add_speaker_options(pa)
    _add_device_option(pa)
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
        _stop_other_processes(130)
        return 130
    except (CtcseqError, *_USER_OS_ERRORS) as e:
        # the user's mistake or data: one line; anything else is a bug and
        # keeps its traceback
        if args.debug:
            _stop_other_processes(EXIT_USAGE, traceback=True)
            raise
        print(f"ctcseq {args.command}: error: {_one_line(e)}", file=sys.stderr)
        _stop_other_processes(EXIT_USAGE)
        return EXIT_USAGE
    except BaseException:
        _stop_other_processes(1, traceback=True)
        raise


def _stop_other_processes(code, traceback=False):
    """Under mpiexec, one process that stops would leave the others waiting
    in a collective operation for ever: stop them all."""
    from . import mpi
    comm = mpi._WORLD
    if comm is not None and comm.size > 1:
        if traceback:
            import traceback as tb
            tb.print_exc()
        sys.stderr.flush()
        comm.abort(code)


def _one_line(e):
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
