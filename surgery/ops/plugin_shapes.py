"""Output shape expressions of plugin schemas: a small arithmetic over input dims and fields.

A catalog output declares `"shape"`: either `"inK"` (the shape of input K, any rank) or a list
with one entry per output dim, each an int or an expression string. Grammar (hand-parsed,
never `eval`'d):

    expr    := sum (('==' | '!=' | '<' | '<=' | '>' | '>=') sum)?
    sum     := product (('+' | '-') product)*
    product := unary (('*' | '//') unary)*
    unary   := '-' unary | postfix
    postfix := atom ('[' expr ']')*
    atom    := INT | FLOAT | NAME | 'inK' | 'in' '[' expr ']' | FUNC '(' args ')' | '(' expr ')'

Names are the plugin's fields, or `i`: the index of a tensor within a variadic output (whose
`"count"` is an expression too). `inK[d]` is dim `d` of input K (negative `d` counts from the
end), `in[e]` picks the input by an expression (`in[inputOrder[0]][0]`), `field[e]` one item
of an array field. Functions: `floor(x)`, `ceil(x)`, `max(a, b, ...)`, `min(a, b, ...)`,
`select(cond, a, b)`, `len(field)`, `rank(inK)`, `numel(inK)` (product of its dims) and
`numel(in*)` (summed over every input).

Ints are exact. Float fields and literals are float32, and `+ - *` with a float give float32,
as TensorRT's C++ computes `int(h * mScale)`; a dim must come out an int, so a float must go
through `floor()`/`ceil()`. `//` is integer floor division; comparisons give 0 or 1.

Evaluation runs on concrete ints (`evaluate`), or on symbolic dims through a `SymOps` backend
(TensorRT's IExprBuilder: SUM, PROD, SUB, FLOOR_DIV, CEIL_DIV, MAX, MIN, EQUAL, LESS): known
values fold to ints, and `floor(h * 1.5)` with a symbolic `h` becomes `(h * 3) // 2`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from surgery.errors import SurgeryError

F32 = np.float32
FUNCTIONS = ("floor", "ceil", "max", "min", "select", "len", "rank", "numel")
_TOKEN = re.compile(
    r"\s*(?:(?P<float>\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)|(?P<int>\d+)"
    r"|(?P<instar>\bin\*)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<op>//|==|!=|<=|>=|[-+*<>()\[\],]))"
)
_INPUT = re.compile(r"in(\d+)")


class ShapeExprError(SurgeryError):
    """A shape expression that does not parse, or cannot be evaluated on the given inputs."""


# --------------------------------------------------------------------------- AST
@dataclass(frozen=True)
class Node:
    """One expression node: `kind` and its operands (ints, floats, strings or Nodes)."""

    kind: str  # int float name input index bin neg cmp call instar
    args: tuple[Any, ...]

    def __str__(self) -> str:
        """The node written back as source text."""
        k, a = self.kind, self.args
        if k in ("int", "float", "name"):
            return str(a[0])
        if k == "instar":
            return "in*"
        if k == "input":
            return f"in{a[0].args[0]}" if a[0].kind == "int" else f"in[{a[0]}]"
        if k == "index":
            return f"{a[0]}[{a[1]}]"
        if k == "neg":
            return f"-{a[0]}"
        if k in ("bin", "cmp"):
            return f"({a[1]} {a[0]} {a[2]})"
        return f"{a[0]}({', '.join(str(x) for x in a[1:])})"


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of `text`; ShapeExprError at the first bad character."""
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            hint = " (integer division is //)" if bad == "/" else ""
            raise ShapeExprError(f"shape expression {text!r}: unexpected {bad!r}{hint}")
        kind = m.lastgroup or "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive-descent parser over the token list."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def fail(self, why: str) -> ShapeExprError:
        return ShapeExprError(f"shape expression {self.text!r}: {why}")

    def peek(self) -> str | None:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.toks):
            raise self.fail(f"expected {want!r}, got the end" if want else "unexpected end")
        tok = self.toks[self.pos]
        if want is not None and tok[1] != want:
            raise self.fail(f"expected {want!r}, got {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.pos != len(self.toks):
            raise self.fail(f"unexpected {self.toks[self.pos][1]!r}")
        return node

    def expr(self) -> Node:
        left = self.sum()
        if self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            return Node("cmp", (op, left, self.sum()))
        return left

    def sum(self) -> Node:
        node = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = Node("bin", (op, node, self.product()))
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "//"):
            op = self.take()[1]
            node = Node("bin", (op, node, self.unary()))
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Node("neg", (self.unary(),))
        node = self.atom()
        while self.peek() == "[":
            self.take("[")
            node = Node("index", (node, self.expr()))
            self.take("]")
        return node

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "int":
            return Node("int", (int(text),))
        if kind == "float":
            return Node("float", (float(text),))
        if kind == "instar":
            raise self.fail("'in*' is only allowed as numel(in*)")
        if kind == "name":
            if text == "in":
                self.take("[")
                index = self.expr()
                self.take("]")
                return Node("input", (index,))
            if (m := _INPUT.fullmatch(text)) is not None:
                return Node("input", (Node("int", (int(m.group(1)),)),))
            if self.peek() == "(":
                return self.call(text)
            return Node("name", (text,))
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        raise self.fail(f"unexpected {text!r}")

    def call(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name!r} (functions: {', '.join(FUNCTIONS)})")
        self.take("(")
        args: list[Node] = []
        while self.peek() != ")":
            if self.peek() == "in*" and name == "numel":
                self.take()
                args.append(Node("instar", ()))
            else:
                args.append(self.expr())
            if self.peek() != ")":
                self.take(",")
        self.take(")")
        arity = {"floor": 1, "ceil": 1, "select": 3, "len": 1, "rank": 1, "numel": 1}
        if name in arity and len(args) != arity[name]:
            raise self.fail(f"{name}() takes {arity[name]} argument(s), got {len(args)}")
        if name in ("max", "min") and len(args) < 2:
            raise self.fail(f"{name}() takes at least 2 arguments")
        if name in ("rank", "numel") and args[0].kind not in ("input", "instar"):
            raise self.fail(f"{name}() takes an input (inK{', in*' if name == 'numel' else ''})")
        if name == "len" and args[0].kind != "name":
            raise self.fail("len() takes a field name")
        return Node("call", (name, *args))


