"""TFRecord schemas, sharded atomic writers and the manifest that describes a record set.

A record set is a directory::

    RECORDS/
      manifest.json                      counts, charset, source, splits, skipped reasons
      lines-train-00000-of-00004.tfrecord
      forms-test-00000-of-00001.tfrecord
      ...

It is written into a sibling ``RECORDS.tmp-*`` directory and renamed into place only when
complete, so an interrupted conversion never leaves a half-written set and never destroys
the one that was there; re-running it starts clean.

Schemas (all images are PNG-encoded 8-bit gray, dark ink on light paper; boxes are xyxy
page pixels):

* line: ``id, form_id, writer, source, text, ids (charset ids), image, height, width, err``
* form: ``id, writer, source, image, height, width, paragraph_box[4], line_boxes[N*4],
  line_ids[N], line_texts[N], line_err[N], word_boxes[M*4], word_texts[M], word_line[M]``,
  and, where the ground truth has them, ``line_polygon_xy / line_polygon_len`` and
  ``line_baseline_xy / line_baseline_len`` (every line's points, flat, with each line's point
  count; see :func:`split_points`).  Lines are in reading order.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from htr_tf.charset import Charset
from htr_tf.errors import DataError
from htr_tf.fileio import atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KINDS = ("lines", "forms")


# -- examples -------------------------------------------------------------------------------
@dataclass
class LineExample:
    id: str
    image_png: bytes
    height: int
    width: int
    text: str
    ids: Sequence[int]
    form_id: str = ""
    writer: str = ""
    source: str = ""
    err: bool = False


@dataclass
class FormExample:
    id: str
    image_png: bytes
    height: int
    width: int
    paragraph_box: Sequence[float]
    line_boxes: np.ndarray
    line_ids: Sequence[str]
    line_texts: Sequence[str]
    line_err: Sequence[bool] = ()
    word_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    word_texts: Sequence[str] = ()
    word_line: Sequence[int] = ()
    writer: str = ""
    source: str = ""
    #: Per line, its polygon / baseline as ``[K, 2]`` page pixels (empty: none given).
    line_polygons: Sequence[np.ndarray] = ()
    line_baselines: Sequence[np.ndarray] = ()


def _flat_points(arrays: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, list[int]]:
    """Per-line point arrays -> (flat float32 xy, per-line point counts); none given -> zeros."""
    if not len(arrays):
        return np.zeros(0, np.float32), [0] * n
    pts = [np.asarray(a, np.float32).reshape(-1, 2) for a in arrays]
    if len(pts) != n:
        raise ValueError(f"{len(pts)} point arrays for {n} lines")
    flat = np.concatenate(pts).reshape(-1) if pts else np.zeros(0, np.float32)
    return flat, [len(p) for p in pts]


def split_points(xy: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    """Flat ``xy`` and per-line point counts (a form record's polygons or baselines) -> ``[K, 2]`` arrays."""
    pts = np.asarray(xy, np.float32).reshape(-1, 2)
    ends = np.cumsum(np.asarray(lengths, np.int64))
    return [pts[e - k:e] for k, e in zip(np.asarray(lengths, np.int64), ends)]


def _tf():
    import tensorflow as tf

    return tf


def _bytes(values: Iterable[bytes]):
    tf = _tf()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Iterable[int]):
    tf = _tf()
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values: Iterable[float]):
    tf = _tf()
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def serialize_line(ex: LineExample) -> bytes:
    tf = _tf()
    f = {
        "id": _bytes([ex.id.encode()]),
        "form_id": _bytes([ex.form_id.encode()]),
        "writer": _bytes([ex.writer.encode()]),
        "source": _bytes([ex.source.encode()]),
        "text": _bytes([ex.text.encode("utf-8")]),
        "ids": _ints(ex.ids),
        "image": _bytes([ex.image_png]),
        "height": _ints([ex.height]),
        "width": _ints([ex.width]),
        "err": _ints([int(ex.err)]),
    }
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def serialize_form(ex: FormExample) -> bytes:
    tf = _tf()
    n = len(ex.line_texts)
    line_err = list(ex.line_err) if len(ex.line_err) else [0] * n
    f = {
        "id": _bytes([ex.id.encode()]),
        "writer": _bytes([ex.writer.encode()]),
        "source": _bytes([ex.source.encode()]),
        "image": _bytes([ex.image_png]),
        "height": _ints([ex.height]),
        "width": _ints([ex.width]),
        "paragraph_box": _floats(np.asarray(ex.paragraph_box, np.float32).reshape(4)),
        "line_boxes": _floats(np.asarray(ex.line_boxes, np.float32).reshape(-1)),
        "line_ids": _bytes([s.encode() for s in ex.line_ids]),
        "line_texts": _bytes([s.encode("utf-8") for s in ex.line_texts]),
        "line_err": _ints(line_err),
        "word_boxes": _floats(np.asarray(ex.word_boxes, np.float32).reshape(-1)),
        "word_texts": _bytes([s.encode("utf-8") for s in ex.word_texts]),
        "word_line": _ints(ex.word_line),
    }
    for name, arrays in (("polygon", ex.line_polygons), ("baseline", ex.line_baselines)):
        flat, lens = _flat_points(arrays, n)
        f[f"line_{name}_xy"] = _floats(flat)
        f[f"line_{name}_len"] = _ints(lens)
    return tf.train.Example(features=tf.train.Features(feature=f)).SerializeToString()


