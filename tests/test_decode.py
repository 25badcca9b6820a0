"""CTC decoders: hand-made posteriors with known answers, exact search on tiny cases, the TF twin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.decode import (BeamSearchDecoder, GreedyDecoder, available_decoders, forced_align,
                           get_decoder, tf_greedy_decode)
from htr_tf.errors import ConfigError, ModelError

CS = Charset("ab", replacement="")  # ids: blank 0, a 1, b 2


def posteriors(*frames: dict[str, float], charset: Charset = CS) -> np.ndarray:
    """``[T, C]`` log-probabilities from per-frame {char: prob} dicts ('_' is blank; the rest shared)."""
    out = np.zeros((len(frames), charset.num_classes))
    for t, f in enumerate(frames):
        ids = [0 if ch == "_" else charset.chars.index(ch) + 1 for ch in f]
        rest = [i for i in range(charset.num_classes) if i not in ids]
        out[t, rest] = max(1.0 - sum(f.values()), 1e-6) / max(len(rest), 1)
        out[t, ids] = list(f.values())
    out /= out.sum(1, keepdims=True)
    return np.log(out).astype(np.float32)


def exact_best_labelling(lp: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Sum every path's probability per collapsed labelling (only for tiny T and C)."""
    T, C = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(C), repeat=T):
        label = tuple(CS.ctc_collapse(path))
        probs[label] = probs.get(label, 0.0) + float(np.exp(sum(lp[t, c] for t, c in enumerate(path))))
    best = max(probs, key=probs.get)
    return best, float(np.log(probs[best]))


def labelling_logprob(lp: np.ndarray, label: tuple[int, ...]) -> float:
    T, C = lp.shape
    total = 0.0
    for path in itertools.product(range(C), repeat=T):
        if tuple(CS.ctc_collapse(path)) == label:
            total += float(np.exp(sum(lp[t, c] for t, c in enumerate(path))))
    return float(np.log(total))


# -- greedy ------------------------------------------------------------------------------------
def test_greedy_merges_repeats_and_keeps_blank_separated_repeats():
    lp = posteriors({"a": .9}, {"a": .8}, {"_": .9}, {"a": .7}, {"b": .6}, {"b": .95}, {"_": .9})
    line = GreedyDecoder().decode(lp[None], [7], CS)[0]
    assert line.text == "aab" and line.ids == (1, 1, 2)
    assert line.spans == ((0, 2), (3, 4), (4, 6))
    # a character's confidence is the highest probability over its run; the line's is their mean
    np.testing.assert_allclose(line.char_confidences, [.9, .7, .95], atol=1e-4)
    assert line.confidence == pytest.approx(np.mean([.9, .7, .95]), abs=1e-4)
    assert 0.0 <= line.confidence <= 1.0 and line.num_frames == 7


def test_greedy_ignores_frames_beyond_length():
    lp = np.stack([posteriors({"a": .9}, {"_": .9}, {"b": .9}, {"b": .9}),
                   posteriors({"b": .9}, {"b": .9}, {"a": .9}, {"a": .9})])
    lines = GreedyDecoder().decode(lp, np.array([1, 2]), CS)
    assert [x.text for x in lines] == ["a", "b"]
    assert lines[1].spans == ((0, 2),)


def test_greedy_empty_lines_and_zero_lengths():
    lp = np.stack([posteriors({"_": .8}, {"_": .6}), posteriors({"a": .9}, {"a": .9})])
    blank, none = GreedyDecoder().decode(lp, [2, 0], CS)
    assert blank.text == "" and blank.confidence == pytest.approx(.7, abs=1e-4)
    assert none.text == "" and none.confidence == 0.0 and none.num_frames == 0
    assert GreedyDecoder().decode(np.zeros((0, 5, 3), np.float32), [], CS) == []


def test_greedy_matches_charset_collapse_on_random_batches():
    rng = np.random.default_rng(0)
    cs = Charset()
    logits = rng.normal(size=(64, 40, cs.num_classes)).astype(np.float32) * 3
    logits[..., 0] += 2
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lengths = rng.integers(0, 41, 64)
    lines = GreedyDecoder().decode(lp, lengths, cs)
    for b, line in enumerate(lines):
        ids = cs.ctc_collapse(lp[b, : lengths[b]].argmax(-1))
        assert line.text == cs.decode(ids)
        assert len(line.spans) == len(line.text) == len(line.char_confidences)
        assert all(0 <= s < e <= lengths[b] for s, e in line.spans)


