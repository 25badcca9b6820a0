"""tf.data input pipelines: record sets -> batches for the recogniser and the layout models.

Lines (:func:`line_dataset`, :func:`mixed_line_dataset`) yield ``(inputs, labels)``::

    inputs = {"image": float32 [B, H, W, 1],   # geometry.tf_resize_line + tf_normalize:
                                               # ink positive, right padding 0 = paper,
                                               # W a multiple of geometry.width_multiple
              "width": int32 [B],              # true resized width of each line
              # with_meta=True adds "text" and "id": string [B]
             }
    labels = int32 [B, L]                      # charset ids right-padded with BLANK_INDEX 0

Lines are bucketed by width before batching, so short lines are not padded to the longest.
Augmentation (:mod:`htr_tf.data.augment`) runs on each bucketed batch of decoded crops: one
resampling does the geometric jitter and the resize to ``geometry.height`` (same width rule
as ``tf_resize_line``), then the photometric part, all vectorised over the batch (a line
costs a share of a few batched ops, not a graph of its own).  The dataset carries
``htr_stats`` (:class:`LineStats`): how many lines were read and how many were dropped as
too long for CTC.

Forms (:func:`form_dataset`) yield ``(image float32 [B, H, W, 1], targets)`` with targets in
keras-cv's dense bounding-box layout (``BOX_FORMAT``, padded with -1).

Determinism: with a ``seed`` the stream (file order, shuffling, augmentation seeds) is a
function of the seed alone and ``options.deterministic`` is on, so two datasets built with
the same arguments give identical batches; re-iterating one dataset (a new epoch) reshuffles
and re-augments.  Without a seed parallel work may finish out of order, for speed.
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Sequence, Union

from htr_tf.charset import BLANK_INDEX, Charset
from htr_tf.data.augment import (AugmentConfig, augment_batch, augment_geometry_batch, augment_page,
                                 shrink_tall_crop)
from htr_tf.data.records import RecordSet, parse_form, parse_line
from htr_tf.errors import DataError
from htr_tf.geometry import DEFAULT_LINE_GEOMETRY, LineGeometry, tf_frame_line, tf_normalize, tf_resize_line

__all__ = ["BOX_FORMAT", "LineStats", "line_dataset", "mixed_line_dataset", "form_dataset",
           "check_charset", "width_buckets"]

#: Box format of :func:`form_dataset`'s ``boxes`` (keras-cv's ``bounding_box_format``).
BOX_FORMAT = "xyxy"

Records = Union[str, os.PathLike, RecordSet]
#: ``(records, split, weight)``: one source of a mixture.
LineSource = tuple
MaxLabelFn = Union[int, Callable[[Any], Any], None]


def _tf():
    import tensorflow as tf

    return tf


def _record_set(r: Records) -> RecordSet:
    return r if isinstance(r, RecordSet) else RecordSet(r)


def _plain(fn: Callable) -> Callable:
    """Mark a tf.data function as plain graph code: it uses ``tf.cond`` where it branches on
    tensors, so AutoGraph's source conversion (slow to trace) is not needed."""
    return _tf().autograph.experimental.do_not_convert(fn)


def _seed_or_random(seed: int | None) -> int:
    return int(seed) if seed is not None else random.SystemRandom().randrange(2**31)


# -- charsets -----------------------------------------------------------------------------------
def _model_ids_of(ch: str, model: Charset) -> list[int] | None:
    """Model ids for one character of a record set's text, via substitutions; None if impossible."""
    if ch in model:
        return [model.chars.index(ch) + 1]
    sub = model.substitutions.get(ch)
    if sub is not None and all(c in model for c in sub):
        return [model.chars.index(c) + 1 for c in sub]
    return None


def check_charset(records_charset: Charset, model: Charset, where: str = "") -> None:
    """Raise :class:`DataError` if a character of the record set's charset cannot be encoded."""
    missing = [c for c in records_charset.chars if _model_ids_of(c, model) is None]
    if missing:
        raise DataError(f"{where or 'record set'}: {len(missing)} character(s) of its charset are not in the "
                        f"model charset: {''.join(missing)!r}; extend the model charset "
                        f"(Charset.extended) or convert the data with the model's charset")


