"""Models: the line recogniser (and, from other modules, the layout models).

Importing this package does not import TensorFlow; building or loading a model does.
"""

from htr_tf.models.recognizer import (
    Recognizer,
    RecognizerConfig,
    build_recognizer,
    ctc_loss,
    frame_lengths,
)

__all__ = ["Recognizer", "RecognizerConfig", "build_recognizer", "ctc_loss", "frame_lengths"]
