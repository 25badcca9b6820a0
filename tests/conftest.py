"""Shared fixtures: tiny data made by the tests themselves (no network, no ../shared)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"
GW_DIR = SHARED / "data" / "gw"

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his "
         "from at which but have an they you were her she there been one all we their "
         "Letters Orders Instructions October 1755 Sir, Captain; it's \"quoted\" (yes) 42").split()


def render_text_line(text: str, height: int = 48, scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """A gray uint8 image of ``text`` drawn with an OpenCV Hershey font (dark ink on white)."""
    import cv2

    rng = np.random.default_rng(seed)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 2)
    img = np.full((th + base + 16, tw + 16), 255, np.uint8)
    cv2.putText(img, text, (8, th + 8), font, scale, int(rng.integers(0, 60)), 2, cv2.LINE_AA)
    if img.shape[0] != height:
        w = max(1, int(round(img.shape[1] * height / img.shape[0])))
        img = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
    return img


def render_note(lines: list[str], height: int = 1100, width: int = 1600) -> np.ndarray:
    """A page without a printed form: text lines 130 px apart from y=150, x=120, on light paper."""
    page = np.full((height, width), 245, np.uint8)
    y = 150
    for i, text in enumerate(lines):
        img = render_text_line(text, height=70, scale=1.6, seed=i)
        h, w = min(img.shape[0], height - y), min(img.shape[1], width - 120)
        page[y: y + h, 120: 120 + w] = np.minimum(page[y: y + h, 120: 120 + w], img[:h, :w])
        y += 130
    return page


def random_sentence(rng: random.Random, n_min: int = 2, n_max: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(n_min, n_max)))


def log_probs_reading(text: str, widths, frames: int, num_classes: int, chars: str):
    """Fake recogniser output: every line of a batch reads ``text`` greedily (one character every
    other frame, blanks between); frame lengths are ``width // 8``."""
    lp = np.full((len(widths), frames, num_classes), np.log(1e-4), np.float32)
    lp[:, :, 0] = np.log(0.99)
    for t, ch in enumerate(text):
        lp[:, 2 * t + 1, :] = np.log(1e-4)
        lp[:, 2 * t + 1, chars.index(ch) + 1] = np.log(0.9)
    return lp, (np.asarray(widths) // 8).astype(np.int32)


def make_line_records(out: Path, splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write a tiny line record set rendered with Hershey fonts; returns its path."""
    from htr_tf.charset import Charset
    from htr_tf.data.records import LineExample, RecordSetWriter
    from htr_tf.fileio import encode_png

    splits = splits or {"train": 32, "validation": 8, "test": 8}
    cs = Charset()
    rng = random.Random(seed)
    with RecordSetWriter(out, source="test", charset=cs, per_shard=16) as w:
        for split, n in splits.items():
            for i in range(n):
                text = random_sentence(rng)
                img = render_text_line(text, seed=i)
                w.add_line(split, LineExample(id=f"{split}-{i:04d}", image_png=encode_png(img),
                                              height=img.shape[0], width=img.shape[1], text=text,
                                              ids=cs.encode(text), form_id=f"f{i // 4}",
                                              writer="w0", source="test"))
    return out


@pytest.fixture(scope="session")
def tiny_line_records(tmp_path_factory) -> Path:
    """A record set with train/validation/test line splits (32/8/8 lines)."""
    return make_line_records(tmp_path_factory.mktemp("records") / "tiny")


@pytest.fixture
def gw_dir() -> Path:
    """The real George Washington pages; tests using it skip when ../shared is absent."""
    if not (GW_DIR / "transcription.txt").exists():
        pytest.skip("../shared/data/gw is not present")
    return GW_DIR


@pytest.fixture(scope="session")
def tiny_recognizer_dir(tmp_path_factory) -> Path:
    """An untrained tiny recognizer bundle (height 32, the default charset), saved once."""
    import keras

    from htr_tf.charset import Charset
    from htr_tf.geometry import LineGeometry
    from htr_tf.models.recognizer import Recognizer, RecognizerConfig, build_recognizer

    keras.utils.set_random_seed(0)
    config, charset = RecognizerConfig.tiny(), Charset()
    geometry = LineGeometry(height=32, max_width=1024, min_width=16, width_multiple=8)
    model = build_recognizer(config, charset.num_classes, geometry.height)
    path = tmp_path_factory.mktemp("models") / "tiny-recognizer"
    Recognizer(model, config, charset, geometry, {"name": "tiny-untrained"}).save(path)
    return path
