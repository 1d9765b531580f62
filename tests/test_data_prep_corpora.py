"""Tests of the TIMIT, LibriSpeech and generic-folder data preparation, on
small fake corpora built in tmp_path (tiny noise recordings, realistic
transcript files)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ctcseq import datadir
from ctcseq.cli import main as ctcseq_main
from ctcseq.features import FeatureConfig, compute_features, load_audio
from ctcseq.metrics import fold, timit_fold_map
from data_prep import folder, librispeech, timit
from data_prep.phones import read_phone_list

RATE = 16000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------
# a fake TIMIT
# --------------------------------------------------------------------------

# (start, end, phone) in samples; "q" and the closures exercise the folding
PHN = [(0, 400, "h#"), (400, 900, "sh"), (900, 1300, "iy"), (1300, 1400, "q"),
       (1400, 1900, "ae"), (1900, 2100, "dcl"), (2100, 2300, "d"), (2300, 2700, "ix"),
       (2700, 3200, "h#")]
PHN48 = ["sil", "sh", "iy", "ae", "vcl", "d", "ix", "sil"]
WRD = [(400, 1300, "she"), (1400, 2700, "had")]
TXT_ONLY = "Don't ask me, please!"          # an utterance without .WRD


def sphere_bytes(samples, utt_id):
    """A NIST SPHERE file as TIMIT's: 1024-byte header, PCM16 little endian."""
    header = (f"NIST_1A\n   1024\ndatabase_id -s5 TIMIT\ndatabase_version -s3 1.0\n"
              f"utterance_id -s{len(utt_id)} {utt_id}\nchannel_count -i 1\n"
              f"sample_count -i {len(samples)}\nsample_rate -i {RATE}\n"
              f"sample_min -i {samples.min()}\nsample_max -i {samples.max()}\n"
              f"sample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_sig_bits -i 16\n"
              f"end_head\n").encode("ascii")
    return header.ljust(1024, b" ") + samples.astype("<i2").tobytes()


def make_timit(root, speakers, layout="upper", seed=0, no_phn=()):
    """Write a fake TIMIT tree.

    speakers: {(part, dialect_region, spk): [utt, ...]}; layout "upper"
    (LDC), "lower" (lower-case names) or "riff" (RIFF copies ``.WAV.wav``
    only, under ROOT/data/); utterances in ``no_phn`` get no .PHN.
    """
    rng = np.random.default_rng(seed)
    case = str.lower if layout == "lower" else str.upper
    base = os.path.join(root, "data") if layout == "riff" else root
    for (part, dr, spk), utts in speakers.items():
        d = os.path.join(base, case(part), case(dr), case(spk))
        os.makedirs(d, exist_ok=True)
        for utt in utts:
            stem = os.path.join(d, case(utt))
            samples = (rng.standard_normal(3200) * 800).astype(np.int16)
            if layout == "riff":
                sf.write(stem + case(".wav") + ".wav", samples, RATE, subtype="PCM_16")
            else:
                with open(stem + case(".wav"), "wb") as f:
                    f.write(sphere_bytes(samples, f"{spk[1:]}_{utt}"))
            if utt not in no_phn:
                with open(stem + case(".phn"), "w") as f:
                    f.writelines(f"{s} {e} {p}\n" for s, e, p in PHN)
            if utt.startswith("sx"):        # only a .TXT: words come from there
                with open(stem + case(".txt"), "w") as f:
                    f.write(f"0 3200 {TXT_ONLY}\n")
            else:
                with open(stem + case(".wrd"), "w") as f:
                    f.writelines(f"{s} {e} {w}\n" for s, e, w in WRD)
                with open(stem + case(".txt"), "w") as f:
                    f.write("0 3200 She had.\n")
    return root


FAKE_SPEAKERS = {
    ("train", "dr1", "fcjf0"): ["sa1", "sa2", "si1027", "sx127"],
    ("train", "dr2", "marc0"): ["sa1", "si1188", "sx108"],
    ("test", "dr1", "mdab0"): ["sa1", "si1039", "sx139"],      # core test
    ("test", "dr1", "faks0"): ["sa2", "si943", "sx43"],        # dev
    ("test", "dr3", "mbdg0"): ["sa1", "si1463", "sx23"],       # dev, see lists()
    ("test", "dr2", "mrcz0"): ["sa1", "si1541", "sx101"],      # in neither list
}


