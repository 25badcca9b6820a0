"""N-gram LM building (own modified Kneser-Ney estimator), loading and bad input."""

from __future__ import annotations

import gzip
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from htr_tf.charset import Charset
from htr_tf.decode.lm import (
    BOS, BUNDLED_WORD_LM, EOS, UNK, arpa_vocabulary, boundary_token, build_lm, check_charset,
    check_lm_file, estimate_kneser_ney, lm_sidecars, load_kenlm, read_lexicon, read_meta,
    split_heldout, tokenize, write_arpa, write_lexicon,
)
from htr_tf.errors import ConfigError, DataError, ModelError

kenlm = pytest.importorskip("kenlm")

# A small natural-looking corpus: varied enough that modified Kneser-Ney discounts exist
# for the lower orders, with "the cat" frequent and "the cow" rare.
SUBJECTS = ["the cat", "the dog", "a man", "the woman", "my friend", "the old teacher", "a child"]
VERBS = ["saw", "liked", "found", "heard", "called", "met", "followed"]
OBJECTS = ["the cat", "a bird", "the house", "her brother", "the river", "a small boat", "the garden"]


def toy_corpus() -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(160):
        s, v, o = (rng.choice(x) for x in (SUBJECTS, VERBS, OBJECTS))
        end = "." if i % 3 else "!"
        lines.append(f"{s} {v} {o}{end}".capitalize())
    lines += ["Then the cow ate grass."]
    return lines


def _contexts_and_vocab(arpa: Path, order: int) -> tuple[list[list[str]], list[str]]:
    text = arpa.read_text(encoding="utf-8")
    ctxs: list[list[str]] = [[]]
    for n in range(1, order):
        sec = text.split(f"\\{n}-grams:\n")[1].split("\n\n")[0].splitlines()
        ctxs += [line.split("\t")[1].split() for line in sec]
    vocab = [w for w in arpa_vocabulary(arpa) if w != BOS]
    return ctxs, vocab


def _sum_over_vocab(model, context: list[str], vocab: list[str]) -> float:
    state = kenlm.State()
    if context and context[0] == BOS:
        model.BeginSentenceWrite(state)
        context = context[1:]
    else:
        model.NullContextWrite(state)
    for w in context:
        nxt = kenlm.State()
        model.BaseScore(state, w, nxt)
        state = nxt
    return sum(10.0 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)


@pytest.mark.filterwarnings("ignore:.*fallback")
@pytest.mark.parametrize("kind,order,prune", [("word", 3, (0,)), ("word", 4, (0, 0, 1, 1)),
                                              ("char", 5, (0,)), ("char", 5, (0, 0, 1, 2))])
def test_every_context_sums_to_one(tmp_path, kind, order, prune):
    out = tmp_path / f"{kind}.arpa"
    meta = build_lm(out, order, kind, lines=toy_corpus(), prune=prune, estimator="python")
    assert meta["ngrams"][0] == len(arpa_vocabulary(out))
    model = load_kenlm(out)
    assert model.order == order
    ctxs, vocab = _contexts_and_vocab(out, order)
    assert EOS in vocab and UNK in vocab
    worst = 0.0
    for ctx in ctxs:
        if ctx and ctx[-1] == EOS:
            continue
        worst = max(worst, abs(_sum_over_vocab(model, ctx, vocab) - 1.0))
    assert worst < 1e-4, worst


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_frequent_continuation_beats_rare(tmp_path):
    out = tmp_path / "w.arpa"
    build_lm(out, 3, "word", lines=toy_corpus(), estimator="python")
    m = load_kenlm(out)
    # "the cat." ends many sentences, "the cow" occurs once
    assert m.score("saw the cat.", bos=False, eos=False) > m.score("saw the cow", bos=False, eos=False)
    assert m.score("The cat saw the house.", bos=True, eos=True) > \
        m.score("house. the saw cat The", bos=True, eos=True)
    assert m.perplexity("The dog liked the river.") < m.perplexity("river dog The liked the.")


