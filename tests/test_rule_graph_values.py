"""The rule language reads what the graph knows: params and `--set`, lets, math, `if`, graph
inputs and shapes, values inside a scope (`operand`, `limit`), side inputs and field limits.

The graphs are real TensorFlow graphs (tf.compat.v1 ops in a namespace, the shape of what a
Mask R-CNN proposal layer freezes to), loaded into surgery's IR.
"""

from __future__ import annotations

import pytest

from surgery.engine.run import apply_rules
from surgery.errors import RuleError, RuleSyntaxError, UsageError
from surgery.ir.graph import Graph
from surgery.lang.rule_check import check_rules
from surgery.lang.rule_params import bind_file, check_settings, parse_settings
from surgery.lang.rule_parser import parse_rules

tf = pytest.importorskip("tensorflow", reason="the test graphs are built with TensorFlow")


def proposal_graph(pre_nms: int = 300, keep: int = 20, iou: float = 0.6) -> Graph:
    """`ns`: TopKV2 k = min(pre_nms, anchors), NMS with Const operands; side input `meta`."""
    from surgery.ir.protos import GraphDef

    graph = tf.Graph()
    with graph.as_default():
        scores = tf.compat.v1.placeholder(tf.float32, [1, None], name="scores")
        boxes = tf.compat.v1.placeholder(tf.float32, [None, 4], name="boxes")
        meta = tf.compat.v1.placeholder(tf.float32, [1, 8], name="meta")
        image = tf.compat.v1.placeholder(tf.float32, [1, 96, 64, 3], name="image")
        with tf.name_scope("ns"):
            k = tf.minimum(pre_nms, tf.shape(scores)[1])
            top = tf.nn.top_k(scores, k).values[0]
            picked = tf.image.non_max_suppression(boxes, top, keep, iou_threshold=iou)
            out = tf.cast(picked, tf.float32) * meta[0, 0]
        tf.identity(out, name="out")
        tf.identity(image, name="image_out")
    return Graph(GraphDef.FromString(graph.as_graph_def().SerializeToString()))


RULE = """
use plugins "trt-8.6"
# Where the image is.
param image_input = "image"
param topk_cap = 5000
let image_shape = shape(input(image_input))
rule proposals:
    scope r = "ns" enters 2 leaves 1 side anchors = "meta"
    collapse r into ProposalLayer_TRT(scores = r.in("scores"), deltas = r.in("boxes")) {
        prenms_topk = min(limit(r, "TopKV2", "k"), topk_cap),
        keep_topk = operand(r, "NonMaxSuppressionV3", "max_output_size"),
        iou_threshold = operand(r, "NonMaxSuppressionV3", "iou_threshold"),
        image_size = [3, image_shape[1], image_shape[2]] }
"""


def run(text: str, graph: Graph, settings: dict[str, str] | None = None):
    return apply_rules(graph, [parse_rules(text, "t.rules")], settings=settings)


def fields(graph: Graph, name: str) -> dict[str, object]:
    from surgery.ir.attrs import attr_value

    return {k: attr_value(v) for k, v in graph.node(name).attr.items()}


def test_fields_read_from_the_scope_and_the_inputs() -> None:
    graph = proposal_graph(pre_nms=300, keep=20, iou=0.6)
    result = run(RULE, graph)
    got = fields(graph, "ns")
    assert got["prenms_topk"] == 300 and got["keep_topk"] == 20
    assert got["iou_threshold"] == pytest.approx(0.6)
    assert list(got["image_size"]) == [3, 96, 64]
    assert got["_side_anchors"] == "meta"  # the dropped side input, for validate
    assert any("'meta' has no readers" in w for w in result.warnings)
    other = proposal_graph(pre_nms=64, keep=7, iou=0.3)
    run(RULE, other)
    assert (fields(other, "ns")["prenms_topk"], fields(other, "ns")["keep_topk"]) == (64, 7)


def test_a_field_above_the_plugin_limit_is_clamped_with_a_warning() -> None:
    graph = proposal_graph(pre_nms=3000)
    result = run(RULE, graph)
    assert fields(graph, "ns")["prenms_topk"] == 1024
    assert fields(graph, "ns")["_clamped_prenms_topk"] == 3000  # what the rule asked
    assert any("rule 'proposals'" in w and "clamped to 1024" in w for w in result.warnings)
    from surgery.backends.validate_compare import clamped_fields

    (note,) = clamped_fields(graph.node("ns"))
    assert note == ("ProposalLayer_TRT at ns runs with prenms_topk 1024 where the rule asked "
                    "3000 (clamped to the plugin's limit)")  # fmt: skip


