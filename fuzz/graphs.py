"""Random valid GraphDefs built from the ops the shipped rules target (a Hypothesis strategy).

`graphs()` draws a small NHWC float32 network: one or two Placeholders, then blocks drawn from
`BLOCKS`, each the exact structure one of rules/*.rules looks for (LeakyRelu, tf-keras and
Keras 3 nearest upsampling, ResizeNearestNeighbor with a Const size, tf.math.l2_normalize,
Reshape((a, b)) and Flatten, Transpose pairs, TimeDistributed Reshape pairs) or near misses of it
(alpha >= 1, unequal factors, align_corners, a size that is no multiple), mixed with Relu,
Identity, Conv2D, Add, Mul and ConcatV2, in namespaces the scope rules name. Every tensor's shape
is tracked, so the graph is one TensorFlow runs (the numeric property relies on it) and, when
asked, every node carries `_output_shapes` as `surgery shapes --annotate` would record them (the
rules that read `x.shape` then fire without TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

from surgery.ir.attrs import make_attr
from surgery.ir.protos import GraphDef

# Namespaces the shipped rules' scopes and name globs use, and plain ones (weighted by repeats).
NAMESPACES = (
    "", "", "", "", "block1/", "block2/conv/", "fpn_p3upsampled/", "fpn_p4upsampled/",
    "fpn_p5upsampled/", "fpn_p2/", "mrcnn_class/", "mrcnn_mask/", "mrcnn_bbox_fc/", "ROI/",
    "roi_align_classifier/", "anchors/", "proposal/", "Preprocessor/", "Postprocessor/",
    "MultipleGridAnchorGenerator/", "rpn_out_class/", "lambda_1/",
)  # fmt: skip

BLOCKS = (
    "leaky", "relu", "identity", "conv", "add", "mul", "resize_const", "resize_keras",
    "keras3_upsample", "l2norm", "flatten", "reshape_pack", "transpose_pair", "reshape_pair",
    "concat",
)  # fmt: skip

# Blocks whose rewrite by the shipped rules keeps the graph's meaning (the numeric property).
SEMANTIC_BLOCKS = (
    "leaky", "relu", "identity", "conv", "add", "mul", "resize_const", "resize_keras",
    "keras3_upsample", "l2norm", "flatten", "reshape_pack", "concat",
)  # fmt: skip

Shape = tuple[int, ...]


@dataclass
class Built:
    """A generated graph: the GraphDef, its placeholders' shapes, the blocks it was built from."""

    graph_def: GraphDef
    inputs: dict[str, Shape]
    blocks: list[str] = field(default_factory=list)

    def serialize(self) -> bytes:
        """The GraphDef's deterministic wire bytes."""
        return self.graph_def.SerializeToString(deterministic=True)


