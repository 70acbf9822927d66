"""Engine: golden rewrites on the model fixtures, fixpoints, refusals, rollback, determinism.

Golden expectations live in tests/rules_golden/*.json; run with SURGERY_REGEN_GOLDEN=1 to rewrite
them after an intended change (then review the diff).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_matcher import make_graph

from surgery.engine.provenance import jsonable
from surgery.engine.run import Engine, apply_rules
from surgery.errors import RewriteRefused, RuleError
from surgery.ir import model_io
from surgery.ir.attrs import attr_value
from surgery.ir.graph import Graph
from surgery.lang.rule_parser import load_rules, parse_rules
from surgery.passes.prepare import prepare_graph

GOLDEN = Path(__file__).parent / "rules_golden"


def node_summary(graph: Graph, names: list[str]) -> dict:
    """name -> op, inputs, attrs (as JSON), consumers: what goldens compare."""
    out = {}
    for name in names:
        node = graph.node(name)
        consumers = sorted(
            f"{c.name}[{slot}]<-{name if p == 0 else f'{name}:{p}'}"
            for p in graph.used_ports(name) for c, slot in graph.consumers((name, p))
        )  # fmt: skip
        out[name] = {
            "op": node.op,
            "inputs": [str(t) for t in node.inputs] + [f"^{c}" for c in node.controls],
            "attrs": {k: jsonable(attr_value(node.attr[k])) for k in sorted(node.attr)},
            "consumers": consumers,
        }
    return out


def check_golden(name: str, actual: dict) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("SURGERY_REGEN_GOLDEN"):
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert json.loads(json.dumps(actual)) == expected


def apply(graph: Graph, *rule_names: str):
    return apply_rules(graph, [load_rules(GOLDEN / f"{n}.rules") for n in rule_names])


# ------------------------------------------------------------------ goldens on fixtures
def test_golden_leaky_relu_box3d(box3d_pb: Path) -> None:
    graph = model_io.load(box3d_pb)
    alphas = {n.name: n.attr["alpha"].f for n in graph.nodes_by_op("LeakyRelu")}
    inputs = {n.name: list(n.inputs) for n in graph.nodes_by_op("LeakyRelu")}
    result = apply(graph, "leaky_relu")
    assert result.per_rule_counts == {"leaky_relu": 5}
    plugins = graph.nodes_by_op("LReLU_TRT")
    assert not graph.nodes_by_op("LeakyRelu") and len(plugins) == 5
    for node in plugins:  # each node's own alpha, and its own input
        assert node.attr["negSlope"].f == pytest.approx(alphas[node.name])
        assert list(node.inputs) == inputs[node.name]
    graph.check()
    check_golden("leaky_relu.box3d", node_summary(graph, sorted(n.name for n in plugins)))


def test_golden_deconv_by_role_detector(detector_pb: Path) -> None:
    graph = model_io.load(detector_pb)
    (old,) = graph.nodes_by_op("Conv2DBackpropInput")
    sizes, filt, backprop = old.inputs
    result = apply(graph, "deconv_dense")
    assert result.per_rule_counts["deconv"] == 1
    new = graph.node(old.name)
    assert new.op == "TRTDeconvolution" and list(new.inputs) == [backprop, filt]
    graph.check()
    check_golden("deconv.detector", node_summary(graph, [old.name]))


def test_golden_dense_by_role_box3d(box3d_pb: Path) -> None:
    graph = model_io.load(box3d_pb)
    before = {
        n.name: n
        for n in graph.nodes_by_op("BiasAdd")
        if graph.node(n.inputs[0].node).op == "MatMul"
    }
    expected = {}
    for name, node in before.items():
        matmul = graph.node(node.inputs[0].node)
        expected[name] = [*matmul.inputs, node.inputs[1]]
    result = apply(graph, "deconv_dense")
    assert result.per_rule_counts["dense"] == len(before) == 6
    assert any("deconv" in w and "matched nothing" in w for w in result.warnings)
    for name, want in expected.items():
        assert list(graph.node(name).inputs) == want  # (input, kernel, bias)
    assert not graph.nodes_by_op("MatMul")  # the interior MatMuls died and were removed
    graph.check()
    check_golden("dense.box3d", node_summary(graph, sorted(expected)))


def postproc_graph() -> Graph:
    """A namespace read from outside at split:1 and split:2, with control edges and functions."""
    graph = make_graph([
        ("loc", "Placeholder", []),
        ("conf", "Placeholder", []),
        ("priors", "Placeholder", []),
        ("init", "NoOp", []),
        ("postproc/axis", "Const", [], {"value": (np.asarray(1, "int32"), "tensor")}),
        ("postproc/concat", "ConcatV2", ["loc", "conf", "priors", "postproc/axis", "^init"],
         {"N": (3, "int")}),
        ("postproc/dim", "Const", [], {"value": (np.asarray(1, "int32"), "tensor")}),
        ("postproc/split", "Split", ["postproc/dim", "postproc/concat"], {"num_split": (3, "int")}),
        ("postproc/call", "PartitionedCall", ["postproc/split"]),
        ("out_boxes", "Identity", ["postproc/split:2"]),
        ("out_count", "Identity", ["postproc/split:1"]),
        ("after", "NoOp", ["^postproc/split"]),
        ("keep_call", "PartitionedCall", ["loc"]),
    ])  # fmt: skip
    graph.node("postproc/call").attr["f"].func.name = "f_in"
    graph.node("keep_call").attr["f"].func.name = "f_keep"
    lib = graph.library
    for fname in ("f_in", "f_inner", "f_keep"):
        lib.function.add().signature.name = fname
    lib.function[0].node_def.add(name="inner", op="f_inner")
    return graph


def test_golden_collapse_maps_ports(tmp_path: Path) -> None:
    graph = postproc_graph()
    result = apply(graph, "nms_collapse")
    assert result.per_rule_counts == {"postprocess": 1}
    node = graph.node("postproc")
    assert node.op == "NMS_TRT"
    assert list(node.inputs) == [("loc", 0), ("conf", 0), ("priors", 0)]  # schema order
    assert node.controls == ("init",)
    assert graph.node("out_boxes").inputs == (("postproc", 0),)  # split:2 -> port 0
    assert graph.node("out_count").inputs == (("postproc", 1),)  # split:1 -> port 1
    assert graph.node("after").controls == ("postproc",)
    assert [f.signature.name for f in graph.library.function] == ["f_keep"]
    assert not [n for n in graph.names if n.startswith("postproc/")]
    graph.check()
    check_golden("nms_collapse", node_summary(graph, ["postproc"]))
    kinds = [c.kind for c in result.changes]
    assert kinds.count("remove_function") == 2 and kinds.count("remove_node") == 5


def test_refused_unmapped_leaving_tensor_rolls_nothing_in() -> None:
    graph = postproc_graph()
    before = graph.serialize()
    with pytest.raises(RewriteRefused) as err:
        apply(graph, "nms_unsafe")
    text = str(err.value)
    assert "nms_unsafe.rules:6:5" in text and "'postprocess'" in text
    assert "postproc/split:1" in text and "'out_count'" in text
    assert graph.serialize() == before  # refused before any edit


# ------------------------------------------------------------------ engine semantics
def chain() -> Graph:
    return make_graph([
        ("a", "Placeholder", []),
        ("b", "Relu", ["a"]),
        ("c", "Relu", ["b"]),
        ("d", "Relu", ["c"]),
        ("e", "Identity", ["d"]),
    ])  # fmt: skip


def run_text(graph: Graph, text: str):
    return apply_rules(graph, [parse_rules(text, "e.rules")])


def test_cycle_is_refused_and_rolled_back() -> None:
    graph = chain()
    before = graph.serialize()
    with pytest.raises(RewriteRefused) as err:
        run_text(graph, "rule loop:\n match y = Relu(x = Relu(_))\n connect y -> x[0]")
    assert str(err.value).startswith("e.rules:1:1: rule 'loop' refused at 'c'")
    assert "cycle through 'c' and 'b'" in str(err.value)
    assert "'loop'" in str(err.value)
    assert graph.serialize() == before
    graph.check()


def test_fixpoint_bound_is_an_error() -> None:
    graph = chain()
    text = 'rule again max_iterations 3:\n match y = Relu(_)\n set y.tag: int = 1'
    with pytest.raises(RuleError) as err:
        run_text(graph, text)
    assert "'again'" in str(err.value) and "max_iterations=3" in str(err.value)


def test_fixpoint_with_guard_and_non_overlap() -> None:
    graph = chain()
    # Relu(Relu(x)) -> Relu(x): b,c overlap with c,d, so it takes two iterations
    result = run_text(graph, "rule fold:\n match y = Relu(Relu(x))\n forward y")
    assert result.per_rule_counts == {"fold": 2}
    assert [n.name for n in graph.nodes_by_op("Relu")] == ["b"]
    assert graph.node("e").inputs == (("b", 0),)
    ids = sorted({c.match for c in result.changes})
    assert ids == ["fold#1", "fold#2"]


def test_unmatched_rule_is_a_warning() -> None:
    result = run_text(chain(), "rule none:\n match y = Conv2D(_, _)\n remove y")
    assert result.per_rule_counts == {"none": 0}
    assert result.warnings == ["e.rules:1:1: rule 'none' matched nothing"]


def test_determinism_same_bytes(box3d_pb: Path) -> None:
    outs = []
    for _ in range(2):
        graph = model_io.load(box3d_pb)
        apply(graph, "leaky_relu", "deconv_dense")
        outs.append(graph.serialize())
    assert outs[0] == outs[1]


def test_provenance_records_rule_loc_and_match(box3d_pb: Path) -> None:
    graph = model_io.load(box3d_pb)
    result = apply(graph, "leaky_relu")
    adds = [c for c in result.changes if c.kind == "add_node"]
    assert len(adds) == 5 and all(c.rule == "leaky_relu" for c in adds)
    assert adds[0].loc.endswith("leaky_relu.rules:4:1") and adds[0].match == "leaky_relu#1"
    assert adds[0].detail["op"] == "LReLU_TRT"
    # same-name replace: consumers still read the same tensor name, so no rewire is logged
    assert {c.kind for c in result.changes} == {"add_node", "remove_node"}


def test_provenance_no_rewire_when_input_name_unchanged() -> None:
    graph = make_graph([("a", "Placeholder", []), ("y", "LeakyRelu", ["a"]),
                        ("u", "Identity", ["y"]), ("v", "Relu", ["y"])])  # fmt: skip
    text = ('use plugins "trt-8.6"\nrule r:\n match y = LeakyRelu(x)\n'
            ' replace y with LReLU_TRT(x) { negSlope = 0.5 }')
    result = run_text(graph, text)
    assert [c.kind for c in result.changes] == ["remove_node", "add_node"]
    renamed = make_graph([("a", "Placeholder", []), ("y", "LeakyRelu", ["a"]),
                          ("u", "Identity", ["y"])])  # fmt: skip
    text2 = text.replace("0.5 }", '0.5 } as "p"')
    rewires = [c for c in run_text(renamed, text2).changes if c.kind == "rewire"]
    assert [(c.node, c.detail["old"], c.detail["new"]) for c in rewires] == [("u", "y", "p")]


# ------------------------------------------------------------------ change-driven rescans
def run_both(make, text: str):
    """Apply `text` with change-driven rescans and with full rescans: (graph, result) each."""
    out = []
    for rescan_all in (False, True):
        graph = make()
        prepare_graph(graph, [parse_rules(text, "e.rules")])  # shapes, if the rules read them
        engine = Engine(graph)
        engine.rescan_all = rescan_all
        for rule_file in [parse_rules(text, "e.rules")]:
            engine.apply_file(rule_file)
        out.append((graph, engine))
    return out


def test_overlapping_match_skipped_in_one_iteration_is_found_in_the_next() -> None:
    def make() -> Graph:
        return make_graph([
            ("a", "Placeholder", []),
            ("i", "Identity", ["a"]),
            ("r1", "Relu", ["i"]),
            ("r2", "Relu", ["i"]),
            ("o1", "Identity", ["r1"]),
            ("o2", "Identity", ["r2"]),
        ])  # fmt: skip

    (fast, fast_engine), (full, full_engine) = run_both(
        make, "rule sig:\n match y = Relu(x = Identity(_))\n replace y with Sigmoid(x)"
    )
    assert fast_engine.counts == full_engine.counts == {"sig": 2}  # r2 waits for iteration 2
    assert [n.name for n in fast.nodes_by_op("Sigmoid")] == ["r1", "r2"]
    assert fast.serialize() == full.serialize()


def test_skipped_match_whose_shared_node_nothing_changed_is_found_next() -> None:
    """y2's match shares only z with y1's, and y1's rewrite changes neither z nor its readers."""

    def make() -> Graph:
        tag = {"tag": (0, "int")}
        return make_graph([
            ("a", "Placeholder", []),
            ("z", "Relu", ["a"], tag),
            ("x1", "Relu", ["z"], tag),
            ("y1", "Relu", ["x1"], tag),
            ("x2", "Relu", ["z"], tag),
            ("y2", "Relu", ["x2"], tag),
        ])  # fmt: skip

    text = "rule mark:\n match y = Relu(Relu(Relu(_))) where y.tag == 0\n set y.tag: int = 1"
    (fast, fast_engine), (full, _) = run_both(make, text)
    assert fast_engine.counts == {"mark": 2}
    assert [attr_value(fast.node(n).attr["tag"]) for n in ("y1", "y2")] == [1, 1]
    assert fast.serialize() == full.serialize()


