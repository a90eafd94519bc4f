"""The runner: starts, resumes and decides on runs, one process at a time per run.

Every entry point takes the run's lease, opens the checkpointer and the workflow's database,
builds the run context, drives the compiled graph with durability "sync", and writes the
run's status back to the registry. Everything lives under one data directory (SIGNOFF_HOME).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command
from pydantic import ValidationError

from checkpoints.backend import DEFAULT_POOL_SIZE, DEFAULT_SCHEMA_PREFIX, Backend, open_backend
from checkpoints.domain import for_tenant, install_domain, is_installed
from checkpoints.prune import PruneResult, prune_finished
from checkpoints.runs import RunRecord, RunStore, holder_is_dead, new_lease_owner
from checkpoints.saver import DURABILITY, thread_config
from graph.approvals import check_decision, held_digest
from graph.context import Recorder, RunContext, SampleTicket, Workflow
from graph.errors import BadDecision, DamagedData, NotWaiting, SignoffError, StaleDecision
from graph.factory import build_graph
from graph.identity import BadIdentity, normalize_identity
from graph.models import ModelSettings, make_chat_model, model_name_of
from graph.observe import price_fn
from graph.state import EVENTS, InputState, Ticket, usage_delta
from graph.text import unreadable_text
from graph.workflows import get_workflow
from observability.db import StoreError
from tools.base import ToolRegistry, validation_summary
from tools.ledger import ensure_ledger
from verifiers.gate import Usage
from verifiers.policy import Policy, PolicyError, load_policy

LEASE_TTL_S = 120.0
MAX_TICKET_CHARS = 20_000
MAX_SUBJECT_CHARS = 200
"""Longest free-text ticket intake accepts, for every workflow."""
STORE_ERRORS = (StoreError, sqlite3.DatabaseError, OSError)
"""What a damaged or unwritable trace or audit store raises."""
SHADOW_STATUS = "recommended"
"""How a shadow run ends: at its first mutating proposal, recorded and never executed."""
QUEUED_STATUS = "queued"
"""A run registered (or decided) for a worker to drive: nothing drives it until one takes it."""
DRIVABLE = frozenset({QUEUED_STATUS, "running"})
"""Statuses a worker goes on with: queued, or running with its driver gone."""


@dataclass(frozen=True)
class Home:
    """Where a runner's data lives: the data directory (SIGNOFF_HOME), and, when
    `database_url` is set (SIGNOFF_DATABASE_URL), the PostgreSQL database every durable store
    moves to (checkpoints.backend)."""

    root: Path
    database_url: str | None = None
    schema_prefix: str = DEFAULT_SCHEMA_PREFIX
    """The Postgres schemas' prefix (SIGNOFF_DB_SCHEMA_PREFIX); tests give each its own."""
    pool_size: int = DEFAULT_POOL_SIZE
    """The most Postgres connections one backend holds (SIGNOFF_DB_POOL_SIZE)."""

    def open_backend(self) -> Backend:
        """A new backend for these stores; the caller closes it."""
        return open_backend(self.root, self.database_url, schema_prefix=self.schema_prefix,
                            pool_size=self.pool_size)

    @property
    def runs_db(self) -> Path:
        """control.db, where the SQLite backend keeps the run registry (unused on Postgres)."""
        return self.root / "control.db"

    @property
    def checkpoints_db(self) -> Path:
        """checkpoints.db, the SQLite backend's checkpoints (unused on Postgres)."""
        return self.root / "checkpoints.db"

    def domain_db(self, workflow: Workflow) -> Path:
        """The workflow's SQLite database file (on PostgreSQL its data is the store
        `domain_store` names, checkpoints.domain, and this file is not used)."""
        return self.root / workflow.db_filename


def domain_store(workflow: Workflow) -> str:
    """The store holding a workflow's data: its database file's stem (support.db: support),
    so workflows that share a file on SQLite share a schema on PostgreSQL."""
    return Path(workflow.db_filename).stem


@dataclass(frozen=True)
class RunResult:
    """Where a run stands after a runner call returned."""

    run_id: str
    status: str
    reason: str | None
    pending: dict[str, Any] | None
    mutations: int
    ticket_id: str | None
    usage: Usage | None = None
    """What the run has spent so far: model calls, tokens, tool calls, retries, cost."""
    warnings: tuple[str, ...] = ()
    """What went wrong beside the run's outcome (its trace and audit events could not be
    written and wait in the outbox); the outcome itself stands."""


