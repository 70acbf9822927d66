"""`surgery build`: ONNX -> TensorRT engine with the TensorRT Python API.

`tensorrt` is used when importable, else TensorRT-RTX (`tensorrt_rtx_bindings`, same API family;
it builds engines on a CPU-only machine). TensorRT's own plugins are registered where the library
has them, ours (`plugins.trt`) for the plugin ops the model uses. The engine is written
atomically: a failed build leaves no file behind.

TensorRT-RTX note (the "terminate called without an active exception" abort): when the ONNX
parser adds an IPluginV3 layer it `dlopen`s the core library by its unversioned name
`libtensorrt_rtx.so` (to reach a private API); the PyPI wheel ships only `libtensorrt_rtx.so.1`,
so the dlopen fails, the parser throws inside a `noexcept` function and the process terminates.
Nothing about Python plugin objects is at fault. `rtx_library_fix` finds or makes the unversioned
name (a symlink in a cache directory); when this process cannot see it, the build runs in a child
process with `LD_LIBRARY_PATH` pointing there. `make setup` can instead create the symlink beside
the wheel's library, after which everything runs in-process.

Targets (`surgery.ops.targets`): `--target tensorrt-11` and `tensorrt-rtx` build strongly typed
networks (TensorRT 11 dropped the FP16/INT8 builder flags: precision is the ONNX model's tensor
types; TensorRT-RTX networks are strongly typed whatever the flags), so `--fp16` is refused there.
A target whose TensorRT is not importable here (`tensorrt` does not install from PyPI) is stood in
for by TensorRT-RTX, which builds strongly typed, and the result says so; plugin creators the
target's library has under another name or version (TensorRT 11's `CropAndResizeDynamic` v2)
are stood in for by surgery's creator of that catalog plugin, registered under that key.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from surgery.errors import SurgeryError

BACKENDS = ("tensorrt", "tensorrt_rtx_bindings")
RTX_LIB = "libtensorrt_rtx.so"


class BuildError(SurgeryError):
    """The engine could not be built; the message names the ONNX node where there is one."""


class TensorRTMissing(BuildError):
    """Neither `tensorrt` nor `tensorrt_rtx_bindings` is importable."""


@dataclass
class BuildResult:
    """What a build produced."""

    path: str
    backend: str
    version: str
    seconds: float
    size: int
    layers: dict[str, int] = field(default_factory=dict)  # layer type -> count
    plugin_layers: list[str] = field(default_factory=list)  # "name (creator)"
    registered: list[str] = field(default_factory=list)  # our creators registered
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    isolated: bool = False  # built in a child process (TensorRT-RTX library-name fix)
    target: str | None = None  # the TensorRT target built for (surgery.ops.targets)
    strongly_typed: bool = False  # the network's STRONGLY_TYPED flag, as TensorRT reports it
    stand_in: str = ""  # why another TensorRT built in the target's place, or ""
    stand_in_creators: list[str] = field(default_factory=list)  # "name vN" registered for it
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the command line."""
        kinds = ", ".join(f"{k} x{v}" for k, v in sorted(self.layers.items()))
        lines = [
            f"wrote {self.path} ({self.size} bytes, {self.backend} {self.version}, "
            f"{self.seconds:.2f} s)",
            f"inputs:  {', '.join(self.inputs)}",
            f"outputs: {', '.join(self.outputs)}",
            f"layers:  {sum(self.layers.values())} ({kinds})",
        ]
        if self.plugin_layers:
            lines.append(f"plugins: {', '.join(self.plugin_layers)}")
        if self.registered:
            lines.append(f"registered surgery plugins: {', '.join(self.registered)}")
        if self.target is not None:
            typed = "strongly typed" if self.strongly_typed else "weakly typed"
            lines.append(f"target:  {self.target}, {typed}"
                         + (f" ({self.stand_in})" if self.stand_in else ""))  # fmt: skip
        if self.stand_in_creators:
            lines.append("surgery creators standing in for the target's library (build only): "
                         + ", ".join(self.stand_in_creators))  # fmt: skip
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _import_module(name: str) -> Any:
    """`importlib.import_module(name)`, or None if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def load_trt(preferred: str | None = None) -> Any:
    """The TensorRT module: `tensorrt` if importable, else `tensorrt_rtx_bindings`, else None."""
    for name in (preferred,) if preferred else BACKENDS:
        module = _import_module(name)
        if module is not None:
            return module
    return None


def require_trt(preferred: str | None = None) -> Any:
    """The TensorRT module, or TensorRTMissing saying what to install."""
    trt = load_trt(preferred)
    if trt is None:
        wanted = preferred or " or ".join(BACKENDS)
        raise TensorRTMissing(
            f"no TensorRT Python API found ({wanted}); install `tensorrt` or, on machines that "
            "cannot reach NVIDIA's index, tensorrt-rtx-cu13-libs + tensorrt-rtx-cu13-bindings"
        )
    return trt


def is_rtx(trt: Any) -> bool:
    """Whether `trt` is TensorRT-RTX."""
    return trt.__name__.startswith("tensorrt_rtx")


def rtx_library_fix() -> tuple[bool, Path | None]:
    """(in-process OK, directory to put on LD_LIBRARY_PATH for a child) for TensorRT-RTX."""
    libs = _import_module("tensorrt_rtx_libs")
    if libs is None:
        return True, None
    lib_dir = Path(libs.__file__).resolve().parent
    if (lib_dir / RTX_LIB).exists():
        return True, None
    for entry in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if entry and (Path(entry) / RTX_LIB).exists():
            return True, None
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "surgery" / "trt-rtx"
    cache.mkdir(parents=True, exist_ok=True)
    link = cache / RTX_LIB
    target = lib_dir / f"{RTX_LIB}.1"
    if not link.exists() or link.resolve() != target:
        tmp = cache / f".{RTX_LIB}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return False, cache


# --------------------------------------------------------------------------- ONNX checks
def read_onnx(path: str | os.PathLike) -> Any:
    """The ModelProto (external data not loaded); BuildError if the file is not ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise BuildError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BuildError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise BuildError(f"{path}: not an ONNX model (no graph nodes)")
    return model


