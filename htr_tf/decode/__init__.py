"""Decoding the recogniser's CTC output: pluggable decoders chosen by name.

>>> from htr_tf.decode import get_decoder
>>> get_decoder("beam", beam_width=8).options()["beam_width"]
8
"""

from __future__ import annotations

from htr_tf.decode.ctc import (
    BEST_DECODER, DECODING_KEY, BeamSearchDecoder, DecodedLine, Decoder, GreedyDecoder, available_decoders, build_decoder,
    decoder_defaults, decoder_option_names, default_decoder, forced_align, forced_align_batch, get_decoder,
    lm_extra_installed, parse_decoder_options, register_decoder, tf_greedy_decode,
)

__all__ = [
    "BEST_DECODER", "default_decoder", "lm_extra_installed", "DECODING_KEY", "BeamSearchDecoder", "DecodedLine", "Decoder", "GreedyDecoder", "available_decoders",
    "build_decoder", "decoder_defaults", "decoder_option_names", "forced_align", "forced_align_batch",
    "get_decoder", "parse_decoder_options", "register_decoder", "tf_greedy_decode",
]
