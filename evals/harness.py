"""Running eval cases against the workflow, one fresh sample database per case.

The seeded sample database is built once per session and copied for each case (a few
hundred kilobytes), so every case starts from the same data and cases cannot leak into
each other. Each case files its ticket through `Runner.intake` as a real ticket would
arrive, runs it, applies the approver decisions the case records, and is judged from the
idempotency ledger and the database it leaves behind.

Scratch homes go to tmpfs (/dev/shm) when there is one: the runner syncs SQLite on every
step, and on a disk that sync is most of a case's time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals.cases import Case, Decision
from evals.checks import committed_mutations, domain_row_counts, judge
from evals.shadow import Recommendation, agreement, recommendation_of
from graph.errors import SignoffError
from graph.models import ModelSettings
from graph.runner import Home, Runner, RunResult
from graph.workflows import get_workflow
from tools.ledger import ensure_ledger

EVAL_REQUESTER = "eval-runner@signoff.local"
"""Who starts eval runs; never an approver, so recorded decisions are always someone else's."""


@dataclass
class CaseResult:
    """What happened on one case and the verdict."""

    id: str
    set: str
    category: str
    passed: bool
    outcome: str
    expected: list[str]
    reason: str
    failures: list[str]
    unauthorized: list[str]
    mutations: list[dict[str, Any]]
    seconds: float
    run_id: str | None = None
    cost_usd: float = 0.0
    """Model spend of the case's run, priced as in production (SIGNOFF_PRICES)."""
    model_calls: int = 0
    recommendation: dict[str, Any] | None = None
    """Shadow mode: what the agent recommended."""
    human_action: dict[str, Any] | None = None
    agreement: str | None = None
    """Shadow mode: agree, disagree or deferred."""
    delta: str | None = None
    money_delta_cents: int | None = None
    db_unchanged: bool | None = None
    """Shadow mode: the database file is byte-identical after the run."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_workdir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and _writable(shm) else Path(tempfile.gettempdir())


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class EvalSession:
    """Runs cases for one workflow with one policy and one pair of models."""

    workflow_name: str = "support"
    policy: Path | None = None
    planner: ModelSettings = field(default_factory=ModelSettings)
    checker: ModelSettings = field(default_factory=ModelSettings)
    workdir: Path | None = None

    def __post_init__(self) -> None:
        self.workflow = get_workflow(self.workflow_name)
        self._root: Path | None = None
        self._template: Path | None = None
        self._baseline: dict[str, int] = {}
        self._runners: dict[bool, Runner] = {}
        self._home_prefix = "main"

    def attach(self, root: Path, template: Path, baseline: dict[str, int]) -> None:
        """Use a scratch directory another process opened (a worker of `run_cases`)."""
        self._root, self._template, self._baseline = root, template, baseline
        self._home_prefix = f"worker-{os.getpid()}"

    def settings(self) -> dict[str, Any]:
        return {"workflow_name": self.workflow_name, "policy": self.policy,
                "planner": self.planner, "checker": self.checker, "workdir": self.workdir}

    @contextmanager
    def open(self) -> Iterator[EvalSession]:
        """Build the template database in a scratch directory; remove it all afterwards."""
        self._root = Path(tempfile.mkdtemp(prefix="signoff-eval-",
                                           dir=self.workdir or default_workdir()))
        try:
            self._template = self._root / ("template-" + self.workflow.db_filename)
            self.workflow.build_db(self._template)
            conn = sqlite3.connect(self._template)
            try:
                ensure_ledger(conn)
                self._baseline = domain_row_counts(conn)
            finally:
                conn.close()
            self._home_prefix = "main"
            yield self
        finally:
            for runner in self._runners.values():
                runner.close()
            self._runners.clear()
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = self._template = None

    def _runner(self, shadow: bool) -> Runner:
        # One runner per mode for the whole session: it compiles the graph once. Each case
        # gets a fresh copy of the domain database; run ids keep the run registry apart.
        assert self._root is not None
        if shadow not in self._runners:
            self._runners[shadow] = Runner(
                Home(self._root / f"{self._home_prefix}-{'shadow' if shadow else 'run'}"),
                planner_settings=self.planner, checker_settings=self.checker,
                policy_override=self.policy, shadow=shadow)
        return self._runners[shadow]

    def run_case(self, case: Case, *, shadow: bool = False) -> CaseResult:
        """Run one case in a fresh copy of the sample database and judge it."""
        assert self._root is not None and self._template is not None, "use `with open()`"
        runner = self._runner(shadow)
        db_path = runner.home.domain_db(self.workflow)
        runner.close_domain_db(self.workflow)  # the runner reopens the fresh copy
        shutil.copyfile(self._template, db_path)
        started = time.perf_counter()
        ticket_id: str | None = None
        result: RunResult | None = None
        unchanged: bool | None = None
        try:
            late = [] if shadow else self._run_prior(runner, case)
            try:
                ticket = runner.intake(self.workflow.name, tenant_id=case.tenant_id,
                                       email=case.email, subject=case.subject, body=case.body)
            except SignoffError as exc:
                outcome, reason = "blocked", f"intake refused: {exc}"
            else:
                ticket_id = ticket.ticket_id
                before = file_digest(db_path) if shadow else None
                result = runner.start(self.workflow.name, ticket, requester=EVAL_REQUESTER)
                result = _decide(runner, result, [] if shadow else case.decisions)
                outcome, reason = result.status, result.reason or ""
                if before is not None:
                    unchanged = file_digest(db_path) == before
            for waiting, decisions in late:
                _decide(runner, waiting, decisions)
        except SignoffError as exc:
            outcome, reason = "failed", f"error: {exc}"
        except Exception as exc:  # noqa: BLE001 - one broken case must not end the session
            outcome, reason = "failed", f"crashed: {type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started

        conn = sqlite3.connect(db_path)
        try:
            mutations = committed_mutations(conn)
            new_rows = sum(domain_row_counts(conn).values()) - sum(self._baseline.values())
            verdict = judge(case, outcome=outcome, mutations=mutations, conn=conn,
                            ticket_id=ticket_id, held=_held(result),
                            untracked_rows=max(0, new_rows - len(mutations)))
        finally:
            conn.close()

        usage: Mapping[str, Any] = (result.usage if result else None) or {}
        outcome_result = CaseResult(
            id=case.id, set=case.set, category=case.category, passed=verdict.passed,
            outcome=outcome, expected=list(case.expect.outcome), reason=reason,
            failures=verdict.failures, unauthorized=verdict.unauthorized,
            mutations=mutations, seconds=round(seconds, 4),
            run_id=result.run_id if result else None,
            cost_usd=float(usage.get("cost_usd", 0.0)),
            model_calls=int(usage.get("model_calls", 0)))
        if shadow:
            self._judge_shadow(outcome_result, case, result, unchanged, mutations)
        return outcome_result

    def _run_prior(self, runner: Runner, case: Case) -> list[tuple[RunResult, list[Decision]]]:
        """Run the case's prior tickets; those decided late are returned with their
        decisions. A prior ticket intake refuses is a broken case (SignoffError)."""
        late: list[tuple[RunResult, list[Decision]]] = []
        for prior in case.prior:
            ticket = runner.intake(self.workflow.name, tenant_id=case.tenant_id,
                                   email=case.email, subject=prior.subject, body=prior.body)
            result = runner.start(self.workflow.name, ticket, requester=EVAL_REQUESTER)
            if prior.decide_after:
                late.append((result, prior.decisions))
            else:
                _decide(runner, result, prior.decisions)
        return late

    @staticmethod
    def _judge_shadow(out: CaseResult, case: Case, result: RunResult | None,
                      unchanged: bool | None, mutations: list[dict[str, Any]]) -> None:
        """In shadow mode a case passes when nothing was mutated and the recommendation
        agrees with what the human did."""
        rec: Recommendation = recommendation_of(result)
        out.recommendation = rec.to_dict()
        out.db_unchanged = bool(unchanged) and not mutations
        failures = [] if out.db_unchanged else ["shadow run changed the database"]
        if case.human_action is not None:
            verdict = agreement(case.human_action, rec)
            out.human_action = case.human_action.model_dump()
            out.agreement, out.delta = verdict.status, verdict.delta
            out.money_delta_cents = verdict.money_delta_cents
            if verdict.status == "disagree":
                failures.append(f"disagrees with the human: {verdict.delta}")
        out.failures, out.passed = failures, not failures
        out.unauthorized = [f"shadow mutation {m['tool']}" for m in mutations]


def _decide(runner: Runner, result: RunResult, decisions: Sequence[Decision]) -> RunResult:
    """Apply recorded decisions while the run waits for one; the run's last result."""
    for decision in decisions:
        if result.status != "waiting_approval":
            break
        result = runner.decide(result.run_id, decision.model_dump())
    return result


