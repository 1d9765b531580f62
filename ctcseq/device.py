"""Where an array lives, and the one place that sends work to the GPU.

The public functions take NumPy arrays or CUDA arrays.  A CUDA array is
anything with ``__cuda_array_interface__`` (CuPy, Numba device arrays, torch
CUDA tensors) or with a ``__dlpack__`` whose device is CUDA (JAX on a GPU, via
CuPy), and also a Numba device array under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which has neither.  CUDA arrays are used in
place (no copy) and their results stay on the device:

==========================  =========================================
input                       results (loss, gradient)
==========================  =========================================
torch CUDA tensor           torch tensors, on torch's current stream
CuPy array                  CuPy arrays, on CuPy's current stream
Numba device array          Numba device arrays, on the default stream
anything else (DLPack)      CuPy arrays
==========================  =========================================

``numba.cuda`` and the CUDA kernels are imported on the first CUDA input, so
CPU users never import them.
"""
import contextlib
import importlib
import sys

import numpy as np

_KDL_CUDA = (2, 13)  # DLPack device types: CUDA, CUDA managed


def _kind(x):
    """'torch', 'cupy', 'numba', 'cai', 'dlpack', or None for host arrays."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return "torch" if getattr(x, "is_cuda", False) else None
    if mod == "cupy":
        return "cupy"
    if mod in ("numba", "numba_cuda"):
        cuda = sys.modules.get("numba.cuda")
        if cuda is not None and cuda.devicearray.is_cuda_ndarray(x):
            return "numba"  # real device arrays, and the simulator's FakeCUDAArray
    if isinstance(x, np.ndarray):
        return None
    try:
        getattr(x, "__cuda_array_interface__")
        return "cai"
    except (AttributeError, TypeError):
        pass
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        try:
            if dev()[0] in _KDL_CUDA:
                return "dlpack"
        except Exception:  # noqa: BLE001 - a foreign object's own failure means "not CUDA"
            pass
    return None


def is_cuda(x):
    """True for an array that lives on a CUDA device (see the module docstring)."""
    return _kind(x) is not None


def cuda_module():
    """``numba.cuda``, or a ValueError saying how to get it."""
    try:
        cuda = importlib.import_module("numba.cuda")
    except ImportError as e:
        raise ValueError("a CUDA array was passed but numba-cuda is not installed: "
                         "pip install \"ctcseq[cuda]\"") from e
    return cuda


class Device:
    """The CUDA context of one call: its stream, and how to allocate and
    return arrays of the caller's kind.

    Built from the first CUDA argument (normally ``log_probs``).
    """

    def __init__(self, x):
        self.kind = _kind(x)
        self.cuda = cuda_module()
        self.sim = simulating()
        self._torch = sys.modules.get("torch") if self.kind == "torch" else None
        self._cupy = None
        if self.kind in ("cupy", "cai", "dlpack"):
            try:
                import cupy
                self._cupy = cupy
            except ImportError:
                if self.kind == "dlpack":
                    raise ValueError("a DLPack CUDA array (e.g. JAX on a GPU) needs CuPy to be "
                                     "used in place: pip install cupy-cuda13x") from None
        # the GPU the array lives on (None: Numba's current one) and the
        # caller's stream there, opened inside activate()
        self.index, self._handle = None, None
        if self.kind == "torch":
            self.device = x.device
            self.index = x.device.index
            self._handle = self._torch.cuda.current_stream(x.device).cuda_stream
        elif self._cupy is not None:
            if self.kind == "cupy":
                self.index = x.device.id
                with self._cupy.cuda.Device(self.index):
                    self._handle = self._cupy.cuda.get_current_stream().ptr
            else:
                self._handle = self._cupy.cuda.get_current_stream().ptr
        self.stream = 0

    @contextlib.contextmanager
    def activate(self):
        """Make the array's GPU Numba's current one (views, allocations and
        launches belong to it) and open the caller's stream there."""
        gpu = (self.cuda.gpus[self.index] if self.index is not None and not self.sim
               else contextlib.nullcontext())
        with gpu:
            if self._handle is not None:
                self.stream = self.cuda.external_stream(self._handle)
            yield self

    # --- in and out ---------------------------------------------------------------
    def view(self, x):
        """A Numba device array over x's memory (no copy)."""
        kind = _kind(x)
        if kind == "numba":
            return x
        if kind == "torch":
            x = x.detach()
        elif kind == "dlpack":
            x = self._cupy.from_dlpack(x)
        # torch and CuPy arrays are on the caller's stream, where the work runs;
        # another producer's array waits for the stream its interface names
        return self.cuda.as_cuda_array(x, sync=kind == "cai")

    def empty(self, shape, dtype):
        """(result, view): a new device array of the caller's kind and a Numba
        view of it.  Allocated from the framework's own pool where there is one."""
        empty = int(np.prod(shape)) == 0  # no memory to view: kernels skip these
        if self.kind == "torch":
            # torch names its dtypes as NumPy does (torch.float32, torch.int64 ...)
            t = self._torch.empty(shape, dtype=getattr(self._torch, np.dtype(dtype).name),
                                  device=self.device)
            return t, None if empty else self.cuda.as_cuda_array(t, sync=False)
        if self._cupy is not None:
            a = self._cupy.empty(shape, dtype=dtype)
            return a, None if empty else self.cuda.as_cuda_array(a, sync=False)
        a = self.cuda.device_array(shape, dtype=dtype, stream=self.stream)
        return a, a

    def scratch(self, shape, dtype):
        """A Numba device array for the kernels' own use."""
        return self.empty(shape, dtype)[1]

    def upload(self, host):
        """Copy a (small, non-empty) host array to the device."""
        host = np.ascontiguousarray(host)
        if self.kind == "torch" or self._cupy is not None:
            d = self.scratch(host.shape, host.dtype)
            d.copy_to_device(host, stream=self.stream)
            return d
        return self.cuda.to_device(host, stream=self.stream)

    def download(self, view):
        """Copy a device array to the host, after the work queued before it."""
        out = view.copy_to_host(stream=self.stream)
        if self.stream != 0:
            self.stream.synchronize()
        return out

    def host_copy(self, x):
        """x as a host array: small integer metadata (targets, lengths) may come
        from the device, where it is copied."""
        if not is_cuda(x):
            return x
        return self.download(self.view(x))


