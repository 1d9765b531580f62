"""Inference speed: recognising audio files with ctcseq.Recognizer, and its
network forward against the same exported model in onnxruntime.

Side by side in one run, on ``--threads`` threads (default 2; Numba, BLAS and
onnxruntime's intra-op pool): the synthetic test set's files (all 1233, or
the first ``--limit``) are recognised with :class:`ctcseq.Recognizer`,
greedy, then with beam search (width 32) and the phone LM (alpha 0.7, beta
1.5).  During the greedy pass every padded batch the Recognizer sends to the
network (``CTCModel.infer_log_probs`` when the model has it, else
``log_probs``) is also run, right after, by onnxruntime on the model
exported with :func:`ctcseq.export.export_onnx`: the same batches, timed
separately, outputs compared.  Each of the two timed forwards starts after a
200 ms rest (not counted anywhere), so neither pays for the other's
still-spinning BLAS threads.  Reported as real-time factors (processing
seconds / audio seconds) and ratios:

* features: reading the pieces, resampling, log-mel + deltas;
* network: the forward on the padded batches (ctcseq vs onnxruntime);
* decoding: greedy or beam search + LM on the network's outputs;
* total: the whole ``transcribe`` call (detector, normalisation and
  stitching included; onnxruntime's time excluded).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_infer.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_infer.py --limit 300

Never downloads anything.
"""
import argparse
import os
import sys


def _threads_from_argv(default=2):
    # the thread pools are sized when numba / numpy load: before importing them
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return str(default)


for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _threads_from_argv()

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

# the default recipe's outputs, where `bash recipes/synth/run.sh` leaves them
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(_ROOT, "data/synth-default/test")
MODEL = os.path.join(_ROOT, "exp/synth-default/model/best.npz")
LM = os.path.join(_ROOT, "exp/synth-default/model/lm.json")


