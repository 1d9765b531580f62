"""Data-parallel training throughput: 1 process x 2 threads against 2 MPI
processes x 1 thread on this machine, the time in Allreduce per step, and
from those a model of larger runs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_scale.py

Both runs train the default recipe's model (3 x 250 peephole BiLSTM on pairs
of stacked 123-value frames, 41 classes, Adam, clip 5, batches of 4000
frames) on the same random utterances of 2-7 s, for the same batches, with
ctcseq.train.Trainer; the first two batches (compilation, warm-up) are not
counted.  Prints frames per second, seconds per step, and the Allreduce time
per step (process 0's view: it includes waiting for the slower process).

The model at the end is arithmetic on these figures, not a measurement:
ring Allreduce of B bytes on P processes costs 2 (P-1)/P B / bandwidth +
2 (P-1) latency; compute per step is frames x (seconds per frame on one
core) / P.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def _examples(n_utts, seed=0):
    from ctcseq.train import Example
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_utts):
        T = int(rng.integers(200, 700))
        labels = rng.integers(1, 41, size=T // 10)
        out.append(Example(f"u{i:04d}", rng.standard_normal((T, 123)).astype(np.float32),
                           labels.astype(np.int64)))
    return out


def worker(args):
    import numba

    from ctcseq.model import CTCModel
    from ctcseq.mpi import world
    from ctcseq.train import TrainConfig, Trainer
    numba.set_num_threads(args.threads)
    comm = world()
    train = _examples(args.utts)
    model = CTCModel(123, 250, 3, 41, stride=2, seed=0)
    cfg = TrainConfig(batch_frames=4000, max_epochs=1, checkpoint_every=0, clip=5.0,
                      lr=2e-3)
    out = tempfile.mkdtemp(prefix="bench_scale_")
    trainer = Trainer(model, train, [], out, cfg, progress=False, comm=comm)
    marks, reduce_s = [], []
    real_step = trainer._loss_and_grads

    def timed_step(*a, **k):
        marks.append(time.perf_counter())
        return real_step(*a, **k)

    trainer._loss_and_grads = timed_step
    if trainer.comm is not None:
        real_reduce = trainer.comm.allreduce_sum

        def timed_reduce(buf):
            t0 = time.perf_counter()
            r = real_reduce(buf)
            reduce_s.append(time.perf_counter() - t0)
            return r
        trainer.comm.allreduce_sum = timed_reduce
    # the batches, as the trainer makes them, for the frame counts
    from ctcseq.train import make_batches
    batches = make_batches([e.feats.shape[0] for e in train], cfg.batch_frames,
                           np.random.default_rng([cfg.seed, 0]))
    trainer.run(log=lambda *_: None)
    marks.append(time.perf_counter())   # after the last step (+ its optimiser update)
    skip = 2
    frames = sum(int(sum(train[i].feats.shape[0] for i in b)) for b in batches[skip:])
    seconds = marks[-1] - marks[skip]
    if comm.is_root:
        print(json.dumps({"processes": comm.size, "threads": args.threads,
                          "steps": len(batches) - skip, "frames": frames,
                          "seconds": seconds,
                          "allreduce_s": float(np.mean(reduce_s[skip:])) if reduce_s else 0.0,
                          "weights": int(sum(p.size for p in model.params.values()))}))
    shutil.rmtree(out, ignore_errors=True)


def _run(cmd, threads):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    # BLAS gets the same threads: 2 processes must not run 2 BLAS threads each
    env["NUMBA_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = \
        str(threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ring_allreduce_s(nbytes, procs, bandwidth_bits, latency_s=20e-6):
    if procs < 2:
        return 0.0
    return 2 * (procs - 1) / procs * nbytes * 8 / bandwidth_bits + 2 * (procs - 1) * latency_s


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--utts", type=int, default=120, help="utterances (120: ~50k frames)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    me = [sys.executable, os.path.abspath(__file__), "--worker", "--utts", str(args.utts)]
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep
                           + os.environ.get("PATH", ""))
    if mpiexec is None:
        sys.exit("needs mpiexec: pip install mpi4py mpich")
    one = _run(me + ["--threads", "2"], 2)
    two = _run([mpiexec, "-n", "2"] + me + ["--threads", "1"], 1)
    one1 = _run(me + ["--threads", "1"], 1)
    print(f"recipe model ({one['weights'] / 1e6:.2f}M weights), {one['steps']} steps of "
          f"~{one['frames'] / one['steps']:.0f} frames after 2 warm-up steps\n")
    print(f"{'run':<26}{'frames/s':>10}{'s/step':>9}{'Allreduce ms/step':>19}")
    rows = [("1 process x 1 thread", one1), ("1 process x 2 threads", one),
            ("2 processes x 1 thread", two)]
    for name, r in rows:
        print(f"{name:<26}{r['frames'] / r['seconds']:>10.0f}{r['seconds'] / r['steps']:>9.3f}"
              f"{1e3 * r['allreduce_s']:>19.2f}")
    fps = {name: r["frames"] / r["seconds"] for name, r in rows}
    print(f"\n2 processes / 1 process x 2 threads: "
          f"{fps['2 processes x 1 thread'] / fps['1 process x 2 threads']:.2f}x; "
          f"2 processes / 1 process x 1 thread: "
          f"{fps['2 processes x 1 thread'] / fps['1 process x 1 thread']:.2f}x; "
          f"Allreduce {100 * two['allreduce_s'] * two['steps'] / two['seconds']:.1f}% of "
          f"the 2-process step")

    # -- the model on paper ------------------------------------------------
    from ctcseq.model import CTCModel
    sec_per_frame = one1["seconds"] / one1["frames"]        # one core, recipe model
    recipe_w = one["weights"]
    graves_w = sum(v.size for v in CTCModel(123, 250, 5, 62).params.values())
    # compute scales with the weights the frames pass through (both BiLSTMs
    # of 250 units: per-frame cost ~ weights); Graves's runs at stride 1, so
    # twice the steps per second of audio
    models = [("recipe 3x250, stride 2", recipe_w, sec_per_frame),
              ("Graves 2013 CTC-5L-250H", graves_w,
               sec_per_frame * graves_w / recipe_w * 2)]
    bw = 25e9
    print(f"\nModel: {bw / 1e9:.0f} Gb/s, ring Allreduce of float32 gradients, 20 us "
          f"latency per hop, one process per core at {1 / sec_per_frame:.0f} frames/s "
          f"(measured, 1 thread); compute split evenly.")
    for name, w, spf in models:
        nbytes = 4 * w
        print(f"\n{name}: {w / 1e6:.2f}M weights, {nbytes / 1e6:.1f} MB per Allreduce, "
              f"{spf * 1e3:.3f} ms per frame per core")
        print(f"{'cores':>6}{'Allreduce ms':>14}{'frames/s @4000/step':>21}{'efficiency':>12}"
              f"{'frames/step for 80%':>21}")
        for P in (8, 64, 512):
            t_ar = ring_allreduce_s(nbytes, P, bw)
            step = 4000 * spf / P + t_ar
            eff = (4000 * spf / P) / step
            # per-step frames at which compute is 4x communication (80% efficiency)
            need = 4 * t_ar / spf * P
            print(f"{P:>6}{1e3 * t_ar:>14.2f}{4000 / step:>21.0f}{100 * eff:>11.0f}%"
                  f"{need:>21.0f}")


if __name__ == "__main__":
    main()
