"""TensorProto <-> numpy without TensorFlow, and the DataType enum <-> numpy dtype <-> name maps.

Const values are read to fill plugin fields and to check rule predicates; importing TensorFlow
for that would cost seconds, so the conversion is done here from the proto fields directly.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir.protos import TensorProto, tensor_shape_pb2, types_pb2


class TensorValueError(SurgeryError):
    """A TensorProto or dtype that cannot be converted."""


_DT = types_pb2.DataType
#: DataType enum -> numpy dtype, for the types a frozen graph's Const can hold (bfloat16 aside:
#: see `_numpy_of`).
ENUM_TO_NUMPY: dict[int, np.dtype] = {
    _DT.Value("DT_FLOAT"): np.dtype(np.float32),
    _DT.Value("DT_DOUBLE"): np.dtype(np.float64),
    _DT.Value("DT_HALF"): np.dtype(np.float16),
    _DT.Value("DT_INT8"): np.dtype(np.int8),
    _DT.Value("DT_INT16"): np.dtype(np.int16),
    _DT.Value("DT_INT32"): np.dtype(np.int32),
    _DT.Value("DT_INT64"): np.dtype(np.int64),
    _DT.Value("DT_UINT8"): np.dtype(np.uint8),
    _DT.Value("DT_UINT16"): np.dtype(np.uint16),
    _DT.Value("DT_UINT32"): np.dtype(np.uint32),
    _DT.Value("DT_UINT64"): np.dtype(np.uint64),
    _DT.Value("DT_BOOL"): np.dtype(np.bool_),
    _DT.Value("DT_COMPLEX64"): np.dtype(np.complex64),
    _DT.Value("DT_COMPLEX128"): np.dtype(np.complex128),
    _DT.Value("DT_STRING"): np.dtype(object),
    _DT.Value("DT_QINT8"): np.dtype(np.int8),
    _DT.Value("DT_QUINT8"): np.dtype(np.uint8),
    _DT.Value("DT_QINT16"): np.dtype(np.int16),
    _DT.Value("DT_QUINT16"): np.dtype(np.uint16),
    _DT.Value("DT_QINT32"): np.dtype(np.int32),
}
_DT_BFLOAT16 = _DT.Value("DT_BFLOAT16")

#: numpy dtype -> DataType enum (the plain, non-quantized type for each numpy dtype).
NUMPY_TO_ENUM: dict[np.dtype, int] = {}
for _enum, _np in ENUM_TO_NUMPY.items():
    if not _DT.Name(_enum).startswith(("DT_Q",)):
        NUMPY_TO_ENUM.setdefault(_np, _enum)

#: short names as TensorFlow spells them (`float32`, `int64`, `string`, ...) -> enum.
NAME_TO_ENUM: dict[str, int] = {
    "float32": _DT.Value("DT_FLOAT"),
    "float": _DT.Value("DT_FLOAT"),
    "float64": _DT.Value("DT_DOUBLE"),
    "double": _DT.Value("DT_DOUBLE"),
    "float16": _DT.Value("DT_HALF"),
    "half": _DT.Value("DT_HALF"),
    "bfloat16": _DT.Value("DT_BFLOAT16"),
    "int8": _DT.Value("DT_INT8"),
    "int16": _DT.Value("DT_INT16"),
    "int32": _DT.Value("DT_INT32"),
    "int64": _DT.Value("DT_INT64"),
    "uint8": _DT.Value("DT_UINT8"),
    "uint16": _DT.Value("DT_UINT16"),
    "uint32": _DT.Value("DT_UINT32"),
    "uint64": _DT.Value("DT_UINT64"),
    "bool": _DT.Value("DT_BOOL"),
    "string": _DT.Value("DT_STRING"),
    "complex64": _DT.Value("DT_COMPLEX64"),
    "complex128": _DT.Value("DT_COMPLEX128"),
    "qint8": _DT.Value("DT_QINT8"),
    "quint8": _DT.Value("DT_QUINT8"),
    "qint16": _DT.Value("DT_QINT16"),
    "quint16": _DT.Value("DT_QUINT16"),
    "qint32": _DT.Value("DT_QINT32"),
    "resource": _DT.Value("DT_RESOURCE"),
    "variant": _DT.Value("DT_VARIANT"),
}
ENUM_TO_NAME: dict[int, str] = {}
for _name, _enum in NAME_TO_ENUM.items():
    ENUM_TO_NAME.setdefault(_enum, _name)

# Which typed `*_val` field holds the values of each DataType when tensor_content is empty.
_VAL_FIELD: dict[int, str] = {
    _DT.Value("DT_FLOAT"): "float_val",
    _DT.Value("DT_DOUBLE"): "double_val",
    _DT.Value("DT_HALF"): "half_val",
    _DT.Value("DT_BFLOAT16"): "half_val",
    _DT.Value("DT_INT8"): "int_val",
    _DT.Value("DT_INT16"): "int_val",
    _DT.Value("DT_INT32"): "int_val",
    _DT.Value("DT_UINT8"): "int_val",
    _DT.Value("DT_UINT16"): "int_val",
    _DT.Value("DT_QINT8"): "int_val",
    _DT.Value("DT_QUINT8"): "int_val",
    _DT.Value("DT_QINT16"): "int_val",
    _DT.Value("DT_QUINT16"): "int_val",
    _DT.Value("DT_QINT32"): "int_val",
    _DT.Value("DT_INT64"): "int64_val",
    _DT.Value("DT_UINT32"): "uint32_val",
    _DT.Value("DT_UINT64"): "uint64_val",
    _DT.Value("DT_BOOL"): "bool_val",
    _DT.Value("DT_STRING"): "string_val",
    _DT.Value("DT_COMPLEX64"): "scomplex_val",
    _DT.Value("DT_COMPLEX128"): "dcomplex_val",
}


@functools.cache
def _bfloat16() -> np.dtype | None:
    """numpy's bfloat16 dtype, from ml_dtypes (it ships with TensorFlow); None without it.
    Imported on first use, not with this module: the import takes most of a second, and most
    graphs hold no bfloat16 tensor."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - only without TensorFlow's dependencies
        return None
    return np.dtype(ml_dtypes.bfloat16)