def initial_inputs(run_id: str, ticket: SampleTicket, started_at: float) -> InputState:
    """The graph input that starts a run on `ticket`."""
    return InputState(
        run_id=run_id,
        ticket=Ticket(ticket_id=ticket.ticket_id, customer_id=ticket.customer_id,
                      customer_email=ticket.customer_email, subject=ticket.subject,
                      body=ticket.body),
        started_at=started_at, step=0, usage=usage_delta(), evidence={})


def events_in_history(saver: BaseCheckpointSaver[Any], run_id: str) -> list[Any]:
    """Every trace and audit event saved in the run's checkpoint writes, oldest first."""
    steps = [[event for _task, channel, value in tup.pending_writes or ()
              if channel == EVENTS and isinstance(value, list) for event in value]
             for tup in saver.list(thread_config(run_id))]  # type: ignore[arg-type]
    return [event for step in reversed(steps) for event in step]


@dataclass
class Runner:
    """Drives runs of any registered workflow under one data directory."""

    home: Home
    planner_settings: ModelSettings = field(default_factory=ModelSettings)
    checker_settings: ModelSettings = field(default_factory=ModelSettings)
    recorder_factory: Callable[[Backend, Workflow], Recorder] | None = None
    """Builds a workflow's recorder on the runner's backend (graph.observe.recorder_factory)."""
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    faults: Any = None
    tool_faults: Any = None
    """A tools.support.FaultPlan-like object passed to the workflow's tool registry."""
    price: Callable[[str, int, int], float | None] | None = None
    """Cost in USD of one model call; None as a result means "no price known". Left unset,
    the price table (SIGNOFF_PRICES over the defaults, graph.observe.price_fn): a model it
    does not know is unpriced, and the gate's money budget refuses to go on (fail closed)."""
    owner: str = field(default_factory=new_lease_owner)
    """host:pid:nonce; build the Runner in the process that drives runs (not before a fork)."""
    lease_ttl: float = LEASE_TTL_S
    policy_override: Path | None = None
    """Use this policy file instead of the workflow's (for testing a policy change)."""
    shadow: bool = False
    """Recommendation mode: a run stops before `execute` would run a mutating call (or where
    it would wait for an approval) and ends as "recommended", the proposal, its gate decision
    and verdict in `pending`. Reads still run; nothing is mutated."""

    def __post_init__(self) -> None:
        self._price = self.price if self.price is not None else price_fn()
        self.home.root.mkdir(parents=True, exist_ok=True)
        self.backend = self.home.open_backend()
        """Where the run registry and the checkpoints live (SQLite files or PostgreSQL)."""
        try:
            self.runs = RunStore.open(self.backend, clock=self.clock)
        except BaseException:
            self.backend.close()
            raise
        self._graphs: dict[str, tuple[Any, CompiledStateGraph[Any, Any, Any, Any]]] = {}
        self._policies: dict[Path, tuple[tuple[str, bytes], Policy]] = {}
        self._recorders: dict[str, Recorder] = {}
        self._savers = ExitStack()
        self._saver: BaseCheckpointSaver[Any] | None = None
        self._domain_dbs: dict[str, Any] = {}
        self._model_cache: dict[str, tuple[BaseChatModel, BaseChatModel]] = {}
        self._registries: dict[str, ToolRegistry] = {}

    def _compiled(self, workflow: Workflow, saver: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The workflow's graph, compiled once per runner, bound to this drive's checkpointer.

        Compiling inspects every node's code (tens of milliseconds per run); a copy is cheap.
        """
        cached = self._graphs.get(workflow.name)
        if cached is None or cached[0] is not workflow.extensions:
            cached = (workflow.extensions, build_graph(workflow.extensions).compile())
            self._graphs[workflow.name] = cached
        return cached[1].copy(update={"checkpointer": saver})

    def close(self) -> None:
        for recorder in self._recorders.values():
            try:
                recorder.close()
            except STORE_ERRORS:
                pass  # a damaged store: what a drive could not write waits in the outbox
        self._recorders.clear()
        self._savers.close()
        self._saver = None
        for name in list(self._domain_dbs):
            self.close_domain_db(name)
        self.runs.close()
        self.backend.close()

    def close_domain_db(self, workflow: Workflow | str) -> None:
        """Close the runner's connection to a workflow's database; call it before replacing
        the file (the next drive opens the new one)."""
        conn = self._domain_dbs.pop(getattr(workflow, "name", workflow), None)  # type: ignore[arg-type]
        if conn is not None:
            conn.close()

    def _domain_db(self, workflow: Workflow) -> Any:
        """The runner's connection to the workflow's database, opened (and checked) once:
        closing the last connection to a WAL database checkpoints it, which costs a sync.
        Not bound to a tenant: a run reaches it through `for_tenant` (row-level security on
        PostgreSQL shows nothing to a connection bound to no tenant)."""
        if workflow.name not in self._domain_dbs:
            self._domain_dbs[workflow.name] = self._open_domain_db(workflow)
        return self._domain_dbs[workflow.name]

    def domain_connection(self, workflow: Workflow, tenant_id: str) -> Any:
        """The workflow's database as a run of `tenant_id` sees it (on PostgreSQL every
        transaction bound to that tenant by row-level security); the runner owns it."""
        return for_tenant(self._domain_db(workflow), tenant_id)

    @contextmanager
    def _checkpointer(self) -> Iterator[BaseCheckpointSaver[Any]]:
        """The runner's checkpointer, opened once; a crash-test saver is opened per drive so
        that its kill points see every save."""
        factory = getattr(self.faults, "saver_factory", None)
        if factory is not None:
            with self.backend.checkpointer(saver_factory=factory) as saver:
                yield saver
            return
        if self._saver is None:
            self._saver = self._savers.enter_context(self.backend.checkpointer())
        yield self._saver

    def checkpointer(self) -> AbstractContextManager[BaseCheckpointSaver[Any]]:
        """The runner's checkpointer, on its backend, for reading a run's checkpoints."""
        return self._checkpointer()

    def _recorder(self, workflow: Workflow) -> Recorder | None:
        """One recorder per workflow for the runner's life, on the runner's backend (one pool
        per process on PostgreSQL): opening the trace and audit stores (and folding their logs
        on close) per drive cost more than a run's own events."""
        if self.recorder_factory is None:
            return None
        if workflow.name not in self._recorders:
            self._recorders[workflow.name] = self.recorder_factory(self.backend, workflow)
        return self._recorders[workflow.name]

    # Setup ---------------------------------------------------------------------------------

    def ensure_domain_db(self, workflow: Workflow, *, reset: bool = False) -> Path:
        """Build the workflow's sample database if it is missing (or when reset). On
        PostgreSQL the workflow's `build_db` writes a SQLite file aside, whose tables are
        installed in the workflow's store under row-level security (checkpoints.domain; the
        owner role does this, not the workers')."""
        path = self.home.domain_db(workflow)
        if not self.home.database_url:
            if reset or not path.exists():
                self.close_domain_db(workflow)
                workflow.build_db(path)
            return path
        backend = self.backend
        if not reset:
            probe = backend.connect(domain_store(workflow))
            try:
                if is_installed(probe):
                    return path
            finally:
                probe.close()
        self.close_domain_db(workflow)
        with tempfile.TemporaryDirectory(prefix="signoff-seed-") as aside:
            built = Path(aside) / workflow.db_filename
            workflow.build_db(built)
            try:
                install_domain(backend, domain_store(workflow), built)
            except ValueError as exc:
                raise SignoffError(f"cannot install the {workflow.name} data: {exc}") from None
        return path

    def load_policy(self, workflow: Workflow) -> tuple[Policy | None, str | None]:
        """The policy in force: parsed again whenever the file's content changed."""
        path = Path(self.policy_override or workflow.policy_path)
        try:
            stamp: tuple[str, bytes] | None = (workflow.name, path.read_bytes())
        except OSError:
            stamp = None  # load_policy reports the unreadable file
        cached = self._policies.get(path)
        if stamp is not None and cached is not None and cached[0] == stamp:
            return cached[1], None
        try:
            policy = load_policy(path, **workflow.policy_checks())
        except PolicyError as exc:
            self._policies.pop(path, None)
            return None, str(exc)
        if stamp is not None:
            self._policies[path] = (stamp, policy)
        return policy, None

    # Entry points --------------------------------------------------------------------------

    def start(self, workflow_name: str, ticket: SampleTicket, *, requester: str) -> RunResult:
        """Start a new run on `ticket` and drive it until it ends or waits for a human."""
        workflow = get_workflow(workflow_name)
        requester = _requester(requester)
        self._models(workflow)  # an unusable or unpriced model is refused before the run exists
        recorder = self._recorder(workflow)
        if recorder is not None:
            self._flush_outbox(recorder)  # so are stores that still owe earlier events
        record = self._register(workflow, ticket, requester, models=self.model_settings())
        try:
            return self._drive(record, workflow, record.inputs, fresh=True)
        finally:
            self.runs.release_lease(record.run_id, self.owner)

    def register(self, workflow_name: str, ticket: SampleTicket, *,
                 requester: str) -> RunResult:
        """Register a new run on `ticket` without driving it: it stands "queued", unleased,
        until a worker drives it (`drive_queued`). Its model settings are the first driver's."""
        workflow = get_workflow(workflow_name)
        record = self._register(workflow, ticket, requester, models=None)
        reason = "queued for a worker"
        self.runs.set_status(record.run_id, QUEUED_STATUS, reason=reason, release=self.owner)
        return RunResult(run_id=record.run_id, status=QUEUED_STATUS, reason=reason,
                         pending=None, mutations=0, ticket_id=record.ticket_id)

    def _register(self, workflow: Workflow, ticket: SampleTicket, requester: str, *,
                  models: dict[str, Any] | None) -> RunRecord:
        """A new run's registry row, leased to this runner."""
        requester = _requester(requester)
        policy, _ = self.load_policy(workflow)
        run_id = f"run-{uuid.uuid4().hex[:10]}"
        inputs = initial_inputs(run_id, ticket, self.clock())
        requester_role = self._requester_role(workflow, policy, requester, ticket)
        self.runs.create(run_id=run_id, workflow=workflow.name,
                         workflow_version=workflow.version, tenant_id=ticket.tenant_id,
                         ticket_id=ticket.ticket_id, customer_id=ticket.customer_id,
                         requester=requester, policy_version=policy.version if policy else None,
                         inputs=dict(inputs), lease_owner=self.owner, lease_ttl=self.lease_ttl,
                         requester_role=requester_role, models=models)
        return self.runs.get(run_id)

    def intake(self, workflow_name: str, *, tenant_id: str, email: str, subject: str,
               body: str) -> SampleTicket:
        """File a new ticket from free text (a ticket arriving, not an agent action)."""
        workflow = get_workflow(workflow_name)
        if workflow.intake is None:
            raise SignoffError(f"workflow {workflow.name} does not take free-text tickets")
        for name, value in (("tenant", tenant_id), ("email", email), ("subject", subject),
                            ("ticket text", body)):
            problem = unreadable_text(value)
            if problem:
                raise SignoffError(f"the {name} {problem}")
        if not body.strip():
            raise SignoffError("the ticket text is empty")
        if len(body) > MAX_TICKET_CHARS:
            raise SignoffError(f"the ticket text is longer than {MAX_TICKET_CHARS} characters")
        if len(subject) > MAX_SUBJECT_CHARS:
            raise SignoffError(f"the subject is longer than {MAX_SUBJECT_CHARS} characters")
        if any(ch in subject for ch in "\r\n"):
            raise SignoffError("the subject must be one line")
        return workflow.intake(for_tenant(self._domain_db(workflow), tenant_id),
                               tenant_id=tenant_id, email=email, subject=subject, body=body)

    def model_settings(self) -> dict[str, Any]:
        """The planner's and checker's settings as a run records them (no API key)."""
        return {role: {k: v for k, v in dataclasses.asdict(settings).items() if k != "api_key"}
                for role, settings in (("planner", self.planner_settings),
                                       ("checker", self.checker_settings))}

    def resume(self, run_id: str, *, with_current_settings: bool = False) -> RunResult:
        """Continue a run whose process died, from its last checkpoint. A run that started
        under other model settings is refused unless `with_current_settings`."""
        with self._leased(run_id) as record:
            if record.status == "waiting_approval":
                raise NotWaiting(f"run {run_id} is waiting for a human decision; use "
                                 f"`signoff approve|reject|edit {run_id}`")
            if record.terminal or record.status == SHADOW_STATUS:
                raise NotWaiting(f"run {run_id} already ended: {record.status}")
            return self._go_on(record, with_current_settings=with_current_settings)

    def drive_queued(self, run_id: str) -> RunResult | None:
        """Drive a run a worker took from the queue, from its start or its last checkpoint (a
        decision recorded, a driver that died). RunBusy while another process holds it; None,
        touching nothing, when there is nothing to drive (it ended, or waits for a human)."""
        with self._leased(run_id) as record:
            if record.status not in DRIVABLE:
                return None
            if record.models is None:  # registered for the queue: the first driver's settings
                self.runs.set_models(run_id, self.model_settings())
                record = self.runs.get(run_id)
            return self._go_on(record, with_current_settings=False)

    def lapsed_runs(self, *, older_than_s: float, limit: int = 1000) -> list[str]:
        """Ids of runs a worker should go on with that nothing drives: queued or running, not
        changed for `older_than_s`, whose lease is free, expired, or held by a dead process."""
        now = self.clock()
        found = []
        for status in sorted(DRIVABLE):
            for record in self.runs.list(status=status, limit=limit):
                holder = record.lease_owner
                if record.updated_at > now - older_than_s:
                    continue
                if holder is None or (record.lease_expires or 0.0) < now \
                        or holder_is_dead(holder):
                    found.append(record.run_id)
        return found

    def prune(self, older_than_s: float) -> PruneResult:
        """Delete the checkpoints of runs that finished more than `older_than_s` ago
        (checkpoints.prune); the registry, traces and audit keep what happened."""
        return prune_finished(self.backend, older_than_s, now=self.clock())

    def _go_on(self, record: RunRecord, *, with_current_settings: bool) -> RunResult:
        """Drive a leased run on from where its checkpoints stand (from its start without any),
        under the model settings it started with."""
        run_id = record.run_id
        current = self.model_settings()
        changed = _changed_settings(record.models, current)
        if changed and not with_current_settings:
            raise SignoffError(
                f"run {run_id} started under other model settings ({'; '.join(changed)}); "
                "resume it under the same ones, or pass --with-current-settings")
        if changed:
            self.runs.set_models(run_id, current)
        workflow = get_workflow(record.workflow)
        recorder = self._recorder(workflow)
        with self._checkpointer() as saver:
            started = saver.get_tuple(thread_config(run_id)) is not None  # type: ignore[arg-type]
            if started and recorder is not None:
                # The drive that died may have saved nodes' events it never wrote.
                try:
                    recorder.write(events_in_history(saver, run_id))
                except ValueError as exc:  # checked before anything is written
                    raise SignoffError(f"run {run_id}'s checkpoints hold an unreadable "
                                       f"trace event: {exc}") from None
        payload: Any = None if started else record.inputs
        return self._drive(record, workflow, payload)

    def decide(self, run_id: str, payload: dict[str, Any], *,
               held: str | None = None, queue: bool = False) -> RunResult:
        """Apply a human decision (approve, reject or edit) to a waiting run.

        `held` is the digest (graph.approvals.held_digest) of the call the decider saw; when
        given and the run now waits on another call, StaleDecision is raised and nothing changes.
        With `queue`, the decision is checked and recorded (the approve node runs, its
        checkpoint and audit entry written) and the run stops there as "queued", for a worker
        to go on with (`drive_queued`); nothing after the decision runs here.
        """
        with self._leased(run_id) as record:
            if record.status != "waiting_approval":
                raise NotWaiting(f"run {run_id} is not waiting for a decision "
                                 f"(status: {record.status})")
            if held is not None and held != held_digest(record.pending):
                raise StaleDecision(f"run {run_id} no longer holds call {held}; it holds "
                                    f"{held_digest(record.pending)}: look again, then decide")
            workflow = get_workflow(record.workflow)
            self.require_checkpoints(run_id)
            policy, policy_error = self.load_policy(workflow)
            if policy is None:
                raise BadDecision(f"cannot accept a decision: {policy_error}")
            held_gate = (record.pending or {}).get("gate") or {}
            decision, _ = check_decision(payload, requester=record.requester, policy=policy,
                                         tenant_id=record.tenant_id,
                                         requester_role=record.requester_role,
                                         required_roles=held_gate.get("approver_roles"),
                                         customer=((record.inputs or {}).get("ticket") or {})
                                         .get("customer_email"))
            if decision.action == "edit":
                # An edit names the arguments it changes; the rest stay as held.
                held_call = (record.pending or {}).get("proposal") or {}
                tool = held_call.get("tool", "")
                spec = workflow.tools().get(tool)
                if spec is None:
                    raise BadDecision(f"the held call's tool {tool!r} is unknown")
                merged = {**(held_call.get("args") or {}), **(decision.args or {})}
                try:
                    spec.parse_args(merged)
                except ValidationError as exc:
                    raise BadDecision(f"edited arguments fail {tool}'s schema: "
                                      f"{validation_summary(exc)}") from None
                decision = decision.model_copy(update={"args": merged})
            return self._drive(record, workflow, Command(resume=decision.model_dump()),
                               stop_after=("approve",) if queue else ())

    def require_checkpoints(self, run_id: str) -> None:
        """Raise DamagedData when a run that must have checkpoints (it waits for a decision)
        has none: checkpoints.db was emptied, truncated or replaced, and driving it would
        start the graph over on no state."""
        with self._checkpointer() as saver:
            if saver.get_tuple(thread_config(run_id)) is None:  # type: ignore[arg-type]
                raise DamagedData(
                    f"run {run_id} waits for a decision but the checkpoints in "
                    f"{self.backend.where('checkpoints')} hold none of it (emptied, "
                    "truncated or replaced); restore them from a backup")

    def status(self, run_id: str) -> RunRecord:
        return self.runs.get(run_id)

    def usage(self, run_id: str) -> Usage | None:
        """What the run has spent, from its latest checkpoint; None before its first one.
        Raises DamagedData for a waiting run whose checkpoints are gone."""
        return self.state(run_id).get("usage")

    def state(self, run_id: str) -> dict[str, Any]:
        """The run's graph state at its latest checkpoint (empty before its first one).
        Raises DamagedData for a waiting run whose checkpoints are gone."""
        record = self.runs.get(run_id)  # an unknown run id is a one-line error
        if record.status == "waiting_approval":
            self.require_checkpoints(run_id)
        with self._checkpointer() as saver:
            graph = self._compiled(get_workflow(record.workflow), saver)
            values = graph.get_state(thread_config(run_id)).values  # type: ignore[arg-type]
        return dict(values)

    def ticket(self, workflow_name: str, ticket_id: str | None = None, *,
               text: str | None = None, email: str | None = None, tenant_id: str = "acme",
               subject: str = "Support request") -> SampleTicket:
        """The ticket a new run works on: a sample ticket by id, or free text filed by intake
        (what `signoff run` and the service's start-a-run both take)."""
        workflow = get_workflow(workflow_name)
        if text is not None:
            if ticket_id is not None:
                raise SignoffError("give a sample ticket id or text, not both")
            if not email:
                raise SignoffError("ticket text needs the email of the customer who wrote it")
            return self.intake(workflow.name, tenant_id=tenant_id, email=email,
                               subject=subject, body=text)
        if ticket_id is None:
            raise SignoffError("give a sample ticket id (e.g. TKT-1001) or ticket text")
        known = {t.ticket_id: t for t in workflow.sample_tickets()}
        if ticket_id not in known:
            raise SignoffError(f"unknown sample ticket {ticket_id!r} (known: {', '.join(known)})")
        return known[ticket_id]

    # Internals -----------------------------------------------------------------------------

    @contextmanager
    def _leased(self, run_id: str) -> Iterator[RunRecord]:
        self.runs.acquire_lease(run_id, self.owner, self.lease_ttl)
        try:
            yield self.runs.get(run_id)
        finally:
            self.runs.release_lease(run_id, self.owner)

    def _open_domain_db(self, workflow: Workflow) -> Any:
        if self.home.database_url:
            conn = self.backend.connect(domain_store(workflow))
            if not is_installed(conn):
                conn.close()
                raise DamagedData(f"the {workflow.name} data is not installed in "
                                  f"{self.backend.describe()}: install it with "
                                  f"`signoff demo --workflow {workflow.name}` as the owner role")
            return conn
        path = self.home.domain_db(workflow)
        try:
            conn = workflow.open_db(path)
            ensure_ledger(conn)
        except (OSError, ValueError, sqlite3.DatabaseError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DamagedData(f"cannot open the {workflow.name} database: {message}") from None
        return conn

    def _requester_role(self, workflow: Workflow, policy: Policy | None, requester: str,
                        ticket: SampleTicket) -> str | None:
        """The role recorded with the run (opening the domain db also checks it is usable)."""
        db = for_tenant(self._domain_db(workflow), ticket.tenant_id)
        if workflow.requester_role is not None:
            return workflow.requester_role(db, requester, ticket)
        roles = policy.roles_of(requester, ticket.tenant_id) if policy else []
        return roles[0] if roles else None

    def _models(self, workflow: Workflow) -> tuple[BaseChatModel, BaseChatModel]:
        """The planner and checker, built once per workflow: chat models hold no run state."""
        if workflow.name not in self._model_cache:
            try:
                self._model_cache[workflow.name] = (
                    make_chat_model(self.planner_settings, workflow.planner()),
                    make_chat_model(self.checker_settings, workflow.checker()))
            except ValueError as exc:
                raise SignoffError(str(exc)) from None
        models = self._model_cache[workflow.name]
        for role, model in zip(("planner", "checker"), models, strict=True):
            name = model_name_of(model)
            if self._price(name, 0, 0) is None:
                raise SignoffError(
                    f"the {role} model {name!r} has no price: add it to the price table that "
                    "SIGNOFF_PRICES names (a local model can cost 0) before running it")
        return models

    def _registry(self, workflow: Workflow) -> ToolRegistry:
        """The workflow's tools, built once per runner (so a fault plan's "first N calls fail"
        counts calls across the runner's drives, as a flaky back end would)."""
        if workflow.name not in self._registries:
            self._registries[workflow.name] = workflow.tools(self.tool_faults)
        return self._registries[workflow.name]

    def _drive(self, record: RunRecord, workflow: Workflow, payload: Any, *,
               fresh: bool = False, stop_after: tuple[str, ...] = ()) -> RunResult:
        """Drive the run's graph until it ends or waits (or, with `stop_after`, once one of
        those nodes ran: then it stands queued). Should that fail on an error, the run is
        never left "running" with nothing driving it: see `_settle`."""
        driven: list[bool] = []
        try:
            return self._drive_graph(record, workflow, payload, driven, stop_after)
        except Exception as exc:
            try:
                self._settle(record, workflow, exc, driven=bool(driven) or fresh)
            except Exception:  # noqa: BLE001 - the registry itself failed; report the cause
                pass
            raise

    def _settle(self, record: RunRecord, workflow: Workflow, exc: Exception, *,
                driven: bool) -> None:
        """Put a run whose drive failed on `exc` where its checkpoints say it is: still
        waiting for a decision, or at its end. A run the graph moved on (or a new one that
        never got going) otherwise ends as failed with the reason; one that was not driven
        at all (a store failed to open) is left as it was."""
        reason = f"stopped by an error: {type(exc).__name__}: {_first_line(exc)}"
        try:
            with self._checkpointer() as saver:
                snapshot = self._compiled(workflow, saver).get_state(
                    thread_config(record.run_id))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - the checkpoints cannot tell; the registry can
            snapshot = None
        if snapshot is not None and snapshot.interrupts:
            held, pending = _held(snapshot.interrupts[0].value)
            self.runs.set_status(record.run_id, "waiting_approval", reason=held,
                                 pending=pending, release=self.owner)
        elif driven:
            self.runs.set_status(record.run_id, "failed", reason=reason, release=self.owner)
        else:
            self.runs.set_status(record.run_id, record.status, reason=record.reason,
                                 pending=record.pending, release=self.owner)

    def _flush_outbox(self, recorder: Recorder) -> None:
        """Write the events earlier drives parked, oldest first. While they still cannot be
        written, raise DamagedData before anything runs: fail closed, so no new mutation
        commits while an earlier one's audit entry is missing."""
        for batch, _run_id, events in self.runs.parked_events():
            try:
                recorder.write(events)
            except STORE_ERRORS as exc:
                waiting = len(self.runs.parked_events())
                raise DamagedData(
                    f"the trace and audit stores cannot be written ({_first_line(exc)}): "
                    f"{waiting} batch(es) of earlier events wait in the outbox of "
                    f"{self.backend.where('control')}, and no run goes on until they are "
                    "written; repair or restore traces.db and audit.db") from None
            self.runs.unpark_events(batch)
            self._note_audit_head(recorder)

    def _note_audit_head(self, recorder: Recorder) -> None:
        """Keep the audit log's head in the run registry after a write, so a plain `signoff
        audit verify` notices entries dropped from the log, or the log deleted."""
        head = getattr(recorder, "audit_head", None)  # a stand-in recorder may keep no log
        if head is not None:
            self.runs.note_audit_head(*head())

    def _write_events(self, recorder: Recorder, run_id: str, events: list[Any]) -> str | None:
        """Write a drive's events; should the stores fail, park them in the outbox and return
        the warning to report (what the drive did stands)."""
        try:
            recorder.write(events)
            self._note_audit_head(recorder)
        except STORE_ERRORS as exc:
            self.runs.park_events(run_id, events, _first_line(exc))
            return (f"the run's trace and audit events could not be written "
                    f"({_first_line(exc)}); {len(events)} event(s) wait in the outbox of "
                    f"{self.backend.where('control')} and are written before the next run "
                    "goes on, once traces.db and audit.db work again")
        return None

    def _drive_graph(self, record: RunRecord, workflow: Workflow, payload: Any,
                     driven: list[bool], stop_after: tuple[str, ...] = ()) -> RunResult:
        policy, policy_error = self.load_policy(workflow)
        planner, checker = self._models(workflow)
        # Every transaction of the drive sets the run's tenant first (row-level security on
        # PostgreSQL): the tenant comes from the run's record, never from what a model wrote.
        db = for_tenant(self._domain_db(workflow), record.tenant_id)
        recorder = self._recorder(workflow)
        if recorder is not None:
            self._flush_outbox(recorder)
        try:
            ctx = RunContext(
                run_id=record.run_id, tenant_id=record.tenant_id, requester=record.requester,
                workflow=workflow, registry=self._registry(workflow), policy=policy,
                policy_error=policy_error, planner=planner, checker=checker, db=db,
                runs=self.runs, recorder=recorder, clock=self.clock, sleep=self.sleep,
                price=self._price,
                faults=self.faults, requester_role=record.requester_role,
                events_in_writes=recorder is not None,
                planner_settings=self.planner_settings, checker_settings=self.checker_settings)
            # The drive's trace and audit events, written once when it ends: the run's start
            # (saved with the input), each node's (saved with its writes), the finish.
            events: list[Any] = []
            if recorder is not None and isinstance(payload, dict):
                with recorder.capture() as events:
                    recorder.start_run(
                        record.run_id, workflow=workflow.name,
                        workflow_version=workflow.version,
                        policy_version=policy.version if policy else None,
                        tenant_id=record.tenant_id, team=workflow.team,
                        requester=record.requester, customer_id=record.customer_id,
                        ticket_id=record.ticket_id, inputs=payload.get("ticket", {}))
                payload = {**payload, EVENTS: list(events)}
            with self._checkpointer() as saver:
                graph = self._compiled(workflow, saver)
                # Only once everything the drive needs has opened: a bad file must leave a
                # waiting run waiting.
                if record.status != "running" or record.reason or record.pending:
                    self.runs.set_status(record.run_id, "running")  # a fresh run already is
                config = thread_config(record.run_id)
                renewed = self.clock()
                held = ""
                breakpoints = ["execute"] if self.shadow else None
                driven.append(True)
                try:
                    while True:
                        for chunk in graph.stream(payload, config,  # type: ignore[call-overload]
                                                  context=ctx, durability=DURABILITY,
                                                  stream_mode="updates",
                                                  interrupt_before=breakpoints,
                                                  interrupt_after=list(stop_after) or None):
                            for update in chunk.values():
                                if isinstance(update, dict) and EVENTS in update:
                                    events.extend(update[EVENTS])
                            # Renewing is a committed write; once a quarter of the TTL is plenty.
                            if self.clock() - renewed >= self.lease_ttl / 4:
                                self.runs.renew_lease(record.run_id, self.owner, self.lease_ttl)
                                renewed = self.clock()
                        snapshot = graph.get_state(config)  # type: ignore[arg-type]
                        # Shadow mode breaks before execute, the only node that mutates.
                        held = (snapshot.values.get("proposal") or {}).get("tool", "")
                        spec = ctx.registry.get(held)
                        if snapshot.next != ("execute",) or spec is None or spec.mutates \
                                or stop_after:
                            break
                        payload = None
                except BaseException:
                    # Should the process die before this, `resume` writes them from the
                    # checkpoint history.
                    if recorder is not None and events:
                        self._write_events(recorder, record.run_id, events)
                    raise
            values = snapshot.values
            reason: str | None
            if self.shadow and (snapshot.interrupts or snapshot.next == ("execute",)):
                status, pending = SHADOW_STATUS, {k: values.get(k)
                                                  for k in ("proposal", "gate", "verdict")}
                gate = pending.get("gate") or {}
                reason = (f"shadow: recommends {held} ({gate.get('tier')} by "
                          f"{gate.get('rule_id')}); not executed")
            elif snapshot.interrupts:
                status = "waiting_approval"
                reason, pending = _held(snapshot.interrupts[0].value)
            elif stop_after and snapshot.next:
                approval = values.get("approval") or {}
                status, pending = QUEUED_STATUS, None
                reason = (f"decision recorded ({approval.get('action')} by "
                          f"{approval.get('by')}); queued for a worker")
            else:
                status = values.get("outcome") or "failed"
                reason, pending = values.get("reason"), None
                if recorder is not None:
                    with recorder.capture() as finish:
                        recorder.finish_run(record.run_id, outcome=status, reason=reason)
                    events.extend(finish)
            warning = None
            if recorder is not None and events:
                # One transaction per store for the whole drive. The outcome is what it is
                # whether or not this lands: a failed write is a warning, never the result.
                warning = self._write_events(recorder, record.run_id, events)
            # The drive is over: the status and the lease's release are one committed write (the
            # callers' own release then finds nothing to do).
            self.runs.set_status(record.run_id, status, reason=reason, pending=pending,
                                 release=self.owner)
            return RunResult(run_id=record.run_id, status=status, reason=reason,
                             pending=pending, mutations=values.get("mutations", 0),
                             ticket_id=record.ticket_id, usage=values.get("usage"),
                             warnings=(warning,) if warning else ())
        except BaseException:
            if db.in_transaction:
                db.rollback()  # never leave a half-done transaction on the shared connection
            raise


def _requester(requester: str) -> str:
    """The requester's identity, normalised; a one-line SignoffError when it is unusable."""
    try:
        return normalize_identity(requester)
    except BadIdentity as exc:
        raise SignoffError(f"invalid requester: {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _held(pending: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registry's reason and pending for a run waiting at an approval interrupt."""
    gate = pending.get("gate") or {}
    return f"held by {gate.get('rule_id')}: {gate.get('reason')}", pending


def _changed_settings(started: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """Each model setting that differs from the run's recorded ones, as `role.name: a -> b`;
    none for a run registered before settings were recorded."""
    if started is None:
        return []
    return [f"{role}.{name}: {value!r} -> {current[role].get(name)!r}"
            for role in sorted(current) for name, value in sorted(started.get(role, {}).items())
            if current[role].get(name) != value]