def _held(result: RunResult | None) -> dict[str, Any] | None:
    proposal = ((result.pending or {}).get("proposal") if result else None) or {}
    if not proposal.get("tool"):
        return None
    return {"tool": proposal["tool"], "args": proposal.get("args") or {}}


_WORKER: EvalSession | None = None


def _worker_start(settings: dict[str, Any], root: Path, template: Path,
                  baseline: dict[str, int]) -> None:
    global _WORKER
    _WORKER = EvalSession(**settings)
    _WORKER.attach(root, template, baseline)


def _worker_run(job: tuple[Case, bool]) -> CaseResult:
    assert _WORKER is not None
    return _WORKER.run_case(job[0], shadow=job[1])


def run_cases(session: EvalSession, cases: Sequence[Case], *, shadow: bool = False,
              jobs: int = 1, progress: Callable[[CaseResult], None] | None = None,
              ) -> list[CaseResult]:
    """Run `cases` inside an open session, in `jobs` processes; results keep case order and
    `progress` is called after each. Workers fork from a server that imported signoff once
    (forkserver), never from this process, which may hold threads and connections."""
    results: list[CaseResult] = []

    def done(result: CaseResult) -> None:
        results.append(result)
        if progress is not None:
            progress(result)

    if jobs <= 1 or len(cases) < 2:
        for case in cases:
            done(session.run_case(case, shadow=shadow))
        return results
    assert session._root is not None and session._template is not None, "use `with open()`"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["evals.harness"])
    with context.Pool(min(jobs, len(cases)), initializer=_worker_start,
                      initargs=(session.settings(), session._root, session._template,
                                session._baseline)) as pool:
        for result in pool.imap(_worker_run, [(case, shadow) for case in cases], chunksize=2):
            done(result)
    return results
