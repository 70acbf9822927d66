"""A fixed-seed slice of the fuzzing properties (fuzz/, `make fuzz` runs 10^5 cases), about
30 s: Hypothesis profile "ci" (derandomised: the same cases every run, no example database).

Each property is described in fuzz/props.py: broken `.pb`/`.pbtxt`/rule files end in a
SurgeryError (library) or exit 1/2 with one line and no traceback (CLI), never another
exception, a hang or a partial output; random valid graphs rewritten by the shipped rule files
stay valid, deterministic and (TensorFlow installed) numerically equal where the rules keep the
meaning. The failures the fuzzing found are fixed; their reproductions are the
`test_found_by_fuzzing_*` tests at the end (a new one goes to fuzz.props.KNOWN while open).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from fuzz.cases import PROPERTIES
from fuzz.props import (
    CaseTimeout,
    Failure,
    _check_cli_outcome,
    bounded,
    check_cli,
    check_cli_process,
    graph_problems,
    known,
)
from fuzz.run import plan, run_case
from surgery.errors import ModelLoadError
from surgery.ir.attrs import make_attr
from surgery.ir.graph import Graph
from surgery.ir.protos import GraphDef

ROOT = Path(__file__).resolve().parent.parent

# Examples per property: about 30 s in all on the 2-core development machine.
SLICE = {
    "pb_bytes": 600, "pb_fields": 500, "pbtxt": 300, "rules_text": 120, "cli": 80,
    "graph_rules": 300, "numeric": 20,
}  # fmt: skip


def _check(prop: Any, case: dict[str, Any]) -> None:
    try:
        run_case(prop, case)
    except Failure as failure:
        if not known(failure.signature):
            raise


@pytest.mark.parametrize("name", list(SLICE))
def test_fuzz_slice(name: str) -> None:
    prop = PROPERTIES[name]
    if name == "numeric":
        pytest.importorskip("tensorflow")

    @settings(settings.get_profile("ci"), max_examples=SLICE[name])
    @given(prop.strategy())
    def run(case: dict[str, Any]) -> None:
        _check(prop, case)

    run()


def _graph(spec: list[tuple]) -> GraphDef:
    """[(name, op, inputs, {attr: (value, kind)})] -> GraphDef."""
    graph_def = GraphDef()
    for name, op, inputs, attrs in spec:
        node = graph_def.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, (value, kind) in attrs.items():
            node.attr[key].CopyFrom(make_attr(value, kind))
    return graph_def


F32 = ("float32", "type")
X = ("x", "Placeholder", [], {"dtype": F32, "shape": ([1, 2, 2, 3], "shape")})


def test_cli_process_broken_model_is_one_line_and_writes_nothing() -> None:
    """A real `python -m surgery apply` on a truncated .pb: exit 1, one line, no file."""
    rules = (ROOT / "rules" / "leaky_relu.rules").read_bytes()
    assert check_cli_process("apply", rules, b"\x0a\xff\x01", ".pb", ".pb") == "exit1"


def test_cli_process_apply_writes_a_valid_output() -> None:
    rules = (ROOT / "rules" / "leaky_relu.rules").read_bytes()
    model = _graph([X, ("y", "LeakyRelu", ["x"], {"T": F32, "alpha": (0.1, "float")})])
    assert check_cli_process("apply", rules, model.SerializeToString(), ".pb", ".pb") == "exit0"


# ----------------------------------------------------------------------------- the harness
def test_bounded_stops_a_hang() -> None:
    with pytest.raises(CaseTimeout), bounded(0.2):
        while True:
            pass


def test_the_cli_oracle_catches_leftovers_and_extra_lines(tmp_path: Path) -> None:
    (tmp_path / "m.pb").write_bytes(b"")
    inputs, out = {"m.pb"}, tmp_path / "out.pb"
    one = "surgery apply: error: m.pb: broken\n"
    assert _check_cli_outcome("apply", 1, "", one, tmp_path, inputs, out, set()) == "exit1"
    with pytest.raises(Failure, match="exactly one error line"):
        _check_cli_outcome("apply", 1, "", one + "more\n", tmp_path, inputs, out, set())
    with pytest.raises(Failure, match="traceback"):
        _check_cli_outcome("apply", 1, "", "Traceback (most recent call last):\n", tmp_path,
                           inputs, out, set())  # fmt: skip
    (tmp_path / ".out.pb.abc.tmp").write_bytes(b"partial")
    with pytest.raises(Failure, match="left files"):
        _check_cli_outcome("apply", 1, "", one, tmp_path, inputs, out, set())


def test_graph_problems_finds_dangling_inputs_cycles_and_ports() -> None:
    relu = {"T": F32}
    assert graph_problems(Graph(_graph([X, ("r", "Relu", ["x"], relu)]))) == []
    assert graph_problems(Graph(_graph([X, ("r", "Relu", ["gone"], relu)])))
    assert graph_problems(Graph(_graph([X, ("a", "Relu", ["b"], relu),
                                        ("b", "Relu", ["a"], relu)])))  # fmt: skip
    assert graph_problems(Graph(_graph([X, ("r", "Relu", ["x:3"], relu)])))


def test_plan_splits_the_cases_exactly() -> None:
    chunks = plan(100_000, None, 0)
    assert sum(n for _, n, _ in chunks) == 100_000
    assert {name for name, _, _ in chunks} == set(PROPERTIES)
    assert chunks == plan(100_000, None, 0)  # seeds are derived, not drawn


# ----------------------------------------------------------------------------- found, fixed
# Failures the fuzzing found, each fixed: the reproductions stay as regression tests.
def _l2_normalize_graph(axis: Any) -> GraphDef:
    i32 = ("int32", "type")
    return _graph([
        X,
        ("sq", "Square", ["x"], {"T": F32}),
        ("axis", "Const", [], {"value": (np.array(axis, np.int32), "tensor"), "dtype": i32}),
        ("sum", "Sum", ["sq", "axis"], {"T": F32, "Tidx": i32, "keep_dims": (True, "bool")}),
        ("eps", "Const", [], {"value": (np.float32(1e-12), "tensor"), "dtype": F32}),
        ("max", "Maximum", ["sum", "eps"], {"T": F32}),
        ("rsqrt", "Rsqrt", ["max"], {"T": F32}),
        ("y", "Mul", ["x", "rsqrt"], {"T": F32}),
    ])  # fmt: skip


def test_l2_normalize_scalar_axis_rewrites() -> None:
    from surgery.engine.run import apply_rules
    from surgery.lang.rule_parser import load_rules

    graph = Graph(_l2_normalize_graph(3))
    apply_rules(graph, [load_rules(ROOT / "rules" / "l2_normalize.rules")])
    assert graph.node("y").op == "L2Norm_Surgery"


def test_found_by_fuzzing_l2_normalize_one_element_axis() -> None:
    from surgery.engine.run import apply_rules
    from surgery.lang.rule_parser import load_rules

    graph = Graph(_l2_normalize_graph([3]))
    apply_rules(graph, [load_rules(ROOT / "rules" / "l2_normalize.rules")])
    assert graph.node("y").op == "L2Norm_Surgery"


CONTROL_CHAR_CASES = {
    # a .pbtxt whose bad token holds U+0085 (NEL): surgery.ir.model_io.read_graph_def's message
    "pbtxt_token": ("inspect", b"", b"|\xc2\x85", ".pbtxt"),
    # a rule file with ESC where a rule name goes: surgery.lang.rule_parser's "found '...'"
    "rule_token": ("apply", b"rule \x1b[2J:\n", _graph([X]).SerializeToString(), ".pb"),
    # a node name with \x01, read back in TensorFlow's import error (surgery.passes.tf_reference),
    # here by the shape inference `apply` runs for rules that read shapes
    "tf_import": ("apply", (ROOT / "rules" / "upsample_nearest.rules").read_bytes(),
                  _graph([("\x01x", *X[1:])]).SerializeToString(), ".pb"),
}


@pytest.mark.parametrize("case", list(CONTROL_CHAR_CASES))
def test_found_by_fuzzing_error_line_echoes_control_characters(case: str) -> None:
    command, rules, model, suffix = CONTROL_CHAR_CASES[case]
    if case == "tf_import":
        pytest.importorskip("tensorflow")
    check_cli(command, rules, model, suffix, ".pb")


def test_fuzz_runs_as_a_module() -> None:
    """`python -m fuzz --cases 8 --only pb_bytes` (what `make fuzz` runs) ends 0 and counts."""
    done = subprocess.run([sys.executable, "-m", "fuzz", "--cases", "8", "--jobs", "1",
                           "--only", "pb_bytes", "--no-minimise"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pb_bytes" in done.stdout and "total: 8 cases" in done.stdout


def _reshape_with_const(corrupt: Any) -> GraphDef:
    """x -> Reshape(x, c) with the shape Const `c` corrupted by `corrupt(tensor)`."""
    i32 = ("int32", "type")
    graph_def = _graph([
        ("x", "Placeholder", [], {"dtype": F32, "shape": ([1, 4], "shape")}),
        ("c", "Const", [], {"value": (np.array([-1], np.int32), "tensor"), "dtype": i32}),
        ("r", "Reshape", ["x", "c"], {"T": F32, "Tshape": i32}),
    ])  # fmt: skip
    corrupt(graph_def.node[1].attr["value"].tensor)
    return graph_def


def _odd_content(tensor: Any) -> None:
    tensor.tensor_content = b"\x01\x02\x03"  # 3 bytes of int32


def _unnamed_dtype(tensor: Any) -> None:
    tensor.dtype = 2**31 - 1  # an enum value DataType has no name for


def _huge_and_empty(tensor: Any) -> None:
    tensor.ClearField("tensor_content")
    del tensor.tensor_shape.dim[:]
    tensor.tensor_shape.dim.add(size=2**40)  # 4 TiB of int32 from a 146-byte file


@pytest.mark.parametrize("corrupt", [_odd_content, _unnamed_dtype, _huge_and_empty],
                         ids=["content_length", "dtype_enum", "huge_shape"])  # fmt: skip
def test_found_by_fuzzing_to_numpy_errors_escape(corrupt: Any) -> None:
    from surgery.engine.run import apply_rules
    from surgery.errors import SurgeryError
    from surgery.lang.rule_parser import load_rules

    graph = Graph(_reshape_with_const(corrupt))
    rules = load_rules(ROOT / "rules" / "flatten_reshape.rules")  # reads c.value
    try:
        apply_rules(graph, [rules])
    except SurgeryError:
        pass


def test_found_by_fuzzing_empty_pbtxt_round_trip(tmp_path: Path) -> None:
    from surgery.ir import model_io

    (tmp_path / "in.pbtxt").write_text("# nothing here\n", encoding="utf-8")
    try:
        graph = model_io.load(tmp_path / "in.pbtxt")
    except ModelLoadError:
        return  # refusing it like a 0-byte file is fine too
    model_io.save(graph, tmp_path / "out.pbtxt")
    model_io.load(tmp_path / "out.pbtxt")


def test_found_by_fuzzing_tf_import_aborts_on_contradicting_const(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    i32 = ("int32", "type")
    graph_def = _graph([
        ("x", "Placeholder", [], {"dtype": F32, "shape": ([1, 4], "shape")}),
        ("shape", "Shape", ["x"], {"T": F32, "out_type": i32}),
        ("begin", "Const", [], {"value": (np.array([0], np.int32), "tensor"), "dtype": i32}),
        ("end", "Const", [], {"value": (np.array([1], np.int32), "tensor"), "dtype": i32}),
        ("strides", "Const", [], {"value": (np.array([1], np.int32), "tensor"), "dtype": i32}),
        ("slice", "StridedSlice", ["shape", "begin", "end", "strides"],
         {"T": i32, "Index": i32, "shrink_axis_mask": (1, "int")}),
    ])  # fmt: skip
    strides = graph_def.node[4].attr["value"].tensor
    strides.dtype = 7  # DT_STRING values under a DT_INT32 dtype attr
    strides.ClearField("tensor_content")
    strides.string_val.append(b"x")
    model = tmp_path / "m.pb"
    model.write_bytes(graph_def.SerializeToString())
    done = subprocess.run([sys.executable, "-m", "surgery", "shapes", str(model)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.returncode
