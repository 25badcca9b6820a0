"""Which language a line is written in, from its function words: an LM reads only its own.

The bundled LMs are English (Brown); the recogniser reads English and French. An English LM
pulls a French line towards English words: with soup P21h in five views, beam+lm read copiste
validation (French) at 13.86 % CER against greedy's 9.49 %, peraire 19.45 against 14.41.
Function words ("the", "of", "and"; "de", "la", "et") are short, frequent and read right even
when the rest of a line is not, so counting them in the greedy reading tells the language of a
line of ten words well enough: a line whose greedy reading holds more of another language's
function words than of the LM's is kept as greedy read it (:func:`htr_tf.recognize.recognize_crops`).

Chosen on validation splits (soup P21h, five views; CER % greedy / beam+lm / beam+lm with the gate):
copiste 9.49 / 13.86 / 9.82, peraire 14.41 / 19.45 / 14.48, synthetic v2 (half French) 6.59 / 7.18 /
5.66, synth-v2-lmheld train (English) 8.14 / 6.08 / 6.13.  Gating instead on the share of a line's
words in the LM's lexicon cost English lines more for less (at a share of 0.5: 9.75, 14.45, 5.37,
6.56).
"""

from __future__ import annotations

from htr_tf.decode.lexicon import split_word

__all__ = ["FUNCTION_WORDS", "guess_language"]

#: Frequent function words per language (ISO 639-1), lower case.  A word in more than one list
#: ("on", "son") says nothing.
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the of and to a in that is was he for it with as his on be at by i had this not are but "
        "from or have an they which one you were her all she there would their we him been has "
        "when who will more no if out so said what up its about into than them can only other new "
        "some could time these two may then do first any my now such like our over man me even "
        "most made after also did many before must through back years where much your way well "
        "down should because each just those people mr how too little state good very make world "
        "still own see men work long get here between both life being under never day same "
        "another know while last might us great old year off come since against go came right "
        "used take three".split()),
    "fr": frozenset(
        "de la le et les des en un une du est que qui pour dans par au sur pas plus ne il elle se "
        "ce sont avec son sa ses aux ou mais comme été leur nous vous je on lui cette y était fait "
        "tout être aussi dont ont avait bien deux très sans entre après".split()),
}

def guess_language(text: str) -> str | None:
    """The language (a key of :data:`FUNCTION_WORDS`) with the most function words in ``text``;
    None when none has any or two tie."""
    counts = dict.fromkeys(FUNCTION_WORDS, 0)
    for token in text.split():
        word = split_word(token)[1].lower()
        langs = [lang for lang, words in FUNCTION_WORDS.items() if word in words]
        if len(langs) == 1:
            counts[langs[0]] += 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    if ranked[0][1] == 0 or (len(ranked) > 1 and ranked[1][1] == ranked[0][1]):
        return None
    return ranked[0][0]