def test_producer_left_without_readers_is_found_next() -> None:
    """Removing a dead node changes what its producers' `.consumers` read."""

    def make() -> Graph:
        return make_graph([
            ("a", "Placeholder", []),
            ("i1", "Identity", ["a"]),
            ("i2", "Identity", ["i1"]),
            ("c", "Const", []),
            ("i3", "Identity", ["c"]),
            ("k1", "Identity", ["a"]),
            ("k2", "Identity", ["k1"]),
            ("k3", "Identity", ["k2"]),
            ("out", "Relu", ["k3"]),
        ])  # fmt: skip

    text = "rule dead:\n match d = Identity|Const(...) where d.consumers == 0\n remove d"
    (fast, fast_engine), (full, _) = run_both(make, text)
    assert fast_engine.counts == {"dead": 4}
    assert fast.names == ["a", "k1", "k2", "k3", "out"]
    assert fast.serialize() == full.serialize()


def test_change_driven_rescans_equal_full_rescans_on_every_rule_file(
    box3d_pb: Path, unet_pb: Path, detector_pb: Path, fixture_info
) -> None:
    """Every rule library file on every fixture it can touch, plus the benchmark's 10 rules:
    the same bytes and the same changes whichever way later iterations find their anchors."""
    from benchmarks.bench_rules import RULES
    from benchmarks.synthetic import conv_graph

    rules_dir = Path(__file__).resolve().parent.parent / "rules"
    models = [box3d_pb, unet_pb, detector_pb, fixture_info["maskrcnn_small_nchw"].path]
    cases = [(lambda m=m: model_io.load(m), (rules_dir / f"{r}.rules").read_text())
             for m in models for r in ("leaky_relu", "l2_normalize", "upsample_nearest",
                                       "flatten_reshape", "maskrcnn")]  # fmt: skip
    cases.append((lambda: Graph(conv_graph(3000)), RULES))
    for make, text in cases:
        (fast, fast_engine), (full, full_engine) = run_both(make, text)
        assert fast.serialize() == full.serialize()
        assert fast_engine.counts == full_engine.counts
        changes = [(c.kind, c.node, c.match) for c in fast_engine.recorder.changes]
        assert changes == [(c.kind, c.node, c.match) for c in full_engine.recorder.changes]