@pytest.fixture
def lists(tmp_path):
    test = tmp_path / "test.list"
    dev = tmp_path / "dev.list"
    test.write_text("mdab0\n")
    dev.write_text("# dev speakers\nfaks0\nMBDG0\n")
    return str(test), str(dev)


def build(root, out, lists, **kw):
    logs = []
    summary = timit.build_timit(str(root), str(out), test_speakers=lists[0],
                                dev_speakers=lists[1], log=logs.append, jobs=2, **kw)
    return summary, logs


def utts_of(d):
    return sorted(datadir.read_table(os.path.join(d, "wav.scp")))


@pytest.mark.parametrize("layout", ["upper", "lower", "riff"])
def test_timit_split_membership(tmp_path, lists, layout):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS, layout)
    out = tmp_path / "out"
    summary, _ = build(root, out, lists)
    assert utts_of(out / "train") == ["fcjf0_si1027", "fcjf0_sx127", "marc0_si1188",
                                      "marc0_sx108"]
    assert utts_of(out / "dev") == ["faks0_si943", "faks0_sx43", "mbdg0_si1463", "mbdg0_sx23"]
    assert utts_of(out / "test") == ["mdab0_si1039", "mdab0_sx139"]
    assert summary["splits"]["train"] == {"utterances": 4, "speakers": 2,
                                          "hours": round(4 * 0.2 / 3600, 4), "phones": 32}
    p48 = read_phone_list(out / "phones.txt")
    for split in timit.SPLITS:
        tables = datadir.validate_data_dir(out / split, phones=p48, check_audio=True)
        assert all(os.path.isabs(w) for w in tables["wav.scp"].values())
        assert set(tables["utt2dur"].values()) == {"0.200"}
    assert datadir.read_table(out / "train" / "spk2utt")["fcjf0"] == "fcjf0_si1027 fcjf0_sx127"


def test_timit_full_test_and_transcripts(tmp_path, lists):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    out = tmp_path / "out"
    build(root, out, lists, full_test=True)
    assert utts_of(out / "test") == ["mdab0_si1039", "mdab0_sx139", "mrcz0_si1541",
                                     "mrcz0_sx101"]
    test = out / "test"
    text = datadir.read_table(test / "text")
    assert text["mdab0_si1039"] == "she had"                       # from .WRD
    assert text["mdab0_sx139"] == "don't ask me please"            # .TXT fallback
    phn = datadir.read_table(test / "text.phn")
    assert phn["mdab0_si1039"].split() == PHN48                    # 48 classes, no q
    assert datadir.read_table(test / "text.phn61")["mdab0_si1039"].split() == \
        [p for _, _, p in PHN]
    ctm = datadir.read_ctm(test / "phones.ctm")["mdab0_si1039"]
    assert [c[2] for c in ctm] == PHN48
    kept = [(s, e) for s, e, p in PHN if p != "q"]
    times = [t for s, e in kept for t in (s / RATE, (e - s) / RATE)]
    assert [t for c in ctm for t in c[:2]] == pytest.approx(times, abs=6e-4)   # 3 decimals


def test_timit_phones_fold_to_39(tmp_path, lists):
    p48 = timit.phones48()
    assert len(p48) == 48 and "q" not in p48
    phone_map = timit.read_phone_map()
    assert len(phone_map) == 61 and phone_map["q"] is None
    to39 = timit_fold_map(39)
    assert all(p in to39 for p in p48)          # 48-phone output scores with --fold timit39
    assert len({to39[p] for p in p48}) == 39
    for p61, p48_ in phone_map.items():         # 61 -> 48 -> 39 == 61 -> 39
        assert (fold([p48_], to39) if p48_ else []) == fold([p61], to39)
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    build(root, tmp_path / "out", lists)
    lines = (tmp_path / "out" / "phones.txt").read_text().splitlines()
    assert lines[0] == "aa 1" and len(lines) == 48


