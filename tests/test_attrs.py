"""Typed attributes (surgery.ir.attrs) and TensorProto <-> numpy (surgery.ir.tensor_values)."""

from __future__ import annotations

import numpy as np
import pytest

from surgery.errors import SurgeryError
from surgery.ir.attrs import AttrError, attr_kind, attr_value, infer_kind, make_attr
from surgery.ir.protos import TensorProto
from surgery.ir.tensor_values import dtype_enum, dtype_name, from_numpy, numpy_dtype, to_numpy


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (3, "int", 3),
        (3.0, "int", 3),
        ("7", "int", 7),
        (0.5, "float", 0.5),
        (2, "float", 2.0),
        ("1e-3", "float", 1e-3),
        (True, "bool", True),
        ("false", "bool", False),
        ("NHWC", "string", "NHWC"),
        ("float32", "type", "float32"),
        ("DT_INT32", "type", "int32"),
        (np.float16, "type", "float16"),
        ([1, -1, 3], "shape", (1, -1, 3)),
        (None, "shape", None),
        ([1, 2], "list(int)", [1, 2]),
        ([1, 2.5], "list(float)", [1.0, 2.5]),
        ([True, False], "list(bool)", [True, False]),
        (["a", b"b"], "list(string)", ["a", "b"]),
        (["float32", "int64"], "list(type)", ["float32", "int64"]),
        ([[1, 2], [3]], "list(shape)", [(1, 2), (3,)]),
        ([], "list(float)", []),
        (np.array([3, 4]), "list(int)", [3, 4]),
    ],
)
def test_make_attr_round_trips(value, kind, expected):
    attr = make_attr(value, kind)
    assert (
        attr_value(attr) == pytest.approx(expected)
        if kind == "float"
        else attr_value(attr) == expected
    )
    if kind != "list(float)" or value:
        assert attr_kind(attr) == kind


def test_tensor_attr_round_trips():
    arr = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = attr_value(make_attr(arr, "tensor"))
    assert out.dtype == np.int64 and out.shape == (2, 3) and (out == arr).all()


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        ("abc", "float", ["negSlope", "float", "'abc'"]),
        (True, "int", ["negSlope", "bool is not an int"]),
        (True, "float", ["negSlope", "bool"]),
        (1, "bool", ["negSlope", "True/False"]),
        (1.5, "int", ["whole number"]),
        (3, "string", ["string"]),
        ("float99", "type", ["float99"]),
        ([1, "x"], "list(int)", ["list(int)", "'x'"]),
        (5, "list(int)", ["not a list"]),
        ([1, True], "list(int)", ["bool"]),
        ([1, -2], "shape", ["negative"]),
        (1, "nonsense", ["unknown attribute kind"]),
    ],
)
def test_make_attr_refuses_with_the_field_name(value, kind, words):
    with pytest.raises(AttrError) as info:
        make_attr(value, kind, field="negSlope")
    assert isinstance(info.value, SurgeryError)
    for word in words:
        assert word in str(info.value)


def test_infer_kind_keeps_bools_apart_from_ints():
    assert infer_kind(True) == "bool"
    assert infer_kind(1) == "int"
    assert infer_kind(1.0) == "float"
    assert infer_kind("x") == "string"
    assert infer_kind([1, 2]) == "list(int)"
    assert infer_kind([1, 2.0]) == "list(float)"
    assert infer_kind([True, False]) == "list(bool)"
    assert infer_kind([]) == "list(int)"
    assert infer_kind(np.zeros(2)) == "tensor"
    assert infer_kind(np.float32) == "type"
    with pytest.raises(AttrError):
        infer_kind([True, 1])
    with pytest.raises(AttrError):
        infer_kind({"a": 1}, field="f")


def test_dtype_maps():
    assert dtype_enum("float32") == dtype_enum(np.float32) == dtype_enum("DT_FLOAT") == 1
    assert dtype_name(3) == "int32"
    assert numpy_dtype("DT_HALF") == np.float16
    assert numpy_dtype("string") == np.dtype(object)
    with pytest.raises(SurgeryError):
        dtype_enum("floaty")


def _tensor(dtype: int, shape: list[int]) -> TensorProto:
    t = TensorProto(dtype=dtype)
    for d in shape:
        t.tensor_shape.dim.add(size=d)
    return t


def test_typed_val_fields_and_broadcast():
    t = _tensor(1, [2, 2])
    t.float_val.append(1.5)  # one value fills the shape
    assert (to_numpy(t) == np.full((2, 2), 1.5, np.float32)).all()
    t = _tensor(3, [4])
    t.int_val.extend([1, 2])  # the last value repeats, as TensorFlow does
    assert to_numpy(t).tolist() == [1, 2, 2, 2]
    t = _tensor(19, [2])
    t.half_val.extend(np.array([1.0, -2.0], np.float16).view(np.uint16).tolist())
    assert to_numpy(t).tolist() == [1.0, -2.0]
    t = _tensor(7, [2])
    t.string_val.extend([b"a", b"bc"])
    assert to_numpy(t).tolist() == [b"a", b"bc"]
    t = _tensor(10, [])
    t.bool_val.append(True)
    assert to_numpy(t).item() is True
    t = _tensor(1, [3])
    t.tensor_content = b"\x00" * 8
    with pytest.raises(SurgeryError, match="3"):
        to_numpy(t)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([1.5, 2.5], dtype=np.float16),
        np.array([[True, False]]),
        np.array(7, dtype=np.int64),
        np.array([b"x", b"yz"], dtype=object),
        np.arange(4, dtype=np.uint8),
        np.array([1 + 2j], dtype=np.complex64),
    ],
)
def test_from_numpy_round_trips(value):
    out = to_numpy(from_numpy(value))
    assert out.shape == value.shape
    assert out.dtype == value.dtype
    assert (out == value).all()


def test_python_literals_follow_tf_constant():
    assert from_numpy(1.0).dtype == dtype_enum("float32")
    assert from_numpy([1, 2]).dtype == dtype_enum("int32")
    assert from_numpy(2**40).dtype == dtype_enum("int64")
    assert from_numpy("s").dtype == dtype_enum("string")
    assert to_numpy(from_numpy([1, 2], dtype="float16")).dtype == np.float16
    with pytest.raises(SurgeryError):
        from_numpy([1.5], dtype="int32")


def test_agrees_with_tensorflow():
    tf = pytest.importorskip("tensorflow")
    for value in (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True]), np.int32(4)):
        ours = TensorProto()
        ours.ParseFromString(tf.make_tensor_proto(value).SerializeToString())
        assert (to_numpy(ours) == value).all()
        theirs = tf.make_ndarray(tf.make_tensor_proto(to_numpy(from_numpy(value))))
        assert (theirs == value).all()
    scalar = TensorProto()
    scalar.ParseFromString(tf.make_tensor_proto(2.5, shape=[3]).SerializeToString())
    assert to_numpy(scalar).tolist() == [2.5, 2.5, 2.5]
