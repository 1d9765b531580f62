"""BiLSTM-CTC acoustic model: stacked BiLSTM -> linear -> log-softmax -> CTC.

Inference needs only this module, :mod:`ctcseq.nn` and the kernels
(:meth:`CTCModel.load`, :meth:`CTCModel.log_probs`, :meth:`CTCModel.decode`,
and :meth:`CTCModel.infer_log_probs`, the cache-free, thread-safe forward);
training adds :mod:`ctcseq.optim`.

File format (``.npz``, one file): one array per parameter, named as in
:attr:`CTCModel.params`, plus ``__config__``, the UTF-8 bytes of a JSON
object::

    {"format": "ctcseq.CTCModel", "format_version": 1,
     "model": {input_size, hidden_size, num_layers, num_classes, blank,
               peepholes, dtype, stride},
     "vocabulary": <caller's JSON value>, "features": <caller's JSON value>,
     "params": {name: shape}, "sha256": <hex digest of the parameters>}
"""
import hashlib
import json
import os
import zipfile

import numpy as np

from . import _checks
from .ctc import ctc_loss_grad
from .datadir import atomic_write
from .decode import greedy_decode
from .device import CPU
from .errors import DataError, UserError
from .nn import BiLSTM, Linear, _positive_int, _to_place, dropout_mask

FORMAT = "ctcseq.CTCModel"
FORMAT_VERSION = 1
_CONFIG_KEY = "__config__"


def log_softmax(z):
    """Log-softmax over the last axis, stable for any finite z."""
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _json_value(value, name):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise UserError(f"{name} must be JSON-serialisable (dicts, lists, str, numbers): "
                         f"{e}") from None
    return json.loads(json.dumps(value))  # a private copy


def _digest(params):
    h = hashlib.sha256()
    for k in sorted(params):
        h.update(k.encode())
        h.update(np.ascontiguousarray(params[k]).tobytes())
    return h.hexdigest()


def min_output_steps(labels):
    """The fewest output steps (frames) CTC needs for a label sequence:
    one per label, plus one blank between each pair of equal adjacent labels
    (``[a, a]`` needs ``a _ a``).  A sequence with fewer steps has zero
    probability (an infinite loss).

    Parameters
    ----------
    labels : 1-D array-like of int

    Returns
    -------
    int
    """
    labels = np.asarray(labels).reshape(-1)
    return int(labels.size + np.count_nonzero(labels[1:] == labels[:-1]))


