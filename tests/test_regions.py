"""Lines grouped into regions in reading order: paragraphs, two columns, a signature, a margin note."""

from __future__ import annotations

import numpy as np

from htr_tf.regions import RegionOptions, group_lines, region_outline


def _lines(x0, x1, y0, n, step=50, h=30):
    return [[x0, y0 + k * step, x1, y0 + k * step + h] for k in range(n)]


def test_two_columns_read_column_by_column():
    left, right = _lines(100, 700, 100, 4), _lines(800, 1400, 110, 4)
    boxes = np.array(sorted(left + right, key=lambda b: (b[1] + b[3]) / 2), np.float32)   # detector order
    groups = group_lines(boxes)
    assert [[boxes[i][0] for i in g] for g in groups] == [[100] * 4, [800] * 4]
    assert [[boxes[i][1] for i in g] for g in groups][0] == [100, 150, 200, 250]


def test_paragraphs_signature_and_margin_note():
    para1 = _lines(300, 1300, 100, 3)
    para2 = _lines(300, 1300, 400, 2)                  # a blank line's gap (150 - 30 > 1.2 x 30)
    note = [[50, 420, 250, 450]]                        # in the margin beside the second paragraph
    signature = [[900, 800, 1250, 840]]
    boxes = np.array(sorted(para1 + para2 + note + signature, key=lambda b: (b[1] + b[3]) / 2), np.float32)
    groups = group_lines(boxes)
    firsts = [tuple(boxes[g[0]][:2]) for g in groups]
    assert firsts == [(300, 100), (50, 420), (300, 400), (900, 800)]
    assert [len(g) for g in groups] == [3, 1, 2, 1]
    # a looser gap joins the paragraphs
    assert len(group_lines(boxes, RegionOptions(max_gap=6.0))) == 3


def test_outline_and_empty():
    assert group_lines(np.zeros((0, 4))) == []
    hull = region_outline([np.array([[0, 0], [10, 0], [10, 5], [0, 5]]), np.array([[2, 8], [8, 8], [5, 12]])])
    assert {tuple(p) for p in hull.tolist()} >= {(0, 0), (10, 0), (5, 12)}


def test_pipeline_gives_a_region_per_column_in_reading_order():
    import xml.etree.ElementTree as ET

    from conftest import render_text_line

    from htr_tf.outputs import PAGE_NS, to_page_xml
    from htr_tf.pipeline import Pipeline
    from test_page_shapes import _NoteBackend

    page = np.full((600, 1600), 245, np.uint8)
    boxes = []
    for col, x in enumerate((60, 860)):
        for k in range(3):
            img = render_text_line("the Letters", height=40, scale=1.2, seed=k)
            y = 80 + 90 * k + 20 * col
            page[y: y + 40, x: x + img.shape[1]] = np.minimum(page[y: y + 40, x: x + img.shape[1]], img)
            boxes.append([x, y - 10, x + img.shape[1], y + 50])
    boxes.sort(key=lambda b: (b[1] + b[3]) / 2)                 # interleaved, as the detector gives them
    result = Pipeline(_NoteBackend(boxes), "greedy").run(page)
    assert [r.id for r in result.regions] == ["r1", "r2"]
    assert [[ln.box[0] < 800 for ln in r.lines] for r in result.regions] == [[True] * 3, [False] * 3]
    assert [ln.id for ln in result.regions[1].lines] == ["r2l1", "r2l2", "r2l3"]
    assert all(r.polygon is not None and len(r.polygon) >= 3 for r in result.regions)
    root = ET.fromstring(to_page_xml(result, "p.png").encode())
    refs = root.findall(f"{{{PAGE_NS}}}Page/{{{PAGE_NS}}}ReadingOrder/{{{PAGE_NS}}}OrderedGroup/"
                        f"{{{PAGE_NS}}}RegionRefIndexed")
    assert [r.get("regionRef") for r in refs] == ["r1", "r2"]


def test_evenly_wide_spacing_stays_one_region():
    boxes = np.array(_lines(100, 900, 100, 5, step=130, h=50), np.float32)      # gaps of 80 > 1.2 x 50
    assert group_lines(boxes) == [[0, 1, 2, 3, 4]]
    boxes[3:, [1, 3]] += 300                                                     # a blank line's gap
    assert group_lines(boxes) == [[0, 1, 2], [3, 4]]