def test_kneser_ney_uses_continuation_counts():
    # "Francisco" is frequent but only ever follows "San": as a unigram (a backoff target)
    # it must be less likely than "glasses", which follows many words.
    sents = [["San", "Francisco"]] * 20 + [[w, "glasses"] for w in "red blue my his her our new old".split()]
    sents += [["the", w] for w in "red blue my his her our new old cat dog".split()]
    model = estimate_kneser_ney(sents, 2)
    vocab = model.vocab
    p1 = dict(zip(vocab, model.orders[0].logp))
    assert p1["glasses"] > p1["Francisco"]
    assert p1[BOS] == -99.0


def test_tokenize_matches_decoder_tokens():
    cs = Charset()
    assert tokenize("  A  b,c ", "char", cs) == ["A", "|", "b", ",", "c", "|"]
    assert tokenize("A  b,c", "word", cs) == ["A", "b,c"]
    cs_bar = Charset(" ab|", replacement="")
    assert boundary_token(cs_bar) == "<space>"
    assert tokenize("a|b a", "char", cs_bar) == ["a", "|", "b", "<space>", "a", "<space>"]
    with pytest.raises(ValueError):
        tokenize("x", "chars", cs)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_char_lm_vocabulary_is_the_charset(tmp_path):
    cs = Charset()
    out = tmp_path / "c.arpa.gz"
    meta = build_lm(out, 3, "char", lines=toy_corpus(), estimator="python", lexicon=False)
    assert meta["boundary"] == "|" and not lm_sidecars(out)["lexicon"].exists()
    vocab = set(arpa_vocabulary(out)) - {BOS, EOS, UNK}
    assert "|" in vocab and vocab <= set(cs.chars) | {"|"}
    assert check_lm_file(out) == "arpa.gz"
    assert check_charset(out, "char", cs) == "|"


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_unknown_characters_are_counted(tmp_path):
    cs = Charset()
    lines = toy_corpus() + ["The caf\u00e9 \u00e9tait ferm\u00e9."]
    meta = build_lm(tmp_path / "s.arpa", 2, lines=lines, estimator="python")
    assert meta["text_stats"]["skipped_lines"] == 1
    assert meta["text_stats"]["chars_in_skipped_lines"] == {"\u00e9": 3}
    meta = build_lm(tmp_path / "d.arpa", 2, lines=lines, estimator="python", unknown="drop")
    assert meta["text_stats"]["dropped_chars"] == {"\u00e9": 3}
    assert "ferm." in read_lexicon(lm_sidecars(tmp_path / "d.arpa")["lexicon"])
    with pytest.raises(DataError, match="not in the charset"):
        build_lm(tmp_path / "e.arpa", 2, lines=lines, estimator="python", unknown="error")
    assert cs.normalize("\u201cx\u201d") == '"x"'


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_lexicon_and_meta_sidecars(tmp_path):
    out = tmp_path / "w.arpa"
    lines = toy_corpus()
    meta = build_lm(out, 2, lines=lines, estimator="python", heldout_every=10)
    kept, held = split_heldout(lines, 10)
    assert meta["lines"] == len(kept) and meta["heldout_lines"] == len(held) == len(lines) // 10
    lex = read_lexicon(lm_sidecars(out)["lexicon"])
    counts = list(lex.values())
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == sum(len(s.split()) for s in kept)
    assert read_meta(out)["kind"] == "word"
    plain = tmp_path / "plain.tsv"
    write_lexicon({"b": 1, "a": 3}, plain)
    assert plain.read_text() == "a\t3\nb\t1\n"
    assert read_lexicon(plain) == {"a": 3, "b": 1}


LMPLZ = Path(__file__).resolve().parent / "fixtures" / "lmplz"


def read_arpa(path: Path) -> dict[str, tuple[float, float]]:
    """``{n-gram: (log10 p, log10 backoff)}`` of an ARPA file (gzip'd or not)."""
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    d, sec = {}, None
    for line in text.splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            sec = int(line[1])
        elif sec and line and not line.startswith("\\"):
            parts = line.split("\t")
            d[parts[1]] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else 0.0)
    return d


