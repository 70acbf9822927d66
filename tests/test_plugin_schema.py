"""Plugin catalog: every schema loads, lookups, and explicit field coercion."""

from __future__ import annotations

import re

import numpy as np
import pytest

from surgery.errors import RuleError
from surgery.ops.plugin_schema import field_attr, load_catalog

EXPECTED = {
    "LReLU_TRT", "ResizeNearest_TRT", "Normalize_TRT", "ProposalLayer_TRT", "PyramidROIAlign_TRT",
    "DetectionLayer_TRT", "SpecialSlice_TRT", "GridAnchor_TRT", "NMS_TRT", "FlattenConcat_TRT",
    "CropAndResize", "Proposal", "L2Norm_Surgery", "BatchedNMS_Surgery", "ROIAlign_TRT",
}  # fmt: skip


def test_catalog_holds_every_plugin() -> None:
    catalog = load_catalog()
    assert {s.name for s in catalog} == EXPECTED
    assert "LReLU_TRT" in catalog and "Nope" not in catalog
    trt = load_catalog(["trt-8.6"])
    assert "L2Norm_Surgery" not in trt and "NMS_TRT" in trt
    assert "LReLU_TRT" in load_catalog(["tensorrt-8.6"])


def test_schema_details_follow_tensorrt() -> None:
    catalog = load_catalog()
    prop = catalog.get("ProposalLayer_TRT")
    assert [(f.name, f.type, f.length) for f in prop.fields] == [
        ("prenms_topk", "int32", 1), ("keep_topk", "int32", 1),
        ("iou_threshold", "float32", 1), ("image_size", "int32", 3),
    ]  # fmt: skip
    assert prop.input_names() == ["scores", "deltas"] and prop.layout == "NCHW"
    assert catalog.get("GridAnchor_TRT").field("aspectRatios").length is None
    assert catalog.get("FlattenConcat_TRT").input_count() == (1, None)
    assert catalog.get("PyramidROIAlign_TRT").input_count() == (5, 5)


def test_unknown_plugin_catalog_and_field() -> None:
    catalog = load_catalog()
    with pytest.raises(RuleError, match="unknown plugin 'LReLU_TR' .*did you mean 'LReLU_TRT'"):
        catalog.get("LReLU_TR")
    with pytest.raises(RuleError, match="unknown plugin catalog 'trt-8.5'"):
        load_catalog(["trt-8.5"])
    with pytest.raises(RuleError, match="no field 'negslope' .*did you mean 'negSlope'"):
        field_attr(catalog.get("LReLU_TRT"), "negslope", 0.1)


def test_field_storage_and_explicit_coercion() -> None:
    catalog = load_catalog()
    lrelu = catalog.get("LReLU_TRT")
    attr = field_attr(lrelu, "negSlope", 1)  # an int literal into a float32 field, on purpose
    assert attr.WhichOneof("value") == "f" and attr.f == 1.0
    prop = catalog.get("ProposalLayer_TRT")
    assert field_attr(prop, "keep_topk", 1000).i == 1000
    assert field_attr(prop, "keep_topk", 1000.0).i == 1000
    assert list(field_attr(prop, "image_size", [3, 1024, 1024]).list.i) == [3, 1024, 1024]
    grid = catalog.get("GridAnchor_TRT")
    assert list(field_attr(grid, "aspectRatios", (1, 2, 0.5)).list.f) == [1.0, 2.0, 0.5]
    import numpy as np

    assert field_attr(prop, "iou_threshold", np.float32(0.5)).f == 0.5
    assert list(field_attr(prop, "image_size", np.array([3, 8, 8])).list.i) == [3, 8, 8]


@pytest.mark.parametrize(
    "plugin, field, value, message",
    [
        (
            "LReLU_TRT",
            "negSlope",
            "abc",
            "plugin LReLU_TRT field 'negSlope': expected float32, got string 'abc'",
        ),
        ("LReLU_TRT", "negSlope", True, "expected float32, got bool True"),
        (
            "ProposalLayer_TRT",
            "keep_topk",
            True,
            "field 'keep_topk': expected int32, got bool True",
        ),
        ("ProposalLayer_TRT", "keep_topk", 2.5, "expected int32, got float 2.5"),
        ("ProposalLayer_TRT", "keep_topk", 2**31, "out of range for int32"),
        (
            "ProposalLayer_TRT",
            "image_size",
            [1024, 1024],
            "expected int32[3], got a list of 2 values",
        ),
        ("ProposalLayer_TRT", "image_size", 1024, "expected int32[3], got a single int 1024"),
        ("ProposalLayer_TRT", "keep_topk", [1], "expected int32, got a list of 1 values"),
        ("ProposalLayer_TRT", "image_size", [3, "a", 1], "item 1: got string 'a'"),
    ],
)
def test_coercion_errors_name_plugin_field_expected_and_got(plugin, field, value, message) -> None:
    schema = load_catalog().get(plugin)
    with pytest.raises(RuleError) as info:
        field_attr(schema, field, value)
    assert message in str(info.value) and plugin in str(info.value) and field in str(info.value)


