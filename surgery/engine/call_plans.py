"""How a node call `Op(args) { fields }` becomes inputs and attributes, planned once per call site.

Which input slot each argument fills, which schema field or TensorFlow attribute kind each field
has, and the attributes of literal fields and plugin defaults do not change from one match to the
next: a `CallPlan` works them out (and reports their errors) on first use, so that a rule applied
a million times pays only for what its matches change: the tensors and the computed fields.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from surgery.errors import GraphError, RuleError, SurgeryError
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue
from surgery.lang import rule_ast as ast
from surgery.ops.plugin_schema import kind_mismatch, spec_attr

Fail = Callable[[ast.Loc, str], Exception]  # (where, why) -> the error to raise
Convert = Callable[[Any, Fail], AttrValue]  # a field's value -> its attribute, or raise fail(...)


@dataclass
class CallPlan:
    """The fixed part of one node call: argument slots, typed fields, prebuilt attributes."""

    call: ast.NodeCall
    args: list[tuple[int, ast.Arg]]  # (input slot, argument) in evaluation order
    order: list[int]  # input slots in the order the node takes them
    counts: list[tuple[str, int, int | None]] | None  # plugin inputs: (name, min, max)
    fields: list[tuple[ast.FieldAssign, AttrValue | None, Convert]]
    defaults: list[tuple[str, AttrValue]]  # plugin fields the call leaves to their defaults
    outputs: int | None  # most outputs a plugin has (None: unbounded or not a plugin)


def is_literal(expr: Any) -> bool:
    """Whether `expr` is a literal (nested lists of literals included): the same in every match."""
    if not isinstance(expr, ast.Literal):
        return False
    return not isinstance(expr.value, tuple) or all(is_literal(v) for v in expr.value)


def plan_call(
    call: ast.NodeCall, catalog: Any, fail: Fail, ops: Any = None
) -> CallPlan:
    """The plan of `call` for a graph of op set `ops` (`surgery.ops.opdefs.OpSet`; None:
    TensorFlow's); `fail(loc, why)` makes the error for a mistake in the rule."""
    if catalog is not None and call.op in catalog:
        return _plan_plugin(call, catalog.get(call.op), fail)
    return _plan_op(call, fail, ops)


def _plan_plugin(call: ast.NodeCall, schema: Any, fail: Fail) -> CallPlan:
    roles = [s.name for s in schema.inputs]
    args: list[tuple[int, ast.Arg]] = []
    taken: set[int] = set()
    pending = []
    for arg in call.args:
        if arg.role is None:
            pending.append(arg)
            continue
        if arg.role not in roles:
            raise fail(arg.loc, f"plugin {schema.name} has no input {arg.role!r} "
                       f"(inputs: {', '.join(roles) or 'none'})")  # fmt: skip
        index = roles.index(arg.role)
        if index in taken and schema.inputs[index].max == 1:
            raise fail(arg.loc, f"input {arg.role!r} given twice (it takes one tensor)")
        taken.add(index)
        args.append((index, arg))
    free = [i for i in range(len(roles)) if i not in taken]
    if len(pending) > len(free):
        raise fail(call.loc, f"plugin {schema.name} takes {len(roles)} inputs "
                   f"({', '.join(roles)}), {len(call.args)} given")  # fmt: skip
    args.extend(zip(free, pending, strict=False))
    fields: list[tuple[ast.FieldAssign, AttrValue | None, Convert]] = []
    named = {f.name: f for f in schema.fields}
    for fa in call.fields:
        spec = named.get(fa.name)
        if spec is None:
            raise fail(fa.loc, _field_error(schema, fa.name))
        why = kind_mismatch(schema, spec, fa.kind) if fa.kind is not None else None
        if why is not None:
            raise fail(fa.loc, why)

        convert = functools.partial(_plugin_field, schema, spec, fa)
        fields.append((fa, _fixed(fa, convert, fail), convert))
    given = {fa.name for fa in call.fields}
    defaults = []
    for spec in schema.fields:
        if spec.name in given:
            continue
        if spec.required and spec.default is None:
            raise fail(call.loc, f"plugin {schema.name} needs field {spec.name!r} "
                       f"({spec.describe()})")  # fmt: skip
        if spec.default is not None:
            defaults.append((spec.name, spec_attr(schema, spec, spec.default)))
    counts = [(s.name, s.min, s.max) for s in schema.inputs]
    return CallPlan(call, args, list(range(len(roles))), counts, fields, defaults,
                    schema.output_count()[1])  # fmt: skip


def _plan_op(call: ast.NodeCall, fail: Fail, ops: Any) -> CallPlan:
    from surgery.ir.attrs import make_attr  # deferred: it imports ml_dtypes (0.4 s)

    roles: list[str] | None = None
    role_args: list[tuple[int, ast.Arg]] = []
    pending = []
    for arg in call.args:
        if arg.role is None:
            pending.append(arg)
            continue
        if roles is None:
            from surgery.ops.opdefs import input_roles

            try:
                roles = input_roles(call.op, None, len(call.args), ops=ops)
            except GraphError as exc:
                raise fail(call.loc, str(exc)) from None
        if arg.role not in roles:
            raise fail(arg.loc, f"op {call.op} has no input role {arg.role!r} "
                       f"(its roles: {', '.join(roles) or 'none'})")  # fmt: skip
        role_args.append((roles.index(arg.role), arg))
    total = len(call.args) if roles is None else max(len(roles), len(call.args))
    used = {i for i, _ in role_args}
    free = [i for i in range(total) if i not in used]
    args = role_args + list(zip(free, pending, strict=False))
    fields: list[tuple[ast.FieldAssign, AttrValue | None, Convert]] = []
    for fa in call.fields:
        if fa.kind is None:
            raise fail(fa.loc, f"attribute {fa.name!r} of TensorFlow op {call.op} needs an "
                       f"explicit kind, e.g. `{fa.name}: int = ...` ({call.op} is not a catalog "
                       "plugin)")  # fmt: skip

        convert = functools.partial(_tf_field, make_attr, fa, fa.kind)
        fields.append((fa, _fixed(fa, convert, fail), convert))
    order = sorted(dict.fromkeys(i for i, _ in args))
    return CallPlan(call, args, order, None, fields, [], None)


def _plugin_field(schema: Any, spec: Any, fa: ast.FieldAssign, value: Any, fail: Fail) -> AttrValue:
    """A plugin field's value as its attribute (a partial of it is a plan's `Convert`: no
    closure, so no reference cycle between a function and its environment)."""
    try:
        return spec_attr(schema, spec, value)
    except RuleError as exc:
        raise fail(fa.loc, str(exc)) from None


def _tf_field(
    make_attr: Callable[..., AttrValue], fa: ast.FieldAssign, kind: str, value: Any, fail: Fail
) -> AttrValue:
    """A TensorFlow attribute's value of the given kind (see `_plugin_field`; `make_attr` is
    `surgery.ir.attrs.make_attr`, imported once per plan rather than once per match)."""
    try:
        return make_attr(value, kind, field=fa.name)
    except SurgeryError as exc:
        raise fail(fa.loc, str(exc)) from None


def _fixed(fa: ast.FieldAssign, convert: Convert, fail: Fail) -> AttrValue | None:
    """The attribute of a literal field, made once (nodes copy it); None for computed ones."""
    if not is_literal(fa.value):
        return None
    from surgery.lang.expr_eval import Evaluator

    return convert(Evaluator(None, {}).value(fa.value), fail)


def _field_error(schema: Any, name: str) -> str:
    try:
        schema.field(name)
    except RuleError as exc:
        return str(exc)
    return f"plugin {schema.name} has no field {name!r}"


def build_call(
    plan: CallPlan, tensors: Callable[[Any], list[TensorRef]], evaluate: Callable[[Any], Any],
    fail: Fail,
) -> tuple[list[TensorRef], dict[str, AttrValue]]:  # fmt: skip
    """Inputs in the order the op takes them and typed attributes, for one match."""
    filled: dict[int, list[TensorRef]] = {}
    for index, arg in plan.args:  # a variadic role may be given several times: in order
        filled.setdefault(index, []).extend(tensors(arg.value))
    inputs: list[TensorRef] = []
    if plan.counts is not None:
        for index, (name, low, high) in enumerate(plan.counts):
            got = filled.get(index, [])
            if len(got) < low or (high is not None and len(got) > high):
                want = f"{low}" if low == high else f"{low}..{high or 'n'}"
                raise fail(plan.call.loc, f"plugin {plan.call.op} input {name!r} takes {want} "
                           f"tensor(s), got {len(got)}")  # fmt: skip
            inputs.extend(got)
    else:
        for index in plan.order:
            inputs.extend(filled[index])
    attrs: dict[str, AttrValue] = {}
    for fa, fixed, convert in plan.fields:
        attrs[fa.name] = fixed if fixed is not None else convert(evaluate(fa.value), fail)
    for name, attr in plan.defaults:
        attrs[name] = attr
    return inputs, attrs
