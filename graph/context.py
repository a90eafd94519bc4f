"""What a workflow brings, and the run context every node receives.

A `Workflow` is the one registration point for a use case: its tools, its policy file, its
invariants and post-conditions, its offline models and its sample data. `RunContext` is the
typed LangGraph runtime context (`Runtime[RunContext]`): settings and injected seams (models,
database, clock, recorder) for one run. It is rebuilt by the runner on every resume; it is
never checkpointed.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable

from graph.defaults import SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT
from graph.defaults import (
    NoOfflineChecker,
    NoOfflinePlanner,
    committed_a_change,
    no_sample_tickets,
    open_sqlite,
)
from graph.models import ModelSettings, schema_for_model
from tools.base import ToolContext, ToolRegistry
from verifiers.argument_check import Read
from verifiers.gate import FactsFn
from verifiers.policy import Policy

if TYPE_CHECKING:
    from checkpoints.runs import RunStore
    from graph.extensions import Extension


class InvariantFn(Protocol):
    """A rule invariant: (tool context, tool, validated args as dict) -> (ok, reason)."""

    def __call__(self, ctx: ToolContext, tool: str, args: dict[str, Any]) -> tuple[bool, str]: ...


class PostconditionFn(Protocol):
    """A business post-condition checked after a mutation committed: -> (ok, reason)."""

    def __call__(self, ctx: ToolContext, tool: str, args: dict[str, Any],
                 result: dict[str, Any]) -> tuple[bool, str]: ...


class CompletionFn(Protocol):
    """The workflow's completion check: (tool context, evidence) -> (done, reason). A run
    ends "resolved" only when it passes (for support: the customer got an answer)."""

    def __call__(self, ctx: ToolContext,
                 evidence: Sequence[Mapping[str, Any]]) -> tuple[bool, str]: ...


class Recorder(Protocol):
    """Where nodes report what happened (implemented by observability.recorder.Recorder).

    Every method is idempotent on `event_key`: LangGraph re-runs nodes on resume and replay.
    """

    def start_run(self, run_id: str, *, workflow: str, workflow_version: str,
                  policy_version: str | None, tenant_id: str, team: str, requester: str,
                  customer_id: str | None, ticket_id: str | None,
                  inputs: dict[str, Any]) -> None: ...
    def model_call(self, run_id: str, event_key: str, *, node: str, model: str,
                   tokens_in: int, tokens_out: int, latency_s: float) -> None: ...
    def tool_call(self, run_id: str, event_key: str, *, step: Any, tool: str,
                  args: dict[str, Any], result: dict[str, Any] | None, error: str | None,
                  schema_valid: bool, ok: bool, latency_s: float, mutation: bool) -> None: ...
    def decision(self, run_id: str, event_key: str, *, step: Any, kind: str, verdict: str,
                 rule_id: str | None, reason: str | None, data: dict[str, Any] | None = None,
                 actor: str | None = None) -> None: ...
    def evidence(self, run_id: str, event_key: str, *, source: str, ref: str) -> None: ...
    def finish_run(self, run_id: str, *, outcome: str, reason: str | None) -> None: ...
    def capture(self) -> AbstractContextManager[list[Any]]:
        """Hold the events recorded in the block, unwritten, in the list it yields."""
        ...
    def write(self, events: Sequence[Any]) -> None:
        """Write held events (idempotent: writing them again changes nothing)."""
        ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class SampleTicket:
    """A ticket a workflow ships to demonstrate itself."""

    ticket_id: str
    tenant_id: str
    customer_id: str | None
    customer_email: str | None
    subject: str
    body: str
    expect: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A use case signoff can run. Only `name`, `tools`, `policy_path` and `build_db` are
    required; every other field has a safe default (graph.defaults), so a minimal workflow
    is four keyword arguments."""

    name: str
    tools: Callable[..., ToolRegistry]
    """Builds the tool registry; accepts an optional fault plan."""
    policy_path: Path
    build_db: Callable[[Path], None]
    """Builds the domain database at the path given (the sample data, for demos and tests)."""
    version: str = "0.1.0"
    """The workflow's release; reports attribute outcomes and cost to it."""
    team: str = ""
    """Who owns it; cost is attributed to this team. Empty: the workflow's name."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    facts: FactsFn | None = None
    """(ctx, tool, args) -> fact namespaces for policy conditions; None: no facts."""
    invariants: Mapping[str, Sequence[InvariantFn]] = field(default_factory=dict)
    postconditions: Mapping[str, Sequence[PostconditionFn]] = field(default_factory=dict)
    planner: Callable[[], BaseChatModel] = NoOfflinePlanner
    """The offline planner model; the default hands every run to a human (a deployment
    configures a real one with SIGNOFF_PLANNER_*)."""
    checker: Callable[[], BaseChatModel] = NoOfflineChecker
    """The offline second-model argument checker; the default fails every mutation."""
    open_db: Callable[[Path], sqlite3.Connection] = open_sqlite
    sample_tickets: Callable[[], list[SampleTicket]] = no_sample_tickets
    db_filename: str = ""
    """The domain database's file under SIGNOFF_HOME. Empty: NAME.db."""
    pii_fields: frozenset[str] = frozenset()
    intake: Callable[..., SampleTicket] | None = None
    """(conn, tenant_id=, email=, subject=, body=) -> a new ticket for free-text runs."""
    extensions: tuple[Extension, ...] = ()
    """Extra nodes and edges for this workflow's graph (see graph.extensions)."""
    requester_role: Callable[[sqlite3.Connection, str, SampleTicket], str | None] | None = None
    """(domain db, requester, ticket) -> the role the run's requester holds, recorded with the
    run when it starts; None: the requester's first role among the policy's approvers."""
    completion: CompletionFn | None = committed_a_change
    """What "resolved" means for this workflow; the default: the run committed a change.
    None: no run of it ends "resolved"."""
    verdict_reads: Mapping[str, tuple[Read, ...]] = field(default_factory=dict)
    """Per tool, what the argument checker must read independently; its reads are compared
    with the call (see verifiers.argument_check)."""
    fact_namespaces: Mapping[str, frozenset[str] | None] | None = None
    """The fact namespaces `facts` returns and policy conditions may read, each with the keys
    it provides (None: any key), e.g. {"order": frozenset({"status", "items"})}. A key a rule
    names that is not declared is an error when the policy loads. None: `customer` and
    `ticket`, any key (the first version's fixed pair)."""

    def __post_init__(self) -> None:
        # Frozen: the derived defaults are set once, here, and never change after.
        if not self.team:
            object.__setattr__(self, "team", self.name)
        if not self.db_filename:
            object.__setattr__(self, "db_filename", f"{self.name}.db")

    def policy_checks(self) -> dict[str, Any]:
        """What `load_policy` checks a policy file against for this workflow: its tools,
        their argument names and its fact namespaces."""
        tools = self.tools()
        return {"known_tools": set(tools.names()), "tool_args": tools.argument_names(),
                "facts": self.fact_namespaces}


