"""Printed text kept apart: where it is looked for, printed regions in the page result, --include-printed,
and the score (printed ink inside handwritten regions) on a form the test draws."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import log_probs_reading

from htr_tf.charset import DEFAULT_CHARSET
from htr_tf.geometry import LineGeometry
from htr_tf.pipeline import Pipeline, PipelineOptions
from htr_tf.printed import PrintedOptions, count_inside, find_printed_lines, ink_rows, outside_bands, printed_ink_boxes

AREA = (100.0, 300.0, 900.0, 620.0)
HAND = np.array([[110, 320, 700, 384], [110, 420, 860, 484], [110, 520, 500, 584]], np.float32)
PRINT = np.array([[100, 80, 820, 120], [100, 140, 600, 180], [100, 700, 400, 740]], np.float32)


def _form() -> np.ndarray:
    """A form: two printed lines above the handwritten area and one below it, three handwritten lines."""
    page = np.full((800, 1000), 245, np.uint8)
    for b, text in zip(PRINT, ("Sentence Database of the printed form", "Write the text below", "Name:")):
        cv2.putText(page, text, (int(b[0]), int(b[3]) - 8), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    for b in HAND:                       # 'handwriting': strokes of letter height along each line
        for x in range(int(b[0]) + 5, int(b[2]) - 10, 24):
            cv2.line(page, (x, int(b[1]) + 14), (x + 12, int(b[3]) - 14), 40, 3)
    return page


class FormBackend:
    """Fixed layout: the area and its lines, and, for a band outside the area, the printed lines
    whose centre lies in it (what a detector would find there); reads every line as 'the'."""

    name = "form"

    def __init__(self) -> None:
        self.charset, self.geometry, self.width_downsample, self.decoding = DEFAULT_CHARSET, LineGeometry(), 8, {}
        self.regions: list[list[float]] = []

    def find_area(self, page):
        return np.array(AREA, np.float32), 0.9

    def find_lines(self, page, region):
        self.regions.append([float(v) for v in region])
        if np.allclose(region, AREA):
            return HAND, np.full(len(HAND), 0.9, np.float32)
        cy = (PRINT[:, 1] + PRINT[:, 3]) / 2
        cx = (PRINT[:, 0] + PRINT[:, 2]) / 2
        inside = (cy >= region[1]) & (cy <= region[3]) & (cx >= region[0]) & (cx <= region[2])
        return PRINT[inside], np.full(int(inside.sum()), 0.7, np.float32)

    def log_probs(self, images, widths):
        return log_probs_reading("the", widths, images.shape[2] // 8, self.charset.num_classes, self.charset.chars)


def test_bands_leave_out_the_area_and_its_margin_and_thin_or_narrow_strips():
    bands = outside_bands(AREA, (800, 1000), line_height=64.0)
    assert bands == [(0.0, 0.0, 1000.0, 284.0), (0.0, 636.0, 1000.0, 800.0)]   # side strips: 84 px < 15 %
    wide = outside_bands((400, 300, 900, 620), (800, 1000), line_height=64.0)
    assert wide[-1] == (0.0, 284.0, 384.0, 636.0)                                 # a margin beside the area
    assert outside_bands((0, 5, 1000, 795), (800, 1000), line_height=0.0) == []    # the area is the page


def test_detections_on_handwriting_are_not_printed_and_boxes_stay_in_their_band():
    def find_lines(page, region):
        if region[1] == 0:                     # the top band: a printed line, and one that is mostly handwriting
            return np.array([[100, 80, 820, 120], [110, 270, 700, 370]], np.float32), np.array([0.8, 0.6], np.float32)
        return np.array([[100, 600, 400, 740]], np.float32), np.array([0.7], np.float32)

    boxes, scores = find_printed_lines(find_lines, np.zeros((800, 1000), np.uint8), AREA, HAND)
    assert boxes.tolist() == [[100, 80, 820, 120], [100, 636, 400, 740]]            # clipped to the band
    assert scores.tolist() == pytest.approx([0.8, 0.7])


def test_bands_are_cut_to_their_inked_rows_and_bare_bands_are_not_searched():
    page = np.full((1600, 1000), 240, np.uint8)
    page[1500:1600] = 236                                      # paper a shade darker: not ink
    cv2.putText(page, "Sentence Database", (100, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    cv2.putText(page, "Name:", (100, 1300), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 2)
    top = ink_rows(page, (0, 0, 1000, 284))
    assert top is not None and 125 <= top[0] <= 135 and 148 <= top[1] <= 158
    assert ink_rows(page, (0, 636, 1000, 1200)) is None       # bare paper
    seen = []

    def find_lines(pg, region):
        seen.append([float(v) for v in region])
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)

    find_printed_lines(find_lines, page, AREA, HAND)
    (t0, t1), (b0, b1) = [(r[1], r[3]) for r in seen]
    assert 60 <= t0 <= 72 and 212 <= t1 <= 222                 # the header plus a line height (64 px)
    assert 1210 <= b0 <= 1226 and 1358 <= b1 <= 1370           # "Name:" alone, not the bare bottom
    assert all(r[0] == 0 and r[2] == 1000 for r in seen)       # full width: the detector's scale is kept
    seen.clear()
    page[1250:1320] = 240                                       # no "Name:": the bottom band is bare
    find_printed_lines(find_lines, page, AREA, HAND)
    assert len(seen) == 1
    seen.clear()
    find_printed_lines(find_lines, page, AREA, HAND, PrintedOptions(trim_pad=None))
    assert [(r[1], r[3]) for r in seen] == [(0.0, 284.0), (636.0, 1600.0)]   # whole bands


def test_printed_regions_are_reported_not_read_unless_asked():
    page = _form()
    backend = FormBackend()
    result = Pipeline(backend, "greedy").run(page, id="form")
    types = [r.type for r in result.regions]
    assert types == ["printed", "handwritten", "printed"]                         # reading order: top to bottom
    top, hand, bottom = result.regions
    assert [len(r.lines) for r in result.regions] == [2, 3, 1]
    assert not top.recognized and all(ln.text == "" for ln in top.lines)
    assert all(ln.polygon is not None for ln in top.lines)
    assert [ln.text for ln in hand.lines] == ["the"] * 3
    assert result.text == "the\nthe\nthe" and len(result.lines) == 3             # print left out of the text
    assert "printed" in result.timings
    d = json.loads(json.dumps(result.to_dict()))
    assert d["regions"][0]["type"] == "printed" and d["regions"][0]["recognized"] is False
    assert [r["id"] for r in d["regions"]] == ["r1", "r2", "r3"]

    read = Pipeline(FormBackend(), "greedy", PipelineOptions(read_printed=True)).run(page)
    assert [r.recognized for r in read.regions] == [True, True, True]
    assert read.text.split("\n\n") == ["the\nthe", "the\nthe\nthe", "the"]

    off = FormBackend()
    none = Pipeline(off, "greedy", PipelineOptions(find_printed=False)).run(page)
    assert [r.type for r in none.regions] == ["handwritten"] and off.regions == [list(AREA)]


def test_printed_ink_is_found_and_counted_inside_outlines():
    page = _form()
    ink = printed_ink_boxes(page, HAND)
    assert len(ink) >= 20                                      # letters of the three printed lines
    cy = (ink[:, 1] + ink[:, 3]) / 2
    assert ((cy < AREA[1]) | (cy > AREA[3])).all()             # none of the handwriting
    region = np.array([[90, 290], [910, 290], [910, 630], [90, 630]], np.float32)
    assert count_inside(ink, [region]) == 0
    whole = np.array([[0, 0], [1000, 0], [1000, 800], [0, 800]], np.float32)
    assert count_inside(ink, [whole]) == len(ink)
    assert count_inside(ink, []) == 0


def test_evaluate_printed_on_form_records(tmp_path):
    from htr_tf.charset import Charset
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.printed import evaluate_printed

    page = _form()
    with RecordSetWriter(tmp_path / "rec", source="test", charset=Charset()) as w:
        w.add_form("test", FormExample(id="f1", writer="w", source="test", image_png=encode_png(page),
                                       height=page.shape[0], width=page.shape[1], paragraph_box=list(AREA),
                                       line_boxes=HAND, line_ids=["a", "b", "c"],
                                       line_texts=["x", "y", "z"], line_err=[False] * 3))
    good = evaluate_printed(Pipeline(FormBackend(), "greedy"), tmp_path / "rec", split="test")
    assert good["pages"] == 1 and good["pages_printed_in_handwritten_region"] == 0
    assert good["printed_found"] > 0.9 and good["pages_with_printed_regions"] == 1

    class Swallowing(FormBackend):              # an area model that takes the printed lines in
        def find_area(self, page):
            return np.array([90, 60, 910, 620], np.float32), 0.9

        def find_lines(self, page, region):
            if region[1] <= 60:
                return np.concatenate([PRINT[:2], HAND]), np.full(5, 0.9, np.float32)
            return super().find_lines(page, region)

    bad = evaluate_printed(Pipeline(Swallowing(), "greedy"), tmp_path / "rec", split="test")
    assert bad["pages_printed_in_handwritten_region"] == 1 and bad["pages_printed_in_handwritten_line"] == 1
