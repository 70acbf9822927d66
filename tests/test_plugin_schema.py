"""Plugin catalog: every schema loads, lookups, and explicit field coercion."""

from __future__ import annotations

import pytest

from surgery.errors import RuleError
from surgery.plugin_schema import field_attr, load_catalog

EXPECTED = {
    "LReLU_TRT", "ResizeNearest_TRT", "Normalize_TRT", "ProposalLayer_TRT", "PyramidROIAlign_TRT",
    "DetectionLayer_TRT", "SpecialSlice_TRT", "GridAnchor_TRT", "NMS_TRT", "FlattenConcat_TRT",
    "CropAndResize", "Proposal", "L2Norm_Surgery",
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
