"""The mypyc-compiled engine modules: same bytes as the sources, and never used when stale."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_rules import RULES
from benchmarks.synthetic import conv_graph
from surgery import native

ROOT = Path(__file__).resolve().parents[1]
RUN = (
    "import sys, surgery.native as n; from surgery.cli import main; "
    "print('native:', n.state(), file=sys.stderr); sys.exit(main(sys.argv[1:]))"
)


def _apply(rules: Path, model: Path, out: Path, pure: bool) -> str:
    """`surgery apply` in a fresh interpreter; returns its stderr."""
    env = dict(os.environ, SURGERY_PURE="1" if pure else "0")
    done = subprocess.run(
        [sys.executable, "-c", RUN, "apply", str(rules), str(model), "-o", str(out),
         "--log", str(out.with_suffix(".json"))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.skipif(native.state() != "compiled",
                    reason=f"the native build is {native.state()}: run `make setup`")  # fmt: skip
def test_compiled_and_source_write_the_same_bytes(tmp_path: Path, unet_pb: Path) -> None:
    synthetic = tmp_path / "synthetic.pb"
    synthetic.write_bytes(conv_graph(2_000).SerializeToString())
    bench_rules = tmp_path / "bench.rules"
    bench_rules.write_text(RULES)
    for rules, model in [(bench_rules, synthetic),
                         (ROOT / "rules" / "upsample_nearest.rules", unet_pb)]:  # fmt: skip
        fast, slow = tmp_path / "fast" / model.name, tmp_path / "slow" / model.name
        fast.parent.mkdir(exist_ok=True)
        slow.parent.mkdir(exist_ok=True)
        assert "native: compiled" in _apply(rules, model, fast, pure=False)
        assert "native: pure (SURGERY_PURE=1)" in _apply(rules, model, slow, pure=True)
        assert fast.read_bytes() == slow.read_bytes()
        log = fast.with_suffix(".json").read_text().replace(str(fast.parent), str(slow.parent))
        assert log == slow.with_suffix(".json").read_text()
        assert fast.read_bytes() != model.read_bytes()  # the rules did rewrite something


def test_a_build_older_than_its_sources_is_not_used(tmp_path: Path, monkeypatch) -> None:
    here = tmp_path / "surgery"
    here.mkdir()
    for module in native.COMPILED:
        stage, name = module.split(".")
        (here / stage).mkdir(exist_ok=True)
        shutil.copy(ROOT / "surgery" / stage / f"{name}.py", here / stage)
        (here / stage / f"{name}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    monkeypatch.setattr(native, "_HERE", str(here))
    monkeypatch.delenv("SURGERY_PURE", raising=False)
    assert native.state() == "pure (not built)"  # extension files but no record of the sources
    native._write_stamp(native._source_hashes())
    assert native.state() == "compiled"
    with open(here / "ir" / "graph.py", "a") as handle:
        handle.write("\n# edited\n")
    assert native.state() == "pure (stale: ir.graph)"
    monkeypatch.setenv("SURGERY_PURE", "1")
    assert native.state() == "pure (SURGERY_PURE=1)"
