"""Training: the recogniser's recipe (``TrainConfig``), keras.fit loop, callbacks and distribution.

Importing this package does not import TensorFlow.
"""

from htr_tf.train.recognizer import DataSpec, TrainConfig, TrainResult, train_recognizer

__all__ = ["DataSpec", "TrainConfig", "TrainResult", "train_recognizer"]
