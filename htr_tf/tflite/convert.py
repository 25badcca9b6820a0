"""TFLite files for the edge: conversion with quantisation, metadata inside the file, LiteRT backend.

Conversion (TensorFlow needed) turns a Keras bundle (``recognizer``, ``paragraph``,
``lines``) into one ``.tflite`` file with builtin operators only (no Flex ops):

* the recogniser is exported with batch 1 and a dynamic width (an LSTM exported with a
  dynamic batch does not convert, DESIGN.md) and its recurrent layers run without a mask:
  forward ones never see padding before a valid frame, backward ones run over each line's
  frames reversed (``REVERSE_SEQUENCE``), so every valid frame equals the masked Keras
  batch at any padded width (lines are padded to width buckets, see :class:`TFLiteRecognizer`);
* the paragraph model is exported at its fixed input size, the line detector with a dynamic
  height; their numpy ``preprocess``/``postprocess`` are reused, only the network runs in
  LiteRT (:class:`TFLiteParagraph`, :class:`TFLiteLines`).

Quantisation (``QUANTIZE_MODES``): ``none`` (float32), ``float16`` (float16 weights),
``dynamic`` (int8 weights, float activations) and ``int8`` (int8 weights and activations
calibrated on real inputs from a record set, except the element-wise ops of the recurrent
cells, ``INT8_FLOAT_OPS``, which stay float; inputs and outputs stay float32).  int8
calibration of the *masked* while-loop LSTM crashes the converter (DESIGN.md); on the
mask-free batch-1 graph above it calibrates and converts, so int8 needs no fixed width.

Each file carries its bundle's ``htr.json`` (kind, charset, geometry, config, info, tuned
``decoding`` settings when present) plus a ``tflite`` section (quantisation, input layout)
as a TFLite model *metadata* entry named ``htr.json`` (the flatbuffer's ``Model.metadata``
pointing at a buffer): nothing is configured twice and no side file exists.  :func:`read_metadata` reads it back without
TensorFlow.

Running needs only ai-edge-litert and numpy: :class:`TFLiteBackend` implements the
pipeline's ``Backend`` protocol (``htr ocr --backend tflite``)::

    >>> from htr_tf.pipeline import Pipeline                                   # doctest: +SKIP
    >>> pipe = Pipeline(TFLiteBackend.load(num_threads=1), "greedy")           # doctest: +SKIP
    >>> pipe.run("page.png").text                                              # doctest: +SKIP

The bundled files (``htr_tf/assets/models/tflite/*.tflite``) are made from the bundled
Keras models with ``BUNDLED_QUANTIZE`` by one command: ``htr tflite all`` (see docs/tflite.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.models.lines import LineDetector
from htr_tf.models.paragraph import ParagraphModel

if TYPE_CHECKING:
    from htr_tf.charset import Charset
    from htr_tf.geometry import LineGeometry

__all__ = ["QUANTIZE_MODES", "KINDS", "METADATA_NAME", "TFLITE_FORMAT_VERSION", "BUNDLED_QUANTIZE",
           "bundled_tflite_path", "convert_model", "convert_bundle", "convert_bundled", "embed_metadata",
           "read_metadata", "calibration_inputs", "TFLiteModel", "TFLiteRecognizer", "TFLiteParagraph",
           "TFLiteLines", "TFLiteBackend"]

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
KINDS = ("recognizer", "paragraph", "lines")
#: Name of the model-metadata entry holding the bundle's htr.json (plus the ``tflite`` section).
METADATA_NAME = "htr.json"
TFLITE_FORMAT_VERSION = 1
#: Quantisation of the bundled files, chosen by measurement (benchmarks/bench_tflite.py,
#: docs/tflite.md): small, and as accurate as the Keras model.
BUNDLED_QUANTIZE = {"recognizer": "dynamic", "paragraph": "float16", "lines": "float16"}
#: Ops that ``int8`` keeps in float: the LSTM cell's gates and state update (and the output
#: log-softmax, and REVERSE_SEQUENCE, which has no int8 kernel).  Quantising them cost 0.7-0.8
#: CER points on the bundled recogniser; in float the loss is gone and the file 1.5 % larger
#: (measured, docs/tflite.md).
INT8_FLOAT_OPS = ("LOGISTIC", "TANH", "MUL", "ADD", "LOG_SOFTMAX", "REVERSE_SEQUENCE")
#: Log-probability given to non-blank classes on frames past a line's end (blank gets 0).
_PAD_LOG_PROB = -1e4
_TFL_IDENTIFIER = b"TFL3"
_BUFFER_ALIGN = 16


def bundled_tflite_path(kind: str) -> Path:
    """``htr_tf/assets/models/tflite/KIND.tflite``."""
    return Path(__file__).resolve().parent / "assets" / "models" / "tflite" / f"{kind}.tflite"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; valid: {', '.join(KINDS)}")


def _check_quantize(quantize: str) -> None:
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantize mode {quantize!r}; valid: {', '.join(QUANTIZE_MODES)}")


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


def embed_metadata(tflite: bytes, meta: dict, name: str = METADATA_NAME) -> bytes:
    """``tflite`` with ``meta`` (JSON) as the model-metadata entry ``name`` (replaced if present).

    The model is unpacked with the flatbuffer object API and packed again with every buffer
    aligned to 16 bytes, as the converter writes them.
    """
    import flatbuffers

    schema, _ = _root(tflite, "<converted model>")
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    if any(getattr(b, "offset", 0) for b in model.buffers or []):
        raise ModelError("models with buffers outside the flatbuffer (> 2 GB) are not supported")
    payload = np.frombuffer(json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"), np.uint8)
    entries = [m for m in (model.metadata or []) if (m.name or b"").decode("utf-8", "replace") != name]
    buf = schema.BufferT()
    buf.data = payload
    model.buffers.append(buf)
    md = schema.MetadataT()
    md.name = name
    md.buffer = len(model.buffers) - 1
    model.metadata = entries + [md]

    class _Aligned(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (flatbuffers' name)
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(raw), _BUFFER_ALIGN)
                builder.head -= len(raw)
                builder.Bytes[builder.head: builder.head + len(raw)] = raw
                builder.vectorNumElems = len(raw)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset or 0)
            schema.BufferAddSize(builder, self.size or 0)
            return schema.BufferEnd(builder)

    aligned = []
    for b in model.buffers:
        a = _Aligned()
        a.data, a.offset, a.size = b.data, getattr(b, "offset", 0), getattr(b, "size", 0)
        aligned.append(a)
    model.buffers = aligned
    builder = flatbuffers.Builder(len(tflite) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_TFL_IDENTIFIER)
    return bytes(builder.Output())


def _ops(data: bytes) -> list[str]:
    """Names of the operators a TFLite model uses (custom ops as ``CUSTOM:name``)."""
    schema, model = _root(data, "<converted model>")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = set()
    for i in range(model.OperatorCodesLength()):
        c = model.OperatorCodes(i)
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        name = names.get(code, str(code))
        if name == "CUSTOM":
            name = "CUSTOM:" + (c.CustomCode() or b"").decode()
        out.add(name)
    return sorted(out)


# -- the graphs that are converted ---------------------------------------------------------------------
def _recognizer_function(recognizer: Any):
    """``image`` float32 ``[1, H, W, 1]`` (W a multiple of width_downsample, zero past the
    line), ``width`` int32 ``[1]`` -> ``log_probs`` ``[1, W / width_downsample, C]``.

    The RNNs run without a mask: a forward RNN never sees the padding before a valid frame,
    and each backward RNN runs forward over its input reversed within the line's frames
    (``tf.reverse_sequence``), so every valid frame equals the masked Keras model's at any padded width.
    """
    import keras
    import tensorflow as tf
    from keras import ops

    H = recognizer.geometry.height
    image = keras.Input(batch_shape=(1, H, None, 1), dtype="float32", name="image")
    width = keras.Input(batch_shape=(1,), dtype="int32", name="width")

    class ReverseValid(keras.layers.Layer):
        """Reverse each line's valid frames of ``[B, T, F]``, keep the rest (tf.reverse_sequence)."""

        def call(self, x, valid):
            lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
            return tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)

        def compute_output_shape(self, x_shape, valid_shape):
            return tuple(x_shape)

    def bidirectional(layer, x, mask):
        if layer.merge_mode not in ("concat", "sum", "ave", "mul") or layer.return_state:
            raise ModelError(f"{layer.name}: Bidirectional merge_mode {layer.merge_mode!r} with "
                             f"return_state={layer.return_state} is not supported by the TFLite export")
        y = layer.forward_layer(x)
        # backward_layer (go_backwards) over flip(z) runs forward over z, outputs in z's order
        y_rev = ReverseValid()(layer.backward_layer(ops.flip(ReverseValid()(x, mask), axis=1)), mask)
        if layer.merge_mode == "concat":
            return ops.concatenate([y, y_rev], axis=-1)
        if layer.merge_mode == "sum":
            return y + y_rev
        if layer.merge_mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev

    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.layers.Bidirectional):
            mask = kwargs.pop("mask", None)
            if mask is not None and layer.return_sequences:
                return bidirectional(layer, args[0], mask)
        if isinstance(layer, (keras.layers.Bidirectional, keras.layers.RNN)):
            kwargs.pop("mask", None)
        return layer(*args, **kwargs)

    clone = keras.models.clone_model(recognizer.model, input_tensors={"image": image, "width": width},
                                     clone_function=lambda layer: layer, call_function=call)

    @tf.function(input_signature=[tf.TensorSpec([1, H, None, 1], tf.float32, name="image"),
                                  tf.TensorSpec([1], tf.int32, name="width")], autograph=False)
    def fn(image, width):
        return clone({"image": image, "width": width}, training=False)["log_probs"]

    return fn


