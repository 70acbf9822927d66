"""One generic IPluginV3 class and creator, specialised per plugin by its catalog schema.

Output shapes come from the schema's shape expressions, evaluated on TensorRT's IExprBuilder
(dims may be symbolic); output dtypes and the accepted formats (linear; float32, or int32 where
the schema says) from the schema too. `enqueue` runs the plugin's CuPy kernel where it has one
(`plugins.gpu.GPU_KERNELS`); a build-only plugin raises there, never computing a wrong result.
Classes are built per TensorRT module (`tensorrt` or `tensorrt_rtx_bindings`: same API family),
so nothing here imports TensorRT at import time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from surgery.ops.plugin_schema import PluginSchema
from surgery.ops.plugin_shapes import Sym


class _TrtOps:
    """plugin_shapes.SymOps on TensorRT's IExprBuilder."""

    def __init__(self, trt: Any, builder: Any) -> None:
        self.trt = trt
        self.builder = builder

    def constant(self, value: int) -> Any:
        """builder.constant(value)."""
        return self.builder.constant(int(value))

    def op(self, name: str, a: Any, b: Any) -> Any:
        """builder.operation(DimensionOperation.<name>, a, b)."""
        return self.builder.operation(getattr(self.trt.DimensionOperation, name), a, b)


def output_dims_exprs(
    trt: Any, schema: PluginSchema, fields: dict[str, Any], inputs: Any, builder: Any
) -> list[Any]:
    """The outputs' DimsExprs by the schema's shape expressions (known dims fold to ints)."""
    dims = []
    for exprs in inputs:
        row: list[Any] = []
        for i in range(len(exprs)):
            expr = exprs[i]
            row.append(int(expr.get_constant_value()) if expr.is_constant() else Sym(expr))
        dims.append(row)
    ops = _TrtOps(trt, builder)
    out = schema.output_dims(lambda k: dims[k], len(dims), fields, ops)
    return [
        trt.DimsExprs([d.expr if isinstance(d, Sym) else ops.constant(d) for d in shape])
        for shape in out
    ]


def has_gpu_kernel(name: str) -> bool:
    """Whether plugin `name` has a GPU kernel (else its engine builds but cannot run)."""
    from plugins.gpu import GPU_KERNELS

    return name in GPU_KERNELS


_TRT_TYPES = {"float32": "FLOAT", "float16": "HALF", "int32": "INT32"}


def _trt_dtype(trt: Any, name: str) -> Any:
    """The TensorRT DataType of a schema tensor dtype."""
    return getattr(trt.DataType, _TRT_TYPES[name])


_NP_TYPES = {"float32": np.float32, "int32": np.int32, "int8": np.int8, "int16": np.int16,
             "float16": np.float16, "float64": np.float64}  # fmt: skip


def _field_type(trt: Any, spec_type: str) -> Any:
    """The PluginFieldType of a schema field type."""
    names = {"float32": "FLOAT32", "int32": "INT32", "int8": "INT8", "int16": "INT16",
             "float16": "FLOAT16", "float64": "FLOAT64", "string": "CHAR", "bool": "INT32"}
    return getattr(trt.PluginFieldType, names[spec_type])


def _read_fields(schema: PluginSchema, collection: Any) -> dict[str, Any]:
    """Field values from a PluginFieldCollection (scalars unwrapped), defaults filled."""
    values = {f.name: f.default for f in schema.fields}
    for item in collection:
        spec = next((f for f in schema.fields if f.name == item.name), None)
        if spec is None:
            continue
        data = np.asarray(item.data)
        if spec.type == "string":
            values[spec.name] = bytes(data.astype(np.uint8)).decode("utf-8", "replace")
        else:
            values[spec.name] = data.item() if spec.is_scalar and data.size == 1 else data.tolist()
    return values


def _dtype_name(trt: Any, plugin: str, data_type: Any) -> str:
    """The kernels' dtype name of a TensorRT DataType; GpuKernelError for others."""
    from plugins.gpu import GpuKernelError

    for name, attr in _TRT_TYPES.items():
        if data_type == getattr(trt.DataType, attr, None):
            return name
    raise GpuKernelError(f"{plugin}: no GPU kernel for TensorRT data type {data_type}")


