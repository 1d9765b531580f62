"""The model's training pieces on one CUDA GPU: ctcseq against PyTorch.

Side by side in one run, on the same inputs and weights, timed with a device
synchronisation before and after each timed call (``time.perf_counter``;
median over ``--repeats`` after one warm-up call, which is not timed):

1. BiLSTM forward + backward (ctcseq ``BiLSTM(...).to("cuda")`` with
   peepholes; ``backward`` with the input gradient) against
   ``torch.nn.LSTM(bidirectional=True)`` on cuDNN (``y.backward(dy)`` with
   ``x.requires_grad``), all sequences of full length, float32, in two rows:
   TF32 off (torch's ``allow_tf32`` flags and CuPy's float32 compute type,
   which ``CUPY_TF32`` sets) and TF32 on.  Shapes (N sequences, T frames,
   input, hidden per direction, layers) and the targets for ctcseq / cuDNN:

       A  N 16, T 500,  512 -> 512,  1 layer     <= 0.7
       B  N 32, T 300,  123 -> 256,  3 layers    <= 1.0
       C  N 64, T 1000, 1024 -> 1024, 1 layer    <= 1.3

   Error: the largest *relative* error of ctcseq's float32 output, input
   gradient and parameter gradients, each measured as max|a - ref| /
   max|ref| over the array, against a float64 reference that shares no
   code with ctcseq: ``torch.nn.LSTM`` in float64 on the same device, with
   ctcseq's peephole weights zeroed for that run (torch has none; their
   gradients are therefore not checked).  cuDNN's own float32 error against
   the same reference is printed beside it.  A shape that fails (e.g. a grid
   larger than the GPU can hold for one cooperative launch, see
   ``ctcseq.kernels.lstm_cuda.blocks_for``) prints its error in the row.

2. One Adam update of 50M float32 weights: ``ctcseq.Adam(device="cuda")``
   (float64 moments) against ``torch.optim.Adam(fused=True)`` (float32
   moments); target <= 1.1x.  Also: the largest difference of the two
   updates from the same state, in units of the learning rate.

3. Training rate of the recipe's model, ``CTCModel(123, 250, 3, 41,
   stride=2)``, peepholes zeroed so that the other sides compute the same
   function: one step is ``loss_and_grads`` + ``clip_grad_norm(5)`` +
   ``Adam.step`` on a host batch of 16 random utterances of 200-250 frames
   (~3600 frames; random targets of 20-40 labels), as the Trainer does it.
   Frames (10 ms input frames) per second on the GPU, on the CPU (a few
   steps, same run) and for the same model in PyTorch on cuDNN
   (``nn.LSTM`` + ``Linear`` + ``log_softmax`` + ``F.ctc_loss`` +
   ``clip_grad_norm_`` + ``Adam(fused=True)``, packed variable lengths,
   TF32 off); target ctcseq >= 0.8x PyTorch.  The first-step losses of the
   three are printed: the same weights and batch give the same loss.

Every section runs in its own try/except (an error is printed and the next
section runs); ``--budget`` seconds is a global time guard: timing loops stop
early and later sections are skipped once it is spent.

    python benchmarks/bench_cuda_lstm.py             # about 4 minutes on an H200
    python benchmarks/bench_cuda_lstm.py --quick     # fewer repeats
    python benchmarks/bench_cuda_lstm.py --only A,adam,train
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda_lstm.py --tiny
        # sanity without a GPU: tiny shapes, ctcseq's "cuda" under Numba's
        # simulator and torch on the CPU; the figures mean nothing
"""
import argparse
import os
import platform
import sys
import time
import traceback

import numpy as np

SHAPES = {"A": dict(N=16, T=500, I=512, H=512, L=1, target=0.7),
          "B": dict(N=32, T=300, I=123, H=256, L=3, target=1.0),
          "C": dict(N=64, T=1000, I=1024, H=1024, L=1, target=1.3)}