def _numpy_of(enum: int) -> np.dtype | None:
    """The numpy dtype of a DataType enum, or None when numpy has none."""
    found = ENUM_TO_NUMPY.get(enum)
    if found is None and enum == _DT_BFLOAT16:
        found = _bfloat16()
    return found


def dtype_enum(dtype: Any) -> int:
    """Any spelling of a dtype -> DataType enum: enum, `DT_FLOAT`, `float32`, numpy, tf.DType."""
    if isinstance(dtype, bool):
        raise TensorValueError(f"{dtype!r} is not a dtype")
    if isinstance(dtype, int):
        if dtype not in _DT.values() or dtype == 0:
            raise TensorValueError(f"{dtype} is not a TensorFlow DataType enum value")
        return int(dtype)
    enum = getattr(dtype, "as_datatype_enum", None)  # tf.DType, duck-typed (no TF import)
    if isinstance(enum, int):
        return enum
    if isinstance(dtype, str):
        text = dtype.strip()
        if text.upper().startswith("DT_") and text.upper() in _DT.keys():
            return _DT.Value(text.upper())
        if text.lower() in NAME_TO_ENUM:
            return NAME_TO_ENUM[text.lower()]
        raise TensorValueError(
            f"unknown dtype {dtype!r} (expected e.g. float32, int32, bool, string or DT_FLOAT)"
        )
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise TensorValueError(f"{dtype!r} is not a dtype") from None
    if np_dtype.kind in "OSU":
        return _DT.Value("DT_STRING")
    if np_dtype.name == "bfloat16" and np_dtype == _bfloat16():  # only once ml_dtypes is loaded
        return _DT_BFLOAT16
    if np_dtype not in NUMPY_TO_ENUM:
        raise TensorValueError(f"numpy dtype {np_dtype} has no TensorFlow DataType")
    return NUMPY_TO_ENUM[np_dtype]


def dtype_name(enum: int) -> str:
    """DataType enum -> short name (`float32`); unknown enums give their `DT_` name."""
    return ENUM_TO_NAME.get(enum) or _DT.Name(enum).lower()


def numpy_dtype(dtype: Any) -> np.dtype:
    """Any spelling of a dtype -> numpy dtype (object for strings)."""
    enum = dtype_enum(dtype)
    found = _numpy_of(enum)
    if found is None:
        raise TensorValueError(f"{_DT.Name(enum)} has no numpy equivalent")
    return found


def shape_of(proto: Any) -> tuple[int, ...] | None:
    """TensorShapeProto -> tuple of dims (-1 for unknown); None if the rank is unknown."""
    if proto.unknown_rank:
        return None
    return tuple(int(d.size) for d in proto.dim)


def shape_proto(shape: Any) -> tensor_shape_pb2.TensorShapeProto:
    """A tuple of ints (None or -1 = unknown dim), or None for unknown rank -> TensorShapeProto."""
    out = tensor_shape_pb2.TensorShapeProto()
    if shape is None:
        out.unknown_rank = True
        return out
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TensorValueError(f"shape {shape!r} is not a sequence of ints")
    for dim in shape:
        if dim is None:
            dim = -1
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TensorValueError(f"shape {shape!r}: dimension {dim!r} is not an int")
        if dim < -1:
            raise TensorValueError(f"shape {shape!r}: dimension {dim} is negative")
        out.dim.add(size=int(dim))
    return out


# The largest tensor `to_numpy` makes (a Const with no values and shape [2**40] is 146 bytes).
MAX_DECODED_BYTES = 1 << 34


