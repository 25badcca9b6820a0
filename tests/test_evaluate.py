"""Error rates (pooled, checked against an independent edit distance) and recogniser evaluation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from htr_tf.errors import DataError
from htr_tf.evaluate import evaluate_recognizer, score_lines
from htr_tf.recognize import recognize_crops, width_buckets


def levenshtein(a, b) -> int:
    """Plain dynamic-programming edit distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def mutate(rng: random.Random, s: str) -> str:
    chars = list(s)
    for _ in range(rng.randint(0, 4)):
        op = rng.choice("sdi")
        k = rng.randrange(len(chars) + 1)
        if op == "i":
            chars.insert(k, rng.choice("abc xyz,."))
        elif chars and k < len(chars):
            if op == "d":
                del chars[k]
            else:
                chars[k] = rng.choice("abc xyz")
    return "".join(chars)


def test_jiwer_counts_agree_with_an_independent_levenshtein():
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog , .".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 8))) for _ in range(200)]
    hyps = [mutate(rng, r) for r in refs]
    s = score_lines(refs, hyps)
    for r, h, line in zip(refs, hyps, s["lines"]):
        assert line["char_edits"] == levenshtein(r, h), (r, h)
        assert line["word_edits"] == levenshtein(r.split(), h.split()), (r, h)
        assert line["ref_chars"] == len(r) and line["ref_words"] == len(r.split())
    total_c = sum(levenshtein(r, h) for r, h in zip(refs, hyps))
    total_w = sum(levenshtein(r.split(), h.split()) for r, h in zip(refs, hyps))
    assert s["char_edits"] == total_c
    assert s["cer"] == pytest.approx(total_c / sum(len(r) for r in refs))
    assert s["wer"] == pytest.approx(total_w / sum(len(r.split()) for r in refs))
    assert s["char_edits"] == s["char_substitutions"] + s["char_deletions"] + s["char_insertions"]


def test_pooled_rates_are_reported_not_the_mean_of_lines():
    refs = ["a", "a long reference line"]
    hyps = ["b", "a long reference line"]
    s = score_lines(refs, hyps)
    assert s["cer"] == pytest.approx(1 / 22)         # 1 edit over 22 reference characters
    assert s["mean_line_cer"] == pytest.approx(0.5)  # what a mean of per-line rates would say
    assert s["wer"] == pytest.approx(1 / 5)


def test_spaces_count_and_empty_references():
    s = score_lines(["a b", "", "x"], ["ab", "zz", " x"])
    assert [x["char_edits"] for x in s["lines"]] == [1, 2, 1]
    assert s["cer"] == pytest.approx(4 / 4)
    assert s["lines"][1]["cer"] == 2.0  # an empty reference counts as one unit
    empty = score_lines([], [])
    assert empty["cer"] is None and empty["lines"] == []
    with pytest.raises(ValueError):
        score_lines(["a"], [])


def test_width_buckets_group_similar_widths():
    batches = width_buckets([50, 10, 40, 20, 30], 2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 2], [0]]
    with pytest.raises(ValueError):
        width_buckets([1], 0)


# -- with a (tiny, untrained) recogniser --------------------------------------------------------
@pytest.fixture(scope="module")
def recognizer(tiny_recognizer_dir):
    from htr_tf.models.recognizer import Recognizer

    return Recognizer.load(tiny_recognizer_dir)


def test_evaluate_recognizer_report(recognizer, tiny_line_records):
    report = evaluate_recognizer(recognizer, tiny_line_records, "test", batch_size=3)
    json.dumps(report, allow_nan=False)
    assert report["num_lines"] == 8 and report["split"] == "test"
    assert [x["id"] for x in report["lines"]] == [f"test-{i:04d}" for i in range(8)]
    again = score_lines([x["ref"] for x in report["lines"]], [x["hyp"] for x in report["lines"]])
    assert report["cer"] == again["cer"] and report["wer"] == again["wer"]
    assert all(0.0 <= x["confidence"] <= 1.0 for x in report["lines"])
    assert report["decoder"] == {"name": "greedy"}
    # batching (and its padding) does not change what a line decodes to
    one = evaluate_recognizer(recognizer, tiny_line_records, "test", batch_size=1)
    assert [x["hyp"] for x in one["lines"]] == [x["hyp"] for x in report["lines"]]
    np.testing.assert_allclose([x["confidence"] for x in one["lines"]],
                               [x["confidence"] for x in report["lines"]], atol=1e-5)


def test_evaluate_limit_beam_and_bad_split(recognizer, tiny_line_records):
    report = evaluate_recognizer(recognizer, tiny_line_records, "validation", decoder="beam",
                                 decoder_options={"beam_width": 3}, limit=3)
    assert report["num_lines"] == 3 and report["decoder"]["beam_width"] == 3
    with pytest.raises(DataError, match="available"):
        evaluate_recognizer(recognizer, tiny_line_records, "nosuchsplit")


def test_recognize_lines_keeps_order(recognizer):
    from conftest import render_text_line

    crops = [render_text_line(t, seed=i) for i, t in enumerate(["a long line of text", "hi", "medium one"])]
    together = recognize_crops(recognizer, crops, batch_size=2)
    alone = [recognize_crops(recognizer, [c])[0] for c in crops]
    assert [x.text for x in together] == [x.text for x in alone]
    assert [x.num_frames for x in together] == [x.num_frames for x in alone]


def test_evaluate_recognizer_reports_its_views(recognizer, tiny_line_records):
    report = evaluate_recognizer(recognizer, tiny_line_records, "test", limit=3, variants="base,small")
    assert report["variants"] == ["base", "small"] and report["num_lines"] == 3
    assert evaluate_recognizer(recognizer, tiny_line_records, "test", limit=1)["variants"] == []