@pytest.mark.parametrize("name, order, prune", [("word3", 3, (0,)), ("word4-prune0011", 4, (0, 0, 1, 1))])
@pytest.mark.filterwarnings("ignore:.*fallback")
def test_kneser_ney_agrees_with_lmplz(tmp_path, name, order, prune):
    """The same n-grams, probabilities and backoffs as KenLM's lmplz on the same text (the
    committed references in tests/fixtures/lmplz, README there)."""
    from htr_tf.data.text import load_sentences

    ours = tmp_path / "ours.arpa"
    build_lm(ours, order, lines=load_sentences()[:1000], prune=prune, estimator="python", heldout_every=0,
             lexicon=False)
    a, b = read_arpa(ours), read_arpa(LMPLZ / f"brown1000-{name}.arpa.gz")
    assert set(a) == set(b)
    assert max(abs(a[k][0] - b[k][0]) for k in a if k != BOS) < 1e-5
    assert max(abs(a[k][1] - b[k][1]) for k in a) < 1e-5


@pytest.mark.skipif(shutil.which("lmplz") is None, reason="lmplz is not on PATH (see training/lm.md)")
def test_the_lmplz_references_are_what_lmplz_writes(tmp_path):
    from htr_tf.data.text import load_sentences

    out = tmp_path / "lmplz.arpa"
    build_lm(out, 4, lines=load_sentences()[:1000], prune=(0, 0, 1, 1), estimator="lmplz", heldout_every=0,
             lexicon=False)
    assert read_arpa(out) == read_arpa(LMPLZ / "brown1000-word4-prune0011.arpa.gz")


# -- bad input ---------------------------------------------------------------------------------------
def test_missing_lm_file(tmp_path):
    with pytest.raises(ModelError, match=r"nope\.arpa: language model file not found"):
        load_kenlm(tmp_path / "nope.arpa")


def test_corrupt_lm_files(tmp_path):
    garbage = tmp_path / "garbage.arpa"
    garbage.write_text("this is not an LM\n")
    with pytest.raises(ModelError, match=r"garbage\.arpa: not a language model"):
        load_kenlm(garbage)
    empty = tmp_path / "empty.arpa"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        load_kenlm(empty)
    badgz = tmp_path / "bad.arpa.gz"
    badgz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ModelError, match=r"bad\.arpa\.gz: corrupt gzip"):
        check_lm_file(badgz)
    good = tmp_path / "good.arpa"
    with pytest.warns(UserWarning):
        build_lm(good, 2, lines=["a b c", "b c d"], estimator="python")
    truncated = tmp_path / "truncated.arpa"
    truncated.write_bytes(good.read_bytes()[:120])
    with pytest.raises(ModelError, match=r"truncated\.arpa: corrupt or unreadable"):
        load_kenlm(truncated)
    with pytest.raises(ModelError, match="is a directory"):
        load_kenlm(tmp_path)