class CTCModel:
    """Bidirectional LSTM acoustic model trained with CTC (Graves et al. 2013).

    Parameters
    ----------
    input_size : int
        Features per frame (e.g. 123 for Graves 2013's filterbank + energy
        with deltas).
    hidden_size : int
        LSTM units per direction and layer.
    num_layers : int
    num_classes : int
        Output classes C, blank included.
    blank : int, default 0
    peepholes : bool, default True
    seed : int, default 0
        Initialisation seed (BiLSTM from ``seed``, output layer from
        ``seed + 1``).
    dtype : float32 or float64, default float32
    stride : int, default 1
        Frame stacking: every ``stride`` consecutive input frames are
        concatenated into one BiLSTM step (the BiLSTM's input is
        ``stride * input_size`` wide), so the network runs at 1/stride of
        the frame rate.  Two 10 ms frames per step halve the cost of
        training and decoding; CTC needs at least one output step per
        label (two between repeated labels), which phones at 20 ms have.
    init_range : float, optional
        Parameters drawn from U(-init_range, init_range); default
        ``1 / sqrt(hidden_size)`` for the BiLSTM and ``1 / sqrt(2 H)`` for
        the output layer (torch's defaults).  Graves used 0.1.
    vocabulary : JSON value, optional
        Whatever the caller needs to map class indices to symbols (e.g. a
        list of C strings); stored in the checkpoint.
    features : JSON value, optional
        What a user of the model needs to make its input, stored in the
        checkpoint.  ``ctcseq train`` stores ``{"config":
        FeatureConfig.to_dict(), "normalizer": Normalizer.to_dict(), "text":
        "text.phn"}`` (see :mod:`ctcseq.features`), which ``ctcseq decode``
        and ``ctcseq align`` read back.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        ``lstm.<torch LSTM name>`` and ``out.weight`` (C, 2H), ``out.bias``
        (C,); the same arrays as the layers hold, updated in place.
    num_classes, blank, input_size, stride : int
        As given.
    vocabulary, features : JSON value or None
        As given; saved with the model and restored by :meth:`load`.
    lstm : ctcseq.nn.BiLSTM
    out : ctcseq.nn.Linear
        The layers.
    """

    def __init__(self, input_size, hidden_size, num_layers, num_classes, blank=0,
                 peepholes=True, seed=0, dtype=np.float32, init_range=None,
                 vocabulary=None, features=None, stride=1, device="cpu"):
        self.num_classes = _positive_int(num_classes, "num_classes")
        if isinstance(blank, (bool, np.bool_)) or not isinstance(blank, (int, np.integer)) \
                or not 0 <= blank < self.num_classes:
            raise UserError(f"blank must be an integer in [0, {self.num_classes}), "
                             f"got {blank!r}")
        self.blank = int(blank)
        self.vocabulary = _json_value(vocabulary, "vocabulary")
        self.features = _json_value(features, "features")
        self.stride = _positive_int(stride, "stride")
        self.input_size = _positive_int(input_size, "input_size")
        self.lstm = BiLSTM(self.stride * self.input_size, hidden_size, num_layers, peepholes=peepholes,
                           seed=seed, dtype=dtype, init_range=init_range)
        self.out = Linear(2 * self.lstm.hidden_size, self.num_classes, seed=seed + 1,
                          dtype=dtype, init_range=init_range)
        self.dtype = self.lstm.dtype
        self.place = CPU
        self._collect()
        if device != "cpu":
            self.to(device)

    def _collect(self):
        self.params = {**{f"lstm.{k}": v for k, v in self.lstm.params.items()},
                       **{f"out.{k}": v for k, v in self.out.params.items()}}
        self.grads = {**{f"lstm.{k}": v for k, v in self.lstm.grads.items()},
                      **{f"out.{k}": v for k, v in self.out.grads.items()}}

    def to(self, device):
        """Move the model to ``device`` and return it.

        ``"cpu"``, ``"cuda"`` (the current GPU: CuPy arrays, cuBLAS products
        and the CUDA kernels of :mod:`ctcseq.kernels`) or ``"auto"`` (the GPU
        when one works); see :func:`ctcseq.device.placement`, which raises a
        :class:`~ctcseq.errors.UserError` saying what is missing when
        "cuda" cannot work.  :attr:`params` and :attr:`grads` are new arrays
        on that device afterwards (make optimisers after moving the model);
        :meth:`save` writes host arrays, so a file saved from either device
        loads on either.  On "cuda", :meth:`log_probs` returns device arrays
        and :meth:`loss_and_grads` takes host or device input; the dropout
        masks are drawn on the host as on the CPU, so both devices train
        the same model up to rounding.
        """
        self.lstm.to(device)
        self.out.to(self.lstm.place)
        self.place = self.lstm.place
        self._out_mask = None
        self._collect()
        return self

    def host_params(self):
        """:attr:`params` as host (NumPy) arrays, copied from the device if need be."""
        return {k: self.place.to_host(v) for k, v in self.params.items()}

    # -- inference -----------------------------------------------------------
    def output_lengths(self, lengths):
        """Output steps for inputs of ``lengths`` frames: ``ceil(lengths / stride)``."""
        lengths = np.asarray(lengths, dtype=np.int64)
        return -(-lengths // self.stride)

    def _checked_input(self, x, lengths):
        x = np.asarray(x) if not self.place.is_cuda else self.place.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape (T, N, {self.input_size}), got {x.shape}")
        # checked against the input's T: ceil(lengths / stride) could not tell
        # a length one past T from a valid one
        return x, _checks.lengths(lengths, "lengths", x.shape[1], x.shape[0], "T")

    def _stack(self, x, lengths):
        x, lengths = self._checked_input(x, lengths)
        if self.stride == 1:
            return x, lengths
        k = self.stride
        T, N, D = x.shape
        Tk = -(-T // k)
        xp = self.place.xp
        xs = xp.zeros((Tk * k, N, D), dtype=x.dtype)
        xs[:T] = x
        # frames past a sequence's end may hold padding garbage: zero them so
        # the last (partial) step of every sequence sees the same zeros
        t = np.arange(Tk * k)[:, None]
        xs[self.place.asarray(t >= lengths[None, :])] = 0
        xs = xs.reshape(Tk, k, N, D).transpose(0, 2, 1, 3).reshape(Tk, N, k * D)
        return xp.ascontiguousarray(xs), self.output_lengths(lengths)

    def _logits(self, x, lengths, dropout=0.0, rng=None):
        xs, out_lengths = self._stack(x, lengths)
        h = self.lstm.forward(xs, out_lengths, dropout, rng)
        self._out_mask = _to_place(dropout_mask(h.shape, dropout, rng, self.dtype), self.place)
        if self._out_mask is not None:
            h = h * self._out_mask
        return self.out.forward(h), out_lengths

    def log_probs(self, x, lengths):
        """Per-step log-posteriors.

        Parameters
        ----------
        x : ndarray (T, N, input_size), the model's dtype
        lengths : array of int (N,), each in [0, T]

        Returns
        -------
        ndarray (ceil(T / stride), N, num_classes)
            Log-softmax over classes, one row per output step; sequence n has
            ``output_lengths(lengths)[n]`` valid steps.  Steps past each
            length hold the output of a zero hidden state and must be ignored.
        """
        return log_softmax(self._logits(x, lengths)[0])

    def infer_log_probs(self, x, lengths):
        """Per-step log-posteriors by the inference forward: :meth:`log_probs`
        without the training caches.

        Uses :meth:`ctcseq.nn.BiLSTM.infer` and writes nothing to the model,
        so one model may serve several threads at once; besides the input,
        two BiLSTM layer outputs and the result, its memory does not grow
        with T or the number of layers (see :meth:`ctcseq.nn.BiLSTM.infer`).
        Results equal :meth:`log_probs`' to rounding (a float32 model
        evaluates its gates in float32 here, in float64 there).

        Parameters
        ----------
        x : ndarray (T, N, input_size), the model's dtype
        lengths : array of int (N,), each in [0, T]

        Returns
        -------
        ndarray (ceil(T / stride), N, num_classes)
            As :meth:`log_probs`; sequence n has ``output_lengths(lengths)[n]``
            valid steps, later steps must be ignored.
        """
        xs, out_lengths = self._stack(x, lengths)
        # host arrays whatever the device: what decoders and callers expect
        return self.place.to_host(log_softmax(self.out.infer(self.lstm.infer(xs, out_lengths))))

    def decode(self, x, lengths):
        """Greedy (best-path) label sequences, one list of class indices per sequence."""
        return greedy_decode(self.log_probs(x, lengths), self.output_lengths(lengths),
                             self.blank)

    # -- training ------------------------------------------------------------
    def loss_and_grads(self, x, lengths, targets, target_lengths, reduction="mean",
                       zero_infinity=False, dropout=0.0, rng=None):
        """CTC loss of a padded batch and its gradient for every parameter.

        Parameters
        ----------
        x : ndarray (T, N, input_size), the model's dtype
        lengths : array of int (N,)
            Valid frames per sequence, in [0, T]; the CTC loss sees
            ``output_lengths(lengths)`` steps.
        targets : int array (N, S) padded, or 1-D concatenated
            Label sequences (no blanks); see :func:`ctcseq.ctc.ctc_loss`.
        target_lengths : array of int (N,)
        reduction : {"mean", "sum"}
            As :func:`ctcseq.ctc.ctc_loss` ("mean": per-sequence loss divided
            by target length, averaged over the batch).
        zero_infinity : bool
            Give infeasible sequences (see Raises) zero loss and gradient.
        dropout : float in [0, 1), default 0
            Inverted dropout on every BiLSTM layer's output (between layers
            and before the output layer), training only.
        rng : numpy.random.Generator, optional
            Draws the dropout masks; required when dropout > 0.

        Returns
        -------
        loss : float
        grads : dict of str to ndarray
            :attr:`grads`, overwritten; same names as :attr:`params`.

        Raises
        ------
        ctcseq.errors.DataError (a ValueError)
            Without ``zero_infinity``: a sequence's target needs more output
            steps than it has (:func:`min_output_steps` >
            ``output_lengths(lengths)``, e.g. a long transcript at
            ``stride=2``); raised before any work, naming the sequence and
            both lengths.
        ValueError
            Malformed arguments.
        """
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if not zero_infinity:
            self._check_feasible(x, lengths, targets, target_lengths)
        logits, out_lengths = self._logits(x, lengths, dropout, rng)
        lp = log_softmax(logits)
        place = self.place
        loss, g_lp = ctc_loss_grad(place.for_ctc(lp) if place.is_cuda else lp, targets,
                                   out_lengths, target_lengths, blank=self.blank,
                                   reduction=reduction, zero_infinity=zero_infinity)
        if place.is_cuda:
            loss, g_lp = place.from_ctc(loss), place.from_ctc(g_lp)
        # back through log-softmax; g_lp is zero past each length, so is g_logits
        g_logits = g_lp - place.xp.exp(lp) * g_lp.sum(axis=-1, keepdims=True)
        g_h = self.out.backward(g_logits.astype(self.dtype, copy=False))
        if self._out_mask is not None:
            g_h = g_h * self._out_mask
        self.lstm.backward(g_h, input_grad=False)
        return float(loss), self.grads

    def too_short(self, lengths, targets, target_lengths):
        """Which sequences cannot produce their targets: a boolean array (N,),
        True where :func:`min_output_steps` of the target exceeds
        ``output_lengths(lengths)`` (their CTC loss is infinite).

        ``targets`` padded (N, S) or 1-D concatenated, as for
        :meth:`loss_and_grads`.
        """
        lengths = _checks.int_array(lengths, "lengths", ndim=(1,))
        flat, offsets, tl = _checks.targets(targets, target_lengths, lengths.shape[0],
                                            self.num_classes, self.blank)
        need = np.array([min_output_steps(flat[o:o + n]) for o, n in zip(offsets, tl)],
                        np.int64)
        return need > self.output_lengths(lengths)

    def _check_feasible(self, x, lengths, targets, target_lengths):
        x, lengths = self._checked_input(x, lengths)
        bad = np.flatnonzero(self.too_short(lengths, targets, target_lengths))
        if bad.size:
            flat, offsets, tl = _checks.targets(targets, target_lengths, lengths.shape[0],
                                                self.num_classes, self.blank)
            n = int(bad[0])
            labels = flat[offsets[n]:offsets[n] + tl[n]]
            need, have = min_output_steps(labels), int(self.output_lengths(lengths[n]))
            repeats = need - int(tl[n])
            more = f" ({bad.size} sequences in all: {bad[:10].tolist()})" if bad.size > 1 else ""
            raise DataError(
                f"sequence {n}: its target of {int(tl[n])} labels"
                + (f" ({repeats} repeated adjacent pair(s), each needing a blank between)"
                   if repeats else "")
                + f" needs at least {need} output steps, but its input of {int(lengths[n])} "
                f"frames gives {have} at stride {self.stride}{more}; drop such sequences "
                f"or pass zero_infinity=True")

    # -- persistence ---------------------------------------------------------
    def config(self):
        """The JSON-able description stored with the weights."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "model": {"input_size": self.input_size, "stride": self.stride,
                          "hidden_size": self.lstm.hidden_size,
                          "num_layers": self.lstm.num_layers,
                          "num_classes": self.num_classes, "blank": self.blank,
                          "peepholes": self.lstm.peepholes, "dtype": self.dtype.name},
                "vocabulary": self.vocabulary, "features": self.features,
                "params": {k: list(v.shape) for k, v in self.params.items()},
                "sha256": _digest(self.host_params())}

    def save(self, path):
        """Write the model to ``path`` (one ``.npz`` file) atomically.

        The file is written to a temporary file in the same directory,
        flushed to disk, then renamed over ``path`` (``os.replace``) and the
        directory flushed too (:func:`ctcseq.datadir.atomic_write`), so a
        crash mid-save leaves any previous file at ``path`` intact.
        """
        cfg = json.dumps(self.config()).encode("utf-8")
        arrays = {k: np.ascontiguousarray(v) for k, v in self.host_params().items()}
        arrays[_CONFIG_KEY] = np.frombuffer(cfg, np.uint8)
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path, device="cpu"):
        """Read a model written by :meth:`save` (on ``device``: see :meth:`to`).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ctcseq.errors.DataError (a ValueError)
            The file is truncated or corrupt, is not a ctcseq model (the
            message says what it looks like instead: an LM, a training
            checkpoint, a feature array...), was written by a newer format
            version, or its weights do not match its configuration.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model file at {path!r}")
        if os.path.isdir(path):
            raise DataError(f"{path!r} is a directory, not a model file (e.g. best.npz in "
                            f"it?)")
        with open(path, "rb") as f:
            head = f.read(512)
        if head and not head.startswith(b"PK"):  # every .npz is a zip archive
            raise DataError(f"{path!r} is not a ctcseq model file (a .npz archive from "
                            f"'ctcseq train' or CTCModel.save): {_looks_like(path, head)}")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}  # reads (and CRC-checks) everything
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
            raise DataError(f"{path!r} is not a readable model file (truncated or corrupt?): "
                            f"{type(e).__name__}: {e}") from e
        if _CONFIG_KEY not in arrays:
            if "__meta__" in arrays:
                raise DataError(f"{path!r} is a training checkpoint, not a model file: use "
                                f"best.npz from the same directory")
            raise DataError(f"{path!r} has no {_CONFIG_KEY} entry: not a ctcseq model file "
                            f"(a .npz archive of other arrays)")
        try:
            cfg = json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path!r}: corrupt model configuration: {e}") from e
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise DataError(f"{path!r} is not a {FORMAT} file")
        version = cfg.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise DataError(f"{path!r}: invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise DataError(f"{path!r} has format version {version}; this ctcseq reads "
                            f"versions up to {FORMAT_VERSION} (upgrade ctcseq)")
        return cls.from_config(cfg, arrays, path).to(device)

    @classmethod
    def from_config(cls, cfg, arrays, path):
        """The model of a configuration (:meth:`config`) and its weights
        (host arrays by name), checked against each other and the checksum;
        ``path`` names the source in errors (a :class:`DataError`)."""
        try:
            m = cfg["model"]
            model = cls(m["input_size"], m["hidden_size"], m["num_layers"], m["num_classes"],
                        blank=m["blank"], peepholes=m["peepholes"], dtype=m["dtype"],
                        init_range=0.0, vocabulary=cfg.get("vocabulary"),
                        features=cfg.get("features"), stride=m.get("stride", 1))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path!r}: invalid model configuration: {e}") from e
        expected, found = set(model.params), set(arrays)
        if expected != found:
            raise DataError(f"{path!r}: weights do not match the configuration; missing "
                            f"{sorted(expected - found)}, unexpected {sorted(found - expected)}")
        for k, p in model.params.items():
            a = arrays[k]
            if a.shape != p.shape or a.dtype != p.dtype:
                raise DataError(f"{path!r}: weight {k!r} has shape {a.shape} and dtype "
                                f"{a.dtype}; the configuration needs {p.shape} {p.dtype}")
            p[...] = a
        if cfg.get("sha256") != _digest(model.params):
            raise DataError(f"{path!r}: weights fail their checksum (corrupt file)")
        return model


def _looks_like(path, head):
    """What a file that is not a model seems to be, from its first bytes."""
    text = head.lstrip()
    if head.startswith(b"\x93NUMPY"):
        return "it is a single NumPy array (.npy), such as one utterance's features"
    if text.startswith(b"{"):
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError):
            d = None
        if isinstance(d, dict) and d.get("kind") in ("token-ngram", "ngram"):
            return ("it is an n-gram language model (JSON, e.g. lm.json from 'ctcseq train "
                    "--lm-order'): give it to 'ctcseq decode --lm' or TokenLM.load")
        if isinstance(d, dict) and "config" in d and "format_version" in d:
            return "it is the settings file (feats.json) of a feature directory"
        return "it is a JSON text file"
    if b"\\data\\" in head:
        return "it is an ARPA language model: give it to 'ctcseq decode --lm' or read_arpa"
    if head.startswith((b"RIFF", b"fLaC", b"OggS", b"ID3")):
        return "it is an audio file"
    if b"\x00" not in head:
        return "it is a text file"
    return "its content is of an unknown kind"
