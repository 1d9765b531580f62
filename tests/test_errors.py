"""User-facing errors and files: infeasible targets, the CLI's error
handling (one line for user errors, tracebacks for bugs, --debug), counted
skips, atomic files and standard JSON, resume of a finished run, and
messages that name the file and what it is."""
import io
import json
import math
import os

import numpy as np
import pytest

import train_fixture
from ctcseq import cli
from ctcseq.cli import main
from ctcseq.errors import CtcseqError, DataError, UserError
from ctcseq.features import FeatureConfig, Normalizer
from ctcseq.lm import NGramLM, TokenLM, train_token_lm
from ctcseq.model import CTCModel, min_output_steps
from ctcseq.progress import Progress, format_duration
from ctcseq.train import TrainConfig, Trainer, evaluate


# -- 5. infeasible targets -------------------------------------------------------

def test_min_output_steps_counts_a_blank_between_repeats():
    assert min_output_steps([]) == 0
    assert min_output_steps([1, 2, 3]) == 3
    assert min_output_steps([1, 1, 2, 2, 2]) == 8
    assert min_output_steps(np.array([3, 1, 3])) == 3


def test_infeasible_target_raises_before_the_forward_pass(monkeypatch):
    model = CTCModel(3, 4, 1, 5, stride=2, seed=0)
    x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)
    # sequence 0: 7 frames -> 4 steps for 3 labels; sequence 1: 5 frames -> 3 steps,
    # but [2, 2, 3] needs 4 (a blank between the repeated 2s)
    targets = np.array([[1, 2, 3], [2, 2, 3]])
    called = []
    monkeypatch.setattr(model.lstm, "forward", lambda *a, **k: called.append(1))
    with pytest.raises(DataError, match=r"sequence 1: its target of 3 labels \(1 repeated "
                       r".*needs at least 4 output steps, but its input of 5 frames gives 3 "
                       r"at stride 2") as info:
        model.loss_and_grads(x, [7, 5], targets, [3, 3])
    assert isinstance(info.value, ValueError) and not called
    monkeypatch.undo()
    np.testing.assert_array_equal(model.too_short([7, 5], targets, [3, 3]), [False, True])
    # zero_infinity still zeroes it, and feasible batches are untouched
    loss, grads = model.loss_and_grads(x, [7, 5], targets, [3, 3], zero_infinity=True)
    assert math.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    loss2, _ = model.loss_and_grads(x, [7, 7], targets, [3, 3])
    assert math.isfinite(loss2)


def _short_examples():
    """Examples of which every third is too short at stride 2."""
    out = train_fixture.examples(12, 0)
    for i, e in enumerate(out):
        if i % 3 == 0:   # fewer output steps than labels
            e.feats = e.feats[:2 * len(e.labels) - 2]
    return out


def test_trainer_counts_and_leaves_out_infeasible_utterances(tmp_path):
    model = CTCModel(train_fixture.DIM, 8, 1, train_fixture.NUM_LABELS + 1, seed=1, stride=2)
    train, dev = _short_examples(), _short_examples()[:6]
    cfg = TrainConfig(lr=0.01, batch_frames=200, max_epochs=1, patience=0, seed=3)
    logged = []
    t = Trainer(model, train, dev, str(tmp_path), cfg, progress=False)
    history = t.run(log=logged.append)
    assert history[0]["train_infeasible"] == 4 and history[0]["dev_infeasible"] == 2
    assert any("4 (e.g. u0" in s and "too short" in s for s in logged)
    # the dev loss is that of the feasible utterances alone, not diluted by zeros
    feasible = [e for e, bad in zip(dev, t.dev_infeasible) if not bad]
    with t.averaged_weights():
        loss_all, _ = evaluate(model, dev, cfg.batch_frames, model.dtype)
        loss_ok, _ = evaluate(model, feasible, cfg.batch_frames, model.dtype)
    assert loss_all == pytest.approx(loss_ok, rel=1e-12)
    with pytest.raises(DataError, match="all 2 training utterances are too short"):
        Trainer(model, [train[0], train[3]], [], str(tmp_path / "b"), cfg, progress=False)


# -- 6. error types, the CLI, counted skips ----------------------------------------

def test_library_raises_package_errors_that_are_value_errors():
    for make in (lambda: CTCModel(3, 4, 1, 5, stride=0), lambda: TrainConfig(lr_decay=2.0),
                 lambda: train_token_lm([[1]], 3, order=0)):
        with pytest.raises(UserError) as info:
            make()
        assert isinstance(info.value, ValueError) and isinstance(info.value, CtcseqError)


