"""Line polygons and baselines from boxes and ink; polygon IoU and baseline scores; the line
evaluation with shapes on form records that carry polygons and baselines."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import render_note

from htr_tf.layout_eval import BaselineCounts, baseline_scores, evaluate_lines, match_by_iou, polygon_iou
from htr_tf.line_shapes import ShapeOptions, _clusters, line_shapes

TEXTS = ["the Letters of Sir", "and Orders to it", "Captain; quoted 42"]


def _note_page(rules: bool = True):
    """A note of three Hershey lines on ruled paper, with each line's ink box and baseline."""
    import cv2

    page = render_note(TEXTS, height=700, width=1400)
    ink = page < 128
    boxes, baselines = [], []
    for i, text in enumerate(TEXTS):
        y0 = 150 + 130 * i
        ys, xs = np.nonzero(ink[y0: y0 + 70])
        boxes.append([xs.min(), y0 + ys.min(), xs.max() + 1, y0 + ys.max() + 1])
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.6, 2)
        y = y0 + (th + 8) * 70 / (th + base + 16)
        baselines.append(np.array([[xs.min(), y], [xs.max() + 1, y]], np.float32))
    if rules:                                          # ruled paper: rules under each line and between them
        for y in range(130, 700, 65):
            page[y: y + 2, 40:1360] = 160
    return page, np.array(boxes, np.float32), baselines


def _detected_boxes(gt_boxes: np.ndarray) -> np.ndarray:
    """Boxes as the detector gives them: the ink box grown to overlap its neighbours, stretched
    right by a rule."""
    b = gt_boxes.copy()
    h = b[:, 3] - b[:, 1]
    b[:, 1] -= 0.35 * h
    b[:, 3] += 0.35 * h
    b[:, 2] += 200
    return b


def test_polygons_hold_their_own_line_and_not_the_neighbours():
    page, gt, gt_base = _note_page()
    boxes = _detected_boxes(gt)
    shapes = line_shapes(page, boxes)
    assert len(shapes) == 3 and all(s.from_ink for s in shapes)
    iou = polygon_iou([s.polygon for s in shapes], [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
                                                       for x0, y0, x1, y1 in gt])
    assert (np.diag(iou) > 0.75).all(), iou              # the outline follows the ink, not the stretched box
    assert (iou - np.diag(np.diag(iou)) < 0.05).all()
    for s, g in zip(shapes, gt):
        assert s.polygon[:, 0].max() <= g[2] + 3           # not widened by the rule
    for s, b in zip(shapes, gt_base):
        assert s.baseline[0, 0] == pytest.approx(b[0, 0], abs=3) and s.baseline[-1, 0] == pytest.approx(b[-1, 0], abs=3)
        assert np.abs(s.baseline[:, 1] - b[0, 1]).max() < 6


def test_a_detection_on_a_bare_rule_has_no_writing():
    page, gt, _ = _note_page()
    rule_box = np.array([[300, 608, 1300, 658]], np.float32)        # the rule at y=650, no text near it
    (shape,) = line_shapes(page, rule_box)
    assert not shape.from_ink
    assert shape.polygon.tolist() == [[300, 608], [1300, 608], [1300, 658], [300, 658]]
    # without rule removal the same rule counts as writing: the option is what removes it
    (kept,) = line_shapes(page, rule_box, ShapeOptions(rule_length=0.0, min_stroke=0.0))
    assert kept.from_ink


def test_no_boxes_and_blank_pages():
    blank = np.full((200, 300), 250, np.uint8)
    assert line_shapes(blank, np.zeros((0, 4))) == []
    off_page = np.array([[-900, 50, -700, 70], [-400, 50, -200, 70]], np.float32)  # two clusters, left of it
    assert [s.from_ink for s in line_shapes(blank, off_page)] == [False, False]
    (s,) = line_shapes(blank, np.array([[10, 10, 200, 50]], np.float32))
    assert not s.from_ink and s.baseline[0, 1] == pytest.approx(40.0)


def test_polygon_iou_is_exact_for_rectangles():
    a = [np.array([[0, 0], [100, 0], [100, 50], [0, 50]])]
    b = [np.array([[50, 0], [150, 0], [150, 50], [50, 50]]), np.array([[500, 500], [600, 500], [600, 520]])]
    iou = polygon_iou(a, b)
    assert iou[0, 0] == pytest.approx(1 / 3, abs=0.02) and iou[0, 1] == 0.0
    assert polygon_iou([], b).shape == (0, 2)
    assert match_by_iou(np.zeros((0, 2)), np.zeros(0), 0.5).shape == (0,)
    assert match_by_iou(iou, np.array([0.9]), 0.3).tolist() == [True]