def _reencoder(records_charset: Charset, model: Charset):
    """A graph function text -> model ids (tf.lookup over unicode characters)."""
    tf = _tf()
    keys, rows = [], []
    for c in dict.fromkeys(records_charset.chars + model.chars + "".join(model.substitutions)):
        ids = _model_ids_of(c, model)
        if ids is not None:
            keys.append(c)
            rows.append(ids)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.range(len(keys), dtype=tf.int64)), -1)
    ragged = tf.ragged.constant(rows, dtype=tf.int32)

    def encode(text):
        text = tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))
        idx = table.lookup(tf.strings.unicode_split(text, "UTF-8"))
        idx = tf.boolean_mask(idx, idx >= 0)  # characters outside the manifest's charset
        return tf.gather(ragged, idx).flat_values

    return encode


# -- lines ----------------------------------------------------------------------------------------
class LineStats:
    """Counters filled while a line dataset is iterated (cumulative over iterations).

    ``too_long``: lines dropped because their label needs more CTC frames than the model
    emits for their width (see ``max_label_for_width``).
    """

    def __init__(self) -> None:
        tf = _tf()
        self.seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="lines_seen")
        self.too_long = tf.Variable(0, dtype=tf.int64, trainable=False, name="lines_too_long")

    def as_dict(self) -> dict[str, int]:
        return {"seen": int(self.seen.numpy()), "too_long": int(self.too_long.numpy())}


def _frames_fn(max_label_for_width: MaxLabelFn):
    if max_label_for_width is None:
        return None
    if isinstance(max_label_for_width, int) and not isinstance(max_label_for_width, bool):
        if max_label_for_width < 1:
            raise ValueError(f"max_label_for_width as a downsample factor must be >= 1, got {max_label_for_width}")
        factor = max_label_for_width
        return lambda width: width // factor
    if callable(max_label_for_width):
        return max_label_for_width
    raise TypeError("max_label_for_width must be None, a width downsample factor (int) or a callable")


def ctc_frames_needed(labels):
    """Frames CTC needs for a label: its length plus one blank between repeated ids."""
    tf = _tf()
    n = tf.size(labels)
    repeats = tf.reduce_sum(tf.cast(tf.equal(labels[1:], labels[:-1]), tf.int32))
    return n + repeats


def _batch_frames_needed(labels):
    """:func:`ctc_frames_needed` for a ``[B, L]`` batch right-padded with blanks."""
    tf = _tf()
    n = tf.reduce_sum(tf.cast(labels != BLANK_INDEX, tf.int32), axis=1)
    rep = tf.logical_and(tf.equal(labels[:, 1:], labels[:, :-1]), labels[:, 1:] != BLANK_INDEX)
    return n + tf.reduce_sum(tf.cast(rep, tf.int32), axis=1)


def width_buckets(geometry: LineGeometry, growth: float = 1.25) -> list[int]:
    """Bucket upper widths: geometric steps from ``min_width`` to ``max_width``, multiples of
    ``width_multiple`` (so a batch pads a line by at most ~25 % of its width)."""
    m = geometry.width_multiple
    b = geometry.padded_width(max(geometry.min_width, m))
    out = []
    while b < geometry.max_width:
        out.append(b)
        b = geometry.padded_width(max(int(b * growth), b + m))
    return out


