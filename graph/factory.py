"""The graph factory: returns the uncompiled StateGraph; callers compile it at their edge
with their checkpointer (`build_graph().compile(checkpointer=saver)`).

`build_graph()` is the core graph. `build_graph(extensions=[...])` adds a workflow's own nodes
and edges (see graph.extensions) without touching the core nodes or routers.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import get_runtime

from graph import routing
from graph.context import RunContext
from graph.extensions import (
    Extension,
    ExtensionError,
    NodeFn,
    Router,
    after_before_plan,
    after_chained_hook,
)
from graph.nodes.approve import approve
from graph.nodes.execute import execute
from graph.nodes.fallback import fallback
from graph.nodes.finish import finish
from graph.nodes.gate import gate
from graph.nodes.plan import plan
from graph.nodes.postcheck import postcheck
from graph.nodes.verify import verify
from graph.state import EVENTS, AgentState, InputState, OutputState

CORE_NODES: dict[str, NodeFn] = {
    "plan": plan, "gate": gate, "verify": verify, "approve": approve, "execute": execute,
    "postcheck": postcheck, "fallback": fallback, "finish": finish,
}


@dataclass
class _Branch:
    router: Router
    path_map: dict[Hashable, str] | None = None

    def targets(self, source: str) -> list[str]:
        if self.path_map is not None:
            return list(self.path_map.values())
        hint = typing.get_type_hints(self.router).get("return")
        if typing.get_origin(hint) is not typing.Literal:
            raise ExtensionError(f"the router of {source!r} needs a Literal[...] return "
                                 "annotation naming the nodes it can lead to")
        return [str(a) for a in typing.get_args(hint)]


@dataclass
class _Wiring:
    """The graph as data, so extensions can be applied before anything is built."""

    nodes: dict[str, NodeFn] = field(default_factory=lambda: dict(CORE_NODES))
    entry: str = "plan"
    edges: dict[str, str] = field(default_factory=lambda: {"fallback": END, "finish": END})
    branches: dict[str, _Branch] = field(default_factory=lambda: {
        "plan": _Branch(routing.after_plan),
        "gate": _Branch(routing.after_gate),
        "verify": _Branch(routing.after_verify),
        "approve": _Branch(routing.after_approve),
        "execute": _Branch(routing.after_execute),
        "postcheck": _Branch(routing.after_postcheck),
    })

    def known(self, name: str, ext: Extension) -> None:
        if name not in self.nodes and name != END:
            raise ExtensionError(f"extension {ext.name!r} names unknown node {name!r}")

    def route(self, source: str, branch: _Branch) -> None:
        self.edges.pop(source, None)
        self.branches[source] = branch


def _apply(wiring: _Wiring, extensions: Sequence[Extension]) -> None:
    before: list[tuple[str, Extension]] = []
    after: list[tuple[str, Extension]] = []
    for ext in extensions:
        for name, fn in ext.nodes.items():
            if name in wiring.nodes or name in (START, END):
                raise ExtensionError(f"extension {ext.name!r} adds node {name!r}, "
                                     "which already exists")
            wiring.nodes[name] = fn
        for point, chain in (("before_plan", before), ("after_execute", after)):
            hook = getattr(ext, point)
            if hook is not None:
                if hook not in ext.nodes:
                    raise ExtensionError(f"extension {ext.name!r}: {point} names {hook!r}, "
                                         "which is not one of its nodes")
                chain.append((hook, ext))

    for i, (hook, _) in enumerate(before):
        following = before[i + 1][0] if i + 1 < len(before) else "plan"
        wiring.route(hook, _Branch(after_before_plan, {"next": following, "finish": "finish",
                                                       "fallback": "fallback"}))
    if before:
        wiring.entry = before[0][0]
    if after:
        core_after_execute = wiring.branches["execute"]
        wiring.edges["execute"] = after[0][0]
        del wiring.branches["execute"]
        for i, (hook, _) in enumerate(after):
            if i + 1 < len(after):
                wiring.route(hook, _Branch(after_chained_hook,
                                           {"next": after[i + 1][0], "fallback": "fallback"}))
            else:
                wiring.route(hook, core_after_execute)

    for ext in extensions:
        for source, router in ext.routes.items():
            wiring.known(source, ext)
            branch = _Branch(router)
            for target in branch.targets(source):
                wiring.known(target, ext)
            wiring.route(source, branch)
        for source, target in ext.edges:
            wiring.known(source, ext)
            wiring.known(target, ext)
            if source in wiring.branches:
                raise ExtensionError(f"extension {ext.name!r}: {source!r} already has a "
                                     "router; give it one way out")
            wiring.edges[source] = target

    for name in wiring.nodes:
        if name not in wiring.edges and name not in wiring.branches:
            raise ExtensionError(f"node {name!r} has no way out (add an edge or a route)")
    _check_reachable(wiring)


def _check_reachable(wiring: _Wiring) -> None:
    seen, todo = set(), [wiring.entry]
    while todo:
        name = todo.pop()
        if name in seen or name == END:
            continue
        seen.add(name)
        if name in wiring.edges:
            todo.append(wiring.edges[name])
        if name in wiring.branches:
            todo.extend(wiring.branches[name].targets(name))
    unreachable = sorted(set(wiring.nodes) - seen)
    if unreachable:
        raise ExtensionError(f"node(s) {', '.join(unreachable)} cannot be reached from START")


def _recorded_together(fn: NodeFn) -> NodeFn:
    """`fn`, with the trace and audit events it records held while it runs.

    Under the runner (`events_in_writes`) they are added to the node's writes, so LangGraph
    saves them in the same transaction as the node's state: an event is stored exactly when
    its node's effect on the run is. Otherwise, and when the node raises, they are written
    to the stores when it ends.
    """

    @functools.wraps(fn)  # LangGraph reads fn's signature through __wrapped__
    def node(*args: Any, **kwargs: Any) -> dict[str, Any]:
        context = get_runtime(RunContext).context
        recorder = context.recorder if isinstance(context, RunContext) else None
        if recorder is None:
            return fn(*args, **kwargs)
        with recorder.capture() as events:
            try:
                update = fn(*args, **kwargs)
            except BaseException:
                recorder.write(events)
                raise
        if events and context.events_in_writes and isinstance(update, dict):
            return {**update, EVENTS: events}
        recorder.write(events)  # not under the runner, or nowhere to put them: store them now
        return update

    return node


def build_graph(extensions: Sequence[Extension] = (),
                ) -> StateGraph[AgentState, RunContext, InputState, OutputState]:
    """plan -> gate -> (verify -> (approve ->)) execute -> postcheck -> plan, until the planner
    is done (finish) or something stops the run (fallback); plus the extensions' nodes.

    Raises ExtensionError when an extension cannot be wired in.
    """
    wiring = _Wiring()
    _apply(wiring, extensions)
    g = StateGraph(AgentState, context_schema=RunContext, input_schema=InputState,
                   output_schema=OutputState)
    for name, fn in wiring.nodes.items():
        g.add_node(name, _recorded_together(fn))  # type: ignore[call-overload]
    g.add_edge(START, wiring.entry)
    for source, branch in wiring.branches.items():
        path_map: Mapping[Hashable, str] | None = branch.path_map
        g.add_conditional_edges(source, branch.router, path_map)  # type: ignore[arg-type]
    for source, target in wiring.edges.items():
        g.add_edge(source, target)
    return g
