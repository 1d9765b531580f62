"""Long recordings: accuracy of the stitched transcript, peak memory and speed.

Builds one long recording from all the utterances of a data directory
(``wav.scp`` order, pauses of 0.3-1.0 s drawn with a fixed seed, 16 kHz,
written once to a scratch directory), decodes it with :class:`ctcseq.Recognizer`
and reports, side by side in one run:

(a) the phone error rate of the stitched hypothesis against the concatenated
    references (``text.phn``), next to the PER of the same Recognizer decoding
    each utterance file separately, and of the recipe's own per-utterance
    result from features (``--recipe-hyp``).  The stitched hypothesis is
    scored per utterance: each token goes to the utterance whose span (pauses
    cut in the middle) holds its start time, then :func:`ctcseq.metrics.score`
    (an upper bound on the edit distance of the whole concatenation, which
    is too long to align in one piece);
(b) the peak RSS (``resource.getrusage``) of a subprocess that loads the model,
    warms up on one second of audio and transcribes the long file, and the
    long file three times over (a 3-hour file);
(c) the real-time factor (processing seconds / audio seconds) of each
    transcribe call, on ``--threads`` threads (default 2).

``--before FILE`` also runs (b) and (c) with another copy of
``ctcseq/recognize.py`` (e.g. the version before grouping) for comparison.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_long.py /tmp/long
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_long.py /tmp/long \\
        --beam 32 --no-3h

Never downloads anything.
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

# the default recipe's outputs, where `bash recipes/synth/run.sh` leaves them
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(_ROOT, "data/synth-default/test")
MODEL = os.path.join(_ROOT, "exp/synth-default/model/best.npz")
LM = os.path.join(_ROOT, "exp/synth-default/model/lm.json")
RECIPE_HYP = os.path.join(_ROOT, "exp/synth-default/decode_test/hyp_greedy.txt")
RATE = 16000


def utterances(data, limit=None):
    """[(utt, wav path)] in wav.scp order, and {utt: phones}."""
    from ctcseq.datadir import read_table, resolve_wav
    scp = read_table(os.path.join(data, "wav.scp"))
    refs = {k: v.split() for k, v in read_table(os.path.join(data, "text.phn")).items()}
    items = [(k, resolve_wav(data, v)) for k, v in scp.items()][:limit]
    return items, {k: refs[k] for k, _ in items}


def build(items, out, seed=0, copies=1):
    """Write the concatenation (once); returns the manifest
    [(utt, start s, end s)] of the first copy and the file's duration."""
    import soundfile as sf
    from ctcseq.segment import AudioSource
    man_path = out + ".json"
    if os.path.exists(out) and os.path.exists(man_path):
        with open(man_path) as f:
            m = json.load(f)
        return m["utterances"], m["duration"]
    rng = np.random.default_rng(seed)
    pauses = rng.uniform(0.3, 1.0, size=len(items) + 1)
    manifest, pos = [], 0
    tmp = out + ".tmp.wav"
    with sf.SoundFile(tmp, "w", RATE, 1, "PCM_16") as f:
        for c in range(copies):
            for (utt, path), pause in zip(items, pauses):
                f.write(np.zeros(int(round(pause * RATE)), np.float32))
                pos += int(round(pause * RATE))
                src = AudioSource(path)
                y = src.read(0, None, RATE)   # resampled if the file is not at 16 kHz
                if c == 0:
                    manifest.append((utt, pos / RATE, (pos + len(y)) / RATE))
                f.write(y)
                pos += len(y)
            f.write(np.zeros(int(round(pauses[-1] * RATE)), np.float32))
            pos += int(round(pauses[-1] * RATE))
    os.replace(tmp, out)
    with open(man_path, "w") as f:
        json.dump({"utterances": manifest, "duration": pos / RATE}, f)
    return manifest, pos / RATE


def split_by_time(tokens, manifest):
    """{utt: [symbols]}: each (symbol, start) goes to the utterance whose
    span, extended to the middle of the pauses around it, holds its start."""
    bounds = [(a[2] + b[1]) / 2 for a, b in zip(manifest, manifest[1:])]
    hyps = {u: [] for u, _, _ in manifest}
    idx = np.searchsorted(bounds, [t for _, t in tokens], side="right")
    for (sym, _), i in zip(tokens, idx):
        hyps[manifest[i][0]].append(sym)
    return hyps


def per(refs, hyps):
    from ctcseq.metrics import score
    total, _ = score(refs, hyps)
    return 100 * total.rate, total


def recognizer_class(before):
    if not before:
        from ctcseq import Recognizer
        return Recognizer
    # the other copy imports ctcseq's modules relatively: load it inside the package
    spec = importlib.util.spec_from_file_location("ctcseq._recognize_before", before)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.Recognizer


