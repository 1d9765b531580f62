"""Whatever 'ctcseq prepare CORPUS' writes passes validate_data_dir: every
data directory it leaves is complete, sorted and consistent, its audio is
there, and its labels are inside the inventories written beside it.

TIMIT, LibriSpeech and audio folders are faked as in
test_data_prep_corpora.py; the synthetic corpus is checked on the session's
tiny corpus (test_cli.py::test_prepared_data_dirs_pass_validation)."""
import os

import pytest

from ctcseq import datadir
from ctcseq.cli import main
from data_prep.phones import read_phone_list
from test_data_prep_corpora import FAKE_SPEAKERS, make_folder, make_librispeech, make_timit


def prepare_timit(tmp_path):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS, "upper")
    (tmp_path / "test.list").write_text("mdab0\n")
    (tmp_path / "dev.list").write_text("faks0\nmbdg0\n")
    return ["timit", "--timit", root, "--test-speakers", tmp_path / "test.list",
            "--dev-speakers", tmp_path / "dev.list"]


def prepare_librispeech(tmp_path):
    root = make_librispeech(tmp_path / "corpora")
    return ["librispeech", "--root", root / "LibriSpeech", "--parts", "train-clean-100",
            "dev-clean"]


def prepare_folder(unit, lines):
    def prepare(tmp_path):
        audio = make_folder(tmp_path / "audio")
        (tmp_path / "trans.txt").write_text(lines)
        return ["folder", "--audio", audio, "--transcript", tmp_path / "trans.txt",
                "--unit", unit, "--spk-from-dir"]
    return prepare


@pytest.mark.parametrize("prepare", [
    prepare_timit, prepare_librispeech,
    prepare_folder("words", "hello Hello World\nalice/sub/bye Good bye\n"),
    prepare_folder("phones", "hello hh ah l ow\nbye b ay\n"),
    prepare_folder("chars", "hello h i <space> y o u\nbye o k\n"),
], ids=["timit", "librispeech", "folder-words", "folder-phones", "folder-chars"])
def test_prepared_data_dirs_pass_validation(tmp_path, prepare):
    out = tmp_path / "out"
    args = [str(a) for a in prepare(tmp_path)]
    assert main(["prepare", *args, "--out", str(out)]) == 0
    inventory = {name: read_phone_list(out / name) for name in ("phones.txt", "chars.txt")
                 if (out / name).exists()}
    assert inventory
    dirs = sorted(d for d, _, files in os.walk(out) if "wav.scp" in files)
    assert dirs
    for d in dirs:
        tables = datadir.validate_data_dir(d, phones=inventory.get("phones.txt"),
                                           check_audio=True)
        if "text.phn" in tables:
            assert "phones.txt" in inventory
        if "text.chr" in tables:
            chars = {c for v in tables["text.chr"].values() for c in v.split()}
            assert chars <= set(inventory["chars.txt"])
