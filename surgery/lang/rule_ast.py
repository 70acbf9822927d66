"""The rule language's syntax tree: what the parser produces and the matcher/rewriter consume.

Every node carries a `Loc` so that errors from any later stage point at file:line:column.
The tree is plain data (frozen dataclasses); nothing here evaluates or executes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FUNCTIONS = (
    "len", "abs", "min", "max", "int", "float", "prod", "matches", "sqrt", "log2", "round",
    "floor", "ceil", "if", "input", "shape", "operand", "limit", "opset", "reads",
)  # fmt: skip
"""The functions a rule expression may call (`Call.func`); `surgery.lang.expr_eval` evaluates
them."""


@dataclass(frozen=True)
class Loc:
    """A position in a rule file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


# --------------------------------------------------------------------------- value expressions
@dataclass(frozen=True)
class Literal:
    """A number, string, bool or list literal (lists hold Expr items)."""

    value: object
    loc: Loc


@dataclass(frozen=True)
class Ref:
    """`x`, `x:1`, `x.alpha`, `x.attr.shape`, `x.value`, `x.shape`, `x.dtype`, `x.rank`, `x.op`.

    `var` names a capture; `port` selects another output of the captured tensor's node;
    `prop` is a tensor property (op, name, port, value, shape, dtype, rank, scope, consumers) or,
    failing that, a node attribute; `attr` forces attribute lookup (`x.attr.shape`).
    """

    var: str
    loc: Loc
    port: int | None = None
    prop: str | None = None
    attr: str | None = None


@dataclass(frozen=True)
class Index:
    """`base[index]`, e.g. `x.shape[1]` or `xs[0]`."""

    base: Expr
    index: Expr
    loc: Loc


@dataclass(frozen=True)
class BinOp:
    """Arithmetic: `+ - * / //` on numbers (and elementwise on lists of numbers)."""

    op: str
    left: Expr
    right: Expr
    loc: Loc


@dataclass(frozen=True)
class Compare:
    """`== != < <= > >= in` between two expressions."""

    op: str
    left: Expr
    right: Expr
    loc: Loc


@dataclass(frozen=True)
class BoolOp:
    """`and` / `or` over two or more conditions."""

    op: str
    operands: tuple[Expr, ...]
    loc: Loc


@dataclass(frozen=True)
class Not:
    operand: Expr
    loc: Loc


@dataclass(frozen=True)
class Call:
    """A whitelisted pure function: len, abs, min, max, int, float, prod, matches(name, glob)."""

    func: str
    args: tuple[Expr, ...]
    loc: Loc


# Expr (a value expression) is defined below ScopeTensor, which it includes.


# --------------------------------------------------------------------------- patterns
@dataclass(frozen=True)
class Capture:
    """A variable: binds any tensor the first time it appears, must be the same tensor after."""

    var: str
    loc: Loc
    port: int | None = None  # `s:1` refers to port 1 of the node captured as `s`


@dataclass(frozen=True)
class Wildcard:
    """`_`: any tensor, not captured."""

    loc: Loc


@dataclass(frozen=True)
class Operand:
    """One operand of an op pattern: by role (`filter: w`) or by position; `xs...` is variadic."""

    pattern: Pattern
    loc: Loc
    role: str | None = None
    variadic: bool = False  # the pattern is a Capture bound to the list of remaining operands


@dataclass(frozen=True)
class OpPattern:
    """`Op1|Op2(operands):port`, optionally bound as `var = ...`. `ops` empty means any op (`*`).

    `allow_extra` (a trailing `...`) lets the node have more operands than listed.
    """

    ops: tuple[str, ...]
    operands: tuple[Operand, ...]
    loc: Loc
    var: str | None = None
    port: int = 0
    allow_extra: bool = False


Pattern = Capture | Wildcard | OpPattern


@dataclass(frozen=True)
class MatchStmt:
    """`match p1; p2 where cond`: several roots may share captures (a DAG, not only a tree)."""

    roots: tuple[OpPattern, ...]
    loc: Loc
    where: Expr | None = None


