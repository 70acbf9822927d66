"""Rule expressions and evaluated values spelled for messages (`explain`, failed predicates,
`check`), kept apart from the evaluation itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.scope_instances import ScopeInstance


def scope_tensor_text(sel: ast.ScopeTensor) -> str:
    """`r.in[0]`, `r.in[*]`, `r.out("g*")`, with any `.prop` / `.attr.name`."""
    inner = "[*]" if sel.every else f"[{sel.index}]" if sel.index is not None else f'("{sel.glob}")'
    tail = f".attr.{sel.attr}" if sel.attr else f".{sel.prop}" if sel.prop else ""
    return f"{sel.scope}.{sel.direction}{inner}{tail}"


def expr_text(expr: Any) -> str:
    """Rule-language spelling of an expression (for messages)."""
    if isinstance(expr, ast.Literal):
        if isinstance(expr.value, tuple):
            return "[" + ", ".join(expr_text(v) for v in expr.value) + "]"
        if isinstance(expr.value, str):
            return f'"{expr.value}"'
        if isinstance(expr.value, bool):
            return "true" if expr.value else "false"
        return repr(expr.value)
    if isinstance(expr, ast.Ref):
        text = expr.var + (f":{expr.port}" if expr.port is not None else "")
        if expr.attr is not None:
            return f"{text}.attr.{expr.attr}"
        return f"{text}.{expr.prop}" if expr.prop else text
    if isinstance(expr, ast.Index):
        return f"{expr_text(expr.base)}[{expr_text(expr.index)}]"
    if isinstance(expr, ast.BinOp | ast.Compare):
        return f"{expr_text(expr.left)} {expr.op} {expr_text(expr.right)}"
    if isinstance(expr, ast.BoolOp):
        return f" {expr.op} ".join(expr_text(o) for o in expr.operands)
    if isinstance(expr, ast.Not):
        return f"not {expr_text(expr.operand)}"
    if isinstance(expr, ast.Call):
        return f"{expr.func}({', '.join(expr_text(a) for a in expr.args)})"
    if isinstance(expr, ast.ScopeTensor):
        return scope_tensor_text(expr)
    return str(expr)


def value_text(value: Any, limit: int = 60) -> str:
    """A short spelling of an evaluated value."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, separator=", ").replace("\n", "")
    elif isinstance(value, ScopeInstance):
        text = f"scope {value.namespace!r}"
    elif isinstance(value, TensorRef):
        text = str(value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
