"""numpy arrays <-> ``tensorflow.TensorProto``, the payload of TF Serving's ``Predict``.

Numbers travel as ``tensor_content`` (raw little-endian bytes, what TF Serving itself
sends back), strings as ``string_val``.  Reading also accepts the typed ``*_val`` fields
that other clients fill, with TensorFlow's rule that a short list repeats its last value.
Written in numpy so a conversion costs microseconds, not a TensorFlow op.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from htr_tf.errors import DataError

__all__ = ["to_tensor_proto", "from_tensor_proto", "dtype_name", "DTYPES"]

# DataType enum values (tensorflow/core/framework/types.proto), fixed by the wire format.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23

#: DataType enum -> (name, numpy dtype or None for strings, TensorProto field for typed values).
DTYPES: dict[int, tuple[str, Any, str]] = {
    DT_FLOAT: ("float32", np.float32, "float_val"),
    DT_DOUBLE: ("float64", np.float64, "double_val"),
    DT_INT32: ("int32", np.int32, "int_val"),
    DT_UINT8: ("uint8", np.uint8, "int_val"),
    DT_INT16: ("int16", np.int16, "int_val"),
    DT_INT8: ("int8", np.int8, "int_val"),
    DT_UINT16: ("uint16", np.uint16, "int_val"),
    DT_INT64: ("int64", np.int64, "int64_val"),
    DT_BOOL: ("bool", np.bool_, "bool_val"),
    DT_HALF: ("float16", np.float16, "half_val"),
    DT_UINT32: ("uint32", np.uint32, "uint32_val"),
    DT_UINT64: ("uint64", np.uint64, "uint64_val"),
    DT_STRING: ("string", None, "string_val"),
}
_FROM_NUMPY = {np.dtype(v[1]): k for k, v in DTYPES.items() if v[1] is not None}


def dtype_name(dtype: int) -> str:
    """``DT_UINT8`` -> ``"uint8"`` (``"DataType N"`` for types this module does not handle)."""
    return DTYPES[dtype][0] if dtype in DTYPES else f"DataType {dtype}"


def to_tensor_proto(value: Any, proto: Any = None) -> Any:
    """A numpy array (numbers, bools, ``bytes``/``str`` strings) or scalar as a ``TensorProto``.

    ``proto`` (an empty ``TensorProto``, e.g. ``request.inputs[name]``) is filled in place,
    which saves copying a page-sized message once more.
    """
    if proto is None:
        from tensorflow.core.framework import tensor_pb2

        proto = tensor_pb2.TensorProto()
    a = np.asarray(value)
    for d in a.shape:
        proto.tensor_shape.dim.add(size=int(d))
    if a.dtype.kind in "OSU":
        proto.dtype = DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in a.reshape(-1))
        return proto
    dt = _FROM_NUMPY.get(a.dtype)
    if dt is None:
        raise DataError(f"cannot send a {a.dtype} array to the model server")
    proto.dtype = dt
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    proto.tensor_content = np.ascontiguousarray(a).tobytes()
    return proto


def from_tensor_proto(proto: Any, name: str = "tensor", copy: bool = True) -> np.ndarray:
    """A ``TensorProto`` as a numpy array (strings as an object array of ``bytes``).

    ``copy=False`` may return a read-only view of the proto's bytes (no copy of a page).

    A malformed proto (unknown type, content that does not fill the shape, a negative
    dimension) gives a :class:`DataError` naming ``name``.
    """
    if proto.dtype not in DTYPES:
        raise DataError(f"{name}: unsupported dtype {dtype_name(proto.dtype)}")
    if proto.tensor_shape.unknown_rank:
        raise DataError(f"{name}: the tensor has no shape (unknown rank)")
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise DataError(f"{name}: negative dimension in shape {list(shape)}")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    type_name, np_type, field = DTYPES[proto.dtype]
    if np_type is None:
        vals = list(proto.string_val)
        if len(vals) not in (n, 1) and not (n == 0 and not vals):
            raise DataError(f"{name}: {len(vals)} strings for shape {list(shape)}")
        out = np.empty(n, dtype=object)
        out[:] = vals if len(vals) == n else (vals * n)
        return out.reshape(shape)
    dtype = np.dtype(np_type).newbyteorder("<")
    content = proto.tensor_content          # each access copies the bytes out of the message: once
    if content:
        if len(content) != n * dtype.itemsize:
            raise DataError(f"{name}: {len(content)} bytes of content for a {type_name} "
                            f"tensor of shape {list(shape)} ({n * dtype.itemsize} expected)")
        return np.frombuffer(content, dtype).astype(np_type, copy=copy).reshape(shape)
    vals = getattr(proto, field)
    if proto.dtype == DT_HALF:
        arr = np.asarray(vals, np.uint16).view(np.float16)
    else:
        arr = np.asarray(vals, np_type)
    if arr.size == n:
        return arr.reshape(shape)
    if n == 0:
        return np.zeros(shape, np_type)
    if arr.size == 0:
        return np.zeros(shape, np_type)   # TensorFlow's rule: no values means zeros
    if arr.size > n:
        raise DataError(f"{name}: {arr.size} values for shape {list(shape)}")
    return np.concatenate([arr, np.full(n - arr.size, arr[-1], np_type)]).reshape(shape)