def test_decoder_input_errors():
    with pytest.raises(ModelError, match="output classes"):
        GreedyDecoder().decode(np.zeros((1, 4, 5), np.float32), [4], CS)
    with pytest.raises(ValueError, match="batch, frames, classes"):
        GreedyDecoder().decode(np.zeros((4, 3), np.float32), [4], CS)
    with pytest.raises(ValueError, match="lengths has 2"):
        GreedyDecoder().decode(np.zeros((1, 4, 3), np.float32), [4, 4], CS)


# -- beam search -------------------------------------------------------------------------------
def test_beam_beats_greedy_when_the_best_path_is_not_the_best_labelling():
    # best path: blank, blank -> "" (p = .16); but "a" has p = .35*.4*2 + .35^2 = .4025
    lp = posteriors({"_": .4, "a": .35, "b": .25}, {"_": .4, "a": .35, "b": .25})
    greedy = GreedyDecoder().decode(lp[None], [2], CS)[0]
    for backend in ("numpy", "tf"):
        beam = BeamSearchDecoder(beam_width=4, backend=backend).decode(lp[None], [2], CS)[0]
        assert greedy.text == "" and beam.text == "a", backend
        assert beam.score == pytest.approx(np.log(.4025), abs=1e-3)
        assert beam.score > labelling_logprob(lp, ())


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_is_exact_on_tiny_cases(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(6, CS.num_classes)) * 1.5
    lp = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
    best, logp = exact_best_labelling(lp)
    beam = BeamSearchDecoder(beam_width=64, min_prob=0.0).decode(lp[None], [6], CS)[0]
    assert beam.ids == best
    assert beam.score == pytest.approx(logp, abs=1e-4)
    greedy = GreedyDecoder().decode(lp[None], [6], CS)[0]
    assert beam.score >= labelling_logprob(lp, greedy.ids) - 1e-6


def test_beam_backends_agree_and_respect_lengths():
    rng = np.random.default_rng(1)
    cs = Charset()
    logits = rng.normal(size=(8, 30, cs.num_classes)).astype(np.float32) * 3
    logits[..., 0] += 2.5
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lengths = np.array([30, 12, 0, 5, 30, 29, 1, 17])
    a = BeamSearchDecoder(beam_width=8, backend="numpy", min_prob=0).decode(lp, lengths, cs)
    b = BeamSearchDecoder(beam_width=8, backend="tf").decode(lp, lengths, cs)
    assert [x.text for x in a] == [x.text for x in b]
    np.testing.assert_allclose([x.score for x in a], [x.score for x in b], atol=1e-3)
    assert a[2].text == "" and a[2].num_frames == 0
    for line, n in zip(a, lengths):
        assert all(0 <= s < e <= n for s, e in line.spans)
        assert all(0.0 <= c <= 1.0 for c in line.char_confidences)


def test_forced_align_spans():
    lp = posteriors({"a": .9}, {"a": .8}, {"_": .9}, {"a": .7}, {"b": .6}, {"b": .95}, {"_": .9})
    spans, score = forced_align(lp, [1, 1, 2])
    assert spans == [(0, 2), (3, 4), (4, 6)]
    assert score == pytest.approx(float(np.log([.9, .8, .9, .7, .6, .95, .9]).sum()), abs=1e-3)
    with pytest.raises(ValueError, match="does not fit"):
        forced_align(lp[:2], [1, 1, 2])


# -- registry ------------------------------------------------------------------------------------
def test_registry_lists_valid_choices():
    assert {"greedy", "beam"} <= set(available_decoders())
    with pytest.raises(ConfigError, match="valid choices: greedy, beam"):
        get_decoder("viterbi")
    with pytest.raises(ConfigError, match="valid options"):
        get_decoder("beam", width=3)
    with pytest.raises(ConfigError, match="beam_width"):
        get_decoder("beam", beam_width=0)
    assert get_decoder("beam", beam_width=3).options()["beam_width"] == 3


# -- the TF twin -------------------------------------------------------------------------------------
def test_tf_greedy_decode_equals_numpy():
    rng = np.random.default_rng(2)
    cs = Charset()
    logits = rng.normal(size=(16, 25, cs.num_classes)).astype(np.float32) * 3
    logits[..., 0] += 2
    logits[3, :, 0] += 50  # an all-blank line
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    lengths = rng.integers(0, 26, 16)
    lengths[0], lengths[3] = 0, 25
    text, conf = tf_greedy_decode(lp, lengths, cs.chars)
    ref = GreedyDecoder().decode(lp, lengths, cs)
    assert [t.decode() for t in text.numpy()] == [x.text for x in ref]
    np.testing.assert_allclose(conf.numpy(), [x.confidence for x in ref], atol=1e-5)
