"""ctcseq: Graves-style BiLSTM-CTC sequence labelling, compiled with Numba."""
from .ctc import ctc_loss, ctc_loss_grad
from .decode import Alignment, Hypothesis, beam_search, forced_align, greedy_decode
from .lm import NGramLM, TokenLM, WordLM, read_arpa, read_lexicon, train_token_lm
from .model import CTCModel
from .nn import BiLSTM, Linear
from .optim import SGD, Adam, WeightNoise, clip_grad_norm, global_norm
from .recognize import Recognizer

__version__ = "0.1.0"
__all__ = ["ctc_loss", "ctc_loss_grad",
           "greedy_decode", "beam_search", "forced_align", "Hypothesis", "Alignment",
           "train_token_lm", "read_arpa", "read_lexicon", "NGramLM", "TokenLM", "WordLM",
           "BiLSTM", "Linear", "CTCModel", "SGD", "Adam", "WeightNoise", "clip_grad_norm",
           "global_norm", "Recognizer",
           "__version__"]
