"""Hypothesis strategies for broken inputs: mutated `.pb` bytes, GraphDefs with corrupted fields,
mutated `.pbtxt` text, token-level mutations of the shipped rule files, random strings."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from hypothesis import strategies as st

from fuzz.graphs import graphs
from surgery.ir.attrs import make_attr
from surgery.ir.protos import GraphDef

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"


@functools.cache
def shipped_rules() -> dict[str, str]:
    """stem -> text of every rules/*.rules."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(RULES_DIR.glob("*.rules"))}


# ----------------------------------------------------------------------------- bytes
BYTE_OPS = ("flip", "set", "delete", "insert", "truncate", "duplicate", "varint", "zero")


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes, max_ops: int = 4) -> bytes:
    """`seed` with 1..max_ops byte-level mutations (bit flips, sets, deletions, insertions,
    truncation, duplicated runs, varint continuation bytes, zeroed runs)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(BYTE_OPS))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            run = data[at : at + draw(st.integers(1, 64))]
            data[at:at] = run
        elif op == "varint" and data:  # a length or varint that runs on, or a huge one
            data[at : at + 1] = draw(st.sampled_from([b"\xff", b"\x80", b"\xff\xff\xff\xff\x0f",
                                                      b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]))
        elif op == "zero":
            end = min(len(data), at + draw(st.integers(1, 32)))
            data[at:end] = bytes(end - at)
    return bytes(data)


@st.composite
def pb_bytes(draw: st.DrawFn) -> bytes:
    """Bytes a `.pb` reader may be handed: a mutated valid GraphDef, random bytes, or a splice."""
    kind = draw(st.sampled_from(("mutated", "mutated", "mutated", "random", "splice", "valid")))
    if kind == "random":
        return draw(st.binary(max_size=512))
    seed = draw(graphs(max_blocks=4)).serialize()
    if kind == "valid":
        return seed
    if kind == "splice":
        other = draw(graphs(max_blocks=3)).serialize()
        cut_a = draw(st.integers(0, len(seed)))
        cut_b = draw(st.integers(0, len(other)))
        return seed[:cut_a] + other[cut_b:]
    return draw(mutated_bytes(seed))


# ----------------------------------------------------------------------------- GraphDef fields
CORRUPTIONS = (
    "dangling_input", "huge_port", "bad_port_syntax", "port_out_of_range", "duplicate_name",
    "drop_attr", "wrong_attr_kind", "empty_name", "unknown_op", "self_loop", "cycle",
    "missing_control", "extra_inputs", "no_inputs", "bad_tensor", "bad_dtype", "bad_shapes_attr",
    "odd_name", "library", "swap_inputs", "control_as_data",
)  # fmt: skip

BAD_INPUTS = (
    "", ":", "^", "^^x", ":0", "x:", "x:-1", "x:01", "x:1:2", "x: 1", " x", "x ", "x\x00y",
    "ＸＸ:0", "x:99999999999999999999999999", "x:4294967296", "x:2147483648",
    "x:9223372036854775808",
    "^x:0", "x/", "/x", "x:0x1", "x:1e3", "nope",
)  # fmt: skip

ODD_NAMES = (
    "a:0", "a:b", "^a", "a b", "", "ü/ß", "a//b", "/", "a/", "x" * 300, "a\nb", "a\x00", "_",
    "fpn_p3upsampled/**", "{a,b}", "[x]", "a.b", "-1",
)  # fmt: skip


def _node_index(draw: st.DrawFn, gd: GraphDef) -> int:
    return draw(st.integers(0, len(gd.node) - 1))


def _corrupt_tensor(draw: st.DrawFn, gd: GraphDef, i: int) -> None:
    """A Const whose value contradicts itself: wrong content length, negative or huge dims,
    values of another type, an unknown dtype, a string tensor, NaN values."""
    node = gd.node[i]
    tensor = node.attr["value"].tensor
    how = draw(st.sampled_from(("content_len", "neg_dim", "huge_dim", "huge_elements", "huge_empty",
                                "other_vals", "dtype_enum", "string", "nan", "scalar_list",
                                "unknown_rank", "many_vals")))  # fmt: skip
    if how == "content_len":
        tensor.tensor_content = draw(st.binary(max_size=11))
    elif how == "neg_dim":
        tensor.tensor_shape.dim.add(size=draw(st.integers(-(2**40), -1)))
    elif how == "huge_dim":  # elements numpy cannot hold at all: refused at once
        tensor.tensor_shape.dim.add(size=draw(st.sampled_from([2**62, 2**63 - 1, 2**40])))
    elif how == "huge_empty":  # no values at all: a decoder must not allocate the shape
        tensor.ClearField("tensor_content")
        del tensor.tensor_shape.dim[:]
        tensor.tensor_shape.dim.add(size=draw(st.sampled_from([2**36, 2**40, 2**62])))
    elif how == "huge_elements":  # a few hundred MB to fill from one value: costly, not absurd
        del tensor.tensor_shape.dim[:]
        tensor.tensor_shape.dim.add(size=draw(st.sampled_from([2**20, 2**24, 2**26])))
        tensor.ClearField("tensor_content")
        tensor.float_val.append(1.0)
    elif how == "other_vals":
        tensor.ClearField("tensor_content")
        tensor.string_val.append(b"\xff\x00")
        tensor.int64_val.extend([2**62, -1])
    elif how == "dtype_enum":
        tensor.dtype = draw(st.sampled_from([0, 7, 20, 21, 99, 9999, 2**31 - 1]))
        node.attr["dtype"].type = tensor.dtype
    elif how == "string":
        tensor.dtype = 7
        tensor.ClearField("tensor_content")
        tensor.string_val.append(draw(st.binary(max_size=8)))
    elif how == "nan":
        tensor.ClearField("tensor_content")
        tensor.dtype = 1
        tensor.float_val.extend([float("nan"), float("inf")])
    elif how == "scalar_list":
        del tensor.tensor_shape.dim[:]
        tensor.tensor_shape.dim.add(size=0)
    elif how == "unknown_rank":
        tensor.tensor_shape.unknown_rank = True
    else:
        tensor.ClearField("tensor_content")
        tensor.dtype = 3
        tensor.int_val.extend(range(draw(st.integers(0, 40))))


def _corrupt(draw: st.DrawFn, gd: GraphDef, how: str) -> None:  # noqa: C901
    nodes = gd.node
    i = _node_index(draw, gd)
    node = nodes[i]
    if how == "dangling_input":
        if node.input:
            node.input[draw(st.integers(0, len(node.input) - 1))] = "missing_" + node.name
        else:
            node.input.append("does_not_exist")
    elif how == "huge_port":
        other = nodes[_node_index(draw, gd)].name
        port = draw(st.sampled_from([2**31 - 1, 2**31, 2**32, 2**63, 10**30, 65536]))
        node.input.append(f"{other}:{port}")
    elif how == "bad_port_syntax":
        bad = draw(st.sampled_from(BAD_INPUTS)).replace("x", nodes[_node_index(draw, gd)].name)
        if node.input and draw(st.booleans()):
            node.input[draw(st.integers(0, len(node.input) - 1))] = bad
        else:
            node.input.append(bad)
    elif how == "port_out_of_range":
        if node.input:
            k = draw(st.integers(0, len(node.input) - 1))
            name = node.input[k].lstrip("^").split(":")[0]
            node.input[k] = f"{name}:{draw(st.integers(1, 7))}"
    elif how == "duplicate_name":
        other = nodes[_node_index(draw, gd)]
        if draw(st.booleans()):
            node.name = other.name
        else:
            copy = nodes.add()
            copy.CopyFrom(other)
    elif how == "drop_attr":
        keys = sorted(node.attr)
        if keys:
            del node.attr[draw(st.sampled_from(keys))]
    elif how == "wrong_attr_kind":
        keys = sorted(node.attr) or ["T"]
        key = draw(st.sampled_from(keys))
        value, kind = draw(st.sampled_from([
            ("abc", "string"), (7, "int"), (0.5, "float"), (True, "bool"), ([1, 2], "list(int)"),
            ([], "list(float)"), ("int32", "type"), ([2, 2], "shape"), (b"\xff\xfe", "string"),
            (["a", "b"], "list(string)"), ([[1], [-1, 2]], "list(shape)"),
            (np.zeros((2, 2), np.int64), "tensor"), ([], "list(int)"),
        ]))  # fmt: skip
        node.attr[key].CopyFrom(make_attr(value, kind))
    elif how == "empty_name":
        node.name = ""
    elif how == "unknown_op":
        node.op = draw(st.sampled_from(["", "NoSuchOp", "LReLU_TRT", "ResizeNearest_TRT",
                                        "Placeholder", "Const", "Merge", "NextIteration",
                                        "Enter", "Switch", "IdentityN", "PyFunc", "Foo/Bar"]))
    elif how == "self_loop":
        node.input.append(node.name)
    elif how == "cycle":
        j = _node_index(draw, gd)
        if j != i:
            nodes[min(i, j)].input.append(nodes[max(i, j)].name)
    elif how == "missing_control":
        node.input.append("^" + draw(st.sampled_from(["ghost", nodes[i].name, "", "a:0"])))
    elif how == "extra_inputs":
        others = [nodes[_node_index(draw, gd)].name for _ in range(draw(st.integers(1, 4)))]
        node.input.extend(others)
    elif how == "no_inputs":
        del node.input[:]
    elif how == "bad_tensor":
        consts = [k for k, n in enumerate(nodes) if n.op == "Const"]
        if consts:
            _corrupt_tensor(draw, gd, draw(st.sampled_from(consts)))
    elif how == "bad_dtype":
        for key in ("T", "dtype", "Tshape", "Tidx"):
            if key in node.attr:
                node.attr[key].type = draw(st.sampled_from([0, 7, 20, 101, 9999]))
                break
    elif how == "bad_shapes_attr":  # built by hand: make_attr refuses negative dims
        shapes = node.attr["_output_shapes"].list.shape
        del shapes[:]
        dims = draw(st.sampled_from([[], [[-5, 3]], [[2**40, 2**40]], [[1], [2], [3], [4]],
                                     [[0, 0, 0, 0]], [[1, 2, 3, 4, 5, 6, 7, 8, 9]]]))
        for shape in dims:
            proto = shapes.add()
            for size in shape:
                proto.dim.add(size=size)
        if draw(st.booleans()):
            shapes.add(unknown_rank=True)
    elif how == "odd_name":
        old, new = node.name, draw(st.sampled_from(ODD_NAMES))
        node.name = new
        for other in nodes:  # keep edges pointing at it (the odd name is the point)
            for k, text in enumerate(other.input):
                if text == old or text.startswith(old + ":") or text == "^" + old:
                    other.input[k] = text.replace(old, new, 1)
    elif how == "library":
        fn = gd.library.function.add()
        fn.signature.name = draw(st.sampled_from(["f", "", "LeakyRelu"]))
        fn.node_def.add(name="n", op="LeakyRelu").input.append("missing:0")
    elif how == "swap_inputs":
        if len(node.input) >= 2:
            node.input[0], node.input[1] = node.input[1], node.input[0]
    elif how == "control_as_data":
        if node.input:
            node.input[0] = "^" + node.input[0].lstrip("^").split(":")[0]


@st.composite
def corrupted_graph_defs(draw: st.DrawFn) -> bytes:
    """A valid generated GraphDef with 1..3 field corruptions, serialized."""
    gd = draw(graphs(max_blocks=5)).graph_def
    for _ in range(draw(st.integers(1, 3))):
        _corrupt(draw, gd, draw(st.sampled_from(CORRUPTIONS)))
    return gd.SerializeToString()


# ----------------------------------------------------------------------------- text
_PBTXT_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][\w.]*|-?\d+(?:\.\d*)?(?:e-?\d+)?|\s+|.')
PBTXT_VOCAB = (
    "{", "}", ":", "node", "input", "attr", "key", "value", "name", "op", '"', "'", "[", "]",
    "<", ">", ",", ";", "-", "nan", "-inf", "1e999", "99999999999999999999", "0x7f", "DT_FLOAT",
    "DT_INVALID", "tensor", "dim", "size", "list", "shape", "\\x", '"\\xff"', "#", "\n",
    "tensor_content", "unknown_rank", "versions", "library", "function",
)  # fmt: skip


@st.composite
def token_mutation(
    draw: st.DrawFn, text: str, pattern: re.Pattern[str], vocab: tuple[str, ...],
    max_ops: int = 3,
) -> str:  # fmt: skip
    """`text` with 1..max_ops token deletions, insertions, swaps, duplications or
    replacements (tokens of the text itself or of `vocab`)."""
    tokens = pattern.findall(text)
    own = [t for t in tokens if not t.isspace()] or [" "]
    for _ in range(draw(st.integers(1, max_ops))):
        if not tokens:
            tokens = [draw(st.sampled_from(vocab))]
            continue
        op = draw(st.sampled_from(("delete", "insert", "swap", "duplicate", "replace",
                                   "delete_run")))  # fmt: skip
        at = draw(st.integers(0, len(tokens) - 1))
        if op == "delete":
            del tokens[at]
        elif op == "delete_run":
            del tokens[at : at + draw(st.integers(2, 12))]
        elif op == "insert":
            pool = vocab if draw(st.booleans()) else own
            tokens.insert(at, draw(st.sampled_from(pool)))
        elif op == "swap":
            other = draw(st.integers(0, len(tokens) - 1))
            tokens[at], tokens[other] = tokens[other], tokens[at]
        elif op == "duplicate":
            tokens.insert(at, tokens[at])
        else:
            pool = vocab if draw(st.booleans()) else own
            tokens[at] = draw(st.sampled_from(pool))
    return "".join(tokens)


@st.composite
def pbtxt_bytes(draw: st.DrawFn) -> bytes:
    """A `.pbtxt` file: a generated graph's text with token or byte mutations, or random text."""
    kind = draw(st.sampled_from(("tokens", "tokens", "tokens", "bytes", "random", "valid")))
    if kind == "random":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    gd = draw(graphs(max_blocks=3)).graph_def
    text = text_format.MessageToString(gd)
    if kind == "valid":
        return text.encode()
    if kind == "bytes":
        return draw(mutated_bytes(text.encode(), max_ops=3))
    return draw(token_mutation(text, _PBTXT_TOKEN, PBTXT_VOCAB)).encode("utf-8", "surrogatepass")


_RULE_TOKEN = re.compile(
    r'"[^"\n]*"?|#[^\n]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[A-Za-z_]\w*'
    r"|->|==|!=|<=|>=|//|\*\*|\.\.\.|\s+|."
)
RULE_VOCAB = (
    "(", ")", "{", "}", "[", "]", ",", ":", "=", "->", "...", "*", "_", ".", '"', "#", "\n",
    "\n    ", "rule", "match", "where", "replace", "with", "collapse", "into", "scope", "enters",
    "leaves", "insert", "connect", "forward", "remove", "prune", "set", "as", "outputs", "side",
    "use", "plugins", "param", "let", "commutative", "max_iterations", "and", "or", "not", "if",
    "len", "prod", "int", "float", "shape", "input", "operand", "limit", "matches", "const",
    "type", "float32", "int32", "0", "-1", "1e999", "-0.0", "99999999999999999999", "1/0",
    "1 // 0", "[]", "[[1]]", '"**"', '"{a,b}"', '"["', '""', "x.value[99]", "x.shape[-9]",
    "nan", "True", "LeakyRelu", "LReLU_TRT", "ResizeNearest_TRT", "NMS_TRT", "Unknown_TRT",
)  # fmt: skip


@st.composite
def rule_source(draw: st.DrawFn) -> str:
    """A shipped rule file, whole or its header (use/param/let lines) with one or two rules."""
    stem = draw(st.sampled_from(sorted(shipped_rules())))
    text = shipped_rules()[stem]
    if draw(st.integers(0, 3)) == 0:
        return text
    parts = re.split(r"(?m)^(?=rule )", text)
    header, rules = parts[0], parts[1:]
    if not rules:
        return text
    picked = draw(st.lists(st.sampled_from(rules), min_size=1, max_size=2, unique=True))
    return header + "".join(picked)


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    """Rule-file text: a shipped file (or an excerpt) with token mutations, or random text."""
    kind = draw(st.sampled_from(("tokens",) * 6 + ("lines", "random_rules", "random", "valid")))
    if kind == "random":
        return draw(st.text(max_size=200))
    if kind == "random_rules":
        words = draw(st.lists(st.sampled_from(RULE_VOCAB), max_size=40))
        return draw(st.sampled_from((" ", "", "\n"))).join(words)
    source = draw(rule_source())
    if kind == "valid":
        return source
    if kind == "lines":
        lines = source.split("\n")
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(lines) - 1))
            op = draw(st.sampled_from(("delete", "duplicate", "swap", "indent", "dedent")))
            if op == "delete":
                del lines[at]
            elif op == "duplicate":
                lines.insert(at, lines[at])
            elif op == "swap":
                other = draw(st.integers(0, len(lines) - 1))
                lines[at], lines[other] = lines[other], lines[at]
            elif op == "indent":
                lines[at] = "    " + lines[at]
            else:
                lines[at] = lines[at].lstrip()
            if not lines:
                lines = [""]
        return "\n".join(lines)
    return draw(token_mutation(source, _RULE_TOKEN, RULE_VOCAB))
