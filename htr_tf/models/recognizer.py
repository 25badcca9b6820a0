"""The CNN-BiLSTM-CTC line recogniser: config, functional model, CTC loss and the saved bundle.

The model reads a batch of normalised line images of fixed height and any width (ink
positive, zero padding on the right, see :mod:`htr_tf.geometry`) plus their true widths, and
returns per-frame log-probabilities over ``charset.num_classes`` classes (the CTC blank is
``BLANK_INDEX`` = 0) and the number of valid frames of each line.  Frame lengths follow from
the architecture alone (:meth:`RecognizerConfig.frame_lengths`); padding is masked after
every convolution block and in the recurrent layers, so it never changes a valid frame.

CTC lives outside the inference graph: :func:`ctc_loss` is used by the trainer, decoding by
:mod:`htr_tf.decode`.

>>> cfg = RecognizerConfig.tiny()
>>> model = build_recognizer(cfg, num_classes=80, height=32)      # doctest: +SKIP
>>> int(cfg.frame_lengths(np.array([100]))[0])
13
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from htr_tf.bundle import (BUNDLE_FORMAT_VERSION, DECODING_KEY, META_FILE, MODEL_FILE, load_keras_model, plain,
                           read_bundle_meta, save_bundle)
from htr_tf.charset import BLANK_INDEX, Charset
from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError, ModelError
from htr_tf.fileio import atomic_write_text
from htr_tf.geometry import LineGeometry

__all__ = [
    "RecognizerConfig", "build_recognizer", "ctc_loss", "frame_lengths", "Recognizer",
    "BUNDLE_KIND", "BUNDLE_FORMAT_VERSION", "MODEL_FILE", "META_FILE",
]

CONFIG_VERSION = 1
BUNDLE_KIND = "recognizer"
RNN_TYPES = ("lstm", "gru")
DOWNSAMPLE_TYPES = ("pool", "stride")


# -- configuration ----------------------------------------------------------------------------
@dataclass
class RecognizerConfig(Config):
    """Architecture of the recogniser; every field round-trips through ``to_dict``/``from_dict``.

    Convolution block ``i`` is ``conv_per_block`` x (conv ``conv_kernel`` -> batch norm ->
    ReLU) with ``conv_filters[i]`` channels (depthwise-separable when ``i`` is in
    ``separable_blocks``), downsampled by ``conv_pool[i] = (pool_h, pool_w)``: max pooling
    after the convolutions, or a strided first convolution (``downsample: stride``).  The
    feature map's columns become frames (height folded into channels), an optional Dense
    ``projection``, then ``rnn_layers`` bidirectional ``rnn_type`` layers of ``rnn_units``
    per direction, then the per-frame classifier.
    """

    version: int = CONFIG_VERSION
    conv_filters: tuple[int, ...] = (16, 32, 64, 96)
    conv_pool: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (2, 2), (2, 1))
    conv_kernel: int = 3
    conv_per_block: int = 1
    #: How a block downsamples by its ``conv_pool``: ``pool`` (max pooling after the
    #: convolutions, DESIGN.md's baseline) or ``stride`` (the block's first convolution is
    #: strided: 1/(ph*pw) of the multiply-adds; measured ~3x faster at batch 32 and as
    #: accurate per training step, see benchmarks/bench_recognizer.py).
    downsample: str = "stride"
    separable_blocks: tuple[int, ...] = ()
    batch_norm: bool = True
    #: Momentum of the batch-norm moving statistics; 0.9 (not Keras' 0.99) so that short runs
    #: and fine-tuning get inference statistics that match training within ~50 steps.
    bn_momentum: float = 0.9
    projection: int = 192
    rnn_type: str = "lstm"
    rnn_units: int = 128
    rnn_layers: int = 2
    dropout: float = 0.2
    conv_dropout: float = 0.0

    def __post_init__(self) -> None:
        self.conv_filters = tuple(int(f) for f in self.conv_filters)
        try:
            self.conv_pool = tuple((int(p[0]), int(p[1])) for p in self.conv_pool)
        except (TypeError, IndexError, ValueError):
            raise ConfigError(f"RecognizerConfig: conv_pool must be a list of [pool_h, pool_w] pairs, "
                              f"got {self.conv_pool!r}") from None
        self.separable_blocks = tuple(int(i) for i in self.separable_blocks)
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"RecognizerConfig: version {self.version} is not supported "
                              f"(this htr-tf reads version {CONFIG_VERSION})")
        if not self.conv_filters:
            raise ConfigError("RecognizerConfig: conv_filters is empty")
        if len(self.conv_pool) != len(self.conv_filters):
            raise ConfigError(f"RecognizerConfig: conv_pool has {len(self.conv_pool)} entries, "
                              f"conv_filters {len(self.conv_filters)}: one pool per block")
        if any(f < 1 for f in self.conv_filters) or any(min(p) < 1 for p in self.conv_pool):
            raise ConfigError("RecognizerConfig: conv_filters and conv_pool must be positive")
        bad = [i for i in self.separable_blocks if not 0 <= i < len(self.conv_filters)]
        if bad:
            raise ConfigError(f"RecognizerConfig: separable_blocks {bad} out of range "
                              f"0..{len(self.conv_filters) - 1}")
        if self.downsample not in DOWNSAMPLE_TYPES:
            raise ConfigError(f"RecognizerConfig: downsample {self.downsample!r}; valid: {list(DOWNSAMPLE_TYPES)}")
        if self.rnn_type not in RNN_TYPES:
            raise ConfigError(f"RecognizerConfig: rnn_type {self.rnn_type!r}; valid: {list(RNN_TYPES)}")
        if self.conv_kernel < 1 or self.conv_per_block < 1:
            raise ConfigError("RecognizerConfig: conv_kernel and conv_per_block must be >= 1")
        if self.rnn_layers < 0 or self.projection < 0 or (self.rnn_layers and self.rnn_units < 1):
            raise ConfigError("RecognizerConfig: rnn_layers, rnn_units and projection must be >= 0")
        if not 0.0 <= float(self.bn_momentum) < 1.0:
            raise ConfigError("RecognizerConfig: bn_momentum must be in [0, 1)")
        for name in ("dropout", "conv_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ConfigError(f"RecognizerConfig: {name} must be in [0, 1)")

    @classmethod
    def tiny(cls) -> "RecognizerConfig":
        """A few-thousand-parameter model for tests and smoke runs."""
        return cls(conv_filters=(4, 8, 8), conv_pool=((2, 2), (2, 2), (2, 2)), downsample="stride",
                   projection=16, rnn_units=8, rnn_layers=1, dropout=0.0)

    def width_downsample(self) -> int:
        """Product of the width pools: a line of width ``w`` gives ``ceil(w / this)`` frames."""
        return int(math.prod(p[1] for p in self.conv_pool))

    def height_downsample(self) -> int:
        return int(math.prod(p[0] for p in self.conv_pool))

    def frame_lengths(self, widths: Any) -> Any:
        """Valid frames per line, ``ceil(width / width_downsample())`` (numpy or tensors)."""
        return frame_lengths(widths, self.width_downsample())

    def check_geometry(self, geometry: LineGeometry) -> None:
        """Raise :class:`ConfigError` unless padded widths map onto whole frames."""
        ds = self.width_downsample()
        if geometry.width_multiple % ds:
            raise ConfigError(f"geometry.width_multiple={geometry.width_multiple} is not a multiple of the "
                              f"model's width downsampling {ds} (product of conv_pool widths)")
        if geometry.height < self.height_downsample():
            raise ConfigError(f"geometry.height={geometry.height} is smaller than the model's height "
                              f"downsampling {self.height_downsample()}")


def frame_lengths(widths: Any, downsample: int) -> Any:
    """``ceil(widths / downsample)`` as int32, for numpy arrays, python ints or tensors."""
    if isinstance(widths, (np.ndarray, np.generic, int, list, tuple)):
        w = np.asarray(widths, np.int64)
        return ((w + downsample - 1) // downsample).astype(np.int32)
    from keras import ops

    w = ops.cast(widths, "int32")
    return (w + (downsample - 1)) // downsample


# -- layers -------------------------------------------------------------------------------------
def _layers():
    """Custom layers, defined lazily so importing this module does not import Keras."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="htr_tf")
    class FrameLengths(keras.layers.Layer):
        """True widths -> valid frame counts, clipped to the feature map's length."""

        def __init__(self, downsample: int, **kwargs):
            super().__init__(**kwargs)
            self.downsample = int(downsample)

        def call(self, widths, features):
            t = ops.shape(features)[1]
            lengths = frame_lengths(widths, self.downsample)
            return ops.clip(lengths, 0, t)

        def compute_output_shape(self, widths_shape, features_shape):
            return tuple(widths_shape)

        def compute_output_spec(self, widths, features):
            return keras.KerasTensor(widths.shape, dtype="int32")

        def get_config(self):
            return {**super().get_config(), "downsample": self.downsample}

    @keras.saving.register_keras_serializable(package="htr_tf")
    class WidthMask(keras.layers.Layer):
        """Zero the columns of ``[B, H, W, C]`` features beyond ``ceil(width / downsample)``."""

        def __init__(self, downsample: int, **kwargs):
            super().__init__(**kwargs)
            self.downsample = int(downsample)

        def call(self, features, widths):
            valid = frame_lengths(widths, self.downsample)
            cols = ops.arange(ops.shape(features)[2], dtype="int32")
            mask = ops.cast(cols[None, :] < valid[:, None], features.dtype)
            return features * mask[:, None, :, None]

        def compute_output_shape(self, features_shape, widths_shape):
            return tuple(features_shape)

        def get_config(self):
            return {**super().get_config(), "downsample": self.downsample}

    @keras.saving.register_keras_serializable(package="htr_tf")
    class SequenceMask(keras.layers.Layer):
        """Boolean ``[B, T]`` mask of the valid frames of ``[B, T, C]`` features."""

        def call(self, features, lengths):
            steps = ops.arange(ops.shape(features)[1], dtype="int32")
            return steps[None, :] < ops.cast(lengths, "int32")[:, None]

        def compute_output_spec(self, features, lengths):
            return keras.KerasTensor(features.shape[:2], dtype="bool")

    _LAYERS = {"FrameLengths": FrameLengths, "WidthMask": WidthMask, "SequenceMask": SequenceMask}
    return _LAYERS


