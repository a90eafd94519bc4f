"""What a workflow brings, and the run context every node receives.

A `Workflow` is the one registration point for a use case: its tools, its policy file, its
invariants and post-conditions, its offline models and its sample data. `RunContext` is the
typed LangGraph runtime context (`Runtime[RunContext]`): settings and injected seams (models,
database, clock, recorder) for one run. It is rebuilt by the runner on every resume; it is
never checkpointed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.language_models.chat_models import BaseChatModel

from tools.base import ToolContext, ToolRegistry
from verifiers.gate import FactsFn
from verifiers.policy import Policy

if TYPE_CHECKING:
    from checkpoints.runs import RunStore


class InvariantFn(Protocol):
    """A rule invariant: (tool context, tool, validated args as dict) -> (ok, reason)."""

    def __call__(self, ctx: ToolContext, tool: str, args: dict[str, Any]) -> tuple[bool, str]: ...


class PostconditionFn(Protocol):
    """A business post-condition checked after a mutation committed: -> (ok, reason)."""

    def __call__(self, ctx: ToolContext, tool: str, args: dict[str, Any],
                 result: dict[str, Any]) -> tuple[bool, str]: ...


class Recorder(Protocol):
    """Where nodes report what happened (see observability.recorder.Recorder)."""

    def model_call(self, run_id: str, event_key: str, **kw: Any) -> None: ...
    def tool_call(self, run_id: str, event_key: str, **kw: Any) -> None: ...
    def decision(self, run_id: str, event_key: str, **kw: Any) -> None: ...


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


@dataclass(frozen=True)
class Workflow:
    """A use case signoff can run."""

    name: str
    version: str
    """The workflow's release; reports attribute outcomes and cost to it."""
    team: str
    """Who owns it; cost is attributed to this team."""
    system_prompt: str
    tools: Callable[..., ToolRegistry]
    """Builds the tool registry; accepts an optional fault plan."""
    policy_path: Path
    facts: FactsFn
    invariants: Mapping[str, Sequence[InvariantFn]]
    postconditions: Mapping[str, Sequence[PostconditionFn]]
    planner: Callable[[], BaseChatModel]
    """The offline planner model."""
    checker: Callable[[], BaseChatModel]
    """The offline second-model argument checker."""
    build_db: Callable[[Path], None]
    open_db: Callable[[Path], sqlite3.Connection]
    sample_tickets: Callable[[], list[SampleTicket]]
    db_filename: str
    pii_fields: frozenset[str] = frozenset()
    intake: Callable[..., SampleTicket] | None = None
    """(conn, tenant_id=, email=, subject=, body=) -> a new ticket for free-text runs."""


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
    price: Callable[[str, int, int], float] = lambda model, tokens_in, tokens_out: 0.0
    """Cost in USD of one model call: (model, input tokens, output tokens)."""
    faults: Any = None
    """Fault-injection hooks for crash tests (see checkpoints.faults); None in production."""

    def tool_ctx(self, ticket: Mapping[str, Any]) -> ToolContext:
        return ToolContext(conn=self.db, tenant_id=self.tenant_id, run_id=self.run_id,
                           customer_id=ticket.get("customer_id"),
                           ticket_id=ticket.get("ticket_id"))
