"""Every graph edit a rewrite makes, through one `Editor`: it records each change for the
provenance log and keeps an undo journal, so that a rewrite the engine refuses is rolled back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from surgery.engine.provenance import Recorder, jsonable
from surgery.ir.graph import Graph
from surgery.ir.ports import TensorRef
from surgery.ir.protos import AttrValue

# provenance detail keys, by kind of edit
_ADD, _OP, _SOURCE = ("op", "inputs", "controls"), ("op",), ("source",)
REWIRE, _OLD_NEW = ("slot", "old", "new"), ("old", "new")


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
        self.ops: Any = None  # the graph's op set (`RewriteContext.ops`)

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
            self.recorder.record("rewire", name, REWIRE, slot, old, tensor)

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


def _attr_detail(key: str, old: AttrValue | None, new: AttrValue) -> dict[str, Any]:
    """Provenance detail of a set_attr (made only when the change is read)."""
    from surgery.ir.attrs import attr_value

    return {
        "attr": key, "old": None if old is None else jsonable(attr_value(old)),
        "new": jsonable(attr_value(new)),
    }  # fmt: skip