def plugin_nodes(model: Any) -> list[Any]:
    """Nodes outside the standard ONNX domains (custom ops TensorRT resolves as plugins)."""
    return [n for n in model.graph.node if n.domain not in ("", "ai.onnx", "ai.onnx.ml")]


def check_plugin_nodes(model: Any) -> list[str]:
    """Check custom nodes against the catalog; the creator names used (BuildError if wrong).
    A node may name a target library's creator for a catalog plugin (`resolve_creator`)."""
    from surgery.backends.export.plugin_nodes import (
        PluginFieldError,
        check_onnx_plugin_node,
    )
    from surgery.ir.onnx_io import PLUGIN_DOMAIN
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import resolve_creator

    catalog = load_catalog()
    used: list[str] = []
    for node in plugin_nodes(model):
        name, version, _ = plugin_key(node)
        schema = resolve_creator(catalog, name, version)
        if schema is None and name in catalog:
            schema = catalog.get(name)  # a version the catalog lacks: its check says which
        if schema is None:
            if node.domain == PLUGIN_DOMAIN:
                raise BuildError(
                    f"ONNX node {node.name!r}: plugin op {node.op_type!r} (version {version}) is "
                    "not in the plugin catalog (plugins/catalog/), under its own name or a "
                    "target's"
                )
            continue  # someone else's custom op: left to the registry check
        try:
            check_onnx_plugin_node(node, schema)
        except PluginFieldError as exc:
            raise BuildError(str(exc)) from None
        if node.op_type not in used:
            used.append(node.op_type)
    return used


def plugin_key(node: Any) -> tuple[str, str, str]:
    """(creator name, version, namespace) the parser will look up for a custom node."""
    attrs = {a.name: a for a in node.attribute}
    version = attrs["plugin_version"].s.decode() if "plugin_version" in attrs else "1"
    space = attrs["plugin_namespace"].s.decode() if "plugin_namespace" in attrs else ""
    return node.op_type, version, space


# --------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class BuildPlan:
    """How an engine for a target is built here: by which module, strongly typed or not."""

    target: str | None  # None: the installed module's release is no known target
    module: str
    strongly_typed: bool
    stand_in: str = ""  # why `module` builds in the target's place, or ""


def target_of(trt: Any) -> str | None:
    """The target a TensorRT module builds for (`tensorrt` by its release), or None."""
    from surgery.ops.targets import TARGETS

    if is_rtx(trt):
        return "tensorrt-rtx"
    version = str(trt.__version__)
    return next((t.name for t in TARGETS.values()
                 if t.module == trt.__name__ and t.release and version.startswith(t.release)),
                None)  # fmt: skip


