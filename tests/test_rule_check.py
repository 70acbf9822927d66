"""`surgery check`: each class of diagnostic, the exit code, and all problems reported at once."""

from __future__ import annotations

from pathlib import Path

from surgery.cli import main
from surgery.lang.rule_check import check_path, check_rules
from surgery.lang.rule_parser import parse_rules


def diags(text: str) -> list[str]:
    """Diagnostics of a rule text as `line:col: severity: message` strings."""
    return [str(d).split(":", 1)[1] for d in check_rules(parse_rules(text, "f"), use_tf=False)]


GOOD = """use plugins "trt-8.6"
rule leaky:
    match y = LeakyRelu(x) where y.alpha < 1
    replace y with LReLU_TRT(x) { negSlope = y.alpha }
rule roi:
    scope r = "ROI" enters 2 leaves 1
    collapse r into ProposalLayer_TRT(scores = r.in[0], deltas = r.in[1]) {
        prenms_topk = 1024, keep_topk = 1000, iou_threshold = 0.7, image_size = [3, 1024, 1024]
    } outputs { r.out[0] -> 0 }
rule deconv:
    match y = Conv2DBackpropInput(input_sizes: s, filter: w, out_backprop: x)
    insert t = Transpose(x, const(int32, [0, 2, 3, 1])) { T: type = float32 }
    connect t -> y[2]
"""


def test_clean_file_has_no_diagnostics() -> None:
    assert diags(GOOD) == []