def test_empty_lexicon(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("\n# nothing\n")
    with pytest.raises(DataError, match=r"empty\.tsv: the lexicon is empty"):
        read_lexicon(p)
    with pytest.raises(DataError, match="not found"):
        read_lexicon(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match="empty lexicon"):
        write_lexicon({}, tmp_path / "x.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("word\tmany\n")
    with pytest.raises(DataError, match=r"bad\.tsv:1: count 'many'"):
        read_lexicon(bad)


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_charset_mismatch(tmp_path):
    small = Charset(" abcdefghijklmnopqrstuvwxyz.", replacement="")
    out = tmp_path / "lower.arpa"
    build_lm(out, 3, "char", lines=[s.lower() for s in toy_corpus()], charset=small, estimator="python")
    with pytest.raises(ModelError, match=r"lower\.arpa: charset mismatch between LM and model"):
        check_charset(out, "char", Charset(" abcdefghijklm.", replacement=""))
    assert check_charset(out, "char", Charset()) == "|"  # a model may know more characters
    with pytest.raises(ModelError, match="is a char LM, not a word LM"):
        check_charset(out, "word", small)
    assert check_charset(out, "char", small) == "|"
    # a foreign char LM (no metadata) whose tokens are not the charset's
    lp = tmp_path / "foreign.arpa"
    shutil.copy(out, lp)
    lp.write_text(re.sub(r"(?<=[\t ])\|(?=[\t \n])", "<sp>", lp.read_text()))
    with pytest.raises(ModelError, match="no word-boundary token"):
        check_charset(lp, "char", small)


def test_bad_build_options(tmp_path):
    with pytest.raises(ConfigError, match="must end in"):
        build_lm(tmp_path / "lm.txt", 3, lines=["a b"])
    with pytest.raises(ConfigError, match="non-decreasing"):
        build_lm(tmp_path / "lm.arpa", 3, lines=["a b"], prune=(0, 2, 1))
    with pytest.raises(ConfigError, match="unigrams cannot be pruned"):
        build_lm(tmp_path / "lm.arpa", 3, lines=["a b"], prune=(1,))
    with pytest.raises(DataError, match="no usable text"):
        build_lm(tmp_path / "lm.arpa", 3, lines=["", "  "])
    with pytest.raises(DataError, match="no such text file"):
        build_lm(tmp_path / "lm.arpa", 3, text=[tmp_path / "missing.txt"])


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_cli_build(tmp_path, capsys):
    from htr_tf.cli import main

    text = tmp_path / "corpus.txt.gz"
    with gzip.open(text, "wt", encoding="utf-8") as f:
        f.write("\n".join(toy_corpus()) + "\n")
    out = tmp_path / "lm" / "toy.arpa"
    assert main(["lm", "build", "--text", str(text), "--order", "3", "--out", str(out), "--quiet",
                 "--estimator", "python", "--prune", "0,0,1", "--index"]) == 0
    printed = capsys.readouterr().out
    assert "word 3-gram" in printed and "toy.hnsw" in printed
    meta = json.loads(lm_sidecars(out)["meta"].read_text())
    assert meta["order"] == 3 and meta["prune"] == [0, 0, 1] and meta["estimator"].endswith("kneser_ney")
    assert (tmp_path / "lm" / "toy.hnsw").exists()
    assert main(["lm", "build", "--text", str(tmp_path / "none.txt"), "--out", str(out)]) == 1
    assert "none.txt: no such text file" in capsys.readouterr().err


def test_bundled_word_lm():
    meta = read_meta(BUNDLED_WORD_LM)
    assert meta is not None and meta["kind"] == "word" and meta["order"] == 4
    assert BUNDLED_WORD_LM.stat().st_size < 3_000_000
    assert check_charset(BUNDLED_WORD_LM, "word", Charset()) is not None
    lex = read_lexicon(lm_sidecars(BUNDLED_WORD_LM)["lexicon"])
    assert lex["the"] > 10_000 and len(lex) == meta["vocabulary"]


def test_write_arpa_roundtrip(tmp_path):
    model = estimate_kneser_ney([["a", "b"], ["a", "c"], ["b", "c", "a"]] * 3, 2)
    write_arpa(model, tmp_path / "m.arpa.gz")
    with gzip.open(tmp_path / "m.arpa.gz", "rt") as f:
        head = f.read(40)
    assert head.startswith("\\data\\\nngram 1=6\nngram 2=")
    m = load_kenlm(tmp_path / "m.arpa.gz")
    assert math.isfinite(m.score("a b", bos=True, eos=True))


@pytest.mark.filterwarnings("ignore:.*fallback")
def test_cli_tune_with_tiny_model(tmp_path, capsys, tiny_recognizer_dir, tiny_line_records):
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from htr_tf.cli import main

    lm = tmp_path / "toy.arpa"
    build_lm(lm, 3, lines=toy_corpus(), estimator="python")
    out = tmp_path / "tune.json"
    assert main(["lm", "tune", "--model", str(tiny_recognizer_dir), "--data", str(tiny_line_records),
                 "--split", "validation", "--decoder", "beam+lm", "--lm", str(lm),
                 "--lm-weight", "0.5,1", "--word-score", "0", "--beam-width", "4",
                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].split() == ["beam_width", "lm_weight", "word_score", "CER", "%", "WER", "%", "lines/s"]
    assert len(printed) == 1 + 2 + 1
    best = json.loads(printed[-1])
    assert best["decoder"] == "beam+lm" and best["lm_weight"] in (0.5, 1.0) and best["lm"] == str(lm)
    assert 0.0 <= best["cer"] and best["beam_width"] == 4
    full = json.loads(out.read_text())
    assert full["lines"] == 8 and len(full["results"]) == 2 and full["split"] == "validation"
    assert main(["lm", "tune", "--model", str(tiny_recognizer_dir), "--data", str(tiny_line_records),
                 "--split", "nope", "--quiet"]) == 1
    assert "no line split 'nope'" in capsys.readouterr().err