def plan_build(target: str | None, backend: str | None = None) -> BuildPlan:
    """The BuildPlan for `target` (None: whichever TensorRT is installed, `backend` first).

    The target's own module builds when it is importable and of the target's release; else
    TensorRT-RTX stands in (it installs from PyPI and builds on any machine), strongly typed as
    all its networks are. `backend` forces a module. TensorRTMissing when nothing can build."""
    from surgery.ops.targets import TARGETS

    if target is None:
        trt = require_trt(backend)
        found = target_of(trt)
        strong = is_rtx(trt) or (found is not None and TARGETS[found].strongly_typed)
        return BuildPlan(found, trt.__name__, strong)
    spec = TARGETS[target]
    trt = load_trt(backend or spec.module)
    if trt is not None and target_of(trt) == target:
        return BuildPlan(target, trt.__name__, spec.strongly_typed or is_rtx(trt))
    if trt is None:
        why = f"{spec.label} is not installed here, no `{backend or spec.module}` module"
    elif is_rtx(trt):
        why = f"--backend {trt.__name__}"
    else:
        why = f"`{trt.__name__}` here is {trt.__version__}, not {spec.label}"
    if trt is None or not is_rtx(trt):
        trt = require_trt("tensorrt_rtx_bindings")
        if target_of(trt) == target:  # --backend named a missing module: the target's own
            return BuildPlan(target, trt.__name__, True)
    return BuildPlan(target, trt.__name__, True,
                     f"{why}; {trt.__name__} {trt.__version__} built in its place, strongly "
                     "typed like every TensorRT-RTX network")  # fmt: skip


def _refuse_fp16(plan: BuildPlan) -> None:
    """BuildError for --fp16 where the network is strongly typed (no FP16 builder flag)."""
    from surgery.ops.targets import TARGETS

    who = TARGETS[plan.target].label if plan.target else plan.module
    if plan.stand_in:
        who = f"{plan.module}, standing in for {who},"
    raise BuildError(
        f"--fp16: {who} builds strongly typed networks, which have no FP16 builder flag: "
        "precision is the ONNX model's own tensor types. Export the model in float16 (or with "
        "Cast nodes where float16 is wanted) and build without --fp16"
    )


def _register_stand_ins(trt: Any, model: Any) -> list[str]:
    """For each plugin node naming a target library's creator that is not registered (TensorRT
    11's CropAndResizeDynamic v2 on a stand-in build), surgery's creator of that catalog plugin
    under the node's name and version; the "name vN" registered. Such creators build only:
    surgery's kernels go by the catalog's name."""
    from dataclasses import replace

    from plugins.trt.creators import make_creator
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import resolve_creator

    catalog = load_catalog()
    registry = trt.get_plugin_registry()
    done: list[str] = []
    for node in plugin_nodes(model):
        name, version, space = plugin_key(node)
        schema = resolve_creator(catalog, name, version)
        if schema is None or registry.get_creator(name, version, space) is not None:
            continue
        creator = make_creator(trt, replace(schema, name=name, version=version, namespace=space))
        if registry.register_creator(creator, space):
            _STAND_INS.append(creator)  # the registry holds a raw pointer: keep it alive
            done.append(f"{name} v{version}")
    return done


_STAND_INS: list[Any] = []  # creators registered by _register_stand_ins, alive with the process


def _target_notes(model: Any, target: str) -> list[str]:
    """Plugin nodes whose creator name/version is not the one `target` expects (exported for
    another target): they build with surgery's creator instead of the target's library's."""
    from surgery.ops.plugin_schema import load_catalog
    from surgery.ops.targets import export_creator, resolve_creator

    catalog = load_catalog()
    notes = []
    for node in plugin_nodes(model):
        name, version, _ = plugin_key(node)
        schema = resolve_creator(catalog, name, version)
        if schema is None:
            continue
        wanted = export_creator(schema, target)
        if (name, version) != wanted:
            notes.append(f"ONNX node {node.name!r}: {name} version {version} is not what "
                         f"{target} has ({wanted[0]} version {wanted[1]}): surgery's plugin "
                         f"builds in its place; `surgery export --target {target}` writes "
                         "the target's")  # fmt: skip
    return notes


