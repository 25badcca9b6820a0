"""The page pipeline and its outputs: a scripted backend for exact checks, the bundled models end to end."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import replace
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import render_note
from htr_tf.charset import DEFAULT_CHARSET
from htr_tf.errors import ConfigError, DataError
from htr_tf.geometry import LineGeometry
from htr_tf.outputs import PAGE_NS, draw_overlay, render, to_page_xml
from htr_tf.pipeline import Pipeline, PipelineOptions, make_backend
from htr_tf.recognize import line_batch

WORDS = ["the", "Sir", "of", "1755"]


class ScriptedBackend:
    """A backend with fixed layout whose 'recogniser' spells a line's words from its width.

    Line ``k`` (0-based, reading order) is ``k + 1`` words long, each ``W`` wide, so the
    recognised text tells which crop reached which result, whatever the batching order.
    Tests that count on crop widths cut lines as boxes (``line_crop="box"``): the default
    polygon crops follow the ink, and these pages have none.
    """

    name = "scripted"

    def __init__(self, boxes: np.ndarray, area: tuple[float, float, float, float]) -> None:
        self.charset = DEFAULT_CHARSET
        self.geometry = LineGeometry()
        self.width_downsample = 8
        self.boxes = np.asarray(boxes, np.float32)
        self.area = np.asarray(area, np.float32)
        self.calls: list[tuple[int, int]] = []

    def find_area(self, page):
        return self.area, 0.9

    def find_lines(self, page, region):
        if not np.allclose(region, self.area):   # a band outside the area searched for print: none there
            assert region[3] <= self.area[1] or region[1] >= self.area[3] or region[2] <= self.area[0] \
                or region[0] >= self.area[2]
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return self.boxes, np.linspace(0.9, 0.6, len(self.boxes)).astype(np.float32)

    def log_probs(self, images, widths):
        assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1] == self.geometry.height
        assert (images[:, :, images.shape[2] - 1] == 255).all() or widths.max() == images.shape[2]
        self.calls.append(tuple(images.shape[:1]) + (images.shape[2],))
        B, T, C = len(widths), images.shape[2] // 8, self.charset.num_classes
        lp = np.full((B, T, C), np.log(1e-4), np.float32)
        lp[:, :, 0] = np.log(0.99)
        lengths = np.asarray(widths) // 8
        for b in range(B):
            n_words = int(round(lengths[b] / 40))           # 40 frames per word (boxes are 320 px)
            text = " ".join(WORDS[i % len(WORDS)] for i in range(n_words))
            for t, ch in enumerate(text):
                lp[b, 2 * t + 1, :] = np.log(1e-4)
                lp[b, 2 * t + 1, self.charset.chars.index(ch) + 1] = np.log(0.9)
        return lp, lengths.astype(np.int32)


def _page_and_boxes(n_lines: int = 3):
    page = np.full((900, 1400), 250, np.uint8)
    boxes = []
    for k in range(n_lines):
        y = 100 + 120 * k
        w = 320 * (k + 1)
        # line height 64 so a crop of width w gives w / 8 frames (no resize)
        page[y + 20: y + 40, 60: 60 + w] = 30
        boxes.append((60, y, 60 + w, y + 64))
    return page, np.array(boxes, np.float32)


def test_line_batch_pads_with_paper_to_the_width_multiple():
    g = LineGeometry()
    crops = [np.zeros((64, 100), np.uint8), np.zeros((32, 10), np.uint8)]
    images, widths = line_batch(crops, g)
    assert images.dtype == np.uint8 and images.shape == (2, 64, 104)
    assert widths.tolist() == [100, g.min_width]
    assert (images[0, :, 100:] == 255).all() and (images[0, :, :100] == 0).all()
    assert (images[1, :, g.min_width:] == 255).all()


def test_isolate_line_paints_out_only_the_neighbours_ink():
    from htr_tf.pipeline import isolate_line

    crop = np.full((60, 200), 240, np.uint8)
    crop[0:10, 20:30] = 10        # a descender of the line above: touches the top, misses the core
    crop[50:60, 60:70] = 10       # an ascender of the line below
    crop[5:40, 100:104] = 10      # own ascender: touches the top but reaches the core (18..42)
    crop[8:12, 150:154] = 10      # own i-dot: above the core, not touching an edge
    crop[20:40, 120:180] = 10     # own letters
    out = isolate_line(crop)
    assert (out[0:10, 20:30] == 240).all() and (out[50:60, 60:70] == 240).all()
    keep = np.ones_like(crop, bool)
    keep[0:10, 20:30] = keep[50:60, 60:70] = False
    assert (out[keep] == crop[keep]).all()
    blank = np.full((30, 40), 255, np.uint8)
    assert isolate_line(blank) is blank


def test_cut_apart_keeps_the_lines_own_ink_and_drops_only_the_neighbours():
    from htr_tf.crop import cut_apart

    page = np.full((200, 300), 235, np.uint8)
    page[60:90, 40:200] = 20          # the line's letters
    page[92:98, 205:210] = 20         # its comma, below and right of its outline
    page[30:62, 60:64] = 20           # a flourish rising far above its outline (joined to the letters)
    page[110:140, 40:200] = 20        # the next line's letters
    page[96:112, 120:124] = 20        # the next line's ascender, reaching into this line's box
    own = np.array([[40, 58], [200, 58], [200, 91], [40, 91]], np.float32)
    below = np.array([[40, 108], [200, 108], [200, 141], [40, 141]], np.float32)
    crop, box = cut_apart(page, (38, 50, 212, 102), own, [below], pad_x=0, pad=2, dilate=1)
    x0, y0 = int(box[0]), int(box[1])
    assert box[0] <= 38 and box[2] >= 212 and box[3] >= 102
    at = lambda y, x: crop[y - y0, x - x0]
    assert at(95, 207) == 20 and at(52, 62) == 20 and at(70, 100) == 20   # comma, flourish, letters kept
    assert at(100, 122) == 235                                           # the neighbour's ascender is gone
    alone, _ = cut_apart(page, (38, 50, 212, 102), own, [], pad_x=0, pad=2)
    assert at(100, 122) == 235 and alone[100 - y0, 122 - x0] == 20        # with no neighbours nothing is painted
    with pytest.raises(ValueError, match="outside"):
        cut_apart(page, (400, 400, 500, 450), np.array([[400, 400], [500, 400], [500, 450]], np.float32), [])


def test_lines_read_with_low_confidence_are_left_out_when_asked():
    from htr_tf.decode import GreedyDecoder

    class Doubtful(GreedyDecoder):
        """Greedy, but the two-word line is read with confidence 0.2."""

        def decode(self, log_probs, lengths, charset):
            return [replace(d, confidence=0.2) if len(d.text.split()) == 2 else d
                    for d in super().decode(log_probs, lengths, charset)]

    page, boxes = _page_and_boxes(3)
    opts = dict(line_pad_x=0, line_pad_y=0, line_crop="box")
    kept = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), Doubtful(),
                    PipelineOptions(min_relative_confidence=0.0, **opts)).run(page)
    assert len(kept.lines) == 3 and not kept.warnings
    result = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), Doubtful(),
                      PipelineOptions(min_line_confidence=0.5, min_relative_confidence=0.0, **opts)).run(page)
    assert [ln.text for ln in result.lines] == ["the", "the Sir of"]
    assert result.text == "the\nthe Sir of" and "1 line(s) read with confidence below 0.5 left out" in result.warnings
    with pytest.raises(ConfigError, match="min_line_confidence"):
        PipelineOptions(min_line_confidence=1.5)

    # relative to the page: garbage on a readable page goes, a hard hand read doubtfully throughout stays
    rel = PipelineOptions(**opts)
    assert rel.min_relative_confidence == 0.75
    result = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), Doubtful(), rel).run(page)
    assert [ln.text for ln in result.lines] == ["the", "the Sir of"]

    class AllDoubtful(GreedyDecoder):
        def decode(self, log_probs, lengths, charset):
            return [replace(d, confidence=0.2) for d in super().decode(log_probs, lengths, charset)]

    hard = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), AllDoubtful(), rel).run(page)
    assert len(hard.lines) == 3 and not hard.warnings


def test_skewed_lines_are_levelled_for_a_recogniser_trained_on_levelled_lines():
    page = np.full((600, 1200), 250, np.uint8)
    for x in range(60, 1000, 6):
        mid = int(300 + 0.05 * (x - 530))
        page[mid - 12:mid + 12, x:x + 2] = 30
    boxes = np.array([(50, 250, 1010, 350)], np.float32)
    seen = {}
    for deskew in (False, True):
        for level in (False, True):
            backend = ScriptedBackend(boxes, (40, 240, 1020, 360))
            backend.geometry = LineGeometry(deskew=deskew)
            images = []
            scripted = backend.log_probs
            backend.log_probs = lambda im, w, scripted=scripted: (images.append(im), scripted(im, w))[1]
            Pipeline(backend, "greedy", PipelineOptions(line_crop="box", line_pad_x=0, line_pad_y=0,
                                                        level_lines=level)).run(page)
            ink_rows = (images[0][0] < 128).any(1)
            seen[deskew, level] = (images[0].shape, int(ink_rows.sum()))
    assert seen[False, False] == seen[False, True]  # a bundle trained without levelling reads as cut
    assert seen[True, False] == seen[False, False]
    # levelled: the 24-px band fills a thinner share of the crop's height than the slanted band did
    (_, slanted_rows), (_, level_rows) = seen[True, False], seen[True, True]
    assert level_rows < 0.6 * slanted_rows


def test_pipeline_reads_each_line_in_every_view_it_is_given():
    page, boxes = _page_and_boxes(3)
    plain = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), "greedy",
                     PipelineOptions(batch_size=2, line_pad_x=0, line_pad_y=0, line_crop="box")).run(page)
    backend = ScriptedBackend(boxes, (50, 90, 1080, 420))
    views = Pipeline(backend, "greedy", PipelineOptions(batch_size=2, line_pad_x=0, line_pad_y=0, line_crop="box",
                                                        variants=("base", "thin"))).run(page)
    assert len(backend.calls) == 4                           # two batches, two views each
    assert [ln.text for ln in views.lines] == [ln.text for ln in plain.lines]   # thin paper reads alike
    assert [ln.box for ln in views.lines] == [ln.box for ln in plain.lines]
    assert views.extra["variants"] == ["base", "thin"] and "variants" not in plain.extra


def test_scripted_pipeline_gives_the_typed_tree_in_reading_order():
    page, boxes = _page_and_boxes(3)
    backend = ScriptedBackend(boxes, (50, 90, 1080, 420))
    pipe = Pipeline(backend, "greedy", PipelineOptions(batch_size=2, line_pad_x=0, line_pad_y=0, line_crop="box"))
    result = pipe.run(page, id="p1")
    assert [len(b) for b in backend.calls] == [2, 2]          # batched by width, 2 per batch
    assert result.width == 1400 and result.height == 900 and result.id == "p1"
    (region,) = result.regions
    assert region.box == (50.0, 90.0, 1080.0, 420.0) and region.confidence == pytest.approx(0.9)
    assert [ln.text for ln in result.lines] == ["the", "the Sir", "the Sir of"]
    assert result.text == "the\nthe Sir\nthe Sir of"
    for ln, box in zip(result.lines, boxes):
        assert ln.box == tuple(float(v) for v in box)
        assert len(ln.words) == len(ln.text.split())
        for w in ln.words:                                   # words sit inside their line
            assert ln.box[0] <= w.box[0] < w.box[2] <= ln.box[2]
            assert 0.0 < w.confidence <= 1.0
    assert result.lines[1].extra["detector_score"] == pytest.approx(0.75)
    assert set(result.timings) == {"area", "lines", "printed", "recognize", "decode"}
    assert 0.0 < result.confidence <= 1.0 and not result.warnings


def test_line_padding_is_clipped_to_the_page():
    page, boxes = _page_and_boxes(1)
    boxes[0, 0] = 2
    pipe = Pipeline(ScriptedBackend(boxes, (0, 0, 1400, 900)), "greedy",
                    PipelineOptions(line_pad_x=10, line_pad_y=5, line_crop="box"))
    (line,) = pipe.run(page).lines
    assert line.box == (0.0, boxes[0, 1] - 5, boxes[0, 2] + 10, boxes[0, 3] + 5)


def test_json_and_page_xml_are_made_from_the_same_result():
    page, boxes = _page_and_boxes(2)
    result = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), "greedy",
                      PipelineOptions(line_pad_x=0, line_crop="box")).run(page, id="scans/p&1.png")
    d = json.loads(render(result, "json"))
    assert d["text"] == result.text and d["id"] == "scans/p&1.png"
    assert [ln["text"] for ln in d["regions"][0]["lines"]] == ["the", "the Sir"]

    root = ET.fromstring(to_page_xml(result, image_filename="scans/p&1.png").encode())
    ns = {"p": PAGE_NS}
    pg = root.find("p:Page", ns)
    assert pg.get("imageFilename") == "p&1.png" and pg.get("imageWidth") == "1400"
    regions = pg.findall("p:TextRegion", ns)
    assert len(regions) == 1
    assert pg.find("p:ReadingOrder/p:OrderedGroup/p:RegionRefIndexed", ns).get("regionRef") == regions[0].get("id")
    lines = regions[0].findall("p:TextLine", ns)
    assert [ln.find("p:TextEquiv/p:Unicode", ns).text for ln in lines] == ["the", "the Sir"]
    pts = lines[1].find("p:Coords", ns).get("points").split()       # the line's polygon, around its ink
    assert pts[0] == "{},{}".format(*(int(round(v)) for v in result.lines[1].polygon[0]))
    assert lines[1].find("p:Baseline", ns) is not None
    conf = float(lines[1].find("p:TextEquiv", ns).get("conf"))
    assert conf == pytest.approx(result.lines[1].confidence, abs=1e-4)
    words = lines[1].findall("p:Word", ns)
    assert [w.find("p:TextEquiv/p:Unicode", ns).text for w in words] == ["the", "Sir"]


def test_overlay_draws_on_a_copy_of_the_page():
    page, boxes = _page_and_boxes(2)
    result = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), "greedy").run(page)
    img = draw_overlay(page, result, max_side=700)
    assert img.shape == (450, 700, 3) and img.dtype == np.uint8
    assert (img[..., 2].astype(int) - img[..., 0]).max() > 100      # coloured boxes/text drawn
    assert (page == np.where(page == 30, 30, 250)).all()            # the page itself untouched


def test_pages_of_every_kind_give_the_same_text(tmp_path):
    import cv2

    page, boxes = _page_and_boxes(2)
    pipe = Pipeline(ScriptedBackend(boxes, (50, 90, 1080, 420)), "greedy")
    want = pipe.run(page).text
    rgb = np.repeat(page[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full_like(page[..., None], 255)], axis=2)
    sixteen = page.astype(np.uint16) * 257
    for variant in (rgb, rgba, sixteen, page[..., None]):
        assert pipe.run(variant).text == want
    path = tmp_path / "page.tif"
    cv2.imwrite(str(path), page)
    assert pipe.run(path).text == want
    assert pipe.run(path.read_bytes()).text == want


def test_bad_pages_get_clear_errors_or_an_empty_result(tmp_path):
    page, boxes = _page_and_boxes(1)
    pipe = Pipeline(ScriptedBackend(boxes, (0, 0, 10, 10)), "greedy")
    tiny = pipe.run(np.zeros((1, 1), np.uint8))
    assert tiny.regions == [] and "too small" in tiny.warnings[0]
    with pytest.raises(DataError, match="empty"):
        pipe.run(np.zeros((0, 5), np.uint8))
    with pytest.raises(DataError, match="shape"):
        pipe.run(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(DataError, match="not a readable image"):
        pipe.run(b"GIF89a truncated")
    png = _png_header_only(30000, 30000)
    with pytest.raises(DataError, match="30000x30000"):
        pipe.run(png)
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("quantum")
    with pytest.raises(ConfigError, match="batch_size"):
        PipelineOptions(batch_size=0)


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG claiming ``w x h`` pixels with no image data: checked before anything is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# -- the bundled models, end to end ----------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled_pipeline():
    from htr_tf.pipeline import load_pipeline

    return load_pipeline()


def test_bundled_models_find_the_lines_of_a_note(bundled_pipeline):
    texts = ["the Orders of October", "Sir, it was delivered", "to the Captain"]
    result = bundled_pipeline.run(render_note(texts))
    assert len(result.lines) == len(texts)
    tops = [ln.box[1] for ln in result.lines]
    assert tops == sorted(tops)                                       # reading order
    for ln, k in zip(result.lines, range(len(texts))):
        assert abs((ln.box[1] + ln.box[3]) / 2 - (150 + 130 * k + 35)) < 35
        assert ln.text.strip()


def test_bundled_models_give_an_empty_result_for_a_blank_page(bundled_pipeline):
    result = bundled_pipeline.run(np.full((1200, 900), 255, np.uint8))
    assert result.lines == [] and result.text == ""
    assert "no text lines found" in result.warnings