def test_each_diagnostic_class() -> None:
    text = """use plugins "trt-8.6"
rule a:
    match y = LeakyRelu(x) where q.alpha > 0
    replace y with LReLU_TRT(x, x) { negSlop = 1 }
rule a:
    match y = Reluu(x)
    replace y with LReLU_TRTT(x)
rule b:
    match y = Conv2D(input: x, filters: w)
    collapse y into ResizeNearest_TRT(y.in[0]) { scale = "2" }
rule c:
    scope r = "ROI" enters 2
    collapse r into ProposalLayer_TRT(scores = r.in[0], deltaz = r.in[5]) {
        prenms_topk = 1024, keep_topk = true, iou_threshold = 0.7, image_size = [3, 1024]
    } outputs { r.out[0] -> 0, r.out[0] -> 3 }
rule d:
    match y = *(x)
    replace y with L2Norm_Surgery(x) { axis = 1 }
    set y.T = 1
rule e:
    match y = Relu(x)
    insert t = Transpose(x, zz) { T = "float32" }
    remove zz
"""
    got = diags(text)
    expected = [
        "3:34: error: variable 'q' is not bound by any pattern",
        "4:20: error: plugin LReLU_TRT needs field 'negSlope' (float32)",
        "4:20: error: plugin LReLU_TRT takes 1 input(s) (x), got 2",
        "4:38: error: plugin LReLU_TRT has no field 'negSlop' (did you mean 'negSlope'?)",
        "5:1: error: duplicate rule name 'a' (first defined at f:2:1)",
        "6:11: warning: op 'Reluu' is not in the built-in op table (did you mean 'Relu'?)",
        "7:20: error: unknown plugin or op 'LReLU_TRTT' (did you mean 'LReLU_TRT'?)",
        "9:32: error: Conv2D has no operand 'filters' (did you mean 'filter'?)",
        "10:5: error: collapse needs a scope variable; 'y' is bound by a match pattern",
        "10:39: error: 'y' is not a scope variable",
        "10:58: error: plugin ResizeNearest_TRT field 'scale': expected float32, got string '2'",
        "13:57: error: plugin ProposalLayer_TRT has no input 'deltaz' (did you mean 'deltas'?)",
        "13:66: error: r.in[5] is out of range: the scope declares 'enters 2'",
        "14:41: error: plugin ProposalLayer_TRT field 'keep_topk': expected int32, got bool True",
        "14:81: error: plugin ProposalLayer_TRT field 'image_size': expected int32[3], got a list",
        "15:32: error: r.out[0] is mapped twice",
        "15:32: error: ProposalLayer_TRT has 1 output(s); port 3 does not exist",
        "17:11: warning: a '*' root matches any op",
        "18:20: error: plugin 'L2Norm_Surgery' is not in the catalog in use (trt-8.6)",
        "22:29: error: variable 'zz' is not bound by any pattern",
        "22:35: error: attribute 'T' of TensorFlow op Transpose needs a kind",
        "23:5: error: variable 'zz' is not bound by any pattern",
    ]
    assert len(got) == len(expected), "\n".join(got)
    for line, want in zip(got, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_unknown_op_is_a_warning_without_tensorflow_registry() -> None:
    got = diags("rule a:\n match y = Reluu(x)\n remove y\n")
    assert got == ["2:8: warning: op 'Reluu' is not in the built-in op table (did you mean "
                   "'Relu'?) (TensorFlow's registry was not consulted)"]  # fmt: skip


def test_no_actions_is_a_warning() -> None:
    assert diags("rule a:\n match y = Relu(x)\n") == [
        "1:1: warning: rule 'a' has no actions (it only matches)"
    ]


def test_check_path_reports_syntax_and_catalog_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rules"
    bad.write_text("rule a:\n  match y = Relu(x\n")
    assert [str(d) for d in check_path(bad)] == [f"{bad}:2:17: error: unclosed '('"]
    cat = tmp_path / "cat.rules"
    cat.write_text('# hi\nuse plugins "trt-9"\nrule a:\n match y = Relu(x)\n remove y\n')
    (diag,) = check_path(cat)
    assert str(diag).startswith(f"{cat}:2:1: error: unknown plugin catalog 'trt-9'")


def test_cli_exit_codes(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.rules"
    good.write_text(GOOD)
    warn = tmp_path / "warn.rules"
    warn.write_text("rule a:\n match y = *(x)\n remove y\n")
    bad = tmp_path / "bad.rules"
    bad.write_text("rule a:\n match y = Relu(x)\n remove q\n replace y with Nope_TRT(x)\n")
    assert main(["check", "--no-tf", str(good), str(warn)]) == 0
    assert main(["check", "--no-tf", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{warn}:2:8: warning: a '*' root matches any op: the rule scans the whole graph" in out
    assert any(line.startswith(f"{bad}:3:2: error: variable 'q'") for line in out)
    assert any(
        line.startswith(f"{bad}:4:17: error: unknown plugin or op 'Nope_TRT'") for line in out
    )


def test_list_selectors_scope_expressions_and_prune() -> None:
    ok = diags(
        'use plugins "trt-8.6"\nrule r:\n scope s = "ns" leaves 1 where s.in[0].shape[0] == 1\n'
        ' collapse s into FlattenConcat_TRT(s.in[*]) { axis = 1, ignoreBatch = 0 }\n'
        '  outputs { s.out[*] -> 0 }\n prune\n'
    )
    assert ok == []
    bad = diags(
        'use plugins "trt-8.6"\nrule r:\n scope s = "ns" leaves 2 where s.in[0].shape[0] == 1\n'
        ' collapse s into FlattenConcat_TRT(s.in[*]) { axis = 1, ignoreBatch = 0 }\n'
        '  outputs { s.out[*] -> 0 }\nrule q:\n match y = Relu(x)\n connect q.in[*] -> y[0]\n'
    )
    assert "5:13: error: FlattenConcat_TRT has 1 output(s); s.out[*] needs ports 0..1, port 1 " \
        "does not exist" in bad
    assert any("connect takes one tensor; q.in[*] is a list" in d for d in bad)


def test_declared_kind_that_does_not_fit_the_plugin_field() -> None:
    text = (
        'use plugins "trt-8.6"\n'
        "rule a:\n"
        " match y = LeakyRelu(x)\n"
        " replace y with LReLU_TRT(x) { negSlope: int = y.alpha }\n"
    )
    assert diags(text) == [
        "4:32: error: field 'negSlope' of plugin LReLU_TRT is float32, not int"
    ]
