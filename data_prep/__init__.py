"""Data preparation for ctcseq: corpora written as Kaldi-style data directories.

Modules
-------
espeak
    ctypes binding to the eSpeak NG library shipped by ``espeakng-loader``.
phones
    The fixed 40-phone inventory and the eSpeak IPA -> phone mapping.
synth
    The default offline synthetic corpus (``python -m data_prep.synth``).
timit, librispeech, folder
    Data directories for TIMIT, LibriSpeech and a folder of audio files
    with a transcript file (``python -m data_prep.timit`` ...).
common
    Helpers the builders share.

Data directories themselves (wav.scp, text, utt2spk, ...) are read, written
and validated by :mod:`ctcseq.datadir`, which the toolkit shares.  Only
:mod:`phones` is imported eagerly; ``espeak`` and ``synth`` need
``espeakng-loader`` and ``wordfreq``.
"""
from . import phones
from .phones import PHONES

__all__ = ["phones", "PHONES", "prepare_synthetic"]


def prepare_synthetic(out_dir, **kwargs):
    """Build the default synthetic corpus; see :func:`data_prep.synth.build_corpus`."""
    from .synth import build_corpus
    return build_corpus(out_dir, **kwargs)
