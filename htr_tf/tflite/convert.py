"""TFLite conversion (TensorFlow needed): a Keras bundle -> one ``.tflite`` file with its metadata.

Builtin operators only (no Flex ops):

* the recogniser is exported with batch 1 and a dynamic width (an LSTM exported with a
  dynamic batch does not convert, DESIGN.md) and its recurrent layers run without a mask:
  forward ones never see padding before a valid frame, backward ones run over each line's
  frames reversed (``REVERSE_SEQUENCE``), so every valid frame equals the masked Keras
  batch at any padded width (lines are padded to width buckets, see
  :class:`~htr_tf.tflite.runtime.TFLiteRecognizer`);
* the paragraph model is exported at its fixed input size, the line detector with a dynamic
  height.

Quantisation (``QUANTIZE_MODES``): ``none`` (float32), ``float16`` (float16 weights),
``dynamic`` (int8 weights, float activations) and ``int8`` (int8 weights and activations
calibrated on real inputs from a record set, except the element-wise ops of the recurrent
cells, ``INT8_FLOAT_OPS``, which stay float; inputs and outputs stay float32).  int8
calibration of the *masked* while-loop LSTM crashes the converter (DESIGN.md); on the
mask-free batch-1 graph above it calibrates and converts, so int8 needs no fixed width.

Each file carries its bundle's ``htr.json`` (kind, charset, geometry, config, info, tuned
``decoding`` settings when present) plus a ``tflite`` section (quantisation, input layout)
as a TFLite model *metadata* entry named ``htr.json`` (the flatbuffer's ``Model.metadata``
pointing at a buffer, :func:`embed_metadata`): nothing is configured twice and no side file
exists.

The bundled files (``htr_tf/assets/models/tflite/*.tflite``) are made from the bundled
Keras models with ``BUNDLED_QUANTIZE`` by one command: ``htr tflite all`` (see docs/tflite.md).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.tflite.runtime import (KINDS, METADATA_NAME, TFLITE_FORMAT_VERSION, _check_kind, _root, read_metadata,
                                   recognizer_input)

__all__ = ["QUANTIZE_MODES", "BUNDLED_QUANTIZE", "INT8_FLOAT_OPS", "convert_model", "convert_bundle",
           "convert_bundled", "embed_metadata", "calibration_inputs", "load_keras_bundle", "operators"]

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
#: Quantisation of the bundled files, chosen by measurement (benchmarks/bench_tflite.py,
#: docs/tflite.md): small, and as accurate as the Keras model.
#: The paragraph model stays float32 (0.18 MB): float16 weights moved the example page's area by
#: 0.02 px, enough to shift its line crops by a pixel against the Keras model (issue 14's bundle).
BUNDLED_QUANTIZE = {"recognizer": "dynamic", "paragraph": "none", "lines": "float16"}
#: Ops that ``int8`` keeps in float: the LSTM cell's gates and state update (and the output
#: log-softmax, and REVERSE_SEQUENCE, which has no int8 kernel).  Quantising them cost 0.7-0.8
#: CER points on the bundled recogniser; in float the loss is gone and the file 1.5 % larger
#: (measured, docs/tflite.md).
INT8_FLOAT_OPS = ("LOGISTIC", "TANH", "MUL", "ADD", "LOG_SOFTMAX", "REVERSE_SEQUENCE")
_TFL_IDENTIFIER = b"TFL3"
_BUFFER_ALIGN = 16


def _check_quantize(quantize: str) -> None:
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantize mode {quantize!r}; valid: {', '.join(QUANTIZE_MODES)}")


# -- metadata inside the flatbuffer -----------------------------------------------------------------
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


def operators(data: bytes) -> list[str]:
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
    bad = [op for op in operators(data) if op.startswith("CUSTOM") or op.startswith("FLEX")]
    if bad:
        raise ModelError(f"TFLite conversion of the {kind} model needs non-builtin ops {bad}")
    from htr_tf.provenance import clean_provenance

    meta = dict(model.metadata())
    if "info" in meta:
        meta["info"] = clean_provenance(meta["info"])
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
    from htr_tf.bundle import require_bundled

    p = Path(path) if path is not None else require_bundled(kind)
    if kind == "recognizer":
        from htr_tf.models.recognizer import Recognizer

        return Recognizer.load(p)
    if kind == "paragraph":
        from htr_tf.models.paragraph import ParagraphModel

        return ParagraphModel.load(p)
    from htr_tf.models.lines import LineDetector

    return LineDetector.load(p)


# -- calibration data ---------------------------------------------------------------------------------
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
        from htr_tf.recognize import line_batch

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
    src = Path(model_dir).name if model_dir is not None else f"bundled {kind}"   # no machine paths
    data = convert_model(kind, model, quantize, samples, source=src)
    atomic_write_bytes(out, data)
    return out


def convert_bundled(out_dir: "str | os.PathLike | None" = None, quantize: dict[str, str] | None = None,
                    models: dict[str, "str | os.PathLike | None"] | None = None,
                    calibration: "str | os.PathLike | None" = None, calibration_split: str = "train",
                    calibration_limit: int = 200, kinds: Sequence[str] = KINDS) -> dict[str, Path]:
    """Convert the three bundles (default: the bundled Keras models with ``BUNDLED_QUANTIZE``)
    into ``out_dir/KIND.tflite`` (default: the bundled TFLite directory)."""
    from htr_tf.bundle import bundled_model_path

    out_dir = Path(out_dir) if out_dir is not None else bundled_model_path("recognizer", tflite=True).parent
    q = {**BUNDLED_QUANTIZE, **(quantize or {})}
    result = {}
    for kind in kinds:
        _check_kind(kind)
        cal = calibration if q[kind] == "int8" else None
        result[kind] = convert_bundle(kind, (models or {}).get(kind), out_dir / f"{kind}.tflite", q[kind], cal,
                                      calibration_split, calibration_limit)
    return result


