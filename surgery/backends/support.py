"""`surgery support`: nodes a TensorRT target's ONNX parser cannot take, and rules that fix them.

A `.pb` is exported to ONNX first (plugin nodes as custom ops; which nodes are plugin nodes is
`surgery.ops.plugin_identity`'s call, so TensorFlow's own `CropAndResize` stays a TensorFlow op).
Targets are `surgery.ops.targets`' (`tensorrt-8.6`, `tensorrt-10`, `tensorrt-11`, `tensorrt-rtx`).
Standard ops are asked of the target's own parser (`supports_operator`) when its Python API is
installed at the target's release, else looked up in a short table of ONNX ops TensorRT has no
importer for. Custom (plugin) ops are supported when the target can host a creator: its plugin
library (the registry when installed, else what the catalog's `"targets"` record for it) or
surgery's Python creators (`plugins.trt`). Each plugin op is described for the target (library
version and deprecation, or surgery's plugin, and the native ONNX op that would serve instead),
and each unsupported op lists the rules in `rules/` whose patterns anchor on it (the op of a
match root), found by parsing the rule files, leaving out files and rules stating other targets.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surgery.errors import SurgeryError
from surgery.ops.targets import TARGETS, unknown_target

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
# ONNX ops that TensorRT's ONNX parser has no importer for (sequences, strings, optional, ML).
NO_IMPORTER = frozenset({
    "ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SplitToSequence", "Optional", "OptionalGetElement",
    "OptionalHasElement", "StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch",
    "TfIdfVectorizer", "Unique", "ImageDecoder", "Multinomial", "RandomNormalLike",
})  # fmt: skip


class SupportError(SurgeryError):
    """A model or target `support` cannot work with."""


@dataclass
class Finding:
    """One unsupported op: its nodes, why, and the rules that would rewrite it."""

    op: str
    reason: str
    nodes: list[str] = field(default_factory=list)
    source_ops: list[str] = field(default_factory=list)  # TF ops behind the ONNX nodes
    rules: list[str] = field(default_factory=list)  # "file.rules:rule_name"


@dataclass
class SupportReport:
    """The verdict for a model on a target."""

    model: str
    target: str
    checked_by: str  # "parser <module> <version>" or "static table"
    nodes: int
    findings: list[Finding] = field(default_factory=list)
    build_only: dict[str, int] = field(default_factory=dict)  # plugin op -> nodes, no GPU kernel
    plugins: dict[str, tuple[int, str]] = field(default_factory=dict)  # op -> (nodes, on target)

    @property
    def supported(self) -> bool:
        """Whether every node can be taken."""
        return not self.findings

    def format(self) -> str:
        """Text for the command line."""
        head = f"{self.model}: {self.nodes} ONNX nodes, target {self.target} ({self.checked_by})"
        if self.build_only:
            shown = ", ".join(f"{op} x{n}" for op, n in sorted(self.build_only.items()))
            head += (f"\nparsed and built by surgery's Python plugins, but no GPU kernel yet "
                     f"(the engine cannot execute them): {shown}")
        if self.plugins:
            head += f"\nplugins on {self.target}:" + "".join(
                f"\n  {op} x{count}: {what}" for op, (count, what) in sorted(self.plugins.items())
            )
        if self.supported:
            return head + "\nall nodes supported"
        lines = [head, f"{sum(len(f.nodes) for f in self.findings)} node(s) unsupported:"]
        for item in self.findings:
            shown = ", ".join(item.nodes[:4]) + (" ..." if len(item.nodes) > 4 else "")
            lines.append(f"  {item.op} x{len(item.nodes)}: {item.reason}")
            lines.append(f"      nodes: {shown}")
            if item.source_ops:
                lines.append(f"      from TensorFlow ops: {', '.join(item.source_ops)}")
            fix = ", ".join(item.rules) if item.rules else "none in rules/"
            lines.append(f"      rules that rewrite it: {fix}")
        return "\n".join(lines)


def rule_index(
    rules_dir: str | os.PathLike | None = None, target: str | None = None
) -> dict[str, list[str]]:
    """op name -> ["file.rules:rule", ...] for every rule whose match roots name that op
    (with `target`, only files and rules meant for it: `targets` statements)."""
    from surgery.lang import rule_ast as ast
    from surgery.lang.rule_parser import load_rules
    from surgery.ops.targets import file_mismatch, rule_skipped

    index: dict[str, list[str]] = {}
    for path in sorted(Path(rules_dir or RULES_DIR).glob("*.rules")):
        rule_file = load_rules(path)
        if target is not None and file_mismatch(rule_file, target) is not None:
            continue
        for rule in rule_file.rules:
            if not isinstance(rule.body, ast.MatchStmt):
                continue
            if target is not None and rule_skipped(rule, target):
                continue
            for root in rule.body.roots:
                for op in root.ops:
                    index.setdefault(op, []).append(f"{path.name}:{rule.name}")
    return index


def _load_target(target: str) -> Any:
    """The target's TensorRT module when it is installed at the target's release, else None."""
    from surgery.backends.trt_backend import load_trt, target_of

    trt = load_trt(TARGETS[target].module)
    return trt if trt is not None and target_of(trt) == target else None


def _hosted_plugins(target: str, trt: Any, python_plugins: bool) -> set[str]:
    """Creator names the target can host (library registry, else what the catalog records)."""
    from plugins.trt import IMPLEMENTED
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import provision

    hosted = set(IMPLEMENTED) if python_plugins else set()
    if trt is not None:
        from surgery.backends.trt_backend import kept, register_plugins

        register_plugins(trt, kept(trt.Logger(trt.Logger.ERROR)), None if python_plugins else [])
        ours = set() if python_plugins else set(IMPLEMENTED)
        hosted |= {c.name for c in trt.get_plugin_registry().all_creators} - ours
    else:
        found = (provision(s, target, kernels=()) for s in load_catalog())
        hosted |= {f.creator for f in found if f.provider == "library"}
    return hosted


def _onnx_model(path: Path, workdir: str) -> tuple[Any, dict[str, str]]:
    """(ModelProto, ONNX node name -> TF op) from an .onnx file or an exported .pb/.pbtxt."""
    import onnx

    if path.suffix == ".onnx":
        from surgery.backends.trt_backend import BuildError, read_onnx

        try:
            return read_onnx(path), {}
        except BuildError as exc:
            raise SupportError(str(exc)) from None
    from surgery.backends.onnx_export import export_onnx
    from surgery.ir import model_io

    graph = model_io.load(path)
    out = Path(workdir) / "model.onnx"
    export_onnx(graph, out)
    tf_ops = {node.name: node.op for node in graph}
    return onnx.load(str(out), load_external_data=False), tf_ops


def check_support(
    model: str | os.PathLike,
    target: str = "tensorrt-rtx",
    rules_dir: str | os.PathLike | None = None,
    *,
    python_plugins: bool = True,
) -> SupportReport:
    """The support report of `model` (.pb/.pbtxt/.onnx) for `target`.

    `python_plugins=False` counts only creators the TensorRT library itself provides.
    """
    message = unknown_target(target)
    if message is not None:
        raise SupportError(message)
    trt = _load_target(target)
    path = Path(model)
    hosted = _hosted_plugins(target, trt, python_plugins)
    parser = parse_errors = None
    with tempfile.TemporaryDirectory(prefix="surgery-support-") as workdir:
        onnx_model, tf_ops = _onnx_model(path, workdir)
        if trt is not None:
            parser = _Parser(trt)
        if trt is not None and _can_parse_here(trt, onnx_model):
            onnx_path = path if path.suffix == ".onnx" else Path(workdir) / "model.onnx"
            parse_errors = _parse_errors(target, onnx_path, python_plugins, onnx_model)
    index = rule_index(rules_dir, target)
    groups: dict[str, Finding] = {}
    for node in onnx_model.graph.node:
        reason = _why_unsupported(node, parser, hosted, target)
        if reason is None:
            continue
        item = groups.setdefault(node.op_type, Finding(node.op_type, reason))
        item.nodes.append(node.name or node.op_type)
        source = tf_ops.get(node.name)
        if source and source not in item.source_ops:
            item.source_ops.append(source)
    for node_name, (op, desc) in (parse_errors or {}).items():
        if any(node_name in f.nodes for f in groups.values()):
            continue
        item = groups.setdefault(op, Finding(op, desc))
        item.nodes.append(node_name)
        source = tf_ops.get(node_name)
        if source and source not in item.source_ops:
            item.source_ops.append(source)
    for item in groups.values():
        item.rules = _rules_for([item.op, *item.source_ops], index)
    checked = f"parser {trt.__name__} {trt.__version__}" if trt is not None else "static table"
    build_only: dict[str, int] = {}
    if python_plugins:
        from plugins.trt import plugin_status

        status = plugin_status()
        for node in onnx_model.graph.node:
            if not _is_custom(node):
                continue  # a standard op that shares a creator's name is no plugin
            if status.get(node.op_type) == "build only" and node.op_type in hosted:
                build_only[node.op_type] = build_only.get(node.op_type, 0) + 1
    return SupportReport(
        str(path), target, checked, len(onnx_model.graph.node), sorted(
            groups.values(), key=lambda f: (-len(f.nodes), f.op)
        ), build_only, _plugins_on(onnx_model, target),
    )  # fmt: skip


def _plugins_on(model: Any, target: str) -> dict[str, tuple[int, str]]:
    """Plugin op -> (nodes, who provides it on `target` and the native alternative), for the
    custom nodes that are catalog plugins (by creator name and version, any target's)."""
    from surgery.backends.trt_backend import plugin_key
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import describe, export_creator, provision, resolve_creator

    catalog = load_catalog()
    out: dict[str, tuple[int, str]] = {}
    for node in model.graph.node:
        if not _is_custom(node):
            continue
        name, version, _ = plugin_key(node)
        schema = resolve_creator(catalog, name, version)
        if schema is None:
            continue
        what = describe(provision(schema, target))
        wanted = export_creator(schema, target)
        if (name, version) != wanted:
            what = (f"{target} expects {wanted[0]} version {wanted[1]} (`surgery export --target "
                    f"{target}`); {what}")  # fmt: skip
        count = out.get(node.op_type, (0, what))[0] + 1
        out[node.op_type] = (count, what)
    return out


class _Parser:
    """An ONNX parser with its builder and network kept alive (TensorRT requires the builder to
    outlive the network: a temporary builder makes the network's destructor crash)."""

    def __init__(self, trt: Any) -> None:
        from surgery.backends.trt_backend import kept

        self.logger = kept(trt.Logger(trt.Logger.INTERNAL_ERROR))
        self.builder = trt.Builder(self.logger)
        self.network = self.builder.create_network(0)
        self.parser = trt.OnnxParser(self.network, self.logger)

    def supports_operator(self, op: str) -> bool:
        """Whether the parser has an importer for `op`."""
        return bool(self.parser.supports_operator(op))

    def __del__(self) -> None:
        for name in ("parser", "network", "builder"):
            self.__dict__.pop(name, None)


def _can_parse_here(trt: Any, model: Any) -> bool:
    """False where parsing in this process would abort (TensorRT-RTX, plugin ops, no lib fix)."""
    from surgery.backends.trt_backend import is_rtx, plugin_nodes, rtx_library_fix

    return not (is_rtx(trt) and plugin_nodes(model) and not rtx_library_fix()[0])


def _parse_errors(
    target: str, onnx_path: Path, python_plugins: bool, model: Any
) -> dict[str, tuple[str, str]]:
    """node name -> (op, reason) for the errors of a real parse (the parser stops early).

    The parse runs in a child process: TensorRT-RTX 1.7's parser crashes (SIGSEGV) where a node
    inside a Loop body fails to import (tf2onnx's Loop for TensorFlow's own CropAndResize holds
    a Resize in `tf_crop_and_resize` mode, which TensorRT refuses). A crash is blamed on the
    nodes that hold subgraphs, or on the model when it has none."""
    from surgery.backends.trt_backend import run_child

    request = {"target": target, "onnx": str(onnx_path), "python_plugins": python_plugins}
    code, reply = run_child("surgery.backends.support", request, dict(os.environ))
    if code == 0 and "errors" in reply:
        return {
            name: (op, f"the ONNX parser rejects it: {desc}")
            for name, (op, desc) in reply["errors"].items()
        }
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    why = f"the ONNX parser crashed ({how}) parsing the model"
    holders = [n for n in model.graph.node if any(a.HasField("g") or a.graphs
                                                  for a in n.attribute)]  # fmt: skip
    if not holders:
        return {"(the whole model)": ("?", why)}
    return {
        n.name or n.op_type: (n.op_type, f"{why}; this node holds a subgraph, the likely place "
                              "(an import failure inside a Loop body crashes TensorRT-RTX 1.7's "
                              "parser)")
        for n in holders
    }  # fmt: skip


def _parse_here(trt: Any, onnx_path: Path) -> dict[str, tuple[str, str]]:
    """node name -> (op, the parser's message) for the errors of a parse in this process."""
    holder = _Parser(trt)
    parser = holder.parser
    if parser.parse_from_file(str(onnx_path)):
        return {}
    errors = {}
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        desc = err.desc().splitlines()[0] if err.desc() else "rejected"
        errors[err.node_name() or f"#{err.node()}"] = (err.node_operator() or "?", desc)
    return errors


def _is_custom(node: Any) -> bool:
    """Whether an ONNX node is a custom op (a plugin): by its domain, never by its op type (the
    export writes plugin nodes, `surgery.ops.plugin_identity`, in `trt.plugins`; TensorFlow's own
    `CropAndResize` becomes standard ONNX ops)."""
    return node.domain not in ("", "ai.onnx")


def _why_unsupported(node: Any, parser: Any, hosted: set[str], target: str) -> str | None:
    """Why `target` cannot take `node`, or None."""
    if _is_custom(node):
        if node.op_type in hosted:
            return None
        return f"custom op with no plugin creator available to {target}"
    if parser is not None:
        return None if parser.supports_operator(node.op_type) else "no importer in the ONNX parser"
    return "no importer in TensorRT's ONNX parser" if node.op_type in NO_IMPORTER else None


def _rules_for(ops: Iterable[str], index: dict[str, list[str]]) -> list[str]:
    """Rules anchored on any of `ops`, in order, without repeats."""
    found: list[str] = []
    for op in ops:
        for rule in index.get(op, ()):
            if rule not in found:
                found.append(rule)
    return found


def _child_main() -> int:
    """Child-process entry of `_parse_errors`: a JSON request on stdin, one JSON line out."""
    request = json.loads(sys.stdin.read())
    target = request["target"]
    trt = _load_target(target)
    _hosted_plugins(target, trt, request["python_plugins"])  # registers what the parent did
    errors = _parse_here(trt, Path(request["onnx"]))
    print(json.dumps({"errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
