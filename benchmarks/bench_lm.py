"""Loading an n-gram LM: seconds and peak memory, now against another version.

Writes the model three ways into a scratch directory (``lm.json`` as saved now,
the row form older versions saved, ``lm.arpa``), then loads each in a fresh
subprocess and prints the seconds, the resident memory the model holds once
loaded and the peak RSS while loading (``VmHWM``, reset just before), and a
checksum of log-probabilities over a fixed sample of histories, so that the
versions can be seen to give the same model.  ``--before FILE`` runs the same
with another copy of ``ctcseq/lm.py`` (e.g. from ``git show HEAD~1:ctcseq/lm.py``)
on the forms it reads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lm.py SCRATCH_DIR \\
        --before /tmp/lm_before.py

Default model: the default recipe's phone 6-gram in the checkout.  Never
downloads anything.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LM = os.path.join(_ROOT, "exp/synth-default/model/lm.json")


def lm_module(before):
    if not before:
        from ctcseq import lm
        return lm
    spec = importlib.util.spec_from_file_location("ctcseq._lm_before", before)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rss_mb(field="VmRSS"):
    """Resident memory, or its peak (VmHWM) since the last reset_peak()."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e3
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Start the peak (VmHWM) afresh, so that it is the load's (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(args):
    mod = lm_module(args.before)
    # the kernels' compiled code, loaded before measuring (any decoder has it)
    mod.train_token_lm([[1, 2]], 3, order=2).log_prob(1, [2])
    rss0 = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    lm = mod.read_arpa(args.path) if args.path.endswith(".arpa") else mod.NGramLM.load(args.path)
    seconds = time.perf_counter() - t0
    peak = rss_mb("VmHWM")
    rng = np.random.default_rng(0)
    V = lm.num_symbols - 2 if lm.vocab is None else lm.num_symbols - 1
    hists = [list(rng.integers(0, V, rng.integers(0, lm.order))) for _ in range(2000)]
    syms = list(rng.integers(0, V, len(hists)))
    check = float(np.sum(np.nan_to_num(lm.log_probs(syms, hists), neginf=-1e3)))
    print(json.dumps({"seconds": seconds, "held_mb": rss_mb() - rss0, "rss_before_mb": rss0,
                      "peak_rss_mb": peak,
                      "check": check}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scratch", help="directory for the model's three forms")
    ap.add_argument("--lm", default=LM, help="an lm.json (default: the recipe's, %(default)s)")
    ap.add_argument("--before", help="another ctcseq/lm.py to compare")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.path = args.worker
        return worker(args)
    from ctcseq.lm import NGramLM
    os.makedirs(args.scratch, exist_ok=True)
    lm = NGramLM.load(args.lm)
    forms = {"json": os.path.join(args.scratch, "lm.json"),
             "json (older rows)": os.path.join(args.scratch, "lm_rows.json"),
             "arpa": os.path.join(args.scratch, "lm.arpa")}
    lm.save(forms["json"])
    d = {k: v for k, v in lm.to_dict().items() if k != "grams"}
    d["ngrams"] = [[list(g), None if lp == -np.inf else lp, bw]
                   for g, (lp, bw) in lm.entries.items()]
    with open(forms["json (older rows)"], "w") as f:
        json.dump(d, f)
    lm.write_arpa(forms["arpa"])
    n = sum(len(lp) for _, lp, _ in lm.grams)
    print(f"{args.lm}: order {lm.order}, {lm.num_symbols} symbols, {n} n-grams; "
          f"files {', '.join(f'{k} {os.path.getsize(p) / 1e6:.1f} MB' for k, p in forms.items())}")
    print("| lm.py | file | load s | held MB | peak RSS MB | RSS before MB | check |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for version, path in [("now", None)] + ([("before", args.before)] if args.before else []):
        for form, f in forms.items():
            if version == "before" and form == "json":
                continue                # the columns are new: older versions cannot read them
            cmd = [sys.executable, os.path.abspath(__file__), args.scratch, "--worker", f]
            if path:
                cmd += ["--before", path]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(out.stderr)
            r = json.loads(out.stdout.splitlines()[-1])
            print(f"| {version} | {form} | {r['seconds']:.2f} | {r['held_mb']:.0f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['rss_before_mb']:.0f} | {r['check']:.6f} |")


if __name__ == "__main__":
    main()
