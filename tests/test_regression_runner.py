"""`surgery test`: failure output, --update, and every bad-input error, on a temp copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from surgery.cli import main
from surgery.regression import run_suite
from surgery.regression_cases import CaseFileError, load_cases

RULES = Path(__file__).resolve().parent.parent / "rules"

CASE = """
[[case]]
name = "box3d"
model = "box3d"
matches = { leaky_relu = 5 }
plugins = [{ op = "LReLU_TRT", count = 5, fields = { negSlope = 0.1 } }]
invariants = { absent_ops = ["LeakyRelu"] }
numeric = { rtol = 1e-5, atol = 1e-5 }
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A temp rules dir with leaky_relu.rules and a one-case case file, goldens not yet made."""
    root = tmp_path / "rules"
    (root / "cases").mkdir(parents=True)
    shutil.copy(RULES / "leaky_relu.rules", root / "leaky_relu.rules")
    (root / "cases" / "leaky_relu.toml").write_text(CASE)
    return root


def run(path: Path, **kwargs) -> tuple[int, str]:
    lines: list[str] = []
    code = run_suite(path, echo=lines.append, **kwargs)
    return code, "\n".join(lines)


def golden(root: Path) -> Path:
    return root / "cases" / "golden" / "leaky_relu" / "box3d.json"


def test_missing_golden_says_how_to_create_it(suite: Path) -> None:
    code, out = run(suite)
    assert code == 1
    assert "golden file" in out and "is missing" in out and "--update" in out


def test_update_writes_goldens_then_they_pass(suite: Path) -> None:
    code, out = run(suite, update=True)
    assert code == 0, out
    assert "golden created" in out and golden(suite).exists()
    text = golden(suite).read_text()
    assert '"LReLU_TRT": 5' in text and '"negSlope": 0.1' in text
    code, out = run(suite)
    assert code == 0, out
    assert "PASS leaky_relu::box3d" in out


def test_wrong_golden_fails_with_a_unified_diff(suite: Path) -> None:
    run(suite, update=True)
    path = golden(suite)
    path.write_text(path.read_text().replace('"negSlope": 0.1', '"negSlope": 0.3', 1))
    code, out = run(suite, numeric=False)
    assert code == 1
    assert "FAIL leaky_relu::box3d" in out
    assert "(golden)" in out and "(actual)" in out
    assert any(line.lstrip().startswith("-") and '"negSlope": 0.3' in line
               for line in out.splitlines())  # fmt: skip
    assert any(line.lstrip().startswith('+') and '"negSlope": 0.1' in line
               for line in out.splitlines())  # fmt: skip
    # --update accepts the actual rewrite and prints what changed
    code, out = run(suite, update=True, numeric=False)
    assert code == 0 and "golden updated" in out and '"negSlope": 0.3' in out
    assert run(suite, numeric=False)[0] == 0


def test_failed_expectation_is_named(suite: Path) -> None:
    case_file = suite / "cases" / "leaky_relu.toml"
    case_file.write_text(CASE.replace("leaky_relu = 5", "leaky_relu = 4")
                         .replace('"LeakyRelu"', '"Relu"'))  # fmt: skip
    run(suite, update=True, numeric=False)
    code, out = run(suite, numeric=False)
    assert code == 1
    assert "rule leaky_relu: expected 4 match(es), got 5" in out
    assert "invariant absent_ops: 10 Relu node(s) left" in out


def test_plugin_without_reference_is_a_clear_error(
    suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins import registry

    monkeypatch.delitem(registry.REFERENCES, "LReLU_TRT")
    code, out = run(suite, update=True)
    assert code == 1
    assert "numeric check cannot run" in out and "LReLU_TRT has no reference" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[case]\nname = 1", "not valid TOML"),
        (CASE.replace("matches", "matchs"), "case[0].matchs: unknown key"),
        (CASE.replace('model = "box3d"', "model = 3"), "case[0].model: expected str, got int"),
        (CASE.replace('name = "box3d"\n', ""), "case[0].name: required key is missing"),
        (CASE.replace("numeric = { rtol = 1e-5, atol = 1e-5 }", ""),
         "case[0].numeric: required key is missing"),
        (CASE.replace("leaky_relu = 5", "leaky_relu = -1"),
         "case[0].matches.leaky_relu: expected a count >= 0"),
        (CASE.replace("count = 5", 'count = "5"'), "case[0].plugins[0].count: expected int"),
        (CASE.replace("absent_ops", "absent_op"), "case[0].invariants.absent_op: unknown key"),
        ('rules = ["nope.rules"]\n' + CASE, "rules[0]: rule file"),
        (CASE + CASE, "case[1].name: duplicate case name 'box3d'"),
        ("title = 'x'\n", "case: required key is missing"),
    ],
)  # fmt: skip
def test_malformed_case_file_names_file_and_key(suite: Path, text: str, message: str) -> None:
    case_file = suite / "cases" / "leaky_relu.toml"
    case_file.write_text(text)
    with pytest.raises(CaseFileError) as info:
        load_cases(case_file)
    assert str(info.value).startswith(str(case_file)), info.value
    assert message in str(info.value)
    code, out = run(suite)
    assert code == 1 and "ERROR " in out and message in out


def test_unknown_model_is_an_error(suite: Path) -> None:
    (suite / "cases" / "leaky_relu.toml").write_text(
        CASE.replace('model = "box3d"', 'model = "no_such_model"')
    )
    code, out = run(suite)
    assert code == 1 and "'no_such_model' is neither a fixture" in out


def test_rule_file_without_cases_fails(suite: Path) -> None:
    shutil.copy(RULES / "l2_normalize.rules", suite / "l2_normalize.rules")
    run(suite, update=True)
    code, out = run(suite)
    assert code == 1
    assert "l2_normalize.rules: no regression cases" in out


def test_cli_exit_codes(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(suite), "--update", "--no-numeric"]) == 0
    assert main(["test", str(suite / "leaky_relu.rules"), "--no-numeric"]) == 0
    assert main(["test", str(suite / "cases" / "leaky_relu.toml"), "-k", "box3d"]) == 0
    assert main(["test", str(suite / "nowhere")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


# ----------------------------------------------------------------------------- ONNX exports
ONNX_CASE = CASE.replace('model = "box3d"\n', 'model = "box3d"\nexport = {}\n')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ONNX_CASE.replace("export = {}", 'export = { input = "image" }'),
         "case[0].export.input[0]: 'image': expected NAME=D0,D1,..."),
        (ONNX_CASE.replace("export = {}", "export = { inputs = [] }"),
         "case[0].export.inputs: unknown key"),
        (ONNX_CASE.replace("export = {}", "export = {}\nadd_shapes = true"),
         "case[0].add_shapes: not for an ONNX model"),
        (CASE.replace("atol = 1e-5 }", 'atol = 1e-5, implied = { x = "NMS_TRT.anchors" } }'),
         "case[0].numeric.implied: for ONNX models only"),
        (ONNX_CASE.replace("atol = 1e-5 }", 'atol = 1e-5, implied = { x = "anchors" } }'),
         "case[0].numeric.implied.x: expected \"PluginOp.role\""),
        (CASE.replace('model = "box3d"\n', 'model = "box3d"\nset = { x = { y = 1 } }\n'),
         "case[0].set.x: expected a string, number, bool or list of numbers"),
    ],
)  # fmt: skip
def test_malformed_onnx_keys_name_file_and_key(suite: Path, text: str, message: str) -> None:
    case_file = suite / "cases" / "leaky_relu.toml"
    case_file.write_text(text)
    with pytest.raises(CaseFileError) as info:
        load_cases(case_file)
    assert message in str(info.value)


def test_export_case_runs_on_the_cached_onnx_export(suite: Path) -> None:
    """`export = {}`: the rules see the fixture's ONNX export (made once, then cached), the
    plugins come out as ONNX plugin nodes and the numeric check runs both models."""
    pytest.importorskip("tf2onnx", reason="the export is made by tf2onnx")
    pytest.importorskip("onnxruntime")
    from surgery.regression import exported_model, load_model

    (suite / "cases" / "leaky_relu.toml").write_text(ONNX_CASE)
    (case,) = load_cases(suite / "cases" / "leaky_relu.toml")
    assert case.is_onnx and case.export is not None and case.export.inputs == ()
    path = exported_model(case)
    stamp = path.stat().st_mtime_ns
    assert exported_model(case) == path and path.stat().st_mtime_ns == stamp  # cached
    graph, outputs = load_model(case)
    assert outputs and all(o.startswith("_onnx_output/") for o in outputs)
    assert graph.nodes_by_op("LeakyRelu")
    code, out = run(suite, update=True)
    assert code == 0, out
    assert "numeric: " in out and "plugins by reference: 5" in out
    golden = (suite / "cases" / "golden" / "leaky_relu" / "box3d.json").read_text()
    assert "LReLU_TRT" in golden and "_onnx_value_info" not in golden
    code, out = run(suite)
    assert code == 0, out


def test_settings_reach_the_rules(suite: Path) -> None:
    """`set` gives the rule files' params, as `--set` does: an unknown one fails the rewrite."""
    (suite / "cases" / "leaky_relu.toml").write_text(
        CASE.replace('model = "box3d"\n', 'model = "box3d"\nset = { no_such_param = 1 }\n')
    )
    code, out = run(suite, numeric=False)
    assert code == 1 and "rewrite failed" in out and "no_such_param" in out


def test_golden_false_means_no_golden_and_true_is_refused(suite: Path) -> None:
    cases = suite / "cases" / "leaky_relu.toml"
    cases.write_text(CASE.replace('model = "box3d"\n', 'model = "box3d"\ngolden = false\n'))
    assert load_cases(cases)[0].golden is None
    cases.write_text(CASE.replace('model = "box3d"\n', 'model = "box3d"\ngolden = true\n'))
    with pytest.raises(CaseFileError, match="golden: true: give a path, or false"):
        load_cases(cases)
