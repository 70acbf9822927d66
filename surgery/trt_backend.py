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
    """Check custom nodes against the catalog; the creator names used (BuildError if wrong)."""
    from surgery.export.plugin_nodes import (
        PLUGIN_DOMAIN,
        PluginFieldError,
        check_onnx_plugin_node,
    )
    from surgery.plugin_schema import load_catalog

    catalog = load_catalog()
    used: list[str] = []
    for node in plugin_nodes(model):
        if node.op_type not in catalog:
            if node.domain == PLUGIN_DOMAIN:
                raise BuildError(
                    f"ONNX node {node.name!r}: plugin op {node.op_type!r} is not in the plugin "
                    "catalog (plugins/catalog/)"
                )
            continue  # someone else's custom op: left to the registry check
        try:
            check_onnx_plugin_node(node, catalog.get(node.op_type))
        except PluginFieldError as exc:
            raise BuildError(str(exc)) from None
        if node.op_type not in used:
            used.append(node.op_type)
    return used


def _plugin_key(node: Any) -> tuple[str, str, str]:
    """(creator name, version, namespace) the parser will look up for a custom node."""
    attrs = {a.name: a for a in node.attribute}
    version = attrs["plugin_version"].s.decode() if "plugin_version" in attrs else "1"
    space = attrs["plugin_namespace"].s.decode() if "plugin_namespace" in attrs else ""
    return node.op_type, version, space


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
) -> BuildResult:  # fmt: skip
    """Parse, build and serialize in this process."""
    from surgery import model_io

    start = time.perf_counter()
    trt = require_trt(backend)
    model = read_onnx(onnx_path)
    used = check_plugin_nodes(model)
    logger = _logger(trt, verbose)
    registered = register_plugins(trt, logger, plugins if plugins is not None else used)
    registry = trt.get_plugin_registry()
    for node in plugin_nodes(model):
        if registry.get_creator(*_plugin_key(node)) is None:
            name, version, space = _plugin_key(node)
            raise BuildError(
                f"ONNX node {node.name!r}: no plugin creator {name!r} (version {version!r}, "
                f"namespace {space!r}) is registered with {trt.__name__}"
            )
    builder = trt.Builder(logger)
    network = builder.create_network(0)
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
) -> BuildResult:
    """Build an engine from `onnx_path` into `engine_path` (atomically); BuildError on failure."""
    from surgery import model_io

    out = model_io.check_output_path(engine_path, onnx_path)
    trt = require_trt(backend)
    model = read_onnx(onnx_path)
    kwargs = {
        "fp16": fp16, "plugins": list(plugins) if plugins is not None else None,
        "shapes": {k: list(v) for k, v in (shapes or {}).items()}, "backend": trt.__name__,
        "verbose": verbose, "progress": progress,
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
    root = str(Path(__file__).resolve().parent.parent)
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
    code, reply = run_child("surgery.trt_backend", request, env)
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
