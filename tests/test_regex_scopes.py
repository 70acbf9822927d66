"""Scope patterns run on RE2: linear in the name's length (a shared rule file cannot hang the
engine), patterns RE2 refuses are rule errors at file:line:col, `fullmatch` semantics kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from surgery.cli import main
from surgery.engine.matcher import RuleMatcher
from surgery.errors import RuleError, RuleSyntaxError
from surgery.ir.graph import Graph
from surgery.ir.protos import GraphDef
from surgery.lang.name_patterns import glob_match
from surgery.lang.rule_check import check_rules
from surgery.lang.rule_parser import parse_rules

HANG_BOUND_S = 5.0  # a hang test, not a benchmark: Python's re took 8.5 s on 29 characters


def graph_of(*names: str) -> Graph:
    """Placeholders named `names`."""
    graph_def = GraphDef()
    for name in names:
        graph_def.node.add(name=name, op="Placeholder")
    return Graph(graph_def)


def scope_anchors(graph: Graph, scope: str) -> list[str]:
    """The namespaces a one-scope rule matches, in graph order."""
    rf = parse_rules(f"rule r:\n scope r = {scope}\n collapse r into Foo(r.in[0])", "t.rules")
    return [m.anchor for m in RuleMatcher(graph, rf.rules[0], rf.commutative).matches()]


def test_catastrophic_regex_on_a_long_name_finishes() -> None:
    long = "a" * 10_000
    graph = graph_of(long + "!", long, "aaa/inner")
    start = time.perf_counter()
    found = scope_anchors(graph, 'regex "(a+)+$"')
    assert time.perf_counter() - start < HANG_BOUND_S
    assert found == [long, "aaa"]  # the whole name (or a namespace prefix), never a part of it


def test_many_star_glob_on_a_long_name_finishes() -> None:
    # backtracking took 40 s for this glob on 100 characters
    name = "a" * 10_000
    start = time.perf_counter()
    assert scope_anchors(graph_of(name), '"*a*a*a*a*a*a*b"') == []
    assert not glob_match("**a**a**a**a**a**a**b", name)
    assert time.perf_counter() - start < HANG_BOUND_S


def test_regex_and_glob_match_whole_names_only() -> None:
    graph = graph_of("ROI", "ROI/a", "ROI_1/b", "xROI/c", "fpn_p3upsampled/a")
    assert scope_anchors(graph, 'regex "ROI"') == ["ROI"]
    assert scope_anchors(graph, 'regex "ROI(_[0-9]+)?"') == ["ROI", "ROI_1"]
    assert scope_anchors(graph, '"ROI*"') == ["ROI", "ROI_1"]
    assert scope_anchors(graph, 'regex "fpn_p[0-9]"') == []
    assert scope_anchors(graph, 'regex "fpn_p[0-9]upsampled|ROI"') == ["ROI", "fpn_p3upsampled"]


BACKREFERENCE = 'rule r:\n    scope r = regex "(a)\\\\1"\n    collapse r into Foo(r.in[0])\n'
MESSAGE = (
    "bad regex '(a)\\\\1': invalid escape sequence: \\1 (scope patterns are matched by RE2, in "
    "time linear in the name's length, so backreferences and lookaround are not supported)"
)


def test_backreference_is_a_rule_error_at_its_position() -> None:
    """Refused when the file loads (the parser compiles scope regexes as the matcher does)."""
    with pytest.raises(RuleSyntaxError) as err:
        parse_rules(BACKREFERENCE, "t.rules")
    assert str(err.value) == f"t.rules:2:15: {MESSAGE}"


@pytest.mark.parametrize("pattern", ["(?=a)a", "(?<!b)a", "(?!a)b"])
def test_lookaround_is_a_rule_error(pattern: str) -> None:
    text = f'rule r:\n scope r = regex "{pattern}"\n collapse r into Foo(r.in[0])'
    with pytest.raises(RuleSyntaxError, match=r"^t\.rules:2:12: bad regex .*invalid perl operator"):
        parse_rules(text, "t.rules")


def test_check_reports_refused_patterns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = (
        'rule r:\n    scope r = "ROI"\n        side meta = "a[]"\n'
        "    collapse r into Foo(r.in[0])\n"
    )
    found = [str(d) for d in check_rules(parse_rules(text, "f.rules"), use_tf=False)]
    assert "f.rules:3:21: error: bad name pattern 'a[]': missing ]: []" in found
    text = 'rule r:\n    scope r = "ROI" except regex "(?=x)x"\n    collapse r into Foo(r.in[0])\n'
    with pytest.raises(RuleSyntaxError, match=r"^f\.rules:2:28: bad regex '\(\?=x\)x'"):
        parse_rules(text, "f.rules")
    path = tmp_path / "bad.rules"
    path.write_text(BACKREFERENCE, encoding="utf-8")
    assert main(["check", "--no-tf", str(path)]) == 1
    assert f"{path}:2:15: error: {MESSAGE}" in capsys.readouterr().out.splitlines()


def test_a_glob_re2_cannot_read_in_matches_names_the_call() -> None:
    text = 'rule r:\n match y = Relu(x) where matches(y.name, "a[]")\n remove y'
    rf = parse_rules(text, "t.rules")
    graph_def = GraphDef()
    graph_def.node.add(name="x", op="Placeholder")
    graph_def.node.add(name="y", op="Relu", input=["x"])
    with pytest.raises(RuleError, match=r"^t\.rules:2:26: matches\(\): bad name pattern 'a\[\]'"):
        list(RuleMatcher(Graph(graph_def), rf.rules[0], rf.commutative).matches())
