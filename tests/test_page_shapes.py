"""The page pipeline with line shapes: rule-only detections dropped, polygons and baselines
on every line, the recogniser reading polygon-masked or box crops."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import log_probs_reading
from test_line_shapes import _detected_boxes, _note_page

from htr_tf.line_shapes import line_shapes


class _NoteBackend:
    """A backend whose layout is fixed (the note's detected boxes plus a bare rule) and whose
    'recogniser' reads every line as 'the'; it records the widths it was given."""

    name = "note"

    def __init__(self, boxes):
        from htr_tf.charset import DEFAULT_CHARSET
        from htr_tf.geometry import LineGeometry

        self.charset, self.geometry, self.width_downsample, self.decoding = DEFAULT_CHARSET, LineGeometry(), 8, {}
        self.boxes = np.asarray(boxes, np.float32)
        self.widths: list[int] = []

    def find_area(self, page):
        return np.array([0, 0, page.shape[1], page.shape[0]], np.float32), 0.9

    def find_lines(self, page, region):
        return self.boxes, np.full(len(self.boxes), 0.8, np.float32)

    def log_probs(self, images, widths):
        self.widths += [int(w) for w in widths]
        return log_probs_reading("the", widths, images.shape[2] // 8, self.charset.num_classes, self.charset.chars)


@pytest.mark.parametrize("crop", ["box", "polygon", "apart"])
def test_pipeline_drops_rule_lines_and_gives_polygons_and_baselines(crop):
    import xmlschema

    from htr_tf import crop as C
    from htr_tf.outputs import to_alto
    from htr_tf.pipeline import Pipeline, PipelineOptions

    page, gt, gt_base = _note_page()
    det = _detected_boxes(gt)
    backend = _NoteBackend(np.concatenate([det, [[300, 608, 1300, 658]]]))
    result = Pipeline(backend, "greedy", PipelineOptions(line_crop=crop)).run(page)
    lines = result.lines
    assert len(lines) == 3 and [ln.text for ln in lines] == ["the"] * 3          # the bare rule is gone
    shapes = line_shapes(page, backend.boxes)[:3]
    for ln, s, b in zip(lines, shapes, gt_base):
        assert np.allclose(ln.polygon, s.polygon) and np.allclose(ln.baseline, s.baseline)
        assert abs(ln.baseline[0][1] - b[0, 1]) < 6
    if crop == "polygon":                     # the recogniser read the polygon-masked crop
        _, cut_box = C.cut_polygon(page, shapes[0].polygon)
        assert lines[0].box == tuple(float(v) for v in cut_box)
    elif crop == "apart":                     # the box grown to hold the polygon
        _, cut_box = C.cut_apart(page, backend.boxes[0], shapes[0].polygon, [s.polygon for s in shapes[1:]])
        assert lines[0].box == cut_box
        pb = C.polygon_box([shapes[0].polygon], C.POLYGON_PAD, page.shape[1], page.shape[0])
        assert cut_box[0] <= min(det[0, 0] - C.LINE_PAD_X, pb[0]) + 1 and cut_box[3] >= max(det[0, 3], pb[3]) - 1
    else:
        assert lines[0].box == (det[0, 0] - C.LINE_PAD_X, det[0, 1], det[0, 2] + C.LINE_PAD_X, det[0, 3])
    xsd = __import__("pathlib").Path(__file__).parent / "fixtures" / "xsd"
    xmlschema.XMLSchema(str(xsd / "alto-4-2.xsd"), locations=[("http://www.w3.org/1999/xlink",
                                                              str(xsd / "xlink.xsd"))]).validate(to_alto(result))


def test_evaluate_pipeline_per_source_and_polygon_masked_line_level(tmp_path):
    from htr_tf.charset import Charset
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.evaluate_pipeline import evaluate_pipeline, format_summary
    from htr_tf.fileio import encode_png
    from htr_tf.geometry import union_box
    from htr_tf.pipeline import Pipeline
    from test_line_shapes import TEXTS

    page, gt, gt_base = _note_page()
    polys = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) for x0, y0, x1, y1 in gt]
    with RecordSetWriter(tmp_path / "rec", source="x", charset=Charset()) as w:
        for k, source in enumerate(("copiste", "gw")):
            extra = dict(line_polygons=polys, line_baselines=gt_base) if source == "copiste" else {}
            w.add_form("test", FormExample(
                id=f"p{k}", image_png=encode_png(page), height=page.shape[0], width=page.shape[1],
                paragraph_box=union_box(gt), line_boxes=gt, line_ids=["a", "b", "c"],
                line_texts=["the", "the", "the x"], source=source, **extra))
    backend = _NoteBackend(np.concatenate([_detected_boxes(gt), [[300, 608, 1300, 658]]]))   # + a bare rule
    r = evaluate_pipeline(Pipeline(backend), tmp_path / "rec", split="test", decoders=["greedy"], worst=0)
    assert r["detection"]["detections"] == 6 and r["num_detected_lines"] == 6          # the rules were dropped
    per = r["summary"][0]["per_source"]
    assert set(per) == {"copiste", "gw"} and per["copiste"]["pages"] == 1
    assert per["copiste"]["page_cer"] == pytest.approx(2 / 13) and per["gw"]["line_cer"] == pytest.approx(2 / 11)
    assert [p.get("line_crop") for p in r["pages"]] == ["polygon", None]
    assert "copiste" in format_summary(r)


def test_line_crop_option_on_the_command_line():
    import argparse

    from htr_tf.commands import evaluate, ocr

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    ocr.register(sub)
    a = parser.parse_args(["ocr", "--line-crop", "polygon", "x.png"])
    assert a.line_crop == "polygon"
    with pytest.raises(SystemExit):
        parser.parse_args(["ocr", "--line-crop", "hull", "x.png"])
    assert hasattr(evaluate, "add_line_crop_argument")