def _line_examples(rs: RecordSet, split: str, *, geometry: LineGeometry, model_cs: Charset,
                   training: bool, augment: AugmentConfig | None, shuffle_buffer: int, seed: int,
                   deterministic: bool, repeat: bool, with_meta: bool, frames_fn, stats: LineStats):
    """One record set's lines, unbatched: ({"image": uint8 [H, w, 1], "width", ...}, ids).

    With ``augment`` the image stays the (decoded) crop, with its size in ``_h``/``_w`` and
    ``width`` the width it would have resized; :func:`_batch_lines` augments and resizes.
    """
    tf = _tf()
    AUTOTUNE = tf.data.AUTOTUNE
    files = rs.files("lines", split)
    records_cs = rs.charset
    same = records_cs.chars == model_cs.chars
    encode = None if same else (check_charset(records_cs, model_cs, str(rs.path)) or _reencoder(records_cs, model_cs))

    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if training and len(files) > 1:
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4),
                           num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=1)
    if training and shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def load(serialized):
        ex = parse_line(serialized)
        image = tf.io.decode_png(ex["image"], channels=1)
        if augment is not None:  # framed as served (trimmed, levelled), then augmented and resized per batch
            image = tf_frame_line(image, geometry)
            h, w = tf.shape(image)[0], tf.shape(image)[1]
            width = tf.cast(tf.round(tf.cast(w, tf.float32) * geometry.height
                                     / tf.maximum(tf.cast(h, tf.float32), 1.0)), tf.int32)
            width = tf.clip_by_value(width, geometry.min_width, geometry.max_width)
            image = shrink_tall_crop(image, geometry.height)
            extra = {"_h": tf.shape(image)[0], "_w": tf.shape(image)[1]}
        else:
            image, width = tf_resize_line(image, geometry)
            extra = {}
        labels = ex["ids"] if encode is None else encode(ex["text"])
        feats = {"image": image, "width": tf.cast(width, tf.int32), **extra}
        if with_meta:
            feats["text"] = ex["text"]
            feats["id"] = ex["id"]
        return feats, tf.cast(labels, tf.int32)

    ds = ds.map(_plain(load), num_parallel_calls=AUTOTUNE, deterministic=deterministic)

    def keep(feats, labels):
        ok = tf.constant(True)
        if frames_fn is not None:
            ok = ctc_frames_needed(labels) <= tf.cast(frames_fn(feats["width"]), tf.int32)
        with tf.control_dependencies([stats.seen.assign_add(1),
                                      stats.too_long.assign_add(tf.cast(tf.logical_not(ok), tf.int64))]):
            return tf.identity(ok)

    return ds.filter(_plain(keep))