def parse(text: str | int) -> Node:
    """The AST of one dim expression (an int is a constant)."""
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ShapeExprError(f"shape expression {text!r}: expected an int or a string")
    if isinstance(text, int):
        return Node("int", (text,))
    return _Parser(text).parse()


def names_in(node: Node) -> set[str]:
    """The bare names (fields, `i`) an expression reads."""
    found: set[str] = set()
    if node.kind == "name":
        found.add(node.args[0])
    for arg in node.args:
        if isinstance(arg, Node):
            found |= names_in(arg)
    return found


def inputs_in(node: Node) -> set[int]:
    """The literal input indices (`inK`) an expression reads."""
    found: set[int] = set()
    if node.kind == "input" and node.args[0].kind == "int":
        found.add(node.args[0].args[0])
    for arg in node.args:
        if isinstance(arg, Node):
            found |= inputs_in(arg)
    return found


# --------------------------------------------------------------------------- evaluation
class SymOps(Protocol):
    """Symbolic dim arithmetic (TensorRT's IExprBuilder behind it)."""

    def constant(self, value: int) -> Any:
        """A symbolic constant."""

    def op(self, name: str, a: Any, b: Any) -> Any:
        """`name` in SUM PROD SUB FLOOR_DIV CEIL_DIV MAX MIN EQUAL LESS, on two symbolic dims."""


@dataclass(frozen=True)
class Sym:
    """A symbolic dim (an IDimensionExpr, or whatever the SymOps backend uses)."""

    expr: Any


@dataclass(frozen=True)
class Scaled:
    """A symbolic dim times a float, waiting for floor()/ceil()."""

    sym: Sym
    factor: float


Value = int | np.floating | list | Sym | Scaled
_SYM_OP = {"+": "SUM", "-": "SUB", "*": "PROD", "//": "FLOOR_DIV"}


@dataclass
class Context:
    """What an expression is evaluated against."""

    dims: Callable[[int], Sequence[int | Sym]]  # input k -> its dims
    num_inputs: int
    fields: Mapping[str, Any]
    ops: SymOps | None = None
    index: int | None = None  # `i` inside a variadic output
    text: str = ""

    def fail(self, why: str) -> ShapeExprError:
        return ShapeExprError(f"shape expression {self.text!r}: {why}")


def _as_sym(value: Any, ctx: Context) -> Any:
    """The backend expression of an int or Sym."""
    if isinstance(value, Sym):
        return value.expr
    if ctx.ops is None:
        raise ctx.fail("symbolic dims need a SymOps backend")
    return ctx.ops.constant(int(value))