def line_feature_spec() -> dict:
    tf = _tf()
    s, i = tf.io.FixedLenFeature([], tf.string), tf.io.FixedLenFeature([], tf.int64)
    return {"id": s, "form_id": s, "writer": s, "source": s, "text": s, "image": s,
            "height": i, "width": i, "err": i, "ids": tf.io.VarLenFeature(tf.int64)}


def form_feature_spec() -> dict:
    tf = _tf()
    s, i = tf.io.FixedLenFeature([], tf.string), tf.io.FixedLenFeature([], tf.int64)
    return {"id": s, "writer": s, "source": s, "image": s, "height": i, "width": i,
            "paragraph_box": tf.io.FixedLenFeature([4], tf.float32),
            "line_boxes": tf.io.VarLenFeature(tf.float32),
            "line_ids": tf.io.VarLenFeature(tf.string),
            "line_texts": tf.io.VarLenFeature(tf.string),
            "line_err": tf.io.VarLenFeature(tf.int64),
            "word_boxes": tf.io.VarLenFeature(tf.float32),
            "word_texts": tf.io.VarLenFeature(tf.string),
            "word_line": tf.io.VarLenFeature(tf.int64),
            "line_polygon_xy": tf.io.VarLenFeature(tf.float32),
            "line_polygon_len": tf.io.VarLenFeature(tf.int64),
            "line_baseline_xy": tf.io.VarLenFeature(tf.float32),
            "line_baseline_len": tf.io.VarLenFeature(tf.int64)}


def parse_line(serialized):
    """Parse one serialized line example into a dict of dense tensors (image still PNG)."""
    tf = _tf()
    ex = tf.io.parse_single_example(serialized, line_feature_spec())
    ex["ids"] = tf.cast(tf.sparse.to_dense(ex["ids"]), tf.int32)
    return ex


def parse_form(serialized):
    """Parse one serialized form example; boxes come back as ``[N, 4]`` float32."""
    tf = _tf()
    ex = tf.io.parse_single_example(serialized, form_feature_spec())
    for k in ("line_boxes", "word_boxes"):
        ex[k] = tf.reshape(tf.sparse.to_dense(ex[k]), [-1, 4])
    for k in ("line_ids", "line_texts", "word_texts"):
        ex[k] = tf.sparse.to_dense(ex[k], default_value=b"")
    for k in ("line_err", "word_line", "line_polygon_xy", "line_polygon_len", "line_baseline_xy",
              "line_baseline_len"):
        ex[k] = tf.sparse.to_dense(ex[k])
    return ex


# -- writing --------------------------------------------------------------------------------
class _ShardWriter:
    """Writes one (kind, split) stream into numbered shards of at most ``per_shard`` examples."""

    def __init__(self, directory: Path, kind: str, split: str, per_shard: int):
        self.dir, self.kind, self.split, self.per_shard = directory, kind, split, per_shard
        self.count = 0
        self._shards: list[Path] = []
        self._writer = None

    def write(self, data: bytes) -> None:
        tf = _tf()
        if self._writer is None or self.count % self.per_shard == 0:
            self._close_current()
            path = self.dir / f"{self.kind}-{self.split}-{len(self._shards):05d}.part"
            self._shards.append(path)
            self._writer = tf.io.TFRecordWriter(str(path))
        self._writer.write(data)
        self.count += 1

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[str]:
        self._close_current()
        n = len(self._shards)
        names = []
        for i, p in enumerate(self._shards):
            name = f"{self.kind}-{self.split}-{i:05d}-of-{n:05d}.tfrecord"
            os.replace(p, self.dir / name)
            names.append(name)
        return names