def _paragraph_function(paragraph: Any):
    import tensorflow as tf

    c, model = paragraph.config, paragraph.model

    @tf.function(input_signature=[tf.TensorSpec([1, c.input_height, c.input_width, 1], tf.float32,
                                                name="image")], autograph=False)
    def fn(image):
        return model(image, training=False)["mask"]

    return fn


def _lines_function(detector: Any):
    import tensorflow as tf

    c, model = detector.config, detector.model

    @tf.function(input_signature=[tf.TensorSpec([1, None, c.input_width, 1], tf.float32, name="image")],
                 autograph=False)
    def fn(image):
        return model(image, training=False)["mask"]

    return fn


_FUNCTIONS = {"recognizer": _recognizer_function, "paragraph": _paragraph_function, "lines": _lines_function}


def _input_note(kind: str, model: Any) -> dict:
    if kind == "recognizer":
        return {"image": "float32 [1, height, ceil(width / width_downsample) * width_downsample, 1], "
                         "1 - gray / 255, zero past the width",
                "width": "int32 [1], the line's true width",
                "log_probs": "float32 [1, T, num_classes], every frame valid (blank = 0)",
                "width_downsample": model.config.width_downsample()}
    if kind == "paragraph":
        return {"image": f"float32 [1, {model.config.input_height}, {model.config.input_width}, 1] "
                         f"(the model's preprocess)", "mask": "float32 [1, h, w, 1] probabilities"}
    return {"image": f"float32 [1, H, {model.config.input_width}, 1] (the model's preprocess)",
            "mask": "float32 [1, h, w, 1] band probabilities"}


