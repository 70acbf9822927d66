"""Lint rule files without a model: ops, roles, plugins, fields, variables, scopes.

`check_rules(rule_file, catalog)` returns every problem found (not only the first) as
`Diagnostic`s; `check_paths(paths)` also reports syntax errors and unknown catalogs.

With a TensorRT `target` (`surgery.ops.targets`), every plugin a rule emits is checked against it:
a warning where neither the target's plugin library nor a surgery GPU kernel computes it, a note
on deprecation, renamed creators and native alternatives, a warning for a file whose `targets`
leave the target out, a note for a rule left out there. Without one, a file that states its
targets is checked against each of them, warnings only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from surgery.errors import RuleError, RuleSyntaxError
from surgery.lang import rule_ast as ast
from surgery.lang.expr_text import scope_tensor_text
from surgery.lang.name_patterns import glob_regex, name_regex
from surgery.lang.rule_parser import load_rules
from surgery.lang.rule_syntax import FORMATS, FUNCTIONS
from surgery.ops import opdefs as _opdefs
from surgery.ops.plugin_schema import (
    Catalog,
    PluginSchema,
    coerce_field,
    kind_mismatch,
    load_catalog,
)
from surgery.ops.targets import file_mismatch, provision, rule_skipped

_ARITY = {"len": (1, 1), "abs": (1, 1), "int": (1, 1), "float": (1, 1), "prod": (1, 1),
          "matches": (2, 2), "min": (1, None), "max": (1, None), "sqrt": (1, 1),
          "log2": (1, 1), "round": (1, 1), "floor": (1, 1), "ceil": (1, 1), "if": (3, 3),
          "input": (1, 1), "shape": (1, 1), "operand": (3, 3), "limit": (3, 3),
          "opset": (1, 1), "reads": (2, 2)}  # fmt: skip


@dataclass(frozen=True)
class Diagnostic:
    """One finding: where, how bad ("error", "warning", or "note": no problem), and what."""

    loc: ast.Loc
    severity: str
    message: str

    def __str__(self) -> str:
        """`file:line:col: severity: message`."""
        return f"{self.loc}: {self.severity}: {self.message}"


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` or ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- op knowledge
@dataclass
class _Ops:
    """What we know about the ops of the formats a rule file is for (TensorFlow's, ONNX's):
    known names and their input roles. An op must be known in every one of them."""

    use_tf: bool = True
    formats: tuple[str, ...] = ("tensorflow",)

    def _sets(self) -> list[tuple[str, _opdefs.OpSet]]:
        return [(f, _opset(f, self.use_tf)) for f in self.formats]

    def known(self, op: str) -> bool | None:
        """True/False when we can tell, None when nothing can be consulted."""
        if self.missing_in(op) is None:
            return True
        if "onnx" in self.formats or (self.use_tf and _opdefs.tensorflow_available()):
            return False
        return None  # only the built-in table was consulted: cannot be sure

    def which(self, op: str) -> str:
        """` for onnx` naming the format that lacks `op`, when the file is for several or for
        another than TensorFlow ('' otherwise)."""
        missing = self.missing_in(op)
        if missing is None or self.formats == ("tensorflow",):
            return ""
        other = [f for f in FORMATS if f != missing]
        elsewhere = [f for f in other if _opdefs.is_known(op, ops=_opset(f, self.use_tf))]
        names = {"tensorflow": "TensorFlow", "onnx": "ONNX"}
        note = f": a {names[elsewhere[0]]} op" if elsewhere else ""
        return f" for {names[missing]}{note}"

    def missing_in(self, op: str) -> str | None:
        """The first format whose ops lack `op`, or None when all have it."""
        for name, ops in self._sets():
            if not _opdefs.is_known(op, ops=ops):
                return name
        return None

    def roles(self, op: str) -> list[tuple[str, bool]] | None:
        """(role, variadic) for each declared input of `op` in the first format, or None if
        unknown (the other formats' roles are checked by `role_sets`)."""
        sets = self.role_sets(op)
        return sets[0][1] if sets else None

    def role_sets(self, op: str) -> list[tuple[str, list[tuple[str, bool]]]]:
        """(format, its (role, variadic) list) for each format that knows `op`."""
        return [(name, [(a.name, a.variadic) for a in _opdefs.arg_specs(op, ops=ops)])
                for name, ops in self._sets() if _opdefs.is_known(op, ops=ops)]  # fmt: skip

    def names(self) -> list[str]:
        """Op names for did-you-mean suggestions."""
        names = set(_opdefs.BUILTIN) if "tensorflow" in self.formats else set()
        if "onnx" in self.formats:
            names |= _opdefs.onnx_op_names()
        return sorted(names)


def _opset(fmt: str, use_tf: bool) -> _opdefs.OpSet:
    """The `opdefs.OpSet` of a rule-file format ("tensorflow" or "onnx")."""
    return _opdefs.OpSet("onnx") if fmt == "onnx" else _opdefs.OpSet(use_tf=use_tf)


# --------------------------------------------------------------------------- checker
@dataclass
class _RuleChecker:
    """Checks one rule; collects diagnostics into `out`."""

    rule: ast.Rule
    catalog: Catalog
    everything: Catalog
    ops: _Ops
    out: list[Diagnostic]
    kinds: dict[str, str] = field(default_factory=dict)  # var -> tensor | list | scope
    targets: tuple[str, ...] = ()  # TensorRT targets the emitted plugins are checked against
    notes: bool = False  # also say what is no problem there (deprecations, native ops)

    def error(self, loc: ast.Loc, message: str) -> None:
        """Record an error."""
        self.out.append(Diagnostic(loc, "error", message))

    def warn(self, loc: ast.Loc, message: str) -> None:
        """Record a warning."""
        self.out.append(Diagnostic(loc, "warning", message))

    # ---------------------------------------------------------------- bindings
    def run(self) -> None:
        """Check the body, then the actions in order."""
        body = self.rule.body
        if isinstance(body, ast.ScopeStmt):
            self.kinds[body.var] = "scope"
            self.name_patterns(body)
            if body.where is not None:
                self.expr(body.where)
        else:
            for root in body.roots:
                self.bind(root)
            for root in body.roots:
                self.pattern(root, is_root=True)
            if body.where is not None:
                self.expr(body.where)
        if not self.rule.actions:
            self.warn(self.rule.loc, f"rule '{self.rule.name}' has no actions (it only matches)")
        for action in self.rule.actions:
            self.action(action)

    def name_patterns(self, body: ast.ScopeStmt) -> None:
        """Each scope pattern must compile as the matcher compiles it: with RE2, which refuses
        backreferences and lookaround (`surgery.lang.name_patterns.NameRegex`)."""
        sides = (p for side in body.side for p in side.patterns)
        for p in (*body.include, *body.exclude, *sides):
            try:
                name_regex(p.text) if p.kind == "regex" else glob_regex(p.text)
            except RuleError as exc:
                self.error(p.loc, str(exc))

    def bind(self, pattern: ast.Pattern) -> None:
        """Record every variable a pattern binds (before checking uses)."""
        if isinstance(pattern, ast.OpPattern):
            if pattern.var:
                self.kinds.setdefault(pattern.var, "tensor")
            for operand in pattern.operands:
                if operand.variadic and isinstance(operand.pattern, ast.Capture):
                    self.kinds[operand.pattern.var] = "list"
                else:
                    self.bind(operand.pattern)
        elif isinstance(pattern, ast.Capture):
            self.kinds.setdefault(pattern.var, "tensor")

    def pattern(self, pattern: ast.Pattern, is_root: bool = False) -> None:
        """Check op names, roles and operand counts of a pattern tree."""
        if not isinstance(pattern, ast.OpPattern):
            return
        if not pattern.ops and is_root:
            self.warn(pattern.loc, "a '*' root matches any op: the rule scans the whole graph")
        for op in pattern.ops:
            self.op_name(op, pattern.loc)
        for op in pattern.ops:
            self.operand_roles(op, pattern)
        for operand in pattern.operands:
            self.pattern(operand.pattern)

    def op_name(self, op: str, loc: ast.Loc) -> None:
        """An op in a pattern must be a TF op or a plugin."""
        if op in self.everything:
            return
        known = self.ops.known(op)
        if known:
            return
        hint = _suggest(op, self.ops.names() + [s.name for s in self.everything])
        if known is False:
            self.error(loc, f"unknown op '{op}'{self.ops.which(op)}{hint}")
        else:
            self.warn(loc, f"op '{op}' is not in the built-in op table{hint} "
                      "(TensorFlow's registry was not consulted)")  # fmt: skip

    def known_role(
        self, loc: ast.Loc, op: str, role: str | None, names: list[str], noun: str
    ) -> None:
        """An error unless `role` is None or one of `op`'s role `names` (with a did-you-mean)."""
        if role is not None and role not in names:
            self.error(
                loc,
                f"{op} has no {noun} '{role}'{_suggest(role, names)} "
                f"(its {noun}s: {', '.join(names) or 'none'})",
            )

    def operand_roles(self, op: str, pattern: ast.OpPattern) -> None:
        """Roles used in `pattern` must exist in `op` (in each format); positional operands
        must fit."""
        roles = self.ops.roles(op)
        if roles is None:
            return
        for fmt, fmt_roles in self.ops.role_sets(op):
            names = [r for r, _ in fmt_roles]
            noun = "operand" if len(self.ops.formats) == 1 else f"{fmt} operand"
            for operand in pattern.operands:
                self.known_role(operand.loc, op, operand.role, names, noun)
        positional = [o for o in pattern.operands if o.role is None and not o.variadic]
        if not any(v for _, v in roles) and not any(o.variadic for o in pattern.operands):
            if len(positional) > len(roles):
                self.error(pattern.loc, f"{op} takes {len(roles)} operand(s), the pattern "
                           f"gives {len(positional)}")  # fmt: skip

    # ---------------------------------------------------------------- expressions
    def var(self, name: str, loc: ast.Loc, want: str | None = None) -> str | None:
        """A variable use: it must be bound; `want` restricts its kind."""
        kind = self.kinds.get(name)
        if kind is None:
            hint = _suggest(name, self.kinds)
            self.error(loc, f"variable '{name}' is not bound by any pattern{hint}")
            return None
        if want == "scope" and kind != "scope":
            self.error(
                loc, f"'{name}' is not a scope variable (bind one with 'scope {name} = ...')"
            )
        elif want == "node" and kind == "scope":
            self.error(loc, f"'{name}' is a scope; use 'collapse' or '{name}.in[i]'/'.out[i]'")
        return kind

    def expr(self, expr: object) -> None:
        """Check variable uses and function arity in an expression."""
        if isinstance(expr, ast.Literal):
            if isinstance(expr.value, tuple):
                for item in expr.value:
                    self.expr(item)
        elif isinstance(expr, ast.Ref):
            self.var(expr.var, expr.loc)
        elif isinstance(expr, ast.ScopeTensor):
            self.tensor(expr)
        elif isinstance(expr, ast.Index):
            self.expr(expr.base)
            self.expr(expr.index)
        elif isinstance(expr, ast.BinOp | ast.Compare):
            self.expr(expr.left)
            self.expr(expr.right)
        elif isinstance(expr, ast.BoolOp):
            for operand in expr.operands:
                self.expr(operand)
        elif isinstance(expr, ast.Not):
            self.expr(expr.operand)
        elif isinstance(expr, ast.Call):
            low, high = _ARITY.get(expr.func, (0, None))
            if expr.func not in FUNCTIONS:
                self.error(expr.loc, f"unknown function '{expr.func}'")
            elif len(expr.args) < low or (high is not None and len(expr.args) > high):
                self.error(
                    expr.loc,
                    f"{expr.func}() takes {low if low == high else 'at least'}"
                    f"{'' if low == high else f' {low}'} argument(s), got {len(expr.args)}",
                )
            for arg in expr.args:
                self.expr(arg)

    def tensor(self, sel: object) -> None:
        """Check a tensor selector (Ref, ScopeTensor, TensorName, ConstArg)."""
        if isinstance(sel, ast.ScopeTensor):
            if self.var(sel.scope, sel.loc, want="scope") == "scope":
                self.scope_index(sel)
        elif isinstance(sel, ast.Ref):
            self.var(sel.var, sel.loc, want="node")
        elif isinstance(sel, ast.ConstArg):
            self.expr(sel.value)

    def scope_index(self, sel: ast.ScopeTensor) -> None:
        """`r.in[i]` must fit the scope's declared interface when one is given."""
        body = self.rule.body
        if not isinstance(body, ast.ScopeStmt) or sel.index is None or sel.every:
            return
        bound = body.enters if sel.direction == "in" else body.leaves
        if bound is not None and sel.index >= bound:
            word = "enters" if sel.direction == "in" else "leaves"
            self.error(sel.loc, f"{sel.scope}.{sel.direction}[{sel.index}] is out of range: "
                       f"the scope declares '{word} {bound}'")  # fmt: skip

    # ---------------------------------------------------------------- actions
    def action(self, action: object) -> None:
        """Check one action, then record any variable it defines."""
        if isinstance(action, ast.Replace):
            for target in action.targets:
                self.var(target.var, target.loc, want="node")
            schema = self.node_call(action.call)
            self.outputs(action.outputs, schema)
            if action.name is not None:
                self.expr(action.name)
        elif isinstance(action, ast.Collapse):
            kind = self.kinds.get(action.scope)
            if kind is None:
                self.var(action.scope, action.loc)
            elif kind != "scope":
                self.error(action.loc, f"collapse needs a scope variable; '{action.scope}' is "
                           "bound by a match pattern (use 'replace')")  # fmt: skip
            schema = self.node_call(action.call)
            self.outputs(action.outputs, schema)
            if action.name is not None:
                self.expr(action.name)
            self.side_roles(schema)
        elif isinstance(action, ast.Remove | ast.Forward):
            self.var(action.var, action.loc, want="node")
        elif isinstance(action, ast.Connect):
            self.tensor(action.source)
            if self.is_list(action.source):
                self.error(action.loc, f"connect takes one tensor; {_sel_key(action.source)} is "
                           "a list")  # fmt: skip
            self.var(action.target, action.loc, want="node")
        elif isinstance(action, ast.Disconnect):
            self.var(action.target, action.loc, want="node")
            if isinstance(action.slot, str) and len(action.slot) > 1:
                self.var(action.slot[1:], action.loc, want="node")
        elif isinstance(action, ast.SetAttr):
            self.var(action.var, action.loc, want="node")
            self.expr(action.value)
        elif isinstance(action, ast.Insert):
            self.node_call(action.call)
            self.kinds[action.var] = "tensor"

    def side_roles(self, schema: PluginSchema | None) -> None:
        """A scope's `side ROLE` must be a side input the collapsed plugin declares (validate
        feeds the original what the plugin implies there)."""
        body = self.rule.body
        if schema is None or not isinstance(body, ast.ScopeStmt):
            return
        known = [s.name for s in schema.side_inputs]
        for item in body.side:
            if item.role not in known:
                shown = ", ".join(known) or "none"
                self.error(item.loc, f"plugin {schema.name} declares no side input "
                           f"'{item.role}'{_suggest(item.role, known)} (its side inputs: "
                           f"{shown}); validate could not feed it")  # fmt: skip

    def is_list(self, sel: object) -> bool:
        """Whether a selector stands for a list of tensors (`r.in[*]`, a variadic capture)."""
        if isinstance(sel, ast.ScopeTensor):
            return sel.every
        return isinstance(sel, ast.Ref) and sel.port is None and self.kinds.get(sel.var) == "list"

    def outputs(self, maps: tuple[ast.OutputMap, ...], schema: PluginSchema | None) -> None:
        """Output maps: valid tensors, each mapped once, ports within the plugin's outputs."""
        seen: set[str] = set()
        for item in maps:
            self.tensor(item.tensor)
            key = _sel_key(item.tensor)
            if key in seen:
                self.error(item.loc, f"{key} is mapped twice")
            seen.add(key)
            if schema is not None:
                _, most = schema.output_count()
                last = item.port
                body = self.rule.body
                if isinstance(item.tensor, ast.ScopeTensor) and item.tensor.every:
                    if isinstance(body, ast.ScopeStmt) and body.leaves is not None:
                        last = item.port + max(body.leaves - 1, 0)
                if most is not None and last >= most:
                    ports = f"port {item.port}" if last == item.port else (
                        f"{key} needs ports {item.port}..{last}, port {most}")
                    self.error(item.loc, f"{schema.name} has {most} output(s); {ports} "
                               "does not exist")  # fmt: skip

    def node_call(self, call: ast.NodeCall) -> PluginSchema | None:
        """Check a created node: a plugin (schema) or a TensorFlow op (kinds and roles)."""
        for arg in call.args:
            self.tensor(arg.value)
        for assign in call.fields:
            self.expr(assign.value)
        if call.op in self.catalog:
            schema = self.catalog.get(call.op)
            self.plugin_call(call, schema)
            for target in self.targets:
                for severity, message in provision(schema, target).diagnostics(self.notes):
                    self.out.append(Diagnostic(call.loc, severity, message))
            return schema
        if call.op in self.everything:
            catalogs = ", ".join(f'"{c}"' for c in self.everything.get(call.op).catalogs)
            self.error(
                call.loc,
                f"plugin '{call.op}' is not in the catalog in use "
                f"({', '.join(self.catalog.names)}); add 'use plugins {catalogs}'",
            )
            return None
        known = self.ops.known(call.op)
        plugin_hint = _suggest(call.op, [s.name for s in self.catalog])
        if known is False or (known is None and (plugin_hint or not _looks_like_tf(call.op))):
            hint = plugin_hint or _suggest(call.op, self.ops.names())
            self.error(call.loc, f"unknown plugin or op '{call.op}'{hint}")
            return None
        if known is None:
            self.warn(call.loc, f"op '{call.op}' is not a plugin nor in the built-in op table "
                      "(TensorFlow's registry was not consulted)")  # fmt: skip
        for assign in call.fields:
            if assign.kind is None:
                self.error(assign.loc, f"attribute '{assign.name}' of TensorFlow op {call.op} "
                           f"needs a kind: '{assign.name}: KIND = ...' (int, float, bool, string, "
                           "type, shape, tensor, list(...))")  # fmt: skip
        roles = self.ops.roles(call.op)
        if roles is not None:
            names = [r for r, _ in roles]
            for arg in call.args:
                self.known_role(arg.loc, call.op, arg.role, names, "input")
        return None

    def plugin_call(self, call: ast.NodeCall, schema: PluginSchema) -> None:
        """Fields, field types and inputs of a plugin node against its schema."""
        names = [f.name for f in schema.fields]
        given = {a.name for a in call.fields}
        for assign in call.fields:
            if assign.name not in names:
                self.error(
                    assign.loc,
                    f"plugin {schema.name} has no field '{assign.name}'"
                    f"{_suggest(assign.name, names)} (fields: {', '.join(names) or 'none'})",
                )
                continue
            spec = schema.field(assign.name)
            why = kind_mismatch(schema, spec, assign.kind) if assign.kind is not None else None
            if why is not None:
                self.error(assign.loc, why)
                continue
            value = _constant(assign.value)
            if value is not _UNKNOWN:
                try:
                    coerce_field(schema, spec, value)
                except RuleError as exc:
                    self.error(assign.value.loc, str(exc))
        for spec in schema.fields:
            if spec.required and spec.name not in given:
                self.error(call.loc, f"plugin {schema.name} needs field '{spec.name}' "
                           f"({spec.describe()})")  # fmt: skip
        low, high = schema.input_count()
        count = len(call.args)
        lists = sum(1 for a in call.args if self.is_list(a.value))
        if lists:  # lists give any number of tensors: only the single ones can be too many
            count -= lists
            low = 0
        if count < low or (high is not None and count > high):
            expect = str(low) if low == high else f"{low}..{'' if high is None else high}"
            self.error(
                call.loc,
                f"plugin {schema.name} takes {expect} input(s) "
                f"({', '.join(schema.input_names()) or 'none'}), got {count}",
            )
        inputs = schema.input_names()
        for arg in call.args:
            if arg.role is not None and arg.role not in inputs:
                self.error(
                    arg.loc,
                    f"plugin {schema.name} has no input '{arg.role}'"
                    f"{_suggest(arg.role, inputs)} (inputs: {', '.join(inputs) or 'none'})",
                )


_UNKNOWN = object()


def _constant(expr: object) -> object:
    """The value of a literal expression (lists included), or _UNKNOWN."""
    if isinstance(expr, ast.Literal):
        if isinstance(expr.value, tuple):
            items = [_constant(item) for item in expr.value]
            return _UNKNOWN if any(i is _UNKNOWN for i in items) else items
        return expr.value
    return _UNKNOWN


def _looks_like_tf(op: str) -> bool:
    """Without a registry, a CamelCase name without plugin suffix passes as a TF op."""
    return op[:1].isupper() and not op.endswith("_TRT")


def _sel_key(sel: object) -> str:
    """A printable identity for a tensor selector."""
    if isinstance(sel, ast.Ref):
        return sel.var if sel.port is None else f"{sel.var}:{sel.port}"
    if isinstance(sel, ast.ScopeTensor):
        return scope_tensor_text(sel)
    if isinstance(sel, ast.TensorName):
        return f'tensor "{sel.name}"'
    return "const(...)"


# --------------------------------------------------------------------------- API
def check_rules(
    rule_file: ast.RuleFile, catalog: Catalog | None = None, *, use_tf: bool = True,
    target: str | None = None, fmt: str | None = None,
) -> list[Diagnostic]:  # fmt: skip
    """Every problem in a parsed rule file, in file order (plugins checked against `target`,
    or, without one, against the targets the file states; ops against the model format `fmt`,
    or, without one, against the formats the file states)."""
    everything = load_catalog()
    if catalog is None:
        catalog = load_catalog(rule_file.plugins) if rule_file.plugins else everything
    ops = _Ops(use_tf=use_tf, formats=(fmt,) if fmt else rule_file.model_formats)
    out: list[Diagnostic] = []
    first_loc = ast.Loc(rule_file.path, 1, 1)
    for op in rule_file.commutative:
        if ops.known(op) is False:
            out.append(Diagnostic(first_loc, "error", f"commutative: unknown op '{op}'"
                                  f"{_suggest(op, ops.names())}"))  # fmt: skip
    from surgery.lang.rule_params import bind_file

    try:  # params (their defaults) and lets substituted, as a run sees them
        rule_file = bind_file(rule_file)
    except RuleError as exc:
        return [_from_message(str(exc), rule_file.path)]
    mismatch = file_mismatch(rule_file, target) if target is not None else None
    if mismatch is not None:
        out.append(Diagnostic(rule_file.targets_loc or first_loc, "warning", mismatch))
    seen: dict[str, ast.Rule] = {}
    for rule in rule_file.rules:
        if rule.name in seen:
            out.append(Diagnostic(rule.loc, "error", f"duplicate rule name '{rule.name}' "
                                  f"(first defined at {seen[rule.name].loc})"))  # fmt: skip
        seen.setdefault(rule.name, rule)
        targets = rule.targets or rule_file.targets
        if target is not None:
            targets = () if mismatch is not None or rule_skipped(rule, target) else (target,)
            if mismatch is None and not targets:
                why = f"rule '{rule.name}' is left out for {target}: it is for "
                out.append(Diagnostic(rule.loc, "note", why + ", ".join(rule.targets)))
        checker = _RuleChecker(rule, catalog, everything, ops, out, targets=targets,
                               notes=target is not None)  # fmt: skip
        checker.run()
    return sorted(out, key=lambda d: (d.loc.line, d.loc.col))


def check_path(
    path: str | Path, *, use_tf: bool = True, target: str | None = None, fmt: str | None = None
) -> list[Diagnostic]:
    """Parse and check one rule file; syntax and catalog errors become diagnostics too."""
    try:
        rule_file = load_rules(path)
    except RuleSyntaxError as exc:
        return [_from_message(str(exc), str(path))]
    except RuleError as exc:
        return [Diagnostic(ast.Loc(str(path), 1, 1), "error", str(exc))]
    try:
        catalog = load_catalog(rule_file.plugins) if rule_file.plugins else None
    except RuleError as exc:
        return [Diagnostic(_use_loc(rule_file.path), "error", str(exc))]
    return check_rules(rule_file, catalog, use_tf=use_tf, target=target, fmt=fmt)


def check_paths(
    paths: Iterable[str | Path], *, use_tf: bool = True, target: str | None = None,
    fmt: str | None = None,
) -> Iterator[Diagnostic]:  # fmt: skip
    """Diagnostics of several files, file by file."""
    for path in paths:
        yield from check_path(path, use_tf=use_tf, target=target, fmt=fmt)


def _from_message(message: str, path: str) -> Diagnostic:
    """A Diagnostic from a `file:line:col: message` error (file names may contain ':')."""
    rest = message[len(path) + 1 :] if message.startswith(path + ":") else message
    parts = rest.split(":", 2)
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return Diagnostic(ast.Loc(path, int(parts[0]), int(parts[1])), "error", parts[2].strip())
    return Diagnostic(ast.Loc(path, 1, 1), "error", message)


def _use_loc(path: str) -> ast.Loc:
    """Where the file's `use plugins` line is (for catalog errors)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ast.Loc(path, 1, 1)
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        if stripped.startswith("use"):
            return ast.Loc(path, number, len(line) - len(stripped) + 1)
    return ast.Loc(path, 1, 1)
