"""The properties as (strategy of cases, check of one case), shared by `make fuzz` (fuzz.run) and
the fixed-seed slice in tests/test_fuzz.py.

A case is a dict of plain values (bytes, str, ints), so a failing one can be saved as JSON and
replayed (`python -m fuzz --replay FILE`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from fuzz import props
from fuzz.graphs import Built, graphs
from fuzz.mutate import corrupted_graph_defs, pb_bytes, pbtxt_bytes, rule_texts, shipped_rules
from surgery.ir.protos import GraphDef

Case = dict[str, Any]


def _stems() -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(shipped_rules()))


def _graph_case(**options: Any) -> st.SearchStrategy[Case]:
    return graphs(**options).map(
        lambda b: {"graph": b.serialize(), "inputs": {k: list(v) for k, v in b.inputs.items()},
                   "blocks": ",".join(b.blocks)}  # fmt: skip
    )


def built(case: Case) -> Built:
    """The generated graph a case carries."""
    graph_def = GraphDef()
    graph_def.ParseFromString(case["graph"])
    inputs = {k: tuple(v) for k, v in case["inputs"].items()}
    return Built(graph_def, inputs, case.get("blocks", "").split(","))


@st.composite
def _cli_case(draw: st.DrawFn) -> Case:
    """A command, a rule file (shipped, or mutated) and a model (valid, or broken)."""
    texts = shipped_rules()
    stem = draw(st.sampled_from(sorted(texts)))
    rules = texts[stem] if draw(st.booleans()) else draw(rule_texts())
    kind = draw(st.sampled_from(("valid", "valid", "bytes", "fields", "pbtxt")))
    if kind == "valid":
        model = draw(graphs(max_blocks=4)).serialize()
    elif kind == "bytes":
        model = draw(pb_bytes())
    elif kind == "fields":
        model = draw(corrupted_graph_defs())
    else:
        model = draw(pbtxt_bytes())
    return {
        "command": draw(st.sampled_from(props.CLI_COMMANDS)),
        "rules": rules.encode("utf-8", "surrogatepass"),
        "model": model,
        "suffix": ".pbtxt" if kind == "pbtxt" else ".pb",
        "out_suffix": draw(st.sampled_from((".pb", ".pb", ".pbtxt"))),
    }


@dataclass(frozen=True)
class Property:
    """One property: its share of the cases, how to draw a case, how to check it."""

    name: str
    share: float  # fraction of `make fuzz`'s cases
    strategy: Callable[[], st.SearchStrategy[Case]]
    check: Callable[[Case], str]
    limit: float  # seconds a case may take before it counts as a hang
    needs_tf: bool = False
    doc: str = ""


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property(
            "pb_bytes", 0.30,
            lambda: st.fixed_dictionaries({"data": pb_bytes(), "stem": _stems()}),
            lambda c: props.check_model_bytes(c["data"], ".pb", c["stem"]), 20.0,
            doc="mutated .pb bytes (flips, truncation, random, splices) -> load -> apply",
        ),
        Property(
            "pb_fields", 0.22,
            lambda: st.fixed_dictionaries({"data": corrupted_graph_defs(), "stem": _stems()}),
            lambda c: props.check_model_bytes(c["data"], ".pb", c["stem"]), 20.0,
            doc="GraphDefs with corrupted fields (names, ports, attrs, tensors) -> load -> apply",
        ),
        Property(
            "pbtxt", 0.12,
            lambda: st.fixed_dictionaries({"data": pbtxt_bytes(), "stem": _stems()}),
            lambda c: props.check_model_bytes(c["data"], ".pbtxt", c["stem"]), 20.0,
            doc="mutated .pbtxt text -> load -> apply",
        ),
        Property(
            "rules_text", 0.10,
            lambda: st.fixed_dictionaries({"text": rule_texts(), "graph": _graph_case(
                annotate=True, max_blocks=5)}),  # fmt: skip
            lambda c: props.check_rule_text(c["text"], built(c["graph"])), 30.0,
            doc="mutated shipped rule files, random strings -> parse -> check -> apply",
        ),
        Property(
            "cli", 0.08, _cli_case,
            lambda c: props.check_cli(c["command"], c["rules"], c["model"], c["suffix"],
                                      c["out_suffix"]), 60.0, needs_tf=True,  # fmt: skip
            doc="surgery apply/check/inspect/match in-process on broken and valid files",
        ),
        Property(
            "graph_rules", 0.175, lambda: _graph_case(max_blocks=8),
            lambda c: props.check_graph_rules(built(c)), 30.0,
            doc="random valid graphs x every shipped rule file: valid, deterministic",
        ),
        Property(
            "numeric", 0.004, lambda: _graph_case(numeric=True, max_blocks=5),
            lambda c: props.check_numeric(built(c)), 120.0, needs_tf=True,
            doc="semantic-preserving rule files, validated against TensorFlow",
        ),
        Property(
            "cli_process", 0.0003, _cli_case,
            lambda c: props.check_cli_process(c["command"], c["rules"], c["model"],
                                              c["suffix"], c["out_suffix"]),  # fmt: skip
            150.0, doc="the same as cli, through a real `python -m surgery` process",
        ),
    )
}