# the simulator runs each GPU thread as an OS thread and each step's grid sync
# among them: a handful of units and steps
TINY_SHAPES = {"A": dict(N=2, T=5, I=3, H=4, L=1, target=0.7),
               "B": dict(N=3, T=4, I=2, H=3, L=3, target=1.0),
               "C": dict(N=2, T=6, I=4, H=4, L=1, target=1.3)}
MODEL = dict(input_size=123, hidden_size=250, num_layers=3, num_classes=41, stride=2)
TINY_MODEL = dict(input_size=3, hidden_size=3, num_layers=2, num_classes=5, stride=2)
SECTIONS = ("A", "B", "C", "adam", "train")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (the GPU session's run)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections out of {','.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed calls per measurement (default 5; 2 with --quick)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which timing stops and sections are skipped "
                        "(default 230; 150 with --quick)")
    p.add_argument("--adam-size", type=int, default=50_000_000)
    p.add_argument("--tiny", action="store_true",
                   help="tiny shapes for a sanity run under NUMBA_ENABLE_CUDASIM=1")
    a = p.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in SECTIONS]
    if bad:
        p.error(f"--only: unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
    if a.repeats is None:
        a.repeats = 1 if a.tiny else 2 if a.quick else 5
    if a.repeats < 1:
        p.error("--repeats must be >= 1")
    if a.budget is None:
        a.budget = 150.0 if a.quick else 230.0
    if a.tiny:
        a.adam_size = min(a.adam_size, 1000)
    return a


# -- the environment -----------------------------------------------------------------

class Env:
    """The devices of the run: ctcseq's placement, torch's device, the clock."""

    def __init__(self, args):
        import torch

        import ctcseq.device
        self.args, self.torch = args, torch
        self.place = ctcseq.device.placement("cuda")
        self.cupy = None if self.place.sim else self.place.xp
        self.tdev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.place.sim and not args.tiny:
            raise SystemExit("under the CUDA simulator only --tiny shapes finish")
        if self.tdev.type != "cuda" and not args.tiny:
            raise SystemExit("torch sees no CUDA device: this benchmark compares GPUs "
                             "(--tiny runs it on the CPU under the simulator, as a check)")
        self.t0 = time.monotonic()

    def left(self, reserve=0.0):
        """Seconds of the budget left, keeping ``reserve`` for later sections."""
        return self.args.budget - (time.monotonic() - self.t0) - reserve

    def sync(self):
        """Wait for all queued GPU work of both frameworks."""
        if self.cupy is not None:
            self.cupy.cuda.Device().synchronize()
        if self.tdev.type == "cuda":
            self.torch.cuda.synchronize()

    def free(self):
        if self.cupy is not None:
            self.sync()
            self.cupy.get_default_memory_pool().free_all_blocks()
        if self.tdev.type == "cuda":
            self.torch.cuda.empty_cache()

    def tf32(self, on):
        """TF32 on or off for torch's matmul and cuDNN and for CuPy's float32
        products (ctcseq's cuBLAS calls); returns what CuPy then uses."""
        torch = self.torch
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        if self.cupy is None:
            return "n/a (simulator)"
        try:
            # CUPY_TF32 is read once, at the first float32 product; CuPy's
            # (unexported) set_compute_type switches it afterwards
            from cupy._core import _routines_linalg as rl
            rl.set_compute_type(np.float32, getattr(rl, "COMPUTE_TYPE_TF32", 7) if on
                                else getattr(rl, "COMPUTE_TYPE_DEFAULT", 1))
            got = rl.get_compute_type(np.float32)
            return {1: "default", 7: "TF32"}.get(int(got), f"compute type {got}")
        except Exception as e:  # noqa: BLE001 - then CuPy keeps what CUPY_TF32 chose
            return f"unknown ({one_line(e)[:60]}; CUPY_TF32={os.environ.get('CUPY_TF32')})"

    def describe(self):
        torch = self.torch
        lines = [f"Python {platform.python_version()}, numpy {np.__version__}, torch "
                 f"{torch.__version__}"]
        try:
            from importlib.metadata import version

            import numba
            lines.append(f"numba {numba.__version__}, numba-cuda {version('numba-cuda')}, "
                         f"simulator {self.place.sim}")
        except Exception as e:  # noqa: BLE001 - informative only
            lines.append(f"numba: {e}")
        try:
            if self.cupy is not None:
                cp = self.cupy
                props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
                name = props["name"]
                lines.append(f"GPU {name.decode() if isinstance(name, bytes) else name}, "
                             f"{props['multiProcessorCount']} SMs, CUDA runtime "
                             f"{cp.cuda.runtime.runtimeGetVersion()}, driver "
                             f"{cp.cuda.runtime.driverGetVersion()}, CuPy {cp.__version__}")
            if self.tdev.type == "cuda":
                lines.append(f"torch on {torch.cuda.get_device_name()} (CUDA "
                             f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")
        except Exception as e:  # noqa: BLE001 - informative only
            lines.append(f"device description failed: {one_line(e)}")
        else:
            lines.append("torch on the CPU (--tiny sanity run: the 'cuDNN' columns are torch "
                         "CPU, the figures mean nothing)")
        return "\n".join(lines)


def timed(env, fn, repeats, reserve=0.0, warmup=True):
    """(median seconds, calls timed) of ``fn()`` over up to ``repeats`` calls
    after one untimed warm-up call (unless the caller made it), the device
    synchronised around each; at least one timed call, fewer than
    ``repeats`` once the budget (less ``reserve``) is spent."""
    if warmup:
        fn()
    env.sync()
    times = []
    for i in range(repeats):
        if i and env.left(reserve) < 0:
            break
        t0 = time.perf_counter()
        fn()
        env.sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def host(a):
    """A device array (CuPy, torch, NumPy) as a float64 NumPy array."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get"):
        a = a.get()
    return np.asarray(a, dtype=np.float64)


def rel_err(got, ref):
    """max|got - ref| / max|ref|, over the whole array."""
    got, ref = host(got), host(ref)
    scale = np.abs(ref).max()
    return float(np.abs(got - ref).max() / scale) if scale > 0 else float(np.abs(got).max())


def one_line(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:400]


# -- 1. BiLSTM forward + backward --------------------------------------------------------

def torch_lstm(env, params, I, H, L, dtype):
    """torch.nn.LSTM(bidirectional=True) with ctcseq's (host) weights, peepholes left out."""
    torch = env.torch
    m = torch.nn.LSTM(I, H, L, bidirectional=True)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(params[name], np.float64)))
    return m.to(device=env.tdev, dtype=dtype)