# --------------------------------------------------------------------------- building
def register_plugins(trt: Any, logger: Any, names: Sequence[str] | None) -> list[str]:
    """TensorRT's own plugin library where present, then ours for `names`."""
    init = getattr(trt, "init_libnvinfer_plugins", None)
    if init is not None:
        try:
            init(logger, "")
        except Exception:  # TensorRT-RTX has no plugin library: nothing to register
            pass
    from plugins import trt as our_plugins

    return our_plugins.register(trt, list(names) if names is not None else None)


_LOGGERS: list[Any] = []  # every logger handed to TensorRT, alive until the process ends


def kept(logger: Any) -> Any:
    """`logger`, kept alive for the rest of the process. TensorRT keeps a raw pointer to the
    last logger a builder or the plugin library was given and logs through it later (a plugin
    registry lookup that finds nothing, say): once the Python object is freed, that crashes."""
    _LOGGERS.append(logger)
    return logger


def _logger(trt: Any, verbose: bool) -> Any:
    """A TensorRT logger that keeps errors (and prints warnings when verbose)."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(msg)
            elif verbose and severity == trt.ILogger.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return kept(Logger())


def _monitor(trt: Any, report: Callable[[str], None]) -> Any:
    """An IProgressMonitor that reports top-level build phases with elapsed time."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.start = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: Any, num_steps: int) -> None:
            if parent_phase is None:
                elapsed = time.perf_counter() - self.start
                report(f"[{elapsed:6.1f} s] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            pass

    return Monitor()


def _parser_errors(parser: Any) -> str:
    """Parser errors, each naming its ONNX node."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = f"ONNX node {node!r} ({op})" if node else f"ONNX node #{err.node()}"
        lines.append(f"{where}: {err.desc()}")
    return "\n  ".join(lines) or "unknown parser error"


def _profile(trt: Any, builder: Any, network: Any, shapes: Mapping[str, Sequence[int]]) -> Any:
    """One optimization profile: given shapes, else dynamic dims set to 1."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = shapes.get(tensor.name) or shapes.get(tensor.name.split(":")[0])
        dims = list(dims) if dims else [1 if d < 0 else d for d in tensor.shape]
        if len(dims) != len(tensor.shape):
            raise BuildError(f"input {tensor.name!r} has rank {len(tensor.shape)}; got {dims}")
        profile.set_shape(tensor.name, dims, dims, dims)
    return profile


def _build_here(
    onnx_path: str, engine_path: str, *, fp16: bool, plugins: list[str] | None,
    shapes: Mapping[str, Sequence[int]], backend: str | None, verbose: bool, progress: bool,
    target: str | None = None, strongly_typed: bool = False, stand_in: str = "",
) -> BuildResult:  # fmt: skip
    """Parse, build and serialize in this process (strongly typed where the plan says)."""
    from surgery.ir import model_io

    start = time.perf_counter()
    trt = require_trt(backend)
    model = read_onnx(onnx_path)
    used = check_plugin_nodes(model)
    logger = _logger(trt, verbose)
    registered = register_plugins(trt, logger, plugins if plugins is not None else used)
    stand_ins = _register_stand_ins(trt, model)
    registry = trt.get_plugin_registry()
    for node in plugin_nodes(model):
        if registry.get_creator(*plugin_key(node)) is None:
            name, version, space = plugin_key(node)
            raise BuildError(
                f"ONNX node {node.name!r}: no plugin creator {name!r} (version {version!r}, "
                f"namespace {space!r}) is registered with {trt.__name__}"
            )
    builder = trt.Builder(logger)
    typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = 0
    if strongly_typed:
        if typed_flag is None:
            raise BuildError(f"{trt.__name__} {trt.__version__} cannot build strongly typed "
                             "networks")  # fmt: skip
        flags = 1 << int(typed_flag)
    network = builder.create_network(flags)
    strong = bool(typed_flag is not None and network.get_flag(typed_flag))
    parser = trt.OnnxParser(network, logger)
    try:
        if not parser.parse_from_file(str(onnx_path)):
            raise BuildError(f"{onnx_path}: the ONNX parser failed:\n  {_parser_errors(parser)}")
        config = builder.create_builder_config()
        if fp16:
            flag = getattr(trt.BuilderFlag, "FP16", None)
            if flag is None:
                raise BuildError(
                    f"--fp16: {trt.__name__} builds strongly typed networks and has no FP16 flag; "
                    "export the model in float16 instead"
                )
            config.set_flag(flag)
        if network.num_inputs:
            config.add_optimization_profile(_profile(trt, builder, network, shapes))
        if progress and hasattr(config, "progress_monitor"):
            config.progress_monitor = _monitor(trt, lambda line: print(line, file=sys.stderr))
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            detail = "\n  ".join(logger.errors[-5:]) or "no details from TensorRT"
            raise BuildError(f"TensorRT could not build the engine:\n  {detail}")
        data = bytes(serialized)
        model_io.write_atomic(engine_path, data)
        layers: dict[str, int] = {}
        plugin_layers = []
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            kind = layer.type.name
            layers[kind] = layers.get(kind, 0) + 1
            if kind.startswith("PLUGIN"):
                plugin_layers.append(layer.name)
        inputs = [network.get_input(i).name for i in range(network.num_inputs)]
        outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    finally:
        del parser, network  # TensorRT needs the builder to outlive the network
    return BuildResult(
        path=str(engine_path),
        backend=trt.__name__,
        version=trt.__version__,
        seconds=time.perf_counter() - start,
        size=len(data),
        layers=layers,
        plugin_layers=plugin_layers,
        registered=registered,
        inputs=inputs,
        outputs=outputs,
        target=target,
        strongly_typed=strong,
        stand_in=stand_in,
        stand_in_creators=stand_ins,
        notes=_target_notes(model, target) if target else [],
    )


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    *,
    fp16: bool = False,
    plugins: Sequence[str] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    backend: str | None = None,
    verbose: bool = False,
    progress: bool = False,
    target: str | None = None,
) -> BuildResult:
    """Build an engine from `onnx_path` into `engine_path` (atomically); BuildError on failure.
    `target` (surgery.ops.targets): the TensorRT to build for (None: the one installed)."""
    from surgery.ir import model_io

    out = model_io.check_output_path(engine_path, onnx_path)
    plan = plan_build(target, backend)
    if fp16 and plan.strongly_typed:
        _refuse_fp16(plan)
    trt = require_trt(plan.module)
    model = read_onnx(onnx_path)
    kwargs = {
        "fp16": fp16, "plugins": list(plugins) if plugins is not None else None,
        "shapes": {k: list(v) for k, v in (shapes or {}).items()}, "backend": trt.__name__,
        "verbose": verbose, "progress": progress, "target": plan.target,
        "strongly_typed": plan.strongly_typed, "stand_in": plan.stand_in,
    }  # fmt: skip
    if is_rtx(trt) and plugin_nodes(model):
        in_process, lib_dir = rtx_library_fix()
        if not in_process:
            return _build_in_child(str(onnx_path), str(out), kwargs, lib_dir)
    return _build_here(str(onnx_path), str(out), **kwargs)