def test_timit_sphere_audio_feeds_the_front_end(tmp_path, lists):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    out = tmp_path / "out"
    build(root, out, lists)
    wav = datadir.read_table(out / "test" / "wav.scp")["mdab0_si1039"]
    with open(wav, "rb") as f:
        assert f.read(7) == b"NIST_1A"
    audio = load_audio(datadir.resolve_wav(out / "test", wav), RATE)
    assert audio.shape == (3200,) and 0 < np.abs(audio).max() < 1
    assert compute_features(audio, FeatureConfig()).shape[1] == 123


def test_timit_missing_phn_is_skipped_with_a_warning(tmp_path, lists):
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS, no_phn={"si1188"})
    summary, logs = build(root, tmp_path / "out", lists)
    assert "marc0_si1188" not in utts_of(tmp_path / "out" / "train")
    assert any("marc0_si1188" in line and ".PHN" in line for line in logs)
    assert summary["skipped"] == ["marc0_si1188: no .PHN file"]


def test_timit_errors_name_the_problem(tmp_path, lists):
    with pytest.raises(ValueError, match="nowhere.*no such directory"):
        build(tmp_path / "nowhere", tmp_path / "out", lists)
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS)
    shutil.rmtree(root / "TEST")
    with pytest.raises(ValueError, match="no TEST directory"):
        build(root, tmp_path / "out", lists)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no TRAIN and TEST"):
        build(tmp_path / "empty", tmp_path / "out", lists)
    root = make_timit(tmp_path / "timit2", FAKE_SPEAKERS)
    (tmp_path / "t2").write_text("mdab0\nfjem0\n")
    with pytest.raises(ValueError, match=r"core test speaker\(s\) not found in TEST: fjem0"):
        build(root, tmp_path / "out", (str(tmp_path / "t2"), lists[1]))
    (tmp_path / "d2").write_text("fcjf0\n")
    with pytest.raises(ValueError, match=r"dev speaker.*fcjf0 \(fcjf0 in TRAIN\)"):
        build(root, tmp_path / "out", (lists[0], str(tmp_path / "d2")))
    # the packaged lists name speakers this small tree lacks
    with pytest.raises(ValueError, match="not found in TEST"):
        timit.build_timit(str(root), str(tmp_path / "out"), log=lambda s: None)
    assert not (tmp_path / "out").exists()            # nothing written on error
    build(root, tmp_path / "out", lists)
    with pytest.raises(ValueError, match="--overwrite"):
        build(root, tmp_path / "out", lists)
    build(root, tmp_path / "out", lists, overwrite=True)


def test_packaged_speaker_lists():
    test, dev = timit.read_speaker_list(name="test"), timit.read_speaker_list(name="dev")
    assert len(test) == len(set(test)) == 24 and len(dev) == len(set(dev)) == 50
    assert not set(test) & set(dev)
    assert "mdab0" in test and "faks0" in dev
    assert all(s == s.lower() and len(s) == 5 and s[0] in "fm" for s in test + dev)


