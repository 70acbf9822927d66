"""How a match is rewritten: replace, collapse, remove, forward, connect, disconnect, insert, set.

Actions run in rule order inside one match. Every edit goes through an `Editor`, which records
provenance and keeps an undo journal, so that a rewrite the engine refuses afterwards (dangling
input, cycle) is rolled back completely. Unsafe edits that can be seen beforehand (an unmapped
tensor still read outside the match) are refused before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from surgery.engine.call_plans import CallPlan, build_call, is_literal, plan_call
from surgery.engine.matcher import Match
from surgery.engine.provenance import Recorder, jsonable
from surgery.errors import GraphError, RewriteRefused, RuleError, SurgeryError
from surgery.ir.graph import Graph
from surgery.ir.onnx_io import is_onnx_graph
from surgery.ir.ports import CLAMPED_ATTR_PREFIX, SIDE_ATTR_PREFIX, TensorRef, parse_tensor
from surgery.ir.protos import AttrValue
from surgery.lang import rule_ast as ast
from surgery.lang.expr_eval import (
    Binding,
    EvalFailure,
    Evaluator,
    ScopeInstance,
    select_scope_tensors,
)

_new_ref = tuple.__new__
# provenance detail keys, by kind of edit
_ADD, _OP, _SOURCE = ("op", "inputs", "controls"), ("op",), ("source",)
_REWIRE, _OLD_NEW = ("slot", "old", "new"), ("old", "new")
_PENDING = "\x00pending/"  # transient consumer target while a node is replaced under its name


class Editor:
    """Graph edits with provenance and an undo journal; tracks created and rewired nodes."""

    def __init__(self, graph: Graph, recorder: Recorder):
        self.graph = graph
        self.recorder = recorder
        self.journal: list[tuple] = []
        self.created: dict[str, None] = {}
        self.touched: dict[str, None] = {}  # nodes whose inputs (data or control) changed
        self.removed: dict[str, None] = {}
        self.outputs_before: frozenset[str] | None = None  # graph outputs `prune` never removes
        self.warnings: list[str] = []  # the engine reports them (clamped plugin fields)
        self._memo: dict[int, tuple[Any, Any]] = {}  # id(rule syntax) -> (it, what it makes)
        self.ops: Any = None  # the graph's op set (`Rewriter.ops`)

    def begin(self) -> None:
        """Start a fresh journal (one per match)."""
        self.journal.clear()
        self.created.clear()
        self.touched.clear()
        self.removed.clear()

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """What `make()` returns for the rule-syntax object `key`, made once per apply (the
        object is kept alive beside it, so its id is never reused)."""
        entry = self._memo.get(id(key))
        if entry is None or entry[0] is not key:
            entry = self._memo[id(key)] = (key, make())
        return entry[1]

    # ---------------------------------------------------------------- nodes
    def add_node(
        self, name: str, op: str, inputs: list[TensorRef], controls: Iterable[str] = (),
        attrs: dict[str, AttrValue] | None = None, *, readers_ok: bool = False,
    ) -> None:  # fmt: skip
        """Create a node (recorded as add_node with its op and inputs); `readers_ok`: nodes
        already read it (it replaces a node of its name), so undoing it leaves their edges."""
        controls = list(controls)
        self.graph.add_node(name, op, inputs, controls, attrs)
        self.journal.append(("add", name, readers_ok))
        self.created[name] = None
        self.touched[name] = None
        self.recorder.record("add_node", name, _ADD, op, list(inputs), controls)

    def remove(self, names: Iterable[str], readers_ok: Iterable[str] = ()) -> None:
        """Remove nodes (refused by the graph if a survivor still reads one of their tensors,
        but for those in `readers_ok`, which a node of the same name replaces at once)."""
        # the very Nodes are taken: rollback restores them as they were
        taken, dropped = self.graph._take(names, readers_ok=frozenset(readers_ok))
        self.journal.append(("remove", taken, dropped))
        record = self.recorder.record
        for node in taken:
            name = node.name
            self.removed[name] = None
            self.created.pop(name, None)
            self.touched.pop(name, None)
            record("remove_node", name, _OP, node.op)
        for user, src in dropped:
            self.touched[user] = None
            self.recorder.record("remove_control", user, _SOURCE, src)

    # ---------------------------------------------------------------- edges
    def set_input(self, name: str, slot: int, tensor: TensorRef, *, record: bool = True) -> None:
        """Point input `slot` of `name` at `tensor`."""
        node = self.graph.node(name)
        old = node._inputs[slot] if 0 <= slot < len(node._inputs) else None
        if old == tensor:
            return  # same tensor: no edit, no provenance
        self.graph.set_input(name, slot, tensor)
        self.journal.append(("set_input", name, slot, old))
        self.touched[name] = None
        if record:
            self.recorder.record("rewire", name, _REWIRE, slot, old, tensor)

    def set_inputs(self, name: str, inputs: list[TensorRef], controls: list[str]) -> None:
        """Replace all inputs of `name` (recorded as one rewire)."""
        node = self.graph.node(name)
        old_in, old_ctl = list(node.inputs), list(node.controls)
        if old_in == list(inputs) and old_ctl == list(dict.fromkeys(controls)):
            return  # nothing changes: no edit, no provenance
        self.graph.set_inputs(name, inputs, controls)
        self.journal.append(("set_inputs", name, old_in, old_ctl))
        self.touched[name] = None
        self.recorder.record(
            "rewire", name, _OLD_NEW, [str(t) for t in old_in] + [f"^{c}" for c in old_ctl],
            [str(t) for t in inputs] + [f"^{c}" for c in controls],
        )  # fmt: skip

    def add_control(self, name: str, source: str) -> None:
        """Give `name` a control dependency on `source` (no-op if present)."""
        if source in self.graph.node(name).controls or source == name:
            return
        self.graph.add_control(name, source)
        self.journal.append(("add_control", name, source))
        self.touched[name] = None
        self.recorder.record("add_control", name, _SOURCE, source)

    def remove_control(self, name: str, source: str) -> None:
        """Drop the control dependency of `name` on `source`."""
        self.graph.remove_control(name, source)
        self.journal.append(("remove_control", name, source))
        self.touched[name] = None
        self.recorder.record("remove_control", name, _SOURCE, source)

    def set_attr(self, name: str, key: str, value: AttrValue) -> None:
        """Set (or overwrite) one attribute of `name`."""
        attrs = self.graph.node(name).attr
        old = None
        if key in attrs:
            old = AttrValue()
            old.CopyFrom(attrs[key])
        attrs[key].CopyFrom(value)
        self.journal.append(("set_attr", name, key, old))
        self.recorder.record_lazy("set_attr", name, _attr_detail, key, old, value)

    def remove_function(self, index: int) -> None:
        """Drop function `index` of the graph's library."""
        functions = self.graph.library.function
        saved = type(functions[index])()
        saved.CopyFrom(functions[index])
        del functions[index]
        self.journal.append(("remove_function", index, saved))
        self.recorder.record("remove_function", saved.signature.name)

    def changed_nodes(self, out: list[str]) -> None:
        """Append to `out` every node this match's edits changed (repeats allowed): created,
        removed, rewired or re-attributed nodes, and the producers whose readers changed (old
        and new)."""
        nodes = self.graph._nodes
        for entry in self.journal:
            kind = entry[0]
            if kind == "remove":
                for node in entry[1]:
                    out.append(node.name)
                    out.extend(r[0] for r in node._inputs)
                    out.extend(node._controls)
                continue
            name = entry[1]
            if kind == "remove_function":
                continue
            out.append(name)
            node = nodes.get(name)
            if node is not None:
                out.extend(r[0] for r in node._inputs)
            if kind == "set_input" and entry[3] is not None:
                out.append(entry[3][0])
            elif kind == "set_inputs":
                out.extend(r[0] for r in entry[2])
            elif kind in ("add_control", "remove_control"):
                out.append(entry[2])

    # ---------------------------------------------------------------- undo
    def rollback(self) -> None:
        """Undo every edit since `begin`, newest first."""
        graph = self.graph
        for entry in self.journal[::-1]:
            kind = entry[0]
            if kind == "add":
                if entry[1] in graph:
                    for user in graph.control_consumers(entry[1]):
                        graph.remove_control(user.name, entry[1])
                    graph._take([entry[1]], readers_ok=(entry[1],) if entry[2] else ())
            elif kind == "remove":
                graph._restore(entry[1], entry[2])
            elif kind == "set_input":
                graph.set_input(entry[1], entry[2], entry[3])
            elif kind == "set_inputs":
                graph.set_inputs(entry[1], entry[2], entry[3])
            elif kind == "add_control":
                graph.remove_control(entry[1], entry[2])
            elif kind == "remove_control":
                graph.add_control(entry[1], entry[2])
            elif kind == "set_attr":
                attrs = graph.node(entry[1]).attr
                if entry[3] is None:
                    del attrs[entry[2]]
                else:
                    attrs[entry[2]].CopyFrom(entry[3])
            elif kind == "remove_function":
                functions = graph.library.function
                functions.add().CopyFrom(entry[2])
                # move it back to its old index
                moved = list(functions)
                item = moved.pop()
                moved.insert(entry[1], item)
                copies = [type(item)() for _ in moved]
                for copy, src in zip(copies, moved, strict=True):
                    copy.CopyFrom(src)
                del functions[:]
                functions.extend(copies)
        self.journal.clear()


