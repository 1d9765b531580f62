"""Export a trained :class:`~ctcseq.model.CTCModel` for deployment outside Python.

Two formats, each needing one optional package (``pip install
"ctcseq[export]"``):

* :func:`export_onnx`: a standard ONNX graph (the BiLSTM as ONNX ``LSTM``
  nodes) that onnxruntime, or any ONNX runtime with the ``LSTM`` operator,
  runs without ctcseq; :func:`onnx_session` and :func:`onnx_log_probs` run
  it with onnxruntime, :func:`onnx_metadata` reads back what a user of the
  model needs to make its input and read its output.
* :func:`export_safetensors`: the weights under their ctcseq names with the
  model's configuration, read back into an identical model by
  :func:`load_safetensors`.

ONNX graph
----------
Inputs:

* ``x``: float32 (T, N, input_size), padded features (the output of the
  model's feature extraction and normaliser, as for
  :meth:`CTCModel.log_probs`);
* ``lengths``: int64 (N,), valid frames per sequence, each in [0, T].

Outputs:

* ``log_probs``: float32 (ceil(T / stride), N, num_classes), log-softmax
  over classes;
* ``output_lengths``: int64 (N,), ``ceil(lengths / stride)``.

Nodes: frame stacking (frames at or past each length set to zero, padded
to a multiple of ``stride`` frames, every ``stride`` frames concatenated,
as :meth:`CTCModel._stack`), one bidirectional ``LSTM`` node per layer
(``sequence_lens`` = the output lengths; the reverse direction starts at
each sequence's own last step, as in ctcseq), the last layer's output set
to zero at steps past each output length (ctcseq's BiLSTM output is exactly
zero there; the ONNX specification leaves those steps undefined), then
``MatMul`` + ``Add`` and ``LogSoftmax``.  So steps past each output length
hold the log-softmax of the output bias, as :meth:`CTCModel.log_probs`
returns them; they are padding and must be ignored.

Weight mapping: ctcseq stores torch's gate order (i, f, g, o); ONNX wants
(i, o, f, c), c being ctcseq's g.  The two biases of a direction are summed
into ONNX's ``Wb`` (``Rb`` is zero), ctcseq's peephole rows (i, f, o) become
ONNX's ``P`` in its order (i, o, f).  The gate functions are ONNX's defaults
(sigmoid, tanh, tanh), as ctcseq's.

float64 models are exported as float32 graphs (weights rounded to float32):
onnxruntime's ``LSTM`` has no double kernel ("LSTM operator does not
support double yet", onnxruntime 1.32).  Their metadata records
``source_dtype``.

Metadata (``metadata_props``, each value a JSON text): ``format``
(``"ctcseq.onnx"``), ``format_version``, ``model`` (the
:meth:`CTCModel.config` of the exported model without its weights list),
``features`` (the model's whole ``features`` value), ``feature_config`` and
``normalizer`` (its ``"config"`` and ``"normalizer"`` entries, ``null``
when absent), ``vocabulary``, ``blank``, ``stride``, ``source_dtype``.
"""
import json
import os

import numpy as np

from .datadir import atomic_write
from .errors import DataError, UserError
from .model import FORMAT, FORMAT_VERSION, CTCModel

ONNX_FORMAT = "ctcseq.onnx"
ONNX_FORMAT_VERSION = 1
DEFAULT_OPSET = 17
MIN_OPSET = 14   # LSTM-14 (layout attribute), LogSoftmax-13 (single axis)
SAFETENSORS_CONFIG_KEY = "ctcseq.config"

# ctcseq/torch gate blocks (i, f, g, o) in ONNX's order (i, o, f, c)
_ONNX_GATES = (0, 3, 1, 2)
# ctcseq peephole rows (i, f, o) in ONNX's P order (i, o, f)
_ONNX_PEEPS = (0, 2, 1)