def test_cli_prepare_timit(tmp_path, lists, capsys):
    assert ctcseq_main(["prepare", "timit", "--timit", "/nonexistent", "--out",
                        str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctcseq prepare: error: --timit '/nonexistent': no such directory")
    assert len(err.strip().splitlines()) == 1
    root = make_timit(tmp_path / "timit", FAKE_SPEAKERS, "lower")
    assert ctcseq_main(["prepare", "timit", "--timit", str(root), "--out", str(tmp_path / "o"),
                        "--test-speakers", lists[0], "--dev-speakers", lists[1]]) == 0
    assert "train: 4 utterances, 2 speakers" in capsys.readouterr().out


def test_module_entry_point_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "data_prep.timit", "--timit",
                           str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --timit '{tmp_path / 'none'}': no such directory"]


# --------------------------------------------------------------------------
# a fake LibriSpeech
# --------------------------------------------------------------------------

LIBRI = {
    "dev-clean": {("84", "121123"): ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"],
                  ("174", "50561"): ["FORGOTTEN TOO THE NAME OF GILLIAN"]},
    "train-clean-100": {("103", "1240"): ["CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED",
                                          "THAT HAD ITS SOURCE AWAY BACK IN THE WOODS"],
                        ("1034", "121119"): ["WHAT'S THE MATTER"]},
}


def make_librispeech(root, parts=LIBRI, seed=0):
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "LibriSpeech")
    for part, chapters in parts.items():
        for (spk, chap), lines in chapters.items():
            d = os.path.join(base, part, spk, chap)
            os.makedirs(d)
            with open(os.path.join(d, f"{spk}-{chap}.trans.txt"), "w") as f:
                for i, line in enumerate(lines):
                    utt = f"{spk}-{chap}-{i:04d}"
                    f.write(f"{utt} {line}\n")
                    audio = rng.uniform(-0.3, 0.3, 1600 * (i + 1)).astype(np.float32)
                    sf.write(os.path.join(d, utt + ".flac"), audio, RATE, subtype="PCM_16")
    return root


def test_librispeech(tmp_path):
    root = make_librispeech(tmp_path / "corpora")
    # a transcript whose audio is missing: reported, left out
    os.remove(root / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0001.flac")
    out, logs = tmp_path / "out", []
    summary = librispeech.build_librispeech(str(root), str(out), parts=["train-clean-100",
                                                                        "dev-clean"],
                                            log=logs.append)
    assert sorted(os.listdir(out)) == ["chars.txt", "dev_clean", "summary.json",
                                       "train_clean_100"]
    assert any("84-121123-0001" in line for line in logs)
    assert summary["parts"]["dev_clean"]["skipped"] == ["84-121123-0001: no audio"]
    train = out / "train_clean_100"
    tables = datadir.validate_data_dir(train, check_audio=True)
    assert tables["text"]["1034-121119-0000"] == "what's the matter"
    assert tables["text.chr"]["1034-121119-0000"] == \
        "w h a t ' s <space> t h e <space> m a t t e r"
    assert tables["utt2spk"] == {"103-1240-0000": "103", "103-1240-0001": "103",
                                 "1034-121119-0000": "1034"}
    assert tables["utt2dur"]["103-1240-0001"] == "0.200"
    assert utts_of(out / "dev_clean") == ["174-50561-0000", "84-121123-0000"]
    chars = read_phone_list(out / "chars.txt")
    assert chars[0] == "'" and chars[-1] == "<space>" and "z" not in chars and "y" in chars
    # the same from the part directories' parent, through the command line
    assert ctcseq_main(["prepare", "librispeech", "--root", str(root / "LibriSpeech"),
                        "--out", str(tmp_path / "o2"), "--parts", "dev-clean"]) == 0
    assert (tmp_path / "o2" / "dev_clean" / "text.chr").exists()


def test_librispeech_missing_part(tmp_path):
    root = make_librispeech(tmp_path / "corpora", {"dev-clean": LIBRI["dev-clean"]})
    with pytest.raises(ValueError, match=r"part\(s\) test-clean not found.*dev-clean"):
        librispeech.build_librispeech(str(root), str(tmp_path / "out"),
                                      parts=["dev-clean", "test-clean"])
    with pytest.raises(ValueError, match="no such directory"):
        librispeech.build_librispeech(str(tmp_path / "nope"), str(tmp_path / "out"))


# --------------------------------------------------------------------------
# a generic folder
# --------------------------------------------------------------------------

def make_folder(root):
    rng = np.random.default_rng(1)
    files = {"alice/hello.wav": "WAV", "alice/sub/bye.flac": "FLAC", "bob/hello there.wav": "WAV",
             "bob/notes.txt": None, "carol/untranscribed.ogg": "OGG"}
    for rel, fmt in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if fmt is None:
            open(path, "w").write("not audio\n")
        else:
            sf.write(path, rng.uniform(-0.2, 0.2, 2400), RATE, format=fmt)
    return root


def test_folder(tmp_path):
    audio = make_folder(tmp_path / "audio")
    trans = tmp_path / "trans.txt"
    trans.write_text("hello Hello World\nalice/sub/bye Good bye\nbob/hello_there Hi  there\n"
                     "missing no such file\n")
    out, logs = tmp_path / "data", []
    summary = folder.build_folder(str(audio), str(trans), str(out), spk_from_dir=True,
                                  log=logs.append)
    assert any("1 transcript(s) without audio" in s and "missing" in s for s in logs)
    assert any("1 audio file(s) without transcript" in s and "carol/untranscribed" in s
               for s in logs)
    tables = datadir.validate_data_dir(out, check_audio=True)
    assert tables["utt2spk"] == {"alice-hello": "alice", "sub-alice-sub-bye": "sub",
                                 "bob-hello_there": "bob"}
    assert tables["text"]["alice-hello"] == "Hello World"
    assert tables["text.chr"]["bob-hello_there"] == "h i <space> t h e r e"
    assert tables["utt2dur"]["alice-hello"] == "0.150"
    assert read_phone_list(out / "chars.txt")[-1] == "<space>"
    assert summary["utterances"] == 3 and summary["audio_without_transcript"] == 1
    # speakers default to the utterance; phone transcripts -> text.phn, phones.txt
    trans.write_text("hello hh ah l ow\nbye b ay\n")
    summary = folder.build_folder(str(audio), str(trans), str(tmp_path / "p"), unit="phones",
                                  log=lambda s: None)
    tables = datadir.validate_data_dir(tmp_path / "p")
    assert tables["utt2spk"] == {"hello": "hello", "bye": "bye"}
    assert tables["text.phn"]["bye"] == "b ay"
    phones = list(read_phone_list(tmp_path / "p" / "phones.txt"))
    assert phones == ["ah", "ay", "b", "hh", "l", "ow"]


def test_folder_chars_and_utt2spk(tmp_path):
    audio = make_folder(tmp_path / "audio")
    trans = tmp_path / "trans.txt"
    trans.write_text("hello h i <space> y o u\nbye o k\n")
    spk = tmp_path / "utt2spk"
    spk.write_text("hello s1\nbye s2\n")
    assert ctcseq_main(["prepare", "folder", "--audio", str(audio), "--transcript", str(trans),
                        "--out", str(tmp_path / "d"), "--unit", "chars",
                        "--utt2spk", str(spk)]) == 0
    tables = datadir.validate_data_dir(tmp_path / "d")
    assert tables["text"] == {"s1-hello": "hi you", "s2-bye": "ok"}
    assert tables["text.chr"]["s1-hello"] == "h i <space> y o u"


def test_folder_errors(tmp_path, capsys):
    audio = make_folder(tmp_path / "audio")
    trans = tmp_path / "trans.txt"
    trans.write_text("nothing here\nnor here\n")
    with pytest.raises(ValueError, match="no transcript in .* matches an audio file"):
        folder.build_folder(str(audio), str(trans), str(tmp_path / "d"), log=lambda s: None)
    with pytest.raises(ValueError, match="--audio .* is not a directory"):
        folder.build_folder(str(tmp_path / "none"), str(trans), str(tmp_path / "d"))
    (audio / "carol" / "hello.wav").write_bytes((audio / "alice" / "hello.wav").read_bytes())
    trans.write_text("hello hi\n")
    with pytest.raises(ValueError, match="several audio files.*hello"):
        folder.build_folder(str(audio), str(trans), str(tmp_path / "d"), log=lambda s: None)
    assert ctcseq_main(["prepare", "folder", "--audio", str(audio), "--transcript",
                        str(tmp_path / "nope.txt"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "nope.txt" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# the TIMIT recipe, stages 1-2
# --------------------------------------------------------------------------

def full_fake_speakers():
    """Every listed speaker (2 utterances each) plus two training speakers."""
    spk = {("train", "dr1", "fcjf0"): ["sa1", "si1027", "sx127"],
           ("train", "dr4", "marc0"): ["si1188", "sx108"]}
    for name in ("test", "dev"):
        for i, s in enumerate(timit.read_speaker_list(name=name)):
            spk[("test", f"dr{i % 8 + 1}", s)] = ["sa1", f"si{i + 100}", f"sx{i + 10}"]
    return spk


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_timit_recipe_stages_1_2(tmp_path):
    root = make_timit(tmp_path / "timit", full_fake_speakers())
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", os.path.join(REPO, "recipes", "timit", "run.sh"), "--timit",
                           str(root), "--stop-stage", "2", "--jobs", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data, exp = tmp_path / "data" / "timit", tmp_path / "exp" / "timit"
    assert len(utts_of(data / "test")) == 48 and len(utts_of(data / "dev")) == 100
    assert len(os.listdir(exp / "feats" / "test" / "npy")) == 48
