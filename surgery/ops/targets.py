"""TensorRT targets: which one provides each catalog plugin, and what surgery does about it.

A target is the TensorRT an engine is for: `tensorrt-8.6`, `tensorrt-10`, `tensorrt-11` (their
standard plugin library, `libnvinfer_plugin`) or `tensorrt-rtx` (TensorRT-RTX, which ships no
plugin library). Each catalog schema says per target, under `"targets"`, whether that library
has the plugin: the creator version (and name, where the library's differs from the catalog's),
its interface (IPluginV2, IPluginV2Ext, IPluginV2DynamicExt, IPluginV3), the TensorRT release
that deprecated or removed it, and the native ONNX op / TensorRT layer that does its job there.
A target left out, or `{}`, means its library lacks the plugin.

Where a target's library lacks a plugin, surgery's own Python IPluginV3 creator (`plugins.trt`)
is registered in its place; it computes only where surgery has a GPU kernel for the plugin
(`plugins.gpu.GPU_KERNELS`), otherwise engines build but cannot run it. `provision` tells which
of the three holds; `check`, `apply`, `support`, `export` and `build` act on it.

This module stays light (no NumPy, no TensorRT): the commands import it to parse `--target`.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surgery.errors import RuleError

if TYPE_CHECKING:
    from surgery.ir.graph import Graph
    from surgery.lang import rule_ast as ast
    from surgery.ops.plugin_schema import Catalog, PluginSchema


@dataclass(frozen=True)
class Target:
    """A TensorRT an engine is built for."""

    name: str
    label: str  # "TensorRT 11"
    module: str  # the Python module that builds for it
    release: str  # what that module's __version__ starts with ("" for TensorRT-RTX)
    plugin_library: bool  # whether it ships TensorRT's standard plugins (libnvinfer_plugin)
    strongly_typed: bool  # networks are always strongly typed: no FP16/INT8 builder flags


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("tensorrt-8.6", "TensorRT 8.6", "tensorrt", "8.6.", True, False),
        Target("tensorrt-10", "TensorRT 10", "tensorrt", "10.", True, False),
        Target("tensorrt-11", "TensorRT 11", "tensorrt", "11.", True, True),
        Target("tensorrt-rtx", "TensorRT-RTX", "tensorrt_rtx_bindings", "", False, True),
    )
}
TARGET_NAMES = tuple(TARGETS)
INTERFACES = ("IPluginV2", "IPluginV2Ext", "IPluginV2DynamicExt", "IPluginV3")
SURGERY_INTERFACE = "IPluginV3"  # surgery's own creators (plugins/trt/creators.py)
_ENTRY_KEYS = ("version", "name", "interface", "deprecated", "removed", "native", "doc")
_RELEASE = re.compile(r"\d+(\.\d+)*")


def unknown_target(name: str) -> str | None:
    """The message for a target name that is not one of TARGETS, or None when it is one."""
    if name in TARGETS:
        return None
    close = difflib.get_close_matches(name, TARGET_NAMES, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown target '{name}'{hint} (targets: {', '.join(TARGET_NAMES)})"


def _target_arg(text: str) -> str:
    """argparse `type` for --target: the name, or a usage error listing the known targets."""
    message = unknown_target(text)
    if message is not None:
        raise argparse.ArgumentTypeError(message)
    return text


def add_target_option(parser: argparse.ArgumentParser, help: str, default: str | None) -> None:
    """Add `--target NAME` (a usage error, exit status 2, for a name not in TARGETS)."""
    parser.add_argument("--target", type=_target_arg, default=default, metavar="TARGET",
                        help=f"{help} ({', '.join(TARGET_NAMES)})")  # fmt: skip


# --------------------------------------------------------------------------- the catalog key
@dataclass(frozen=True)
class TargetPlugin:
    """What one target's plugin library has for one catalog plugin (`"targets"` in its JSON)."""

    version: str | None = None  # creator version in the library; None: the library lacks it
    name: str | None = None  # the library's creator name, where it is not the catalog's
    interface: str | None = None
    deprecated: str | None = None  # TensorRT release that deprecated that version
    removed: str | None = None  # TensorRT release that removed the plugin
    native: str | None = None  # the native ONNX op / TensorRT layer that does its job there
    doc: str = ""