def _require(module):
    """Import an optional dependency, or say how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise UserError(f"exporting needs the '{package}' package, which is not installed: "
                        f'pip install "ctcseq[export]"') from None


def _check_model(model):
    if not isinstance(model, CTCModel):
        raise UserError(f"model must be a ctcseq.CTCModel, got {type(model).__name__}")


# -- ONNX --------------------------------------------------------------------

def _onnx_lstm_weights(model, k):
    """ONNX LSTM inputs W, R, B, P (P None without peepholes) of layer k, float32."""
    p, H = model.host_params(), model.lstm.hidden_size

    def gates(a):  # (4H, ...) in (i, f, g, o) -> (4H, ...) in (i, o, f, c)
        return np.concatenate([a[j * H:(j + 1) * H] for j in _ONNX_GATES])

    W, R, B, P = [], [], [], []
    for sfx in ("", "_reverse"):
        W.append(gates(p[f"lstm.weight_ih_l{k}{sfx}"]))
        R.append(gates(p[f"lstm.weight_hh_l{k}{sfx}"]))
        # summed in the model's dtype, as BiLSTM.forward does, so that float32
        # models get bit-identical biases
        b = gates(p[f"lstm.bias_ih_l{k}{sfx}"] + p[f"lstm.bias_hh_l{k}{sfx}"])
        B.append(np.concatenate([b, np.zeros_like(b)]))   # Wb, then Rb = 0
        if model.lstm.peepholes:
            P.append(p[f"lstm.weight_peep_l{k}{sfx}"][list(_ONNX_PEEPS)].reshape(-1))
    f32 = lambda arrs: np.ascontiguousarray(np.stack(arrs), np.float32)  # noqa: E731
    return f32(W), f32(R), f32(B), (f32(P) if P else None)


def _onnx_graph(model):
    """The GraphProto of ``model`` (see the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, value, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    k, D, H = model.stride, model.input_size, model.lstm.hidden_size
    C = model.num_classes
    zero_f = const("zero_f", 0.0, np.float32)
    lengths = "lengths"
    x = "x"
    if k == 1:
        out_len = node("Identity", [lengths], "out_lengths_i")
        inp = x
    else:
        # CTCModel._stack: pad T to a multiple of k, zero frames >= length, and
        # concatenate every k frames
        one_d = const("axes_0", [0])
        shape = node("Shape", [x], "x_shape")
        T = node("Gather", [shape, const("idx_0", 0)], "T")
        N = node("Gather", [shape, const("idx_1", [1])], "N")
        km1, kk = const("k_minus_1", k - 1), const("k", k)
        Tk = node("Div", [node("Add", [T, km1], "T_plus"), kk], "Tk")
        Tp = node("Mul", [Tk, kk], "T_padded")
        pad = node("Sub", [Tp, T], "pad_frames")
        zeros2 = const("zeros_2", [0, 0])
        pads = node("Concat", [const("zeros_3", [0, 0, 0]),
                               node("Unsqueeze", [pad, one_d], "pad_1d"), zeros2],
                    "pads", axis=0)
        xp = node("Pad", [x, pads], "x_padded")
        t = node("Range", [const("t0", 0), Tp, const("t1", 1)], "frame_index")
        valid = node("Less", [node("Unsqueeze", [t, const("axes_1", [1])], "frame_col"),
                              node("Unsqueeze", [lengths, one_d], "lengths_row")],
                     "frame_valid")
        valid = node("Unsqueeze", [valid, const("axes_2", [2])], "frame_valid_3d")
        xz = node("Where", [valid, xp, zero_f], "x_zeroed")
        shape4 = node("Concat", [const("shape_a", [-1, k]), N, const("shape_b", [D])],
                      "stack_shape", axis=0)
        x4 = node("Reshape", [xz, shape4], "x_4d")                      # (Tk, k, N, D)
        x4 = node("Transpose", [x4], "x_4d_t", perm=[0, 2, 1, 3])     # (Tk, N, k, D)
        inp = node("Reshape", [x4, const("shape_stacked", [0, 0, k * D])], "x_stacked")
        out_len = node("Div", [node("Add", [lengths, km1], "lengths_plus"), kk],
                       "out_lengths_i")
    seq_lens = node("Cast", [out_len], "seq_lens", to=TensorProto.INT32)
    merge = const("shape_bidir", [0, 0, 2 * H])
    for layer in range(model.lstm.num_layers):
        W, R, B, P = _onnx_lstm_weights(model, layer)
        names = [const(f"lstm{layer}_{n}", a, np.float32)
                 for n, a in (("W", W), ("R", R), ("B", B))]
        ins = [inp, *names, seq_lens]
        if P is not None:
            ins += ["", "", const(f"lstm{layer}_P", P, np.float32)]
        nodes.append(helper.make_node("LSTM", ins, [f"lstm{layer}_Y"], name=f"lstm{layer}",
                                      direction="bidirectional", hidden_size=H))
        # Y (Tk, 2, N, H) -> (Tk, N, 2H): forward then reverse, as ctcseq
        y = node("Transpose", [f"lstm{layer}_Y"], f"lstm{layer}_Yt", perm=[0, 2, 1, 3])
        inp = node("Reshape", [y, merge], f"lstm{layer}_out")
    # zero past each output length, as ctcseq's BiLSTM (see the module docstring)
    Tk = node("Gather", [node("Shape", [inp], "h_shape"), const("idx_0b", 0)], "steps")
    s = node("Range", [const("s0", 0), Tk, const("s1", 1)], "step_index")
    valid = node("Less", [node("Unsqueeze", [s, const("axes_1b", [1])], "step_col"),
                          node("Unsqueeze", [out_len, const("axes_0b", [0])], "out_len_row")],
                 "step_valid")
    valid = node("Unsqueeze", [valid, const("axes_2b", [2])], "step_valid_3d")
    h = node("Where", [valid, inp, zero_f], "h_masked")
    w = const("out_weight_t", model.host_params()["out.weight"].T, np.float32)   # (2H, C)
    b = const("out_bias", model.host_params()["out.bias"], np.float32)
    logits = node("Add", [node("MatMul", [h, w], "out_matmul"), b], "logits")
    node("LogSoftmax", [logits], "log_probs", axis=-1)
    node("Identity", [out_len], "output_lengths")

    graph = helper.make_graph(
        nodes, "ctcseq_bilstm_ctc", [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", D]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["T_out", "N", C]),
         helper.make_tensor_value_info("output_lengths", TensorProto.INT64, ["N"])],
        inits)
    return graph


def export_onnx(model, path, opset=DEFAULT_OPSET):
    """Write ``model`` as an ONNX graph (inputs, outputs, metadata: see the module).

    Parameters
    ----------
    model : CTCModel
    path : str or os.PathLike
        File to write (atomically: a crash leaves any previous file intact).
    opset : int, default 17
        ONNX opset of the default domain, from 14 to the newest the
        installed ``onnx`` knows.

    Returns
    -------
    onnx.ModelProto
        The exported model (already checked with ``onnx.checker``).

    Raises
    ------
    ctcseq.errors.UserError
        ``onnx`` not installed, model not a CTCModel, or a bad opset.
    """
    onnx = _require("onnx")
    from onnx import helper
    _check_model(model)
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise UserError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest "
                        f"this onnx {onnx.__version__} knows), got {opset!r}")
    from . import __version__
    m = helper.make_model(_onnx_graph(model),
                          opset_imports=[helper.make_opsetid("", int(opset))],
                          producer_name="ctcseq", producer_version=__version__,
                          doc_string="ctcseq BiLSTM-CTC model: x (T, N, input_size) float32, "
                          "lengths (N,) int64 -> log_probs (ceil(T/stride), N, C), "
                          "output_lengths (N,)")
    # the IR version the opset needs, not the newest onnx knows, so that older
    # runtimes load the file
    m.ir_version = min(m.ir_version, _ir_version_for(onnx, int(opset)))
    cfg = model.config()
    del cfg["params"]
    feats = model.features if isinstance(model.features, dict) else {}
    props = {"format": ONNX_FORMAT, "format_version": ONNX_FORMAT_VERSION, "model": cfg,
             "features": model.features, "feature_config": feats.get("config"),
             "normalizer": feats.get("normalizer"), "vocabulary": model.vocabulary,
             "blank": model.blank, "stride": model.stride, "source_dtype": model.dtype.name}
    helper.set_model_props(m, {key: json.dumps(v) for key, v in props.items()})
    onnx.checker.check_model(m)
    with atomic_write(path) as f:
        f.write(m.SerializeToString())
    return m