# --------------------------------------------------------------------------- output shapes
def _mrcnn_case(r, size: int):
    """ProposalLayer_TRT inputs for an image of side 32*size (anchor count from the reference)."""
    from plugins.reference._mrcnn import pyramid_anchors

    image = [3, 32 * size, 32 * (size + 1)]
    count = len(pyramid_anchors(*image))
    scores = r.uniform(0, 1, (size, count, 2, 1, 1))
    deltas = r.normal(0, 1, (size, count, 4, 1, 1))
    fields = {"prenms_topk": 20, "keep_topk": 5 + size, "iou_threshold": 0.5, "image_size": image}
    return [scores, deltas], fields


def _cases(name: str, r, size: int):
    """(inputs, fields) for plugin `name`, seeded, growing with `size` (1, 2, 3)."""
    n, c, h, w = size, 2 + size, 3 + size, 5 + 2 * size
    fmap = r.normal(0, 1, (n, c, h, w))
    boxes = np.sort(r.uniform(0, 1, (n, 3 + size, 2, 2)), axis=2).transpose(0, 1, 3, 2)
    boxes = boxes.reshape(n, 3 + size, 4)  # y1 x1 y2 x2 with y1 < y2, x1 < x2
    if name in ("LReLU_TRT", "L2Norm_Surgery"):
        x = r.normal(0, 1, (n, c, h, w)[: size + 1])
        return [x], {"negSlope": 0.1} if name == "LReLU_TRT" else {"axis": -1}
    if name == "ResizeNearest_TRT":
        return [fmap], {"scale": [2.0, 1.5, 0.7][size - 1]}
    if name == "Normalize_TRT":
        return [fmap], {"weights": list(r.uniform(1, 2, c)), "acrossSpatial": size % 2,
                        "channelShared": 0, "nbWeights": c, "eps": 1e-6}  # fmt: skip
    if name == "SpecialSlice_TRT":
        return [r.normal(0, 1, (n, 4 + size, 6))], {}
    if name == "FlattenConcat_TRT":
        xs = [r.normal(0, 1, (n, k + 1, size, 2)) for k in range(size + 1)]
        return xs, {"axis": size, "ignoreBatch": int(size == 2)}
    if name == "GridAnchor_TRT":
        ratios = [1.0, 2.0, 0.5, 3.0][: 2 + size]
        sides = [2 * (size + 1 - k) for k in range(size + 1)]
        return [], {"numLayers": size + 1, "minSize": 0.2, "maxSize": 0.9, "aspectRatios": ratios,
                    "variance": [0.1, 0.1, 0.2, 0.2], "featureMapShapes": sides}  # fmt: skip
    if name == "NMS_TRT":
        priors_n, classes = 4 * size, 3
        lo = r.uniform(0, 0.7, (priors_n, 2))
        prior = np.concatenate([lo, lo + 0.2], axis=1).reshape(-1)
        priors = np.stack([prior, np.tile([0.1, 0.1, 0.2, 0.2], priors_n)])[None, :, :, None]
        loc = r.normal(0, 1, (n, priors_n * 4, 1, 1))
        conf = r.uniform(0, 1, (n, priors_n * classes, 1, 1))
        order = [[0, 1, 2], [1, 0, 2], [2, 0, 1]][size - 1]
        slots = [None, None, None]
        for tensor, slot in zip((loc, conf, priors), order, strict=True):
            slots[slot] = tensor
        fields = {"shareLocation": 1, "varianceEncodedInTarget": 0, "backgroundLabelId": 0,
                  "numClasses": classes, "topK": 5, "keepTopK": 3 + size, "inputOrder": order,
                  "confidenceThreshold": 0.2, "nmsThreshold": 0.5}  # fmt: skip
        return slots, fields
    if name == "CropAndResize":
        rois = boxes[..., None] if size % 2 else boxes
        return [fmap, rois], {"crop_height": 2 + size, "crop_width": 4 - size % 2}
    if name == "Proposal":
        sizes, ratios = [32.0, 64.0][: 1 + size % 2], [0.5, 1.0, 2.0][:size]
        anchors = len(sizes) * len(ratios)
        scores = r.uniform(0, 1, (n, anchors * (1 + size % 2), h, w))
        deltas = r.normal(0, 0.2, (n, 4 * anchors, h, w))
        fields = {"input_height": 16 * h, "input_width": 16 * w, "rpn_stride": 16,
                  "roi_min_size": 1.0, "nms_iou_threshold": 0.7, "pre_nms_top_n": 12,
                  "post_nms_top_n": 3 + size, "anchor_sizes": sizes,
                  "anchor_ratios": ratios}  # fmt: skip
        return [scores, deltas], fields
    if name == "ProposalLayer_TRT":
        return _mrcnn_case(r, size)
    if name == "PyramidROIAlign_TRT":
        maps = [r.normal(0, 1, (n, c, 16 >> k, 16 >> k)) for k in range(4)]
        return [boxes, *maps], {"pooled_size": 1 + size, "image_size": [64, 64],
                                "roi_coords_absolute": 0}  # fmt: skip
    if name == "DetectionLayer_TRT":
        classes, rois = 2 + size, 3 + size
        deltas = r.normal(0, 0.5, (n, rois, classes * 4, 1, 1))
        scores = r.uniform(0, 1, (n, rois, classes, 1, 1))
        fields = {"num_classes": classes, "keep_topk": 2 + size, "score_threshold": 0.1,
                  "iou_threshold": 0.5}  # fmt: skip
        return [deltas, scores, boxes[:, :rois]], fields
    if name == "BatchedNMS_Surgery":
        count = 4 * size + 1
        corner = r.uniform(0, 10, (count, 2))
        boxes = np.concatenate([corner, corner + r.uniform(1, 5, (count, 2))], axis=1)
        return [boxes, r.uniform(0, 1, count), r.integers(0, 3, count)], {"iou_threshold": 0.5}
    if name == "ROIAlign_TRT":
        count = 3 * size - 3  # 0 ROIs for size 1
        corner = r.uniform(-4, 60, (count, 2))
        rois = np.concatenate([corner, corner + r.uniform(0, 30, (count, 2))], axis=1)
        fields = {"output_height": size, "output_width": 4 - size, "spatial_scale": 0.25,
                  "mode": size % 2, "sampling_ratio": size - 1}  # fmt: skip
        return [fmap, rois, r.integers(0, n, count)], fields
    raise AssertionError(f"no shape case for {name}")


