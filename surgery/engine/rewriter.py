"""How a match is rewritten: replace, collapse, remove, forward, connect, disconnect, insert, set.

Actions run in rule order inside one match. Every edit goes through an `Editor`
(`surgery.engine.editor`), which records provenance and keeps an undo journal, so that a rewrite
the engine refuses afterwards (dangling input, cycle) is rolled back completely. Unsafe edits
that can be seen beforehand (an unmapped tensor still read outside the match) are refused before
anything changes. The actions' helpers are in `rewrite_context.py`, `replace` / `collapse` in
`region_replace.py`, `prune` and library pruning in `pruning.py`.
"""

from __future__ import annotations

from typing import Any

from surgery.engine.pruning import prune_library, prune_unread
from surgery.engine.region_replace import replace_region
from surgery.engine.rewrite_context import RewriteContext
from surgery.errors import GraphError, RuleError, SurgeryError
from surgery.ir.ports import TensorRef
from surgery.lang import rule_ast as ast
from surgery.lang.scope_instances import ScopeInstance

_METHODS: dict[type, Any] = {}  # action class -> the Rewriter method that runs it


class Rewriter(RewriteContext):
    """Runs the actions of one match against the graph through an Editor."""

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
        replace_region(self, action, action.call, name, doomed, targets, extend_interior=True)

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
        replace_region(self, action, action.call, name, doomed, list(inst.leaves),
                       extend_interior=False, side=inst.side)  # fmt: skip
        prune_library(self.graph, self.editor)

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
        protected = self.editor.outputs_before
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
        prune_unread(self.graph, self.editor, seeds, protected)

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
