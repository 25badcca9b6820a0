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


def test_a_chosen_text_keeps_its_spaces_and_one_confidence_per_character():
    """Greedy readings may hold double or leading spaces, which charset.encode would normalise
    away: the chosen text keeps every character, each with its frames and confidence."""
    from htr_tf.decode.ctc import GreedyDecoder

    cs = Charset("ab ", replacement="")
    base = _lp_reading([3, 1, 3, 3, 2], 12, 0.55, C=4)                 # unsure " a  b"
    others = [_lp_reading([3, 1, 3, 2, 2], 14, 0.95, C=4) for _ in range(3)]   # sure " a bb"
    lps = [base] + others
    readings = [GreedyDecoder().decode(lp[None], [lp.shape[0]], cs)[0] for lp in lps]
    assert [r.text for r in readings[:2]] == [" a  b", " a bb"]
    chosen = choose_reading(readings, lps, cs)
    assert chosen.text == readings[1].text and chosen.num_frames == 12       # on the first reading's frames
    assert len(chosen.char_confidences) == len(chosen.spans) == len(chosen.ids) == len(chosen.text)


def test_an_lm_decoders_prior_counts_once_per_view():
    """With ``text_prior`` (an LM decoder's readings), a text's score is its summed likelihood
    plus, per view, what its decoder's score adds to its own view's likelihood: the text the LM
    prefers can win against the one the recogniser alone prefers, and only then."""
    import dataclasses

    from htr_tf.decode.beam_lm import CharLMDecoder, WordLMDecoder
    from htr_tf.decode.ctc import GreedyDecoder

    cs = Charset("ab", replacement="")
    lps = [_lp_reading([1, 2], 6, 0.55)] + [_lp_reading([1, 1], 8, 0.9)] * 3
    readings = [GreedyDecoder().decode(lp[None], [lp.shape[0]], cs)[0] for lp in lps]
    assert [r.text for r in readings] == ["ab", "aa", "aa", "aa"]
    assert choose_reading(readings, lps, cs).text == "aa"                 # likelihood alone
    own = [float(ctc_log_likelihood(lp[None], [lp.shape[0]], [list(r.ids)])[0]) for lp, r in zip(lps, readings)]
    ll = {t: sum(float(ctc_log_likelihood(lp[None], [lp.shape[0]], [ids])[0]) for lp in lps)
          for t, ids in (("ab", [1, 2]), ("aa", [1, 1]))}
    margin = ll["aa"] - ll["ab"]
    assert margin > 0
    for lm_bonus, want in ((margin / 4 * 1.2, "ab"), (margin / 4 * 0.8, "aa")):
        # the LM adds lm_bonus to "ab" and nothing to "aa": four views count it four times
        scored = [dataclasses.replace(r, score=o + (lm_bonus if r.text == "ab" else 0.0))
                  for r, o in zip(readings, own)]
        assert choose_reading(scored, lps, cs, text_prior=True).text == want
        assert choose_reading(scored, lps, cs).text == "aa"              # ignored without the flag
    assert WordLMDecoder.scores_texts and CharLMDecoder.scores_texts
    assert not getattr(GreedyDecoder(), "scores_texts", False)


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



def test_a_model_names_its_own_views_and_the_caller_can_say_otherwise():
    from htr_tf.errors import ModelError
    from htr_tf.readings import bundle_variants, resolve_variants
    from htr_tf.recognize import recognize_crops

    decoding = {"greedy": {"options": {}}, "variants": {"options": {"views": ["base", "small"]}}}
    assert bundle_variants(decoding) == ("base", "small") and bundle_variants({}) == () and bundle_variants(None) == ()
    assert resolve_variants(None, decoding) == ("base", "small") and resolve_variants("none", decoding) == ()
    for bad in ({"variants": {"views": ["base"]}}, {"variants": {"options": {"views": ["base", "bold"]}}}):
        with pytest.raises(ModelError, match="variants"):
            bundle_variants(bad)
    g = LineGeometry(height=16, min_width=8, trim=False)
    m = _ViewModel(g, {80})
    m.decoding = decoding
    crops = [np.full((16, 80), 255, np.uint8)]
    assert recognize_crops(m, crops)[0].text == "aa" and m.calls == 2      # the model's two views
    m.calls = 0
    assert recognize_crops(m, crops, variants="none")[0].text == "ab" and m.calls == 1


