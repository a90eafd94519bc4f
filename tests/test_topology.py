"""The graph's topology is pinned: the core graph, and the core graph with extension nodes at
both insertion points. A change to either shows up here as a diff of the drawing."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from graph.extensions import Extension, ExtensionError
from graph.factory import build_graph

HEADER = """---
config:
  flowchart:
    curve: linear
---
graph TD;
"""
FOOTER = """	classDef default fill:#f2f0ff,line-height:1.2
	classDef first fill-opacity:0
	classDef last fill:#bfb6fc
"""

CORE = HEADER + """	__start__([<p>__start__</p>]):::first
	plan(plan)
	gate(gate)
	verify(verify)
	approve(approve)
	execute(execute)
	postcheck(postcheck)
	fallback(fallback)
	finish(finish)
	__end__([<p>__end__</p>]):::last
	__start__ --> plan;
	approve -.-> execute;
	approve -.-> fallback;
	approve -.-> gate;
	execute -.-> fallback;
	execute -.-> plan;
	execute -.-> postcheck;
	gate -.-> execute;
	gate -.-> fallback;
	gate -.-> plan;
	gate -.-> verify;
	plan -.-> fallback;
	plan -.-> finish;
	plan -.-> gate;
	postcheck -.-> fallback;
	postcheck -.-> plan;
	verify -.-> approve;
	verify -.-> execute;
	verify -.-> fallback;
	fallback --> __end__;
	finish --> __end__;
""" + FOOTER

EXTENDED = HEADER + """	__start__([<p>__start__</p>]):::first
	plan(plan)
	gate(gate)
	verify(verify)
	approve(approve)
	execute(execute)
	postcheck(postcheck)
	fallback(fallback)
	finish(finish)
	dedupe(dedupe)
	audit(audit)
	__end__([<p>__end__</p>]):::last
	__start__ --> dedupe;
	approve -.-> execute;
	approve -.-> fallback;
	approve -.-> gate;
	audit -.-> fallback;
	audit -.-> plan;
	audit -.-> postcheck;
	dedupe -.-> fallback;
	dedupe -.-> finish;
	dedupe -. &nbsp;next&nbsp; .-> plan;
	execute --> audit;
	gate -.-> execute;
	gate -.-> fallback;
	gate -.-> plan;
	gate -.-> verify;
	plan -.-> fallback;
	plan -.-> finish;
	plan -.-> gate;
	postcheck -.-> fallback;
	postcheck -.-> plan;
	verify -.-> approve;
	verify -.-> execute;
	verify -.-> fallback;
	fallback --> __end__;
	finish --> __end__;
""" + FOOTER


def noop(state: Any, runtime: Any) -> dict[str, Any]:
    return {}


def to_plan(state: Any) -> Literal["plan", "fallback"]:
    return "plan"


def unannotated(state: Any) -> str:
    return "plan"


def drawing(*extensions: Extension) -> str:
    return build_graph(extensions).compile().get_graph().draw_mermaid()


def test_core_topology_is_pinned() -> None:
    assert drawing() == CORE


def test_extended_topology_is_pinned() -> None:
    ext = Extension("demo", nodes={"dedupe": noop, "audit": noop}, before_plan="dedupe",
                    after_execute="audit")
    assert drawing(ext) == EXTENDED


def test_extensions_chain_at_one_point_in_order() -> None:
    first = Extension("first", nodes={"dedupe": noop}, before_plan="dedupe")
    second = Extension("second", nodes={"triage": noop}, before_plan="triage",
                       routes={"triage": to_plan})
    out = drawing(first, second)
    assert "__start__ --> dedupe;" in out
    assert "dedupe -. &nbsp;next&nbsp; .-> triage;" in out
    assert "triage -.-> plan;" in out and "triage -.-> fallback;" in out
    assert "triage -.-> finish;" not in out  # its own router replaced the default one


def test_general_form_adds_nodes_with_edges_and_routes() -> None:
    ext = Extension("general", nodes={"enrich": noop, "score": noop},
                    edges=[("enrich", "score")], routes={"score": to_plan, "postcheck": to_plan})
    out = drawing(Extension("entry", nodes={"start_hook": noop}, before_plan="start_hook",
                            routes={"start_hook": _to_enrich}), ext)
    assert "enrich --> score;" in out
    assert "postcheck -.-> plan;" in out and "start_hook -.-> enrich;" in out


def _to_enrich(state: Any) -> Literal["enrich", "fallback"]:
    return "enrich"


@pytest.mark.parametrize("ext, message", [
    (Extension("clash", nodes={"plan": noop}), "already exists"),
    (Extension("hook", nodes={"a": noop}, before_plan="b"), "not one of its nodes"),
    (Extension("edge", nodes={"a": noop}, before_plan="a", edges=[("a", "nowhere")]),
     "unknown node 'nowhere'"),
    (Extension("loose", nodes={"a": noop}, edges=[("a", "plan")]), "cannot be reached"),
    (Extension("stuck", nodes={"a": noop}), "no way out"),
    (Extension("hint", nodes={"a": noop}, before_plan="a", routes={"a": unannotated}),
     "Literal"),
])
def test_bad_extensions_are_refused_with_a_reason(ext: Extension, message: str) -> None:
    with pytest.raises(ExtensionError, match=message):
        build_graph([ext])
