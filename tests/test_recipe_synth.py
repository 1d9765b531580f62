"""The default recipe, every stage, at its --tiny size (about 30 s)."""
import os
import subprocess

# required by pyproject.toml: a broken install fails here instead of skipping
import espeakng_loader  # noqa: F401
import wordfreq  # noqa: F401

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "recipes", "synth", "run.sh")


def run(cwd, *args):
    return subprocess.run(["bash", RECIPE, "--tiny", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_tiny_recipe_runs_every_stage_and_resumes(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stage in range(1, 7):
        assert f"stage {stage}:" in proc.stdout
    exp = tmp_path / "exp" / "synth-tiny"
    score = (exp / "decode_test" / "score.txt").read_text()
    assert score.startswith("PER ") and "speaker" in score
    assert (exp / "decode_test" / "hyp_greedy.txt").read_text().strip()
    alpha_beta = (exp / "decode_dev" / "lm_weights").read_text().split()
    assert len(alpha_beta) == 2
    assert "labels in" in (exp / "decode_test" / "align_check.txt").read_text()
    model = exp / "model" / "best.npz"
    mtime = model.stat().st_mtime_ns
    # a rerun skips the finished synthesis and training
    again = run(tmp_path, "--stage", "1", "--stop-stage", "3")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "exists, made with these arguments: skipping" in again.stdout and "--resume" in again.stdout
    assert model.stat().st_mtime_ns == mtime