class _Builder:
    """Adds nodes with tracked shapes; `draw` is Hypothesis' draw function."""

    def __init__(self, draw: st.DrawFn, annotate: bool, numeric: bool) -> None:
        self.draw = draw
        self.annotate = annotate
        self.numeric = numeric  # only what TensorFlow runs and the rules keep the meaning of
        self.gd = GraphDef()
        self.gd.versions.producer = 1882
        self.names: set[str] = set()
        self.pool: list[tuple[str, Shape]] = []  # tensors blocks may read (4-D and 2-D)

    # ------------------------------------------------------------------ nodes
    def name(self, base: str, namespace: str | None = None) -> str:
        if namespace is None:
            namespace = self.draw(st.sampled_from(NAMESPACES))
        candidate = f"{namespace}{base}"
        k = 0
        while candidate in self.names:
            k += 1
            candidate = f"{namespace}{base}_{k}"
        self.names.add(candidate)
        return candidate

    def node(
        self, name: str, op: str, inputs: list[str], attrs: dict[str, tuple[object, str]],
        shapes: list[Shape],
    ) -> str:  # fmt: skip
        node = self.gd.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, (value, kind) in attrs.items():
            node.attr[key].CopyFrom(make_attr(value, kind))
        if self.annotate:
            node.attr["_output_shapes"].CopyFrom(make_attr([list(s) for s in shapes],
                                                           "list(shape)"))  # fmt: skip
        return name

    def const(self, value: object, dtype: str, base: str = "Const", ns: str | None = None) -> str:
        array = np.asarray(value, dtype=dtype)
        return self.node(self.name(base, ns), "Const", [],
                         {"value": (array, "tensor"), "dtype": (dtype, "type")},
                         [array.shape])  # fmt: skip

    def unary(
        self, op: str, x: str, shape: Shape, ns: str | None = None,
        extra: dict[str, tuple[object, str]] | None = None,
    ) -> str:  # fmt: skip
        attrs = {"T": ("float32", "type"), **(extra or {})}
        return self.node(self.name(op, ns), op, [x], attrs, [shape])

    # ------------------------------------------------------------------ draws
    def pick(self, rank: int | None = 4) -> tuple[str, Shape]:
        choices = [t for t in self.pool if rank is None or len(t[1]) == rank]
        return self.draw(st.sampled_from(choices))

    def alpha(self) -> float:
        if self.numeric:
            return self.draw(st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.99, -0.5, 1.0, 1.5]))
        return self.draw(st.one_of(
            st.sampled_from([0.0, 0.2, 1.0, 0.9999999, -1.0, 1e-45, 3.4e38]),
            st.floats(allow_nan=True, allow_infinity=True, width=32),
        ))  # fmt: skip

    # ------------------------------------------------------------------ blocks
    def block(self, kind: str) -> None:
        draw = self.draw
        if kind in ("leaky", "relu", "identity"):
            x, shape = self.pick(None)
            op = {"leaky": "LeakyRelu", "relu": "Relu", "identity": "Identity"}[kind]
            extra: dict[str, tuple[object, str]] = {}
            # a LeakyRelu may leave alpha at its default (0.2) outside the numeric property
            if kind == "leaky" and (self.numeric or draw(st.integers(0, 4))):
                extra["alpha"] = (self.alpha(), "float")
            self.pool.append((self.unary(op, x, shape, extra=extra), shape))
        elif kind == "conv":
            x, (n, h, w, c) = self.pick(4)
            c2 = draw(st.integers(1, 4))
            k = draw(st.integers(1, 3))
            weights = np.linspace(-1, 1, k * k * c * c2, dtype=np.float32).reshape(k, k, c, c2)
            ns = draw(st.sampled_from(NAMESPACES))
            filt = self.const(weights, "float32", "kernel", ns)
            out = self.node(self.name("Conv2D", ns), "Conv2D", [x, filt], {
                "T": ("float32", "type"), "strides": ([1, 1, 1, 1], "list(int)"),
                "padding": ("SAME", "string"), "data_format": ("NHWC", "string"),
                "dilations": ([1, 1, 1, 1], "list(int)"),
            }, [(n, h, w, c2)])  # fmt: skip
            self.pool.append((out, (n, h, w, c2)))
        elif kind in ("add", "mul"):
            x, shape = self.pick(None)
            same = [t for t in self.pool if t[1] == shape]
            if draw(st.booleans()) and len(same) > 1:
                y = draw(st.sampled_from(same))[0]
            else:
                y = self.const(draw(st.sampled_from([0.5, 2.0, -1.0, 0.0])), "float32")
            op = "Add" if kind == "add" else "Mul"
            out = self.node(self.name(op), op, [x, y], {"T": ("float32", "type")}, [shape])
            self.pool.append((out, shape))
        elif kind in ("resize_const", "resize_keras"):
            x, (n, h, w, c) = self.pick(4)
            sh = draw(st.integers(1, 3))
            sw = sh if self.numeric or draw(st.integers(0, 3)) else draw(st.integers(1, 3))
            ns = draw(st.sampled_from(NAMESPACES))
            if kind == "resize_const":
                extra_h = 0 if self.numeric or draw(st.integers(0, 4)) else 1
                size_hw = (h * sh + extra_h, w * sw)
                size = self.const(np.array(size_hw, np.int32), "int32", "size", ns)
            else:
                hw = self.const(np.array([h, w], np.int32), "int32", "hw", ns)
                factors = self.const(np.array([sh, sw], np.int32), "int32", "factors", ns)
                size = self.node(self.name("mul", ns), "Mul", [hw, factors],
                                 {"T": ("int32", "type")}, [(2,)])  # fmt: skip
                size_hw = (h * sh, w * sw)
            align = False if self.numeric else draw(st.integers(0, 5)) == 0
            shape = (n, size_hw[0], size_hw[1], c)
            out = self.node(self.name("ResizeNearestNeighbor", ns), "ResizeNearestNeighbor",
                            [x, size], {"T": ("float32", "type"), "align_corners": (align, "bool"),
                                        "half_pixel_centers": (False, "bool")},
                            [shape])  # fmt: skip
            self.pool.append((out, shape))
        elif kind == "keras3_upsample":
            self.keras3_upsample()
        elif kind == "l2norm":
            x, shape = self.pick(None)
            rank = len(shape)
            axis = draw(st.integers(-rank, rank - 1))
            ns = draw(st.sampled_from(NAMESPACES))
            axis_value = axis if draw(st.booleans()) else [axis]
            ax = self.const(np.array(axis_value, np.int32), "int32", "axis", ns)
            sq = self.unary("Square", x, shape, ns)
            reduced = tuple(1 if i == axis % rank else d for i, d in enumerate(shape))
            sm = self.node(self.name("Sum", ns), "Sum", [sq, ax],
                           {"T": ("float32", "type"), "Tidx": ("int32", "type"),
                            "keep_dims": (True, "bool")}, [reduced])  # fmt: skip
            eps = self.const(np.float32(draw(st.sampled_from([1e-12, 1e-6, 0.5]))), "float32",
                             "eps", ns)  # fmt: skip
            mx = self.node(self.name("Maximum", ns), "Maximum", [sm, eps],
                           {"T": ("float32", "type")}, [reduced])  # fmt: skip
            rs = self.unary("Rsqrt", mx, reduced, ns)
            out = self.node(self.name("l2_normalize", ns), "Mul", [x, rs],
                            {"T": ("float32", "type")}, [shape])  # fmt: skip
            self.pool.append((out, shape))
        elif kind == "flatten":
            x, shape = self.pick(4)
            total = int(np.prod(shape))
            target: list[int]
            out_shape: Shape
            if draw(st.booleans()):
                target, out_shape = [-1], (total,)
            else:
                target, out_shape = [-1, total // shape[0]], (shape[0], total // shape[0])
            ns = draw(st.sampled_from(NAMESPACES))
            target_const = self.const(np.array(target, np.int32), "int32", "shape", ns)
            out = self.node(self.name("Reshape", ns), "Reshape", [x, target_const],
                            {"T": ("float32", "type"), "Tshape": ("int32", "type")},
                            [out_shape])  # fmt: skip
            if len(out_shape) == 2:
                self.pool.append((out, out_shape))
            else:
                self.outputs_only(out)
        elif kind == "reshape_pack":
            self.reshape_pack()
        elif kind == "transpose_pair":
            x, (n, h, w, c) = self.pick(4)
            ns = draw(st.sampled_from(NAMESPACES))
            first, second = draw(st.sampled_from([
                ([0, 2, 3, 1], [0, 3, 1, 2]), ([0, 3, 1, 2], [0, 2, 3, 1]),
                ([0, 3, 1, 2], [0, 3, 1, 2]), ([0, 1, 2, 3], [0, 1, 2, 3]),
            ]))  # fmt: skip
            mid = tuple((n, h, w, c)[i] for i in first)
            end = tuple(mid[i] for i in second)
            p = self.const(np.array(first, np.int32), "int32", "perm", ns)
            t = self.node(self.name("Transpose", ns), "Transpose", [x, p],
                          {"T": ("float32", "type"), "Tperm": ("int32", "type")}, [mid])
            q = self.const(np.array(second, np.int32), "int32", "perm", ns)
            out = self.node(self.name("Transpose", ns), "Transpose", [t, q],
                            {"T": ("float32", "type"), "Tperm": ("int32", "type")}, [end])
            if len(end) == 4 and end == (n, h, w, c):
                self.pool.append((out, end))
            else:
                self.outputs_only(out)
        elif kind == "reshape_pair":  # TimeDistributed: Reshape([-1, ...]) of Reshape([N, r, ...])
            x, shape = self.pick(2)
            n, m = shape
            ns = draw(st.sampled_from(("mrcnn_class/", "mrcnn_bbox/", "block1/")))
            s1 = self.const(np.array([n, 1, m], np.int32), "int32", "shape", ns)
            r = self.node(self.name("Reshape", ns), "Reshape", [x, s1],
                          {"T": ("float32", "type"), "Tshape": ("int32", "type")}, [(n, 1, m)])
            if draw(st.booleans()):
                r = self.unary("Relu", r, (n, 1, m), ns)
            s2 = self.const(np.array([-1, m], np.int32), "int32", "shape", ns)
            out = self.node(self.name("Reshape", ns), "Reshape", [r, s2],
                            {"T": ("float32", "type"), "Tshape": ("int32", "type")}, [(n, m)])
            self.pool.append((out, (n, m)))
        elif kind == "concat":
            x, shape = self.pick(None)
            alike = [t[0] for t in self.pool if t[1] == shape]
            parts = draw(st.lists(st.sampled_from(alike), min_size=2, max_size=3))
            axis = draw(st.integers(0, len(shape) - 1))
            out_shape = tuple(d * len(parts) if i == axis else d for i, d in enumerate(shape))
            exact = draw(st.sampled_from(("", "", "concat", "concat_1")))  # SSD's exact names
            if exact and exact not in self.names:
                self.names.add(exact)
                name, ns = exact, exact + "/"
            else:
                ns = draw(st.sampled_from(NAMESPACES))
                name = self.name("ConcatV2", ns)
            ax = self.const(np.int32(axis), "int32", "axis", ns)
            out = self.node(name, "ConcatV2", [*parts, ax],
                            {"T": ("float32", "type"), "Tidx": ("int32", "type"),
                             "N": (len(parts), "int")}, [out_shape])  # fmt: skip
            self.pool.append((out, out_shape))
        else:  # pragma: no cover
            raise ValueError(kind)

    def outputs_only(self, name: str) -> None:
        """A tensor of a rank no block reads: it stays a graph output."""

    def keras3_upsample(self) -> None:
        """Keras 3 UpSampling2D: ops.repeat along H then W (ExpandDims/Tile/Reshape twice)."""
        draw = self.draw
        x, (n, h, w, c) = self.pick(4)
        s = draw(st.integers(1, 3))
        ns = draw(st.sampled_from(NAMESPACES))
        i32 = ("int32", "type")

        def repeats() -> str:
            raw = self.const(np.int32(s), "int32", "repeats", ns)
            cast = self.node(self.name("Cast", ns), "Cast", [raw],
                             {"SrcT": i32, "DstT": i32, "Truncate": (False, "bool")}, [()])
            scalar_shape = self.const(np.zeros((0,), np.int32), "int32", "scalar", ns)
            return self.node(self.name("Reshape", ns), "Reshape", [cast, scalar_shape],
                             {"T": i32, "Tshape": i32}, [()])  # fmt: skip

        def pack(position: int) -> str:
            count = repeats()
            one = self.const(np.int32(1), "int32", "one", ns)
            items = [count if i == position else one for i in range(5)]
            return self.node(self.name("Pack", ns), "Pack", items,
                             {"T": i32, "N": (5, "int"), "axis": (0, "int")}, [(5,)])

        d1 = self.const(np.int32(2), "int32", "dim", ns)
        e1 = self.node(self.name("ExpandDims", ns), "ExpandDims", [x, d1],
                       {"T": ("float32", "type"), "Tdim": i32}, [(n, h, 1, w, c)])
        t1 = self.node(self.name("Tile", ns), "Tile", [e1, pack(2)],
                       {"T": ("float32", "type"), "Tmultiples": i32}, [(n, h, s, w, c)])
        s1 = self.const(np.array([n, h * s, w, c], np.int32), "int32", "shape", ns)
        m1 = self.node(self.name("Reshape", ns), "Reshape", [t1, s1],
                       {"T": ("float32", "type"), "Tshape": i32}, [(n, h * s, w, c)])
        d2 = self.const(np.int32(3), "int32", "dim", ns)
        e2 = self.node(self.name("ExpandDims", ns), "ExpandDims", [m1, d2],
                       {"T": ("float32", "type"), "Tdim": i32}, [(n, h * s, w, 1, c)])
        t2 = self.node(self.name("Tile", ns), "Tile", [e2, pack(3)],
                       {"T": ("float32", "type"), "Tmultiples": i32}, [(n, h * s, w, s, c)])
        s2 = self.const(np.array([n, h * s, w * s, c], np.int32), "int32", "shape", ns)
        out = self.node(self.name("Reshape", ns), "Reshape", [t2, s2],
                        {"T": ("float32", "type"), "Tshape": i32}, [(n, h * s, w * s, c)])
        self.pool.append((out, (n, h * s, w * s, c)))

    def reshape_pack(self) -> None:
        """tf-keras Reshape((a, b)) of a [batch, n] tensor: Pack(StridedSlice(Shape(x)), a, b)."""
        draw = self.draw
        candidates = [t for t in self.pool if len(t[1]) == 2]
        if not candidates:
            x4, shape4 = self.pick(4)
            total = int(np.prod(shape4[1:]))
            flat = self.const(np.array([-1, total], np.int32), "int32", "shape")
            x = self.node(self.name("Reshape"), "Reshape", [x4, flat],
                          {"T": ("float32", "type"), "Tshape": ("int32", "type")},
                          [(shape4[0], total)])  # fmt: skip
            shape: Shape = (shape4[0], total)
        else:
            x, shape = draw(st.sampled_from(candidates))
        n, m = shape
        divisors = [d for d in range(1, m + 1) if m % d == 0]
        d1 = draw(st.sampled_from(divisors))
        infer = draw(st.booleans())
        d2 = -1 if infer else m // d1
        ns = draw(st.sampled_from(NAMESPACES))
        i32 = ("int32", "type")
        sh = self.node(self.name("Shape", ns), "Shape", [x],
                       {"T": ("float32", "type"), "out_type": i32}, [(2,)])
        begin = self.const(np.array([0], np.int32), "int32", "stack", ns)
        end = self.const(np.array([1], np.int32), "int32", "stack_1", ns)
        step = self.const(np.array([1], np.int32), "int32", "stack_2", ns)
        sl = self.node(self.name("strided_slice", ns), "StridedSlice", [sh, begin, end, step], {
            "T": i32, "Index": i32, "begin_mask": (0, "int"), "end_mask": (0, "int"),
            "ellipsis_mask": (0, "int"), "new_axis_mask": (0, "int"),
            "shrink_axis_mask": (1, "int"),
        }, [()])  # fmt: skip
        c1 = self.const(np.int32(d1), "int32", "d1", ns)
        c2 = self.const(np.int32(d2), "int32", "d2", ns)
        p = self.node(self.name("Pack", ns), "Pack", [sl, c1, c2],
                      {"T": i32, "N": (3, "int"), "axis": (0, "int")}, [(3,)])
        out = self.node(self.name("Reshape", ns), "Reshape", [x, p],
                        {"T": ("float32", "type"), "Tshape": i32},
                        [(n, d1, m // d1)])  # fmt: skip
        self.outputs_only(out)


@st.composite
def graphs(
    draw: st.DrawFn, *, annotate: bool | None = None, numeric: bool = False,
    max_blocks: int = 6, blocks: tuple[str, ...] = BLOCKS,
) -> Built:  # fmt: skip
    """A random valid graph. `annotate`: record `_output_shapes` (None: drawn); `numeric`: only
    blocks the semantic-preserving rules keep the meaning of, static shapes, finite slopes."""
    if annotate is None:
        annotate = draw(st.booleans())
    b = _Builder(draw, annotate, numeric)
    inputs: dict[str, Shape] = {}
    for k in range(draw(st.integers(1, 2))):
        shape = (1, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3)))
        name = "input_image" if k == 0 and draw(st.integers(0, 3)) == 0 else f"input_{k}"
        b.names.add(name)
        b.node(name, "Placeholder", [], {"dtype": ("float32", "type"), "shape": (shape, "shape")},
               [shape])  # fmt: skip
        inputs[name] = shape
        b.pool.append((name, shape))
    kinds = draw(st.lists(st.sampled_from(blocks), min_size=1, max_size=max_blocks))
    for kind in kinds:
        if kind == "reshape_pair" and not any(len(s) == 2 for _, s in b.pool):
            kind = "flatten"
        b.block(kind)
    return Built(b.gd, inputs, kinds)
