"""The rules/ library: every rule file lints clean, is documented, and passes its cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from surgery.lang.rule_check import check_rules
from surgery.lang.rule_parser import load_rules
from surgery.ops.plugin_schema import load_catalog
from surgery.regression import run_suite
from surgery.regression_cases import cases_for_rules, load_cases

RULES = Path(__file__).resolve().parent.parent / "rules"
LIBRARY = sorted(p for p in RULES.glob("*.rules") if p.name != "maskrcnn.rules")


def test_library_is_there() -> None:
    names = {p.stem for p in LIBRARY}
    assert {"leaky_relu", "l2_normalize", "upsample_nearest", "flatten_reshape", "ssd",
            "faster_rcnn"} <= names  # fmt: skip


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_rule_file_lints_clean_and_has_a_header(path: Path) -> None:
    rule_file = load_rules(path)
    problems = [p for p in check_rules(rule_file, load_catalog()) if p.severity == "error"]
    assert not problems, problems
    for heading in ("Model family:", "Graph flavour:", "Emits:"):
        assert heading in rule_file.header, f"{path.name}: header lacks {heading!r}"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_rule_file_has_cases(path: Path) -> None:
    cases = load_cases(cases_for_rules(path))
    assert cases
    for case in cases:
        assert case.matches, f"{case.label}: give per-rule match counts"


def test_whole_library_passes_its_cases() -> None:
    """`surgery test rules/`: structure, goldens and numeric checks on the fixtures."""
    lines: list[str] = []
    code = run_suite(RULES, echo=lines.append)
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith("ok: ")


@pytest.mark.parametrize("stem", ["ssd", "faster_rcnn"])
def test_detector_cases_run_the_numeric_check(stem: str) -> None:
    """SSD and Faster R-CNN are checked numerically (per boundary), not skipped."""
    for case in load_cases(RULES / "cases" / f"{stem}.toml"):
        assert case.numeric.skip is None, case.label
        assert case.numeric.per_boundary, case.label


def test_faster_rcnn_without_the_layout_transposes_is_caught(tmp_path: Path) -> None:
    """The NHWC heads fed straight into the NCHW Proposal plugin: validate refuses the shapes."""
    from surgery.backends.validate import ValidationError, validate
    from surgery.engine.run import apply_rules
    from surgery.ir.model_io import load
    from surgery.models import fixture_info

    text = (RULES / "faster_rcnn.rules").read_text(encoding="utf-8")
    start, end = text.index("rule proposal:"), text.index("rule crop_and_resize:")
    nhwc = """rule proposal:
    scope p = "proposal" enters 2 leaves 1
    collapse p into Proposal(
            scores = p.in("rpn_out_class/**"), deltas = p.in("rpn_out_regress/**")) {
        input_height = 64, input_width = 64, rpn_stride = 4, roi_min_size = 1.0,
        nms_iou_threshold = 0.7, pre_nms_top_n = 64, post_nms_top_n = 16,
        anchor_sizes = [16.0, 32.0], anchor_ratios = [0.5, 1.0, 2.0] }
        outputs { p.out[0] -> 0 }

"""
    bad_rules = tmp_path / "faster_rcnn_nhwc.rules"
    bad_rules.write_text(text[:start] + nhwc + text[end:], encoding="utf-8")
    original = load(fixture_info("faster_rcnn_like").path)
    rewritten = original.copy()
    apply_rules(rewritten, [load_rules(bad_rules)])
    nhwc_shapes = "\\(Proposal\\) on \\(1, 16, 16, 6\\), \\(1, 16, 16, 24\\).*do not fit"
    with pytest.raises(ValidationError, match=nhwc_shapes):
        validate(original, rewritten)


def test_numeric_case_keys_are_checked(tmp_path: Path) -> None:
    """`per_boundary`, `input_map` and `exclude` are typed like every other key."""
    from surgery.regression_cases import CaseFileError

    (tmp_path / "x.rules").write_text("use plugins \"trt-8.6\"\n", encoding="utf-8")
    cases = tmp_path / "cases"
    cases.mkdir()
    head = '[[case]]\nname = "a"\nmodel = "box3d"\n'
    good = cases / "x.toml"
    good.write_text(head + 'numeric = { per_boundary = true, '
                    'input_map = { Input = "pre:0,3,1,2" }, exclude = ["NMS:1"] }\n',
                    encoding="utf-8")  # fmt: skip
    (case,) = load_cases(good)
    assert case.numeric.input_map == {"Input": "pre:0,3,1,2"}
    assert case.numeric.exclude == ("NMS:1",) and case.numeric.per_boundary
    for body, key in (
        ("numeric = { per_boundary = 1 }", "numeric.per_boundary"),
        ("numeric = { input_map = { Input = 3 } }", "numeric.input_map.Input"),
        ("numeric = { exclude = [1] }", "numeric.exclude[0]"),
    ):  # fmt: skip
        good.write_text(head + body + "\n", encoding="utf-8")
        with pytest.raises(CaseFileError, match=key.replace(".", "\\.").replace("[", "\\[")):
            load_cases(good)
