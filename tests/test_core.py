"""Charset, geometry, config, atomic I/O, records and the CLI skeleton."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from htr_tf.charset import BLANK_INDEX, Charset, UnknownCharacterError
from htr_tf.config import Config
from htr_tf.errors import ConfigError, DataError
from htr_tf.fileio import atomic_path, decode_image, encode_png, read_image
from htr_tf.geometry import (LineGeometry, box_iou, connected_groups, ink_extent, resize_line, trim_margins, xywh_to_xyxy,
                             xyxy_to_xywh)
from htr_tf.recognize import line_batch, model_input


def test_default_charset_is_the_originals_80_classes():
    cs = Charset()
    assert len(cs) == 79 and cs.num_classes == 80
    assert BLANK_INDEX == 0 and 0 not in cs.encode(cs.chars)
    assert cs.decode(cs.encode("We can't go, said Jones & Co.")) == "We can't go, said Jones & Co."


def test_unknown_characters_policy_is_explicit_and_counted():
    cs = Charset()
    assert cs.unknown("naïve £5 é") == {"ï": 1, "é": 1}  # £ folds to L
    with pytest.raises(UnknownCharacterError, match="U\\+00EF"):
        cs.encode("naïve")
    assert cs.decode(cs.encode("naïve", "drop")) == "nave"
    assert cs.decode(cs.encode("naïve", "replace")) == "na#ve"
    assert cs.normalize("\u201cso\u201d  \u2014 it\u2019s") == "\"so\" - it's"


def test_charset_round_trips_and_extends():
    cs = Charset().extended("éü")
    assert Charset.from_json(cs.to_json()) == cs
    assert cs.encode("é") == [80] and cs.num_classes == 82
    assert cs.ctc_collapse([0, 5, 5, 0, 5, 7, 7, 0]) == [5, 5, 7]
    with pytest.raises(ValueError):
        Charset("aa")


def test_line_geometry_keeps_aspect_ratio_and_pads():
    g = LineGeometry(height=32, max_width=400, width_multiple=8, trim=False)
    img = np.full((64, 300), 255, np.uint8)
    img[20:40, 10:290] = 0
    r = resize_line(img, g)
    assert r.shape == (32, 150)
    images, w = line_batch([img, img[:, :100]], g)
    assert images.shape == (2, 32, 152) and images.dtype == np.uint8 and list(w) == [150, 50]
    assert images[1, :, 50:].min() == 255  # padded with paper
    x = model_input(images, w)
    assert x.shape == (2, 32, 152, 1)
    assert x[1, :, 50:].max() == 0.0 and x.max() <= 1.0  # padding is blank paper
    assert g.target_width(10, 100000) == 400  # only over-long lines are squashed


def test_tf_and_numpy_resize_agree():
    import tensorflow as tf

    from htr_tf.geometry import tf_resize_line

    g = LineGeometry(height=32)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 333), dtype=np.uint8)
    a = resize_line(img, g).astype(np.float32)
    b, w = tf_resize_line(tf.constant(img[:, :, None]), g)
    assert int(w) == a.shape[1]
    assert np.abs(a - b.numpy()[:, :, 0]).mean() < 2.0


def _line_with_margins(seed: int, pad_y: int, pad_x: int) -> np.ndarray:
    """A noisy paper crop with a band of strokes at its centre and blank margins around it."""
    rng = np.random.default_rng(seed)
    h, w = 40 + 2 * pad_y, 300 + 2 * pad_x
    img = np.clip(rng.normal(225, 6, (h, w)), 0, 255).astype(np.uint8)
    for x in range(pad_x, pad_x + 300, 7):
        top = pad_y + int(rng.integers(0, 12))
        img[top:pad_y + 40 - int(rng.integers(0, 12)), x:x + 2] = rng.integers(20, 90)
    return img


def test_blank_margins_are_trimmed_to_a_share_of_the_ink_height():
    g = LineGeometry(height=32)  # margins 0.05 / 0.2 of the ink height by default
    img = _line_with_margins(1, pad_y=60, pad_x=200)
    y0, y1, x0, x1 = ink_extent(img)
    assert (y0, y1, x0) == (60, 100, 200) and x1 <= 500
    t = trim_margins(img, g)
    assert t.shape == (40 + 2 * 2, x1 - x0 + 2 * 8)  # ceil(0.05 * 40) and ceil(0.2 * 40)
    thr = 150
    assert (t < thr).sum() == (img < thr).sum()  # no ink is cut
    # a loose crop reads like the tight one: same resize of the same ink
    assert np.array_equal(resize_line(img, g), resize_line(trim_margins(_line_with_margins(1, 60, 200), g), g))
    # nothing to trim: blank or flat crops, one dark speck, trimming off
    blank = np.full((50, 80), 250, np.uint8)
    speck = blank.copy()
    speck[10, 10] = 0
    for same in (blank, np.full((50, 80), 30, np.uint8), speck):
        assert ink_extent(same) is None and trim_margins(same, g) is same
    assert trim_margins(img, LineGeometry(trim=False)) is img
    # the bundle's geometry dict carries the rule; an older dict without it trims by default
    d = LineGeometry(margin_y=0.1, trim=False).to_dict()
    assert LineGeometry.from_dict(json.loads(json.dumps(d))) == LineGeometry(margin_y=0.1, trim=False)
    assert LineGeometry.from_dict({"height": 48}).trim


def test_line_images_are_read_trimmed_and_framed_crops_as_they_are():
    from htr_tf.recognize import batched_log_probs

    class Seen:
        geometry, width_downsample, charset, decoding = LineGeometry(height=32), 8, Charset(), {}

        def log_probs(self, images, widths):
            self.images = images
            return np.zeros((len(widths), images.shape[2] // 8, 80), np.float32), np.asarray(widths) // 8

    m = Seen()
    loose = _line_with_margins(3, 50, 90)
    tight = trim_margins(loose, m.geometry)
    batches = []
    for crops, trim in (([tight], True), ([loose], True), ([loose], False)):
        list(batched_log_probs(m, crops, trim=trim))
        batches.append(m.images)
    assert np.array_equal(batches[0], batches[1]) and batches[2].shape != batches[1].shape


class _WidthModel:
    """A LineModel stub: one frame per 8 columns; a line narrower than 64 columns reads a
    character every frame at p = 0.6 (dense), a wider one every other frame at p = 0.9, or at
    p = 0.3 where its first pixel is black (a worse second reading)."""

    charset, width_downsample, decoding = Charset("ab", replacement=""), 8, {}

    def __init__(self, geometry):
        self.geometry = geometry
        self.calls = []

    def log_probs(self, images, widths):
        self.calls.append(np.asarray(widths).copy())
        T = images.shape[2] // 8
        lp = np.full((len(widths), T, 3), np.log(0.05), np.float32)
        for i, w in enumerate(widths):
            for t in range(T):
                if w < 64:
                    lp[i, t, 1 + t % 2] = np.log(0.6)
                else:
                    lp[i, t, 1 if t % 2 == 0 else 0] = np.log(0.3 if images[i, 0, 0] == 0 else 0.9)
        return lp, np.asarray(widths) // 8


def test_dense_lines_are_read_again_wider_and_the_surer_reading_kept():
    from htr_tf.geometry import stretch_line
    from htr_tf.recognize import reread_dense

    g = LineGeometry(height=8, min_width=8, reread_density=0.5, reread_stretch=2.0)
    m = _WidthModel(g)
    images = np.full((3, 8, 80), 255, np.uint8)
    images[2, 0, 0] = 0
    widths = np.array([40, 80, 48], np.int32)
    lp, ln = reread_dense(m, images, widths, *m.log_probs(images, widths))
    # the narrow lines were read again at twice their width; the wide one was not dense
    np.testing.assert_array_equal(m.calls[1], [80, 96])
    assert list(ln) == [10, 10, 6] and lp.shape[1] == 12
    assert np.isclose(np.exp(lp[0, :10].max(1)), 0.9).all()
    assert np.isclose(np.exp(lp[2, :6].max(1)), 0.6).all()  # its second reading was less sure
    assert stretch_line(images[0, :, :40], g).shape == (8, 80)
    # off: nothing read twice
    off = _WidthModel(dataclasses.replace(g, reread_density=0.0))
    lp0, ln0 = off.log_probs(images, widths)
    assert reread_dense(off, images, widths, lp0, ln0)[0] is lp0 and len(off.calls) == 1
    # the rule travels in the geometry's dict
    assert LineGeometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert LineGeometry.from_dict({"height": 48}).reread_density == 0.0


def test_sparse_lines_are_read_again_narrower_and_the_surer_reading_kept():
    from htr_tf.recognize import reread_lines

    # wide lines read a character every other frame (0.5 a frame): sparse below 0.6
    g = LineGeometry(height=8, min_width=8, reread_sparse=0.6, reread_squeeze=0.5)
    m = _WidthModel(g)
    images = np.full((3, 8, 128), 255, np.uint8)
    images[2, 0, 0] = 0
    widths = np.array([40, 112, 128], np.int32)
    lp, ln = reread_lines(m, images, widths, *m.log_probs(images, widths))
    # the wide lines were read again at half their width; the narrow one (dense) was not
    np.testing.assert_array_equal(m.calls[1], [56, 64])
    # the first was surer (0.9 against 0.6, now dense); the second reading of the last was surer
    assert list(ln) == [5, 14, 8] and lp.shape[1] == 16
    assert np.isclose(np.exp(lp[1, :14].max(1)), 0.9).all()
    assert np.isclose(np.exp(lp[2, :8].max(1)), 0.9).all()
    # where a line reads again, the width it was read at follows from its frames
    assert g.read_width(112, 7, 8) == 56 and g.read_width(112, 14, 8) == 112
    assert dataclasses.replace(g, reread_density=0.5).read_width(40, 10, 8) == 56
    assert LineGeometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert LineGeometry.from_dict({"height": 48}).reread_sparse == 0.0


def test_tf_stretch_is_the_numpy_stretch():
    import tensorflow as tf

    from htr_tf.geometry import stretch_line, tf_stretch_lines

    g = LineGeometry(height=16, reread_stretch=1.4)
    rng = np.random.default_rng(3)
    widths = np.array([40, 97, 64], np.int32)
    images = np.full((3, 16, 100), 255, np.uint8)
    for i, w in enumerate(widths):
        images[i, :, :w] = rng.integers(0, 256, (16, w))
    out, w2 = tf_stretch_lines(tf.constant(images), tf.constant(widths), g)
    for i, w in enumerate(widths):
        ref = stretch_line(images[i, :, :w], g)
        assert int(w2[i]) == ref.shape[1] == round(w * 1.4)
        assert np.abs(out.numpy()[i, :, : ref.shape[1]].astype(int) - ref).max() <= 1
        assert (out.numpy()[i, :, ref.shape[1]:] == 255).all()
    # squeezed, each line by its own factor
    factors = np.array([0.7, 0.7, 1.4])
    out, w2 = tf_stretch_lines(tf.constant(images), tf.constant(widths), g, tf.constant(factors))
    for i, (w, f) in enumerate(zip(widths, factors)):
        ref = stretch_line(images[i, :, :w], g, f)
        assert int(w2[i]) == ref.shape[1] == g.stretched_width(w, f)
        assert np.abs(out.numpy()[i, :, : ref.shape[1]].astype(int) - ref).max() <= 1


def test_tf_trim_is_the_numpy_trim():
    import tensorflow as tf

    from htr_tf.geometry import tf_trim_margins

    g = LineGeometry()
    crops = [_line_with_margins(s, pad_y=s * 7 % 50, pad_x=s * 31 % 120) for s in range(6)]
    crops += [np.full((20, 30), 240, np.uint8), np.zeros((5, 7), np.uint8), np.zeros((0, 4), np.uint8)]
    fn = tf.function(lambda x: tf_trim_margins(x, g), input_signature=[tf.TensorSpec([None, None, 1], tf.uint8)])
    for c in crops:
        assert np.array_equal(fn(tf.constant(c[:, :, None])).numpy()[:, :, 0], trim_margins(c, g))


def _skewed_line(seed: int, slope: float, w: int = 600) -> np.ndarray:
    """Paper with a 30-px band of strokes whose middle runs at ``slope`` (dy/dx, + down to the right)."""
    rng = np.random.default_rng(seed)
    h = 60 + int(abs(slope) * w)
    img = np.clip(rng.normal(225, 5, (h, w)), 0, 255).astype(np.uint8)
    for x in range(10, w - 10, 6):
        mid = h / 2 + slope * (x - w / 2)
        top, bottom = int(mid - 15 + rng.integers(0, 6)), int(mid + 15 - rng.integers(0, 6))
        img[top:bottom, x:x + 2] = rng.integers(20, 80)
    return img


def test_skewed_lines_are_levelled_before_reading():
    import math

    from htr_tf.geometry import frame_line, shear_columns, skew_slope

    g = LineGeometry(deskew=True)
    for deg in (3.0, -2.0, 5.5):
        slope = math.tan(math.radians(deg))
        img = _skewed_line(1, slope)
        found = math.degrees(math.atan(skew_slope(trim_margins(img, g))))
        assert abs(found - deg) <= 0.25, (deg, found)
        framed = frame_line(img, g)
        # the band is level: the framed crop is about the band's height, not the slanted box's
        assert framed.shape[0] <= 40 < trim_margins(img, g).shape[0]
        assert (framed < 150).sum() == (img < 150).sum()  # columns move, no ink is lost
        assert skew_slope(framed) == 0.0
    level = _skewed_line(2, 0.0)
    assert skew_slope(trim_margins(level, g)) == 0.0
    assert np.array_equal(frame_line(level, g), trim_margins(level, g))
    # off (the default, and bundles trained before it): trimming only
    assert np.array_equal(frame_line(_skewed_line(1, 0.05), LineGeometry()), trim_margins(_skewed_line(1, 0.05)))
    assert not LineGeometry.from_dict({"height": 64}).deskew
    assert np.array_equal(shear_columns(level, 0.0), level)
    for flat in (np.full((40, 90), 230, np.uint8), np.zeros((6, 50), np.uint8)):
        assert skew_slope(flat) == 0.0


def test_a_slope_that_is_not_the_writings_is_not_applied():
    """A long dark rule across a level line outweighs its strokes: levelling the rule would
    slant the writing and make the crop taller, so the crop is read as trimmed."""
    from htr_tf.geometry import frame_line, level_line, skew_slope

    g = LineGeometry(deskew=True)
    img = _skewed_line(3, 0.0)
    img = np.pad(img, ((40, 40), (0, 0)), constant_values=225)
    for x in range(img.shape[1]):
        y = int(20 + 0.1 * x) % img.shape[0]
        img[y:y + 4, x] = 0
    t = trim_margins(img, g)
    assert skew_slope(t) != 0.0
    assert np.array_equal(frame_line(img, g), t)
    assert level_line(t) is t


def test_tf_frame_is_the_numpy_frame():
    import tensorflow as tf

    from htr_tf.geometry import frame_line, tf_frame_line

    g = LineGeometry(deskew=True)
    crops = [_skewed_line(s, slope) for s, slope in enumerate((0.0, 0.03, -0.05, 0.08, -0.01))]
    crops += [_line_with_margins(4, 20, 60), np.full((20, 30), 240, np.uint8), np.zeros((5, 7), np.uint8),
              np.zeros((0, 4), np.uint8)]
    ruled = np.pad(_skewed_line(3, 0.0), ((40, 40), (0, 0)), constant_values=225)
    for x in range(ruled.shape[1]):
        ruled[int(20 + 0.1 * x) % ruled.shape[0]:int(20 + 0.1 * x) % ruled.shape[0] + 4, x] = 0
    crops.append(ruled)
    fn = tf.function(lambda x: tf_frame_line(x, g), input_signature=[tf.TensorSpec([None, None, 1], tf.uint8)])
    for c in crops:
        assert np.array_equal(fn(tf.constant(c[:, :, None])).numpy()[:, :, 0], frame_line(c, g))


def test_boxes():
    b = np.array([[10, 20, 30, 40]], np.float32)
    assert np.allclose(xyxy_to_xywh(xywh_to_xyxy(b)), b)
    assert np.isclose(box_iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0], 1 / 3)


@dataclasses.dataclass
class _Inner(Config):
    a: int = 1


@dataclasses.dataclass
class _Outer(Config):
    name: str = "x"
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    sizes: tuple = (1, 2)


def test_config_round_trip_and_rejects_unknown_keys(tmp_path):
    c = _Outer(name="y", inner=_Inner(a=5), sizes=(3, 4))
    for suffix in (".json", ".yaml"):
        p = tmp_path / f"c{suffix}"
        c.save(p)
        assert _Outer.load(p) == c
    with pytest.raises(ConfigError, match="unknown key.*'b'.*valid keys"):
        _Outer.from_dict({"inner": {"b": 1}})
    (tmp_path / "bad.yaml").write_text("[1, 2")
    with pytest.raises(ConfigError, match="bad.yaml"):
        _Outer.load(tmp_path / "bad.yaml")


def test_connected_groups_follow_paths():
    adj = np.zeros((5, 5), bool)
    for i, j in ((0, 3), (3, 4), (1, 2)):              # 0-3-4 a path, 1-2 a pair
        adj[i, j] = adj[j, i] = True
    assert connected_groups(adj).tolist() == [0, 1, 1, 0, 0]
    assert connected_groups(np.zeros((0, 0), bool)).tolist() == []


def test_config_extends_another_file(tmp_path):
    """``extends:`` starts from another file: mappings merge key by key, the rest is replaced;
    a missing parent and a cycle are clear errors."""
    (tmp_path / "base.yaml").write_text("name: base\ninner: {a: 2}\nsizes: [5, 6]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../base.yaml\nsizes: [7]\n")
    (tmp_path / "grandchild.json").write_text('{"extends": "sub/child.yaml", "name": "g"}')
    assert _Outer.load(tmp_path / "sub" / "child.yaml") == _Outer(name="base", inner=_Inner(a=2), sizes=(7,))
    assert _Outer.load(tmp_path / "grandchild.json") == _Outer(name="g", inner=_Inner(a=2), sizes=(7,))
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found .extended by .*orphan.yaml"):
        _Outer.load(tmp_path / "orphan.yaml")
    (tmp_path / "x.yaml").write_text("extends: y.yaml\n")
    (tmp_path / "y.yaml").write_text("extends: x.yaml\nname: y\n")
    with pytest.raises(ConfigError, match="cycle"):
        _Outer.load(tmp_path / "x.yaml")
    (tmp_path / "bad-extends.yaml").write_text("extends: [a, b]\n")
    with pytest.raises(ConfigError, match="extends must be a file name"):
        _Outer.load(tmp_path / "bad-extends.yaml")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_read_image_errors_name_the_file(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"not an image")
    with pytest.raises(DataError, match="x.png.*not a readable image"):
        read_image(p)
    good = encode_png(np.zeros((10, 20), np.uint8))
    (tmp_path / "t.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="t.png"):
        read_image(tmp_path / "t.png")
    with pytest.raises(DataError, match="no such file"):
        read_image(tmp_path / "missing.png")
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent -> white paper
    import cv2

    assert decode_image(cv2.imencode(".png", rgba)[1].tobytes()).min() == 255
    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    assert decode_image(cv2.imencode(".png", deep)[1].tobytes()).dtype == np.uint8


def test_record_set_round_trip(tiny_line_records):
    from htr_tf.data.records import RecordSet

    rs = RecordSet(tiny_line_records)
    assert rs.splits("lines") == ["test", "train", "validation"]
    assert rs.count("lines", "train") == 32 and len(rs.files("lines", "train")) == 2
    ex = next(rs.iter_lines("test"))
    assert rs.charset.decode(ex["ids"]) == ex["text"]
    assert decode_image(ex["image"]).shape == (int(ex["height"]), int(ex["width"]))
    with pytest.raises(DataError, match="no lines for split 'nope'"):
        rs.files("lines", "nope")


def test_record_writer_is_atomic(tmp_path):
    from htr_tf.data.records import RecordSet, RecordSetWriter

    from conftest import make_line_records

    out = make_line_records(tmp_path / "rs", {"train": 4})
    with pytest.raises(RuntimeError):
        with RecordSetWriter(out, source="x", charset=Charset()) as w:
            w.skip("reason")
            raise RuntimeError("interrupted")
    assert RecordSet(out).count("lines", "train") == 4  # the old set survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rs"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"] == "test"


def test_cli_help_is_fast_and_does_not_import_tensorflow():
    code = "import sys; from htr_tf.cli import build_parser; build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    r = subprocess.run([sys.executable, "-m", "htr_tf.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for name in ("data", "train", "evaluate", "export", "tflite", "serve", "ocr", "lm", "bench"):
        assert name in r.stdout