def run_child(module: str, request: dict, env: dict[str, str]) -> tuple[int, dict]:
    """Run `python -m module` with this checkout on PYTHONPATH and `request` as JSON on stdin
    (TensorRT work that may crash the process); (exit status, its last stdout line as JSON, or
    {} when there is none)."""
    env = dict(env)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", module], input=json.dumps(request), env=env,
        stdout=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    return proc.returncode, reply if isinstance(reply, dict) else {}


def _build_in_child(onnx_path: str, engine_path: str, kwargs: dict, lib_dir: Any) -> BuildResult:
    """Run `_build_here` in a child whose LD_LIBRARY_PATH holds `libtensorrt_rtx.so`."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH", "")) if p
    )
    request = {"onnx": onnx_path, "engine": engine_path, "kwargs": kwargs}
    code, reply = run_child("surgery.backends.trt_backend", request, env)
    if "error" in reply:
        raise BuildError(reply["error"])
    if code != 0 or "result" not in reply:
        raise BuildError(f"the TensorRT build process died (exit status {code})")
    result = BuildResult(**reply["result"])
    result.isolated = True
    return result


def _child_main() -> int:
    """Child-process entry: read a JSON request on stdin, answer one JSON line on stdout."""
    request = json.loads(sys.stdin.read())
    try:
        result = _build_here(request["onnx"], request["engine"], **request["kwargs"])
    except SurgeryError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({"result": asdict(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
