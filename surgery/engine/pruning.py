"""What a rewrite leaves dead, removed: the producer cone of a match that nothing reads any more
(`prune`) and the library functions no node refers to after a `collapse`."""

from __future__ import annotations

from typing import Any

from surgery.engine.editor import Editor
from surgery.ir.attrs import called_functions
from surgery.ir.graph import Graph


def prune_unread(
    graph: Graph, editor: Editor, seeds: dict[str, None], protected: frozenset[str]
) -> None:
    """Remove the `seeds` (and the producers of what this match's edits removed) that nothing
    reads any more, then their producers in turn; never a node this match created, a graph
    output in `protected` or a placeholder."""
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


def prune_library(graph: Graph, editor: Editor) -> None:
    """Drop library functions no node (and no kept function) refers to any more."""
    library = graph.library
    if not len(library.function):
        return
    defined = {f.signature.name: i for i, f in enumerate(library.function)}
    used: set[str] = set()
    work: list[Any] = [n.proto for n in graph]
    while work:
        proto = work.pop()
        refs = _func_refs(proto, defined)
        for fname in refs - used:
            used.add(fname)
            work.extend(library.function[defined[fname]].node_def)
    for fname in sorted(set(defined) - used, key=lambda f: -defined[f]):
        editor.remove_function(defined[fname])


def _func_refs(proto: Any, defined: dict[str, int]) -> set[str]:
    """Library functions a NodeDef refers to: as its op or through func attributes."""
    out = set(called_functions(proto.attr))
    if proto.op in defined:
        out.add(proto.op)
    return out & defined.keys()