def test_cli_bugs_keep_their_traceback_and_debug_shows_user_errors(monkeypatch, capsys,
                                                                   tmp_path):
    def bug(args, rest):
        raise ValueError("an internal inconsistency")
    monkeypatch.setattr(cli, "cmd_eval", bug)
    with pytest.raises(ValueError, match="internal inconsistency"):
        main(["eval", "ref", "hyp"])
    assert capsys.readouterr().err == ""

    def user(args, rest):
        raise UserError("a bad\nsetting")
    monkeypatch.setattr(cli, "cmd_eval", user)
    assert main(["eval", "ref", "hyp"]) == 2
    assert capsys.readouterr().err == "ctcseq eval: error: a bad setting\n"
    for argv in (["--debug", "eval", "ref", "hyp"], ["eval", "ref", "hyp", "--debug"]):
        with pytest.raises(UserError):
            main(argv)
    monkeypatch.undo()
    assert main(["eval", str(tmp_path / "missing"), "hyp"]) == 2   # a named file
    assert "missing: No such file" in capsys.readouterr().err


def test_trainer_counts_skipped_updates(tmp_path):
    t = train_fixture.build(str(tmp_path), max_epochs=1)
    real, calls = t.model.loss_and_grads, []

    def sometimes_nan(*a, **k):
        calls.append(1)
        loss, grads = real(*a, **k)
        return (float("nan"), grads) if len(calls) in (2, 3) else (loss, grads)

    t.model.loss_and_grads = sometimes_nan
    logged = []
    history = t.run(log=logged.append)
    assert history[0]["skipped_updates"] == 2 and math.isfinite(history[0]["train_loss"])
    assert any(f"2 of {len(calls)} updates skipped" in s for s in logged)


@pytest.fixture
def tiny_model_and_feats(tmp_path):
    """A 1-layer model with 'ctcseq train'-style feature settings, and a
    feature directory of random frames for u1 and u2."""
    cfg = FeatureConfig(n_mels=4, deltas=0)
    rng = np.random.default_rng(0)
    feats = {u: rng.standard_normal((30, cfg.dim)).astype(np.float32) for u in ("u1", "u2")}
    norm = Normalizer("utterance").fit((f, None) for f in feats.values())
    model = CTCModel(cfg.dim, 4, 1, 3, vocabulary=["<blk>", "a", "b"],
                     features={"config": cfg.to_dict(), "normalizer": norm.to_dict(),
                               "text": "text.phn"})
    model_path = tmp_path / "best.npz"
    model.save(model_path)
    fdir = tmp_path / "feats"
    (fdir / "npy").mkdir(parents=True)
    (fdir / "feats.json").write_text(json.dumps({"format_version": 1,
                                                 "config": cfg.to_dict()}))
    for u, f in feats.items():
        np.save(fdir / "npy" / f"{u}.npy", f)
    (fdir / "feats.scp").write_text("".join(f"{u} npy/{u}.npy\n" for u in feats))
    return model_path, fdir


def test_align_reports_transcripts_without_features(tiny_model_and_feats, tmp_path, capsys):
    model_path, fdir = tiny_model_and_feats
    text = tmp_path / "text.phn"
    text.write_text("u1 a b\nu2 b\nu3 a\n")
    ctm = tmp_path / "ali.ctm"
    assert main(["align", str(model_path), "--feats", str(fdir), "--text", str(text),
                 "--out", str(ctm)]) == 1
    assert f"u3: no features in {fdir}" in capsys.readouterr().err
    assert sorted({line.split()[0] for line in ctm.read_text().splitlines()}) == ["u1", "u2"]
    text.write_text("x1 a\n")
    assert main(["align", str(model_path), "--feats", str(fdir), "--text", str(text)]) == 2
    assert "no utterance of" in capsys.readouterr().err