class RecordSetWriter:
    """Write a whole record set atomically.

    >>> with RecordSetWriter("out", source="synth", charset=Charset()) as w:   # doctest: +SKIP
    ...     w.add_line("train", line_example)
    ...     w.skip("empty text", "a01-000-00")
    """

    def __init__(self, out: str | os.PathLike, source: str, charset: Charset,
                 per_shard: int = 2000, info: dict[str, Any] | None = None):
        self.out = Path(out)
        self.source, self.charset, self.per_shard = source, charset, per_shard
        self.info = dict(info or {})
        self.skipped: Counter = Counter()
        self.skipped_examples: dict[str, list[str]] = {}
        self.unknown_chars: Counter = Counter()
        self._streams: dict[tuple[str, str], _ShardWriter] = {}
        self._tmp: Path | None = None

    def __enter__(self) -> "RecordSetWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(f"{self.out.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._tmp = self.out.parent / f"{self.out.name}.tmp-{uuid.uuid4().hex[:8]}"
        self._tmp.mkdir()
        return self

    def _stream(self, kind: str, split: str) -> _ShardWriter:
        key = (kind, split)
        if key not in self._streams:
            assert self._tmp is not None, "use RecordSetWriter as a context manager"
            self._streams[key] = _ShardWriter(self._tmp, kind, split, self.per_shard)
        return self._streams[key]

    def add_line(self, split: str, ex: LineExample) -> None:
        self._stream("lines", split).write(serialize_line(ex))

    def add_form(self, split: str, ex: FormExample) -> None:
        self._stream("forms", split).write(serialize_form(ex))

    def add_serialized(self, kind: str, split: str, data: bytes) -> None:
        """Write an already serialized ``lines`` or ``forms`` record (copying a set)."""
        if kind not in KINDS:
            raise DataError(f"unknown record kind {kind!r}; valid: {list(KINDS)}")
        self._stream(kind, split).write(data)

    def skip(self, reason: str, item: str = "", n: int = 1) -> None:
        """Account for an input that was not written, with its reason."""
        self.skipped[reason] += n
        if item:
            examples = self.skipped_examples.setdefault(reason, [])
            if len(examples) < 20:
                examples.append(item)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (kind, split), s in self._streams.items():
            out.setdefault(kind, {})[split] = s.count
        return out

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "charset": self.charset.to_dict(),
            "lines": {}, "forms": {},
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": self.skipped_examples,
            "unknown_chars": dict(self.unknown_chars.most_common()),
            "info": self.info,
        }
        for (kind, split), s in sorted(self._streams.items()):
            manifest[kind][split] = {"count": s.count, "files": s.finish()}
        atomic_write_text(self._tmp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
        old = None
        if self.out.exists():
            old = self.out.parent / f"{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out, old)
        os.replace(self._tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------
class RecordSet:
    """A record set on disk, checked against its manifest."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise DataError(f"{self.path}: not a record set (no {MANIFEST}; run `htr data ...-prepare` first)")
        try:
            self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{mpath}: corrupt manifest: {e}") from None
        v = self.manifest.get("format_version")
        if v != FORMAT_VERSION:
            raise DataError(f"{mpath}: record format version {v}, this htr-tf reads {FORMAT_VERSION}")
        for kind in KINDS:
            for split, entry in self.manifest.get(kind, {}).items():
                for f in entry["files"]:
                    if not (self.path / f).exists():
                        raise DataError(f"{self.path}: shard {f} listed in the manifest is missing")

    @property
    def charset(self) -> Charset:
        return Charset.from_dict(self.manifest["charset"])

    @property
    def source(self) -> str:
        return self.manifest.get("source", "")

    def splits(self, kind: str = "lines") -> list[str]:
        return sorted(self.manifest.get(kind, {}))

    def count(self, kind: str, split: str) -> int:
        return int(self.manifest.get(kind, {}).get(split, {}).get("count", 0))

    def files(self, kind: str, split: str) -> list[str]:
        if kind not in KINDS:
            raise DataError(f"unknown record kind {kind!r}; valid: {list(KINDS)}")
        entry = self.manifest.get(kind, {}).get(split)
        if entry is None:
            raise DataError(f"{self.path}: no {kind} for split {split!r}; available: {self.splits(kind)}")
        return [str(self.path / f) for f in entry["files"]]

    def iter_lines(self, split: str) -> Iterator[dict]:
        """Eagerly iterate line examples as python values (for evaluation and tools)."""
        tf = _tf()
        ds = tf.data.TFRecordDataset(self.files("lines", split)).map(parse_line)
        for ex in ds.as_numpy_iterator():
            yield {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in ex.items() if k != "image"} | {"image": ex["image"]}

    def iter_forms(self, split: str) -> Iterator[dict]:
        tf = _tf()
        ds = tf.data.TFRecordDataset(self.files("forms", split)).map(parse_form)
        for ex in ds.as_numpy_iterator():
            out = dict(ex)
            for k in ("id", "writer", "source"):
                out[k] = ex[k].decode("utf-8")
            for k in ("line_ids", "line_texts", "word_texts"):
                out[k] = [b.decode("utf-8") for b in ex[k]]
            yield out