def torch_fwd_bwd(m, x, dy):
    """(y, dx, {name: grad}) of one forward + backward of y.backward(dy)."""
    x = x.detach().clone().requires_grad_()
    m.zero_grad(set_to_none=True)
    y, _ = m(x)
    y.backward(dy)
    return y, x.grad, {n: p.grad for n, p in m.named_parameters()}


def bench_shape(env, name, shp, reserve):
    import ctcseq
    torch = env.torch
    args, place = env.args, env.place
    N, T, I, H, L = (shp[k] for k in "NTIHL")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, 2 * H)).astype(np.float32)
    lengths = np.full(N, T)
    ours = ctcseq.BiLSTM(I, H, L, peepholes=True, seed=0)
    hp = {k: v.copy() for k, v in ours.params.items()}   # host float32 weights
    ours.to("cuda")
    xd, dyd = place.asarray(x), place.asarray(dy)   # the same inputs for every side
    xt = torch.from_numpy(x).to(env.tdev)
    dyt = torch.from_numpy(dy).to(env.tdev)
    peeps = [k for k in hp if k.startswith("weight_peep")]

    # the float64 reference: torch, no peepholes
    ref64 = torch_fwd_bwd(torch_lstm(env, hp, I, H, L, torch.float64), xt.double(), dyt.double())
    t32 = torch_lstm(env, hp, I, H, L, torch.float32)

    def ours_fb():
        ours.forward(xd, lengths)
        return ours.backward(dyd)

    def torch_fb():
        return torch_fwd_bwd(t32, xt, dyt)

    def errors(y, dx, grads):
        errs = [rel_err(y, ref64[0]), rel_err(dx, ref64[1])]
        errs += [rel_err(grads[k], g) for k, g in ref64[2].items()]
        return max(errs)

    for tf32 in (False, True):
        label = f"{name} tf32 {'on' if tf32 else 'off':3}".ljust(12)
        try:
            if env.left(reserve) < 0:
                print(f"{label} | skipped: time guard (--budget {args.budget:.0f} s)")
                continue
            cupy_mode = env.tf32(tf32)
            # error run: peepholes zeroed (the reference has none), then restored
            for k in peeps:
                ours.params[k][...] = 0
            y = ours.forward(xd, lengths)
            dx = ours.backward(dyd)
            e_ours = errors(y, dx, {k: ours.grads[k] for k in ref64[2]})
            for k in peeps:
                ours.params[k][...] = place.asarray(hp[k])
            e_torch = errors(*torch_fb())
            s_ours, n_ours = timed(env, ours_fb, args.repeats, reserve)
            s_torch, n_torch = timed(env, torch_fb, args.repeats, reserve)
            ratio = s_ours / s_torch
            speed = "ok" if ratio <= shp["target"] else "MISSED"
            error = "ok" if e_ours <= 1e-4 else "MISSED"
            print(f"{label} | {1e3 * s_ours:10.2f} | {1e3 * s_torch:10.2f} | {ratio:7.2f} "
                  f"<= {shp['target']:.1f} {speed:6} | {e_ours:9.2e} {error:6} "
                  f"| {e_torch:9.2e} | {n_ours}/{n_torch} | {cupy_mode}")
        except Exception as e:  # noqa: BLE001 - a shape that fails must not stop the others
            print(f"{label} | FAILED {one_line(e)}")
            traceback.print_exc(file=sys.stderr)
        sys.stdout.flush()
    env.tf32(False)


