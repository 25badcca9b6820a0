"""htr-tf: handwritten text recognition for full pages in TensorFlow/Keras.

The public API is re-exported here; TensorFlow is imported only by the modules that need it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from htr_tf.charset import BLANK_INDEX, DEFAULT_CHARSET, Charset
from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError, HTRError, ModelError
from htr_tf.geometry import DEFAULT_LINE_GEOMETRY, LineGeometry
from htr_tf.pipeline import LocalBackend, Pipeline, PipelineOptions, load_pipeline, make_backend
from htr_tf.results import LineResult, PageResult, RegionResult, WordResult
from htr_tf.batch import BatchOptions, BatchSummary, PageTask, find_pages, run_batch

__all__ = [
    "__version__", "BLANK_INDEX", "Charset", "DEFAULT_CHARSET", "Config", "ConfigError",
    "DataError", "HTRError", "ModelError", "LineGeometry", "DEFAULT_LINE_GEOMETRY",
    "Pipeline", "PipelineOptions", "LocalBackend", "load_pipeline", "make_backend",
    "PageResult", "RegionResult", "LineResult", "WordResult",
    "BatchOptions", "BatchSummary", "PageTask", "find_pages", "run_batch",
]