class Timed:
    """Wraps a Recognizer's stages to time them (and to run onnxruntime on
    the network's batches)."""

    def __init__(self, rec, session=None):
        self.rec, self.session = rec, session
        self.t = dict(features=0.0, network=0.0, onnx=0.0, decoding=0.0, rest=0.0)
        self.batches, self.frames, self.padded, self.max_diff = 0, 0, 0, 0.0
        forward, pieces, decode = rec._forward, rec._pieces, rec._decode_pieces

        def timed_forward(x, lengths):
            if self.session is not None:
                self._rest()
            t0 = time.perf_counter()
            lp = forward(x, lengths)
            t1 = time.perf_counter()
            self.t["network"] += t1 - t0
            self.batches += 1
            self.frames += int(np.sum(lengths))
            self.padded += x.shape[0] * x.shape[1]
            if self.session is not None:
                from ctcseq.export import onnx_log_probs
                self._rest()
                t1 = time.perf_counter()
                olp, out_len = onnx_log_probs(self.session, x, lengths)
                self.t["onnx"] += time.perf_counter() - t1
                for n, k in enumerate(out_len):   # valid steps only
                    self.max_diff = max(self.max_diff,
                                        float(np.max(np.abs(olp[:k, n] - lp[:k, n]))))
            return lp

        def timed_pieces(*a, **k):
            it = pieces(*a, **k)
            while True:
                t0 = time.perf_counter()
                try:
                    p = next(it)
                except StopIteration:
                    self.t["features"] += time.perf_counter() - t0
                    return
                self.t["features"] += time.perf_counter() - t0
                yield p

        def timed_decode(*a, **k):
            t0 = time.perf_counter()
            out = decode(*a, **k)
            self.t["decoding"] += time.perf_counter() - t0
            return out

        rec._forward, rec._pieces, rec._decode_pieces = (timed_forward, timed_pieces,
                                                          timed_decode)

    def run(self, files):
        t0 = time.perf_counter()
        res = self.rec.transcribe(files)
        self.t["total"] = time.perf_counter() - t0 - self.t["onnx"] - self.t["rest"]
        return res

    def _rest(self, seconds=0.2):
        """Let the cores go quiet before a timed forward: the BLAS threads of
        what ran just before may still be spinning (OpenBLAS's do, for up to
        ~0.1 s), and would slow down whichever forward comes next."""
        t0 = time.perf_counter()
        time.sleep(seconds)
        self.t["rest"] += time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--lm", default=LM)
    ap.add_argument("--limit", type=int, help="only the first N files of wav.scp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=32)
    args = ap.parse_args()

    from ctcseq import Recognizer
    from ctcseq.datadir import read_table, resolve_wav
    from ctcseq.export import export_onnx, onnx_session
    from ctcseq.metrics import score

    scp = read_table(os.path.join(args.data, "wav.scp"))
    refs = {k: v.split() for k, v in read_table(os.path.join(args.data, "text.phn")).items()}
    keys = list(scp)[:args.limit]
    files = [resolve_wav(args.data, scp[k]) for k in keys]
    greedy = Recognizer.load(args.model)
    model = greedy.model
    fwd_name = "infer_log_probs" if hasattr(model, "infer_log_probs") else "log_probs"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model, path)
        session = onnx_session(path, threads=args.threads)
        beam = Recognizer(model, beam=args.beam, lm=args.lm, alpha=0.7, beta=1.5)
        for rec in (greedy, beam):   # compile / load the kernels, warm the caches
            rec.transcribe(files[:4])
        from ctcseq.export import onnx_log_probs
        from ctcseq.dataset import padded_batches
        for _, xb, lb in padded_batches([(0, np.zeros((300, model.input_size)))],
                                        np.float32):
            onnx_log_probs(session, xb, lb)
        g = Timed(greedy, session)
        res = g.run(files)
        b = Timed(beam)
        res_b = b.run(files)
    audio = sum(r.duration for r in res)
    errors = [r.utterance for r in res + res_b if r.error]
    if errors:
        sys.exit(f"decoding failed: {errors[:3]}")

    def per(rs):
        total, _ = score({k: refs[k] for k in keys}, {k: r.symbols for k, r in zip(keys, rs)})
        return 100 * total.rate

    print(f"# {len(files)} files of {args.data} ({'all' if args.limit is None else 'first'}"
          f" {len(files)}), {audio:.0f} s of audio; {args.threads} threads; model "
          f"{model.dtype} stride {model.stride}; ctcseq forward: CTCModel.{fwd_name}")
    print(f"# network batches: {g.batches}, {g.frames} frames ({g.padded} padded); "
          f"max |ctcseq - onnxruntime| log-prob {g.max_diff:.2e}")
    print()
    print("| stage | ctcseq s | RTF | onnxruntime s | RTF | ctcseq / onnxruntime |")
    print("|---|---|---|---|---|---|")
    t = g.t
    print(f"| network forward (same padded batches) | {t['network']:.2f} | "
          f"{t['network'] / audio:.5f} | {t['onnx']:.2f} | {t['onnx'] / audio:.5f} | "
          f"{t['network'] / t['onnx']:.2f} |")
    print()
    print("| Recognizer | PER % | features RTF | network RTF | decoding RTF | "
          "other RTF | total RTF | total s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tm, rs in (("greedy", g, res), (f"beam {args.beam} + phone LM", b, res_b)):
        t = tm.t
        other = t["total"] - t["features"] - t["network"] - t["decoding"]
        print(f"| {name} | {per(rs):.2f} | {t['features'] / audio:.5f} | "
              f"{t['network'] / audio:.5f} | {t['decoding'] / audio:.5f} | "
              f"{other / audio:.5f} | {t['total'] / audio:.5f} | {t['total']:.1f} |")
    t = g.t
    with_ort = t["total"] - t["network"] + t["onnx"]
    print()
    print(f"greedy with the network in onnxruntime instead: total RTF "
          f"{with_ort / audio:.5f} (ctcseq {t['total'] / audio:.5f}, ratio "
          f"{t['total'] / with_ort:.2f})")


if __name__ == "__main__":
    main()