def parse_catalog_targets(raw: Any, path: Path) -> tuple[tuple[str, TargetPlugin], ...]:
    """The `"targets"` object of a schema file, validated; RuleError naming file and target."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RuleError(f'{path}: "targets" must be an object of target name -> entry')
    out = []
    for name, entry in raw.items():
        message = unknown_target(name)
        if message is not None:
            raise RuleError(f'{path}: "targets": {message}')
        out.append((name, _entry(entry, name, path)))
    return tuple(out)


def _entry(raw: Any, target: str, path: Path) -> TargetPlugin:
    """One target's entry, checked for consistency."""
    where = f'{path}: "targets" / {target!r}'
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: expected an object, got {type(raw).__name__}")
    for key, value in raw.items():
        if key not in _ENTRY_KEYS:
            close = difflib.get_close_matches(key, _ENTRY_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RuleError(f"{where}: unknown key {key!r}{hint} (keys: {', '.join(_ENTRY_KEYS)})")
        if not isinstance(value, str):
            raise RuleError(f"{where}: {key!r} must be a string, got {value!r}")
    entry = TargetPlugin(**raw)
    for key in ("deprecated", "removed"):
        value = getattr(entry, key)
        if value is not None and not _RELEASE.fullmatch(value):
            raise RuleError(f"{where}: {key!r} must be a TensorRT release such as \"10.12\", "
                            f"got {value!r}")  # fmt: skip
    if entry.version is None:
        for key in ("name", "interface", "deprecated"):
            if getattr(entry, key) is not None:
                raise RuleError(f"{where}: {key!r} describes the library's creator; give its "
                                "'version' too")  # fmt: skip
        return entry
    if not TARGETS[target].plugin_library:
        raise RuleError(f"{where}: {TARGETS[target].label} ships no plugin library, so its entry "
                        "cannot give a 'version'")  # fmt: skip
    if entry.removed is not None:
        raise RuleError(f"{where}: a plugin removed in {entry.removed} has no 'version' there")
    if not entry.version.isdigit():
        raise RuleError(f"{where}: 'version' must be a creator version such as \"1\", "
                        f"got {entry.version!r}")  # fmt: skip
    if entry.interface not in INTERFACES:
        raise RuleError(f"{where}: 'interface' must be one of {', '.join(INTERFACES)}, "
                        f"got {entry.interface!r}")  # fmt: skip
    return entry


# --------------------------------------------------------------------------- who provides it
@dataclass(frozen=True)
class Provision:
    """Who provides one catalog plugin on one target, and under which creator name/version."""

    plugin: str
    target: str
    provider: str  # "library", "surgery" (a GPU kernel), "build-only" or "unknown"
    creator: str  # the creator name an ONNX node must carry there
    version: str
    interface: str
    entry: TargetPlugin | None  # None: the schema records no targets at all

    @property
    def missing(self) -> bool:
        """Whether neither the target's library nor a surgery GPU kernel computes the plugin."""
        return self.provider == "build-only"

    def why_absent(self) -> str:
        """Why the target's library lacks the plugin (only meaningful when it does)."""
        target = TARGETS[self.target]
        if self.entry is not None and self.entry.removed:
            return f"removed in TensorRT {self.entry.removed}"
        if not target.plugin_library:
            return f"{target.label} ships no plugin library"
        return f"not in {target.label}'s plugin library"

    def diagnostics(self, notes: bool = True) -> list[tuple[str, str]]:
        """(severity, message) pairs: a warning when nothing computes the plugin on the target;
        with `notes`, a note on the library's deprecation, renamed creator, or surgery's
        plugin standing in, and the native alternative where there is one."""
        if self.entry is None:
            return []
        native = f"; native alternative: {self.entry.native}" if self.entry.native else ""
        head = f"plugin {self.plugin} on {self.target}"
        if self.missing:
            return [("warning", f"{head}: {self.why_absent()} and surgery has no GPU kernel "
                     f"for it: engines build with surgery's Python plugin but cannot run "
                     f"it{native}")]  # fmt: skip
        if not notes:
            return []
        if self.provider == "surgery":
            what = f"{self.why_absent()}; surgery's Python plugin (GPU kernel) provides it"
        else:
            what = (f"its plugin library has {self.creator} version {self.version} "
                    f"({self.interface})")
            if self.entry.deprecated:
                what += f", deprecated since TensorRT {self.entry.deprecated}"
            if self.creator != self.plugin:
                what += f"; an ONNX export for {self.target} carries that name"
        if not (native or self.entry.deprecated or self.provider == "surgery"
                or self.creator != self.plugin):  # fmt: skip
            return []  # provided as the catalog says: nothing to tell
        return [("note", f"{head}: {what}{native}")]


def _kernels() -> tuple[str, ...]:
    """The plugins surgery has a GPU kernel for, as they are now (imported lazily)."""
    from plugins.gpu import GPU_KERNELS

    return tuple(GPU_KERNELS)


def provision(
    schema: PluginSchema, target: str, kernels: Iterable[str] | None = None
) -> Provision:
    """Who provides `schema`'s plugin on `target` (kernels: default plugins.gpu.GPU_KERNELS)."""
    entries = dict(schema.targets)
    entry = entries.get(target, TargetPlugin()) if entries else None
    if entry is not None and entry.version is not None:
        return Provision(schema.name, target, "library", entry.name or schema.name,
                         entry.version, entry.interface or "", entry)  # fmt: skip
    has_kernel = schema.name in (_kernels() if kernels is None else tuple(kernels))
    provider = "unknown" if entry is None else "surgery" if has_kernel else "build-only"
    return Provision(schema.name, target, provider, schema.name, schema.version,
                     SURGERY_INTERFACE, entry)  # fmt: skip


def export_creator(schema: PluginSchema, target: str | None) -> tuple[str, str]:
    """(creator name, version) an exported ONNX node carries for `target`: the target
    library's where it has the plugin, else the catalog's (what surgery's creators register)."""
    if target is None:
        return schema.name, schema.version
    found = provision(schema, target, kernels=())
    return found.creator, found.version


def resolve_creator(catalog: Catalog, name: str, version: str) -> PluginSchema | None:
    """The catalog schema an ONNX node's (creator name, version) stands for: the catalog's own,
    or a target library's (`CropAndResizeDynamic` version 2 is TensorRT 11's CropAndResize)."""
    if name in catalog and catalog.get(name).version == version:
        return catalog.get(name)
    for schema in catalog:
        for _, entry in schema.targets:
            if entry.version == version and (entry.name or schema.name) == name:
                return schema
    return None


def creator_versions(schema: PluginSchema, name: str) -> list[str]:
    """Every version the catalog records for creator `name` of `schema` (its own, targets')."""
    found = [schema.version] if name == schema.name else []
    for _, entry in schema.targets:
        if entry.version and (entry.name or schema.name) == name and entry.version not in found:
            found.append(entry.version)
    return found


# --------------------------------------------------------------------------- rule files
def file_mismatch(rule_file: ast.RuleFile, target: str) -> str | None:
    """Why `rule_file` is not meant for `target` (its `targets` statement), or None."""
    if not rule_file.targets or target in rule_file.targets:
        return None
    return f"this file is for {', '.join(rule_file.targets)}, not {target}"


def rule_skipped(rule: ast.Rule, target: str) -> bool:
    """Whether `rule` states targets and `target` is not one of them."""
    return bool(rule.targets) and target not in rule.targets


def select_rules(
    rule_files: Iterable[ast.RuleFile], target: str
) -> tuple[list[ast.RuleFile], list[tuple[str, str]]]:
    """The rule files as applied for `target` (rules stating other targets left out), and
    (severity, message) pairs: a warning for a file not meant for the target (it is applied
    all the same: the user named it), a note for each rule left out."""
    selected: list[ast.RuleFile] = []
    messages: list[tuple[str, str]] = []
    for rule_file in rule_files:
        mismatch = file_mismatch(rule_file, target)
        if mismatch is not None:
            where = rule_file.targets_loc or rule_file.path
            messages.append(("warning", f"{where}: {mismatch}; applying it all the same"))
        kept = []
        for rule in rule_file.rules:
            if rule_skipped(rule, target):
                messages.append(("note", f"{rule.loc}: rule '{rule.name}' left out: it is for "
                                 f"{', '.join(rule.targets)}, not {target}"))  # fmt: skip
            else:
                kept.append(rule)
        selected.append(replace(rule_file, rules=tuple(kept)))
    return selected, messages


def graph_messages(
    graph: Graph, target: str, catalog: Catalog | None = None
) -> list[tuple[str, str]]:
    """(severity, message) pairs for the plugin nodes of `graph` on `target`, one per plugin
    (with its node count): what `provision` says, warnings and notes."""
    from surgery.ops.plugin_identity import plugin_schema_of
    from surgery.ops.plugin_schema import load_catalog

    catalog = catalog or load_catalog()
    counts: dict[str, int] = {}
    schemas: dict[str, PluginSchema] = {}
    for node in graph:
        if node.op not in catalog:
            continue
        schema = plugin_schema_of(node, catalog, use_tf=False)  # the op table knows TF's
        if schema is not None:
            counts[schema.name] = counts.get(schema.name, 0) + 1
            schemas[schema.name] = schema
    out = []
    for name in sorted(counts):
        for severity, message in provision(schemas[name], target).diagnostics():
            out.append((severity, f"{counts[name]} node(s): {message}"))
    return out


def describe(found: Provision) -> str:
    """One line for `support`: who provides the plugin on the target, and the native op."""
    entry = found.entry
    if entry is None:
        return "not recorded in the catalog's targets"
    if found.provider == "library":
        text = f"{found.creator} version {found.version} ({found.interface}) in the plugin library"
        if entry.deprecated:
            text += f", deprecated since TensorRT {entry.deprecated}"
    elif found.provider == "surgery":
        text = f"{found.why_absent()}; surgery's Python plugin with a GPU kernel"
    else:
        text = f"{found.why_absent()}; surgery's Python plugin builds, no GPU kernel to run it"
    return text + (f"; native alternative: {entry.native}" if entry.native else "")

