"""TFLite files for the edge: conversion (:mod:`htr_tf.tflite.convert`, TensorFlow needed) and
running them on LiteRT (:mod:`htr_tf.tflite.runtime`, ai-edge-litert and numpy only).

The names of both are re-exported here; importing this package imports neither TensorFlow
nor LiteRT.
"""

from htr_tf.tflite.convert import (BUNDLED_QUANTIZE, INT8_FLOAT_OPS, QUANTIZE_MODES, calibration_inputs,
                                   convert_bundle, convert_bundled, convert_model, embed_metadata,
                                   load_keras_bundle, operators)
from htr_tf.tflite.runtime import (KINDS, METADATA_NAME, TFLITE_FORMAT_VERSION, TFLiteBackend, TFLiteLines,
                                   TFLiteModel, TFLiteParagraph, TFLiteRecognizer, metadata_entries,
                                   read_metadata, recognizer_input)

__all__ = ["QUANTIZE_MODES", "BUNDLED_QUANTIZE", "INT8_FLOAT_OPS", "KINDS", "METADATA_NAME",
           "TFLITE_FORMAT_VERSION", "convert_model", "convert_bundle", "convert_bundled", "embed_metadata",
           "calibration_inputs", "load_keras_bundle", "operators", "metadata_entries", "read_metadata", "recognizer_input",
           "TFLiteModel", "TFLiteRecognizer", "TFLiteParagraph", "TFLiteLines", "TFLiteBackend"]