def simulating():
    """True when numba.cuda is the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba.cuda.core import config
    return bool(config.ENABLE_CUDASIM)



# -- where a model lives ----------------------------------------------------------

DEVICES = ("cpu", "cuda", "auto")


class Placement:
    """Where a model's parameters and activations live, and how to reach them.

    ``"cpu"``: NumPy arrays, the Numba CPU kernels.  ``"cuda"``: CuPy arrays
    on the current GPU (cuBLAS products through CuPy, ``numba.cuda`` kernels
    on CuPy's current stream); under the CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) NumPy arrays, which the simulated kernels
    take as they are, so that the tests run the CUDA kernels without a GPU.

    Build one with :func:`placement`.
    """

    def __init__(self, name, xp, sim=False, cuda=None):
        self.name, self.xp, self.sim, self.cuda = name, xp, sim, cuda

    @property
    def is_cuda(self):
        return self.name == "cuda"

    def __repr__(self):
        return f"Placement({self.name!r}{', simulated' if self.sim else ''})"

    def asarray(self, a, dtype=None):
        """a (host or this device) as a C-contiguous array of this placement."""
        if self.xp is np:
            return np.ascontiguousarray(a, dtype=dtype)
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_host(self, a):
        """a as a NumPy array (copied from the GPU after the work queued)."""
        if isinstance(a, np.ndarray) or np.isscalar(a):
            return a
        return a.get()

    @property
    def stream(self):
        """The stream for Numba launches: CuPy's current one (0 simulated)."""
        if self.sim or self.xp is np:
            return 0
        return self.cuda.external_stream(self.xp.cuda.get_current_stream().ptr)

    def kernel(self, a):
        """a as the Numba kernels take it without a host wait: a CuPy array
        is viewed with ``sync=False`` (Numba would otherwise synchronise
        its stream at every launch), which is safe because the launches run
        on that same stream (:attr:`stream`)."""
        if self.sim or self.xp is np:
            return a
        return self.cuda.as_cuda_array(a, sync=False)

    def for_ctc(self, a):
        """a as ctcseq.ctc takes it on this device: under the simulator a
        Numba device array, so that the CTC kernels run (simulated) as they
        would on a GPU; CuPy arrays as they are."""
        if self.sim:
            return self.cuda.to_device(a)
        return a

    def from_ctc(self, a):
        if self.sim:
            return a.copy_to_host()
        return a


CPU = Placement("cpu", np)


def placement(device):
    """The :class:`Placement` for ``device``: "cpu", "cuda" or "auto" (the
    GPU when one works, else the CPU), or a Placement (returned as it is).

    Raises
    ------
    ctcseq.errors.UserError
        An unknown name, or "cuda" when it cannot work: numba-cuda or CuPy
        not installed, or no usable GPU and driver; the message says which
        and what to install.
    """
    from .errors import UserError
    if isinstance(device, Placement):
        return device
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return CPU
    try:
        return _cuda_placement()
    except UserError:
        if device == "auto":
            return CPU
        raise


def _cuda_placement():
    from .errors import UserError
    try:
        cuda = importlib.import_module("numba.cuda")
    except ImportError:
        raise UserError("device 'cuda' needs numba-cuda (and CuPy): pip install "
                        "\"ctcseq[cuda]\"") from None
    if simulating():
        return Placement("cuda", np, sim=True, cuda=cuda)
    try:
        import cupy
    except ImportError:
        raise UserError("device 'cuda' needs CuPy for the matrix products: pip install "
                        "\"ctcseq[cuda]\" (cupy-cuda13x)") from None
    try:
        usable = cuda.is_available() and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception as e:  # noqa: BLE001 - a missing driver raises its own errors
        raise UserError(f"device 'cuda': no usable CUDA GPU ({type(e).__name__}: "
                        f"{' '.join(str(e).split())})") from None
    if not usable:
        raise UserError("device 'cuda': no usable CUDA GPU (no GPU or no driver; "
                        "nvidia-smi should list one)")
    return Placement("cuda", cupy, cuda=cuda)