def _sym(name: str, a: Any, b: Any, ctx: Context) -> Sym:
    """`name`(a, b) symbolically."""
    if ctx.ops is None:
        raise ctx.fail("symbolic dims need a SymOps backend")
    return Sym(ctx.ops.op(name, _as_sym(a, ctx), _as_sym(b, ctx)))


def _is_float(value: Any) -> bool:
    """Whether a concrete value is a float (float32)."""
    return isinstance(value, float | np.floating)


def _scalar(value: Any, ctx: Context, what: str) -> Any:
    """A scalar value (not a list field)."""
    if isinstance(value, list):
        raise ctx.fail(f"{what} is an array; index it (name[k]) or take len()")
    return value


def _concrete_int(value: Any, ctx: Context, what: str) -> int:
    """A known int (indices, ranks), or an error."""
    value = _scalar(value, ctx, what)
    if isinstance(value, Sym | Scaled):
        raise ctx.fail(f"{what} must be known when the plugin is built, not a symbolic dim")
    if _is_float(value):
        if not float(value).is_integer():
            raise ctx.fail(f"{what} is {value}, not a whole number")
        return int(value)
    return int(value)


def _binary(op: str, a: Any, b: Any, ctx: Context) -> Any:
    """a op b over ints, float32s and symbolic dims."""
    a, b = _scalar(a, ctx, "an operand"), _scalar(b, ctx, "an operand")
    if isinstance(a, Scaled) or isinstance(b, Scaled):
        raise ctx.fail(f"a float-scaled dim must go through floor() or ceil() before {op!r}")
    symbolic = isinstance(a, Sym) or isinstance(b, Sym)
    if _is_float(a) or _is_float(b):
        if op == "//":
            raise ctx.fail("'//' needs ints; use floor(a * b) for a float factor")
        if not symbolic:
            return {"+": np.add, "-": np.subtract, "*": np.multiply}[op](F32(a), F32(b))
        if op != "*":
            raise ctx.fail(f"a symbolic dim {op} a float is not a dim; multiply and floor()")
        return Scaled(a, float(b)) if isinstance(a, Sym) else Scaled(b, float(a))
    if symbolic:
        return _sym(_SYM_OP[op], a, b, ctx)
    if op == "//":
        if b == 0:
            raise ctx.fail("division by zero")
        return int(a) // int(b)
    return {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]


def _round(kind: str, value: Any, ctx: Context) -> Any:
    """floor()/ceil() of a value: ints stay, float32s round, scaled dims become int ratios."""
    value = _scalar(value, ctx, f"{kind}()'s argument")
    if isinstance(value, Scaled):
        ratio = Fraction(value.factor).limit_denominator(1 << 12)
        prod = _binary("*", value.sym, ratio.numerator, ctx)
        if ratio.denominator == 1:
            return prod
        return _sym("FLOOR_DIV" if kind == "floor" else "CEIL_DIV", prod, ratio.denominator, ctx)
    if _is_float(value):
        return int(math.floor(value) if kind == "floor" else math.ceil(value))
    return value


def _compare(op: str, a: Any, b: Any, ctx: Context) -> Any:
    """0/1 for a op b."""
    a, b = _scalar(a, ctx, "an operand"), _scalar(b, ctx, "an operand")
    if not (isinstance(a, Sym) or isinstance(b, Sym)):
        if isinstance(a, Scaled) or isinstance(b, Scaled):
            raise ctx.fail("compare dims after floor()")
        ops = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
        return int(bool(ops[op]))
    if op in ("==", "!="):
        eq = _sym("EQUAL", a, b, ctx)
        return eq if op == "==" else _sym("SUB", 1, eq, ctx)
    if op == "<":
        return _sym("LESS", a, b, ctx)
    if op == ">":
        return _sym("LESS", b, a, ctx)
    return _sym("SUB", 1, _sym("LESS", b, a, ctx) if op == "<=" else _sym("LESS", a, b, ctx), ctx)


def _input(node: Node, ctx: Context) -> int:
    """The input index a `inK` / `in[e]` node names."""
    k = _concrete_int(evaluate(node.args[0], ctx), ctx, "an input index")
    if not 0 <= k < ctx.num_inputs:
        raise ctx.fail(f"input {k} does not exist (the plugin has {ctx.num_inputs} input(s))")
    return k


