"""Decoding the recogniser's CTC output: pluggable decoders chosen by name.

>>> from htr_tf.decode import get_decoder
>>> get_decoder("beam", beam_width=8).options()["beam_width"]
8
"""

from __future__ import annotations

from htr_tf.decode.ctc import (
    BeamSearchDecoder, DecodedLine, Decoder, GreedyDecoder, available_decoders, forced_align,
    forced_align_batch, get_decoder, register_decoder, tf_greedy_decode,
)

__all__ = [
    "BeamSearchDecoder", "DecodedLine", "Decoder", "GreedyDecoder", "available_decoders",
    "forced_align", "forced_align_batch", "get_decoder", "register_decoder", "tf_greedy_decode",
]
