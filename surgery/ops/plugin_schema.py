"""Plugin schemas: the typed description of each TensorRT plugin creator, and field coercion.

Schemas live as JSON files in `plugins/catalog/` (one per plugin). A plugin node in a graph has
`op` = the creator name and one attr per field: scalars as `i`/`f`/`s`/`b`, arrays as `list`.
Values are coerced explicitly by the schema's declared type, never inferred from a literal.
Each output declares its dtype and its shape as expressions over input dims and fields
(`surgery.ops.plugin_shapes`); `PluginSchema.output_shapes` evaluates them on concrete shapes, and
`PluginSchema.output_dims` on symbolic ones (TensorRT's IExprBuilder, in `plugins.trt`).

For `surgery validate` (optional keys): `"side_inputs"` and `"deviations"`, lists of
`{"name", "reference", "doc"}`, and per output `"compare": {"padding": {"column", "plugin",
"original", "name", "doc"}}` (see `surgery.ops.plugin_contracts`). `"precisions"`: the dtypes the
plugin's float tensors may take together (default `["float32"]`; `"float16"` where its kernel
has a half-precision path). `"targets"`: per TensorRT target, what its plugin library has of
the plugin (`surgery.ops.targets`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from surgery.errors import RuleError
from surgery.ir.protos import AttrValue
from surgery.ops.plugin_contracts import CompareSpec, NamedReference, compare_spec, named_references
from surgery.ops.plugin_shapes import (
    Context,
    Node,
    ShapeExprError,
    SymOps,
    dim_value,
    inputs_in,
    names_in,
)
from surgery.ops.plugin_shapes import parse as parse_shape_expr
from surgery.ops.targets import TargetPlugin, parse_catalog_targets

CATALOG_DIR = Path(__file__).resolve().parents[2] / "plugins" / "catalog"
FIELD_TYPES = ("int8", "int16", "int32", "float16", "float32", "float64", "string", "bool")
LAYOUTS = ("NCHW", "NHWC", "any")
TENSOR_DTYPES = ("float32", "int32")
_INT_RANGE = {"int8": 2**7, "int16": 2**15, "int32": 2**31}
_FLOAT_MAX = {"float16": 65504.0, "float32": 3.4028234663852886e38, "float64": math.inf}
# `use plugins "tensorrt-8.6"` is the same catalog as "trt-8.6".
_CATALOG_ALIASES = {"tensorrt-": "trt-"}


@dataclass(frozen=True)
class FieldSpec:
    """One creator field: name, element type, length (1 scalar, N fixed, None variable)."""

    name: str
    type: str
    length: int | None = 1
    required: bool = True
    default: Any = None
    doc: str = ""
    maximum: float | None = None  # "max": the creator's limit; a rewrite clamps with a warning

    @property
    def is_scalar(self) -> bool:
        """Whether the field holds one value (stored as a scalar attr)."""
        return self.length == 1

    def describe(self) -> str:
        """`float32`, `int32[3]` or `float32[*]`."""
        if self.length == 1:
            return self.type
        return f"{self.type}[{'*' if self.length is None else self.length}]"


@dataclass(frozen=True)
class TensorSpec:
    """A plugin input or output: role name, how many tensors (variadic), dtype, output shape."""

    name: str
    min: int = 1
    max: int | None = 1  # None: unbounded
    doc: str = ""
    dtype: str = "float32"
    shape: tuple[Node, ...] | int | None = None  # outputs: dim expressions, or K: same as inK
    count: Node | None = None  # variadic outputs: how many tensors, as an expression
    shape_text: tuple[str, ...] | str = ()  # the shape as written in the catalog
    compare: CompareSpec | None = None  # outputs: how validate compares them


@dataclass(frozen=True)
class PluginSchema:
    """A plugin creator: name, version, namespace, fields, inputs, outputs, layout, doc."""

    name: str
    version: str
    fields: tuple[FieldSpec, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    namespace: str = ""
    layout: str = "any"
    doc: str = ""
    catalogs: tuple[str, ...] = ()
    path: str = ""
    side_inputs: tuple[NamedReference, ...] = ()
    deviations: tuple[NamedReference, ...] = ()
    precisions: tuple[str, ...] = ("float32",)  # float tensors' dtypes the kernel takes
    targets: tuple[tuple[str, TargetPlugin], ...] = ()  # target -> what its library has

    def side_input(self, name: str) -> NamedReference | None:
        """The side input called `name`, if the plugin declares one."""
        return next((s for s in self.side_inputs if s.name == name), None)

    def field(self, name: str) -> FieldSpec:
        """The field called `name`, or RuleError with a did-you-mean."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        names = [f.name for f in self.fields]
        hint = _did_you_mean(name, names)
        shown = ", ".join(names) or "none"
        raise RuleError(f"plugin {self.name} has no field '{name}'{hint} (fields: {shown})")

    def input_count(self) -> tuple[int, int | None]:
        """Least and most number of input tensors (most None: unbounded)."""
        low = sum(t.min for t in self.inputs)
        highs = [t.max for t in self.inputs]
        return low, None if any(h is None for h in highs) else sum(h for h in highs if h)

    def output_count(self) -> tuple[int, int | None]:
        """Least and most number of outputs (most None: unbounded)."""
        low = sum(t.min for t in self.outputs)
        highs = [t.max for t in self.outputs]
        return low, None if any(h is None for h in highs) else sum(h for h in highs if h)

    def input_names(self) -> list[str]:
        """Role names of the inputs, in slot order."""
        return [t.name for t in self.inputs]

    # ----------------------------------------------------------------------- output shapes
    def field_values(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` typed by the schema (float fields float, int fields int), defaults filled."""
        values: dict[str, Any] = {}
        for spec in self.fields:
            value = fields.get(spec.name, spec.default)
            values[spec.name] = None if value is None else coerce_field(self, spec, value)
        return values

    def input_dtype(self, index: int) -> str:
        """The dtype of input tensor `index` (variadic roles counted out)."""
        slot = 0
        for spec in self.inputs:
            most = spec.max if spec.max is not None else 1 << 30
            if index < slot + most:
                return spec.dtype
            slot += most
        return self.inputs[-1].dtype if self.inputs else "float32"

    def _output_slots(
        self, fields: dict[str, Any], num_inputs: int
    ) -> list[tuple[TensorSpec, int]]:
        """(output spec, index within it) for every output tensor, counts evaluated."""
        values = self.field_values(fields)
        slots: list[tuple[TensorSpec, int]] = []
        for spec in self.outputs:
            count = spec.min
            if spec.count is not None:
                ctx = Context(lambda k: (), num_inputs, values, text=str(spec.count))
                evaluated = dim_value(spec.count, ctx)
                if not isinstance(evaluated, int) or evaluated < spec.min:
                    raise ShapeExprError(
                        f"plugin {self.name} output '{spec.name}': count {spec.count} gave "
                        f"{evaluated}; expected at least {spec.min}"
                    )
                count = evaluated
            slots.extend((spec, i) for i in range(count))
        return slots

    def num_outputs(self, fields: dict[str, Any], num_inputs: int = 0) -> int:
        """How many output tensors the plugin makes with these fields."""
        return len(self._output_slots(fields, num_inputs))

    def output_dtypes(self, fields: dict[str, Any], num_inputs: int = 0) -> list[str]:
        """The dtype of every output tensor."""
        return [spec.dtype for spec, _ in self._output_slots(fields, num_inputs)]

    def output_dims(
        self,
        dims: Callable[[int], Sequence[Any]],
        num_inputs: int,
        fields: dict[str, Any],
        ops: SymOps | None = None,
    ) -> list[list[Any]]:
        """Output dims from input dims (`dims(k)`: ints or symbolic), by the schema's shapes."""
        values = self.field_values(fields)
        result = []
        for spec, index in self._output_slots(fields, num_inputs):
            if spec.shape is None:
                raise ShapeExprError(f"plugin {self.name} output '{spec.name}' declares no shape")
            if isinstance(spec.shape, int):
                if spec.shape >= num_inputs:
                    raise ShapeExprError(
                        f"plugin {self.name} output '{spec.name}' has the shape of input "
                        f"{spec.shape}, but the plugin got {num_inputs} input(s)"
                    )
                result.append(list(dims(spec.shape)))
                continue
            out = []
            for node, text in zip(spec.shape, spec.shape_text, strict=True):
                ctx = Context(dims, num_inputs, values, ops, index, str(text))
                try:
                    out.append(dim_value(node, ctx))
                except ShapeExprError as exc:
                    raise ShapeExprError(
                        f"plugin {self.name} output '{spec.name}': {exc}"
                    ) from None
            result.append(out)
        return result

    def output_shapes(
        self, input_shapes: Sequence[Sequence[int]], fields: dict[str, Any]
    ) -> list[tuple[int, ...]]:
        """Concrete output shapes for concrete input shapes and field values."""
        shapes = [tuple(int(d) for d in s) for s in input_shapes]
        low, high = self.input_count()
        if len(shapes) < low or (high is not None and len(shapes) > high):
            raise ShapeExprError(
                f"plugin {self.name} takes {low}{'+' if high is None else ''} input(s)"
                f"{'' if high in (None, low) else f' to {high}'}, got {len(shapes)}"
            )
        out = self.output_dims(lambda k: shapes[k], len(shapes), fields)
        return [tuple(int(d) for d in dims) for dims in out]


class Catalog:
    """A set of plugin schemas by creator name."""

    def __init__(self, schemas: Iterable[PluginSchema], names: tuple[str, ...] = ()) -> None:
        self._schemas = {s.name: s for s in schemas}
        self.names = names

    def __contains__(self, name: object) -> bool:
        """Whether a plugin of that creator name is in the catalog."""
        return name in self._schemas

    def __iter__(self) -> Iterator[PluginSchema]:
        """The schemas sorted by name."""
        return iter(sorted(self._schemas.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        """Number of plugins."""
        return len(self._schemas)

    def get(self, name: str) -> PluginSchema:
        """The schema of plugin `name`, or RuleError with a did-you-mean."""
        try:
            return self._schemas[name]
        except KeyError:
            hint = _did_you_mean(name, list(self._schemas))
            where = f" in catalog {', '.join(self.names)}" if self.names else ""
            raise RuleError(f"unknown plugin '{name}'{where}{hint}") from None


def _did_you_mean(word: str, candidates: list[str]) -> str:
    """` (did you mean 'x'?)` or ''."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- loading
def _tensor_spec(raw: dict[str, Any], path: Path) -> TensorSpec:
    """A TensorSpec from its JSON object (shape expressions parsed, not yet name-checked)."""
    if "name" not in raw:
        raise RuleError(f"{path}: an input/output has no 'name'")
    name = raw["name"]
    dtype = raw.get("dtype", "float32")
    if dtype not in TENSOR_DTYPES:
        raise RuleError(
            f"{path}: tensor {name!r} has dtype {dtype!r}; expected one of {TENSOR_DTYPES}"
        )
    shape: tuple[Node, ...] | int | None = None
    text: tuple[str, ...] | str = ()
    count = None
    try:
        raw_shape = raw.get("shape")
        if isinstance(raw_shape, str):
            match = re.fullmatch(r"in(\d+)", raw_shape)
            if match is None:
                raise ShapeExprError(
                    f"shape {raw_shape!r}: a string shape must name an input (in0)"
                )
            shape, text = int(match.group(1)), raw_shape
        elif isinstance(raw_shape, list):
            shape = tuple(parse_shape_expr(d) for d in raw_shape)
            text = tuple(str(d) for d in raw_shape)
        elif raw_shape is not None:
            raise ShapeExprError(f"shape {raw_shape!r}: expected a list of dims or 'inK'")
        if "count" in raw:
            count = parse_shape_expr(raw["count"])
    except ShapeExprError as exc:
        raise RuleError(f"{path}: tensor {name!r}: {exc}") from None
    return TensorSpec(
        name, int(raw.get("min", 1)), raw.get("max", 1), raw.get("doc", ""), dtype, shape,
        count, text, compare_spec(raw.get("compare"), name, raw.get("shape"), path),
    )  # fmt: skip


def _check_shapes(schema: PluginSchema, path: Path) -> None:
    """Shape expressions may read only the schema's fields, `i` (variadic outputs), real inputs."""
    fields = {f.name for f in schema.fields}
    _, most = schema.input_count()
    for spec in schema.outputs:
        if (spec.max is None or spec.max != spec.min) and spec.count is None:
            raise RuleError(f"{path}: variadic output {spec.name!r} needs a 'count' expression")
        nodes = list(spec.shape) if isinstance(spec.shape, tuple) else []
        allowed = fields | ({"i"} if spec.count is not None else set())
        wanted_inputs = {spec.shape} if isinstance(spec.shape, int) else set()
        for node in [*nodes, *([spec.count] if spec.count is not None else [])]:
            unknown = names_in(node) - allowed
            if unknown:
                bad = sorted(unknown)[0]
                raise RuleError(
                    f"{path}: output {spec.name!r} shape {node} reads {bad!r}, which is not a "
                    f"field{_did_you_mean(bad, sorted(allowed))}"
                )
            wanted_inputs |= inputs_in(node)
        if spec.count is not None and "i" in names_in(spec.count):
            raise RuleError(f"{path}: output {spec.name!r}: its count cannot read 'i'")
        too_far = sorted(k for k in wanted_inputs if most is not None and k >= most)
        if too_far:
            raise RuleError(
                f"{path}: output {spec.name!r} shape reads input {too_far[0]}, but the plugin "
                f"has at most {most} input(s)"
            )


def _field_spec(raw: dict[str, Any], path: Path) -> FieldSpec:
    """A FieldSpec from its JSON object, validating type and length."""
    name = raw.get("name")
    ftype = raw.get("type")
    if not name or ftype not in FIELD_TYPES:
        raise RuleError(f"{path}: field {name!r} has type {ftype!r}; expected one of {FIELD_TYPES}")
    length = raw.get("length", 1)
    if length == "*":
        length = None
    if length is not None and (not isinstance(length, int) or length < 1):
        raise RuleError(f"{path}: field {name!r} has bad length {length!r}")
    maximum = raw.get("max")
    if maximum is not None and (isinstance(maximum, bool) or not isinstance(maximum, int | float)):
        raise RuleError(f"{path}: field {name!r} has bad max {maximum!r}")
    return FieldSpec(
        name, ftype, length, bool(raw.get("required", True)), raw.get("default"),
        raw.get("doc", ""), maximum,
    )  # fmt: skip


def load_schema(path: str | Path) -> PluginSchema:
    """Read one plugin schema file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuleError(f"{path}: cannot read plugin schema: {exc}") from None
    for key in ("name", "version"):
        if key not in raw:
            raise RuleError(f"{path}: plugin schema has no '{key}'")
    layout = raw.get("layout", "any")
    if layout not in LAYOUTS:
        raise RuleError(f"{path}: layout {layout!r} is not one of {LAYOUTS}")
    schema = PluginSchema(
        name=raw["name"],
        version=str(raw["version"]),
        fields=tuple(_field_spec(f, path) for f in raw.get("fields", [])),
        inputs=tuple(_tensor_spec(t, path) for t in raw.get("inputs", [])),
        outputs=tuple(_tensor_spec(t, path) for t in raw.get("outputs", [])),
        namespace=raw.get("namespace", ""),
        layout=layout,
        doc=raw.get("doc", ""),
        catalogs=tuple(raw.get("catalogs", ())),
        path=str(path),
        side_inputs=named_references(raw.get("side_inputs"), "side_inputs", path),
        deviations=named_references(raw.get("deviations"), "deviations", path),
        precisions=_precisions(raw.get("precisions", ["float32"]), path),
        targets=parse_catalog_targets(raw.get("targets"), path),
    )
    _check_shapes(schema, path)
    return schema


PRECISIONS = ("float32", "float16")


def _precisions(raw: Any, path: Path) -> tuple[str, ...]:
    """The schema's "precisions": a list from PRECISIONS, float32 first."""
    if not isinstance(raw, list) or not raw or raw[0] != "float32":
        raise RuleError(f"{path}: \"precisions\" must be a list starting with \"float32\"")
    unknown = [p for p in raw if p not in PRECISIONS]
    if unknown:
        raise RuleError(f"{path}: unknown precision(s) {unknown} (known: {', '.join(PRECISIONS)})")
    return tuple(raw)


def canonical_catalog_name(name: str) -> str:
    """`tensorrt-8.6` -> `trt-8.6`."""
    for long, short in _CATALOG_ALIASES.items():
        if name.startswith(long):
            return short + name[len(long) :]
    return name


@lru_cache(maxsize=8)
def _all_schemas(directory: str) -> tuple[PluginSchema, ...]:
    """Every schema file in `directory`, sorted by name."""
    return tuple(load_schema(p) for p in sorted(Path(directory).glob("*.json")))


def load_catalog(names: Iterable[str] = (), directory: str | Path | None = None) -> Catalog:
    """The plugins of the named catalogs (`use plugins "trt-8.6"`); no names: every plugin."""
    schemas = _all_schemas(str(directory or CATALOG_DIR))
    wanted = tuple(canonical_catalog_name(n) for n in names)
    if not wanted:
        return Catalog(schemas)
    known = sorted({c for s in schemas for c in s.catalogs})
    for name in wanted:
        if name not in known:
            raise RuleError(
                f"unknown plugin catalog '{name}'{_did_you_mean(name, known)} "
                f"(catalogs: {', '.join(known)})"
            )
    return Catalog([s for s in schemas if set(s.catalogs) & set(wanted)], wanted)


# --------------------------------------------------------------------------- coercion
def _plain(value: Any) -> Any:
    """NumPy scalars/arrays -> Python values and lists; tuples -> lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def _type_name(value: Any) -> str:
    """A user-facing name for a value's type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return {int: "int", float: "float", str: "string"}.get(type(value), type(value).__name__)


def coerce_element(spec_type: str, value: Any) -> Any:
    """One element converted to the Python value for `spec_type`; ValueError why not."""
    value = _plain(value)
    if spec_type == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"got {_type_name(value)} {value!r}")
        return value
    if spec_type == "string":
        if not isinstance(value, str):
            raise ValueError(f"got {_type_name(value)} {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"got {_type_name(value)} {value!r}")
    if spec_type in _INT_RANGE:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"got float {value!r}, which is not a whole number")
            value = int(value)
        bound = _INT_RANGE[spec_type]
        if not -bound <= value < bound:
            raise ValueError(f"got {value}, out of range for {spec_type}")
        return value
    result = float(value)
    if math.isfinite(result) and abs(result) > _FLOAT_MAX[spec_type]:
        raise ValueError(f"got {value!r}, out of range for {spec_type}")
    return result


def coerce_field(schema: PluginSchema, spec: FieldSpec, value: Any) -> Any:
    """The value as the field's Python type (scalar or list); RuleError naming everything."""

    def fail(why: str) -> RuleError:
        return RuleError(
            f"plugin {schema.name} field '{spec.name}': expected {spec.describe()}, {why}"
        )

    value = _plain(value)
    if spec.is_scalar:
        if isinstance(value, list):
            raise fail(f"got {_type_name(value)} values")
        try:
            return coerce_element(spec.type, value)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if not isinstance(value, list):
        raise fail(f"got a single {_type_name(value)} {value!r}")
    if spec.length is not None and len(value) != spec.length:
        raise fail(f"got {_type_name(value)} values")
    items = []
    for i, item in enumerate(value):
        try:
            items.append(coerce_element(spec.type, item))
        except ValueError as exc:
            raise fail(f"item {i}: {exc}") from None
    return items


def kind_mismatch(schema: PluginSchema, spec: FieldSpec, kind: str) -> str | None:
    """Why a rule's declared kind (`int`, `list(float)`, ...) does not fit the field, or None."""
    is_list = kind.startswith("list(")
    base = kind[5:-1] if is_list else kind
    family = spec.type.rstrip("0123456789")
    ok = {"float": "float", "int": "int", "string": "string", "bool": "bool"}.get(base)
    if ok != family or is_list == spec.is_scalar:
        return f"field {spec.name!r} of plugin {schema.name} is {spec.describe()}, not {kind}"
    return None


def field_attr(schema: PluginSchema, field_name: str, value: Any) -> AttrValue:
    """The AttrValue that stores `value` in plugin field `field_name` (coerced by the schema)."""
    return spec_attr(schema, schema.field(field_name), value)


def spec_attr(schema: PluginSchema, spec: FieldSpec, value: Any) -> AttrValue:
    """The AttrValue that stores `value` in the field `spec` of `schema` (coerced)."""
    coerced = coerce_field(schema, spec, value)
    attr = AttrValue()
    slot = {"bool": "b", "string": "s"}.get(
        spec.type, "f" if spec.type.startswith("float") else "i"
    )
    if spec.is_scalar:
        setattr(attr, slot, coerced.encode("utf-8") if slot == "s" else coerced)
        return attr
    target = getattr(attr.list, slot)
    target.extend([v.encode("utf-8") for v in coerced] if slot == "s" else coerced)
    if not coerced:  # an empty list must still read back as a list attr
        attr.list.SetInParent()
    return attr
