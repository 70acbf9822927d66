"""Load `.pb`/`.pbtxt` GraphDefs into the IR and save them deterministically and atomically."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import message, text_format
from google.protobuf.unknown_fields import UnknownFieldSet

from surgery.errors import ModelLoadError, OutputPathError
from surgery.ir.atomic_files import write_atomic
from surgery.ir.graph import Graph
from surgery.ir.protos import GraphDef

TEXT_SUFFIXES = (".pbtxt", ".pbtext", ".prototxt")
ONNX_SUFFIX = ".onnx"


def is_text_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(TEXT_SUFFIXES)


def read_graph_def(path: str | os.PathLike) -> GraphDef:
    """Parse a GraphDef file; every failure is a ModelLoadError naming the file."""
    p = Path(path)
    if p.is_dir():
        hint = (
            " (it looks like a SavedModel: run `surgery freeze` first)"
            if (p / "saved_model.pb").exists()
            else ""
        )
        raise ModelLoadError(f"{p}: is a directory, not a GraphDef file{hint}")
    if not is_text_path(p):
        return _read_binary(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{p}: no such file") from None
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read ({exc.strerror})") from None
    if not data:  # it would parse as a GraphDef without nodes
        raise ModelLoadError(f"{p}: empty file (0 bytes), not a GraphDef")
    graph_def = GraphDef()
    try:
        text_format.Parse(data.decode("utf-8"), graph_def)
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{p}: not a text GraphDef (byte {exc.start} is not UTF-8)") from None
    except text_format.ParseError as exc:
        line, col = exc.GetLine(), exc.GetColumn()
        where = f"{p}:{line}:{col}" if line is not None else str(p)
        detail = str(exc).split(" : ", 1)[-1]
        raise ModelLoadError(f"{where}: .pbtxt syntax error: {detail}") from None
    if not graph_def.ByteSize():  # comments only: it would save as an empty file
        raise ModelLoadError(f"{p}: no graph in it (only blanks and comments)")
    return graph_def


def _read_binary(p: Path) -> GraphDef:
    """Parse a binary GraphDef straight from the page cache (mmap): no copy of the file in a
    fresh buffer, whose first-touch page faults cost as much as the parse on a large model."""
    try:
        with open(p, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not size:  # it would parse as a GraphDef without nodes
                raise ModelLoadError(f"{p}: empty file (0 bytes), not a GraphDef")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                graph_def = GraphDef()
                view = memoryview(mapped)
                try:
                    graph_def.ParseFromString(view)  # copies what it keeps
                except message.DecodeError:
                    raise ModelLoadError(
                        f"{p}: not a binary GraphDef (truncated or corrupt protobuf, {size} bytes)"
                    ) from None
                finally:
                    view.release()
    except FileNotFoundError:
        raise ModelLoadError(f"{p}: no such file") from None
    except OSError as exc:
        raise ModelLoadError(f"{p}: cannot read ({exc.strerror})") from None
    _check_is_graph_def(p, size, graph_def)
    return graph_def


def _check_is_graph_def(path: Path, size: int, graph_def: GraphDef) -> None:
    """A protobuf of another type often parses as a GraphDef full of unknown fields; refuse it."""
    unknown = len(UnknownFieldSet(graph_def))
    nameless = next((i for i, n in enumerate(graph_def.node) if not n.name or not n.op), None)
    if size and (unknown or nameless is not None or not graph_def.node):
        hint = ""
        if path.name == "saved_model.pb":
            hint = " (this is a SavedModel: run `surgery freeze` on its directory)"
        why = (
            f"node #{nameless} has no name or op"
            if nameless is not None
            else f"{unknown} fields unknown to GraphDef"
            if unknown
            else "it has no nodes"
        )
        raise ModelLoadError(f"{path}: protobuf is not a GraphDef ({why}){hint}")


def is_onnx_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ONNX_SUFFIX)


def load(path: str | os.PathLike) -> Graph:
    """Read a `.pb`, `.pbtxt` or `.onnx` file into a Graph."""
    if is_onnx_path(path):
        from surgery.ir.onnx_io import load_onnx

        return load_onnx(path)
    graph_def = read_graph_def(path)
    try:
        return Graph(graph_def)
    except Exception as exc:  # duplicate names and the like
        raise ModelLoadError(f"{path}: {exc}") from None


def serialize(graph_def: GraphDef, text: bool) -> bytes:
    """Deterministic bytes: sorted map entries, so that load-then-save is byte-identical."""
    if text:
        return text_format.MessageToString(graph_def).encode("utf-8")
    return graph_def.SerializeToString(deterministic=True)


def check_output_path(output: str | os.PathLike, *inputs: str | os.PathLike) -> Path:
    """Refuse an output that is one of the inputs or sits in a missing directory."""
    out = Path(output)
    for item in inputs:
        src = Path(item)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            same = os.path.samefile(out, src)
        if same:
            raise OutputPathError(f"{out}: output would overwrite the input; choose another -o")
    if out.is_dir():
        raise OutputPathError(f"{out}: is a directory; -o needs a file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"{out}: directory {parent} does not exist")
    return out


def save(
    graph: Graph | GraphDef, path: str | os.PathLike, *, inputs: tuple = (),
    encoded: Any = None,
) -> Path:  # fmt: skip
    """Save as `.pbtxt` (by suffix), `.onnx` (a graph loaded from ONNX; `encoded` nodes, the
    plugin nodes, written as given: `surgery.backends.onnx_plugins.save_graph` encodes them) or
    binary `.pb`; `inputs` are paths the output must not hit."""
    from surgery.ir.onnx_io import is_onnx_graph  # light: onnx itself only when it is one

    if isinstance(graph, Graph) and is_onnx_graph(graph):
        if not is_onnx_path(path):
            raise OutputPathError(f"{path}: a model loaded from ONNX is saved as .onnx")
        from surgery.ir.onnx_io import save_onnx

        return save_onnx(graph, path, inputs=inputs, encoded=encoded)
    if is_onnx_path(path):
        raise OutputPathError(
            f"{path}: a TensorFlow graph is saved as .pb or .pbtxt (`surgery export` makes ONNX)"
        )
    out = check_output_path(path, *inputs)
    data: bytes | Iterable[bytes]
    if isinstance(graph, Graph) and not is_text_path(out):
        data = graph.serialize_chunks()
    else:
        graph_def = graph.to_graph_def() if isinstance(graph, Graph) else graph
        data = serialize(graph_def, is_text_path(out))
    write_atomic(out, data)
    return out