def _batch_lines(ds, *, geometry: LineGeometry, batch_size: int, bucket_by_width: bool,
                 drop_remainder: bool, with_meta: bool, max_batch_pixels: int | None,
                 augment: AugmentConfig | None, seed: int, frames_fn):
    """Bucket, pad and batch; augment (per batch) when asked; pad W to the multiple; normalise."""
    tf = _tf()
    H = geometry.height
    padded_shapes = ({"image": [H if augment is None else None, None, 1], "width": []}, [None])
    padding_values = ({"image": tf.constant(255, tf.uint8), "width": tf.constant(0, tf.int32)},
                      tf.constant(BLANK_INDEX, tf.int32))
    if augment is not None:
        padded_shapes[0].update(_h=[], _w=[])
        padding_values[0].update(_h=tf.constant(0, tf.int32), _w=tf.constant(0, tf.int32))
    if with_meta:
        padded_shapes[0].update(text=[], id=[])
        padding_values[0].update(text=tf.constant(""), id=tf.constant(""))
    if bucket_by_width:
        bounds = width_buckets(geometry)
        uppers = bounds + [geometry.padded_width(geometry.max_width)]
        cap = max_batch_pixels or batch_size * H * max(geometry.max_width // 2, 1)
        grow = 1.0 if augment is None else augment.scale_x[1] * 1.1  # augmented lines get wider
        sizes = [int(min(batch_size, max(1, cap // (H * u * grow)))) for u in uppers]
        ds = ds.bucket_by_sequence_length(
            lambda feats, labels: feats["width"], bucket_boundaries=[b + 1 for b in bounds],
            bucket_batch_sizes=sizes, padded_shapes=padded_shapes, padding_values=padding_values,
            drop_remainder=drop_remainder)
    else:
        ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes, padding_values=padding_values,
                             drop_remainder=drop_remainder)
    m = geometry.width_multiple
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def finish(batch, batch_seed):
        feats, labels = batch
        out = dict(feats)
        image = out.pop("image")
        if augment is not None:
            raw_h, raw_w, planned = out.pop("_h"), out.pop("_w"), out["width"]
            floor = None
            if frames_fn is not None:
                # never let augmentation make a label too long for its line: a line that
                # would become too narrow keeps the width it has unaugmented (which passed)
                needed = _batch_frames_needed(labels)
                floor = lambda w: tf.where(  # noqa: E731
                    needed > tf.cast(frames_fn(w), tf.int32), planned, 0)
            seeds = tf.random.experimental.stateless_split(batch_seed, 2)
            image, width = augment_geometry_batch(image, raw_h, raw_w, seeds[0], augment, height=H,
                                                  min_width=geometry.min_width,
                                                  max_width=geometry.max_width, width_floor=floor)
            image = augment_batch(image, width, seeds[1], augment)
            out["width"] = width
        w = tf.shape(image)[2]
        pad = (m - w % m) % m
        image = tf.pad(image, [[0, 0], [0, 0], [0, pad], [0, 0]], constant_values=255)
        # static shapes: sample_from_datasets and augmentation lose them, Keras needs the rank
        out["image"] = tf.ensure_shape(tf_normalize(image), [None, H, None, 1])
        out["width"] = tf.ensure_shape(out["width"], [None])
        return out, tf.ensure_shape(labels, [None, None])

    return tf.data.Dataset.zip(ds, seeds).map(_plain(finish), num_parallel_calls=tf.data.AUTOTUNE)


def _sources(records, split) -> list[tuple[RecordSet, str, float]]:
    if isinstance(records, (str, os.PathLike, RecordSet)):
        if split is None:
            raise DataError("line_dataset: a split is needed (e.g. 'train')")
        return [(_record_set(records), split, 1.0)]
    out = []
    for item in records:
        if isinstance(item, tuple):
            if len(item) != 3:
                raise DataError(f"a mixture source must be (records, split, weight), got {item!r}")
            r, s, wgt = item
            out.append((_record_set(r), s, float(wgt)))
        else:
            if split is None:
                raise DataError("line_dataset: a split is needed for record sets given without one")
            rs = _record_set(item)
            out.append((rs, split, float(rs.count("lines", split))))
    if not out:
        raise DataError("line_dataset: no record sets given")
    return out


def line_dataset(records: Records | Sequence[Records | LineSource], split: str | None, *,
                 batch_size: int, geometry: LineGeometry = DEFAULT_LINE_GEOMETRY,
                 charset: Charset | None = None, training: bool = False,
                 augment: bool | AugmentConfig | None = None, shuffle_buffer: int = 2048,
                 seed: int | None = None, repeat: bool = False, bucket_by_width: bool = True,
                 drop_remainder: bool = False, with_meta: bool = False,
                 max_label_for_width: MaxLabelFn = None, max_batch_pixels: int | None = None,
                 stats: LineStats | None = None):
    """Batches of line images and labels for the recogniser (see the module docstring).

    ``records``: one record set (path or :class:`RecordSet`), several (read at ``split``,
    mixed in proportion to their sizes), or ``(records, split, weight)`` triples (mixed by
    weight, see :func:`mixed_line_dataset`).  ``charset``: the model's; ``None`` takes the
    first record set's.  When it differs from a record set's, labels are re-encoded from
    the text, and characters it cannot encode raise :class:`DataError` before any reading.
    ``augment``: ``None`` augments when ``training``; ``True`` uses the default config.
    ``max_label_for_width``: a width downsample factor or a callable ``width -> frames``;
    lines whose label needs more CTC frames are dropped and counted in ``stats``.
    ``max_batch_pixels`` caps ``B * H * W`` of a bucketed batch (default: ``batch_size``
    lines of half the maximum width), so wide lines come in smaller batches.
    """
    return mixed_line_dataset(
        _sources(records, split), batch_size=batch_size, geometry=geometry, charset=charset,
        training=training, augment=augment, shuffle_buffer=shuffle_buffer, seed=seed, repeat=repeat,
        bucket_by_width=bucket_by_width, drop_remainder=drop_remainder, with_meta=with_meta,
        max_label_for_width=max_label_for_width, max_batch_pixels=max_batch_pixels, stats=stats)


def mixed_line_dataset(sources: Sequence[LineSource], *, batch_size: int,
                       geometry: LineGeometry = DEFAULT_LINE_GEOMETRY, charset: Charset | None = None,
                       training: bool = False, augment: bool | AugmentConfig | None = None,
                       shuffle_buffer: int = 2048, seed: int | None = None, repeat: bool = False,
                       bucket_by_width: bool = True, drop_remainder: bool = False,
                       with_meta: bool = False, max_label_for_width: MaxLabelFn = None,
                       max_batch_pixels: int | None = None, stats: LineStats | None = None):
    """Lines of several ``(records, split, weight)`` sources, sampled by weight, then batched.

    With ``repeat=True`` every source repeats and the weights are the mixing proportions
    (e.g. ``[(synth, "train", 0.7), (gw, "train", 0.3)]``); without it every line of every
    source is read once and the weights only set the interleaving.
    """
    tf = _tf()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    srcs = []
    for item in sources:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise DataError(f"a mixture source must be (records, split, weight), got {item!r}")
        srcs.append((_record_set(item[0]), str(item[1]), float(item[2])))
    if not srcs:
        raise DataError("mixed_line_dataset: no sources given")
    for rs, s, w in srcs:
        if w < 0:
            raise DataError(f"{rs.path}: negative mixing weight {w}")
        rs.files("lines", s)  # a clear error for a missing split, before building anything
    model_cs = charset or srcs[0][0].charset
    for rs, _, _ in srcs:
        if rs.charset.chars != model_cs.chars:
            check_charset(rs.charset, model_cs, str(rs.path))
    if augment is None:
        augment = training
    aug_cfg = AugmentConfig() if augment is True else (augment or None)
    deterministic = seed is not None or not training
    base = _seed_or_random(seed)
    frames_fn = _frames_fn(max_label_for_width)
    stats = stats or LineStats()
    parts = [
        _line_examples(rs, s, geometry=geometry, model_cs=model_cs, training=training, augment=aug_cfg,
                       shuffle_buffer=shuffle_buffer, seed=base + 1009 * i, deterministic=deterministic,
                       repeat=repeat, with_meta=with_meta, frames_fn=frames_fn, stats=stats)
        for i, (rs, s, _) in enumerate(srcs)]
    if len(parts) == 1:
        ds = parts[0]
    else:
        total = sum(w for _, _, w in srcs)
        weights = [w / total for _, _, w in srcs] if total > 0 else None
        ds = tf.data.Dataset.sample_from_datasets(parts, weights=weights, seed=base + 7,
                                                  stop_on_empty_dataset=False,
                                                  rerandomize_each_iteration=True)
    ds = _batch_lines(ds, geometry=geometry, batch_size=batch_size, bucket_by_width=bucket_by_width,
                      drop_remainder=drop_remainder, with_meta=with_meta, max_batch_pixels=max_batch_pixels,
                      augment=aug_cfg, seed=base + 11, frames_fn=frames_fn)
    options = tf.data.Options()
    options.deterministic = deterministic
    ds = ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    ds.htr_stats = stats
    return ds


# -- forms ----------------------------------------------------------------------------------------
def form_dataset(records: Records, split: str, *, image_size: tuple[int, int], batch_size: int,
                 training: bool = False, seed: int | None = None, max_lines: int = 64,
                 augment: bool | AugmentConfig | None = None, scale_jitter: tuple[float, float] = (0.8, 1.0),
                 shuffle_buffer: int = 64, repeat: bool = False, with_meta: bool = False):
    """Pages for the layout models: ``(image float32 [B, H, W, 1], targets)``.

    The page is resized keeping its aspect ratio to fit ``image_size = (H, W)`` and padded
    with paper (right and bottom), normalised like lines (ink positive, paper 0).  Targets:
    ``paragraph_box [B, 4]`` xyxy as fractions of the padded image; ``boxes [B, max_lines, 4]``
    line boxes xyxy (``BOX_FORMAT``) in padded-image pixels; ``classes [B, max_lines]`` 0 for
    a text line; both padded with -1 (keras-cv's dense format; classes are float32 as there).
    Lines beyond ``max_lines`` are left out.  When ``training``, the page is also scaled by
    ``scale_jitter`` and placed at a random offset (boxes follow exactly), and ``augment``
    (default: on) adds photometric augmentation, which never moves ink.  ``with_meta`` adds
    the page ``id`` (string ``[B]``) to the targets.
    """
    tf = _tf()
    rs = _record_set(records)
    files = rs.files("forms", split)
    H, W = int(image_size[0]), int(image_size[1])
    if augment is None:
        augment = training
    aug_cfg = AugmentConfig() if augment is True else (augment or None)
    deterministic = seed is not None or not training
    base = _seed_or_random(seed)
    lo, hi = (float(scale_jitter[0]), float(scale_jitter[1])) if training else (1.0, 1.0)

    ds = tf.data.Dataset.from_tensor_slices(files).interleave(tf.data.TFRecordDataset, cycle_length=1)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=base, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    seeds = tf.data.Dataset.random(seed=base + 1, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def load(serialized, elem_seed):
        ex = parse_form(serialized)
        image = tf.io.decode_png(ex["image"], channels=1)
        h = tf.cast(tf.shape(image)[0], tf.float32)
        w = tf.cast(tf.shape(image)[1], tf.float32)
        s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(elem_seed, 3))
        scale = tf.minimum(H / h, W / w) * tf.random.stateless_uniform((), s1, lo, hi)
        nh = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, H)
        nw = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, W)
        sy = tf.cast(nh, tf.float32) / h
        sx = tf.cast(nw, tf.float32) / w
        if training:
            offs = tf.random.stateless_uniform((2,), s2, 0.0, 1.0)
            oy = tf.floor(offs[0] * tf.cast(H - nh, tf.float32))
            ox = tf.floor(offs[1] * tf.cast(W - nw, tf.float32))
        else:
            oy = ox = tf.constant(0.0)
        small = tf.image.resize(tf.cast(image, tf.float32), tf.stack([nh, nw]), method="area")
        small = tf.cast(tf.clip_by_value(tf.round(small), 0, 255), tf.uint8)
        page = 255 - tf.image.pad_to_bounding_box(255 - small, tf.cast(oy, tf.int32), tf.cast(ox, tf.int32), H, W)
        if aug_cfg is not None:
            page = augment_page(page, s3, aug_cfg)
        mul = tf.stack([sx, sy, sx, sy])
        add = tf.stack([ox, oy, ox, oy])
        boxes = ex["line_boxes"][:max_lines] * mul + add
        n = tf.shape(boxes)[0]
        boxes = tf.pad(boxes, [[0, max_lines - n], [0, 0]], constant_values=-1.0)
        classes = tf.pad(tf.zeros([n], tf.float32), [[0, max_lines - n]], constant_values=-1.0)
        para = (ex["paragraph_box"] * mul + add) / tf.constant([W, H, W, H], tf.float32)
        targets = {"paragraph_box": para, "boxes": tf.ensure_shape(boxes, [max_lines, 4]),
                   "classes": tf.ensure_shape(classes, [max_lines])}
        if with_meta:
            targets["id"] = ex["id"]
        return tf.ensure_shape(tf_normalize(page), [H, W, 1]), targets

    ds = ds.map(_plain(load), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

