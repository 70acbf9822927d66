"""Typed AttrValue creation and reading: the kind is always stated, values are coerced explicitly.

`make_attr(value, kind)` builds an AttrValue of a declared kind (`int`, `list(float)`, ...) and
refuses values that do not fit, naming the field; `attr_value` reads one back as a Python value.
`infer_kind` guesses a kind from a Python literal and exists only for the graphsurgeon-compatible
API, whose scripts never state kinds (there, unlike graphsurgeon, a bool is typed as a bool).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from surgery.errors import SurgeryError
from surgery.ir import tensor_values
from surgery.ir.protos import AttrValue, TensorProto


class AttrError(SurgeryError, TypeError):
    """A value that does not fit the declared attribute kind (also a TypeError for old scripts)."""


SCALAR_KINDS = ("int", "float", "bool", "string", "type", "shape", "tensor")
LIST_KINDS = ("list(int)", "list(float)", "list(bool)", "list(string)", "list(type)", "list(shape)")
KINDS = SCALAR_KINDS + LIST_KINDS

# AttrValue field holding each scalar kind (in AttrValue and in AttrValue.ListValue).
_FIELD = {
    "int": "i",
    "float": "f",
    "bool": "b",
    "string": "s",
    "type": "type",
    "shape": "shape",
    "tensor": "tensor",
}
_KIND_OF_FIELD = {field: kind for kind, field in _FIELD.items()}


def _where(field: str | None) -> str:
    return f"field {field!r}: " if field else ""


def _fail(field: str | None, kind: str, value: Any, why: str = "") -> AttrError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    detail = f" ({why})" if why else ""
    return AttrError(
        f"{_where(field)}expected {kind}, got {shown} ({type(value).__name__}){detail}"
    )


def _to_int(value: Any, field: str | None, kind: str = "int") -> int:
    if isinstance(value, bool | np.bool_):
        raise _fail(field, kind, value, "a bool is not an int")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _fail(field, kind, value, "not a whole number")
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise _fail(field, kind, value) from None
    raise _fail(field, kind, value)


def _to_float(value: Any, field: str | None, kind: str = "float") -> float:
    if isinstance(value, bool | np.bool_):
        raise _fail(field, kind, value, "a bool is not a float")
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _fail(field, kind, value) from None
    raise _fail(field, kind, value)


def _to_bool(value: Any, field: str | None, kind: str = "bool") -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(field, kind, value, "only True/False (or 'true'/'false') are bools")


def _to_bytes(value: Any, field: str | None, kind: str = "string") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.str_ | np.bytes_):
        return _to_bytes(value.item(), field, kind)
    raise _fail(field, kind, value)


def _to_type(value: Any, field: str | None, kind: str = "type") -> int:
    try:
        return tensor_values.dtype_enum(value)
    except SurgeryError as exc:
        raise AttrError(f"{_where(field)}expected {kind}: {exc}") from None


def _fill_shape(target: Any, value: Any, field: str | None, kind: str = "shape") -> None:
    try:
        target.CopyFrom(tensor_values.shape_proto(value))
    except SurgeryError as exc:
        raise AttrError(f"{_where(field)}expected {kind}: {exc}") from None


def _to_tensor(value: Any, field: str | None) -> TensorProto:
    if isinstance(value, TensorProto):
        return value
    if hasattr(value, "SerializeToString") and type(value).__name__ == "TensorProto":
        out = TensorProto()
        out.ParseFromString(value.SerializeToString())  # TensorFlow's own TensorProto class
        return out
    try:
        return tensor_values.from_numpy(value)
    except (SurgeryError, ValueError, TypeError) as exc:
        raise AttrError(f"{_where(field)}expected tensor: {exc}") from None


def _items(value: Any, field: str | None, kind: str) -> list[Any]:
    """The elements of a list-kind value; a lone scalar or a string is refused."""
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1)) if value.ndim else [value.item()]
    if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
        raise _fail(field, kind, value, "not a list")
    return list(value)


def make_attr(value: Any, kind: str, *, field: str | None = None) -> AttrValue:
    """An AttrValue of `kind` holding `value`, coerced explicitly; mismatches raise AttrError."""
    attr = AttrValue()
    if kind == "int":
        attr.i = _to_int(value, field)
    elif kind == "float":
        attr.f = _to_float(value, field)
    elif kind == "bool":
        attr.b = _to_bool(value, field)
    elif kind == "string":
        attr.s = _to_bytes(value, field)
    elif kind == "type":
        attr.type = _to_type(value, field)
    elif kind == "shape":
        _fill_shape(attr.shape, value, field)
    elif kind == "tensor":
        attr.tensor.CopyFrom(_to_tensor(value, field))
    elif kind in LIST_KINDS:
        inner = kind[5:-1]
        items = _items(value, field, kind)
        lst = attr.list
        if inner == "int":
            lst.i.extend(_to_int(v, field, kind) for v in items)
        elif inner == "float":
            lst.f.extend(_to_float(v, field, kind) for v in items)
        elif inner == "bool":
            lst.b.extend(_to_bool(v, field, kind) for v in items)
        elif inner == "string":
            lst.s.extend(_to_bytes(v, field, kind) for v in items)
        elif inner == "type":
            lst.type.extend(_to_type(v, field, kind) for v in items)
        else:
            for v in items:
                _fill_shape(lst.shape.add(), v, field, kind)
        if not items:
            attr.list.SetInParent()  # an empty list is still a list, not an unset value
    else:
        raise AttrError(
            f"{_where(field)}unknown attribute kind {kind!r} (known: {', '.join(KINDS)})"
        )
    return attr


def called_functions(attrs: Any) -> list[str]:
    """Names of the library functions an attribute map refers to: `func` values and lists of
    them (a While's `body` and `cond`, a call's `f`). One WhichOneof per value, and indexing
    the map by key, not `.values()`, whose Python generator costs more than the reads."""
    names: list[str] = []
    for key in attrs:
        value = attrs[key]
        which = value.WhichOneof("value")
        if which == "func":
            names.append(value.func.name)
        elif which == "list":
            names.extend(func.name for func in value.list.func)
    return names


def attr_kind(attr: AttrValue) -> str | None:
    """The kind an AttrValue holds (`int`, `list(float)`, ...); None if unset or of another kind."""
    which = attr.WhichOneof("value")
    if which == "list":
        for field, kind in _KIND_OF_FIELD.items():
            if len(getattr(attr.list, field)):
                return f"list({kind})"
        return "list(int)" if not attr.list.func else None
    return _KIND_OF_FIELD.get(which) if which else None


def _scalar(field: str, value: Any) -> Any:
    if field == "s":
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if field == "type":
        return tensor_values.dtype_name(value)
    if field == "shape":
        return tensor_values.shape_of(value)
    if field == "tensor":
        return tensor_values.to_numpy(value)
    if field == "f":
        return float(value)
    return value


def attr_value(attr: AttrValue) -> Any:
    """An AttrValue as Python: int, float, bool, str (bytes if not UTF-8), dtype name, shape
    tuple (None for unknown rank), numpy array for tensors, lists of those; None if unset."""
    which = attr.WhichOneof("value")
    if which is None:
        return None
    if which == "list":
        for field in _KIND_OF_FIELD:
            items = getattr(attr.list, field)
            if len(items):
                return [_scalar(field, v) for v in items]
        if attr.list.func:
            return [f.name for f in attr.list.func]
        return []
    if which == "func":
        return attr.func.name
    if which == "placeholder":
        return attr.placeholder
    return _scalar(which, getattr(attr, which))


def _is_dtype_like(value: Any) -> bool:
    if isinstance(getattr(value, "as_datatype_enum", None), int):
        return True
    return isinstance(value, np.dtype) or (
        isinstance(value, type) and issubclass(value, np.generic)
    )


def infer_kind(value: Any, *, field: str | None = None) -> str:
    """Guess a kind from a Python value (graphsurgeon compatibility only): bools stay bools."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, str | bytes):
        return "string"
    if isinstance(value, np.ndarray | TensorProto):
        return "tensor"
    if _is_dtype_like(value):
        return "type"
    if isinstance(value, list | tuple):
        if all(isinstance(v, bool | np.bool_) for v in value) and value:
            return "list(bool)"
        if any(isinstance(v, bool | np.bool_) for v in value):
            raise AttrError(f"{_where(field)}a list mixing bools with other values has no kind")
        if all(isinstance(v, int | np.integer) for v in value):
            return "list(int)"  # the empty list too, as graphsurgeon did
        if all(isinstance(v, int | float | np.integer | np.floating) for v in value):
            return "list(float)"  # any float promotes the whole list
        if all(isinstance(v, str | bytes) for v in value):
            return "list(string)"
        if all(_is_dtype_like(v) for v in value):
            return "list(type)"
        raise AttrError(
            f"{_where(field)}cannot infer a kind for list {value!r}: "
            "use ints, floats, bools, strings or dtypes"
        )
    raise AttrError(
        f"{_where(field)}cannot infer an attribute kind for {type(value).__name__} {value!r}"
    )


def const_attrs(tensor: TensorProto) -> dict[str, AttrValue]:
    """The attributes of a Const node holding `tensor`: its dtype and value."""
    return {"dtype": AttrValue(type=tensor.dtype), "value": AttrValue(tensor=tensor)}