def convert_model(kind: str, model: Any, quantize: str = "none",
                  calibration: "Iterable[Sequence[np.ndarray]] | Callable[[], Iterable] | None" = None,
                  source: str | None = None) -> bytes:
    """A loaded ``kind`` model (Recognizer / ParagraphModel / LineDetector) -> TFLite bytes with metadata.

    ``calibration`` (int8 only): input lists in the converted graph's order (recognizer:
    ``[image, width]``, layout: ``[image]``), e.g. from :func:`calibration_inputs`.
    """
    _check_kind(kind)
    _check_quantize(quantize)
    if quantize == "int8" and calibration is None:
        raise ConfigError("--quantize int8 needs calibration data: pass --calibration RECORDS "
                          "(a record set made by `htr data ...`)")
    if quantize != "int8" and calibration is not None:
        raise ConfigError(f"calibration data is only used by --quantize int8, not {quantize!r}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    samples: list[list[np.ndarray]] = []
    fn = _FUNCTIONS[kind](model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        samples = [list(s) for s in (calibration() if callable(calibration) else calibration)]
        if not samples:
            raise DataError("no calibration inputs (the calibration split is empty)")
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.representative_dataset = lambda: iter(samples)
    try:
        if quantize == "int8":
            # calibrate once, then quantise all but the element-wise recurrent-cell ops
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(INT8_FLOAT_OPS))
            with warnings.catch_warnings():  # the debugger builds a tf.lite.Interpreter it never runs here
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=lambda: iter(samples), debug_options=options)
                data = debugger.get_nondebug_quantized_model()
        else:
            data = converter.convert()
    except Exception as e:  # the converter raises ConverterError and others
        msg = " ".join(str(e).split())[:400]
        raise ModelError(f"TFLite conversion of the {kind} model ({quantize}) failed: {type(e).__name__}: "
                         f"{msg}") from None
    bad = [op for op in _ops(data) if op.startswith("CUSTOM") or op.startswith("FLEX")]
    if bad:
        raise ModelError(f"TFLite conversion of the {kind} model needs non-builtin ops {bad}")
    meta = dict(model.metadata())
    meta["tflite"] = {"format_version": TFLITE_FORMAT_VERSION, "quantize": quantize,
                      "source": source, "converted": _dt.datetime.now(_dt.timezone.utc).isoformat(
                          timespec="seconds"),
                      "tensorflow": tf.__version__, "calibration_samples": len(samples),
                      "io": _input_note(kind, model)}
    meta = json.loads(json.dumps(meta, default=_plain_default))
    out = embed_metadata(data, meta)
    if read_metadata(out) != meta:  # the round trip is part of the contract
        raise ModelError("TFLite metadata did not round-trip")
    return out