_LAYERS: dict[str, Any] | None = None


# -- the model ------------------------------------------------------------------------------------
def build_recognizer(config: RecognizerConfig, num_classes: int, height: int, name: str = "recognizer"):
    """Build the functional recogniser.

    Inputs ``{"image": float32 [B, height, None, 1], "width": int32 [B]}``; outputs
    ``{"log_probs": float32 [B, T, num_classes]`` (log-softmax, blank = 0, always float32,
    also under a mixed precision policy) and ``"lengths": int32 [B]}`` with
    ``T = ceil(padded_width / config.width_downsample())``.
    """
    import keras

    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 (the blank plus a character), got {num_classes}")
    if height < config.height_downsample():
        raise ConfigError(f"input height {height} is smaller than the model's height downsampling "
                          f"{config.height_downsample()}")
    L = _layers()
    image = keras.Input(shape=(height, None, 1), dtype="float32", name="image")
    width = keras.Input(shape=(), dtype="int32", name="width")

    x = L["WidthMask"](1, name="input_mask")(image, width)
    ds_w = 1
    strided = config.downsample == "stride"
    for i, (filters, (ph, pw)) in enumerate(zip(config.conv_filters, config.conv_pool)):
        for j in range(config.conv_per_block):
            cname = f"block{i + 1}_conv{j + 1}"
            strides = (ph, pw) if strided and j == 0 else (1, 1)
            if i in config.separable_blocks:
                x = keras.layers.SeparableConv2D(filters, config.conv_kernel, strides=strides, padding="same",
                                                 use_bias=not config.batch_norm, name=cname)(x)
            else:
                x = keras.layers.Conv2D(filters, config.conv_kernel, strides=strides, padding="same",
                                        use_bias=not config.batch_norm, name=cname)(x)
            ds_w *= strides[1]
            if config.batch_norm:
                x = keras.layers.BatchNormalization(momentum=config.bn_momentum,
                                                    name=f"block{i + 1}_bn{j + 1}")(x)
            x = keras.layers.ReLU(name=f"block{i + 1}_relu{j + 1}")(x)
            x = L["WidthMask"](ds_w, name=f"block{i + 1}_mask{j + 1}")(x, width)
        if not strided and (ph, pw) != (1, 1):
            x = keras.layers.MaxPooling2D((ph, pw), padding="same", name=f"block{i + 1}_pool")(x)
            ds_w *= pw
        if config.conv_dropout:
            x = keras.layers.SpatialDropout2D(config.conv_dropout, name=f"block{i + 1}_dropout")(x)
    x = L["WidthMask"](ds_w, name="features_mask")(x, width)

    h_out, c_out = x.shape[1], x.shape[3]
    x = keras.layers.Permute((2, 1, 3), name="columns")(x)
    x = keras.layers.Reshape((-1, h_out * c_out), name="frames")(x)
    lengths = L["FrameLengths"](ds_w, name="lengths")(width, x)
    mask = L["SequenceMask"](name="frame_mask")(x, lengths)

    if config.projection:
        x = keras.layers.Dense(config.projection, activation="relu", name="projection")(x)
    for k in range(config.rnn_layers):
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"rnn{k + 1}_dropout")(x)
        cell = keras.layers.LSTM if config.rnn_type == "lstm" else keras.layers.GRU
        rnn = cell(config.rnn_units, return_sequences=True, name=f"{config.rnn_type}{k + 1}")
        x = keras.layers.Bidirectional(rnn, name=f"bi{config.rnn_type}{k + 1}")(x, mask=mask)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="output_dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    log_probs = keras.layers.Activation("log_softmax", dtype="float32", name="log_probs")(logits)
    return keras.Model({"image": image, "width": width}, {"log_probs": log_probs, "lengths": lengths},
                       name=name)


