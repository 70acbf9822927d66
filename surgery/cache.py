"""A cache of results that take long to compute and little room to keep, so that running a
command again on the same files skips the slow part.

Two kinds of entries: parsed rule files (`load_rules`: importing pyparsing, building the
grammar and parsing `rules/maskrcnn.rules` takes ~0.4 s, unpickling its syntax tree ~10 ms), and
the edits a step that consults TensorFlow made to a graph (`edit_graph`: `--input` folding and
shape inference import the graph into TensorFlow, seconds; replaying their edits, milliseconds).

An entry is found by the SHA-256 of everything its result depends on: the input's content (the
rule text and path, the graph's bytes), the step's parameters, and `code_version()` (surgery's
own sources), so an edited or upgraded surgery never reads an entry an older one wrote. Entries
live in $SURGERY_CACHE_DIR, else $XDG_CACHE_HOME/surgery, else ~/.cache/surgery; each is written
to a temporary file and renamed into place (concurrent commands never read half an entry) and
carries a checksum of its payload. A cache that cannot be read or written only costs time, so
every failure there falls back to computing; SURGERY_CACHE=off turns the cache off.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from surgery.ir.graph import Graph
    from surgery.lang.rule_ast import RuleFile

MAX_ENTRIES = 256  # per kind; the oldest go first when a new entry would pass it
_MAGIC = b"surgery-cache 1\n"
_T = TypeVar("_T")


def directory() -> Path | None:
    """Where entries live, or None when SURGERY_CACHE=off."""
    if os.environ.get("SURGERY_CACHE", "").strip().lower() in ("off", "0", "no", "false"):
        return None
    explicit = os.environ.get("SURGERY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "surgery"


@functools.cache
def code_version() -> str:
    """SHA-256 of surgery's Python sources (every module, by path) and the interpreter's cache
    tag: part of every key, so an edit anywhere in surgery, or another Python, starts afresh."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{sys.implementation.cache_tag}\n".encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key(kind: str, parts: Iterable[str | bytes]) -> str:
    """The key of a `kind` entry whose result depends on `parts` (and on surgery's code)."""
    digest = hashlib.sha256(f"{kind}\0{code_version()}\0".encode())
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(f"{len(data)}\0".encode())  # length-prefixed: parts never run together
        digest.update(data)
    return digest.hexdigest()


def _entry_path(kind: str, entry_key: str) -> Path | None:
    root = directory()
    return None if root is None else root / kind / f"{entry_key}.pickle"


def load(kind: str, entry_key: str) -> Any | None:
    """The value stored under `entry_key`, or None: absent, unreadable, damaged (checksum), or
    not written by this user (a pickle is only ever read from one's own files)."""
    path = _entry_path(kind, entry_key)
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            if hasattr(os, "getuid") and os.fstat(handle.fileno()).st_uid != os.getuid():
                return None
            data = handle.read()
    except OSError:
        return None
    head = len(_MAGIC) + 64
    if not data.startswith(_MAGIC) or len(data) < head:
        return None
    payload = data[head:]
    if hashlib.sha256(payload).hexdigest().encode() != data[len(_MAGIC) : head]:
        return None
    try:
        return pickle.loads(payload)
    except Exception:  # an entry of classes since changed: recomputed like a missing one
        return None


def store(kind: str, entry_key: str, value: Any) -> None:
    """Keep `value` under `entry_key` (atomically; nothing happens where that fails)."""
    path = _entry_path(kind, entry_key)
    if path is None:
        return
    try:
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # not picklable: not kept
        return
    data = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + payload
    try:
        for folder in (path.parent.parent, path.parent):  # private: entries are pickles
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(path.parent)
    except OSError:
        return


def _prune(folder: Path) -> None:
    """Drop the least recently written entries beyond MAX_ENTRIES."""
    entries = list(folder.glob("*.pickle"))
    if len(entries) <= MAX_ENTRIES:
        return
    aged = sorted(entries, key=lambda p: p.stat().st_mtime_ns)
    for old in aged[: len(entries) - MAX_ENTRIES]:
        old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- rule files
def load_rules(path: str | Path) -> RuleFile:
    """`surgery.lang.rule_parser.load_rules`, through the cache: the same text at the same path
    (locations name it) parsed by the same surgery is unpickled, and pyparsing not imported."""
    from surgery.lang.rule_ast import RuleFile

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    if text is None or directory() is None:  # the parser's own load says what went wrong
        from surgery.lang.rule_parser import load_rules as parse_file

        return parse_file(path)
    entry_key = key("rules", (str(path), text))
    found = load("rules", entry_key)
    if isinstance(found, RuleFile):
        return found
    from surgery.lang.rule_parser import parse_rules

    rule_file = parse_rules(text, str(path))  # a syntax error raises: nothing is stored
    store("rules", entry_key, rule_file)
    return rule_file


# --------------------------------------------------------------------------- graph edits
@dataclass(frozen=True)
class GraphEdits:
    """What a step did to a graph, enough to do it again: per changed node its NodeDef with
    only the attrs that changed (serialized) and the attrs it lost; the nodes removed."""

    patches: tuple[tuple[bytes, tuple[str, ...]], ...]
    removed: tuple[str, ...]