def test_set_overrides_a_param_with_its_type() -> None:
    graph = proposal_graph(pre_nms=3000)
    run(RULE, graph, {"topk_cap": "512"})
    assert fields(graph, "ns")["prenms_topk"] == 512
    with pytest.raises(UsageError, match="is a int .default 5000., got 'many'"):
        run(RULE, proposal_graph(), {"topk_cap": "many"})
    with pytest.raises(UsageError, match="did you mean 'topk_cap'"):
        run(RULE, proposal_graph(), {"topk_cp": "1"})
    assert parse_settings(["a=1", "b = x"]) == {"a": "1", "b": "x"}
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_settings(["oops"])
    rule_file = parse_rules('param xs = [1.5, 2]\nparam on = true\nrule r:\n match y = Relu(x)\n'
                            ' where y.name in [] and on and len(xs) == 3\n remove y', "p.rules")
    check_settings([rule_file], {"xs": "1,2,3", "on": "false"})
    bound = bind_file(rule_file, {"xs": "1,2,3", "on": "false"})
    assert "Literal(value=False" in repr(bound.rules[0].body.where)


def test_what_cannot_be_read_names_the_rule_and_what_it_looked_for() -> None:
    text = RULE.replace('limit(r, "TopKV2", "k")', 'limit(r, "TopK", "k")')
    with pytest.raises(RuleError, match=r"rule 'proposals' at 'ns'.*no TopK node in scope 'ns'"):
        run(text, proposal_graph())
    text = RULE.replace('limit(r, "TopKV2", "k")', 'operand(r, "TopKV2", "k")')
    with pytest.raises(RuleError, match=r"operand 'k' of TopKV2 in scope 'ns' is not a constant"):
        run(text, proposal_graph())
    graph = proposal_graph()
    graph.node("image").attr["shape"].shape.dim[1].size = -1
    with pytest.raises(RuleError, match=r"shape\(image\) is \[1, \?, 64, 3\].*--input image="):
        run(RULE, graph)
    with pytest.raises(RuleError, match=r"input\('nope'\).*graph inputs: boxes, image, meta"):
        run(RULE, proposal_graph(), {"image_input": "nope"})


def test_side_inputs_do_not_count_in_the_contract() -> None:
    with pytest.raises(RuleError, match=r"3 tensors enter, not 2 \(.*meta"):
        run(RULE.replace(' side anchors = "meta"', ""), proposal_graph())
    with pytest.raises(RuleError, match="side input 'anchors' .* selects 2 entering tensors"):
        text = RULE.replace('side anchors = "meta"', 'side anchors = "meta", "boxes"')
        run(text, proposal_graph())


def test_math_and_if() -> None:
    text = """
let a = sqrt(16) + log2(8) + round(2.5) + floor(-1.5) + ceil([0.2, 1.0])[0]
rule r:
    match y = Relu(x) where a == 4.0 + 3.0 + 2 - 2 + 1 and if(a > 0, true, shape(x)[9] == 1)
    remove y
"""
    graph = proposal_graph()
    from surgery.ir.protos import NodeDef

    node = NodeDef(name="relu", op="Relu", input=["image"])
    node.attr["T"].type = 1
    graph.add_proto(node)
    result = run(text, graph)
    assert result.per_rule_counts == {"r": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("param p = 1 + 2\nrule r:\n match y = Relu(x)\n remove y", "must be a literal"),
        ("param p = 1\nlet p = 2\nrule r:\n match y = Relu(x)\n remove y", "already defined"),
        ("rule r:\n match y = Relu(x)\n remove y\nparam p = 1", "must come before the first rule"),
        ('rule r:\n scope s = "a" side m = "x" side m = "y"\n remove s', "given twice"),
        ("rule r:\n match y = Relu(x) where sin(1) == 0\n remove y", "unknown function 'sin'"),
    ],
)
def test_file_level_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=message):
        parse_rules(text, "bad.rules")


def test_check_knows_params_lets_and_clashes() -> None:
    ok = parse_rules(RULE, "t.rules")
    assert [d for d in check_rules(ok, use_tf=False) if d.severity == "error"] == []
    clash = parse_rules("param x = 1\nrule r:\n match y = Relu(x)\n remove y", "c.rules")
    (diag,) = check_rules(clash, use_tf=False)
    assert "binds 'x', which the file defines as a param or let" in diag.message
    text = "rule r:\n match y = Relu(x) where operand(y, 1) == 1\n remove y"
    arity = parse_rules(text, "a.rules")
    assert any("operand() takes 3" in d.message for d in check_rules(arity, use_tf=False))


def test_check_wants_side_roles_the_plugin_declares() -> None:
    text = RULE.replace('side anchors = "meta"', 'side anchor = "meta"')
    errors = [d.message for d in check_rules(parse_rules(text, "s.rules"), use_tf=False)]
    assert any("declares no side input 'anchor' (did you mean 'anchors'?)" in e for e in errors)
