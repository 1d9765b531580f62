"""Model export (ctcseq.export): ONNX run in onnxruntime against
CTCModel.log_probs, safetensors round trip, errors without the packages."""
import json
import sys

import numpy as np
import pytest

from ctcseq.errors import DataError, UserError
from ctcseq.export import (export_onnx, export_safetensors, load_safetensors, onnx_log_probs,
                           onnx_metadata, onnx_session)
from ctcseq.model import CTCModel

D, H, C = 5, 4, 7
FEATURES = {"config": {"kind": "fbank", "n_mels": 4, "deltas": 0},
            "normalizer": {"mode": "global", "mean": [0.5] * D, "std": [2.0] * D}}
VOCAB = ["<b>"] + [f"p{i}" for i in range(1, C)]


def need_onnx():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def batch(rng, T=13, lengths=(13, 8, 0, 1, 12), dtype=np.float32):
    """Padded random features with large garbage past each length (the export
    must ignore it, as CTCModel does)."""
    lengths = np.array(lengths, np.int64)
    x = rng.normal(size=(T, lengths.size, D))
    x[np.arange(T)[:, None] >= lengths[None, :]] = 1e3
    return x.astype(dtype), lengths


def make_model(layers, stride, peepholes, dtype=np.float32, seed=0):
    # init_range 0.5: gates well away from saturation, so a swapped gate or
    # peephole would change the output by far more than the tolerance
    return CTCModel(D, H, layers, C, blank=2, peepholes=peepholes, seed=seed, dtype=dtype,
                    init_range=0.5, vocabulary=VOCAB, features=FEATURES, stride=stride)


@pytest.mark.parametrize("layers,stride,peepholes", [
    (1, 1, True), (1, 2, False), (2, 1, False), (2, 2, True), (3, 2, False), (3, 3, True)])
def test_onnx_matches_log_probs(tmp_path, layers, stride, peepholes):
    need_onnx()
    import onnx
    model = make_model(layers, stride, peepholes, seed=layers + 10 * stride)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    onnx.checker.check_model(str(path), full_check=True)   # with shape inference
    m = onnx.load(str(path))
    lstms = [n for n in m.graph.node if n.op_type == "LSTM"]
    assert len(lstms) == layers
    assert all(len(n.input) == (8 if peepholes else 5) for n in lstms)

    rng = np.random.default_rng(layers)
    sess = onnx_session(path, threads=1)
    for T, lengths in [(13, (13, 8, 0, 1, 12)), (4, (3,)), (9, (9, 9))]:
        x, lengths = batch(rng, T, lengths)
        ref = model.log_probs(x, lengths)
        ref_len = model.output_lengths(lengths)
        lp, out_len = onnx_log_probs(sess, x, lengths)
        assert lp.dtype == np.float32 and lp.shape == ref.shape
        np.testing.assert_array_equal(out_len, ref_len)
        valid = np.arange(ref.shape[0])[:, None] < ref_len[None, :]
        assert valid.sum() > 0
        np.testing.assert_allclose(lp[valid], ref[valid], rtol=0, atol=1e-5)
        # past each length both give the log-softmax of the output bias
        np.testing.assert_allclose(lp[~valid], ref[~valid], rtol=0, atol=1e-5)


def test_onnx_gate_layout_is_exercised(tmp_path):
    """The comparison above can fail: the same export with ctcseq's own gate
    order (no reordering) disagrees with the model."""
    need_onnx()
    import ctcseq.export as ex
    model = make_model(2, 2, True)
    x, lengths = batch(np.random.default_rng(1))
    ref = model.log_probs(x, lengths)
    good = tmp_path / "good.onnx"
    export_onnx(model, good)
    lp, _ = onnx_log_probs(onnx_session(good), x, lengths)
    valid = np.arange(ref.shape[0])[:, None] < model.output_lengths(lengths)[None, :]
    assert np.abs(lp - ref)[valid].max() < 1e-5
    for gates, peeps in [((0, 1, 2, 3), ex._ONNX_PEEPS), (ex._ONNX_GATES, (0, 1, 2))]:
        orig = ex._ONNX_GATES, ex._ONNX_PEEPS
        ex._ONNX_GATES, ex._ONNX_PEEPS = gates, peeps
        try:
            export_onnx(model, tmp_path / "bad.onnx")
        finally:
            ex._ONNX_GATES, ex._ONNX_PEEPS = orig
        lp, _ = onnx_log_probs(onnx_session(tmp_path / "bad.onnx"), x, lengths)
        assert np.abs(lp - ref)[valid].max() > 1e-3