@dataclass(frozen=True)
class NamePattern:
    """A namespace selector: a glob (`fpn_p{3,4,5}upsampled`, `ROI/**`) or a `regex "..."`."""

    kind: str  # "glob" | "regex"
    text: str
    loc: Loc


@dataclass(frozen=True)
class ScopeStmt:
    """`scope r = "ROI" except "ROI/x*" enters 2 leaves 1`: one match per namespace instance.

    The region is every node whose name is the namespace or lies under it, minus exclusions.
    `enters`/`leaves` is the interface contract: the number of distinct tensors crossing in/out.
    """

    var: str
    include: tuple[NamePattern, ...]
    loc: Loc
    exclude: tuple[NamePattern, ...] = ()
    enters: int | None = None
    leaves: int | None = None
    where: Expr | None = None
    # `side anchors = "input_anchors"`: entering tensors the plugin does not take. They are not
    # counted in `enters` nor listed in `r.in[...]`; a collapse drops their edges and records
    # the tensor on the new node under the role name (validate feeds it from the plugin).
    side: tuple[SideInput, ...] = ()


@dataclass(frozen=True)
class SideInput:
    """`side ROLE = "glob", ...`: an optional entering tensor, by producer name, not an input."""

    role: str
    patterns: tuple[NamePattern, ...]
    loc: Loc


# --------------------------------------------------------------------------- tensor selectors
@dataclass(frozen=True)
class ScopeTensor:
    """`r.in[0]`, `r.in("rpn_class*")`, `r.out[1]`, `r.out("*packed*:1")` on a scope capture.

    Entering/leaving tensors are ordered by their producer's position in the graph, then port;
    a glob selects by producer name (optionally with `:port`) and must select exactly one.
    `r.in[*]` / `r.out[*]` (`every`) is the whole list, in that order. In expressions a property
    may follow: `r.in[0].shape`, `r.out[1].dtype`, `r.in[0].attr.T` (on `[*]`: one per tensor).
    """

    scope: str
    direction: str  # "in" | "out"
    loc: Loc
    index: int | None = None
    glob: str | None = None
    every: bool = False
    prop: str | None = None
    attr: str | None = None


@dataclass(frozen=True)
class TensorName:
    """`tensor "input_image:0"`: a tensor by literal name (fragile across builders; sparingly)."""

    name: str
    loc: Loc


@dataclass(frozen=True)
class ConstArg:
    """`const(int32, [0, 3, 1, 2])`: a new Const node fed to the created node."""

    dtype: str
    value: Expr
    loc: Loc


TensorSel = Ref | ScopeTensor | TensorName | ConstArg
# ScopeTensor: `r.in[0].shape` in expressions
Expr = Literal | Ref | Index | BinOp | Compare | BoolOp | Not | Call | ScopeTensor


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Arg:
    """One input of a created node: by role/slot name (`scores = ...`) or positional."""

    value: TensorSel
    loc: Loc
    role: str | None = None


@dataclass(frozen=True)
class FieldAssign:
    """`negSlope: float = y.alpha`; `kind` may be omitted for plugins (the schema gives it)."""

    name: str
    value: Expr
    loc: Loc
    kind: str | None = None


@dataclass(frozen=True)
class NodeCall:
    """`Op(args) { fields }`: a plugin from the catalog or a TensorFlow op (attrs need kinds)."""

    op: str
    args: tuple[Arg, ...]
    fields: tuple[FieldAssign, ...]
    loc: Loc


@dataclass(frozen=True)
class OutputMap:
    """`t -> 1`: consumers of region/match tensor `t` read port 1 of the new node."""

    tensor: TensorSel
    port: int
    loc: Loc


@dataclass(frozen=True)
class Replace:
    """`replace y with Call outputs { ... }`: the match's root tensor(s) become the new node's."""

    targets: tuple[Ref, ...]
    call: NodeCall
    loc: Loc
    outputs: tuple[OutputMap, ...] = ()
    name: Expr | None = None  # `as "new_name"`; default: the first target's node name


