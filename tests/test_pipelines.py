"""tf.data pipelines: the recogniser's batch contract, bucketing, determinism, charsets,
mixing, the CTC length filter and the form (layout) pipeline."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from conftest import random_sentence, render_text_line
from htr_tf.charset import BLANK_INDEX, IAM_CHARACTERS, Charset
from htr_tf.errors import DataError
from htr_tf.geometry import LineGeometry

tf = pytest.importorskip("tensorflow")

from htr_tf.data.pipelines import (BOX_FORMAT, LineStats, form_dataset, line_dataset,  # noqa: E402
                                   mixed_line_dataset, width_buckets)

GEOM = LineGeometry(height=32, max_width=1024, min_width=16, width_multiple=8)


def _records(tmp_path: Path, name: str, n: int, prefix: str, seed: int = 0, short_and_long: bool = False) -> Path:
    """A line record set whose ids start with ``prefix``."""
    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.fileio import encode_png

    cs = Charset()
    rng = random.Random(seed)
    with RecordSetWriter(tmp_path / name, source="test", charset=cs, per_shard=16) as w:
        for i in range(n):
            text = random_sentence(rng, 1, 2) if short_and_long and i % 2 else random_sentence(rng, 5, 9)
            img = render_text_line(text, height=32, seed=i)
            w.add_line("train", LineExample(id=f"{prefix}{i:03d}", image_png=encode_png(img), height=32,
                                            width=img.shape[1], text=text, ids=cs.encode(text)))
    return tmp_path / name


def _all(ds):
    return [(jax_free(x), y.numpy()) for x, y in ds]


def jax_free(x: dict) -> dict:
    return {k: v.numpy() for k, v in x.items()}


def test_batches_follow_the_contract(tiny_line_records):
    cs = Charset()
    ds = line_dataset(tiny_line_records, "train", batch_size=8, geometry=GEOM, bucket_by_width=False,
                      with_meta=True)
    n = 0
    for x, y in ds:
        img, w = x["image"].numpy(), x["width"].numpy()
        assert x["image"].dtype == tf.float32 and x["width"].dtype == tf.int32 and y.dtype == tf.int32
        assert img.ndim == 4 and img.shape[1] == 32 and img.shape[3] == 1
        assert img.shape[2] % 8 == 0 and img.shape[2] >= w.max() and img.shape[2] - w.max() < 8
        assert 0.0 <= img.min() and img.max() <= 1.0
        for i in range(len(w)):
            assert img[i, :, w[i]:].max(initial=0.0) == 0.0  # padding is blank paper
            assert img[i, :, : w[i]].max() > 0.5  # ink is positive
            text = x["text"].numpy()[i].decode()
            ids = y.numpy()[i]
            n_ids = int((ids != BLANK_INDEX).sum())
            assert list(ids[:n_ids]) == cs.encode(text) and (ids[n_ids:] == BLANK_INDEX).all()
        n += len(w)
    assert n == 32


def test_true_widths_match_the_geometry(tiny_line_records):
    """Training sees each line as the numpy path (pages, TFLite, the client) resizes it,
    blank margins trimmed."""
    from htr_tf.data.records import RecordSet
    from htr_tf.fileio import decode_image
    from htr_tf.geometry import resize_line

    expect = {ex["id"]: resize_line(np.asarray(decode_image(ex["image"])).squeeze(), GEOM).shape[1]
              for ex in RecordSet(tiny_line_records).iter_lines("test")}
    got = {}
    for x, _ in line_dataset(tiny_line_records, "test", batch_size=4, geometry=GEOM, with_meta=True):
        got.update(zip([s.decode() for s in x["id"].numpy()], x["width"].numpy().tolist()))
    assert got == expect


def test_augmented_lines_are_trimmed_first(tmp_path):
    """A loosely cut line and the same line cut tight reach the augmentation alike."""
    from htr_tf.data.augment import AugmentConfig
    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.fileio import encode_png

    cs, text = Charset(), "a loose crop"
    tight = render_text_line(text, height=32, seed=3)
    loose = np.pad(tight, ((40, 40), (60, 60)), constant_values=int(np.percentile(tight, 90)))
    with RecordSetWriter(tmp_path / "loose", source="test", charset=cs) as w:
        for i, img in enumerate((tight, loose)):
            w.add_line("train", LineExample(id=f"l{i}", image_png=encode_png(img), height=img.shape[0],
                                            width=img.shape[1], text=text, ids=cs.encode(text)))
    (x, _), = _all(line_dataset(tmp_path / "loose", "train", batch_size=2, geometry=GEOM,
                                augment=AugmentConfig.off(), bucket_by_width=False))
    assert x["width"][0] == x["width"][1] > GEOM.target_width(*loose.shape)  # untrimmed: narrower
    assert np.abs(x["image"][0] - x["image"][1]).max() < 0.05


def test_augmented_lines_are_levelled_first_when_the_geometry_says(tmp_path):
    """With ``deskew`` a line written at a slant reaches the augmentation levelled, as it is read."""
    import dataclasses

    from htr_tf.data.augment import AugmentConfig
    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.geometry import shear_columns

    cs, text = Charset(), "a slanted line of words"
    level = render_text_line(text, height=32, seed=5)
    slanted = shear_columns(level, -0.06)  # runs down to the right at 0.06
    with RecordSetWriter(tmp_path / "slant", source="test", charset=cs) as w:
        for i, img in enumerate((level, slanted)):
            w.add_line("train", LineExample(id=f"l{i}", image_png=encode_png(img), height=img.shape[0],
                                            width=img.shape[1], text=text, ids=cs.encode(text)))
    widths = {}
    for deskew in (False, True):
        (x, _), = _all(line_dataset(tmp_path / "slant", "train", batch_size=2,
                                    geometry=dataclasses.replace(GEOM, deskew=deskew),
                                    augment=AugmentConfig.off(), bucket_by_width=False))
        widths[deskew] = np.asarray(x["width"]).tolist()
    assert widths[True][0] == widths[False][0]  # the level line is read as before
    assert widths[False][1] < 0.8 * widths[False][0]  # slanted: a taller box, squeezed narrower
    assert abs(widths[True][1] - widths[True][0]) <= 0.1 * widths[True][0]  # levelled: about as wide as level


def _padding_share(ds) -> float:
    padded = true = 0
    for x, _ in ds:
        padded += int(np.prod(x["image"].shape[:3]))
        true += int(x["width"].numpy().sum()) * int(x["image"].shape[1])
    return 1 - true / padded


def test_bucketing_by_width_reduces_padding(tmp_path):
    rs = _records(tmp_path, "mixed", 64, "m", short_and_long=True)
    flat = _padding_share(line_dataset(rs, "train", batch_size=8, geometry=GEOM, bucket_by_width=False))
    bucketed = _padding_share(line_dataset(rs, "train", batch_size=8, geometry=GEOM, bucket_by_width=True))
    assert bucketed < flat / 3 and bucketed < 0.2
    assert width_buckets(GEOM)[0] == 16 and all(b % 8 == 0 for b in width_buckets(GEOM))


def test_padded_area_per_batch_is_capped(tmp_path):
    rs = _records(tmp_path, "long", 16, "l")
    cap = 32 * 256 * 2
    for x, _ in line_dataset(rs, "train", batch_size=8, geometry=GEOM, max_batch_pixels=cap):
        widest_bucket = min(b for b in width_buckets(GEOM) + [GEOM.max_width] if b >= x["width"].numpy().max())
        assert x["image"].shape[0] * 32 * widest_bucket <= cap or x["image"].shape[0] == 1


def test_seeded_training_pipeline_is_deterministic(tiny_line_records):
    def run(seed, augment=True):
        ds = line_dataset(tiny_line_records, "train", batch_size=8, geometry=GEOM, training=True,
                          seed=seed, with_meta=True, shuffle_buffer=64, augment=augment)
        return _all(ds.take(2))

    a, b = run(7), run(7)  # shuffling and augmentation
    assert len(a) == 2
    for (xa, ya), (xb, yb) in zip(a, b):
        assert np.array_equal(xa["image"], xb["image"]) and np.array_equal(ya, yb)
        assert list(xa["id"]) == list(xb["id"])
    c, d = run(7, augment=False), run(8, augment=False)
    assert [list(x["id"]) for x, _ in c] != [list(x["id"]) for x, _ in d]


def test_augmentation_changes_images_but_not_labels(tiny_line_records):
    base = dict(batch_size=32, geometry=GEOM, bucket_by_width=False, with_meta=True, seed=1)
    (xa, ya), = _all(line_dataset(tiny_line_records, "train", augment=False, **base))
    (xb, yb), = _all(line_dataset(tiny_line_records, "train", augment=True, **base))
    assert list(xa["id"]) == list(xb["id"]) and np.array_equal(ya, yb)
    assert xb["image"].shape[1] == 32 and xb["image"].shape[2] % 8 == 0
    for i in range(32):
        assert xb["image"][i, :, xb["width"][i]:].max() == 0.0
    assert not np.array_equal(xa["width"], xb["width"])
    # ink stays ink: the mean ink per line changes by a bounded factor
    ink_a = xa["image"].sum(axis=(1, 2, 3)) / xa["width"]
    ink_b = xb["image"].sum(axis=(1, 2, 3)) / xb["width"]
    assert (ink_b > 0.3 * ink_a).all()


def test_a_different_model_charset_reencodes_labels(tiny_line_records):
    model = Charset(IAM_CHARACTERS[::-1] + "é")  # same characters, other ids
    ds = line_dataset(tiny_line_records, "test", batch_size=8, geometry=GEOM, charset=model, with_meta=True)
    n = 0
    for x, y in ds:
        for text, ids in zip(x["text"].numpy(), y.numpy()):
            assert model.decode(ids) == text.decode() and list(ids[ids > 0]) == model.encode(text.decode())
            n += 1
    assert n == 8


def test_characters_missing_from_the_model_charset_fail_up_front(tiny_line_records):
    small = Charset("abcdefghijklmnopqrstuvwxyz ", replacement="")
    with pytest.raises(DataError, match="not in the model charset.*ABC"):
        line_dataset(tiny_line_records, "train", batch_size=4, charset=small)


def test_missing_split_is_a_clear_error(tiny_line_records):
    with pytest.raises(DataError, match="no lines for split 'nope'"):
        line_dataset(tiny_line_records, "nope", batch_size=4)


def test_two_record_sets_mix(tmp_path):
    a = _records(tmp_path, "a", 24, "a")
    b = _records(tmp_path, "b", 8, "b", seed=1)

    def ids(ds, n_batches=None):
        out = []
        for x, _ in (ds if n_batches is None else ds.take(n_batches)):
            out += [s.decode()[0] for s in x["id"].numpy()]
        return out

    once = ids(line_dataset([(a, "train", 1.0), (b, "train", 1.0)], None, batch_size=8, geometry=GEOM,
                            with_meta=True, seed=0))
    assert sorted(once) == ["a"] * 24 + ["b"] * 8
    both = ids(line_dataset([a, b], "train", batch_size=8, geometry=GEOM, with_meta=True))
    assert len(both) == 32
    mixed = ids(mixed_line_dataset([(a, "train", 0.25), (b, "train", 0.75)], batch_size=8, geometry=GEOM,
                                   training=True, augment=False, repeat=True, seed=3, with_meta=True), 25)
    share_b = mixed.count("b") / len(mixed)
    assert 0.6 < share_b < 0.9


def test_lines_too_long_for_their_width_are_dropped_and_counted(tiny_line_records):
    stats = LineStats()
    ds = line_dataset(tiny_line_records, "train", batch_size=8, geometry=GEOM, max_label_for_width=16,
                      stats=stats)
    kept = 0
    for x, y in ds:
        frames = x["width"].numpy() // 16
        lengths = (y.numpy() != 0).sum(axis=1)
        assert (lengths <= frames).all()
        kept += len(frames)
    assert stats.as_dict()["seen"] == 32 and stats.as_dict()["too_long"] == 32 - kept > 0
    assert ds.htr_stats is stats
    # a callable works too, and augmentation never makes a kept line impossible
    stats2 = LineStats()
    ds = line_dataset(tiny_line_records, "train", batch_size=8, geometry=GEOM, training=True, seed=0,
                      max_label_for_width=lambda w: w // 16, stats=stats2)
    for x, y in ds:
        assert ((y.numpy() != 0).sum(axis=1) <= x["width"].numpy() // 16).all()
    assert stats2.as_dict()["too_long"] == 32 - kept


# -- forms ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def form_records(tmp_path_factory) -> Path:
    """Two pages with dark line bars at known boxes."""
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png

    out = tmp_path_factory.mktemp("forms") / "forms"
    with RecordSetWriter(out, source="test", charset=Charset()) as w:
        for k, (H, W) in enumerate([(400, 300), (300, 500)]):
            page = np.full((H, W), 230, np.uint8)
            boxes = np.array([[40, 60 + 50 * i, W - 40, 90 + 50 * i] for i in range(3 + k)], np.float32)
            for b in boxes.astype(int):
                page[b[1]:b[3], b[0]:b[2]] = 10
            w.add_form("train", FormExample(
                id=f"p{k}", image_png=encode_png(page), height=H, width=W,
                paragraph_box=[40, 60, W - 40, boxes[-1, 3]], line_boxes=boxes,
                line_ids=[f"p{k}-{i}" for i in range(len(boxes))], line_texts=["x"] * len(boxes)))
    return out


@pytest.mark.parametrize("training", [False, True])
def test_form_boxes_line_up_with_the_resized_page(form_records, training):
    ds = form_dataset(form_records, "train", image_size=(128, 160), batch_size=2, training=training,
                      seed=0, max_lines=8)
    assert BOX_FORMAT == "xyxy"
    (img, t), = list(ds)
    img, boxes, classes, para = img.numpy(), t["boxes"].numpy(), t["classes"].numpy(), t["paragraph_box"].numpy()
    assert img.shape == (2, 128, 160, 1) and img.dtype == np.float32
    assert boxes.shape == (2, 8, 4) and classes.shape == (2, 8) and para.shape == (2, 4)
    for i, n in enumerate([3, 4]):
        assert (classes[i, :n] == 0).all() and (classes[i, n:] == -1).all() and (boxes[i, n:] == -1).all()
        for b in boxes[i, :n]:
            x0, y0, x1, y1 = b
            inner = img[i, int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1, 0]
            above = img[i, max(int(y0) - 3, 0), int(x0) + 1:int(x1) - 1, 0]
            # ink fills every box, paper lies just above it
            assert inner.size and inner.min() > 0.6 and above.max() < 0.4
        assert 0.0 <= para[i].min() and para[i].max() <= 1.0
        assert np.allclose(para[i, [0, 1]] * [160, 128], boxes[i, 0, :2], atol=1e-3)
    if not training:  # the whole page, aspect kept, top-left aligned, rest is paper
        assert img[0, :, 97:, 0].max() < 0.01 and boxes[0, 0, 0] == pytest.approx(40 * 128 / 400)


def test_form_lines_beyond_max_lines_are_cut(form_records):
    (_, t), = list(form_dataset(form_records, "train", image_size=(64, 64), batch_size=2, max_lines=2))
    assert t["boxes"].shape == (2, 2, 4) and (t["classes"].numpy() == 0).all()
