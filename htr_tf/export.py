"""SavedModel export of the recogniser with named serving signatures.

One export serves every client kind (as TF Model Garden's ``export_base`` does): all
preprocessing and greedy decoding run inside the graph, and the charset and geometry
travel inside the model, so a client never configures them a second time.

Signatures (inputs -> outputs):

``recognize`` (also ``serving_default``)
    ``images``: uint8 ``[B, H, W]`` line images already resized to ``geometry.height``
    (:func:`htr_tf.geometry.resize_line`) and right-padded with 255 (paper);
    ``widths``: int32 ``[B]`` their true widths.
``recognize_bytes``
    ``images``: string ``[B]`` encoded PNG/JPEG/GIF/BMP line images of any size and colour
    (decoded, made gray, resized and padded in the graph; TIFF is not decodable in-graph).
both return
    ``log_probs`` float32 ``[B, T, C]`` (blank = 0), ``lengths`` int32 ``[B]``, ``text``
    string ``[B]`` (greedy: argmax, merge repeats, drop blanks), ``confidence`` float32 ``[B]``
    (mean over characters of each character's highest probability, as
    :class:`htr_tf.decode.GreedyDecoder` computes it).  ``recognize_bytes`` reads densely read
    lines again wider and sparsely read ones narrower when the geometry says so
    (``reread_density``, ``reread_sparse``, as :func:`htr_tf.recognize.reread_lines` does), and
    reads each line in the views the bundle names (htr.json ``decoding.variants``), keeping the
    text they agree on most, as :func:`htr_tf.readings.choose_reading` does (``log_probs`` and
    ``lengths`` are then the as-written view's, and a text another view proposed gets its
    confidence forced-aligned on them); ``recognize`` is one pass of the model, so a client that
    frames lines itself applies those rules itself, as the pipeline's gRPC backend does.
``metadata``
    no inputs; ``json``: the bundle's ``htr.json`` (kind, charset, geometry, config, info and,
    when tuned, ``decoding``: the decoders' default settings for this model).
``metadata_batch``
    ``rows``: int32 ``[B]`` (any values) -> ``json`` string ``[B]``, the same JSON per row.
    TF Serving's request batching rejects a signature without inputs ("Batching Run() must
    have at least one input tensor"), so a batched recogniser answers only this one.

The same JSON is the asset ``assets/htr.json``.  The export is written into a temporary
directory beside ``out_dir`` and renamed into place.

>>> exp = export_recognizer(recognizer, "exports/recognizer/1")          # doctest: +SKIP
>>> rec = load_exported("exports/recognizer/1")                          # doctest: +SKIP
>>> rec.recognize_lines([line_image])["text"]                            # doctest: +SKIP
['the quick brown fox']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from htr_tf.charset import Charset
from htr_tf.errors import DataError, ModelError
from htr_tf.geometry import LineGeometry

if TYPE_CHECKING:
    from htr_tf.models.recognizer import Recognizer

__all__ = ["META_ASSET", "SIGNATURES", "export_recognizer", "load_exported", "ExportedRecognizer"]

META_ASSET = "htr.json"
SIGNATURES = ("serving_default", "recognize", "recognize_bytes", "metadata")
_OUTPUTS = ("log_probs", "lengths", "text", "confidence")


def _build_module(recognizer: "Recognizer", meta_json: str, asset_file: Path):
    """The ``tf.Module`` holding the model, the asset and the signature functions."""
    import tensorflow as tf

    from htr_tf.decode.ctc import tf_greedy_decode
    from htr_tf.geometry import tf_normalize, tf_resize_line, tf_stretch_lines
    from htr_tf.readings import bundle_variants, tf_choose_readings, tf_variant_lines

    geometry = recognizer.geometry
    views = bundle_variants(recognizer.decoding)
    chars = recognizer.charset.chars
    H, multiple, max_w = geometry.height, geometry.width_multiple, geometry.max_width

    class RecognizerModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="htr_recognizer")
            self.model = recognizer.model
            self.htr_json = tf.saved_model.Asset(str(asset_file))

        def _log_probs(self, images, widths):
            """uint8 ``[B, H, W]`` paper-padded images and widths -> log-probs and lengths."""
            W = tf.shape(images)[2]
            widths = tf.clip_by_value(tf.cast(widths, tf.int32), 0, W)
            Wp = (W + multiple - 1) // multiple * multiple
            images = tf.pad(images, [[0, 0], [0, 0], [0, Wp - W]], constant_values=255)
            x = tf_normalize(images)
            cols = tf.range(Wp)[None, None, :] < widths[:, None, None]
            x = tf.where(cols, x, 0.0)[..., None]                  # beyond the width: blank paper
            out = self.model({"image": x, "width": widths}, training=False)
            return tf.cast(out["log_probs"], tf.float32), tf.cast(out["lengths"], tf.int32)

        def _reread(self, images, widths, log_probs, lengths):
            """:func:`htr_tf.recognize.reread_lines` in graph."""
            _, confidence, n_chars = tf_greedy_decode(log_probs, lengths, chars, with_counts=True)
            frames = tf.cast(tf.maximum(lengths, 1), tf.float64)
            n_chars = tf.cast(n_chars, tf.float64)
            dense = n_chars > geometry.reread_density * frames if geometry.reread_density > 0 \
                else tf.zeros_like(n_chars, tf.bool)
            sparse = n_chars < geometry.reread_sparse * frames if geometry.reread_sparse > 0 \
                else tf.zeros_like(n_chars, tf.bool)
            sparse = tf.logical_and(sparse, tf.logical_not(dense))
            again_mask = tf.logical_or(dense, sparse)

            def again():
                idx = tf.where(again_mask)[:, 0]
                factors = tf.where(tf.gather(dense, idx), tf.constant(geometry.reread_stretch, tf.float64),
                                   tf.constant(geometry.reread_squeeze, tf.float64))
                imgs2, w2 = tf_stretch_lines(tf.gather(images, idx), tf.gather(widths, idx), geometry, factors)
                lp2, ln2 = self._log_probs(imgs2, w2)
                _, conf2 = tf_greedy_decode(lp2, ln2, chars)
                better = conf2 > tf.gather(confidence, idx)
                T = tf.maximum(tf.shape(log_probs)[1], tf.shape(lp2)[1])
                lp1 = tf.pad(log_probs, [[0, 0], [0, T - tf.shape(log_probs)[1]], [0, 0]])
                lp2 = tf.pad(lp2, [[0, 0], [0, T - tf.shape(lp2)[1]], [0, 0]])
                rows = tf.boolean_mask(idx, better)[:, None]
                return (tf.tensor_scatter_nd_update(lp1, rows, tf.boolean_mask(lp2, better)),
                        tf.tensor_scatter_nd_update(lengths, rows, tf.boolean_mask(ln2, better)))

            return tf.cond(tf.reduce_any(again_mask), again, lambda: (log_probs, lengths))

        def _read(self, images, widths, reread: bool):
            log_probs, lengths = self._log_probs(images, widths)
            if reread and (geometry.reread_density > 0 or geometry.reread_sparse > 0):
                log_probs, lengths = self._reread(images, widths, log_probs, lengths)
            return log_probs, lengths

        def _run(self, images, widths, reread: bool = False, views: Sequence[str] = ()):
            """uint8 ``[B, H, W]`` paper-padded images and widths -> the four outputs; with
            ``views``, read in each and keep the text they agree on (:mod:`htr_tf.readings`)."""
            widths = tf.cast(widths, tf.int32)
            readings = [self._read(*tf_variant_lines(images, widths, geometry, name), reread)
                        for name in views or ("base",)]
            text, confidence = tf_choose_readings([r[0] for r in readings], [r[1] for r in readings], chars)
            log_probs, lengths = readings[0]
            return {"log_probs": log_probs, "lengths": lengths, "text": text, "confidence": confidence}

        @tf.function(input_signature=[tf.TensorSpec([None, H, None], tf.uint8, name="images"),
                                      tf.TensorSpec([None], tf.int32, name="widths")])
        def recognize(self, images, widths):
            return self._run(images, widths)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def recognize_bytes(self, images):
            def one(data):
                img = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
                gray, width = tf_resize_line(_tf_to_gray(img), geometry)
                gray = tf.pad(gray[:, :, 0], [[0, 0], [0, max_w - width]], constant_values=255)
                return gray, width

            padded, widths = tf.map_fn(
                one, images, fn_output_signature=(tf.TensorSpec([H, max_w], tf.uint8),
                                                  tf.TensorSpec([], tf.int32)))
            W = tf.maximum(tf.reduce_max(tf.concat([widths, [1]], 0)), 1)
            return self._run(padded[:, :, :W], widths, reread=True, views=views)

        @tf.function(input_signature=[])
        def metadata(self):
            return {"json": tf.constant(meta_json)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="rows")])
        def metadata_batch(self, rows):
            return {"json": tf.fill(tf.shape(rows), tf.constant(meta_json))}

    return RecognizerModule()


def _tf_to_gray(img):
    """Decoded ``[h, w, c]`` uint8 (gray, gray+alpha, RGB, RGBA) to gray ``[h, w, 1]`` uint8.

    Transparent pixels become white paper and colour uses the BT.601 weights, as
    :func:`htr_tf.fileio.to_gray_uint8` does with OpenCV.
    """
    import tensorflow as tf

    f = tf.cast(img, tf.float32)

    def over_white(color, alpha):
        a = alpha / 255.0
        return tf.round(color * a + 255.0 * (1.0 - a))

    branches = [
        lambda: f[:, :, :1],
        lambda: over_white(f[:, :, :1], f[:, :, 1:2]),
        lambda: tf.image.rgb_to_grayscale(f[:, :, :3]),
        lambda: tf.image.rgb_to_grayscale(over_white(f[:, :, :3], f[:, :, 3:4])),
    ]
    gray = tf.switch_case(tf.clip_by_value(tf.shape(img)[2] - 1, 0, 3), branches)
    return tf.cast(tf.clip_by_value(tf.round(gray), 0, 255), tf.uint8)


def export_recognizer(recognizer: "Recognizer", out_dir: str | os.PathLike) -> Path:
    """Export ``recognizer`` as a SavedModel in ``out_dir`` (replaced atomically); returns it."""
    from htr_tf.bundle import save_module

    meta_json = json.dumps(recognizer.metadata(), indent=2, ensure_ascii=False)
    return save_module(lambda asset: _build_module(recognizer, meta_json, asset), meta_json, out_dir,
                       lambda m: {"serving_default": m.recognize.get_concrete_function(),
                                  "recognize": m.recognize.get_concrete_function(),
                                  "recognize_bytes": m.recognize_bytes.get_concrete_function(),
                                  "metadata": m.metadata.get_concrete_function(),
                                  "metadata_batch": m.metadata_batch.get_concrete_function()})


# -- loading -------------------------------------------------------------------------------------
class ExportedRecognizer:
    """A loaded recogniser export: its metadata and its signatures, with checked helpers."""

    def __init__(self, path: Path, loaded: Any, metadata: dict[str, Any]):
        self.path = path
        self.loaded = loaded
        self.signatures = dict(loaded.signatures)
        self.metadata = metadata
        try:
            self.charset = Charset.from_dict(metadata["charset"])
            self.geometry = LineGeometry.from_dict(metadata["geometry"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: bad metadata in the export: {e}") from None

    @staticmethod
    def _numpy(out: dict) -> dict[str, Any]:
        res = {k: out[k].numpy() for k in _OUTPUTS}
        res["text"] = [t.decode("utf-8") for t in res["text"]]
        return res

    def recognize(self, images: np.ndarray, widths: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        """Run ``recognize`` on uint8 ``[B, height, W]`` paper-padded images (widths default to ``W``)."""
        import tensorflow as tf

        images = np.asarray(images)
        H = self.geometry.height
        if images.dtype != np.uint8:
            raise DataError(f"images must be uint8 gray (0-255), got {images.dtype}")
        if images.ndim != 3 or images.shape[1] != H:
            raise DataError(f"images must be [batch, {H}, width] (resized to the model's height {H}), "
                            f"got shape {list(images.shape)}")
        if widths is None:
            widths = np.full(images.shape[0], images.shape[2], np.int32)
        widths = np.asarray(widths)
        if widths.ndim != 1 or widths.shape[0] != images.shape[0] or not np.issubdtype(widths.dtype, np.integer):
            raise DataError(f"widths must be {images.shape[0]} integers, got {widths.dtype} {list(widths.shape)}")
        if widths.size and (widths.min() < 1 or widths.max() > images.shape[2]):
            raise DataError(f"widths must be in 1..{images.shape[2]} (the padded width)")
        if images.shape[0] == 0:
            return self._empty()
        out = self.signatures["recognize"](images=tf.constant(images), widths=tf.constant(widths, tf.int32))
        return self._numpy(out)

    def recognize_bytes(self, images: Sequence[bytes]) -> dict[str, Any]:
        """Run ``recognize_bytes`` on encoded images (PNG, JPEG, GIF, BMP)."""
        import tensorflow as tf

        if isinstance(images, (bytes, str)) or not all(isinstance(b, bytes) for b in images):
            raise DataError("images must be a list of encoded image bytes")
        if not images:
            return self._empty()
        try:
            out = self.signatures["recognize_bytes"](images=tf.constant(list(images), tf.string))
        except tf.errors.InvalidArgumentError as e:
            raise DataError(f"an image could not be decoded in the graph: {e.message.splitlines()[0]}") from None
        return self._numpy(out)

    def recognize_lines(self, crops: Sequence[np.ndarray]) -> dict[str, Any]:
        """Batch 2-D uint8 line crops as every backend does (:func:`htr_tf.recognize.line_batch`)
        and run ``recognize``."""
        from htr_tf.recognize import line_batch

        if not len(crops):
            return self._empty()
        return self.recognize(*line_batch(crops, self.geometry))

    def _empty(self) -> dict[str, Any]:
        C = self.charset.num_classes
        return {"log_probs": np.zeros((0, 0, C), np.float32), "lengths": np.zeros(0, np.int32),
                "text": [], "confidence": np.zeros(0, np.float32)}


def load_exported(path: str | os.PathLike) -> ExportedRecognizer:
    """Load a recogniser SavedModel; :class:`ModelError` when missing, corrupt or not a recogniser."""
    import tensorflow as tf

    path = Path(path)
    if not (path / "saved_model.pb").exists():
        raise ModelError(f"{path}: not a SavedModel (no saved_model.pb); export one with "
                         f"`htr export recognizer --model M --out DIR`")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TF raises many types for a corrupt SavedModel
        raise ModelError(f"{path}: cannot load the SavedModel: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    missing = [s for s in SIGNATURES if s not in loaded.signatures]
    if missing:
        raise ModelError(f"{path}: not a recogniser export (missing signatures {missing})")
    try:
        meta = json.loads(loaded.signatures["metadata"]()["json"].numpy().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError) as e:
        raise ModelError(f"{path}: corrupt metadata in the export: {e}") from None
    if not isinstance(meta, dict) or meta.get("kind") != "recognizer":
        raise ModelError(f"{path}: export kind is {meta.get('kind') if isinstance(meta, dict) else None!r}, "
                         f"expected 'recognizer'")
    return ExportedRecognizer(path, loaded, meta)
