"""How well forced-alignment times agree with eSpeak's own phoneme timing.

Usage: python compare_ctm.py ALIGNED.ctm REFERENCE.ctm [--tolerance 0.02]

Both files hold CTM lines '<utt> <channel> <start> <duration> <symbol>' with
the same symbols in the same order per utterance (the transcript); see
ctcseq.metrics.timing_agreement for the figures printed.
"""
import argparse

from ctcseq.datadir import read_ctm
from ctcseq.metrics import timing_agreement


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("aligned")
    ap.add_argument("reference")
    ap.add_argument("--tolerance", type=float, default=0.02, help="seconds (0.02)")
    args = ap.parse_args()
    r = timing_agreement(read_ctm(args.aligned), read_ctm(args.reference), args.tolerance)
    print(f"{r['labels']} labels in {r['utterances']} utterances ({r['skipped']} skipped)")
    print(f"aligned frame inside the reference span (+-{1000 * args.tolerance:.0f} ms): "
          f"{100 * r['inside']:.1f}%")
    print(f"|start - reference start|: median {1000 * r['median_start_error']:.0f} ms, "
          f"90th percentile {1000 * r['p90_start_error']:.0f} ms")


if __name__ == "__main__":
    main()