def ctc_loss(labels: Any, log_probs: Any, lengths: Any) -> Any:
    """Per-sample CTC loss (negative log-likelihood) with true label and frame lengths.

    ``labels``: int ``[B, L]`` right-padded with ``BLANK_INDEX``; ``log_probs``: float
    ``[B, T, C]``; ``lengths``: valid frames ``[B]``.  A line whose label cannot fit its
    frames gets an infinite loss from CTC; the trainer drops such lines from the data.
    """
    from keras import ops

    labels = ops.cast(labels, "int32")
    label_lengths = ops.cast(ops.count_nonzero(labels, axis=-1), "int32")
    return ops.ctc_loss(labels, ops.cast(log_probs, "float32"), label_lengths,
                        ops.cast(lengths, "int32"), mask_index=BLANK_INDEX)


# -- the bundle -----------------------------------------------------------------------------------
#: With ``jit``, batches are padded to a multiple of this many columns (a few XLA programs).
XLA_WIDTH_STEP = 256


@dataclass
class Recognizer:
    """A trained recogniser: the Keras model plus everything needed to use it.

    A bundle directory holds ``model.keras`` and ``htr.json`` (kind, format version,
    charset, geometry, config and ``info``: training provenance and metrics) and, once
    ``htr lm tune --save`` has run, ``decoding``: tuned decoder settings per decoder name
    (:func:`htr_tf.decode.decoder_defaults`), which every export carries with the rest.
    """

    model: Any
    config: RecognizerConfig
    charset: Charset
    geometry: LineGeometry
    info: dict = field(default_factory=dict)
    decoding: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config.check_geometry(self.geometry)
        self._predict = None
        self._predict_xla = None

    @classmethod
    def create(cls, config: RecognizerConfig, charset: Charset, geometry: LineGeometry,
               info: dict | None = None) -> "Recognizer":
        """A freshly initialised recogniser for ``charset`` and ``geometry``."""
        config.check_geometry(geometry)
        model = build_recognizer(config, charset.num_classes, geometry.height)
        return cls(model, config, charset, geometry, dict(info or {}))

    # -- persistence ------------------------------------------------------------------------
    def metadata(self) -> dict:
        return {"kind": BUNDLE_KIND, "format_version": BUNDLE_FORMAT_VERSION,
                "charset": self.charset.to_dict(), "geometry": self.geometry.to_dict(),
                "config": plain(self.config.to_dict()), "info": plain(self.info),
                **({DECODING_KEY: plain(self.decoding)} if self.decoding else {})}

    def save(self, path: str | os.PathLike) -> None:
        """Write the bundle directory atomically (:func:`htr_tf.bundle.save_bundle`)."""
        save_bundle(path, self.model, self.metadata())

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict:
        """The bundle's ``htr.json``, checked for kind and format version."""
        return read_bundle_meta(path, BUNDLE_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recognizer":
        """Load a bundle; :class:`ModelError` naming ``path`` when missing, corrupt or incompatible."""
        path = Path(path)
        meta = cls.read_metadata(path)
        try:
            charset = Charset.from_dict(meta["charset"])
            geometry = LineGeometry.from_dict(meta["geometry"])
            config = RecognizerConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ModelError(f"{path}: bad bundle metadata: {e}") from None
        _layers()
        model = load_keras_model(path)
        out_classes = model.output["log_probs"].shape[-1] if isinstance(model.output, dict) else None
        if out_classes != charset.num_classes:
            raise ModelError(f"{path}: model has {out_classes} output classes but the charset needs "
                             f"{charset.num_classes}")
        return cls(model, config, charset, geometry, dict(meta.get("info") or {}),
                   dict(meta.get(DECODING_KEY) or {}))

    @classmethod
    def save_decoder_settings(cls, path: str | os.PathLike, decoder: str, options: dict,
                              tuned: dict | None = None) -> dict:
        """Record ``options`` as the tuned defaults of ``decoder`` in the bundle's ``htr.json``.

        Only that decoder's entry changes (other decoders and every other key are kept);
        ``tuned`` says where the values came from.  The file is replaced atomically.
        Returns the new metadata.
        """
        path = Path(path)
        meta = cls.read_metadata(path)
        decoding = meta.get(DECODING_KEY) or {}
        if not isinstance(decoding, dict):
            raise ModelError(f"{path / META_FILE}: {DECODING_KEY!r} is not an object")
        entry: dict = {"options": plain(dict(options))}
        if tuned:
            entry["tuned"] = plain(dict(tuned))
        meta[DECODING_KEY] = {**decoding, decoder: entry}
        atomic_write_text(path / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False))
        return meta

    # -- inference --------------------------------------------------------------------------
    def log_probs(self, batch_images: np.ndarray, widths: Sequence[int] | np.ndarray, jit: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame log-probabilities ``[B, T, C]`` and valid lengths ``[B]`` for a padded batch.

        ``batch_images`` is ``[B, height, W, 1]`` float32 (or ``[B, height, W]``) as made by
        :func:`htr_tf.recognize.model_input` from a :func:`~htr_tf.recognize.line_batch`; ``widths`` the true widths.
        ``jit`` runs the network compiled by XLA: about twice as fast at batch 1 and 15 % at batch
        32 on a 2-core CPU, but each new input shape costs a second or two of compiling, so the
        batch is padded to a power of two and the width to a multiple of :data:`XLA_WIDTH_STEP`
        (a few shapes serve every page); worth it for many pages, not for one.
        """
        import tensorflow as tf

        images = np.asarray(batch_images, np.float32)
        if images.ndim == 3:
            images = images[..., None]
        widths = np.asarray(widths, np.int32).reshape(-1)
        if images.ndim != 4 or images.shape[1] != self.geometry.height or images.shape[3] != 1:
            raise DataError(f"expected images [B, {self.geometry.height}, W, 1], got {list(images.shape)}")
        if widths.shape[0] != images.shape[0]:
            raise DataError(f"{images.shape[0]} images but {widths.shape[0]} widths")
        if images.shape[0] == 0:
            return (np.zeros((0, 0, self.charset.num_classes), np.float32), np.zeros((0,), np.int32))
        if (self._predict_xla if jit else self._predict) is None:
            model = self.model

            @tf.function(input_signature=[
                tf.TensorSpec([None, self.geometry.height, None, 1], tf.float32),
                tf.TensorSpec([None], tf.int32)], reduce_retracing=True, jit_compile=jit)
            def predict(image, width):
                out = model({"image": image, "width": width}, training=False)
                return out["log_probs"], out["lengths"]

            if jit:
                self._predict_xla = predict
            else:
                self._predict = predict
        if not jit:
            lp, lengths = self._predict(tf.constant(images), tf.constant(widths))
            return lp.numpy(), lengths.numpy()
        b, _, w, _ = images.shape
        bp = 1 << (b - 1).bit_length()
        wp = -(-w // XLA_WIDTH_STEP) * XLA_WIDTH_STEP
        padded = np.zeros((bp, images.shape[1], wp, 1), np.float32)   # 0 is blank paper after normalisation
        padded[:b, :, :w] = images
        pw = np.full((bp,), int(widths.max()), np.int32)
        pw[:b] = widths
        lp, lengths = self._predict_xla(tf.constant(padded), tf.constant(pw))
        frames = -(-w // self.config.width_downsample())
        return lp.numpy()[:b, :frames], lengths.numpy()[:b]

    def count_params(self) -> int:
        return int(self.model.count_params())