def test_views_saved_into_a_bundle_are_read_by_default(tiny_recognizer_dir, tiny_line_records, tmp_path):
    import shutil

    from htr_tf.evaluate import evaluate_recognizer
    from htr_tf.models.recognizer import Recognizer
    from htr_tf.readings import save_bundle_variants

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_recognizer_dir, bundle)
    assert save_bundle_variants(bundle, "default", {"data": "validation"}) == DEFAULT_VARIANTS
    rec = Recognizer.load(bundle)
    assert rec.decoding["variants"]["tuned"] == {"data": "validation"}
    assert evaluate_recognizer(rec, tiny_line_records, "test", limit=2)["variants"] == list(DEFAULT_VARIANTS)
    assert evaluate_recognizer(rec, tiny_line_records, "test", limit=2, variants="none")["variants"] == []


def test_the_graphs_choice_equals_numpys():
    """:func:`tf_choose_readings` (the served graph's) keeps the text and confidence that
    :func:`choose_reading` keeps, on random readings that disagree."""
    tf = pytest.importorskip("tensorflow")
    from htr_tf.decode.ctc import GreedyDecoder
    from htr_tf.readings import tf_choose_readings

    rng = np.random.default_rng(1)
    cs = Charset("abc ", replacement="")
    lps, lns = [], []
    for v in range(5):
        logits = rng.normal(size=(24, 10 + 2 * v, 5)) * 3
        logits[..., 0] += 1.5
        lps.append((logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32))
        lns.append(rng.integers(1, 11 + 2 * v, size=24).astype(np.int32))
    texts, conf = tf_choose_readings([tf.constant(x) for x in lps], [tf.constant(x) for x in lns], cs.chars)
    readings = [GreedyDecoder().decode(lp, ln, cs) for lp, ln in zip(lps, lns)]
    moved = 0
    for b in range(24):
        want = choose_reading([r[b] for r in readings], [lp[b, : ln[b]] for lp, ln in zip(lps, lns)], cs)
        assert texts.numpy()[b].decode() == want.text
        np.testing.assert_allclose(conf.numpy()[b], want.confidence, atol=1e-5)
        moved += want.text != readings[0][b].text
    assert moved >= 5     # the views overrule the first reading often here
    one_text, one_conf = tf_choose_readings([tf.constant(lps[0])], [tf.constant(lns[0])], cs.chars)
    assert [t.decode() for t in one_text.numpy()] == [r.text for r in readings[0]]


def test_the_graphs_ctc_equals_numpys():
    tf = pytest.importorskip("tensorflow")
    from htr_tf.decode.ctc import forced_align_batch
    from htr_tf.readings import _tf_ctc_lattice

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(12, 9, 4))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lengths = rng.integers(1, 10, size=12)
    labels = [list(rng.integers(1, 4, size=rng.integers(0, 6))) for _ in range(12)]
    labels[0] = [2, 2, 2, 2, 2, 2]                       # cannot fit its frames: -inf
    L = max(len(x) for x in labels)
    dense = np.array([x + [0] * (L - len(x)) for x in labels])
    args = (tf.constant(lp), tf.constant(lengths), tf.constant(dense), tf.constant([len(x) for x in labels]))
    np.testing.assert_allclose(_tf_ctc_lattice(*args)[0].numpy(), ctc_log_likelihood(lp, lengths, labels), rtol=1e-9)
    np.testing.assert_allclose(_tf_ctc_lattice(*args, viterbi=True)[0].numpy(),
                               [s for _, s in forced_align_batch(lp, lengths, labels)], rtol=1e-9)


@pytest.mark.parametrize("name", DEFAULT_VARIANTS)
def test_the_graphs_views_equal_numpys(name):
    """The served graph's views (:func:`tf_variant_lines`) are the numpy views of each line of a
    paper-padded batch, to a grey level (OpenCV's and TF's resizes round differently)."""
    tf = pytest.importorskip("tensorflow")
    from htr_tf.readings import tf_variant_lines

    rng = np.random.default_rng(3)
    g = LineGeometry(height=32, min_width=8)
    widths = [120, 70, 9]
    batch = np.full((3, 32, 120), 255, np.uint8)
    for i, w in enumerate(widths):
        batch[i, 8:24, 2: w - 2] = rng.integers(0, 256, size=(16, w - 4))
    out, out_w = (t.numpy() for t in tf_variant_lines(tf.constant(batch), tf.constant(widths), g, name))
    for i, w in enumerate(widths):
        want = variant_line(batch[i, :, :w], g, name)
        assert out_w[i] == want.shape[1] and (out[i, :, out_w[i]:] == 255).all()
        assert np.abs(out[i, :, : out_w[i]].astype(int) - want.astype(int)).max() <= 1