def test_baseline_scores():
    gt = [np.array([[0, 100], [1000, 100]]), np.array([[0, 200], [1000, 200]])]   # tolerance 25 px
    assert baseline_scores([gt], [gt]) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    near = [g + [0, 10] for g in gt]
    far = [g + [0, 40] for g in gt]
    assert baseline_scores([near], [gt])["f1"] == 1.0
    assert baseline_scores([far], [gt])["recall"] == 0.0
    half = [np.array([[0, 100], [500, 100]])]                          # half of the first line only
    r = baseline_scores([half], [gt])
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx((500 + 25) / 2000, abs=0.003)  # + tolerance
    c = BaselineCounts()
    c.add([], gt)
    assert c.as_dict()["recall"] == 0.0


class _BoxDetector:
    """A stand-in line detector returning fixed boxes."""

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32)

    def detect(self, page, region):
        return self.boxes, np.linspace(0.9, 0.8, len(self.boxes)).astype(np.float32)


def test_evaluate_lines_scores_polygons_and_baselines_per_source(tmp_path):
    from htr_tf.charset import Charset
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.geometry import union_box

    page, gt, gt_base = _note_page()
    polys = [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) for x0, y0, x1, y1 in gt]
    with RecordSetWriter(tmp_path / "rec", source="test", charset=Charset()) as w:
        for k, source in enumerate(("copiste", "gw")):
            extra = dict(line_polygons=polys, line_baselines=gt_base) if source == "copiste" else {}
            w.add_form("test", FormExample(
                id=f"p{k}", image_png=encode_png(page), height=page.shape[0], width=page.shape[1],
                paragraph_box=union_box(gt), line_boxes=gt, line_ids=["a", "b", "c"], line_texts=TEXTS,
                source=source, **extra))
    rule_box = [[300, 608, 1300, 658]]
    det = _BoxDetector(np.concatenate([_detected_boxes(gt), rule_box]))
    r = evaluate_lines(det, tmp_path / "rec", split="test")
    assert r["dropped_without_writing"] == 2                # the rule, on each page
    assert r["polygon_recall50"] == 1.0 and r["polygon_precision50"] == 1.0
    assert r["baseline_f1"] > 0.95
    assert set(r["per_source"]) == {"copiste", "gw"}
    assert r["per_source"]["copiste"]["polygon_pages"] == 1 and "polygon_pages" not in r["per_source"]["gw"]
    assert r["per_page"][0]["polygon_recall50"] == 1.0
    boxes_only = evaluate_lines(det, tmp_path / "rec", split="test", shapes=False)
    assert "polygon_recall50" not in boxes_only
    assert boxes_only["per_source"]["copiste"]["detected"] == 4 and r["per_source"]["copiste"]["detected"] == 3



def test_thin_faint_marks_stay_in_the_outline():
    """A hairline comma after the last word fades into the paper when the page is shrunk to
    the work scale; the min filter before shrinking keeps it inside the line's outline."""
    page = np.full((300, 800), 230, np.uint8)
    page[100:160, 60:500] = 30                       # the line's letters
    page[140:176, 530] = 60                          # a one-pixel, faint comma after them
    boxes = np.array([[50, 80, 600, 180]], np.float32)    # 100 px high: shrunk about 3x
    kept = line_shapes(page, boxes, ShapeOptions(keep_thin_marks=True))[0]
    lost = line_shapes(page, boxes, ShapeOptions(keep_thin_marks=False))[0]
    assert kept.polygon[:, 0].max() >= 530 > lost.polygon[:, 0].max()
    assert ShapeOptions().keep_thin_marks


def test_lines_far_apart_are_outlined_apart_at_one_ink_threshold():
    """A note at the top of a tall page and a detection on bare, noisy paper far below it: the
    two are outlined on separate work areas (the page between them is not analysed), but the
    paper's noise is still told from ink by the page's threshold, not by one of its own."""
    page, gt, _ = _note_page()
    boxes = _detected_boxes(gt)
    tall = np.full((3000, page.shape[1]), 235, np.uint8)
    tall[:700] = page
    noise = np.random.default_rng(0).normal(235, 8, (500, page.shape[1]))
    tall[2400:2900] = np.clip(noise, 0, 255).astype(np.uint8)
    smudge = np.array([[300, 2600, 1100, 2660]], np.float32)
    (alone,) = line_shapes(tall, smudge)
    assert alone.from_ink                              # on its own, Otsu finds "ink" in the noise
    both = np.concatenate([boxes, smudge])
    lh = float(np.median(both[:, 3] - both[:, 1]))
    assert [c.tolist() for c in _clusters(both, 3 * lh)] == [[0, 1, 2], [3]]
    shapes = line_shapes(tall, both)
    assert [s.from_ink for s in shapes] == [True, True, True, False]
    note = line_shapes(tall, boxes)
    iou = polygon_iou([s.polygon for s in shapes[:3]], [s.polygon for s in note])
    assert (np.diag(iou) > 0.95).all(), iou