def test_every_plugin_declares_output_shapes_and_dtypes() -> None:
    for schema in load_catalog():
        for spec in schema.outputs:
            assert spec.shape is not None, f"{schema.name} output {spec.name} has no shape"
            assert spec.dtype in ("float32", "int32")


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_shapes_equal_the_reference(name: str, size: int) -> None:
    from plugins.registry import has_reference, reference

    if not has_reference(name):
        pytest.skip(f"{name} has no reference")
    r = np.random.default_rng(1000 * size + len(name))
    inputs, fields = _cases(name, r, size)
    inputs = [np.asarray(x, dtype=np.float32) for x in inputs]
    ref = reference(name)
    outputs = ref(inputs, fields)
    declared = ref.schema.output_shapes([x.shape for x in inputs], fields)
    assert declared == [y.shape for y in outputs]
    assert ref.schema.output_dtypes(fields, len(inputs)) == [str(y.dtype) for y in outputs]


class _FakeOps:
    """A SymOps backend whose symbolic dims are functions of an environment (for checking)."""

    OPS = {"SUM": lambda a, b: a + b, "PROD": lambda a, b: a * b, "SUB": lambda a, b: a - b,
           "FLOOR_DIV": lambda a, b: a // b, "CEIL_DIV": lambda a, b: -(-a // b),
           "MAX": max, "MIN": min, "EQUAL": lambda a, b: int(a == b),
           "LESS": lambda a, b: int(a < b)}  # fmt: skip

    def constant(self, value: int):
        return lambda env: value

    def op(self, name: str, a, b):
        fn = self.OPS[name]
        return lambda env: fn(a(env), b(env))


