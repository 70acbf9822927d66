"""What every rewrite action works with: the match's bindings as tensors and scopes, errors
naming the rule, evaluated expressions, new nodes built from a call (plan, Consts, clamps)."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgery.engine.call_plans import CallPlan, build_call, is_literal, plan_call
from surgery.engine.editor import Editor
from surgery.engine.match_results import Match
from surgery.errors import RewriteRefused, RuleError, SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.ports import CLAMPED_ATTR_PREFIX, TensorRef, parse_tensor
from surgery.ir.protos import AttrValue
from surgery.lang import rule_ast as ast
from surgery.lang.expr_eval import EvalFailure, Evaluator
from surgery.lang.scope_instances import Binding, ScopeInstance, select_scope_tensors


class RewriteContext:
    """One match being rewritten through an Editor: its bindings, errors and node building
    (`surgery.engine.rewriter.Rewriter` adds the actions)."""

    def __init__(self, graph: Graph, match: Match, catalog: Any, editor: Editor):
        self.graph = graph
        self.match = match
        self.rule = match.rule
        self.catalog = catalog
        self.editor = editor
        self.bindings: dict[str, Binding] = dict(match.bindings)
        self.evaluator = Evaluator(graph, self.bindings)  # sees `insert`'s new bindings too

    # ---------------------------------------------------------------- helpers
    def refuse(self, loc: ast.Loc, why: str) -> RewriteRefused:
        """A RewriteRefused naming the rule, its file:line and the match anchor."""
        return RewriteRefused(
            f"{loc}: rule {self.rule.name!r} refused at {self.match.anchor!r}: {why}"
        )

    def rule_error(self, loc: ast.Loc, why: str) -> RuleError:
        """A RuleError naming the rule and where in the rule file."""
        return RuleError(f"{loc}: rule {self.rule.name!r} at {self.match.anchor!r}: {why}")

    def evaluate(self, expr: Any) -> Any:
        """Evaluate an expression against the current bindings."""
        if type(expr) is ast.Literal and not isinstance(expr.value, tuple):
            return expr.value
        try:
            return self.evaluator.value(expr)
        except EvalFailure as exc:
            raise self.rule_error(exc.loc, exc.reason) from None

    def unique_name(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ... if taken."""
        if base not in self.graph:
            return base
        i = 1
        while f"{base}_{i}" in self.graph:
            i += 1
        return f"{base}_{i}"

    def bound_tensor(self, var: str, loc: ast.Loc) -> TensorRef:
        """The tensor a variable holds (not a list, not a scope)."""
        value = self.bindings.get(var)
        if value is None:
            raise self.rule_error(loc, f"unknown variable {var!r}")
        if not isinstance(value, TensorRef):
            raise self.rule_error(loc, f"{var!r} is not a single tensor")
        return value

    def scope(self, var: str, loc: ast.Loc) -> ScopeInstance:
        """The scope instance a variable holds."""
        value = self.bindings.get(var)
        if not isinstance(value, ScopeInstance):
            raise self.rule_error(loc, f"{var!r} is not a scope variable")
        return value

    def tensors(self, sel: Any, base: str) -> list[TensorRef]:
        """The tensor(s) a selector names; ConstArg creates a Const node named under `base`."""
        if isinstance(sel, ast.Ref):
            value = self.bindings.get(sel.var)
            if value is None:
                raise self.rule_error(sel.loc, f"unknown variable {sel.var!r}")
            if isinstance(value, tuple) and not isinstance(value, TensorRef):
                return list(value)
            if isinstance(value, ScopeInstance):
                raise self.rule_error(sel.loc, f"{sel.var!r} is a scope; use {sel.var}.in[i]")
            if sel.port is not None:
                value = TensorRef(value.node, sel.port)
            return [value]
        if isinstance(sel, ast.ScopeTensor):
            return self.scope_tensors(sel)
        if isinstance(sel, ast.TensorName):
            ref = parse_tensor(sel.name)
            if ref.node not in self.graph:
                raise self.rule_error(sel.loc, f"tensor {sel.name!r}: no node {ref.node!r}")
            return [ref]
        if isinstance(sel, ast.ConstArg):
            return [self.make_const(sel, base)]
        raise self.rule_error(getattr(sel, "loc", self.rule.loc), f"not a tensor: {sel!r}")

    def tensor(self, sel: Any, base: str) -> TensorRef:
        """Exactly one tensor."""
        found = self.tensors(sel, base)
        if len(found) != 1:
            raise self.rule_error(sel.loc, f"expected one tensor, got {len(found)}")
        return found[0]

    def scope_tensor(self, sel: ast.ScopeTensor) -> TensorRef:
        """`r.in[0]`, `r.out("glob:1")`: one entering/leaving tensor of a scope instance."""
        found = self.scope_tensors(sel)
        if len(found) != 1:
            raise self.rule_error(sel.loc, f"expected one tensor, got {len(found)}")
        return found[0]

    def scope_tensors(self, sel: ast.ScopeTensor) -> list[TensorRef]:
        """`r.in[0]`, `r.in[*]`, `r.out("glob:1")`: entering/leaving tensors of a scope."""
        inst = self.scope(sel.scope, sel.loc)
        try:
            return select_scope_tensors(inst, sel)
        except RuleError as exc:
            raise self.rule_error(sel.loc, str(exc)) from None

    def make_const(self, arg: ast.ConstArg, base: str) -> TensorRef:
        """Create the Const node a `const(dtype, value)` argument stands for."""
        if is_literal(arg.value):  # same value every match: build it once (nodes copy it)
            attrs = self.editor.memo(arg, lambda: self._const_attrs(arg))
        else:
            attrs = self._const_attrs(arg)
        name = self.unique_name(f"{base}/const")
        self.editor.add_node(name, "Const", [], (), attrs)
        return TensorRef(name, 0)

    def _const_attrs(self, arg: ast.ConstArg) -> dict[str, AttrValue]:
        from surgery.ir.attrs import const_attrs
        from surgery.ir.tensor_values import from_numpy, numpy_dtype

        value = self.evaluate(arg.value)
        try:
            array = np.asarray(value, dtype=numpy_dtype(arg.dtype))
            return const_attrs(from_numpy(array, arg.dtype))
        except (TypeError, ValueError, SurgeryError) as exc:
            raise self.rule_error(arg.loc, f"const({arg.dtype}, ...): {exc}") from None

    # ---------------------------------------------------------------- building a node
    def plan(self, call: ast.NodeCall) -> CallPlan:
        """The call's plan, made on its first use (see `surgery.engine.call_plans`)."""
        return self.editor.memo(
            call, lambda: plan_call(call, self.catalog, self.rule_error, self.ops())
        )

    def ops(self) -> Any:
        """The graph's op set (`surgery.ops.opdefs.opset_of`), looked up once per apply."""
        editor = self.editor
        if editor.ops is None:
            from surgery.ops.opdefs import opset_of

            editor.ops = opset_of(editor.graph)
        return editor.ops

    def build(self, call: ast.NodeCall, name: str) -> tuple[list[TensorRef], dict[str, AttrValue]]:
        """Inputs in the order the op expects and typed attributes for `call`; a plugin field
        above its creator's limit is clamped to it, with a warning naming the rule."""
        inputs, attrs = build_call(
            self.plan(call), lambda sel: self.tensors(sel, name), self.evaluate, self.rule_error
        )
        catalog = self.catalog
        if catalog is not None and call.op in catalog:
            limited = [f for f in catalog.get(call.op).fields if f.maximum is not None]
            if limited:
                attrs = self._clamped(call, attrs, limited)
        return inputs, attrs

    def _clamped(
        self, call: ast.NodeCall, attrs: dict[str, AttrValue], limited: list[Any]
    ) -> dict[str, AttrValue]:
        """`attrs` with each scalar field above its schema's `max` set to the max."""
        out = attrs
        for spec in limited:
            attr = attrs.get(spec.name)
            if attr is None or not spec.is_scalar:
                continue
            is_float = spec.type.startswith("float")
            value = attr.f if is_float else attr.i
            if value <= spec.maximum:
                continue
            top = float(spec.maximum) if is_float else int(spec.maximum)
            out = dict(out) if out is attrs else out  # a plan may share its attrs
            out[spec.name] = AttrValue(f=top) if is_float else AttrValue(i=top)
            out[CLAMPED_ATTR_PREFIX + spec.name] = attr
            self.editor.warnings.append(
                f"{call.loc}: rule {self.rule.name!r} at {self.match.anchor!r}: "
                f"{call.op} field '{spec.name}' = {value} is above the plugin's limit "
                f"{top}: clamped to {top}"
            )
        return out