@dataclass(frozen=True)
class Collapse:
    """`collapse r into Call outputs { r.out[0] -> 0 }`: the whole scope becomes one node."""

    scope: str
    call: NodeCall
    loc: Loc
    outputs: tuple[OutputMap, ...] = ()
    name: Expr | None = None  # default: the namespace name


@dataclass(frozen=True)
class Remove:
    """`remove x`: delete x's node; refused if a tensor of it is still read outside the match."""

    var: str
    loc: Loc


@dataclass(frozen=True)
class Forward:
    """`forward x` (or `forward x input 1`): consumers of x read x's node's input instead."""

    var: str
    loc: Loc
    slot: int = 0


@dataclass(frozen=True)
class Connect:
    """`connect t -> y[1]` sets input slot 1 of y's node; `y[+]` appends; `y[^]` adds control."""

    source: TensorSel
    target: str
    slot: int | str  # int, "+" (append) or "^" (control edge)
    loc: Loc


@dataclass(frozen=True)
class Disconnect:
    """`disconnect y[1]` removes input slot 1; `disconnect y[^x]` removes control input x."""

    target: str
    slot: int | str
    loc: Loc


@dataclass(frozen=True)
class Insert:
    """`insert t = Transpose(x, const(int32, [0,3,1,2])) { T: type = float32 }`: new node as `t`."""

    var: str
    call: NodeCall
    loc: Loc


@dataclass(frozen=True)
class SetAttr:
    """`set y.data_format: string = "NCHW"`."""

    var: str
    attr: str
    value: Expr
    loc: Loc
    kind: str | None = None


@dataclass(frozen=True)
class Prune:
    """`prune`: remove the producer cone of the match/region that nothing reads any more.

    Never removes Placeholders, nodes that were graph outputs before rules were applied, or nodes
    this match created.
    """

    loc: Loc


Action = Replace | Collapse | Remove | Forward | Connect | Disconnect | Insert | SetAttr | Prune


# --------------------------------------------------------------------------- rules and files
@dataclass(frozen=True)
class Rule:
    """`rule name [max_iterations N]:` followed by one match/scope statement and its actions."""

    name: str
    body: MatchStmt | ScopeStmt
    actions: tuple[Action, ...]
    loc: Loc
    max_iterations: int = 100
    doc: str = ""  # the comment lines directly above the rule
    targets: tuple[str, ...] = ()  # `rule NAME targets "tensorrt-10":`; empty: every target


@dataclass(frozen=True)
class Param:
    """`param NAME = LITERAL`: a file-level value with a default, `--set NAME=VALUE` per run."""

    name: str
    default: Literal
    loc: Loc
    doc: str = ""


@dataclass(frozen=True)
class Let:
    """`let NAME = EXPR`: a file-level value computed once per graph (inputs, shapes, params)."""

    name: str
    value: Expr
    loc: Loc


@dataclass(frozen=True)
class RuleFile:
    """A parsed rule file: plugin catalog in use, extra commutative ops, rules in file order."""

    path: str
    rules: tuple[Rule, ...]
    plugins: tuple[str, ...] = ()  # `use plugins "trt-8.6"`; empty: the whole catalog
    commutative: tuple[str, ...] = ()
    header: str = field(default="", compare=False)  # leading comment block
    params: tuple[Param, ...] = ()
    lets: tuple[Let, ...] = ()
    targets: tuple[str, ...] = ()  # `targets "tensorrt-8.6", ...`; empty: every target
    targets_loc: Loc | None = field(default=None, compare=False)  # where the statement is
    formats: tuple[str, ...] = ()  # `formats "tensorflow", "onnx"`; empty: TensorFlow's only

    @property
    def model_formats(self) -> tuple[str, ...]:
        """The model formats the file is written for: its op names are those formats' ops."""
        return self.formats or ("tensorflow",)