@pytest.mark.parametrize("name", sorted(EXPECTED - {"GridAnchor_TRT"}))
def test_symbolic_shapes_agree_with_concrete(name: str) -> None:
    """Every input dim symbolic (as TensorRT's IExprBuilder sees dynamic dims): same result."""
    from surgery.ops.plugin_shapes import Sym

    schema = load_catalog().get(name)
    for size in (1, 2, 3):
        inputs, fields = _cases(name, np.random.default_rng(size), size)
        shapes = [np.shape(x) for x in inputs]
        env = {(k, d): v for k, s in enumerate(shapes) for d, v in enumerate(s)}

        def sym_dims(k: int, shapes=shapes):
            return [Sym(lambda e, key=(k, d): e[key]) for d in range(len(shapes[k]))]

        out = schema.output_dims(sym_dims, len(shapes), fields, _FakeOps())
        got = [tuple(d if isinstance(d, int) else d.expr(env) for d in dims) for dims in out]
        assert got == schema.output_shapes(shapes, fields)


def test_symbolic_float_scale_becomes_an_integer_ratio() -> None:
    from surgery.ops.plugin_shapes import Sym

    schema = load_catalog().get("ResizeNearest_TRT")
    for scale in (2.0, 1.5, 0.7, 0.3, 3.25):
        for h in (1, 7, 10, 33, 100):
            dims = [Sym(lambda e: 1), Sym(lambda e: 2), Sym(lambda e, h=h: h), Sym(lambda e: 4)]
            (out,) = schema.output_dims(lambda k, dims=dims: dims, 1, {"scale": scale}, _FakeOps())
            ((_, _, want, _),) = schema.output_shapes([(1, 2, h, 4)], {"scale": scale})
            assert out[2].expr({}) == want == int(np.float32(h) * np.float32(scale))


def test_shape_expression_syntax_and_errors(tmp_path) -> None:
    from surgery.ops.plugin_shapes import Context, ShapeExprError, dim_value, parse

    def value(text, shapes=((2, 3, 8, 8),), **fields):
        node = parse(text)
        return dim_value(node, Context(lambda k: shapes[k], len(shapes), fields, text=text))

    assert value("in0[0] * 2 + in0[-1] // 3 - 1") == 5
    assert value("floor(in0[2] * s)", s=np.float32(1.5)) == 12
    assert value("ceil(in0[2] * s)", s=np.float32(0.3)) == 3
    assert value("max(in0[1], 7, k) - min(in0[1], 1)", k=9) == 8
    assert value("select(in0[1] == 3, 10, 20) + (in0[0] < 1)") == 10
    assert value("numel(in*) // in1[0]", ((2, 3), (2, 5))) == 8
    assert value("rank(in0) + len(v) + v[-1] + in[v[0]][1]", ((2, 3), (4, 6)), v=[1, 2]) == 12
    for text, message in [
        ("in0[2] * s", "wrap it in floor()"),
        ("in0[4]", "no dim 4"),
        ("in2[0]", "input 2 does not exist"),
        ("nope + 1", "unknown name 'nope'"),
        ("sqrt(in0[0])", "unknown function 'sqrt'"),
        ("in0[0] / 2", "unexpected '/'"),
        ("in0 + 1", "is a tensor"),
        ("__import__('os')", "unexpected"),
        ("(in0[0]", "expected ')'"),
        ("in* + 1", "only allowed as numel(in*)"),
        ("in0[0] // 0", "division by zero"),
    ]:
        with pytest.raises(ShapeExprError, match=re.escape(message)):
            value(text, s=np.float32(1.5))


def test_bad_shape_declarations_are_refused_at_load(tmp_path) -> None:
    import json

    from surgery.ops.plugin_schema import load_schema

    base = {"name": "X_TRT", "version": "1", "fields": [{"name": "k", "type": "int32"}],
            "inputs": [{"name": "x"}]}  # fmt: skip
    for outputs, message in [
        ([{"name": "y", "shape": ["in0[0]", "kk"]}], "reads 'kk', which is not a field"),
        ([{"name": "y", "shape": ["in1[0]"]}], "reads input 1, but the plugin has at most 1"),
        ([{"name": "y", "shape": ["in0[0"]}], "expected ']'"),
        ([{"name": "y", "shape": "x"}], "must name an input"),
        ([{"name": "y", "shape": ["k"], "dtype": "int64"}], "dtype 'int64'"),
        ([{"name": "y", "max": None, "shape": ["i"]}], "needs a 'count'"),
    ]:
        path = tmp_path / "X_TRT.json"
        path.write_text(json.dumps({**base, "outputs": outputs}))
        with pytest.raises(RuleError, match=re.escape(message)):
            load_schema(path)
