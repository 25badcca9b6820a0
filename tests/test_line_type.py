"""Printed or handwritten: the line-type classifier (features, fit, config in the line detector
bundle), the pipeline reading handwriting found outside the area, and ``htr train line-type``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_printed import AREA, HAND, PRINT, FormBackend, _form

from htr_tf.errors import ConfigError
from htr_tf.line_type import NUM_FEATURES, LineTypeConfig, fit_line_type, line_features, printed_probability
from htr_tf.models.lines import LineDetector, LineDetectorConfig
from htr_tf.pipeline import Pipeline, PipelineOptions

#: A handwritten page id written in the top right corner, outside the area.
NOTE = np.array([[700, 190, 960, 250]], np.float32)


def _form_with_note() -> np.ndarray:
    page = _form()
    b = NOTE[0]
    for x in range(int(b[0]) + 5, int(b[2]) - 10, 24):          # the test's 'handwriting' strokes
        cv2.line(page, (x, int(b[1]) + 14), (x + 12, int(b[3]) - 14), 40, 3)
    return page


class NoteBackend(FormBackend):
    """The form with a handwritten note outside the area, found in the top band."""

    def __init__(self, line_type: LineTypeConfig | None = None) -> None:
        super().__init__()
        self.lines = LineDetector(None, LineDetectorConfig.tiny().replace(line_type=line_type))

    def find_lines(self, page, region):
        boxes, scores = super().find_lines(page, region)
        if region[3] <= AREA[1] and region[1] <= NOTE[0, 1]:      # the band above the area, cut to its ink
            boxes, scores = np.concatenate([boxes, NOTE]), np.concatenate([scores, [0.7]]).astype(np.float32)
        return boxes, scores


def _crop(page: np.ndarray, box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    return page[y0:y1, x0:x1]


def test_features_are_finite_for_any_crop():
    page = _form()
    for crop in (_crop(page, PRINT[0]), _crop(page, HAND[0]), np.full((40, 200), 255, np.uint8),
                 np.zeros((3, 3), np.uint8), np.zeros((1, 50), np.uint8)):
        f = line_features(crop)
        assert f.shape == (NUM_FEATURES,) and np.isfinite(f).all()


def test_fit_tells_type_from_strokes_and_config_round_trips():
    page = _form_with_note()
    printed = [_crop(page, b) for b in PRINT]
    hand = [_crop(page, b) for b in np.concatenate([HAND, NOTE])]
    X = np.stack([line_features(c) for c in printed + hand])
    y = np.array([1] * len(printed) + [0] * len(hand))
    cfg = fit_line_type(X, y, l2=0.1)
    p = printed_probability(cfg, printed + hand)
    assert (p[:3] > 0.5).all() and (p[3:] < 0.5).all()

    lines = LineDetectorConfig.tiny().replace(line_type=cfg)
    back = LineDetectorConfig.from_dict(lines.to_dict())
    assert isinstance(back.line_type, LineTypeConfig)
    assert np.allclose(printed_probability(back.line_type, printed), p[:3])
    assert LineDetectorConfig.from_dict(LineDetectorConfig.tiny().to_dict()).line_type is None


def test_bad_classifier_configs_are_refused():
    good = LineTypeConfig.identity().to_dict()
    with pytest.raises(ConfigError, match="needs"):
        LineTypeConfig.from_dict({**good, "weights": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="feature_version"):
        LineTypeConfig.from_dict({**good, "feature_version": 99})
    with pytest.raises(ConfigError, match="threshold"):
        LineTypeConfig.from_dict({**good, "threshold": 1.0})
    with pytest.raises(ConfigError, match="both"):
        fit_line_type(np.zeros((4, NUM_FEATURES)), np.zeros(4))


def test_handwriting_outside_the_area_is_read_and_print_stays_apart():
    page = _form_with_note()
    # identity classifier: every line has printed probability 0.5, so all outside lines are read
    as_hand = Pipeline(NoteBackend(LineTypeConfig.identity(threshold=0.6)), "greedy").run(page)
    assert [r.type for r in as_hand.regions] == ["handwritten"] * len(as_hand.regions)
    assert len(as_hand.lines) == 7 and as_hand.text.count("the") == 7
    assert [ln.box[1] for ln in as_hand.regions[0].lines] == sorted(ln.box[1] for ln in as_hand.regions[0].lines)

    # a layout found once serves another reading of the page (evaluate shares it between decoders)
    pipe = Pipeline(NoteBackend(LineTypeConfig.identity(threshold=0.6)), "greedy")
    shared = pipe.run(page, layout=pipe.find_layout(page))
    assert shared.to_dict()["regions"] == as_hand.to_dict()["regions"]
    assert {"area", "lines", "printed"} <= set(shared.timings)

    as_print = Pipeline(NoteBackend(LineTypeConfig.identity(threshold=0.4)), "greedy").run(page)
    assert sum(len(r.lines) for r in as_print.regions if r.type == "printed") == 4 and len(as_print.lines) == 3

    off = Pipeline(NoteBackend(LineTypeConfig.identity(threshold=0.6)), "greedy",
                   PipelineOptions(classify_outside=False)).run(page)
    assert len(off.lines) == 3
    unfitted = Pipeline(NoteBackend(None), "greedy").run(page)       # no classifier: outside is printed
    assert len(unfitted.lines) == 3


def test_train_line_type_writes_a_detector_bundle_that_reads_the_note(tmp_path):
    from htr_tf.charset import Charset
    from htr_tf.data.records import FormExample, RecordSetWriter
    from htr_tf.fileio import encode_png
    from htr_tf.train.line_type import THRESHOLDS, LineTypeSource, train_line_type

    page = _form_with_note()
    with RecordSetWriter(tmp_path / "rec", source="test", charset=Charset()) as w:
        for split in ("train", "validation"):
            w.add_form(split, FormExample(id=f"f-{split}", writer="w", source="test", image_png=encode_png(page),
                                          height=page.shape[0], width=page.shape[1], paragraph_box=list(AREA),
                                          line_boxes=np.concatenate([HAND, NOTE]), line_ids=["a", "b", "c", "d"],
                                          line_texts=["x", "y", "z", "n"], line_err=[False] * 4))
    LineDetector.create(LineDetectorConfig.tiny()).save(tmp_path / "lines")
    rec = str(tmp_path / "rec")
    info = train_line_type(tmp_path / "lines", tmp_path / "out", [LineTypeSource(rec, "train", forms=True)],
                           [LineTypeSource(rec, "validation", forms=True)], backend=NoteBackend(), l2=0.1)
    assert info["train"][f"{rec}:train"] == {"handwritten": 5, "printed": 3, "outside_handwritten": 1}
    v = info["validation"][f"{rec}:validation"]
    assert v["outside_printed"] == 3 and v["outside_printed_read_as_handwriting"] == 0
    assert v["outside_handwritten"] == v["outside_handwritten_read"] == 1
    assert set(info["validation_thresholds"]) == {f"{t:.2f}" for t in THRESHOLDS}

    fitted = LineDetector.load(tmp_path / "out").config.line_type
    assert fitted is not None and fitted.info["train"] == info["train"]
    result = Pipeline(NoteBackend(fitted), "greedy").run(page)
    assert len(result.lines) == 4 and sum(len(r.lines) for r in result.regions if r.type == "printed") == 3


def test_the_bundled_detector_and_its_tflite_twin_carry_the_same_classifier():
    import json

    from htr_tf.bundle import bundled_model_path

    meta = json.loads((bundled_model_path("lines") / "htr.json").read_text(encoding="utf-8"))
    keras_side = LineDetectorConfig.from_dict(meta["config"]).line_type
    assert keras_side is not None and 0 < keras_side.threshold < 1
    pytest.importorskip("ai_edge_litert")
    from htr_tf.tflite.runtime import TFLiteLines

    assert TFLiteLines.open(bundled_model_path("lines", tflite=True)).config.line_type == keras_side
