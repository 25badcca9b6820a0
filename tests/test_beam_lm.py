"""flashlight-text LM decoders (beam+lm, beam+charlm) on posteriors made here."""

from __future__ import annotations

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.decode import get_decoder
from htr_tf.decode.beam_lm import CharLMDecoder, WordLMDecoder, line_from_path
from htr_tf.decode.lm import build_lm, lm_sidecars
from htr_tf.errors import ConfigError, DataError, ModelError

pytest.importorskip("kenlm")
pytest.importorskip("flashlight.lib.text.decoder.kenlm")

CS = Charset()
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a quick brown dog jumps over the fox",
    "the lazy dog sleeps in the sun",
    "the brown fox runs to the river",
    "a lazy fox sleeps under the tree",
    "the dog and the fox are friends",
    "the sun is over the river",
    "a quick fox runs under the sun",
] * 6


def posteriors(texts: list[str], confuse: dict[int, dict[int, str]] | None = None, seed: int = 0,
               peak: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Sharp CTC posteriors: each character 2 frames then a blank; ``confuse[line][pos]`` makes
    character ``pos`` read as another character with the true one a close second."""
    rng = np.random.default_rng(seed)
    confuse = confuse or {}
    paths, wrong = [], []
    for li, t in enumerate(texts):
        p, w = [], []
        for pos, i in enumerate(CS.encode(t)):
            alt = confuse.get(li, {}).get(pos)
            a = CS.encode(alt)[0] if alt else 0
            p += [i, i, 0]
            w += [a, a, 0]
        paths.append(p)
        wrong.append(w)
    T = max(len(p) for p in paths)
    logits = rng.normal(0, 0.3, (len(texts), T, CS.num_classes)).astype(np.float32)
    for b, (p, w) in enumerate(zip(paths, wrong)):
        logits[b, np.arange(len(p)), p] += peak
        w = np.array(w)
        hit = np.flatnonzero(w)
        logits[b, hit, w[hit]] += peak + 1.0
        logits[b, len(p):, 0] += peak
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return lp.astype(np.float32), np.array([len(p) for p in paths])


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "toy-word3.arpa"
    with pytest.warns(UserWarning, match="fallback"):
        build_lm(out, 3, "word", lines=SENTENCES, estimator="python")
    return out


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "toy-char5.arpa"
    with pytest.warns(UserWarning, match="fallback"):
        build_lm(out, 5, "char", lines=SENTENCES, estimator="python", lexicon=False)
    return out


def check_line(line, lp_row, n):
    assert line.num_frames == n
    assert line.text == CS.decode(line.ids)
    assert len(line.spans) == len(line.ids) == len(line.char_confidences)
    for (s, e), c, i in zip(line.spans, line.char_confidences, line.ids):
        assert 0 <= s < e <= n
        assert 0.0 <= c <= 1.0
        assert c == pytest.approx(float(np.exp(lp_row[s:e, i].max())), rel=1e-5)
    starts = [s for s, _ in line.spans]
    assert starts == sorted(starts)
    if line.ids:
        assert line.confidence == pytest.approx(sum(line.char_confidences) / len(line.ids))


def test_word_lm_fixes_a_confusion(word_lm):
    texts = ["the lazy dog sleeps in the sun", "the brown fox runs to the river"]
    # "lazy" read as "lezy", "river" as "rivor"
    lp, ln = posteriors(texts, {0: {5: "e"}, 1: {29: "o"}})
    greedy = [x.text for x in get_decoder("greedy").decode(lp, ln, CS)]
    assert greedy == ["the lezy dog sleeps in the sun", "the brown fox runs to the rivor"]
    dec = get_decoder("beam+lm", lm=str(word_lm), beam_width=16)
    assert isinstance(dec, WordLMDecoder)
    out = dec.decode(lp, ln, CS)
    assert [x.text for x in out] == texts
    for b, line in enumerate(out):
        check_line(line, lp[b], ln[b])
    assert dec.options()["lm"] == str(word_lm)


def test_open_vocabulary(word_lm):
    # "dust" is not in the lexicon.  flashlight spells an unknown word as fragments that are
    # prefixes of lexicon words (here d-, u-, s-, t-), each costing unk_score; letters that
    # start no lexicon word cannot be written at all.
    texts = ["the dust runs to the river"]
    lp, ln = posteriors(texts)
    open_ = WordLMDecoder(word_lm, beam_width=16, unk_score=-2.0).decode(lp, ln, CS)
    assert open_[0].text == texts[0]
    closed = WordLMDecoder(word_lm, beam_width=16, unk_score=float("-inf")).decode(lp, ln, CS)
    assert "dust" not in closed[0].text


def test_char_lm_fixes_a_confusion(char_lm):
    texts = ["the lazy dog sleeps in the sun"]
    lp, ln = posteriors(texts, {0: {5: "e"}})
    dec = get_decoder("beam+charlm", lm=str(char_lm), beam_width=16, lm_weight=2.0)
    assert isinstance(dec, CharLMDecoder)
    out = dec.decode(lp, ln, CS)
    assert out[0].text == texts[0]
    check_line(out[0], lp[0], ln[0])
    assert "word_score" not in dec.options()


def test_empty_and_padded_lines(word_lm, char_lm):
    lp, ln = posteriors(["the dog", "a fox and the dog"])
    lp[0, :, :] = np.log(1e-6)
    lp[0, :, 0] = 0.0                      # line 0: all blank
    for dec in (WordLMDecoder(word_lm), CharLMDecoder(char_lm)):
        out = dec.decode(lp, ln, CS)
        assert out[0].text == "" and out[0].ids == () and out[0].confidence > 0.99
        assert out[1].text == "a fox and the dog"
        assert dec.decode(lp[:0], ln[:0], CS) == []
        zero = dec.decode(lp[:1], [0], CS)
        assert zero[0].text == "" and zero[0].num_frames == 0


def test_line_from_path_drops_edge_and_double_spaces():
    sp = CS.chars.index(" ") + 1
    a, b = CS.encode("ab")
    path = np.array([sp, 0, a, a, 0, sp, 0, sp, b, sp])
    lp = np.log(np.full((len(path), CS.num_classes), 1.0 / CS.num_classes, np.float32))
    line = line_from_path(lp, path, -1.0, CS)
    assert line.text == "a b"
    assert line.spans == ((2, 4), (5, 6), (8, 9))


def test_workers_give_the_same_text(word_lm):
    texts = SENTENCES[:8]
    lp, ln = posteriors(texts, {i: {3: "x"} for i in range(8)}, seed=1)
    one = WordLMDecoder(word_lm, beam_width=8).decode(lp, ln, CS)
    with WordLMDecoder(word_lm, beam_width=8, workers=2) as dec:
        two = dec.decode(lp, ln, CS)
        again = dec.decode(lp[:3], ln[:3], CS)       # the pool is kept between batches
    assert [x.text for x in one] == [x.text for x in two]
    assert [x.text for x in again] == [x.text for x in one[:3]]
    assert [x.spans for x in one] == [x.spans for x in two]


def test_bundled_lms_decode():
    texts = ["He said that the committee would meet on Monday."]
    lp, ln = posteriors(texts, {0: {8: "h"}})              # "thet"
    for name in ("beam+lm", "beam+charlm"):
        out = get_decoder(name, beam_width=16).decode(lp, ln, CS)
        assert out[0].text == texts[0], name


# -- bad input -----------------------------------------------------------------------------------------
def test_missing_and_corrupt_lm(tmp_path, word_lm):
    with pytest.raises(ModelError, match=r"missing\.arpa: language model file not found"):
        WordLMDecoder(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_bytes(word_lm.read_bytes()[:200])            # truncated inside the 1-grams
    lp, ln = posteriors(["the dog"])
    with pytest.raises(ModelError, match=r"bad\.arpa: corrupt or unreadable language model"):
        CharLMDecoder(bad).decode(lp, ln, CS)


def test_missing_or_empty_lexicon(tmp_path, word_lm):
    lp, ln = posteriors(["the dog"])
    with pytest.raises(DataError, match=r"nolex\.tsv: lexicon file not found"):
        WordLMDecoder(word_lm, lexicon=tmp_path / "nolex.tsv").decode(lp, ln, CS)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.tsv: the lexicon is empty"):
        WordLMDecoder(word_lm, lexicon=empty).decode(lp, ln, CS)
    unspellable = tmp_path / "greek.tsv"
    unspellable.write_text("\u03b1\u03b2\t3\n")
    with pytest.raises(DataError, match="no lexicon word can be spelled"):
        WordLMDecoder(word_lm, lexicon=unspellable).decode(lp, ln, CS)


def test_charset_mismatch(tmp_path, char_lm, word_lm):
    lp, ln = posteriors(["the dog"])
    other = Charset(CS.chars + "\u00e9")                        # one more character than the LM's
    lp2 = np.concatenate([lp, np.full(lp.shape[:2] + (1,), -20.0, np.float32)], -1)
    # a model that knows more characters than the LM decodes (they are <unk> to the LM) ...
    assert CharLMDecoder(char_lm).decode(lp2, ln, other)[0].text == "the dog"
    assert WordLMDecoder(word_lm).decode(lp2, ln, other)[0].text == "the dog"
    # ... one that cannot emit a character of the LM does not
    fewer = Charset(CS.chars.replace("z", ""))
    lp3 = np.delete(lp, CS.chars.index("z") + 1, axis=-1)
    with pytest.raises(ModelError, match=r"toy-char5\.arpa: charset mismatch between LM and model.*'z'"):
        CharLMDecoder(char_lm).decode(lp3, ln, fewer)
    with pytest.raises(ModelError, match="is a char LM, not a word LM"):
        WordLMDecoder(char_lm, lexicon=lm_sidecars(word_lm)["lexicon"]).decode(lp, ln, CS)
    with pytest.raises(ModelError, match="output classes"):
        WordLMDecoder(word_lm).decode(lp[:, :, :10], ln, CS)


def test_bad_options(word_lm):
    with pytest.raises(ConfigError, match="beam_width"):
        get_decoder("beam+lm", lm=str(word_lm), beam_width=0)
    with pytest.raises(ConfigError, match="workers"):
        WordLMDecoder(word_lm, workers="many")
    with pytest.raises(ConfigError, match="valid options"):
        get_decoder("beam+charlm", word_score=1.0)
