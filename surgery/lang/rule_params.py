"""File-level names of a rule file: `param` (a default, `--set NAME=VALUE` per run) and `let`.

Before a file runs, `bind_file` substitutes them into its rules: a param becomes the literal
given by `--set` or its default; a let becomes its expression (with the names it uses
substituted in turn), evaluated where it is used, against the graph being rewritten. Nothing
here evaluates anything: the rule file stays data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from surgery.errors import RuleError, UsageError
from surgery.lang import rule_ast as ast

# Syntax-tree fields that hold tensors or patterns, never expressions: not substituted.
_NOT_EXPRESSIONS = {
    ast.Arg: ("value",),
    ast.Connect: ("source",),
    ast.OutputMap: ("tensor",),
    ast.Replace: ("targets",),
}
_SKIP_TYPES = (ast.OpPattern, ast.Capture, ast.Wildcard, ast.NamePattern, ast.Loc)


def parse_settings(texts: Sequence[str]) -> dict[str, str]:
    """`["topk=512", "names=a,b"]` -> {"topk": "512", "names": "a,b"} (the last one wins)."""
    out: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {text!r}: expected NAME=VALUE (e.g. --set prenms_limit=1024)")
        out[name.strip()] = value.strip()
    return out


def check_settings(rule_files: Iterable[ast.RuleFile], settings: Mapping[str, str]) -> None:
    """Every `--set` name must be a param of one of the files (a did-you-mean otherwise)."""
    files = list(rule_files)
    known = {p.name for f in files for p in f.params}
    for name in settings:
        if name in known:
            continue
        from difflib import get_close_matches

        close = get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = ", ".join(sorted(known)) or "none"
        paths = ", ".join(f.path for f in files)
        raise UsageError(f"--set {name}: no param {name!r} in {paths}{hint}; params: {shown}")


def _coerce(param: ast.Param, text: str) -> ast.Literal:
    """The literal `--set NAME=text` gives, of the type of the param's default."""
    default = param.default.value
    loc = param.default.loc
    if isinstance(default, str):
        return ast.Literal(text, loc)
    if isinstance(default, tuple):
        items = [t.strip() for t in text.strip("[]").split(",") if t.strip()]
        first = default[0] if default else None
        if not isinstance(first, ast.Literal):
            first = ast.Literal(items[0] if items else "", loc)
        proto = ast.Param(param.name, first, param.loc)
        return ast.Literal(tuple(_coerce(proto, item) for item in items), loc)
    kind = "bool" if isinstance(default, bool) else type(default).__name__
    try:
        if isinstance(default, bool):
            if text not in ("true", "false"):
                raise ValueError
            return ast.Literal(text == "true", loc)
        if isinstance(default, int):
            return ast.Literal(int(text), loc)
        return ast.Literal(float(text), loc)
    except ValueError:
        raise UsageError(
            f"--set {param.name}={text}: param {param.name!r} ({param.loc}) is a {kind} "
            f"(default {_show(default)}), got {text!r}"
        ) from None


def _show(value: Any) -> str:
    """A default's spelling."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v.value if isinstance(v, ast.Literal) else v)
                               for v in value) + "]"  # fmt: skip
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def param_values(rule_file: ast.RuleFile, settings: Mapping[str, str]) -> dict[str, ast.Literal]:
    """Each param's literal for this run: `--set` if given, else the default."""
    return {
        p.name: _coerce(p, settings[p.name]) if p.name in settings else p.default
        for p in rule_file.params
    }


def bind_file(rule_file: ast.RuleFile, settings: Mapping[str, str] | None = None) -> ast.RuleFile:
    """`rule_file` with its params and lets substituted into every rule's expressions."""
    if not rule_file.params and not rule_file.lets:
        return rule_file
    names: dict[str, Any] = dict(param_values(rule_file, settings or {}))
    for let in rule_file.lets:
        names[let.name] = _substitute(let.value, names)
    rules = tuple(_bind_rule(rule, names) for rule in rule_file.rules)
    return dataclasses.replace(rule_file, rules=rules)


def _bind_rule(rule: ast.Rule, names: Mapping[str, Any]) -> ast.Rule:
    """One rule with the file-level names substituted; a rule variable of the same name is an
    error (it would hide the file-level one)."""
    bound = _rule_variables(rule)
    clash = sorted(set(bound) & set(names))
    if clash:
        raise RuleError(
            f"{rule.loc}: rule {rule.name!r} binds {clash[0]!r}, which the file defines as a "
            "param or let; rename one of them"
        )
    return _substitute(rule, names)


def _rule_variables(rule: ast.Rule) -> list[str]:
    """Variables a rule binds: captures, op-pattern bindings, scope and insert variables."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, tuple):
            for item in node:
                walk(item)
            return
        if not dataclasses.is_dataclass(node) or isinstance(node, ast.Loc):
            return
        if isinstance(node, ast.Capture):
            out.append(node.var)
        elif isinstance(node, ast.OpPattern) and node.var:
            out.append(node.var)
        elif isinstance(node, ast.ScopeStmt | ast.Insert):
            out.append(node.var)
        for f in dataclasses.fields(node):
            walk(getattr(node, f.name))

    walk(rule.body)
    walk(rule.actions)
    return out


def _substitute(node: Any, names: Mapping[str, Any]) -> Any:
    """`node` with every expression `Ref` to a file-level name replaced by its value."""
    if isinstance(node, tuple):
        return tuple(_substitute(item, names) for item in node)
    if isinstance(node, ast.Ref):
        if node.var not in names:
            return node
        if node.port is not None or node.prop is not None or node.attr is not None:
            raise RuleError(
                f"{node.loc}: {node.var!r} is a param or let (a value, not a tensor variable): "
                f"it has no ports or properties; use functions such as shape(...)"
            )
        return names[node.var]
    if not dataclasses.is_dataclass(node) or isinstance(node, _SKIP_TYPES):
        return node
    skip = _NOT_EXPRESSIONS.get(type(node), ())
    changes = {}
    for f in dataclasses.fields(node):
        if f.name in skip or f.name == "loc":
            continue
        old = getattr(node, f.name)
        new = _substitute(old, names)
        if new is not old:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node  # type: ignore[type-var]


def needs_shapes(rule_files: Iterable[ast.RuleFile]) -> bool:
    """Whether a rule reads tensor shapes (`shape(...)`, `.shape`, `.rank`): the commands then
    record inferred shapes on the graph before the rules run."""

    def walk(node: Any) -> bool:
        if isinstance(node, tuple):
            return any(walk(item) for item in node)
        if isinstance(node, ast.Call) and node.func == "shape":
            return True
        if isinstance(node, ast.Ref | ast.ScopeTensor) and node.prop in ("shape", "rank"):
            return True
        if not dataclasses.is_dataclass(node) or isinstance(node, ast.Loc):
            return False
        return any(walk(getattr(node, f.name)) for f in dataclasses.fields(node))

    return any(walk(f.rules) or walk(f.lets) for f in rule_files)
