"""TFLite models on LiteRT: the ``.tflite`` files' metadata and the pipeline backend that runs them.

Running needs only ai-edge-litert and numpy (no TensorFlow): :class:`TFLiteBackend`
implements the pipeline's ``Backend`` protocol (``htr ocr --backend tflite``).  The layout
models reuse the Keras classes' numpy ``preprocess``/``postprocess``; only the network runs
in LiteRT (:class:`TFLiteParagraph`, :class:`TFLiteLines`).  The recogniser runs one line at
a time at a width rounded up to a bucket, exact at any padding (see
:mod:`htr_tf.tflite.convert`).

Each file carries its bundle's ``htr.json`` plus a ``tflite`` section as a TFLite model
*metadata* entry named ``htr.json``; :func:`read_metadata` reads it back (flatbuffers only).

    >>> from htr_tf.pipeline import Pipeline                                   # doctest: +SKIP
    >>> pipe = Pipeline(TFLiteBackend.load(num_threads=1), "greedy")           # doctest: +SKIP
    >>> pipe.run("page.png").text                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.models.lines import LineDetector
from htr_tf.models.paragraph import ParagraphModel
from htr_tf.pipeline import LayoutModelsMixin

if TYPE_CHECKING:
    from htr_tf.geometry import LineGeometry

__all__ = ["KINDS", "METADATA_NAME", "TFLITE_FORMAT_VERSION", "metadata_entries", "read_metadata",
           "recognizer_input", "TFLiteModel", "TFLiteRecognizer", "TFLiteParagraph", "TFLiteLines",
           "TFLiteBackend"]

KINDS = ("recognizer", "paragraph", "lines")
#: Name of the model-metadata entry holding the bundle's htr.json (plus the ``tflite`` section).
METADATA_NAME = "htr.json"
TFLITE_FORMAT_VERSION = 1
#: Log-probability given to non-blank classes on frames past a line's end (blank gets 0).
_PAD_LOG_PROB = -1e4
_TFL_IDENTIFIER = b"TFL3"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; valid: {', '.join(KINDS)}")


# -- metadata inside the flatbuffer -----------------------------------------------------------------
def _schema():
    """The TFLite flatbuffer schema module (ai-edge-litert's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise ConfigError("reading TFLite files needs ai-edge-litert: pip install 'htr-tf[edge]'") from None
    return schema


def _model_bytes(source: "str | os.PathLike | bytes | bytearray") -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = Path(source)
    if not path.exists():
        raise ModelError(f"{path}: no such TFLite file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a .tflite file (a Keras bundle? convert it with "
                         f"`htr tflite`)")
    return path.read_bytes(), str(path)


def _root(data: bytes, name: str):
    schema = _schema()
    if len(data) < 8 or data[4:8] != _TFL_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite file (no TFL3 flatbuffer identifier)")
    try:
        return schema, schema.Model.GetRootAs(data, 0)
    except Exception as e:  # a corrupt flatbuffer raises struct/index errors
        raise ModelError(f"{name}: corrupt TFLite file: {type(e).__name__}: {e}") from None


def metadata_entries(source: "str | os.PathLike | bytes") -> dict[str, bytes]:
    """All model-metadata entries of a TFLite file: name -> buffer bytes."""
    data, name = _model_bytes(source)
    _, model = _root(data, name)
    out = {}
    try:
        for i in range(model.MetadataLength()):
            md = model.Metadata(i)
            buf = model.Buffers(md.Buffer())
            if buf.Offset():  # buffers stored after the flatbuffer (models > 2 GB)
                raw = data[buf.Offset(): buf.Offset() + buf.Size()]
            else:
                raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
            out[(md.Name() or b"").decode("utf-8", "replace")] = raw
    except Exception as e:
        raise ModelError(f"{name}: corrupt TFLite metadata: {type(e).__name__}: {e}") from None
    return out


def read_metadata(source: "str | os.PathLike | bytes", kind: str | None = None) -> dict:
    """The ``htr.json`` carried inside a TFLite file, checked for ``kind`` when given."""
    data, name = _model_bytes(source)
    entries = metadata_entries(data)
    if METADATA_NAME not in entries:
        raise ModelError(f"{name}: TFLite file without htr-tf metadata (no {METADATA_NAME!r} entry): "
                         f"convert Keras bundles with `htr tflite`")
    try:
        meta = json.loads(entries[METADATA_NAME].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{name}: corrupt htr-tf metadata: {e}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("tflite"), dict):
        raise ModelError(f"{name}: htr-tf metadata has no 'tflite' section")
    if meta["tflite"].get("format_version") != TFLITE_FORMAT_VERSION:
        raise ModelError(f"{name}: htr-tf TFLite format version {meta['tflite'].get('format_version')!r}; "
                         f"this htr-tf reads version {TFLITE_FORMAT_VERSION}")
    if kind is not None and meta.get("kind") != kind:
        raise ModelError(f"{name}: TFLite model kind is {meta.get('kind')!r}, expected {kind!r}")
    return meta


# -- inputs -------------------------------------------------------------------------------------
def recognizer_input(geometry: "LineGeometry", width_downsample: int, image: np.ndarray,
                     width: int, bucket: int = 0) -> np.ndarray:
    """One paper-padded uint8 line ``[H, W]`` -> the TFLite recogniser's float32 ``[1, H, W', 1]``.

    ``W' = ceil(width / width_downsample) * width_downsample`` (the line's frames), rounded up
    to a multiple of ``bucket`` pixels when ``bucket`` > 0.
    Columns past ``width`` are blank paper (0), as the Keras path makes them.
    """
    H = geometry.height
    w = int(width)
    n = max(1, math.ceil(w / width_downsample)) * width_downsample
    if bucket > 0:
        n = math.ceil(n / bucket) * bucket
        n = math.ceil(n / width_downsample) * width_downsample
    x = np.zeros((1, H, n, 1), np.float32)
    k = min(w, image.shape[1], n)
    x[0, :, :k, 0] = 1.0 - image[:, :k].astype(np.float32) / 255.0
    return x


# -- running on LiteRT ----------------------------------------------------------------------------------
def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ConfigError("the TFLite backend needs ai-edge-litert: pip install 'htr-tf[edge]'") from None
    return Interpreter


class TFLiteModel:
    """One htr-tf ``.tflite`` file on LiteRT: its ``meta`` (htr.json) and a single-output ``run``."""

    kind: str | None = None

    def __init__(self, path: "str | os.PathLike", num_threads: int | None = None, max_shapes: int = 1) -> None:
        data, name = _model_bytes(path)
        self.path = Path(path)
        self.meta = read_metadata(data, self.kind)
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        if max_shapes < 1:
            raise ConfigError(f"max_shapes must be >= 1, got {max_shapes}")
        self._data, self._name, self._num_threads, self.max_shapes = data, name, num_threads, max_shapes
        #: input shapes -> an interpreter allocated for them, least recently used first: a new
        #: shape costs LiteRT a re-preparation (~2-3 ms of CPU for a recogniser line), a kept one none
        self._pool: OrderedDict[tuple, Any] = OrderedDict()
        it = self._new_interpreter()
        self._inputs = {d["name"]: d for d in it.get_input_details()}
        outputs = it.get_output_details()
        if len(outputs) != 1:
            raise ModelError(f"{name}: expected one output, found {len(outputs)}")
        self._output = outputs[0]["index"]
        self._spare = it
        self.quantize = str(self.meta["tflite"].get("quantize"))

    def _new_interpreter(self) -> Any:
        Interpreter = _interpreter_class()
        try:
            return Interpreter(model_content=self._data, num_threads=self._num_threads)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{self._name}: LiteRT cannot load the model: {e}") from None

    def _interpreter_for(self, inputs: dict[str, np.ndarray]) -> Any:
        key = tuple((k, v.shape) for k, v in sorted(inputs.items()))
        it = self._pool.get(key)
        if it is not None:
            self._pool.move_to_end(key)
            return it
        for k in inputs:
            if k not in self._inputs:
                raise ModelError(f"{self.path}: model has no input {k!r} (inputs: {sorted(self._inputs)})")
        if self._spare is not None:
            it, self._spare = self._spare, None
        elif len(self._pool) < self.max_shapes:
            it = self._new_interpreter()
        else:
            it = self._pool.popitem(last=False)[1]
        for k, v in inputs.items():
            it.resize_tensor_input(self._inputs[k]["index"], list(v.shape), strict=True)
        it.allocate_tensors()
        self._pool[key] = it
        return it

    def run(self, **inputs: np.ndarray) -> np.ndarray:
        """Run the model once; inputs by name (shapes may change from call to call)."""
        it = self._interpreter_for(inputs)
        for key, value in inputs.items():
            it.set_tensor(self._inputs[key]["index"], np.ascontiguousarray(value, self._inputs[key]["dtype"]))
        it.invoke()
        return it.get_tensor(self._output)


class TFLiteRecognizer(TFLiteModel):
    """The line recogniser on LiteRT; charset, geometry and config come from the file."""

    kind = "recognizer"

    def __init__(self, path: "str | os.PathLike", num_threads: int | None = None, width_bucket: int = 256,
                 max_shapes: int = 4) -> None:
        """``width_bucket``: lines run padded to a multiple of this many pixels (exact at any
        padding, see :func:`_recognizer_function`), so lines of similar width share one of
        ``max_shapes`` prepared interpreters; 0 runs each line at its own width.  Measured on
        300 synthetic lines (one thread): 256 px buckets with 4 shapes took 5 % less CPU than
        exact widths; each kept shape costs ~24 MB of memory (use ``max_shapes=1`` where that
        matters)."""
        super().__init__(path, num_threads, max_shapes)
        if width_bucket < 0:
            raise ConfigError(f"width_bucket must be >= 0, got {width_bucket}")
        self.width_bucket = width_bucket
        from htr_tf.charset import Charset
        from htr_tf.geometry import LineGeometry
        from htr_tf.models.recognizer import RecognizerConfig

        try:
            self.charset: Charset = Charset.from_dict(self.meta["charset"])
            self.geometry: LineGeometry = LineGeometry.from_dict(self.meta["geometry"])
            self.config = RecognizerConfig.from_dict(self.meta["config"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{path}: bad htr-tf metadata: {e}") from None
        self.width_downsample = self.config.width_downsample()
        self.decoding: dict = dict(self.meta.get("decoding") or {})

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 ``[B, H, W]`` paper-padded lines and true widths -> (``[B, T, C]``, lengths ``[B]``).

        ``T = ceil(W / width_downsample)`` as in the Keras model; frames past a line's length
        hold blank (log-probability 0 for blank, -1e4 for the rest).
        """
        imgs = np.asarray(images)
        if imgs.ndim != 3 or imgs.dtype != np.uint8 or imgs.shape[1] != self.geometry.height:
            raise DataError(f"expected uint8 line images [B, {self.geometry.height}, W], got "
                            f"{imgs.dtype} {list(imgs.shape)}")
        w = np.asarray(widths, np.int64).reshape(-1)
        if w.shape[0] != imgs.shape[0]:
            raise DataError(f"{imgs.shape[0]} images but {w.shape[0]} widths")
        ds, C = self.width_downsample, self.charset.num_classes
        w = np.clip(w, 0, imgs.shape[2])
        T = math.ceil(imgs.shape[2] / ds) if imgs.shape[2] else 0
        lengths = np.minimum(self.config.frame_lengths(w), T).astype(np.int32)
        out = np.full((imgs.shape[0], T, C), _PAD_LOG_PROB, np.float32)
        out[:, :, 0] = 0.0
        for i in range(imgs.shape[0]):
            n = int(lengths[i])
            if n == 0:
                continue
            x = recognizer_input(self.geometry, ds, imgs[i], int(w[i]), self.width_bucket)
            lp = self.run(image=x, width=np.array([w[i]], np.int32))
            out[i, :n] = lp[0, :n]
        return out, lengths


def _layout_config(meta: dict, kind: str, path: Any):
    try:
        if kind == "paragraph":
            from htr_tf.models.paragraph import ParagraphConfig

            return ParagraphConfig.from_dict(meta["config"])
        from htr_tf.models.lines import LineDetectorConfig

        return LineDetectorConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise ModelError(f"{path}: bad htr-tf metadata: {e}") from None


class _LayoutRunner(TFLiteModel):
    def __init__(self, kind: str, path: "str | os.PathLike", num_threads: int | None = None) -> None:
        self.kind = kind
        super().__init__(path, num_threads, max_shapes=1)


class TFLiteParagraph(ParagraphModel):
    """A :class:`~htr_tf.models.paragraph.ParagraphModel` whose network runs a TFLite file on
    LiteRT; ``preprocess``, ``postprocess`` and ``detect`` are the Keras model's own."""

    runner: TFLiteModel

    @classmethod
    def open(cls, path: "str | os.PathLike", num_threads: int | None = None) -> "TFLiteParagraph":
        runner = _LayoutRunner("paragraph", path, num_threads)
        model = cls(None, _layout_config(runner.meta, "paragraph", path), dict(runner.meta.get("info") or {}))
        model.runner = runner
        return model

    def masks(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs, np.float32)
        return np.stack([self.runner.run(image=x[i][None, :, :, None])[0, :, :, 0] for i in range(len(x))])

    def count_params(self) -> int:
        raise ModelError("a TFLite model does not count its parameters")


class TFLiteLines(LineDetector):
    """A :class:`~htr_tf.models.lines.LineDetector` whose network runs a TFLite file on LiteRT;
    ``preprocess``, ``postprocess`` and ``detect`` are the Keras model's own."""

    runner: TFLiteModel

    @classmethod
    def open(cls, path: "str | os.PathLike", num_threads: int | None = None) -> "TFLiteLines":
        runner = _LayoutRunner("lines", path, num_threads)
        model = cls(None, _layout_config(runner.meta, "lines", path), dict(runner.meta.get("info") or {}))
        model.runner = runner
        return model

    def mask(self, inputs: np.ndarray) -> np.ndarray:
        return self.runner.run(image=np.asarray(inputs, np.float32)[None, :, :, None])[0, :, :, 0]

    def count_params(self) -> int:
        raise ModelError("a TFLite model does not count its parameters")


def _bundled(kind: str) -> Path:
    from htr_tf.bundle import require_bundled

    return require_bundled(kind, tflite=True)


class TFLiteBackend(LayoutModelsMixin):
    """The pipeline's networks on LiteRT (see :class:`htr_tf.pipeline.Backend`)."""

    name = "tflite"

    def __init__(self, recognizer: TFLiteRecognizer, paragraph: Any = None, lines: Any = None) -> None:
        self.recognizer = recognizer
        self.paragraph = paragraph
        self.lines = lines
        self.charset = recognizer.charset
        self.geometry = recognizer.geometry
        self.width_downsample = recognizer.width_downsample
        self.decoding = recognizer.decoding

    @classmethod
    def load(cls, recognizer: "str | os.PathLike | None" = None, paragraph: "str | os.PathLike | None" = None,
             lines: "str | os.PathLike | None" = None, use_paragraph: bool = True,
             num_threads: int | None = None, recognizer_only: bool = False) -> "TFLiteBackend":
        """Load ``.tflite`` files; ``None`` takes the bundled one.  ``use_paragraph=False`` skips
        the handwritten-area model (the whole page is the area); ``recognizer_only=True`` loads
        no layout model (for line images)."""
        rec = TFLiteRecognizer(recognizer if recognizer is not None else _bundled("recognizer"), num_threads)
        if recognizer_only:
            return cls(rec)
        par = None
        if use_paragraph:
            par = TFLiteParagraph.open(paragraph if paragraph is not None else _bundled("paragraph"), num_threads)
        det = TFLiteLines.open(lines if lines is not None else _bundled("lines"), num_threads)
        return cls(rec, par, det)

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.recognizer.log_probs(images, widths)
