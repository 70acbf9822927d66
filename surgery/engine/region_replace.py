"""`replace` and `collapse`: the nodes a match gives up become one new node under a chosen
name, and every tensor still read outside them is rewired to an output of it (or refused)."""

from __future__ import annotations

from typing import Any

from surgery.engine.editor import REWIRE
from surgery.engine.rewrite_context import RewriteContext
from surgery.ir.onnx_io import is_onnx_graph
from surgery.ir.ports import SIDE_ATTR_PREFIX, TensorRef
from surgery.ir.protos import AttrValue
from surgery.lang import rule_ast as ast

_new_ref = tuple.__new__
_PENDING = "\x00pending/"  # transient consumer target while a node is replaced under its name


def replace_region(
    rw: RewriteContext, action: Any, call: ast.NodeCall, name: str, doomed: dict[str, None],
    targets: list[TensorRef], *, extend_interior: bool,
    side: tuple[tuple[str, TensorRef], ...] = (),
) -> None:  # fmt: skip
    """Replace the `doomed` nodes of the match `rw` rewrites by one node `name` built from
    `call` (a `replace` or `collapse` action); rewire mapped uses.
    Each dropped side input is recorded on the new node as attr `_side_<role>` (its
    tensor's name), for validate to feed it with what the plugin implies."""
    graph, editor = rw.graph, rw.editor
    if name in graph and name not in doomed:
        raise rw.refuse(action.loc, f"a node named {name!r} already exists outside the match")
    inputs, attrs = rw.build(call, name)
    if side:
        attrs = dict(attrs)  # a plan may share its attrs between matches
        for role, ref in side:
            attrs[SIDE_ATTR_PREFIX + role] = AttrValue(s=str(ref).encode())
    if action.outputs:
        mapping: dict[TensorRef, int] = {}
        for om in action.outputs:
            # `r.out[*] -> k` maps the whole list to ports k, k+1, ...
            for offset, ref in enumerate(rw.tensors(om.tensor, name)):
                mapping[ref] = om.port + offset
    else:
        mapping = {t: i for i, t in enumerate(targets)}
    _check_ports(rw, action, call, mapping)
    if extend_interior:
        _add_dead_interior(rw, doomed, inputs, mapping)
    read = {t.node for t in inputs}
    kept = [n for n in doomed if n in read]
    if kept:
        raise rw.refuse(
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
                raise rw.refuse(
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
            record("rewire", user, REWIRE, slot, ref, new)
    for user in controls_out:
        if user in graph:
            editor.add_control(user, name)


def _check_ports(rw: RewriteContext, action: Any, call: ast.NodeCall, mapping: dict) -> None:
    """Output ports mapped must exist on a catalog plugin."""
    high = rw.plan(call).outputs
    if high is None:
        return
    for ref, port in mapping.items():
        if port >= high:
            schema = rw.catalog.get(call.op)
            raise rw.rule_error(
                action.loc, f"{ref} -> {port}: plugin {schema.name} has {high} output(s) "
                f"({', '.join(t.name for t in schema.outputs)})",
            )  # fmt: skip


def _add_dead_interior(
    rw: RewriteContext, doomed: dict[str, None], inputs: list[TensorRef],
    mapping: dict[TensorRef, int],
) -> None:  # fmt: skip
    """Interior nodes of the match that nothing outside the removed set reads any more."""
    interior = rw.match.interior
    keep = {t.node for t in inputs} | {t.node for t in mapping if t.node not in doomed}
    graph = rw.graph
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