def worker(args):
    """In a subprocess: transcribe, print one JSON line."""
    cls = recognizer_class(args.before)
    opts = json.loads(args.options)
    lm = opts.pop("lm", None)
    rec = cls.load(args.model, lm=lm, **opts)
    rec.transcribe(np.zeros(RATE, np.float32) + 0.1 * np.sin(np.arange(RATE) * 0.05),
                   sample_rate=RATE)   # compile/load the kernels before measuring
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inputs = json.loads(args.inputs)
    t0 = time.perf_counter()
    res = rec.transcribe(inputs if len(inputs) > 1 else inputs[0])
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = res if isinstance(res, list) else [res]
    print(json.dumps({
        "seconds": seconds, "rss_before_mb": rss0, "peak_rss_mb": rss,
        "audio_seconds": sum(r.duration for r in res),
        "results": [{"utt": r.utterance, "error": r.error,
                     "tokens": [(t.symbol, t.start) for t in r.tokens]} for r in res]}))


def run_worker(args, inputs, options, before=None):
    env = dict(os.environ)
    for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[v] = str(args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model,
           "--inputs", json.dumps(inputs), "--options", json.dumps(options)]
    if before:
        cmd += ["--before", before]
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scratch", nargs="?", help="directory for the long files (written once)")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--lm", default=LM)
    ap.add_argument("--recipe-hyp", default=RECIPE_HYP)
    ap.add_argument("--limit", type=int, help="only the first N utterances")
    ap.add_argument("--beam", type=int, default=0, help="also beam search of this width "
                    "with --lm, alpha 0.7, beta 1.5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--segment", default="{}", help="JSON options of ctcseq.segment.scan")
    ap.add_argument("--no-3h", action="store_true", help="skip the 3-copy file")
    ap.add_argument("--no-per-utt", action="store_true", help="skip decoding each file")
    ap.add_argument("--before", help="another ctcseq/recognize.py to compare (memory, speed)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--options", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.scratch:
        ap.error("give a scratch directory")
    os.makedirs(args.scratch, exist_ok=True)
    items, refs = utterances(args.data, args.limit)
    tag = f"{os.path.basename(os.path.normpath(args.data))}-{len(items)}"
    long1 = os.path.join(args.scratch, f"long-{tag}.wav")
    manifest, dur1 = build(items, long1)
    print(f"# {len(items)} utterances of {args.data}: {long1} ({dur1 / 3600:.2f} h)")
    seg = json.loads(args.segment)
    configs = [("greedy", {"segment": seg})]
    if args.beam:
        configs.append((f"beam {args.beam} + LM", {"segment": seg, "beam": args.beam,
                                                   "lm": args.lm, "alpha": 0.7, "beta": 1.5}))
    rows = []
    if args.recipe_hyp and os.path.exists(args.recipe_hyp) and args.limit is None:
        from ctcseq.datadir import read_table
        rh = {k: v.split() for k, v in read_table(args.recipe_hyp).items() if k in refs}
        if len(rh) == len(refs):
            rows.append(("recipe, per utterance from features (greedy)", per(refs, rh)[0],
                         None, None))
    for name, opts in configs:
        if not args.no_per_utt:
            r = run_worker(args, [p for _, p in items], opts)
            hyps = {u: [s for s, _ in x["tokens"]] for u, x in
                    zip(refs, r["results"])}
            rows.append((f"{name}: each utterance file", per(refs, hyps)[0],
                         r["seconds"] / r["audio_seconds"], r["peak_rss_mb"]))
        r = run_worker(args, [long1], opts)
        p, tot = per(refs, split_by_time(r["results"][0]["tokens"], manifest))
        rows.append((f"{name}: stitched, {dur1 / 3600:.2f} h file", p,
                     r["seconds"] / r["audio_seconds"], r["peak_rss_mb"]))
        print(f"# {name}: stitched S/D/I {tot.sub}/{tot.dele}/{tot.ins} of {tot.ref_len}; "
              f"RSS before the call {r['rss_before_mb']:.0f} MB")
    mem = [("1 copy", long1, dur1)]
    if not args.no_3h:
        long3 = os.path.join(args.scratch, f"long3-{tag}.wav")
        _, dur3 = build(items, long3, copies=3)
        mem.append(("3 copies", long3, dur3))
    versions = [("now", None)] + ([("before", args.before)] if args.before else [])
    mrows = []
    for label, path, dur in mem:
        for vname, vpath in versions:
            r = run_worker(args, [path], configs[0][1], before=vpath)
            mrows.append((label, dur, vname, r))
    print()
    print("| decoding | PER % | RTF | peak RSS MB |")
    print("|---|---|---|---|")
    for name, p, rtf, rss in rows:
        print(f"| {name} | {p:.2f} | {'' if rtf is None else f'{rtf:.4f}'} | "
              f"{'' if rss is None else f'{rss:.0f}'} |")
    print()
    print("| file (greedy) | hours | recognize.py | transcribe s | RTF | RSS before MB | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for label, dur, vname, r in mrows:
        print(f"| {label} | {dur / 3600:.2f} | {vname} | {r['seconds']:.1f} | "
              f"{r['seconds'] / r['audio_seconds']:.4f} | {r['rss_before_mb']:.0f} | "
              f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