# -- 2. Adam ---------------------------------------------------------------------------

def bench_adam(env, reserve):
    import ctcseq
    torch = env.torch
    args, place = env.args, env.place
    n = args.adam_size
    rng = np.random.default_rng(1)
    p0 = (0.1 * rng.standard_normal(n)).astype(np.float32)
    g0 = rng.standard_normal(n).astype(np.float32)
    lr = 1e-3
    params, grads = {"w": place.asarray(p0)}, {"w": place.asarray(g0)}
    opt = ctcseq.Adam(params, lr=lr, device=place)
    tp = torch.nn.Parameter(torch.from_numpy(p0).to(env.tdev))
    tp.grad = torch.from_numpy(g0).to(env.tdev)
    topt = torch.optim.Adam([tp], lr=lr, fused=True)
    # the first update of each from the same state: the same step to rounding
    opt.step(grads)
    topt.step()
    diff = float(np.abs(host(params["w"]) - host(tp)).max()) / lr
    s_ours, n1 = timed(env, lambda: opt.step(grads), 2 * args.repeats, reserve)
    s_torch, n2 = timed(env, topt.step, 2 * args.repeats, reserve)
    ratio = s_ours / s_torch
    print(f"adam {n / 1e6:g}M float32 | ctcseq {1e3 * s_ours:.3f} ms | torch fused "
          f"{1e3 * s_torch:.3f} ms | ratio {ratio:.2f} <= 1.1 "
          f"{'ok' if ratio <= 1.1 else 'MISSED'} | first update max |diff| {diff:.1e} x lr "
          f"| {n1}/{n2} timed")


# -- 3. training rate -------------------------------------------------------------------

