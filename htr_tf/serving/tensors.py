"""numpy arrays <-> ``tensorflow.TensorProto``, the payload of TF Serving's ``Predict``.

The conversion itself is TensorFlow's (``tf.make_tensor_proto`` / ``tf.make_ndarray``:
numbers as ``tensor_content``, strings as ``string_val``, and TensorFlow's rules for the
typed ``*_val`` fields other clients fill); this module adds the checks a server needs
before trusting a request, so a malformed tensor gives a :class:`DataError` naming it.
TensorFlow is imported anyway by the ``tensorflow-serving-api`` protos.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htr_tf.errors import DataError

__all__ = ["to_tensor_proto", "from_tensor_proto", "dtype_name"]


def dtype_name(dtype: int) -> str:
    """A ``DataType`` enum value -> its name (``4`` -> ``"uint8"``; ``"DataType N"`` when unknown)."""
    import tensorflow as tf

    try:
        return tf.dtypes.as_dtype(dtype).name
    except TypeError:
        return f"DataType {dtype}"


def to_tensor_proto(value: Any, proto: Any = None) -> Any:
    """A numpy array (numbers, bools, ``bytes``/``str`` strings) or scalar as a ``TensorProto``
    (``tf.make_tensor_proto``); copied into ``proto`` (e.g. ``request.inputs[name]``) when given."""
    import tensorflow as tf

    try:
        made = tf.make_tensor_proto(np.asarray(value))
    except (TypeError, ValueError) as e:
        raise DataError(f"cannot send a {np.asarray(value).dtype} array to the model server: {e}") from None
    if proto is None:
        return made
    proto.CopyFrom(made)
    return proto


def from_tensor_proto(proto: Any, name: str = "tensor") -> np.ndarray:
    """A ``TensorProto`` as a numpy array (``tf.make_ndarray``; strings as an object array of bytes).

    A malformed proto (unknown type or rank, a negative dimension, content that does not fill
    the shape, more values than the shape holds) gives a :class:`DataError` naming ``name``.
    """
    import tensorflow as tf

    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise DataError(f"{name}: unsupported dtype {dtype_name(proto.dtype)}") from None
    if proto.tensor_shape.unknown_rank:
        raise DataError(f"{name}: the tensor has no shape (unknown rank)")
    shape = [int(d.size) for d in proto.tensor_shape.dim]
    if any(d < 0 for d in shape):
        raise DataError(f"{name}: negative dimension in shape {shape}")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if proto.tensor_content and dtype != tf.string:
        expected = n * dtype.size
        if len(proto.tensor_content) != expected:
            raise DataError(f"{name}: {len(proto.tensor_content)} bytes of content for a {dtype.name} "
                            f"tensor of shape {shape} ({expected} expected)")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: its values do not make a {dtype.name} tensor of shape {shape} ({e})") from None