def _price_table() -> Callable[[str, int, int], float | None]:
    from graph.observe import price_fn  # graph.observe imports this module

    return price_fn()


@dataclass(frozen=True)
class RunContext:
    """Settings and seams for one run; passed as `context=` to invoke."""

    run_id: str
    tenant_id: str
    requester: str
    workflow: Workflow
    registry: ToolRegistry
    policy: Policy | None
    policy_error: str | None
    planner: BaseChatModel
    checker: BaseChatModel
    db: sqlite3.Connection
    runs: RunStore
    recorder: Recorder | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    retry_backoff_s: float = 0.05
    price: Callable[[str, int, int], float | None] = field(default_factory=_price_table)
    """Cost in USD of one model call: (model, input tokens, output tokens); None when the
    model has no price, which the money budget then refuses (it cannot be checked). Left
    unset, the price table (SIGNOFF_PRICES over the defaults)."""
    faults: Any = None
    """Fault-injection hooks for crash tests (see checkpoints.faults); None in production."""
    requester_role: str | None = None
    """The requester's role recorded when the run started (for segregation of duties)."""
    events_in_writes: bool = False
    """Return each node's recorded events in its writes (the `events` channel) instead of
    writing them when the node ends; the runner sets this and writes them after the drive."""

    planner_settings: ModelSettings = field(default_factory=ModelSettings)
    """How the planner is asked (tool choice, schema dialect, retries, re-asks)."""
    checker_settings: ModelSettings = field(default_factory=ModelSettings)

    @functools.cached_property
    def _bound_planners(self) -> dict[str | None, Runnable[Any, BaseMessage]]:
        return {}

    def bound_planner(self, tool_choice: str | None = None) -> Runnable[Any, BaseMessage]:
        """The planner with the registry's tool contracts bound (in the planner's schema
        dialect) and `tool_choice` ("auto", "required" or a tool's name), once per drive."""
        if tool_choice not in self._bound_planners:
            tools = [schema_for_model(spec.openai_schema(), self.planner_settings.schema_dialect)
                     for spec in self.registry]
            self._bound_planners[tool_choice] = self.planner.bind_tools(
                tools, **({"tool_choice": tool_choice} if tool_choice else {}))
        return self._bound_planners[tool_choice]

    def tool_ctx(self, ticket: Mapping[str, Any]) -> ToolContext:
        return ToolContext(conn=self.db, tenant_id=self.tenant_id, run_id=self.run_id,
                           customer_id=ticket.get("customer_id"),
                           ticket_id=ticket.get("ticket_id"))