def _ir_version_for(onnx, opset):
    for entry in onnx.helper.VERSION_TABLE:   # (release, ir, ai.onnx opset, ...)
        if entry[2] >= opset:
            return entry[1]
    return onnx.IR_VERSION


def onnx_metadata(path):
    """The metadata of a file written by :func:`export_onnx`, JSON-decoded.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``model``, ``features``,
        ``feature_config``, ``normalizer``, ``vocabulary``, ``blank``,
        ``stride``, ``source_dtype`` (see the module docstring).

    Raises
    ------
    ctcseq.errors.DataError
        Not an ONNX file, or not one from :func:`export_onnx`.
    """
    onnx = _require("onnx")
    path = os.fspath(path)
    try:
        m = onnx.load(path, load_external_data=False)
    except FileNotFoundError:
        raise
    except Exception as e:   # protobuf's DecodeError and kin
        raise DataError(f"{path!r} is not a readable ONNX file: {type(e).__name__}: "
                        f"{e}") from e
    props = {p.key: p.value for p in m.metadata_props}
    if props.get("format") != json.dumps(ONNX_FORMAT):
        raise DataError(f"{path!r} is an ONNX file but not one exported by ctcseq "
                        f"(no format {ONNX_FORMAT!r} in its metadata)")
    try:
        return {key: json.loads(v) for key, v in props.items()}
    except json.JSONDecodeError as e:
        raise DataError(f"{path!r}: corrupt metadata: {e}") from e