class SourceDigest:
    """The SHA-256 of a model file, hashed in a thread from the moment it is made, so that the
    60 ms a 100 MB file takes overlap with the command's own work (hashlib and file reads
    release the GIL). `edit_graph` keys by it instead of serialising and hashing the loaded
    graph; it stands for the graph only while the file is unchanged, so `result` answers None
    unless the file's inode, size and change and modify times are the same when asked as
    around the hashing.

    A file hashed before is not read again: the digest is kept under the file's identity
    (device, inode, size, modify and change times, as git's index and ccache do), but only
    once both times are SETTLE_NS older than the hashing began. Any later write sets the
    change time (which no program can set back) to a later tick, so a kept identity never
    stands for other bytes; a write in the same clock tick as the hashing could, hence the
    margin."""

    SETTLE_NS = 2_000_000_000

    def __init__(self, path: str | os.PathLike):
        self._path = path
        self._found: tuple[tuple[int, ...], str] | None = None
        self._thread: threading.Thread | None = None
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return
        kept = load("digests", key("digest", map(str, identity)))
        if isinstance(kept, str):
            self._found = (identity, kept)
            return
        self._thread = threading.Thread(target=self._hash, daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        started = time.time_ns()
        try:
            with open(self._path, "rb") as handle:
                before = _identity(os.fstat(handle.fileno()))
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
                if _identity(os.fstat(handle.fileno())) != before:
                    return
        except OSError:
            return
        self._found = (before, digest)
        if max(before[3], before[4]) < started - self.SETTLE_NS:
            store("digests", key("digest", map(str, before)), digest)

    def result(self) -> str | None:
        """The file's digest, or None: unreadable, or changed since (or while) it was hashed."""
        if self._thread is not None:
            self._thread.join()
        if self._found is None:
            return None
        before, digest = self._found
        try:
            now = _identity(os.stat(self._path))
        except OSError:
            return None
        return digest if now == before else None


def _identity(found: os.stat_result) -> tuple[int, ...]:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def edit_graph(
    graph: Graph, params: Iterable[str], edit: Callable[[], _T],
    source: SourceDigest | None = None,
) -> tuple[bool, _T]:  # fmt: skip
    """Run `edit`, which changes `graph` in place and returns a picklable value, unless the same
    graph was edited with the same `params` before: then make the same edits again without
    running it. Returns (replayed, the value `edit` returned). The graph is known by the
    digest of its bytes, or by `source`: the file it was loaded from, unedited since.

    An entry is kept only when replaying it on a copy of the graph as it was gives the very
    bytes `edit` left; edits that are not node patches and removals (added nodes, reordered
    nodes, header changes) are therefore never cached, only recomputed."""
    if directory() is None:
        return False, edit()
    digest = source.result() if source is not None else None
    known_by = (
        f"file {digest}" if digest is not None
        else f"graph {hashlib.sha256(graph.serialize()).hexdigest()}"
    )  # fmt: skip
    entry_key = key("graph-edits", (known_by, *params))
    found = load("graph-edits", entry_key)
    if found is not None:
        edits, value = found
        replay(graph, edits)
        return True, value
    before = graph.copy()
    value = edit()
    edits = diff(before, graph)
    if edits is not None:
        replay(before, edits)
        if before.serialize() == graph.serialize():
            store("graph-edits", entry_key, (edits, value))
    return False, value


def diff(before: Graph, after: Graph) -> GraphEdits | None:
    """The edits that turn `before` into `after`, or None when they are more than node patches
    and removals."""
    from surgery.ir.protos import NodeDef

    kept = [name for name in before.names if name in after]
    if kept != after.names:  # a node added, or the order changed
        return None
    patches = []
    for name in kept:
        old, new = before.node(name).proto, after.node(name).proto
        if old == new:
            continue
        patch = NodeDef(name=name, op=new.op, input=new.input, device=new.device)
        for attr, value in new.attr.items():
            if attr not in old.attr or old.attr[attr] != value:
                patch.attr[attr].CopyFrom(value)
        lost = tuple(attr for attr in old.attr if attr not in new.attr)
        patches.append((patch.SerializeToString(deterministic=True), lost))
    removed = tuple(name for name in before.names if name not in after)
    return GraphEdits(tuple(patches), removed)


def replay(graph: Graph, edits: GraphEdits) -> None:
    """Make `edits` on `graph` in place."""
    from surgery.ir.protos import NodeDef

    for data, lost in edits.patches:
        patch = NodeDef.FromString(data)
        node = graph.node(patch.name)
        if node.op != patch.op:
            graph.set_op(patch.name, patch.op)
        if list(node.proto.input) != list(patch.input):
            controls = [text[1:] for text in patch.input if text.startswith("^")]
            data_inputs = [text for text in patch.input if not text.startswith("^")]
            graph.set_inputs(patch.name, data_inputs, controls)
        node.proto.device = patch.device
        attrs = node.attr
        for attr in lost:
            del attrs[attr]
        for attr, value in patch.attr.items():
            attrs[attr].CopyFrom(value)
    if edits.removed:
        graph.remove_nodes(edits.removed)


def package_identity(package: str, *files: str) -> str:
    """Which `package` is installed, told without importing it (TensorFlow takes seconds): its
    folder and the size and time of its `files` (globs), which any reinstall changes."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return f"no {package}"
    root = Path(spec.origin).parent
    parts = [str(root)]
    for pattern in files:
        for path in sorted(root.glob(pattern)):
            found = path.stat()
            parts.append(f"{path.name}:{found.st_size}:{found.st_mtime_ns}")
    return "|".join(parts)


def tensorflow_identity() -> str:
    """`package_identity` of TensorFlow: its `__init__.py` and framework libraries."""
    return package_identity(
        "tensorflow", "__init__.py", "libtensorflow_framework.so.2", "libtensorflow_cc.so.2"
    )
