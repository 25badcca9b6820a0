"""Several readings of a line (htr_tf.readings): views, CTC likelihood, the choice, the plumbing."""

import itertools

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.errors import DataError
from htr_tf.geometry import LineGeometry
from htr_tf.readings import (DEFAULT_VARIANTS, choose_reading, ctc_log_likelihood, parse_variants,
                             variant_line)

G = LineGeometry(height=16, min_width=8)


def test_parse_variants():
    assert parse_variants(None) == () and parse_variants("none") == () and parse_variants("") == ()
    assert parse_variants("default") == DEFAULT_VARIANTS
    assert parse_variants("wide, small,wide") == ("base", "wide", "small")   # base first, once each
    assert parse_variants(["base"]) == ()                                     # one view is one reading
    with pytest.raises(DataError, match="unknown reading variant.*bold"):
        parse_variants("small,bold")


def test_views_keep_the_height_and_change_what_they_say():
    line = np.full((16, 40), 255, np.uint8)
    line[4:12, 5:35] = 0
    views = {n: variant_line(line, G, n) for n in DEFAULT_VARIANTS}
    assert all(v.shape[0] == 16 and v.dtype == np.uint8 for v in views.values())
    assert np.array_equal(views["base"], line)
    assert views["narrow"].shape[1] == 34 and views["wide"].shape[1] == 48
    small = views["small"]
    assert small.shape[1] < 40 and (small[:2] == 255).all() and (small[-2:] == 255).all()
    assert (views["thin"] < 128).sum() < (line < 128).sum() and views["thin"].shape == line.shape
    with pytest.raises(DataError, match="unknown reading variant"):
        variant_line(line, G, "upside-down")


def _brute_force(lp, label):
    """log p(label | lp) by summing every path of T frames that collapses to it."""
    total = 0.0
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        if collapsed == list(label):
            total += np.exp(sum(lp[t, c] for t, c in enumerate(path)))
    return np.log(total) if total > 0 else -np.inf


def test_ctc_log_likelihood_sums_every_alignment():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 3))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = [[1, 2], [1, 1], [2]]
    lengths = [5, 5, 3]                          # the third line has 3 valid frames
    got = ctc_log_likelihood(lp, lengths, labels)
    want = [_brute_force(lp[0], [1, 2]), _brute_force(lp[1], [1, 1]), _brute_force(lp[2, :3], [2])]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # a labelling that cannot fit (a repeat needs a blank between) and an empty one
    assert ctc_log_likelihood(lp[:1, :1], [1], [[1, 1]])[0] == -np.inf
    np.testing.assert_allclose(ctc_log_likelihood(lp[:1], [5], [[]]), [lp[0, :, 0].sum()])


def _lp_reading(text_ids, T, p, C=3):
    """Log-probs that read ``text_ids`` with probability ``p`` per character frame (blanks between)."""
    lp = np.full((T, C), np.log((1 - p) / (C - 1)))
    lp[:, 0] = np.log(p)
    for k, c in enumerate(text_ids):
        lp[2 * k] = np.log((1 - p) / (C - 1))
        lp[2 * k, c] = np.log(p)
    return lp


def test_the_text_the_views_agree_on_wins_and_keeps_the_first_readings_frames():
    from htr_tf.decode.ctc import GreedyDecoder

    cs = Charset("ab", replacement="")
    base = _lp_reading([1, 2], 6, 0.55)          # unsure "ab"
    others = [_lp_reading([1, 1], 8, 0.9) for _ in range(3)]   # three sure "aa"
    lps = [base] + others
    readings = [GreedyDecoder().decode(lp[None], [lp.shape[0]], cs)[0] for lp in lps]
    assert [r.text for r in readings] == ["ab", "aa", "aa", "aa"]
    chosen = choose_reading(readings, lps, cs)
    assert chosen.text == "aa" and chosen.num_frames == 6          # the first reading's frames
    assert len(chosen.spans) == 2 and all(0 <= s < e <= 6 for s, e in chosen.spans)
    assert all(0.0 <= c <= 1.0 for c in chosen.char_confidences)
    # a lone dissenting view does not overrule the rest
    lps2 = [_lp_reading([1, 2], 6, 0.9)] * 3 + [_lp_reading([1, 1], 8, 0.9)]
    readings2 = [GreedyDecoder().decode(lp[None], [lp.shape[0]], cs)[0] for lp in lps2]
    assert choose_reading(readings2, lps2, cs) is readings2[0]


class _ViewModel:
    """A LineModel stub: a line of its original width reads "ab" unsurely, any other width
    (a narrower, wider or smaller view) reads "aa" surely."""

    charset, width_downsample, decoding = Charset("ab", replacement=""), 8, {}

    def __init__(self, geometry, original):
        self.geometry, self.original, self.calls = geometry, original, 0

    def log_probs(self, images, widths):
        self.calls += 1
        T = images.shape[2] // 8
        out = np.zeros((len(widths), T, 3))
        for i, w in enumerate(widths):
            n = int(w) // 8
            ids, p = ([1, 2], 0.55) if int(w) in self.original else ([1, 1], 0.9)
            out[i, :n] = _lp_reading(ids, n, p)
        return out.astype(np.float32), np.asarray(widths) // 8


def test_recognize_crops_reads_each_view_and_keeps_the_agreed_text():
    from htr_tf.recognize import recognize_crops

    g = LineGeometry(height=16, min_width=8, trim=False)
    crops = [np.full((16, w), 255, np.uint8) for w in (80, 120)]
    m = _ViewModel(g, {80, 120})
    once = recognize_crops(m, crops)
    assert [d.text for d in once] == ["ab", "ab"] and m.calls == 1
    m.calls = 0
    many = recognize_crops(m, crops, variants="default", batch_size=1)
    assert [d.text for d in many] == ["aa", "aa"]
    assert m.calls == 2 * len(DEFAULT_VARIANTS)                      # one pass per view and batch
    assert [d.num_frames for d in many] == [d.num_frames for d in once]
    assert [d.text for d in recognize_crops(m, crops, variants="none")] == ["ab", "ab"]