def test_cli_user_data_errors_are_one_line(tiny_model_and_feats, tmp_path, capsys):
    model_path, fdir = tiny_model_and_feats
    lm = train_token_lm([[1, 2, 3]], 5, order=2)   # an LM of another model
    lm.save(tmp_path / "lm.json")
    cases = [
        (["decode", str(model_path), "--feats", str(fdir), "--beam", "2", "--lm",
          str(tmp_path / "lm.json")], "trained for 5 classes"),
        (["decode", str(model_path), "--feats", str(fdir), "--beam", "-1"], "--beam"),
        (["decode", str(tmp_path / "lm.json"), "a.wav"], "n-gram language model"),
        (["decode", str(model_path), "--feats", str(tmp_path)], "not a feature directory"),
    ]
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1 a\nu2 b\n")
    hyp.write_text("u1 a\n")
    cases.append((["eval", str(ref), str(hyp)], "no hypothesis for 1 utterance"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


# -- 7. files ----------------------------------------------------------------------

def test_epoch_log_is_written_after_its_checkpoint(tmp_path):
    t = train_fixture.build(str(tmp_path), max_epochs=1, checkpoint_every=0)

    def crash():
        raise RuntimeError("power cut while checkpointing")
    t.save_checkpoint = crash
    with pytest.raises(RuntimeError):
        t.run(log=lambda *_: None)
    log = tmp_path / "train.jsonl"
    assert not log.exists() or log.read_text() == ""   # no epoch without its checkpoint


def test_resume_rewrites_the_log_and_never_duplicates_an_epoch(tmp_path):
    t = train_fixture.build(str(tmp_path), max_epochs=1, checkpoint_every=0)
    real, calls = t._write_log, []

    def crash_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("killed between the checkpoint and the log")
        real()
    t._write_log = crash_once
    with pytest.raises(RuntimeError):
        t.run(log=lambda *_: None)
    # the run had finished: resuming has no epoch to run, yet completes the log
    again = train_fixture.build(str(tmp_path), max_epochs=1, checkpoint_every=0)
    assert again.resume() and again.state["epoch"] == 1
    again.run(log=lambda *_: None)
    log = tmp_path / "train.jsonl"
    assert [json.loads(s)["epoch"] for s in log.read_text().splitlines()] == [1]
    longer = train_fixture.build(str(tmp_path), max_epochs=2, checkpoint_every=0)
    assert longer.resume()
    longer.run(log=lambda *_: None)
    assert [json.loads(s)["epoch"] for s in log.read_text().splitlines()] == [1, 2]


def test_saves_are_atomic_and_durable_through_one_helper(tmp_path, monkeypatch):
    import ctcseq.datadir as dd
    synced = []
    real = dd._fsync_dir
    monkeypatch.setattr(dd, "_fsync_dir", lambda d: synced.append(d) or real(d))
    t = train_fixture.build(str(tmp_path), max_epochs=1)
    t.save_checkpoint()
    t.model.save(tmp_path / "m.npz")
    train_token_lm([[1, 2]], 3, order=2).save(tmp_path / "lm.json")
    assert synced == [str(tmp_path)] * 3
    # a failed write leaves the old file and no temporary
    (tmp_path / "x.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with dd.atomic_write(tmp_path / "x.txt", "w") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert (tmp_path / "x.txt").read_text() == "old"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_interrupted_extraction_leaves_no_temporary_files(tmp_path, monkeypatch):
    import soundfile as sf

    import ctcseq.extract as ex
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(4800) * 0.05).astype(np.float32), 16000)
    out = tmp_path / "feats"
    cfg = FeatureConfig()

    def killed(f, arr):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(ex.np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        ex.extract_corpus({"spk_a": str(wav)}, str(out), cfg, jobs=1, progress=False)
    monkeypatch.undo()
    assert os.listdir(out / "npy") == []
    # a run killed outright (older versions' names too) is cleaned up by the next
    (out / "npy" / ".spk_a.npy.x1y2.tmp").write_bytes(b"partial")
    (out / "npy" / "spk_b.npy.tmp.npy").write_bytes(b"partial")
    res = ex.extract_corpus({"spk_a": str(wav)}, str(out), cfg, jobs=1, progress=False)
    assert res["extracted"] == 1 and os.listdir(out / "npy") == ["spk_a.npy"]


def test_lm_json_is_standard_and_old_files_still_load(tmp_path):
    lm = train_token_lm([[1, 2, 3, 1], [2, 3], [3, 1, 2]], 4, order=3)
    assert any(lp == -math.inf for lp, _ in lm.entries.values()) and lm.unk_logp == -math.inf
    path = tmp_path / "lm.json"
    lm.save(path)

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    d = json.loads(path.read_text(), parse_constant=refuse)
    assert d["unk_logp"] is None
    back = TokenLM.load(path)
    hists = [[], [1], [2, 3], [3, 1]]
    for h in hists:
        np.testing.assert_array_equal(back.log_probs(lm.predicted, [h] * len(lm.predicted)),
                                      lm.log_probs(lm.predicted, [h] * len(lm.predicted)))
    # a file written before: -Infinity where null is now
    old = {k: v for k, v in d.items() if k != "grams"}
    old.update(unk_logp=-math.inf,
               ngrams=[[list(g), lp, bw] for g, (lp, bw) in lm.entries.items()])
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert "-Infinity" in (tmp_path / "old.json").read_text()
    older = NGramLM.load(tmp_path / "old.json")
    assert older.entries == lm.entries and older.unk_logp == -math.inf


def test_resume_extends_a_finished_run_exactly(tmp_path):
    full = train_fixture.build(str(tmp_path / "full"), max_epochs=2, checkpoint_every=0)
    full.run(log=lambda *_: None)
    short = train_fixture.build(str(tmp_path / "ext"), max_epochs=1, checkpoint_every=0)
    short.run(log=lambda *_: None)
    longer = train_fixture.build(str(tmp_path / "ext"), max_epochs=2, checkpoint_every=0)
    longer.cfg.patience = 4   # patience may change too
    assert longer.resume() and longer.state["epoch"] == 1
    longer.run(log=lambda *_: None)
    for k, p in full.model.params.items():
        np.testing.assert_array_equal(longer.model.params[k], p, err_msg=k)
    other = train_fixture.build(str(tmp_path / "ext"), max_epochs=3, checkpoint_every=0)
    other.cfg.lr = 0.01
    with pytest.raises(UserError, match=r"other training settings \(lr 0.03 there, 0.01 now\)"):
        other.resume()


# -- 15. messages that point the right way ----------------------------------------

def test_model_load_says_what_the_file_is(tmp_path):
    lm = train_token_lm([[1, 2]], 3, order=2)
    lm.save(tmp_path / "lm.json")
    with pytest.raises(DataError) as info:
        CTCModel.load(tmp_path / "lm.json")
    msg = str(info.value)
    assert "lm.json" in msg and "language model" in msg and "pickle" not in msg
    np.save(tmp_path / "f.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="single NumPy array"):
        CTCModel.load(tmp_path / "f.npy")
    t = train_fixture.build(str(tmp_path / "run"), max_epochs=1)
    t.save_checkpoint()
    with pytest.raises(DataError, match="training checkpoint, not a model file"):
        CTCModel.load(tmp_path / "run" / "checkpoint.npz")


def test_lm_load_says_what_the_file_is(tmp_path):
    CTCModel(3, 4, 1, 5).save(tmp_path / "best.npz")
    with pytest.raises(DataError, match=r"best.npz: not an n-gram LM file.*\.npz archive"):
        TokenLM.load(tmp_path / "best.npz")
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="binary file"):
        TokenLM.load(tmp_path / "bin")
    (tmp_path / "feats.json").write_text('{"format_version": 1, "config": {}}')
    with pytest.raises(DataError, match="feats.json: not an n-gram model dict"):
        TokenLM.load(tmp_path / "feats.json")


def test_progress_eta_ignores_the_start_up_wait():
    """A 9 s job: 5 s of worker start-up, then 420 items at 105 per second.
    The first line once said ETA 2094s."""
    now = [0.0]
    out = io.StringIO()
    bar = Progress(420, "features", "utt", stream=out, clock=lambda: now[0])
    now[0] = 5.0
    for i in range(420):
        now[0] = 5.0 + (i + 1) / 105
        bar.update()
    etas = []
    for line in out.getvalue().splitlines():
        done = int(line.split()[1].split("/")[0])
        eta = line.rsplit("ETA ", 1)[1]
        if eta != "?":
            etas.append((float(eta.rstrip("s")), (420 - done) / 105))
    assert out.getvalue().splitlines()[0].endswith("ETA ?")
    assert etas and all(abs(got - true) <= 1.0 for got, true in etas), etas


def test_format_duration_of_small_and_large_sets():
    assert format_duration(72) == "72 s"           # 0.02 h: not "0.00 h"
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(30 * 60) == "30.0 min"
    assert format_duration(12 * 3600) == "12.00 h"


def test_decode_lexicon_without_a_word_lm_is_refused(tmp_path, capsys):
    for opt in (["--lexicon", "lex.txt"], ["--word-delimiter", "<space>"],
                ["--lexicon", "lex.txt", "--lm", "lm.json", "--beam", "4"]):
        assert main(["decode", str(tmp_path / "model.npz"), "x.wav", *opt]) == 2
        err = capsys.readouterr().err
        assert "go with a word LM" in err and len(err.strip().splitlines()) == 1
