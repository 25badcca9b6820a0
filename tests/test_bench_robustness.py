"""The perturbations of benchmarks/bench_robustness.py do what they say on a drawn line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_robustness.py"
    spec = importlib.util.spec_from_file_location("bench_robustness", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def line():
    img = np.full((40, 160), 230, np.uint8)
    cv2.putText(img, "line", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 20, 3)
    return img


def test_shrink_keeps_aspect_and_floor(bench, line):
    small = bench.shrink(line, 0.5)
    assert small.shape == (20, 80)
    assert bench.shrink(line, 0.01).shape[0] == 8


def test_slant_leans_right_and_keeps_ink(bench, line):
    out = bench.slant(line, 0.4)
    assert out.shape[0] == line.shape[0] and out.shape[1] > line.shape[1]
    assert (out < 128).sum() == pytest.approx((line < 128).sum(), rel=0.15)
    # leaning right: the top rows' ink moves right of the bottom rows' ink
    def centre(rows):
        ys, xs = np.nonzero(rows < 128)
        return xs.mean()
    before = centre(line[:15]) - centre(line[25:])
    after = centre(out[:15]) - centre(out[25:])
    assert after > before + 3


def test_stretch_changes_only_the_width(bench, line):
    assert bench.stretch(line, 0.5).shape == (40, 80)
    assert bench.stretch(line, 1.5).shape == (40, 240)


def test_binarize_two_levels(bench, line):
    noisy = np.clip(line.astype(int) + np.random.default_rng(0).integers(-20, 20, line.shape), 0, 255).astype(np.uint8)
    out = bench.binarize(noisy)
    assert set(np.unique(out)) == {0, 255}
    assert ((out == 0) == (line < 128)).mean() > 0.98


def test_fade_maps_paper_and_ink(bench, line):
    out = bench.fade(line, 200, 160)
    assert np.percentile(out, 90) == pytest.approx(200, abs=1)
    assert np.percentile(out, 1) == pytest.approx(160, abs=2)


def test_bad_fade_pair_is_named(bench):
    with pytest.raises(SystemExit, match="150:200"):
        bench.parse_fades("150:200")