def test_while_loop_back_edge_is_not_a_cycle() -> None:
    # Merge reads NextIteration, which comes later in graph order and depends on the Merge:
    # a rewrite touching the Merge must treat that edge as the loop's, not as a cycle.
    graph = make_graph([
        ("x", "Placeholder", []),
        ("enter", "Enter", ["x"]),
        ("m", "Merge", ["enter", "next"]),
        ("body", "Relu", ["m"]),
        ("next", "NextIteration", ["body"]),
        ("out", "Identity", ["body"]),
    ])  # fmt: skip
    result = run_text(graph, "rule skip_enter:\n match m = Merge(Enter(x), _)\n connect x -> m[0]")
    assert result.per_rule_counts == {"skip_enter": 1}
    assert graph.node("m").inputs == (("x", 0), ("next", 0))
    with pytest.raises(RewriteRefused, match="cycle"):
        run_text(graph, "rule loop:\n match y = Identity(b = Relu(_))\n connect y -> b[0]")


def test_field_conversion_error_names_the_match_it_happened_in() -> None:
    # The call's plan is made once, at the first match; a computed field that fails to convert
    # at a later match must still name that later match (and its rule file position).
    graph = make_graph([
        ("x", "Placeholder", []),
        ("a", "Relu", ["x"], {"tag": (1, "int")}),
        ("b", "Relu", ["a"], {"tag": ("high", "string")}),
    ])  # fmt: skip
    text = "rule tagged:\n match y = Relu(x)\n replace y with Tagged(x) { n: int = y.tag }"
    with pytest.raises(RuleError) as err:
        run_text(graph, text)
    assert "at 'b'" in str(err.value) and "at 'a'" not in str(err.value)
    assert str(err.value).startswith("e.rules:3:")


