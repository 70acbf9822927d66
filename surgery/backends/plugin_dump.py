"""Plugin dumps: the arrays every plugin node of a validated graph received and produced.

`surgery validate ORIGINAL REWRITTEN --dump DIR` writes, for each plugin node it ran by its
NumPy reference, one `.npz` holding the exact inputs the reference was given (`in0`..`inK`, in
the plugin's layout: the graph's own tensors, NCHW where the rewrite made them so) and the
outputs it produced (`out0`..`outM`), and `DIR/manifest.json`:

    {"format": "surgery-plugin-dump/1", "model": <rewritten file name>,
     "model_sha256": <sha256 of its bytes>,
     "plugins": [{"node": ..., "op": <plugin creator>, "fields": {<name>: <value>},
                  "file": <npz name>, "inputs": [{"key": "in0", "shape": [...],
                  "dtype": "float32"}, ...], "outputs": [{"key": "out0", ...}, ...]}]}

A GPU checker replays each file through the plugin's kernel and compares with the outputs. It
may run where TensorFlow is not installed: this module needs numpy and the standard library
only (`load_dump` reads the arrays' headers to check the manifest, not the arrays).

A dump is written into a temporary directory beside DIR and renamed into place; a DIR that holds
anything but a previous dump is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from surgery.errors import SurgeryError
from surgery.ir.atomic_files import current_umask

FORMAT = "surgery-plugin-dump/1"
MANIFEST = "manifest.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_CHARS = 80  # of the node name kept in a file name
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0,
}  # fmt: skip


class DumpError(SurgeryError):
    """A dump directory that cannot be written, or read back as a dump."""


@dataclass(frozen=True)
class TensorInfo:
    """One array of a dump entry as the manifest describes it."""

    key: str
    shape: tuple[int, ...]
    dtype: str

    def as_json(self) -> dict[str, Any]:
        """The manifest's form."""
        return {"key": self.key, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class DumpEntry:
    """One plugin node of a dump: what ran, with which fields, and where its arrays are."""

    node: str
    op: str
    fields: dict[str, Any]
    file: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    path: Path = field(compare=False)  # the npz

    def load(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(inputs, outputs) as saved, in slot order."""
        with np.load(self.path, allow_pickle=False) as archive:
            return (
                [archive[t.key] for t in self.inputs],
                [archive[t.key] for t in self.outputs],
            )


@dataclass(frozen=True)
class Dump:
    """A dump directory read back: the model it came from and its plugin entries, in the order
    validate ran them."""

    directory: Path
    model: str
    model_sha256: str
    plugins: tuple[DumpEntry, ...]


# --------------------------------------------------------------------------- writing
class DumpWriter:
    """Writes a dump of `model` (the rewritten graph's file) into `directory`, atomically.

    The arrays go to a temporary directory beside `directory` as each plugin runs (`add`);
    `commit` writes the manifest and renames the temporary directory into place, replacing a
    previous dump there. Used as a context manager, it commits on success and removes the
    temporary directory on an error. The target is checked when the writer is made, before
    any work: a file, or a directory holding anything but a previous dump, is refused."""

    def __init__(self, directory: str | os.PathLike, model: str | os.PathLike):
        self.directory = Path(directory)
        _check_target(self.directory)
        self.model = Path(model)
        self.model_sha256 = _sha256(self.model)
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = Path(tempfile.mkdtemp(
            prefix=f".{self.directory.name}.", suffix=".tmp", dir=self.directory.parent
        ))  # fmt: skip
        self._tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; give what mkdir would
        self._entries: list[dict[str, Any]] = []

    def add(
        self, node: str, op: str, fields: Mapping[str, Any],
        inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
    ) -> None:  # fmt: skip
        """Save one plugin node's inputs and outputs (as given) and note it for the manifest.
        `fields`: the plugin's field values, JSON-representable."""
        if self._tmp is None:
            raise DumpError(f"{self.directory}: the dump was already committed or discarded")
        name = f"{len(self._entries):03d}_{_safe(node)}.npz"
        arrays = {f"in{i}": np.asarray(x) for i, x in enumerate(inputs)}
        arrays.update({f"out{i}": np.asarray(y) for i, y in enumerate(outputs)})
        # the stubs type **kwds as if a key could be savez's allow_pickle
        np.savez(self._tmp / name, **arrays)  # type: ignore[arg-type]
        self._entries.append({
            "node": node, "op": op, "fields": _json_fields(node, fields), "file": name,
            "inputs": [_info(k, v).as_json() for k, v in arrays.items() if k.startswith("in")],
            "outputs": [_info(k, v).as_json() for k, v in arrays.items() if k.startswith("out")],
        })  # fmt: skip

    def commit(self) -> Path:
        """Write the manifest and move the dump into place; the directory."""
        if self._tmp is None:
            raise DumpError(f"{self.directory}: the dump was already committed or discarded")
        manifest = {"format": FORMAT, "model": self.model.name,
                    "model_sha256": self.model_sha256, "plugins": self._entries}  # fmt: skip
        (self._tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
        _check_target(self.directory)  # it may have changed while validate ran
        old = None
        if self.directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.directory.name}.", suffix=".old",
                                        dir=self.directory.parent))  # fmt: skip
            os.replace(self.directory, old / "dump")
        os.replace(self._tmp, self.directory)
        self._tmp = None
        if old is not None:
            shutil.rmtree(old)
        return self.directory

    def discard(self) -> None:
        """Remove what was written (idempotent)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def _check_target(directory: Path) -> None:
    """DumpError unless `directory` is missing, empty, or a previous dump."""
    if directory.is_file() or (directory.exists() and not directory.is_dir()):
        raise DumpError(f"{directory}: not a directory; --dump needs a directory")
    if not directory.is_dir():
        return
    names = {entry.name for entry in directory.iterdir()}
    if not names:
        return
    others = sorted(n for n in names if n != MANIFEST and not n.endswith(".npz"))
    if MANIFEST not in names or others or _format_of(directory / MANIFEST) != FORMAT:
        shown = ", ".join(others[:3] or sorted(names)[:3])
        raise DumpError(
            f"{directory}: not empty and not a previous plugin dump (holds {shown}); "
            "choose another --dump directory or empty this one"
        )


def _format_of(path: Path) -> Any:
    """The `format` of a manifest, or None if it is no readable JSON object."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("format") if isinstance(doc, dict) else None


def _sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DumpError(f"{path}: cannot read the model to hash it ({exc.strerror})") from None
    return digest.hexdigest()


def _safe(node: str) -> str:
    """A node name as a file-name part: runs of other characters than letters, digits, `.`,
    `_` and `-` become `_`, at most _NAME_CHARS characters."""
    return _UNSAFE.sub("_", node).strip("._")[:_NAME_CHARS] or "node"


def _json_fields(node: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with NumPy scalars and arrays as JSON numbers and lists; DumpError for a value
    JSON cannot hold."""
    out = {}
    for name, value in fields.items():
        plain = value.tolist() if isinstance(value, np.ndarray | np.generic) else value
        try:
            json.dumps(plain, allow_nan=False)
        except (TypeError, ValueError):
            raise DumpError(
                f"plugin node {node!r}: field {name!r} holds {value!r}, which JSON cannot hold"
            ) from None
        out[name] = plain
    return out


def _info(key: str, value: np.ndarray) -> TensorInfo:
    return TensorInfo(key, tuple(int(d) for d in value.shape), value.dtype.name)


# --------------------------------------------------------------------------- reading
def load_dump(directory: str | os.PathLike) -> Dump:
    """Read and check a dump directory: DumpError naming the file and the entry for a missing
    manifest or npz, another format version, a malformed entry, or an array whose shape or
    dtype is not what the manifest says (read from the npz's headers, not the arrays)."""
    root = Path(directory)
    manifest_path = root / MANIFEST
    try:
        doc = json.loads(manifest_path.read_text("utf-8"))
    except FileNotFoundError:
        raise DumpError(f"{manifest_path}: no such file; {root} is no plugin dump") from None
    except (OSError, ValueError) as exc:
        raise DumpError(f"{manifest_path}: not a JSON manifest ({exc})") from None
    if not isinstance(doc, dict):
        raise DumpError(f"{manifest_path}: expected a JSON object")
    if doc.get("format") != FORMAT:
        raise DumpError(
            f"{manifest_path}: format {doc.get('format')!r}; this reader takes {FORMAT!r}"
        )
    model, digest, plugins = doc.get("model"), doc.get("model_sha256"), doc.get("plugins")
    if not isinstance(model, str) or not isinstance(digest, str) or not isinstance(plugins, list):
        raise DumpError(
            f"{manifest_path}: needs 'model' and 'model_sha256' (strings) and 'plugins' (a list)"
        )
    entries = tuple(_entry(root, manifest_path, i, raw) for i, raw in enumerate(plugins))
    return Dump(root, model, digest, entries)


def _entry(root: Path, manifest: Path, index: int, raw: Any) -> DumpEntry:
    """One manifest entry, checked against its npz."""
    where = f"{manifest}: plugins[{index}]"
    if not isinstance(raw, dict):
        raise DumpError(f"{where}: expected a JSON object")
    where = f"{where} ({raw.get('node', '?')})"
    try:
        node, op, fields, file = raw["node"], raw["op"], raw["fields"], raw["file"]
        inputs = tuple(_tensor_info(t) for t in raw["inputs"])
        outputs = tuple(_tensor_info(t) for t in raw["outputs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DumpError(
            f"{where}: malformed entry ({exc}); needs node, op, fields, file, inputs, outputs"
        ) from None
    if not (isinstance(node, str) and isinstance(op, str) and isinstance(fields, dict)
            and isinstance(file, str)):  # fmt: skip
        raise DumpError(f"{where}: node, op and file must be strings and fields an object")
    if Path(file).name != file:
        raise DumpError(f"{where}: file {file!r} must be a name inside {root}")
    path = root / file
    headers = _npz_headers(path, where)
    for info in (*inputs, *outputs):
        found = headers.get(info.key)
        if found is None:
            raise DumpError(f"{where}: {file} has no array {info.key!r}")
        if found != (info.shape, info.dtype):
            raise DumpError(
                f"{where}: {file}[{info.key}] is {found[1]} {list(found[0])}; the manifest "
                f"says {info.dtype} {list(info.shape)}"
            )
    return DumpEntry(node, op, fields, file, inputs, outputs, path)


def _tensor_info(raw: Any) -> TensorInfo:
    """A manifest tensor description; KeyError/TypeError/ValueError when malformed."""
    shape = tuple(int(d) for d in raw["shape"])
    dtype = np.dtype(raw["dtype"]).name
    return TensorInfo(str(raw["key"]), shape, dtype)


def _npz_headers(path: Path, where: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape, dtype) from an npz's `.npy` headers, without reading the data."""
    found = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as member:
                    version = npy_format.read_magic(member)
                    if version not in _HEADER_READERS:
                        raise ValueError(f"{name}: .npy format version {version}")
                    shape, _, dtype = _HEADER_READERS[version](member)
                found[name[: -len(".npy")]] = (tuple(int(d) for d in shape), dtype.name)
    except FileNotFoundError:
        raise DumpError(f"{where}: {path} is missing") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DumpError(f"{where}: {path} is no readable npz ({exc})") from None
    return found