def _plain_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    return str(x)


def load_keras_bundle(kind: str, path: "str | os.PathLike | None") -> Any:
    """The Keras bundle of ``kind`` at ``path`` (None: the bundled one)."""
    _check_kind(kind)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from htr_tf.pipeline import bundled_model_path

    p = Path(path) if path is not None else bundled_model_path(kind)
    if path is None and not (p / "htr.json").exists():
        raise ModelError(f"no bundled {kind} model in this installation ({p}); pass --model BUNDLE")
    if kind == "recognizer":
        from htr_tf.models.recognizer import Recognizer

        return Recognizer.load(p)
    if kind == "paragraph":
        from htr_tf.models.paragraph import ParagraphModel

        return ParagraphModel.load(p)
    from htr_tf.models.lines import LineDetector

    return LineDetector.load(p)


# -- calibration data ---------------------------------------------------------------------------------
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


def calibration_inputs(kind: str, model: Any, records: "str | os.PathLike", split: str = "train",
                       limit: int = 200) -> list[list[np.ndarray]]:
    """Representative inputs for int8 calibration, in the converted graph's input order.

    Recognizer: ``limit`` lines of ``split``; layout models: ``limit`` forms (pages) of
    ``split`` through the model's own ``preprocess`` (lines: inside the form's paragraph box).
    """
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image

    _check_kind(kind)
    if limit < 1:
        raise ConfigError(f"calibration limit must be >= 1, got {limit}")
    rs = RecordSet(records)
    out: list[list[np.ndarray]] = []
    if kind == "recognizer":
        from htr_tf.pipeline import line_batch

        g, ds = model.geometry, model.config.width_downsample()
        for ex in rs.iter_lines(split):
            images, widths = line_batch([decode_image(ex["image"], ex["id"])], g)
            out.append([recognizer_input(g, ds, images[0], int(widths[0])), widths.astype(np.int32)])
            if len(out) >= limit:
                break
    else:
        for ex in rs.iter_forms(split):
            page = decode_image(ex["image"], ex["id"])
            if kind == "paragraph":
                x = model.preprocess(page)[0]
            else:
                x = model.preprocess(page, np.asarray(ex["paragraph_box"], np.float32))[0]
            out.append([np.asarray(x, np.float32)[None, :, :, None]])
            if len(out) >= limit:
                break
    if not out:
        raise DataError(f"{records}: split {split!r} has no {'lines' if kind == 'recognizer' else 'forms'} "
                        f"for calibration")
    return out


