"""Lexicon search: hnswlib candidates, weighted edit distance, case/punctuation, decoders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.decode import get_decoder
from htr_tf.decode.lexicon import (
    GreedyLexiconDecoder, LexiconCorrector, index_beside, split_word, weighted_edit_distance,
    word_vectors,
)
from htr_tf.decode.lm import write_lexicon
from htr_tf.errors import DataError

pytest.importorskip("hnswlib")

CS = Charset()
LEXICON = {"the": 500, "The": 120, "house": 40, "horse": 35, "garden": 20, "river": 18, "Atlanta": 9,
           "quickly": 12, "quick": 15, "brown": 11, "said.": 30, "said": 25, "he": 200, "it": 150,
           "was": 180, "in": 170, "hose": 2, "rarely": 3, "one": 60, "once": 8}


@pytest.fixture
def corrector(tmp_path):
    path = tmp_path / "words.lexicon.tsv.gz"
    write_lexicon(LEXICON, path)
    return LexiconCorrector(path, lm=None, k=5)


def test_split_word_and_vectors():
    assert split_word("(Hello),") == ("(", "Hello", "),")
    assert split_word("1,200") == ("", "1,200", "")
    v = word_vectors(["house", "House", "horse", "garden"], dim=64)
    assert v.shape == (4, 64) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.allclose(v[0], v[1])                       # case-insensitive
    assert v[0] @ v[2] > v[0] @ v[3]                     # house is nearer horse than garden


def test_weighted_edit_distance():
    assert weighted_edit_distance("house", "house") == 0.0
    assert weighted_edit_distance("hause", "house") == 1.0
    assert weighted_edit_distance("hose", "house") == 1.0
    assert weighted_edit_distance("houses", "house") == 1.0
    assert weighted_edit_distance("hause", "house", sub={("o", "a"): 0.3}) == pytest.approx(0.3)
    assert weighted_edit_distance("hose", "house", dele={"u": 0.4}) == pytest.approx(0.4)
    assert weighted_edit_distance("housee", "house", ins={"e": 0.2}) == pytest.approx(0.2)


def test_corrects_clear_misspellings_keeping_case_and_punctuation(corrector):
    assert corrector.correct("tho hause was in the gardem.") == "the house was in the garden."
    assert corrector.correct("Tne HAUSE, (quickIy)") == "The HOUSE, (quickly)"
    assert corrector.correct("atlamta") == "Atlanta"             # the lexicon's own spelling
    assert corrector.correct("atlanta") == "atlanta"             # a known word keeps its case


def test_leaves_words_alone(corrector):
    # in-lexicon words, numbers, punctuation, unclear or distant words stay as they are
    for text in ["the horse was in the river", "he said 1,200 times: 42%", "- ; ! ?",
                 "xylophone", "it was"]:
        assert corrector.correct(text) == text
    assert corrector.correct_lines(["tha house", ""]) == ["the house", ""]


def test_margin_controls_replacement(tmp_path):
    lex = {"cat": 10, "cut": 10}
    c = LexiconCorrector(lex, lm=None, margin=1.0)
    assert c.correct("cet") == "cet"           # equally near two words: no clear winner
    assert LexiconCorrector({"cat": 10, "cut": 1}, lm=None, min_count=1).correct("cet") == "cat"
    c2 = LexiconCorrector({"cat": 10, "cut": 10, "cet": 1}, lm=None, min_count=1, margin=50.0)
    assert c2.correct("cat") == "cat"


def test_fit_confusions_makes_habitual_errors_cheap(corrector):
    refs = ["the house", "a horse", "the river"] * 10
    hyps = ["the hause", "a harse", "the river"] * 10
    counts = corrector.fit_confusions(refs, hyps)
    assert counts == {"substitutions": 20, "insertions": 0, "deletions": 0}
    assert corrector.sub[("o", "a")] == pytest.approx(0.2)
    assert weighted_edit_distance("hause", "house", corrector.sub, corrector.ins, corrector.dele) \
        == pytest.approx(0.2)
    with pytest.raises(ValueError):
        corrector.fit_confusions(["a"], [])


def test_index_is_saved_beside_and_reused(tmp_path):
    lex = tmp_path / "words.lexicon.tsv.gz"
    write_lexicon(LEXICON, lex)
    c = LexiconCorrector(lex, lm=None)
    path = c.build_index(index_beside(lex))
    assert path == tmp_path / "words.hnsw" and path.exists()
    meta = json.loads((tmp_path / "words.hnsw.json").read_text())
    assert meta["fingerprint"] == c.fingerprint()
    c2 = LexiconCorrector(lex, lm=None)
    assert c2.index_path() == path                         # fresh: read from beside
    assert c2.candidates(["hause"])[0][0] in ("house", "horse")
    write_lexicon({**LEXICON, "meadow": 7}, lex)           # a changed lexicon: index is stale
    c3 = LexiconCorrector(lex, lm=None)
    assert c3.index_path() != path


def test_index_built_lazily_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    c = LexiconCorrector(dict(LEXICON), lm=None)
    assert c.correct("gardem") == "garden"
    cached = list((tmp_path / "cache" / "htr-tf").glob("lexicon-*.hnsw"))
    assert len(cached) == 1
    assert LexiconCorrector(dict(LEXICON), lm=None).index_path() == cached[0]


def test_empty_lexicon(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.tsv: the lexicon is empty"):
        LexiconCorrector(empty, lm=None)
    with pytest.raises(DataError, match="no alphabetic word"):
        LexiconCorrector({"42": 5, "...": 9}, lm=None)


def _posteriors(text: str) -> tuple[np.ndarray, np.ndarray]:
    ids = CS.encode(text)
    path = [x for i in ids for x in (i, i, 0)]
    lp = np.full((1, len(path), CS.num_classes), np.log(1e-4), np.float32)
    lp[0, np.arange(len(path)), path] = np.log(0.99)
    return lp, np.array([len(path)])


def test_lexicon_decoder_realigns_corrected_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lex = tmp_path / "w.lexicon.tsv"
    write_lexicon(LEXICON, lex)
    lp, ln = _posteriors("the hause")
    dec = get_decoder("lexicon", lexicon=str(lex), lm=None)
    assert isinstance(dec, GreedyLexiconDecoder)
    line = dec.decode(lp, ln, CS)[0]
    assert line.text == "the house"
    assert len(line.spans) == len(line.ids) == 9
    assert line.spans[5][0] == 15 and line.spans[5][1] <= 17   # "o" aligned where "a" was read
    assert line.char_confidences[5] == pytest.approx(1e-4 / (0.99 + 79e-4), rel=0.1)
    assert dec.options()["lexicon"] == str(lex)


@pytest.mark.slow   # builds the bundled lexicon's index (about 20 s on 2 busy cores)
def test_beam_lm_lexicon_decoder_runs_on_bundled_lm(tmp_path, monkeypatch):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lp, ln = _posteriors("He said that the house was old.")
    out = get_decoder("beam+lm+lexicon", beam_width=8).decode(lp, ln, CS)
    assert out[0].text == "He said that the house was old."