def test_onnx_float64_model_runs_as_float32(tmp_path):
    need_onnx()
    model = make_model(2, 2, True, dtype=np.float64)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    # the same weights rounded to float32: what the graph holds
    m32 = make_model(2, 2, True, dtype=np.float32)
    for k, p in m32.params.items():
        p[...] = model.params[k]
    x, lengths = batch(np.random.default_rng(2))
    lp, out_len = onnx_log_probs(onnx_session(path), x, lengths)
    valid = np.arange(lp.shape[0])[:, None] < out_len[None, :]
    np.testing.assert_allclose(lp[valid], m32.log_probs(x, lengths)[valid], rtol=0, atol=1e-5)
    ref64 = model.log_probs(x.astype(np.float64), lengths)
    np.testing.assert_allclose(lp[valid], ref64[valid], rtol=0, atol=1e-4)
    assert onnx_metadata(path)["source_dtype"] == "float64"


def test_onnx_metadata(tmp_path):
    need_onnx()
    model = make_model(1, 2, True)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, opset=14)
    meta = onnx_metadata(path)
    assert meta["format"] == "ctcseq.onnx" and meta["format_version"] == 1
    assert meta["vocabulary"] == VOCAB and meta["blank"] == 2 and meta["stride"] == 2
    assert meta["features"] == FEATURES
    assert meta["feature_config"] == FEATURES["config"]
    assert meta["normalizer"] == FEATURES["normalizer"]
    assert meta["model"]["model"] == model.config()["model"]
    assert meta["model"]["sha256"] == model.config()["sha256"]
    # the runtime sees the same entries, as JSON text
    custom = onnx_session(path).get_modelmeta().custom_metadata_map
    assert json.loads(custom["vocabulary"]) == VOCAB
    import onnx
    assert onnx.load(str(path)).opset_import[0].version == 14


def test_onnx_bad_arguments(tmp_path):
    need_onnx()
    model = make_model(1, 1, False)
    for opset in (10, 1000, "17", True):
        with pytest.raises(UserError, match="opset"):
            export_onnx(model, tmp_path / "m.onnx", opset=opset)
    with pytest.raises(UserError, match="CTCModel"):
        export_onnx(model.lstm, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(UserError, match="threads"):
        onnx_session(tmp_path / "m.onnx", threads=0)
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_text("hello")
    with pytest.raises(DataError, match="x.onnx"):
        onnx_metadata(not_onnx)


def test_onnx_metadata_rejects_foreign_onnx(tmp_path):
    need_onnx()
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "g",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "other.onnx"))
    with pytest.raises(DataError, match="not one exported by ctcseq"):
        onnx_metadata(tmp_path / "other.onnx")


@pytest.mark.parametrize("dtype,peepholes,stride", [
    (np.float32, True, 2), (np.float32, False, 1), (np.float64, True, 3)])
def test_safetensors_round_trip(tmp_path, dtype, peepholes, stride):
    pytest.importorskip("safetensors")
    from safetensors import safe_open
    model = make_model(2, stride, peepholes, dtype=dtype, seed=5)
    path = tmp_path / "m.safetensors"
    export_safetensors(model, path)
    with safe_open(str(path), framework="numpy") as f:
        assert set(f.keys()) == set(model.params)
    back = load_safetensors(path)
    assert back.config() == model.config()
    assert back.vocabulary == VOCAB and back.features == FEATURES
    for k, p in model.params.items():
        assert back.params[k].dtype == p.dtype
        assert back.params[k].tobytes() == p.tobytes()
    x, lengths = batch(np.random.default_rng(3), dtype=dtype)
    np.testing.assert_array_equal(back.log_probs(x, lengths), model.log_probs(x, lengths))


def test_safetensors_bad_files(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file
    model = make_model(1, 1, True)
    path = tmp_path / "m.safetensors"
    export_safetensors(model, path)
    # flip one bit of the last tensor's data: the checksum catches it
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        load_safetensors(bad)
    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(DataError, match="ctcseq.config"):
        load_safetensors(other)
    text = tmp_path / "t.safetensors"
    text.write_text("not a safetensors file")
    with pytest.raises(DataError, match="t.safetensors"):
        load_safetensors(text)
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("module,call", [
    ("onnx", lambda m, p: export_onnx(m, p)),
    ("onnxruntime", lambda m, p: onnx_session(p)),
    ("safetensors", lambda m, p: export_safetensors(m, p)),
    ("safetensors", lambda m, p: load_safetensors(p))])
def test_missing_package_says_how_to_install(tmp_path, monkeypatch, module, call):
    # a None entry in sys.modules makes 'import module' raise ImportError
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=rf"'{module}' package.*pip install \"ctcseq\[export\]\""):
        call(make_model(1, 1, False), tmp_path / "m.out")
