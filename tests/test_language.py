"""A line's language from its function words, and LM decoders reading only their own language."""

import numpy as np

from htr_tf.charset import Charset
from htr_tf.decode.ctc import DecodedLine
from htr_tf.decode.language import guess_language
from htr_tf.geometry import LineGeometry


def test_guess_language_counts_function_words():
    assert guess_language("Il est né à Paris, de la rue") == "fr"
    assert guess_language("The end of the day,") == "en"
    assert guess_language("De, LA: Et") == "fr"                      # case and punctuation
    assert guess_language("Skyline Boulevard 35") is None            # no function word
    assert guess_language("de the") is None                          # a tie
    assert guess_language("on, On") is None                          # a word of both lists counts for none
    assert guess_language("") is None


CS = Charset("adehlt ", replacement="")


def _reads(text: str, T: int) -> np.ndarray:
    """Log-probs whose greedy reading is ``text`` (a character every other frame)."""
    C = len(CS.chars) + 1
    lp = np.full((T, C), np.log(0.05 / (C - 1)))
    lp[:, 0] = np.log(0.95)
    for k, ch in enumerate(text):
        lp[2 * k] = np.log(0.05 / (C - 1))
        lp[2 * k, CS.chars.index(ch) + 1] = np.log(0.95)
    return lp


class _Model:
    """A LineModel stub: an 80-pixel line reads "de la", a 120-pixel one "the"."""

    charset, width_downsample, decoding = CS, 8, {}
    geometry = LineGeometry(height=16, min_width=8, trim=False)

    def log_probs(self, images, widths):
        out = np.zeros((len(widths), images.shape[2] // 8, len(CS.chars) + 1))
        for i, w in enumerate(widths):
            n = int(w) // 8
            out[i, :n] = _reads("de la" if int(w) == 80 else "the", n)
        return out.astype(np.float32), np.asarray(widths) // 8


class _EnglishLM:
    """An LM decoder stub: reads every line it is given as "LM" and counts them."""

    name, scores_texts = "stub-lm", False

    def __init__(self, gate: bool):
        self.language, self.language_gate, self.rows = "en", gate, 0

    def decode(self, lp, lengths, charset):
        self.rows += len(lp)
        return [DecodedLine("LM", (), 1.0, (), (), 0.0, int(n)) for n in lengths]


def test_an_lm_decoder_reads_only_the_lines_in_its_language():
    from htr_tf.recognize import recognize_crops

    crops = [np.full((16, w), 255, np.uint8) for w in (80, 120, 80)]
    dec = _EnglishLM(gate=True)
    got = recognize_crops(_Model(), crops, decoder=dec, variants="none")
    assert [d.text for d in got] == ["de la", "LM", "de la"] and dec.rows == 1
    for views in ("none", "default"):
        ungated = _EnglishLM(gate=False)
        assert [d.text for d in recognize_crops(_Model(), crops, decoder=ungated, variants=views)] == ["LM"] * 3


def test_the_bundled_lms_say_they_are_english_and_decoders_take_it_or_an_override():
    import pytest

    from htr_tf.decode.beam_lm import WordLMDecoder, flashlight_available
    from htr_tf.decode.lm import BUNDLED_WORD_LM, read_meta
    from htr_tf.errors import ConfigError

    assert read_meta(BUNDLED_WORD_LM)["language"] == "en"
    if not flashlight_available():
        pytest.skip("flashlight-text is not installed (the lm extra)")
    assert WordLMDecoder().language == "en" and WordLMDecoder().options()["language_gate"] is True
    assert WordLMDecoder(language="fr").language == "fr"
    with pytest.raises(ConfigError, match="language must be one of"):
        WordLMDecoder(language="xx")