def training_batch(tiny, seed=2):
    """A host batch as the Trainer pads it: (x (T, N, D) float32 zero past each
    length, lengths, targets (N, S), target lengths)."""
    rng = np.random.default_rng(seed)
    if tiny:
        N, T, D, S, C = 2, 8, TINY_MODEL["input_size"], 2, TINY_MODEL["num_classes"]
        lengths = np.array([T, T - 2])
        tlens = np.array([2, 1])
    else:
        N, T, D, S, C = 16, 250, MODEL["input_size"], 40, MODEL["num_classes"]
        lengths = rng.integers(200, T + 1, size=N)
        lengths[0] = T
        tlens = rng.integers(20, S + 1, size=N)
    x = rng.standard_normal((T, N, D)).astype(np.float32)
    x[np.arange(T)[:, None] >= lengths[None, :]] = 0
    targets = rng.integers(1, C, size=(N, S))
    return x, lengths, targets, tlens


def ctcseq_model(env, device):
    import ctcseq
    spec = TINY_MODEL if env.args.tiny else MODEL
    m = ctcseq.CTCModel(spec["input_size"], spec["hidden_size"], spec["num_layers"],
                        spec["num_classes"], stride=spec["stride"], seed=3)
    for k in m.params:
        if "weight_peep" in k:
            m.params[k][...] = 0   # torch has no peepholes: the same function
    hp = {k: v.copy() for k, v in m.params.items()}
    return m.to(device), hp


def ctcseq_step(model, opt, batch):
    import ctcseq
    loss, grads = model.loss_and_grads(*batch, zero_infinity=True)
    ctcseq.clip_grad_norm(grads, 5.0)
    opt.step(grads)
    return loss


