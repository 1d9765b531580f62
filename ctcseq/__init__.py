"""ctcseq: Graves-style BiLSTM-CTC sequence labelling, compiled with Numba."""
from .ctc import ctc_loss, ctc_loss_grad

__version__ = "0.1.0"
__all__ = ["ctc_loss", "ctc_loss_grad", "__version__"]
