"""Layers with explicit forward and backward passes: :class:`BiLSTM`, :class:`Linear`.

Parameters and gradients are plain dicts of NumPy arrays.  Both are updated
in place (``backward`` overwrites the arrays in ``.grads``; optimisers write
into the arrays in ``.params``), so other dicts holding the same arrays, such
as :attr:`ctcseq.model.CTCModel.params`, stay in sync.
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from . import _checks
from .device import CPU, placement
from .errors import UserError
from .kernels.lstm_cpu import (INFER_CHUNK, gather_frames, lstm_backward_dir,
                               lstm_forward_dir, lstm_infer_steps, pack_recurrent,
                               zero_past_lengths)

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_DIRS = ("", "_reverse")
# Frames x sequences per input-projection product of the inference pass: big
# enough for BLAS to run near full speed (it repacks W_ih on every call; 512
# rows made the whole forward ~3% slower, 2048 no faster), small enough (4 MiB
# of float32 projections at H = 256) to stay in cache for the time loop.
_INFER_ROWS = 1024
# Rows from which Linear.infer splits its product over two threads.
_LINEAR_SPLIT_ROWS = 1024


def _positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise UserError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _float_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise UserError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in _DTYPES:
        raise UserError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _check_input(x, name, width, width_name, dtype, place=CPU):
    """A C-contiguous (T, N, width) array of ``dtype`` with T, N >= 1 and
    finite values, on ``place`` (copied there from the host if need be)."""
    arr = np.asarray(x) if not place.is_cuda else place.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3-D (T, N, {width_name}), got shape {arr.shape}")
    if arr.shape[2] != width:
        raise ValueError(f"{name} must have {width_name} = {width} features in its last "
                         f"axis, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one frame and one sequence, "
                         f"got shape {arr.shape}")
    if arr.dtype != dtype:
        raise ValueError(f"{name} has dtype {arr.dtype} but the layer is {dtype}; "
                         f"convert it with .astype(np.{dtype.name})")
    if not bool(place.xp.isfinite(arr).all()):
        # sigmoid/tanh clamp their arguments, which would silently turn NaN into numbers
        raise ValueError(f"{name} contains NaN or infinite values")
    return place.xp.ascontiguousarray(arr)


def _lstm_cuda():
    """The CUDA kernels, imported when a layer first runs on a GPU."""
    from .kernels import lstm_cuda
    return lstm_cuda


_POOL = None
_POOL_LOCK = threading.Lock()
_BLAS = None


@contextlib.contextmanager
def _blas_threads_1(libs):
    old = [lib.get_num_threads() for lib in libs]
    for lib in libs:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, old):
            lib.set_num_threads(n)


def _single_thread_blas():
    """Context limiting BLAS to one thread (a no-op without threadpoolctl).

    The BLAS libraries are looked up once: those of NumPy and of the SciPy
    that Numba's ``np.dot`` calls, the only ones ctcseq's kernels use.
    threadpoolctl's own ``limit()`` scans every loaded library each time,
    which took 0.9 ms per use (1% of a whole BiLSTM forward); setting the
    thread counts directly takes microseconds.
    """
    global _BLAS
    if _BLAS is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (the BLAS np.dot uses in @njit)
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController().select(user_api="blas").lib_controllers
        except ImportError:
            _BLAS = []
    return _blas_threads_1(_BLAS) if _BLAS else contextlib.nullcontext()


def _both_directions(fn, args_fwd, args_rev, blas_limit=None):
    """``fn(*args_fwd), fn(*args_rev)``, on two threads when Numba may use two.

    Each direction's work (its matrix products and its Numba time loop,
    which releases the GIL) runs on its own thread with BLAS limited to one
    thread (through threadpoolctl, when installed).  Splitting the work by
    direction ourselves, rather than letting BLAS split each product, keeps
    OpenBLAS's worker threads idle: after a multi-threaded product they
    busy-wait for a while, which on a 2-core machine halved the speed of the
    time loops that followed.  A Numba ``prange`` is not used because the
    kernels call BLAS, which must not run inside an OpenMP parallel region
    (OpenBLAS warns and may hang).

    ``blas_limit``: the context limiting BLAS (default
    :func:`_single_thread_blas`; the inference path, which may run on
    several threads at once, passes :func:`_shared_single_thread_blas`;
    their reverse directions then queue on the one worker thread).

    Returns the two results.
    """
    global _POOL
    if numba.get_num_threads() < 2:
        return fn(*args_fwd), fn(*args_rev)
    with _POOL_LOCK:
        # a pool inherited through fork() has no worker thread: make a new one
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="ctcseq-lstm"))
        pool = _POOL[1]
    with (blas_limit or _single_thread_blas)():
        future = pool.submit(fn, *args_rev)
        try:
            first = fn(*args_fwd)
        finally:
            second = future.result()  # wait for it even if fn failed here
        return first, second


_SHARED_LIMIT = {"users": 0, "ctx": None}
_SHARED_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _shared_single_thread_blas():
    """:func:`_single_thread_blas` for code that may run on several threads at
    once (the inference path): the first thread in sets the limit, the last
    one out lifts it.  Overlapping plain ``with _single_thread_blas()``
    blocks would each restore the limits they saw on entry, so the second
    one in could leave BLAS at one thread for good."""
    with _SHARED_LIMIT_LOCK:
        if _SHARED_LIMIT["users"] == 0:
            ctx = _single_thread_blas()
            ctx.__enter__()
            _SHARED_LIMIT["ctx"] = ctx
        _SHARED_LIMIT["users"] += 1
    try:
        yield
    finally:
        with _SHARED_LIMIT_LOCK:
            _SHARED_LIMIT["users"] -= 1
            if _SHARED_LIMIT["users"] == 0:
                ctx, _SHARED_LIMIT["ctx"] = _SHARED_LIMIT["ctx"], None
                ctx.__exit__(None, None, None)


def _buffer(work, key, shape, dtype):
    """An uninitialised array of ``shape`` kept in the dict ``work`` under key
    (made on first use; later calls with the same key and shape reuse it)."""
    buf = work.get(key)
    if buf is None or buf.shape != shape:
        buf = work[key] = np.empty(shape, dtype)
    return buf


class BiLSTM:
    """Stacked bidirectional LSTM with optional peephole connections (Graves 2013).

    Per direction and layer, with x(t) the layer input and h, c starting at 0::

        i = sigmoid(W_i x + U_i h(t-1) + p_i * c(t-1) + b_i)
        f = sigmoid(W_f x + U_f h(t-1) + p_f * c(t-1) + b_f)
        g = tanh(W_g x + U_g h(t-1) + b_g)
        c(t) = f * c(t-1) + i * g
        o = sigmoid(W_o x + U_o h(t-1) + p_o * c(t) + b_o)
        h(t) = o * tanh(c(t))

    where ``b = bias_ih + bias_hh`` and "t-1" means the previous step in the
    direction of processing.  With ``peepholes=False`` (or peephole weights
    zero) this is exactly ``torch.nn.LSTM(bidirectional=True)``.

    Parameters
    ----------
    input_size : int
        Features per frame of the input of layer 0.
    hidden_size : int
        Units H per direction; the output has 2H features (forward then
        reverse).  Layer k > 0 takes the 2H outputs of layer k - 1.
    num_layers : int, default 1
    peepholes : bool, default True
        Add the diagonal peephole weights ``weight_peep_l{k}[_reverse]``.
    seed : int, default 0
        Seed of the initialisation (``numpy.random.default_rng``).
    dtype : float32 or float64, default float32
        Dtype of parameters, inputs and outputs.  Gate arithmetic runs in
        float64 either way; the matrix products run in ``dtype``.
    init_range : float, optional
        Every parameter (peepholes included) is drawn from
        U(-init_range, init_range).  Default ``1 / sqrt(hidden_size)``, as
        torch.nn.LSTM; Graves (2013) used 0.1.

    Attributes
    ----------
    params : dict of str to ndarray
        torch.nn.LSTM's names, shapes and gate order (i, f, g, o):
        ``weight_ih_l{k}`` (4H, in_k), ``weight_hh_l{k}`` (4H, H),
        ``bias_ih_l{k}`` (4H,), ``bias_hh_l{k}`` (4H,), each also with the
        suffix ``_reverse``; with peepholes also ``weight_peep_l{k}`` (3, H)
        whose rows are the peephole weights of the input gate (sees c(t-1)),
        forget gate (sees c(t-1)) and output gate (sees c(t)).
    grads : dict of str to ndarray
        Same names and shapes; filled by :meth:`backward`.

    Notes
    -----
    Memory: :meth:`forward` keeps, per layer, the layer input and, per
    direction, the activated gates (T, N, 4H), cell states (T, N, H) and
    outputs (T, N, H), i.e. ``12 T N H`` numbers per layer plus the input
    x: the cache is O(T N H num_layers) (171 MiB in float32 for 3 layers,
    H = 256, T = 300, N = 16).  While a layer runs forward, a further
    ``8 T N H`` numbers hold its input projections; backward needs
    ``8 T N H`` more for the gate gradients of one layer at a time.

    Speed: per direction, the input projections of all frames, the weight
    gradients and the input gradient are single BLAS products over all
    T x N frames; the time loop (Numba, :mod:`ctcseq.kernels.lstm_cpu`)
    does one BLAS product per step with the recurrent weights and the fused
    gate arithmetic.  When ``numba.get_num_threads() >= 2`` the two
    directions run on two threads, each with single-threaded BLAS (set
    through threadpoolctl when it is installed; without it, BLAS's own
    threads oversubscribe the cores).  More than two cores are not used
    yet (the batch is not split).

    An instance holds the cache of its last forward pass: do not share one
    between threads for training.  :meth:`infer` keeps nothing: any number
    of threads may call it on one instance.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, peepholes=True, seed=0,
                 dtype=np.float32, init_range=None):
        self.input_size = _positive_int(input_size, "input_size")
        self.hidden_size = H = _positive_int(hidden_size, "hidden_size")
        self.num_layers = _positive_int(num_layers, "num_layers")
        if not isinstance(peepholes, (bool, np.bool_)):
            raise UserError(f"peepholes must be True or False, got {peepholes!r}")
        self.peepholes = bool(peepholes)
        self.dtype = _float_dtype(dtype)
        if init_range is None:
            init_range = 1.0 / np.sqrt(H)
        if not (np.isfinite(init_range) and init_range >= 0):
            raise UserError(f"init_range must be a finite number >= 0, got {init_range!r}")
        self.init_range = float(init_range)
        rng = np.random.default_rng(seed)
        self.params = {}
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else 2 * H
            for sfx in _DIRS:
                shapes = {f"weight_ih_l{k}{sfx}": (4 * H, in_k),
                          f"weight_hh_l{k}{sfx}": (4 * H, H),
                          f"bias_ih_l{k}{sfx}": (4 * H,),
                          f"bias_hh_l{k}{sfx}": (4 * H,)}
                if self.peepholes:
                    shapes[f"weight_peep_l{k}{sfx}"] = (3, H)
                for name, shape in shapes.items():
                    self.params[name] = rng.uniform(-self.init_range, self.init_range,
                                                    shape).astype(self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._cache = None
        self.place = CPU

    def to(self, device):
        """Move the parameters and gradients to ``device`` ("cpu", "cuda" or
        "auto", see :func:`ctcseq.device.placement`); returns self.  On
        "cuda" the layer takes and returns arrays of that device (CuPy; the
        input may also come from the host) and runs the time loops of
        :mod:`ctcseq.kernels.lstm_cuda`."""
        self.params, self.grads, self.place = _moved(self.params, self.place, device)
        self._cache = None
        return self

    # -- one direction of one layer (run on two threads) ---------------------
    def _peep(self, k, sfx):
        if self.peepholes:
            return self.params[f"weight_peep_l{k}{sfx}"]
        return self.place.xp.zeros((3, self.hidden_size), self.dtype)

    def _forward_direction(self, k, d, inp, lengths, y, c_all, gates):
        """Input projection and time loop of direction d of layer k."""
        T, N, in_k = inp.shape
        H, sfx = self.hidden_size, _DIRS[d]
        p = self.params
        gx = inp.reshape(T * N, in_k) @ p[f"weight_ih_l{k}{sfx}"].T  # all frames at once
        gx += p[f"bias_ih_l{k}{sfx}"] + p[f"bias_hh_l{k}{sfx}"]
        peep = self._peep(k, sfx)
        whh = np.ascontiguousarray(p[f"weight_hh_l{k}{sfx}"])
        lstm_forward_dir(gx.reshape(T, N, 4 * H), 0, whh, peep, lengths, d == 1, y, d * H,
                         c_all, gates)

    def _backward_direction(self, k, d, dy, inp, y, c_all, gates, lengths, want_dx):
        """BPTT of direction d of layer k: fills its gradients, returns its part of dx."""
        T, N, _ = inp.shape
        H, sfx, p = self.hidden_size, _DIRS[d], self.params
        peep = self._peep(k, sfx)
        da = np.empty((T, N, 4 * H), self.dtype)  # zeroed past each length by the kernel
        dpeep = np.zeros((3, H), np.float64)
        whh_t = np.ascontiguousarray(p[f"weight_hh_l{k}{sfx}"].T)
        lstm_backward_dir(dy, d * H, gates, c_all, whh_t, peep, lengths, d == 1, da, 0, dpeep)
        return self._weight_grads(k, d, da, dpeep, inp, y, want_dx)

    def _weight_grads(self, k, d, da, dpeep, inp, y, want_dx):
        """The gradients of direction d of layer k from its gate gradients
        ``da``, as products over all frames; returns its part of dx."""
        T, N, in_k = inp.shape
        H, sfx, xp = self.hidden_size, _DIRS[d], self.place.xp
        p, g = self.params, self.grads
        da2 = da.reshape(T * N, 4 * H)
        xp.matmul(da2.T, inp.reshape(T * N, in_k), out=g[f"weight_ih_l{k}{sfx}"])
        # h(t-1) of the forward direction is y[t-1]; of the reverse direction
        # y[t+1] (zero past each length, so no masking is needed)
        if d == 0:
            dah, hprev = da[1:], y[:-1, :, :H]
        else:
            dah, hprev = da[:-1], y[1:, :, H:]
        xp.matmul(dah.reshape(-1, 4 * H).T, hprev.reshape(-1, H),
                  out=g[f"weight_hh_l{k}{sfx}"])
        da2.sum(axis=0, out=g[f"bias_ih_l{k}{sfx}"])
        g[f"bias_hh_l{k}{sfx}"][...] = g[f"bias_ih_l{k}{sfx}"]
        if self.peepholes:
            g[f"weight_peep_l{k}{sfx}"][...] = dpeep
        if not want_dx:
            return None
        return (da2 @ p[f"weight_ih_l{k}{sfx}"]).reshape(T, N, in_k)

    # -- the same on a CUDA GPU: products through CuPy, time loops as one
    #    persistent kernel per direction (kernels/lstm_cuda.py) --------------
    def _forward_direction_cuda(self, k, d, inp, lengths, y, c_all, gates):
        T, N, in_k = inp.shape
        H, sfx, place = self.hidden_size, _DIRS[d], self.place
        p = self.params
        gx = place.xp.matmul(inp.reshape(T * N, in_k), p[f"weight_ih_l{k}{sfx}"].T)
        gx += p[f"bias_ih_l{k}{sfx}"] + p[f"bias_hh_l{k}{sfx}"]
        v = place.kernel
        _lstm_cuda().lstm_forward_dir(v(gx.reshape(T, N, 4 * H)), 0, v(p[f"weight_hh_l{k}{sfx}"]),
                                      v(self._peep(k, sfx)), lengths, d == 1, v(y), d * H,
                                      v(c_all), v(gates), stream=place.stream, sim=place.sim)

    def _backward_direction_cuda(self, k, d, dy, inp, y, c_all, gates, lengths, want_dx):
        T, N, _ = inp.shape
        H, sfx, place = self.hidden_size, _DIRS[d], self.place
        da = place.xp.empty((T, N, 4 * H), self.dtype)  # zeroed past each length by the kernel
        dpeep = place.xp.zeros((3, H), np.float64)
        # the kernel reads W_hh column-wise: no transposed copy
        v = place.kernel
        _lstm_cuda().lstm_backward_dir(v(dy), d * H, v(gates), v(c_all),
                                       v(self.params[f"weight_hh_l{k}{sfx}"]), v(self._peep(k, sfx)),
                                       lengths, d == 1, v(da), 0, v(dpeep),
                                       stream=place.stream, sim=place.sim)
        return self._weight_grads(k, d, da, dpeep, inp, y, want_dx)

    def _layers(self, x, lengths, masks, keep):
        """The stack over checked input: (output, caches if keep)."""
        T, N, _ = x.shape
        H, dt, xp = self.hidden_size, self.dtype, self.place.xp
        caches = []
        inp = x
        for k in range(self.num_layers):
            # the kernel zeroes y past each length; the caches are never read there
            y = xp.empty((T, N, 2 * H), dt)
            c_all = xp.empty((2, T, N, H), dt)
            gates = xp.empty((2, T, N, 4 * H), dt)
            if self.place.is_cuda:
                for d in range(2):
                    self._forward_direction_cuda(k, d, inp, lengths, y, c_all[d], gates[d])
            else:
                _both_directions(self._forward_direction,
                                 *[(k, d, inp, lengths, y, c_all[d], gates[d])
                                   for d in range(2)])
            if keep:
                caches.append((inp, y, c_all, gates))
            inp = y if k == self.num_layers - 1 or masks[k] is None else y * masks[k]
        return inp, caches

    # -- forward / backward ------------------------------------------------
    def forward(self, x, lengths, dropout=0.0, rng=None):
        """Run the stack over a padded batch.

        Parameters
        ----------
        x : ndarray, shape (T, N, input_size), the layer's dtype
            Padded input; frames past each length are ignored.  Must be
            finite.  T >= 1, N >= 1.
        lengths : array of int, shape (N,)
            Valid frames per sequence, each in [0, T] (a length-0 sequence
            gives all-zero output).  Need not be sorted.
        dropout : float in [0, 1), default 0
            Training only: each output of a layer that feeds the next layer
            is zeroed with this probability and the others are scaled by
            ``1 / (1 - dropout)`` (inverted dropout); :meth:`backward` uses
            the same masks.
        rng : numpy.random.Generator, optional
            Draws the dropout masks (required when dropout > 0).

        The output and the cache for :meth:`backward` reference ``x``
        (copied only when it is not C-contiguous): do not modify it in
        place before calling :meth:`backward`.

        Returns
        -------
        y : ndarray, shape (T, N, 2 * hidden_size)
            ``y[..., :H]`` forward, ``y[..., H:]`` reverse direction of the
            last layer; the reverse direction of sequence n starts at frame
            ``lengths[n] - 1``.  Exactly zero for ``t >= lengths[n]``.

        Raises
        ------
        ValueError
            x not 3-D, wrong feature size, empty, wrong dtype or not finite;
            lengths of the wrong shape, not integers or outside [0, T].
        """
        x = _check_input(x, "x", self.input_size, "input_size", self.dtype, self.place)
        T, N, _ = x.shape
        lengths = _checks.lengths(lengths, "lengths", N, T, "T")
        H, dt = self.hidden_size, self.dtype
        # drawn on the host on every device: the same masks for the same seed
        masks = [_to_place(dropout_mask((T, N, 2 * H), dropout, rng, dt), self.place)
                 for _ in range(self.num_layers - 1)]
        inp, caches = self._layers(x, lengths, masks, keep=True)
        self._cache = (lengths, caches, masks)
        return inp

    # -- inference (no caches, reentrant) ------------------------------------
    def _infer_direction(self, k, d, inp, lengths, y, work):
        """Direction d of layer k for :meth:`infer`: input projections a block
        of steps at a time, each followed by the time loop over that block.
        ``work``: this call's and direction's dict of reusable buffers."""
        T, N, in_k = inp.shape
        H, sfx, dt = self.hidden_size, _DIRS[d], self.dtype
        p = self.params
        w_ih = p[f"weight_ih_l{k}{sfx}"]
        bias = p[f"bias_ih_l{k}{sfx}"] + p[f"bias_hh_l{k}{sfx}"]
        cw = INFER_CHUNK
        wpk = _buffer(work, "wpk", (4 * H * (H + 1),), dt)
        pack_recurrent(p[f"weight_hh_l{k}{sfx}"], bias, cw, wpk)
        peep = self._peep(k, sfx)
        max_len = int(lengths.max())
        steps = max(1, min(_INFER_ROWS // N, max_len))
        h = np.zeros((N, H + 1), dt)
        h[:, H] = 1  # [h, 1]: the recurrent product adds the biases
        c = np.zeros((N, H), dt)
        gx = _buffer(work, "gx", (steps * N, 4 * H), dt)
        reverse = d == 1
        for s0 in range(0, max_len, steps):
            s1 = min(s0 + steps, max_len)
            m = s1 - s0
            if not reverse:
                # frames s0..s1-1 of every sequence (finished ones are not read)
                xw = inp[s0:s1]
            else:
                # sequence n runs frames L_n - s1 .. L_n - 1 - s0 in this block
                base = lengths - s1
                if (base == base[0]).all():
                    xw = inp[base[0]:base[0] + m]
                else:
                    xw = _buffer(work, f"x{in_k}", (steps, N, in_k), dt)[:m]
                    gather_frames(inp, base, xw)
            g = gx[:m * N]
            np.matmul(xw.reshape(m * N, in_k), w_ih.T, out=g)
            lstm_infer_steps(g.reshape(m, N, 4 * H), wpk, cw, peep, lengths, reverse,
                             s0, s1, y, d * H, h, c)

    def infer(self, x, lengths):
        """Inference forward: the output of :meth:`forward`, with nothing kept.

        Computes the same function as :meth:`forward` (without dropout) but
        keeps no cache for :meth:`backward` and writes nothing to ``self``,
        so one instance may serve several threads at once.  Layers run one
        after another, each reusing the output buffer of the layer before
        its input; besides ``x`` and the output, the peak memory is one
        layer's output plus, per direction, the input projections of a
        block of at most ``max(1024, N)`` frames x sequences (4H values
        each), a packed copy of ``W_hh`` and the biases, and O(N H) state;
        nothing grows with the number of layers, and only the outputs grow
        with T.

        Gate arithmetic runs in the layer's dtype: in float32 the outputs
        differ from :meth:`forward`'s (float64 gates) by rounding only
        (5e-8 at most on ``benchmarks/bench_lstm.py``'s shape); in float64
        by a few ulp.  Speed: see :func:`ctcseq.kernels.lstm_cpu.lstm_infer_steps`
        and ``benchmarks/RESULTS.md``.

        Parameters
        ----------
        x : ndarray, shape (T, N, input_size), the layer's dtype
            Padded input; frames past each length are ignored.  Must be
            finite.  T >= 1, N >= 1.
        lengths : array of int, shape (N,)
            Valid frames per sequence, each in [0, T].

        Returns
        -------
        y : ndarray, shape (T, N, 2 * hidden_size)
            As :meth:`forward`: forward then reverse direction of the last
            layer, exactly zero for ``t >= lengths[n]``.

        Raises
        ------
        ValueError
            As :meth:`forward`.
        """
        x = _check_input(x, "x", self.input_size, "input_size", self.dtype, self.place)
        T, N, _ = x.shape
        lengths = _checks.lengths(lengths, "lengths", N, T, "T")
        if self.place.is_cuda:
            # the training kernels, their caches local to this call: on a GPU
            # memory is not the constraint it is on the host
            return self._layers(x, lengths, [None] * (self.num_layers - 1), keep=False)[0]
        H, dt = self.hidden_size, self.dtype
        inp, spare = x, None
        work = ({}, {})  # per direction, reused by every layer
        # one BLAS limit for all layers (as _both_directions sets it)
        with (_shared_single_thread_blas() if numba.get_num_threads() >= 2
              else contextlib.nullcontext()):
            for k in range(self.num_layers):
                # the output of layer k - 2 is free now: reusing it spares the
                # page faults of a fresh allocation
                y = np.empty((T, N, 2 * H), dt) if spare is None else spare
                zero_past_lengths(y, lengths)
                if lengths.max() > 0:
                    _both_directions(self._infer_direction,
                                     *[(k, d, inp, lengths, y, work[d]) for d in range(2)],
                                     blas_limit=_shared_single_thread_blas)
                spare = inp if k > 0 else None  # never x, which is the caller's
                inp = y
        return inp

    def backward(self, dy, input_grad=True):
        """Backpropagate through time for the last :meth:`forward`.

        Parameters
        ----------
        dy : ndarray, shape (T, N, 2 * hidden_size), the layer's dtype
            Gradient of a scalar loss with respect to the output ``y``;
            must be finite; values at frames past each length are ignored.
        input_grad : bool, default True
            Compute dx; False skips one matrix product when only the
            parameter gradients are needed.

        Returns
        -------
        dx : ndarray, shape (T, N, input_size), or None if not input_grad
            Gradient of ``sum(dy * y)`` with respect to ``x``; zero past each
            length.  ``.grads`` is overwritten with the gradients of the same
            quantity with respect to ``.params``.

        Raises
        ------
        ValueError
            No forward pass yet, or dy of the wrong shape, dtype or not finite.
        """
        if self._cache is None:
            raise ValueError("backward called before forward")
        lengths, caches, masks = self._cache
        T, N, _ = caches[-1][1].shape
        H, dt = self.hidden_size, self.dtype
        dy = _check_input(dy, "dy", 2 * H, "2 * hidden_size", dt, self.place)
        if dy.shape[:2] != (T, N):
            raise ValueError(f"dy must have shape {(T, N, 2 * H)} like the last output, "
                             f"got {dy.shape}")
        for k in range(self.num_layers - 1, -1, -1):
            inp, y, c_all, gates = caches[k]
            want_dx = input_grad or k > 0
            args = [(k, d, dy, inp, y, c_all[d], gates[d], lengths, want_dx) for d in range(2)]
            if self.place.is_cuda:
                dx = [self._backward_direction_cuda(*a) for a in args]
            else:
                dx = _both_directions(self._backward_direction, *args)
            if not want_dx:
                return None
            dy = dx[0]
            dy += dx[1]
            if k > 0 and masks[k - 1] is not None:
                dy *= masks[k - 1]
        return dy


def _moved(params, place, device):
    """(params, zero grads, placement) of ``params`` moved to ``device``."""
    new = placement(device)
    params = {k: new.asarray(place.to_host(v)) for k, v in params.items()}
    return params, {k: new.xp.zeros_like(v) for k, v in params.items()}, new


def _to_place(a, place):
    return a if a is None or not place.is_cuda else place.asarray(a)


def dropout_mask(shape, p, rng, dtype):
    """Inverted-dropout multipliers: 0 with probability p, else 1 / (1 - p);
    None when p is 0 (nothing to do)."""
    if not 0 <= p < 1:
        raise UserError(f"dropout must be in [0, 1), got {p}")
    if p == 0:
        return None
    if rng is None:
        raise ValueError("rng: a numpy Generator is needed to draw dropout masks")
    keep = rng.random(shape, dtype=np.float32) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


class Linear:
    """Affine layer ``y = x @ weight.T + bias`` over the last axis (torch.nn.Linear).

    Parameters
    ----------
    in_features, out_features : int
    seed : int, default 0
    dtype : float32 or float64, default float32
    init_range : float, optional
        Weights and bias from U(-init_range, init_range); default
        ``1 / sqrt(in_features)``, as torch.nn.Linear.

    Attributes
    ----------
    params, grads : dict
        ``weight`` (out_features, in_features) and ``bias`` (out_features,).
    """

    def __init__(self, in_features, out_features, seed=0, dtype=np.float32, init_range=None):
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.dtype = _float_dtype(dtype)
        r = 1.0 / np.sqrt(self.in_features) if init_range is None else float(init_range)
        rng = np.random.default_rng(seed)
        self.params = {
            "weight": rng.uniform(-r, r, (self.out_features, self.in_features)).astype(self.dtype),
            "bias": rng.uniform(-r, r, (self.out_features,)).astype(self.dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._x = None
        self.place = CPU

    def to(self, device):
        """Move the parameters and gradients to ``device``; returns self."""
        self.params, self.grads, self.place = _moved(self.params, self.place, device)
        self._x = None
        return self

    def _checked(self, x):
        x = np.asarray(x) if not self.place.is_cuda else self.place.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have in_features = {self.in_features} features in its "
                             f"last axis, got shape {x.shape}")
        if x.dtype != self.dtype:
            raise ValueError(f"x has dtype {x.dtype} but the layer is {self.dtype}")
        return x

    def forward(self, x):
        """x (..., in_features) -> (..., out_features)."""
        self._x = x = self._checked(x)
        # one BLAS thread: woken right after the BiLSTM's single-threaded
        # products, OpenBLAS's pool made this small product 100x slower
        with _single_thread_blas():
            return x @ self.params["weight"].T + self.params["bias"]

    def infer(self, x):
        """x (..., in_features) -> (..., out_features), keeping nothing (reentrant)."""
        x = self._checked(x)
        w, b = self.params["weight"], self.params["bias"]
        if self.place.is_cuda:
            return x @ w.T + b
        x2 = np.ascontiguousarray(x).reshape(-1, self.in_features)
        out = np.empty((x2.shape[0], w.shape[0]), self.dtype)

        def rows(lo, hi):
            np.matmul(x2[lo:hi], w.T, out=out[lo:hi])
            out[lo:hi] += b

        mid = x2.shape[0] // 2
        if mid >= _LINEAR_SPLIT_ROWS and numba.get_num_threads() >= 2:
            # two halves on the BiLSTM's two threads, one BLAS thread each (see
            # forward): 1.6 ms against 5.1 ms for 10,000 x 500 -> 41 classes
            _both_directions(rows, (0, mid), (mid, x2.shape[0]),
                             blas_limit=_shared_single_thread_blas)
        else:
            with _shared_single_thread_blas():
                rows(0, x2.shape[0])
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, dy):
        """dy (..., out_features) -> dx (..., in_features); overwrites ``.grads``."""
        if self._x is None:
            raise ValueError("backward called before forward")
        xp = self.place.xp
        dy = xp.asarray(dy, dtype=self.dtype)
        if dy.shape != self._x.shape[:-1] + (self.out_features,):
            raise ValueError(f"dy must have shape {self._x.shape[:-1] + (self.out_features,)}, "
                             f"got {dy.shape}")
        x2 = self._x.reshape(-1, self.in_features)
        dy2 = dy.reshape(-1, self.out_features)
        with _single_thread_blas():  # see forward
            xp.matmul(dy2.T, x2, out=self.grads["weight"])
            dy2.sum(axis=0, out=self.grads["bias"])
            return (dy2 @ self.params["weight"]).reshape(dy.shape[:-1] + (self.in_features,))