class TorchCTC:
    """The same model in PyTorch: stacked frames -> nn.LSTM (cuDNN) -> Linear
    -> log_softmax -> F.ctc_loss, trained with clip_grad_norm_ + fused Adam."""

    def __init__(self, env, hp, spec):
        torch = env.torch
        H, k = spec["hidden_size"], spec["stride"]
        self.torch, self.dev, self.stride = torch, env.tdev, k
        self.lstm = torch_lstm(env, {n[5:]: v for n, v in hp.items() if n.startswith("lstm.")},
                               k * spec["input_size"], H, spec["num_layers"], torch.float32)
        self.out = torch.nn.Linear(2 * H, spec["num_classes"])
        with torch.no_grad():
            self.out.weight.copy_(torch.from_numpy(hp["out.weight"]))
            self.out.bias.copy_(torch.from_numpy(hp["out.bias"]))
        self.out.to(self.dev)
        self.params = list(self.lstm.parameters()) + list(self.out.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3, fused=True)

    def step(self, batch):
        torch, F = self.torch, self.torch.nn.functional
        x, lengths, targets, tlens = batch
        T, N, D = x.shape
        k = self.stride
        Tk = -(-T // k)
        xt = torch.zeros((Tk * k, N, D), device=self.dev)
        xt[:T] = torch.from_numpy(x).to(self.dev)   # the host batch goes over each step
        xs = xt.reshape(Tk, k, N, D).permute(0, 2, 1, 3).reshape(Tk, N, k * D)
        out_len = torch.from_numpy(-(-lengths // k))
        packed = torch.nn.utils.rnn.pack_padded_sequence(xs, out_len, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = torch.nn.utils.rnn.pad_packed_sequence(h, total_length=Tk)
        lp = self.out(h).log_softmax(-1)
        loss = F.ctc_loss(lp, torch.from_numpy(targets).to(self.dev), out_len.to(self.dev),
                          torch.from_numpy(tlens).to(self.dev), reduction="mean",
                          zero_infinity=True)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        return loss.item()


def bench_train(env, reserve):
    import ctcseq
    args = env.args
    batch = training_batch(args.tiny)
    frames = int(batch[1].sum())
    spec = TINY_MODEL if args.tiny else MODEL
    rows, first = {}, {}
    for side in ("ctcseq cuda", "ctcseq cpu", "torch cuDNN"):
        try:
            if env.left(reserve) < 0:
                print(f"train {side:12} | skipped: time guard")
                continue
            if side.startswith("ctcseq"):
                model, hp = ctcseq_model(env, side.split()[1])
                opt = ctcseq.Adam(model.params, lr=1e-3, device=model.place)
                first[side] = ctcseq_step(model, opt, batch)

                def step(model=model, opt=opt):
                    ctcseq_step(model, opt, batch)
            else:
                _, hp = ctcseq_model(env, "cpu")
                tm = TorchCTC(env, hp, spec)
                first[side] = tm.step(batch)

                def step(tm=tm):
                    tm.step(batch)
            # the first step above was the warm-up; CPU steps are slow: fewer
            repeats = max(1, args.repeats // 2) if side.endswith("cpu") else 2 * args.repeats
            s, n = timed(env, step, repeats, reserve, warmup=False)
            rows[side] = frames / s
            print(f"train {side:12} | {1e3 * s:9.1f} ms/step | {frames / s:10.0f} frames/s "
                  f"| first-step loss {first[side]:.9g} | {n} timed")
        except Exception as e:  # noqa: BLE001 - the other sides still run
            print(f"train {side:12} | FAILED {one_line(e)}")
            traceback.print_exc(file=sys.stderr)
        sys.stdout.flush()
    if "ctcseq cuda" in rows and "torch cuDNN" in rows:
        r = rows["ctcseq cuda"] / rows["torch cuDNN"]
        print(f"train: ctcseq cuda / torch cuDNN rate {r:.2f} >= 0.8 "
              f"{'ok' if r >= 0.8 else 'MISSED'}")
    if "ctcseq cuda" in rows and "ctcseq cpu" in rows:
        r = rows["ctcseq cuda"] / rows["ctcseq cpu"]
        print(f"train: ctcseq cuda / ctcseq cpu rate {r:.1f}")
    if len(first) > 1:
        vals = list(first.values())
        print(f"train: first-step losses agree to {max(vals) / min(vals) - 1:.1e} (relative)")


# -- main ----------------------------------------------------------------------------------

def main():
    args = parse_args()
    env = Env(args)
    print(f"CuPy float32 products: {env.tf32(False)}")
    print(env.describe())
    print(f"repeats {args.repeats}, budget {args.budget:.0f} s, sections {','.join(args.only)}\n")
    shapes = TINY_SHAPES if args.tiny else SHAPES
    # time kept for the sections after the BiLSTM shapes (the training section
    # compiles the CTC kernels and runs CPU steps)
    later = 0.0 if args.tiny else 15.0 * ("adam" in args.only) + 40.0 * ("train" in args.only)
    if any(s in shapes for s in args.only):
        print("BiLSTM forward + backward, float32, peepholes on (ctcseq); times in ms, median")
        print("error: max relative error of y, dx, param grads vs torch float64 (peepholes 0)")
        print(f"{'shape':12} | {'ctcseq ms':>10} | {'cuDNN ms':>10} | ctcseq/cuDNN (target) | "
              f"ctcseq err (1e-4)  | cuDNN err | timed | CuPy float32 products")
    for name in args.only:
        if name not in shapes:
            continue
        try:
            bench_shape(env, name, shapes[name], later)
        except Exception as e:  # noqa: BLE001 - the next section still runs
            print(f"{name:12} | FAILED {one_line(e)}")
            traceback.print_exc(file=sys.stderr)
        finally:
            env.free()
        sys.stdout.flush()
    for name, fn, reserve in (("adam", bench_adam, 40.0 * ("train" in args.only)),
                              ("train", bench_train, 0.0)):
        if name not in args.only:
            continue
        print()
        if env.left(reserve if not args.tiny else 0.0) < 0:
            print(f"{name}: skipped: time guard (--budget {args.budget:.0f} s)")
            continue
        try:
            fn(env, 0.0 if args.tiny else reserve)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: FAILED {one_line(e)}")
            traceback.print_exc(file=sys.stderr)
        finally:
            env.free()
        sys.stdout.flush()
    print(f"\ntotal {time.monotonic() - env.t0:.0f} s")


if __name__ == "__main__":
    main()