def _numel(k: int, ctx: Context) -> Any:
    """Product of input k's dims."""
    total: Any = 1
    for d in ctx.dims(k):
        total = _binary("*", total, d, ctx)
    return total


def _call(name: str, args: tuple[Node, ...], ctx: Context) -> Any:
    """A function call."""
    if name == "rank":
        return len(ctx.dims(_input(args[0], ctx)))
    if name == "numel":
        if args[0].kind == "instar":
            total: Any = 0
            for k in range(ctx.num_inputs):
                total = _binary("+", total, _numel(k, ctx), ctx)
            return total
        return _numel(_input(args[0], ctx), ctx)
    if name == "len":
        value = evaluate(args[0], ctx)
        if not isinstance(value, list):
            raise ctx.fail(f"len({args[0]}): the field is not an array")
        return len(value)
    values = [evaluate(a, ctx) for a in args]
    if name in ("floor", "ceil"):
        return _round(name, values[0], ctx)
    if name == "select":
        cond = _scalar(values[0], ctx, "select()'s condition")
        if not isinstance(cond, Sym | Scaled):
            return values[1] if cond else values[2]
        # symbolic 0/1 condition: cond * a + (1 - cond) * b
        picked = _binary("*", cond, values[1], ctx)
        other = _binary("*", _binary("-", 1, cond, ctx), values[2], ctx)
        return _binary("+", picked, other, ctx)
    result = values[0]
    for value in values[1:]:
        a, b = _scalar(result, ctx, "an operand"), _scalar(value, ctx, "an operand")
        if isinstance(a, Sym) or isinstance(b, Sym):
            result = _sym(name.upper(), a, b, ctx)
        else:
            result = max(a, b) if name == "max" else min(a, b)
    return result


def evaluate(node: Node, ctx: Context) -> Value:
    """The value of `node` in `ctx` (int, float32, list field, or symbolic)."""
    kind, args = node.kind, node.args
    if kind == "int":
        return args[0]
    if kind == "float":
        return F32(args[0])
    if kind == "name":
        name = args[0]
        if name == "i" and ctx.index is not None:
            return ctx.index
        if name not in ctx.fields:
            raise ctx.fail(f"unknown name {name!r} (not a field of the plugin)")
        value = ctx.fields[name]
        if value is None:
            raise ctx.fail(f"field {name!r} has no value")
        if isinstance(value, list | tuple):
            return list(value)
        if isinstance(value, bool):
            return int(value)
        return F32(value) if _is_float(value) else int(value)
    if kind == "input":
        raise ctx.fail(f"{node} is a tensor; take a dim ({node}[0]), rank() or numel()")
    if kind == "index":
        base, where = args
        if base.kind == "input":
            dims = list(ctx.dims(_input(base, ctx)))
            d = _concrete_int(evaluate(where, ctx), ctx, "a dim index")
            if not -len(dims) <= d < len(dims):
                raise ctx.fail(f"{base} has rank {len(dims)}; there is no dim {d}")
            return dims[d]
        value = evaluate(base, ctx)
        if not isinstance(value, list):
            raise ctx.fail(f"{base} is not an array field; it cannot be indexed")
        k = _concrete_int(evaluate(where, ctx), ctx, "an index")
        if not -len(value) <= k < len(value):
            raise ctx.fail(f"{base} has {len(value)} item(s); there is no item {k}")
        item = value[k]
        return F32(item) if _is_float(item) else int(item)
    if kind == "neg":
        return _binary("-", 0, evaluate(args[0], ctx), ctx)
    if kind == "bin":
        return _binary(args[0], evaluate(args[1], ctx), evaluate(args[2], ctx), ctx)
    if kind == "cmp":
        return _compare(args[0], evaluate(args[1], ctx), evaluate(args[2], ctx), ctx)
    if kind == "call":
        return _call(args[0], args[1:], ctx)
    raise ctx.fail(f"cannot evaluate {node}")  # instar outside numel: refused by the parser


def dim_value(node: Node, ctx: Context) -> int | Sym:
    """A dim: an int or a symbolic dim (a float that was not floored is an error)."""
    value = evaluate(node, ctx)
    if isinstance(value, list):
        raise ctx.fail("a dim is an array field; index it")
    if isinstance(value, Scaled | float | np.floating):  # Scaled, or _is_float(value)
        raise ctx.fail("a dim came out a float; wrap it in floor() or ceil()")
    return value