def onnx_session(path, threads=1):
    """An onnxruntime CPU session of an exported model.

    Parameters
    ----------
    path : str or os.PathLike
    threads : int, default 1
        Threads of each operator (``intra_op_num_threads``); operators run
        one at a time.

    Returns
    -------
    onnxruntime.InferenceSession
    """
    ort = _require("onnxruntime")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise UserError(f"threads must be a positive integer, got {threads!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle worker threads block instead of spinning: spinning ones kept both
    # cores busy after each run and slowed whatever ran next (ctcseq's own
    # forward by 10%), while onnxruntime itself ran no faster with them.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(os.fspath(path), so, providers=["CPUExecutionProvider"])


def onnx_log_probs(session, x, lengths):
    """Run an exported model: the ONNX twin of :meth:`CTCModel.log_probs`.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
        From :func:`onnx_session`.
    x : array (T, N, input_size)
        Converted to float32.
    lengths : array of int (N,), each in [0, T]

    Returns
    -------
    log_probs : float32 ndarray (ceil(T / stride), N, num_classes)
    output_lengths : int64 ndarray (N,)
    """
    x = np.ascontiguousarray(x, np.float32)
    lengths = np.asarray(lengths)
    if x.ndim != 3:
        raise UserError(f"x must be 3-D (T, N, input_size), got shape {x.shape}")
    if lengths.shape != (x.shape[1],) or (lengths.size and (
            lengths.min() < 0 or lengths.max() > x.shape[0])):
        raise UserError(f"lengths must have shape ({x.shape[1]},) with values in "
                         f"[0, {x.shape[0]}], got {lengths!r}")
    lp, out_len = session.run(["log_probs", "output_lengths"],
                              {"x": x, "lengths": lengths.astype(np.int64)})
    return lp, out_len


# -- safetensors ---------------------------------------------------------------

def export_safetensors(model, path):
    """Write the weights of ``model`` as a safetensors file.

    Tensors are named as in :attr:`CTCModel.params` (``lstm.weight_ih_l0``,
    ..., ``out.bias``) in the model's dtype; the metadata entry
    ``"ctcseq.config"`` holds the JSON of :meth:`CTCModel.config`
    (configuration, vocabulary, features, parameter checksum).  Written
    atomically.

    Raises
    ------
    ctcseq.errors.UserError
        ``safetensors`` not installed, or model not a CTCModel.
    """
    st = _require("safetensors.numpy")
    _check_model(model)
    tensors = {k: np.ascontiguousarray(v) for k, v in model.host_params().items()}
    data = st.save(tensors, metadata={SAFETENSORS_CONFIG_KEY: json.dumps(model.config())})
    with atomic_write(path) as f:
        f.write(data)


def load_safetensors(path):
    """Read a model written by :func:`export_safetensors`.

    Returns
    -------
    CTCModel
        Bit-identical parameters, same configuration, vocabulary and
        features.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ctcseq.errors.DataError
        Not a safetensors file, not one from :func:`export_safetensors`, a
        newer format version, or weights that do not match the
        configuration or its checksum.
    """
    _require("safetensors.numpy")
    from safetensors import safe_open
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # safetensors raises its own SafetensorError, OSError...
        raise DataError(f"{path!r} is not a readable safetensors file: "
                        f"{type(e).__name__}: {e}") from e
    if SAFETENSORS_CONFIG_KEY not in meta:
        raise DataError(f"{path!r} is a safetensors file without the {SAFETENSORS_CONFIG_KEY!r} "
                        f"metadata: not written by ctcseq's export_safetensors")
    try:
        cfg = json.loads(meta[SAFETENSORS_CONFIG_KEY])
    except json.JSONDecodeError as e:
        raise DataError(f"{path!r}: corrupt model configuration: {e}") from e
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise DataError(f"{path!r}: its configuration is not a {FORMAT} one")
    version = cfg.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise DataError(f"{path!r} has format version {version!r}; this ctcseq reads "
                        f"versions 1 to {FORMAT_VERSION} (upgrade ctcseq?)")
    return CTCModel.from_config(cfg, arrays, path)
