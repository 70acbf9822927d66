"""surgery.cache: parsed rule files and TensorFlow-made graph edits found again by content,
never when anything they depend on changed, and replayed to the very same bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_matcher import const, make_graph

from surgery import cache
from surgery.errors import RuleSyntaxError
from surgery.ir.graph import Graph
from surgery.lang.rule_parser import load_rules as parse_file

ROOT = Path(__file__).resolve().parents[1]
RULE = (
    "rule leaky:\n"
    "    match y = Maximum(x, m = Mul(x, a = Const()))\n"
    "    replace y with LeakyRelu(x) { alpha: float = a.value }\n"
)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty cache of its own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SURGERY_CACHE_DIR", str(folder))
    monkeypatch.delenv("SURGERY_CACHE", raising=False)
    return folder


def _entries(folder: Path, kind: str) -> list[Path]:
    return sorted((folder / kind).glob("*.pickle"))


# --------------------------------------------------------------------------- rule files
def test_a_rule_file_is_parsed_once_then_loaded_without_pyparsing(
    tmp_path: Path, cache_dir: Path
) -> None:
    rules = tmp_path / "leaky.rules"
    rules.write_text(RULE)
    first = cache.load_rules(rules)
    assert first == parse_file(rules)
    assert len(_entries(cache_dir, "rules")) == 1
    probe = (
        "import sys, pickle\n"
        "from surgery.cache import load_rules\n"
        f"rule_file = load_rules({str(rules)!r})\n"
        "assert 'pyparsing' not in sys.modules, 'parsed again'\n"
        "sys.stdout.buffer.write(pickle.dumps(rule_file))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          env=dict(os.environ), timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    import pickle

    assert pickle.loads(done.stdout) == first


def test_an_edited_rule_file_is_parsed_again(tmp_path: Path, cache_dir: Path) -> None:
    rules = tmp_path / "leaky.rules"
    rules.write_text(RULE)
    assert cache.load_rules(rules).rules[0].name == "leaky"
    rules.write_text(RULE.replace("rule leaky", "rule leaky2"))
    assert cache.load_rules(rules).rules[0].name == "leaky2"
    copy = tmp_path / "copy.rules"  # the same text elsewhere: its locations name the new path
    copy.write_text(RULE)
    assert cache.load_rules(copy).rules[0].loc.file == str(copy)
    assert len(_entries(cache_dir, "rules")) == 3


def test_syntax_errors_are_not_cached(tmp_path: Path, cache_dir: Path) -> None:
    rules = tmp_path / "bad.rules"
    rules.write_text("rule broken:\n    match y = \n")
    for _ in range(2):
        with pytest.raises(RuleSyntaxError, match="bad.rules:"):
            cache.load_rules(rules)
    assert not _entries(cache_dir, "rules")
    with pytest.raises(Exception, match="cannot read rule file"):
        cache.load_rules(tmp_path / "missing.rules")


def test_a_damaged_entry_is_recomputed(tmp_path: Path, cache_dir: Path) -> None:
    rules = tmp_path / "leaky.rules"
    rules.write_text(RULE)
    expected = cache.load_rules(rules)
    (entry,) = _entries(cache_dir, "rules")
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF  # the checksum no longer matches
    entry.write_bytes(bytes(data))
    assert cache.load("rules", entry.stem) is None
    assert cache.load_rules(rules) == expected
    assert cache.load("rules", entry.stem) == expected  # written again


def test_cache_off_writes_nothing(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SURGERY_CACHE", "off")
    rules = tmp_path / "leaky.rules"
    rules.write_text(RULE)
    assert cache.load_rules(rules) == parse_file(rules)
    graph = _graph()
    replayed, _ = cache.edit_graph(graph, ("t",), lambda: _edit(graph))
    assert not replayed
    assert not cache_dir.exists()


def test_entries_beyond_the_limit_are_pruned(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    for i in range(5):
        cache.store("things", f"{i:064x}", i)
    assert len(_entries(cache_dir, "things")) == 3


# --------------------------------------------------------------------------- graph edits
def _graph() -> Graph:
    return make_graph([
        ("x", "Placeholder", [], {"dtype": ("float32", "type")}),
        const("k", [2.0]), const("unused", [1.0, 2.0]),
        ("m", "Mul", ["x", "k", "^unused"], {"T": ("float32", "type")}),
        ("out", "Identity", ["m:0"], {"T": ("float32", "type")}),
    ])  # fmt: skip


def _edit(graph: Graph) -> dict[str, Any]:
    """Patches (op, inputs, attrs set and deleted, device) and a removal, like folding does."""
    graph.set_inputs("m", ["x", "k"], [])
    graph.remove_nodes(["unused"])
    graph.set_op("out", "Snapshot")
    graph.node("out").attr["_output_shapes"].list.shape.add().dim.add(size=4)
    del graph.node("m").attr["T"]
    graph.node("x").proto.device = "/device:CPU:0"
    return {"report": "edited"}


def test_edits_are_replayed_to_the_same_bytes(cache_dir: Path) -> None:
    computed = _graph()
    assert cache.edit_graph(computed, ("p",), lambda: _edit(computed)) == (
        False, {"report": "edited"},
    )  # fmt: skip
    replayed = _graph()
    ran: list[bool] = []
    result = cache.edit_graph(replayed, ("p",), lambda: ran.append(True) or {})
    assert result == (True, {"report": "edited"}) and not ran
    assert replayed.serialize() == computed.serialize()
    assert "unused" not in replayed
    # other parameters, or another graph, are another entry: computed, not replayed
    other = _graph()
    assert cache.edit_graph(other, ("q",), lambda: _edit(other))[0] is False
    changed = _graph()
    changed.node("k").attr["value"].tensor.float_val.append(3.0)
    assert cache.edit_graph(changed, ("p",), lambda: _edit(changed))[0] is False


def test_edits_that_add_nodes_are_not_cached(cache_dir: Path) -> None:
    def add(graph: Graph) -> None:
        graph.add_node("extra", "NoOp")

    for graph in (_graph(), _graph()):
        assert cache.edit_graph(graph, ("add",), lambda g=graph: add(g))[0] is False
        assert "extra" in graph
    assert not _entries(cache_dir, "graph-edits")


def test_a_source_digest_stands_for_the_file_only_while_unchanged(tmp_path: Path) -> None:
    model = tmp_path / "m.pb"
    model.write_bytes(_graph().serialize())
    digest = cache.SourceDigest(model)
    import hashlib

    assert digest.result() == hashlib.sha256(model.read_bytes()).hexdigest()
    later = cache.SourceDigest(model)
    if later._thread is not None:
        later._thread.join()
    model.write_bytes(_graph().serialize() + b"\n")
    assert later.result() is None
    assert cache.SourceDigest(tmp_path / "missing.pb").result() is None


def test_a_settled_file_is_hashed_once_and_again_after_any_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    monkeypatch.setattr(cache.SourceDigest, "SETTLE_NS", 0)  # no clock tick to wait for
    model = tmp_path / "m.pb"
    model.write_bytes(b"a" * 1000)
    first = cache.SourceDigest(model)
    assert first._thread is not None and first.result() == hashlib.sha256(b"a" * 1000).hexdigest()
    kept = cache.SourceDigest(model)
    assert kept._thread is None, "the kept digest of the unchanged file is used"
    assert kept.result() == first.result()
    time.sleep(0.05)  # past the file system's clock tick (at most 10 ms)
    model.write_bytes(b"b" * 1000)  # same size, new content: a later change time
    again = cache.SourceDigest(model)
    assert again._thread is not None
    assert again.result() == hashlib.sha256(b"b" * 1000).hexdigest()
    monkeypatch.setattr(cache.SourceDigest, "SETTLE_NS", 10**15)  # times too recent to keep
    model.write_bytes(b"c" * 1000)
    cache.SourceDigest(model).result()
    assert cache.SourceDigest(model)._thread is not None


# --------------------------------------------------------------------------- the commands
RESIZE_RULES = (
    'use plugins "trt-8.6"\n'
    "rule upsample_const:\n"
    "    match y = ResizeNearestNeighbor(x, s = Const())\n"
    "    where y.align_corners == false and len(s.value) == 2 and x.shape[3] == 4\n"
    "    replace y with ResizeNearest_TRT(x) { scale = s.value[0] / x.shape[1] }\n"
)
APPLY = """
import contextlib, io, json, sys
from surgery.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def _apply(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", APPLY, *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_apply_again_replays_folding_and_shapes_without_tensorflow(
    tmp_path: Path, cache_dir: Path
) -> None:
    pytest.importorskip("tensorflow")
    from test_input_shapes import _freeze

    from surgery.passes.freeze import import_tf_keras

    keras = import_tf_keras()
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(image)
    y = keras.layers.UpSampling2D(2, name="up")(x)
    model = _freeze(keras.Model(image, y), tmp_path / "up.pb")
    rules = tmp_path / "up.rules"
    rules.write_text(RESIZE_RULES)
    env = dict(os.environ)

    def run(out: str, **extra: str) -> dict[str, Any]:
        argv = ["apply", str(rules), str(model), "-o", str(tmp_path / out), "--input",
                "image=1,8,8,3", "--log", str(tmp_path / f"{out}.json")]  # fmt: skip
        return _apply(argv, {**env, **extra})

    first, again = run("a.pb"), run("b.pb")
    uncached = run("c.pb", SURGERY_CACHE="off")
    assert first["code"] == 0, first["err"]
    assert first["tensorflow"] and uncached["tensorflow"] and not again["tensorflow"]
    assert "upsample_const: 1 match applied" in first["out"]
    assert "folded 1 shape-arithmetic node" in first["out"]
    for run_result, name in ((again, "b.pb"), (uncached, "c.pb")):
        assert run_result["code"] == first["code"] == 0
        assert run_result["out"].replace(name, "a.pb") == first["out"]
        assert run_result["err"] == first["err"]
        assert (tmp_path / name).read_bytes() == (tmp_path / "a.pb").read_bytes()
        log = (tmp_path / f"{name}.json").read_text().replace(name, "a.pb")
        assert log == (tmp_path / "a.pb.json").read_text()
