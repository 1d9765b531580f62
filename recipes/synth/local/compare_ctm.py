"""How well forced-alignment times agree with eSpeak's own phoneme timing.

Usage: python compare_ctm.py ALIGNED.ctm REFERENCE.ctm [--tolerance 0.02]

Both files hold CTM lines '<utt> <channel> <start> <duration> <symbol>' with
the same symbols in the same order per utterance (the transcript). CTC
alignments are peaky (a label often occupies one frame), so the main figure
is the share of labels whose aligned frame lies inside the reference span
(widened by the tolerance); the deviation of start times is printed too.
"""
import argparse
import sys
from collections import defaultdict

import numpy as np


def read_ctm(path):
    out = defaultdict(list)
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 5:
                sys.exit(f"{path}:{lineno}: expected 5 fields")
            out[parts[0]].append((float(parts[2]), float(parts[3]), parts[4]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("aligned")
    ap.add_argument("reference")
    ap.add_argument("--tolerance", type=float, default=0.02, help="seconds (0.02)")
    args = ap.parse_args()
    hyp, ref = read_ctm(args.aligned), read_ctm(args.reference)
    inside, dev, skipped = [], [], 0
    for utt, segs in hyp.items():
        rsegs = ref.get(utt, [])
        if [s[2] for s in segs] != [s[2] for s in rsegs]:
            skipped += 1
            continue
        for (start, dur, _), (rstart, rdur, _) in zip(segs, rsegs):
            centre = start + dur / 2
            inside.append(rstart - args.tolerance <= centre <= rstart + rdur + args.tolerance)
            dev.append(abs(start - rstart))
    if not dev:
        sys.exit("no utterance with matching symbols in both files")
    print(f"{len(dev)} labels in {len(hyp) - skipped} utterances ({skipped} skipped)")
    print(f"aligned frame inside the reference span (+-{1000 * args.tolerance:.0f} ms): "
          f"{100 * np.mean(inside):.1f}%")
    print(f"|start - reference start|: median {1000 * np.median(dev):.0f} ms, "
          f"90th percentile {1000 * np.percentile(dev, 90):.0f} ms")


if __name__ == "__main__":
    main()