def convert_bundle(kind: str, model_dir: "str | os.PathLike | None", out: "str | os.PathLike",
                   quantize: str = "none", calibration: "str | os.PathLike | None" = None,
                   calibration_split: str = "train", calibration_limit: int = 200) -> Path:
    """Convert the Keras bundle ``model_dir`` (None: the bundled one) into ``out`` (written atomically)."""
    from htr_tf.fileio import atomic_write_bytes

    _check_kind(kind)
    _check_quantize(quantize)
    if quantize == "int8" and calibration is None:
        raise ConfigError("--quantize int8 needs calibration data: pass --calibration RECORDS")
    if quantize != "int8" and calibration is not None:
        raise ConfigError(f"--calibration is only used by --quantize int8, not {quantize!r}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; --out names the .tflite file to write")
    model = load_keras_bundle(kind, model_dir)
    samples = None
    if calibration is not None:
        samples = calibration_inputs(kind, model, calibration, calibration_split, calibration_limit)
    src = str(model_dir) if model_dir is not None else f"bundled {kind}"
    data = convert_model(kind, model, quantize, samples, source=src)
    atomic_write_bytes(out, data)
    return out


def convert_bundled(out_dir: "str | os.PathLike | None" = None, quantize: dict[str, str] | None = None,
                    models: dict[str, "str | os.PathLike | None"] | None = None,
                    calibration: "str | os.PathLike | None" = None, calibration_split: str = "train",
                    calibration_limit: int = 200, kinds: Sequence[str] = KINDS) -> dict[str, Path]:
    """Convert the three bundles (default: the bundled Keras models with ``BUNDLED_QUANTIZE``)
    into ``out_dir/KIND.tflite`` (default: the bundled TFLite directory)."""
    out_dir = Path(out_dir) if out_dir is not None else bundled_tflite_path("recognizer").parent
    q = {**BUNDLED_QUANTIZE, **(quantize or {})}
    result = {}
    for kind in kinds:
        _check_kind(kind)
        cal = calibration if q[kind] == "int8" else None
        result[kind] = convert_bundle(kind, (models or {}).get(kind), out_dir / f"{kind}.tflite", q[kind], cal,
                                      calibration_split, calibration_limit)
    return result


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
    path = bundled_tflite_path(kind)
    if not path.exists():
        raise ModelError(f"no bundled TFLite {kind} model in this installation ({path}); make it with "
                         f"`htr tflite all` or pass a .tflite path")
    return path


class TFLiteBackend:
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
             num_threads: int | None = None) -> "TFLiteBackend":
        """Load ``.tflite`` files; ``None`` takes the bundled one.  ``use_paragraph=False`` skips
        the handwritten-area model (the whole page is the area)."""
        rec = TFLiteRecognizer(recognizer if recognizer is not None else _bundled("recognizer"), num_threads)
        par = None
        if use_paragraph:
            par = TFLiteParagraph.open(paragraph if paragraph is not None else _bundled("paragraph"), num_threads)
        det = TFLiteLines.open(lines if lines is not None else _bundled("lines"), num_threads)
        return cls(rec, par, det)

    def find_area(self, page: np.ndarray) -> tuple[np.ndarray, float]:
        if self.paragraph is None:
            h, w = page.shape[:2]
            return np.array([0, 0, w, h], np.float32), 0.0
        return self.paragraph.detect(page)

    def find_lines(self, page: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.lines is None:
            raise ConfigError("this backend has no line detector")
        return self.lines.detect(page, region)

    def log_probs(self, images: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.recognizer.log_probs(images, widths)