def to_numpy(tensor: TensorProto) -> np.ndarray:
    """Decode a TensorProto (tensor_content or typed `*_val` fields, short fields padded)."""
    enum = tensor.dtype
    np_dtype = _numpy_of(enum)
    if np_dtype is None:
        name = _DT.Name(enum) if enum in _DT.values() else f"number {enum} (no such type)"
        raise TensorValueError(f"cannot decode a tensor of type {name}")
    shape = shape_of(tensor.tensor_shape)
    if shape is None or any(d < 0 for d in shape):
        raise TensorValueError(f"tensor has no static shape ({shape})")
    count = int(np.prod([int(d) for d in shape], dtype=object))  # no int64 overflow
    if count * np_dtype.itemsize > MAX_DECODED_BYTES:
        raise TensorValueError(
            f"tensor of shape {list(shape)} would take {count * np_dtype.itemsize} bytes "
            f"(more than {MAX_DECODED_BYTES}): not decoded"
        )
    if tensor.tensor_content and enum != _DT.Value("DT_STRING"):
        if len(tensor.tensor_content) % np_dtype.itemsize:
            raise TensorValueError(
                f"tensor_content has {len(tensor.tensor_content)} bytes, not a multiple of "
                f"{np_dtype.itemsize} ({np_dtype.name})"
            )
        data = np.frombuffer(tensor.tensor_content, dtype=np_dtype.newbyteorder("<"))
        if data.size != count:
            raise TensorValueError(
                f"tensor_content holds {data.size} values, shape {list(shape)} needs {count}"
            )
        return data.astype(np_dtype).reshape(shape)
    values = _typed_values(tensor, enum, np_dtype)
    if values.size == count:
        return values.reshape(shape)
    if values.size == 0:
        return np.zeros(shape, dtype=np_dtype) if np_dtype.kind != "O" else np.full(shape, b"")
    if values.size > count:
        raise TensorValueError(
            f"tensor holds {values.size} values, shape {list(shape)} needs {count}"
        )
    # TensorFlow's convention: the last value repeats to fill the shape (a scalar broadcasts).
    padded = np.concatenate([values, np.repeat(values[-1:], count - values.size)])
    return padded.reshape(shape)


def _typed_values(tensor: TensorProto, enum: int, np_dtype: np.dtype) -> np.ndarray:
    """The values held in the typed repeated field for `enum`, as a flat array."""
    field = _VAL_FIELD.get(enum)
    if field is None:
        raise TensorValueError(f"cannot decode a tensor of type {_DT.Name(enum)}")
    raw = getattr(tensor, field)
    if field == "string_val":
        return np.array(list(raw), dtype=object)
    if field == "half_val":  # IEEE half / bfloat16 bit patterns carried in int32s
        bits = np.array(list(raw), dtype=np.uint16)
        return bits.view(np_dtype)
    if field in ("scomplex_val", "dcomplex_val"):
        pairs = np.array(list(raw), dtype=np.float64).reshape(-1, 2)
        return (pairs[:, 0] + 1j * pairs[:, 1]).astype(np_dtype)
    return np.array(list(raw), dtype=np_dtype)


def from_numpy(array: Any, dtype: Any = None) -> TensorProto:
    """Encode an array (or scalar / nested list) as a TensorProto, as tf.make_tensor_proto does."""
    if dtype is not None:
        np_dtype = numpy_dtype(dtype)
        enum = dtype_enum(dtype)
        if np_dtype.kind == "O":
            arr = np.asarray(array, dtype=object)
        else:
            try:
                arr = np.asarray(array).astype(np_dtype, casting="same_kind")
            except TypeError:
                source = np.asarray(array)
                if source.dtype.kind in "iub" and np_dtype.kind in "iu":
                    arr = source.astype(np_dtype)
                else:
                    raise TensorValueError(
                        f"cannot store {source.dtype} values as {dtype_name(enum)}"
                    ) from None
            except ValueError as exc:
                raise TensorValueError(
                    f"cannot store values as {dtype_name(enum)}: {exc}"
                ) from None
    else:
        arr = np.asarray(array)
        if arr.dtype.kind in "SUO":
            arr = arr.astype(object)
        elif arr.dtype == np.float64 and not isinstance(array, np.ndarray | np.generic):
            arr = arr.astype(np.float32)  # Python floats become float32, as in tf.constant
        elif arr.dtype == np.int64 and not isinstance(array, np.ndarray | np.generic):
            if arr.size == 0 or (arr.min() >= -(2**31) and arr.max() < 2**31):
                arr = arr.astype(np.int32)  # Python ints become int32, as in tf.constant
        enum = dtype_enum(arr.dtype)
    tensor = TensorProto(dtype=enum)
    tensor.tensor_shape.CopyFrom(shape_proto(arr.shape))
    if enum == _DT.Value("DT_STRING"):
        for item in arr.reshape(-1):
            if isinstance(item, str):
                item = item.encode("utf-8")
            if not isinstance(item, bytes):
                raise TensorValueError(f"string tensor element {item!r} is not str or bytes")
            tensor.string_val.append(item)
        return tensor
    tensor.tensor_content = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return tensor