def _in_fresh_python(code: str) -> str:
    """Run `code` in a new interpreter and return its output: experiments with the cyclic GC
    (disabling it, freezing, full collections) must not change this process's GC state."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=Path(__file__).parents[1],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_applying_rules_makes_no_reference_cycles() -> None:
    # Big graphs are frozen out of the cyclic GC (gc_pause.gc_paused): a cycle made during an apply
    # and left as garbage would never be freed, and with it whatever it reaches (the graph).
    out = _in_fresh_python("""
        import gc
        from benchmarks.bench_rules import RULES
        from benchmarks.synthetic import conv_graph
        from surgery.engine.run import apply_rules
        from surgery.ir.graph import Graph
        from surgery.ops.plugin_schema import load_catalog
        from surgery.lang.rule_parser import parse_rules

        rules, catalog = parse_rules(RULES, "bench.rules"), load_catalog(["trt-8.6"])
        graph = Graph(conv_graph(2_000))
        gc.collect()
        gc.disable()
        result = apply_rules(graph, [rules], catalog)
        print("rewrites", sum(result.per_rule_counts.values()))
        del result, graph
        print("in cycles", gc.collect())
    """)
    rewrites, cyclic = (int(line.split()[-1]) for line in out.splitlines())
    assert rewrites > 1_000 and cyclic == 0


def test_a_frozen_big_graph_is_freed_when_its_caller_returns() -> None:
    # Old cyclic garbage holds the caller's frame (as a parser that backtracks may leave): had
    # the pause frozen it, the graph in that frame's locals would never be freed.
    out = _in_fresh_python("""
        import gc, sys
        from benchmarks.synthetic import conv_graph
        from surgery.ir import gc_pause
        from surgery.engine.run import apply_rules
        from surgery.ir.graph import Graph
        from surgery.ops.plugin_schema import load_catalog
        from surgery.lang.rule_parser import parse_rules

        gc_pause._BIG = 2_000  # the policy at a fiftieth of its size: 20k nodes are frozen
        gc_pause._FREEZE_AFTER = 20_000

        def make_cycle(keep):
            try:
                raise ValueError("kept")
            except ValueError as exc:
                err = exc  # once this returns: frame -> err -> traceback -> frame
            keep.append(err)

        def apply_and_keep_one_proto(catalog):
            text = ("rule r:\\n match y = LeakyRelu(x) where y.alpha < 0.15\\n"
                    " set y.alpha: float = 0.2")
            rules = parse_rules(text, "r.rules")
            keep = []
            make_cycle(keep)
            gc.collect()  # the cycle, still kept, ages into the oldest generation...
            keep.clear()  # ...and is garbage from here on, out of reach of young collections
            graph = Graph(conv_graph(20_000))
            apply_rules(graph, [rules], catalog)
            return graph.node("block_0/act").proto

        frozen = gc.get_freeze_count()
        proto = apply_and_keep_one_proto(load_catalog(["trt-8.6"]))
        print("froze", gc.get_freeze_count() > frozen)
        gc.collect()
        print("holders", sys.getrefcount(proto) - 2)  # but `proto` and the call's argument
    """)
    assert out.split() == ["froze", "True", "holders", "0"]