@lru_cache(maxsize=4)
def _plugin_class(trt: Any) -> type:
    """The generic Python plugin class for TensorRT module `trt`."""

    class SchemaPlugin(
        trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime
    ):
        """A plugin layer described by a catalog schema, run by a CuPy kernel."""

        def __init__(self, schema: PluginSchema, fields: dict[str, Any]) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.schema = schema
            self.fields = dict(fields)
            self.num_outputs = schema.num_outputs(self.fields)
            self.out_dtypes = schema.output_dtypes(self.fields)
            self.plugin_namespace = schema.namespace
            self.plugin_name = schema.name
            self.plugin_version = schema.version

        def get_capability_interface(self, kind: Any) -> Any:
            """This object implements core, build and runtime."""
            return self

        def clone(self) -> Any:
            """A copy with the same fields."""
            return SchemaPlugin(self.schema, self.fields)

        def get_output_data_types(self, input_types: Any) -> list[Any]:
            """The schema's output dtypes; float outputs follow the float inputs' precision."""
            half = trt.DataType.HALF in list(input_types) and "float16" in self.schema.precisions
            return [trt.DataType.HALF if half and d == "float32" else _trt_dtype(trt, d)
                    for d in self.out_dtypes]  # fmt: skip

        def get_output_shapes(self, inputs: Any, shape_inputs: Any, builder: Any) -> list[Any]:
            """By the schema's shape expressions, on TensorRT's expression builder."""
            return output_dims_exprs(trt, self.schema, self.fields, inputs, builder)

        def supports_format_combination(self, pos: int, in_out: Any, num_inputs: int) -> bool:
            """Linear layout; the schema's dtypes, where float tensors may all take one of the
            schema's precisions (float16 only where its kernel has a half path)."""
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            want = self._dtype(pos, num_inputs)
            if want != "float32":
                return bool(desc.type == _trt_dtype(trt, want))
            if desc.type not in [_trt_dtype(trt, p) for p in self.schema.precisions]:
                return False
            first = next(k for k in range(pos + 1) if self._dtype(k, num_inputs) == "float32")
            return bool(desc.type == in_out[first].desc.type)

        def _dtype(self, pos: int, num_inputs: int) -> str:
            """The schema dtype of tensor `pos` (inputs, then outputs)."""
            if pos < num_inputs:
                return self.schema.input_dtype(pos)
            return self.out_dtypes[pos - num_inputs]

        def configure_plugin(self, inputs: Any, outputs: Any) -> None:
            """The kernel's build-time check of the input shapes and dtypes (GpuKernelError)."""
            from plugins.gpu import GPU_KERNELS, check

            name = self.schema.name
            if name in GPU_KERNELS:
                descs = [i.desc for i in inputs]
                dtypes = [_dtype_name(trt, name, d.type) for d in descs]
                check(name, [tuple(d.dims) for d in descs], dtypes, self.fields)

        def on_shape_change(self, inputs: Any, outputs: Any) -> None:
            """Nothing depends on shapes."""

        def get_fields_to_serialize(self) -> Any:
            """The fields, typed by the schema."""
            items = []
            for spec in self.schema.fields:
                value = self.fields.get(spec.name)
                if value is None:
                    continue
                if spec.type == "string":
                    data = np.frombuffer(str(value).encode(), dtype=np.int8)
                else:
                    dtype = _NP_TYPES.get(spec.type, np.int32)
                    data = np.atleast_1d(np.asarray(value, dtype=dtype))
                items.append(trt.PluginField(spec.name, data, _field_type(trt, spec.type)))
            return trt.PluginFieldCollection(items)

        def get_workspace_size(self, inputs: Any, outputs: Any) -> int:
            """No scratch memory."""
            return 0

        def attach_to_context(self, context: Any) -> Any:
            """A fresh clone per execution context."""
            return self.clone()

        def set_tactic(self, tactic: int) -> None:
            """One tactic only."""

        def enqueue(
            self,
            input_desc: Any,
            output_desc: Any,
            inputs: Any,
            outputs: Any,
            workspace: Any,
            stream: int,
        ) -> None:
            """Run the plugin's CuPy kernel on TensorRT's stream (plugins.gpu.launch_io)."""
            from plugins.gpu import GpuKernelError, launch_io

            if not has_gpu_kernel(self.schema.name):
                raise GpuKernelError(
                    f"no GPU kernel for {self.schema.name} yet: surgery's Python plugin only "
                    "lets the engine build; run it where TensorRT's own plugin library has "
                    f"{self.schema.name}, or validate with the NumPy reference"
                )
            name = self.schema.name
            ins = [(tuple(d.dims), _dtype_name(trt, name, d.type), int(p))
                   for d, p in zip(input_desc, inputs, strict=True)]  # fmt: skip
            outs = [(tuple(d.dims), _dtype_name(trt, name, d.type), int(p))
                    for d, p in zip(output_desc, outputs, strict=True)]  # fmt: skip
            launch_io(name, self.fields, ins, outs, int(stream))

    return SchemaPlugin


def make_creator(trt: Any, schema: PluginSchema) -> Any:
    """An IPluginCreatorV3One for `schema`."""
    plugin_class = _plugin_class(trt)

    class Creator(trt.IPluginCreatorV3One):
        """Creates SchemaPlugin objects for one catalog plugin."""

        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name = schema.name
            self.plugin_namespace = schema.namespace
            self.plugin_version = schema.version
            self.field_names = trt.PluginFieldCollection(
                [trt.PluginField(f.name, np.array([]), _field_type(trt, f.type))
                 for f in schema.fields]  # fmt: skip
            )
            self.made: list[Any] = []

        def create_plugin(self, name: str, collection: Any, phase: Any) -> Any:
            """A plugin object holding the given fields."""
            plugin = plugin_class(schema, _read_fields(schema, collection))
            self.made.append(plugin)  # TensorRT holds a raw pointer; keep the object alive
            return plugin

    return Creator()