class Rewriter:
    """Runs the actions of one match against the graph through an Editor."""

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

    # ---------------------------------------------------------------- actions
    def run(self) -> None:
        """Run every action of the rule, in order."""
        methods = _METHODS
        for action in self.rule.actions:
            kind = type(action)
            method = methods.get(kind)
            if method is None:
                method = methods[kind] = getattr(Rewriter, "_" + kind.__name__.lower())
            try:
                method(self, action)
            except GraphError as exc:
                raise self.refuse(action.loc, str(exc)) from None

    def _replace(self, action: ast.Replace) -> None:
        targets = [self.bound_tensor(t.var, t.loc) if t.port is None
                   else TensorRef(self.bound_tensor(t.var, t.loc).node, t.port)
                   for t in action.targets]  # fmt: skip
        name = str(self.evaluate(action.name)) if action.name is not None else targets[0].node
        doomed = dict.fromkeys(t.node for t in targets)
        self._create_in_place(action, action.call, name, doomed, targets, extend_interior=True)

    def _collapse(self, action: ast.Collapse) -> None:
        inst = self.scope(action.scope, action.loc)
        name = str(self.evaluate(action.name)) if action.name is not None else inst.namespace
        doomed = dict.fromkeys(inst.nodes)
        if not action.outputs and self.catalog is not None and action.call.op in self.catalog:
            _low, high = self.catalog.get(action.call.op).output_count()
            if high is not None and len(inst.leaves) > high:
                shown = ", ".join(map(str, inst.leaves))
                raise self.refuse(
                    action.loc, f"collapse without `outputs {{ ... }}` maps the "
                    f"{len(inst.leaves)} tensors leaving scope {inst.namespace!r} ({shown}) to "
                    f"ports 0..{len(inst.leaves) - 1}, but plugin {action.call.op} has only "
                    f"{high} output(s); map them explicitly",
                )  # fmt: skip
        # default map: r.out[i] -> i (leaving tensors in their documented order)
        self._create_in_place(action, action.call, name, doomed, list(inst.leaves),
                              extend_interior=False, side=inst.side)  # fmt: skip
        self._prune_library(action)

    def _create_in_place(
        self, action: Any, call: ast.NodeCall, name: str, doomed: dict[str, None],
        targets: list[TensorRef], *, extend_interior: bool,
        side: tuple[tuple[str, TensorRef], ...] = (),
    ) -> None:  # fmt: skip
        """Replace the `doomed` nodes by one node `name` built from `call`; rewire mapped uses.
        Each dropped side input is recorded on the new node as attr `_side_<role>` (its
        tensor's name), for validate to feed it with what the plugin implies."""
        graph, editor = self.graph, self.editor
        if name in graph and name not in doomed:
            raise self.refuse(action.loc, f"a node named {name!r} already exists outside the match")
        inputs, attrs = self.build(call, name)
        if side:
            attrs = dict(attrs)  # a plan may share its attrs between matches
            for role, ref in side:
                attrs[SIDE_ATTR_PREFIX + role] = AttrValue(s=str(ref).encode())
        if action.outputs:
            mapping: dict[TensorRef, int] = {}
            for om in action.outputs:
                # `r.out[*] -> k` maps the whole list to ports k, k+1, ...
                for offset, ref in enumerate(self.tensors(om.tensor, name)):
                    mapping[ref] = om.port + offset
        else:
            mapping = {t: i for i, t in enumerate(targets)}
        self._check_ports(action, call, mapping)
        if extend_interior:
            self._add_dead_interior(doomed, inputs, mapping)
        read = {t.node for t in inputs}
        kept = [n for n in doomed if n in read]
        if kept:
            raise self.refuse(
                action.loc, f"the new node would read {', '.join(map(repr, kept))}, which the "
                "rewrite removes",
            )  # fmt: skip
        # every tensor of a removed node read by a survivor must be mapped
        plan: list[tuple[str, int, TensorRef, int]] = []
        for node_name in doomed:
            outside = [e for e in graph._edges(node_name) if e[1].name not in doomed]
            if len(outside) > 1:
                outside.sort(key=lambda e: (e[0], e[1].pos, e[2]))
            for port, reader, slot in outside:
                ref = _new_ref(TensorRef, (node_name, port))
                if ref not in mapping:
                    raise self.refuse(
                        action.loc, f"{ref} is still read by {reader.name!r} (input {slot}) "
                        "outside the match and is not mapped to an output of the new "
                        f"node; map it in `outputs {{ ... -> port }}`",
                    )  # fmt: skip
                plan.append((reader.name, slot, ref, mapping[ref]))
        for ref, port in mapping.items():
            if ref.node in doomed:
                continue
            for reader, slot in graph.consumers(ref):
                if reader.name not in doomed:
                    plan.append((reader.name, slot, ref, port))
        nodes = graph._nodes
        controls_in: dict[str, None] = {}
        # In an ONNX model a control input only marks a tensor an If/Loop body reads from the
        # graph: it belongs to that node and goes with it (ONNX has no control edges to carry).
        for node_name in doomed if not is_onnx_graph(graph) else ():
            for src in nodes[node_name]._controls:
                if src not in doomed:
                    controls_in[src] = None
        controls_out: dict[str, None] = {}
        for node_name in doomed:
            for waiting in graph.control_consumers(node_name):
                if waiting.name not in doomed:
                    controls_out[waiting.name] = None
        # A consumer of a tensor that the new node gives again under the same name and port keeps
        # its edge (it is marked touched, so the checks and the busy set see it as rewired); the
        # others go through a transient name while the old nodes are removed.
        pending = _PENDING + name
        touched = editor.touched
        moved = []
        for entry in plan:
            user, slot, ref, port = entry
            if ref[0] == name and ref[1] == port:
                touched[user] = None
            else:
                editor.set_input(user, slot, TensorRef(pending, port), record=False)
                moved.append(entry)
        same = len(moved) < len(plan)
        editor.remove(doomed, (name,) if same else ())
        op = call.op
        editor.add_node(name, op, inputs, [c for c in controls_in if c in graph], attrs,
                        readers_ok=same)  # fmt: skip
        record = editor.recorder.record
        for user, slot, ref, port in moved:
            new = TensorRef(name, port)
            editor.set_input(user, slot, new, record=False)
            if new != ref:
                record("rewire", user, _REWIRE, slot, ref, new)
        for user in controls_out:
            if user in graph:
                editor.add_control(user, name)

    def _check_ports(self, action: Any, call: ast.NodeCall, mapping: dict) -> None:
        """Output ports mapped must exist on a catalog plugin."""
        high = self.plan(call).outputs
        if high is None:
            return
        for ref, port in mapping.items():
            if port >= high:
                schema = self.catalog.get(call.op)
                raise self.rule_error(
                    action.loc, f"{ref} -> {port}: plugin {schema.name} has {high} output(s) "
                    f"({', '.join(t.name for t in schema.outputs)})",
                )  # fmt: skip

    def _add_dead_interior(
        self, doomed: dict[str, None], inputs: list[TensorRef], mapping: dict[TensorRef, int]
    ) -> None:
        """Interior nodes of the match that nothing outside the removed set reads any more."""
        interior = self.match.interior
        keep = {t.node for t in inputs} | {t.node for t in mapping if t.node not in doomed}
        graph = self.graph
        nodes = graph._nodes
        changed = True
        while changed:
            changed = False
            for name in interior:
                if name in doomed or name in keep or name not in nodes:
                    continue
                if all(e[1].name in doomed for e in graph._edges(name)):
                    doomed[name] = None
                    changed = True

    def _prune_library(self, action: Any) -> None:
        """Drop library functions no node (and no kept function) refers to any more."""
        library = self.graph.library
        if not len(library.function):
            return
        defined = {f.signature.name: i for i, f in enumerate(library.function)}
        used: set[str] = set()
        work: list[Any] = [n.proto for n in self.graph]
        while work:
            proto = work.pop()
            refs = _func_refs(proto, defined)
            for fname in refs - used:
                used.add(fname)
                work.extend(library.function[defined[fname]].node_def)
        for fname in sorted(set(defined) - used, key=lambda f: -defined[f]):
            self.editor.remove_function(defined[fname])

    def _remove(self, action: ast.Remove) -> None:
        ref = self.bound_tensor(action.var, action.loc)
        graph = self.graph
        for port in graph.used_ports(ref.node):
            users = graph.consumers(TensorRef(ref.node, port))
            if users:
                user, slot = users[0]
                raise self.refuse(
                    action.loc, f"cannot remove {ref.node!r}: {TensorRef(ref.node, port)} is "
                    f"still read by {user.name!r} (input {slot})",
                )  # fmt: skip
        self.editor.remove([ref.node])

    def _forward(self, action: ast.Forward) -> None:
        ref = self.bound_tensor(action.var, action.loc)
        graph = self.graph
        node = graph.node(ref.node)
        if not 0 <= action.slot < len(node.inputs):
            raise self.rule_error(
                action.loc, f"forward {action.var} input {action.slot}: {node.name} has "
                f"{len(node.inputs)} inputs",
            )  # fmt: skip
        source = node.inputs[action.slot]
        for user, slot in graph.consumers(ref):
            self.editor.set_input(user.name, slot, source)
        if not any(graph.consumers(TensorRef(node.name, p)) for p in graph.used_ports(node.name)):
            for user in graph.control_consumers(node.name):
                self.editor.add_control(user.name, source.node)
            self.editor.remove([node.name])

    def _connect(self, action: ast.Connect) -> None:
        target = self.bound_tensor(action.target, action.loc).node
        source = self.tensor(action.source, target)
        node = self.graph.node(target)
        if action.slot == "^":
            self.editor.add_control(target, source.node)
            return
        inputs = list(node.inputs)
        if action.slot == "+" or action.slot == len(inputs):
            self.editor.set_inputs(target, [*inputs, source], list(node.controls))
        elif isinstance(action.slot, int) and 0 <= action.slot < len(inputs):
            self.editor.set_input(target, action.slot, source)
        else:
            raise self.rule_error(
                action.loc, f"{target} has {len(inputs)} inputs; slot {action.slot} is out of range"
            )

    def _disconnect(self, action: ast.Disconnect) -> None:
        target = self.bound_tensor(action.target, action.loc).node
        node = self.graph.node(target)
        slot = action.slot
        if isinstance(slot, int):
            inputs = list(node.inputs)
            if not 0 <= slot < len(inputs):
                raise self.rule_error(
                    action.loc, f"{target} has {len(inputs)} inputs; slot {slot} is out of range"
                )
            del inputs[slot]
            self.editor.set_inputs(target, inputs, list(node.controls))
            return
        if slot == "^":
            for src in list(node.controls):
                self.editor.remove_control(target, src)
            return
        src = slot[1:]
        value = self.bindings.get(src)
        if isinstance(value, TensorRef):
            src = value.node
        if src not in node.controls:
            raise self.rule_error(action.loc, f"{target} has no control input ^{src}")
        self.editor.remove_control(target, src)

    def _prune(self, action: ast.Prune) -> None:
        """Remove the match's producer cone that nothing reads any more (dead code)."""
        graph, editor = self.graph, self.editor
        protected = editor.outputs_before
        if protected is None:
            raise self.rule_error(action.loc, "prune needs the graph outputs from before the "
                                  "rules ran (run it through the engine)")  # fmt: skip
        seeds: dict[str, None] = dict.fromkeys(self.match.interior)
        for value in self.bindings.values():
            if isinstance(value, ScopeInstance):
                seeds.update(dict.fromkeys(value.nodes))
                seeds.update(dict.fromkeys(t.node for t in value.enters))
            elif isinstance(value, TensorRef):
                seeds[value.node] = None
            else:
                seeds.update(dict.fromkeys(t.node for t in value))
        for entry in editor.journal:  # producers of what this match removed
            if entry[0] == "remove":
                for node in entry[1]:
                    seeds.update(dict.fromkeys(r.node for r in node._inputs))
                    seeds.update(dict.fromkeys(node._controls))
        work = list(reversed(seeds))
        while work:
            name = work.pop()
            node = graph.get(name)
            if (
                node is None or name in editor.created or name in protected
                or node.op in ("Placeholder", "PlaceholderWithDefault") or graph.is_read(name)
            ):  # fmt: skip
                continue
            producers = [r.node for r in node._inputs] + list(node._controls)
            editor.remove([name])
            work.extend(reversed(producers))

    def _insert(self, action: ast.Insert) -> None:
        anchor = self.match.anchor
        name = self.unique_name(f"{anchor}/{action.var}")
        inputs, attrs = self.build(action.call, name)
        self.editor.add_node(name, action.call.op, inputs, (), attrs)
        self.bindings[action.var] = TensorRef(name, 0)

    def _setattr(self, action: ast.SetAttr) -> None:
        ref = self.bound_tensor(action.var, action.loc)
        node = self.graph.node(ref.node)
        value = self.evaluate(action.value)
        try:
            if action.kind is not None:
                from surgery.ir.attrs import make_attr

                attr = make_attr(value, action.kind, field=action.attr)
            elif self.catalog is not None and node.op in self.catalog:
                from surgery.ops.plugin_identity import plugin_schema_of
                from surgery.ops.plugin_schema import field_attr

                # TF's CropAndResize is none; an ONNX graph holds no TensorFlow op
                schema = plugin_schema_of(node, self.catalog, use_tf=self.ops().format == "tf")
                if schema is None:
                    attrs = ", ".join(sorted(k for k in node.attr if not k.startswith("_")))
                    raise self.rule_error(
                        action.loc, f"set {action.var}.{action.attr}: node {node.name!r} is "
                        f"TensorFlow's {node.op} (attrs {attrs}), not the catalog plugin of that "
                        f"name, so give the kind: `set {action.var}.{action.attr}: int = ...`",
                    )  # fmt: skip
                attr = field_attr(schema, action.attr, value)
            else:
                raise self.rule_error(
                    action.loc, f"set {action.var}.{action.attr}: {node.op} is not a catalog "
                    f"plugin, so give the kind: `set {action.var}.{action.attr}: int = ...`",
                )  # fmt: skip
        except RuleError as exc:
            if str(exc).startswith(str(action.loc)):
                raise
            raise self.rule_error(action.loc, str(exc)) from None
        except SurgeryError as exc:
            raise self.rule_error(action.loc, str(exc)) from None
        self.editor.set_attr(node.name, action.attr, attr)


_METHODS: dict[type, Any] = {}  # action class -> the Rewriter method that runs it


def _attr_detail(key: str, old: AttrValue | None, new: AttrValue) -> dict[str, Any]:
    """Provenance detail of a set_attr (made only when the change is read)."""
    from surgery.ir.attrs import attr_value

    return {
        "attr": key, "old": None if old is None else jsonable(attr_value(old)),
        "new": jsonable(attr_value(new)),
    }  # fmt: skip


def _func_refs(proto: Any, defined: dict[str, int]) -> set[str]:
    """Library functions a NodeDef refers to: as its op or through func attributes."""
    out = {proto.op} if proto.op in defined else set()
    for value in proto.attr.values():
        which = value.WhichOneof("value")
        if which == "func":
            out.add(value.func.name)
        elif which == "list":
            out.update(f.name for f in value.list.func)
    return out & set(defined)
