"""The crash harness: kill the sample workflow at many points, recover, and count the damage.

How it works:
1. For each scenario (a sample ticket, and the decision a human makes if the run waits) a
   template data directory is built once, and the scenario is run to its end without faults
   to measure what a correct run leaves behind (its outcome and its mutation rows) and how many
   kill points its first action passes.
2. A kill plan names a scenario and, for the first action and each recovery action after it,
   the kill point to die at. Each action runs in a child forked from an already-imported
   process; the child builds its own Runner (so its lease names its own pid) and, at the chosen
   hook hit, writes the point's label to a pipe and SIGKILLs itself.
3. After each kill the parent of the child reaps it, reads the run registry and recovers the
   way an operator would: `resume` while the run is `running`, the human's decision again if it
   is waiting (counted as re-asked when the decision had not been saved yet, as a lost approval
   when it had), until the run is terminal.
4. It then counts refunds, notes, escalations and ledger rows of the run against the measured
   reference: a row too many is a duplicate mutation, a row too few a lost one.

`python -m checkpoints.soak --kills 1000` runs every single kill point of every scenario and
then random multi-kill plans (a crash during the recovery of a crash) until N kills happened.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from checkpoints.backend import PostgresBackend, SqliteBackend, open_backend
from checkpoints.domain import install_domain
from checkpoints.external import api_refunds, payments_service
from checkpoints.faults import CrashFaults, point_kind
from checkpoints.pgreset import drop_prefix, reset_prefix, reset_script
from checkpoints.runs import RunRecord, RunStore
from graph.errors import StoreUnavailable
from graph.runner import Home, Runner

REQUESTER = "agent-ops@acme.example"
APPROVER = "lead@acme.example"
MUTATION_TABLES = ("refunds", "ticket_notes", "escalations", "mutation_ledger")
MAX_ACTIONS = 12
"""Recovery actions per plan before a run that never ends counts as not terminal."""

Action = Literal["start", "decide", "resume"]


@dataclass(frozen=True)
class Scenario:
    """A sample ticket driven through one action that the harness kills."""

    name: str
    ticket_id: str
    kill_in: Literal["start", "decide"]
    """The action whose kill points are enumerated; "decide" starts from a waiting run."""
    decision: dict[str, Any] | None = None
    """What the human decides when the run waits."""


API_SCENARIOS = ("refund", "to-approval", "globex")
"""Scenarios that refund in a new run: a "decide" scenario's template holds one run whose
copies would share idempotency keys at the one API (and so one refund)."""

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("refund", "TKT-1001", "start"),
    Scenario("approve", "TKT-1002", "decide",
             {"action": "approve", "by": APPROVER, "reason": "receipt checked"}),
    Scenario("to-approval", "TKT-1002", "start",
             {"action": "approve", "by": APPROVER, "reason": "receipt checked"}),
    Scenario("edit", "TKT-1002", "decide",
             {"action": "edit", "by": APPROVER, "reason": "partial refund",
              "args": {"amount_cents": 4500}}),
    Scenario("reject", "TKT-1002", "decide",
             {"action": "reject", "by": APPROVER, "reason": "no receipt"}),
    Scenario("status-note", "TKT-1005", "start"),
    Scenario("duplicate-charge", "TKT-1004", "start"),
    Scenario("globex", "TKT-2001", "start",
             {"action": "approve", "by": "lead@globex.example", "reason": "ok"}),
)}


@dataclass(frozen=True)
class Template:
    """A scenario's prepared data directory and the reference a correct run leaves."""

    scenario: Scenario
    home: Path
    run_id: str | None
    """Set for "decide" scenarios, whose template holds the waiting run."""
    points: tuple[str, ...]
    """Labels of the kill points the killed action passes, in order."""
    outcome: str
    rows: dict[str, int]
    """Rows per mutation table the run wrote."""
    database_url: str | None = None
    """Set to run each plan with every store on PostgreSQL, in schemas under `schema_prefix`
    (the copied directory then holds no run)."""
    schema_prefix: str = ""
    source_prefix: str = ""
    """On PostgreSQL: the prefix whose stores hold the state the killed action starts from
    (upgraded, the sample data installed, and a "decide" scenario's waiting run); each plan's
    stores are reset to its rows (checkpoints.pgreset)."""


@dataclass(frozen=True)
class KillPlan:
    scenario: str
    kills: tuple[int, ...]
    """Hook hit to die at, for the first action and then each recovery action."""


@dataclass
class PlanReport:
    """What happened to one kill plan."""

    plan: KillPlan
    killed_at: list[str] = field(default_factory=list)
    resumes: int = 0
    reasked: int = 0
    """Decisions asked again because the process died before the decision was saved."""
    lost_approvals: int = 0
    """Decisions asked again although they had been saved."""
    duplicates: int = 0
    missing: int = 0
    outcome: str = ""
    terminal: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.terminal and not self.duplicates and not self.missing
                and not self.lost_approvals and not self.errors)


# Running one action in a child --------------------------------------------------------------

def _ticket(ticket_id: str) -> Any:
    from graph.workflows import get_workflow

    return {t.ticket_id: t for t in get_workflow("support").sample_tickets()}[ticket_id]


def as_home(home: Home | Path) -> Home:
    """`home`, or the SQLite data directory at that path."""
    return home if isinstance(home, Home) else Home(home)


def run_action(home: Home | Path, scenario: Scenario, action: Action, run_id: str | None,
               kill_at: int | None = None, faults: CrashFaults | None = None) -> str:
    """Do one action in this process; returns the run's status afterwards."""
    runner = Runner(as_home(home), faults=faults or CrashFaults(kill_at))
    try:
        if action == "start":
            return runner.start("support", _ticket(scenario.ticket_id),
                                requester=REQUESTER).status
        assert run_id is not None
        if action == "decide":
            assert scenario.decision is not None
            return runner.decide(run_id, scenario.decision).status
        return runner.resume(run_id).status
    finally:
        runner.close()


def forked_action(home: Home | Path, scenario: Scenario, action: Action, run_id: str | None,
                  kill_at: int | None) -> tuple[str, str, bool]:
    """Run `action` in a forked child; returns ("killed", label, decision_saved),
    ("done", status, False) or ("error", message, False)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's stack
        os.close(read_fd)
        code = 0
        try:
            status = run_action(home, scenario, action, run_id,
                                faults=CrashFaults(kill_at, report_fd=write_fd))
            os.write(write_fd, f"done\t{status}\n".encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            message = " ".join(f"{type(exc).__name__}: {exc}".split())
            os.write(write_fd, f"error\t{message}\n".encode())
            code = 1
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, wait_status = os.waitpid(pid, 0)  # reap it: a zombie's pid still looks alive
    line = b"".join(chunks).decode().strip()
    if os.WIFSIGNALED(wait_status):
        label, _, saved = line.partition("\t")
        return "killed", label or "unknown", saved == "1"
    kind, _, detail = line.partition("\t")
    return (kind or "error"), (detail or f"child exited {wait_status}"), False


# Checking a run against its reference --------------------------------------------------------

def mutation_rows(home: Home | Path, run_id: str) -> dict[str, int]:
    """Rows per mutation table the run wrote, and, when the harness runs a payments service,
    the refunds its own database holds for the run ("api_refunds")."""
    with closing(as_home(home).open_backend()) as backend:
        conn = backend.connect("support")  # the support workflow's store (support.db)
        try:
            rows = {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?",
                                        (run_id,)).fetchone()[0]
                    for table in MUTATION_TABLES}
        finally:
            conn.close()
    at_api = api_refunds(run_id)
    if at_api is not None:
        rows["api_refunds"] = at_api
    return rows


def only_run_id(home: Home | Path) -> str | None:
    backend = as_home(home).open_backend()
    try:
        store = RunStore.open(backend)
        try:
            ids = [r.run_id for r in store.list(limit=2)]
        finally:
            store.close()
    finally:
        backend.close()
    if len(ids) > 1:
        raise RuntimeError(f"{home} holds {len(ids)} runs; a template holds one")
    return ids[0] if ids else None


def plan_home(template: Template, root: Path) -> Home:
    """The data directory `root` (a copy of the template's); on PostgreSQL with stores of its
    own under a new prefix, upgraded, and the sample data installed (no run yet)."""
    if template.database_url is None:
        return Home(root)
    home = Home(root, database_url=template.database_url,
                schema_prefix=f"{template.schema_prefix}{uuid.uuid4().hex[:8]}_")
    backend = home.open_backend()
    try:
        backend.upgrade()
        # The template's sample data, installed in this plan's own store.
        install_domain(backend, "support", root / "support.db")
    finally:
        backend.close()
    return home


_REUSED: dict[tuple[int, str], str] = {}
"""(process id, template prefix) -> the prefix that process resets for each of its plans."""
_SCRIPTS: dict[tuple[str, str], str] = {}
"""(source prefix, reused prefix) -> its checkpoints.pgreset.reset_script."""


def reset_home(template: Template, root: Path) -> Home:
    """The data directory `root` on PostgreSQL, on this process's own prefix (made with
    `plan_home` the first time), every store reset to the rows of the template's source: the
    state the killed action starts from, without upgrading and installing for every plan."""
    assert template.database_url is not None and template.source_prefix
    key = (os.getpid(), template.schema_prefix)
    if key in _REUSED:
        home = Home(root, database_url=template.database_url, schema_prefix=_REUSED[key])
    else:
        home = plan_home(template, root)
        _REUSED[key] = home.schema_prefix
    import psycopg

    pair = (template.source_prefix, home.schema_prefix)
    with psycopg.connect(template.database_url, autocommit=True) as raw:
        if pair not in _SCRIPTS:
            _SCRIPTS[pair] = reset_script(raw, *pair)
        reset_prefix(raw, _SCRIPTS[pair])
    return home


def _start_waiting(home: Home, scenario: Scenario) -> str:
    status = run_action(home, scenario, "start", None)
    run_id = only_run_id(home)
    if status != "waiting_approval" or run_id is None:
        raise RuntimeError(f"scenario {scenario.name}: the run did not wait ({status})")
    return run_id


def execute_plan(template: Template, plan: KillPlan, workdir: Path) -> PlanReport:
    """Copy the template, run the plan's actions with their kills, recover, and check."""
    report = PlanReport(plan)
    scenario = template.scenario
    root = Path(tempfile.mkdtemp(prefix=f"{scenario.name}-", dir=workdir))
    shutil.rmtree(root)
    shutil.copytree(template.home, root)
    try:
        home = plan_home(template, root) if template.database_url is None \
            else reset_home(template, root)
        action: Action = scenario.kill_in
        run_id = template.run_id
        in_flight = saved_before_kill = False  # a decision sent by a process that died
        for attempt in range(MAX_ACTIONS):
            kill_at = plan.kills[attempt] if attempt < len(plan.kills) else None
            result, detail, saved = forked_action(home, scenario, action, run_id, kill_at)
            if result == "error":
                report.errors.append(f"{action}: {detail}")
                break
            if result == "killed":
                report.killed_at.append(detail)
                in_flight = in_flight or action == "decide"
                saved_before_kill = saved_before_kill or saved
            elif action == "decide":
                in_flight = saved_before_kill = False
            run_id = run_id or only_run_id(home)
            if run_id is None:  # died before the run was registered: start it again
                action = "start"
                continue
            record = run_record(home, run_id)
            if record.terminal:
                report.terminal, report.outcome = True, record.status
                break
            if record.status != "waiting_approval":
                report.resumes += 1
                action = "resume"
                continue
            if scenario.decision is None:
                report.errors.append("the run waits for a decision the scenario does not make")
                break
            if in_flight:  # the human's command died; the run asks for the decision again
                if saved_before_kill:
                    report.lost_approvals += 1
                else:
                    report.reasked += 1
            in_flight = saved_before_kill = False
            action = "decide"
        if run_id is not None:
            rows = mutation_rows(home, run_id)
            for table, want in template.rows.items():
                got = rows.get(table, 0)
                report.duplicates += max(0, got - want)
                report.missing += max(0, want - got)
        if report.terminal and report.outcome != template.outcome:
            report.errors.append(f"ended {report.outcome}, a run without faults ends "
                                 f"{template.outcome}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return report


def run_record(home: Home, run_id: str) -> RunRecord:
    backend = home.open_backend()
    try:
        store = RunStore.open(backend)
        try:
            return store.get(run_id)
        finally:
            store.close()
    finally:
        backend.close()


# Templates and references --------------------------------------------------------------------

def prepare_templates(workdir: Path, names: Iterable[str], *, database_url: str | None = None,
                      schema_prefix: str = "") -> dict[str, Template]:
    """Build each scenario's template data directory and measure its fault-free reference;
    with `database_url`, each plan's registry and checkpoints go to PostgreSQL."""
    from graph.workflows import get_workflow

    database_url = unsynced_url(database_url) if database_url else None
    base = workdir / "base"
    runner = Runner(Home(base))
    runner.ensure_domain_db(get_workflow("support"), reset=True)
    runner.close()
    SqliteBackend(base).upgrade()  # every store's file, so each copy starts complete
    templates = {}
    for name in names:
        scenario = SCENARIOS[name]
        home = workdir / f"template-{name}"
        shutil.copytree(base, home)
        reference = workdir / f"reference-{name}"
        shutil.copytree(home, reference)
        draft = Template(scenario=scenario, home=home, run_id=None, points=(), outcome="",
                         rows={}, database_url=database_url, schema_prefix=schema_prefix)
        # The state the killed action starts from; on PostgreSQL in the source prefix plans
        # are reset to. The reference is measured on stores made the ordinary way (not reset
        # copies), so a reset that lost something would show as a mismatch.
        source = plan_home(draft, home)
        waits = scenario.kill_in == "decide"
        draft = dataclasses.replace(draft, run_id=_start_waiting(source, scenario) if waits
                                    else None, source_prefix=source.schema_prefix
                                    if database_url else "")
        if database_url is None:
            shutil.rmtree(reference)
            shutil.copytree(home, reference)
        ref_home = plan_home(draft, reference)
        ref_run = draft.run_id if database_url is None or not waits else \
            _start_waiting(ref_home, scenario)
        counter = CrashFaults()
        status = run_action(ref_home, scenario, scenario.kill_in, ref_run, faults=counter)
        ref_id = ref_run or only_run_id(ref_home)
        assert ref_id is not None
        if status == "waiting_approval" and scenario.decision is not None:
            status = run_action(ref_home, scenario, "decide", ref_id)
        templates[name] = dataclasses.replace(draft, points=tuple(counter.labels),
                                              outcome=status, rows=mutation_rows(ref_home, ref_id))
        shutil.rmtree(reference)
    return templates


def unsynced_url(url: str) -> str:
    """`url` with `synchronous_commit=off` for its sessions.

    As with tmpfs below: the harness kills clients, never the server, and a commit is visible
    to every other session the moment it returns, synced or not; it only spares each of the
    many short runs a wait for the disk.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([v for k, v in query if k == "options"] + ["-csynchronous_commit=off"])
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def scratch_root() -> str | None:
    """A RAM-backed directory for the throwaway data directories when there is one.

    A SIGKILL loses no write that reached the OS, with or without fsync, so tmpfs changes no
    result here; it only makes each of the many short runs faster.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# Campaigns -----------------------------------------------------------------------------------

def single_kill_plans(templates: dict[str, Template]) -> list[KillPlan]:
    """One plan per kill point of every scenario's killed action."""
    return [KillPlan(name, (k,)) for name, t in templates.items()
            for k in range(1, len(t.points) + 1)]


def multi_kill_plans(templates: dict[str, Template], rng: random.Random,
                     count: int) -> list[KillPlan]:
    """Plans that also kill the recovery: a crash while resuming after a crash."""
    names = sorted(templates)
    plans = []
    for _ in range(count):
        name = rng.choice(names)
        n = len(templates[name].points)
        plans.append(KillPlan(name, tuple(rng.randint(1, n) for _ in range(rng.randint(2, 3)))))
    return plans


def _execute(args: tuple[Template, KillPlan, Path]) -> PlanReport:
    return execute_plan(*args)


def run_plans(templates: dict[str, Template], plans: Sequence[KillPlan], workdir: Path,
              workers: int) -> list[PlanReport]:
    """Execute plans, in `workers` forked processes when more than one."""
    jobs = [(templates[p.scenario], p, workdir) for p in plans]
    if workers <= 1:
        return [_execute(job) for job in jobs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return list(pool.imap_unordered(_execute, jobs, chunksize=4))


@dataclass(frozen=True)
class Summary:
    plans: int
    kills: int
    kinds: dict[str, int]
    scenarios: int
    resumes: int
    reasked: int
    duplicates: int
    missing: int
    lost_approvals: int
    terminal: int
    failures: list[str]


def summarize(reports: Sequence[PlanReport]) -> Summary:
    kinds = Counter(point_kind(label) for r in reports for label in r.killed_at)
    failures = [f"{r.plan.scenario} kills={r.plan.kills} at={r.killed_at}: "
                f"terminal={r.terminal} outcome={r.outcome} duplicates={r.duplicates} "
                f"missing={r.missing} lost_approvals={r.lost_approvals} {'; '.join(r.errors)}"
                for r in reports if not r.ok]
    return Summary(
        plans=len(reports), kills=sum(kinds.values()), kinds=dict(sorted(kinds.items())),
        scenarios=len({r.plan.scenario for r in reports}),
        resumes=sum(r.resumes for r in reports), reasked=sum(r.reasked for r in reports),
        duplicates=sum(r.duplicates for r in reports), missing=sum(r.missing for r in reports),
        lost_approvals=sum(r.lost_approvals for r in reports),
        terminal=sum(r.terminal for r in reports), failures=failures)


def format_summary(s: Summary, seconds: float) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in s.kinds.items())
    return "\n".join([
        f"kill points: {s.kills} SIGKILLs over {s.plans} runs in {s.scenarios} scenarios "
        f"({kinds})",
        f"recovered: {s.resumes} resume(s); {s.reasked} decision(s) asked again because the "
        "process died before saving them",
        f"duplicates={s.duplicates} missing mutations={s.missing} "
        f"lost approvals={s.lost_approvals} terminal runs={s.terminal}/{s.plans}",
        f"time: {seconds:.1f}s",
    ])


def _drop_schemas(url: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as raw:
        drop_prefix(raw, prefix)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m checkpoints.soak",
        description="SIGKILL the sample workflow at many points, recover, count the damage.")
    parser.add_argument("--kills", type=int, default=1000, help="Kills to deliver (>= 1).")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="Only these scenarios (repeatable; default: all).")
    parser.add_argument("--payments", action="store_true",
                        help="Refund through the sample payments API, run as its own process; "
                             "refunds are also counted in its database.")
    parser.add_argument("--flaky", action="store_true",
                        help="With --payments: the API sometimes commits and then times out "
                             "or drops the connection.")
    parser.add_argument("--no-key", action="store_true",
                        help="With --payments: the control; the tool does not forward "
                             "idempotency keys, and duplicates are expected.")
    parser.add_argument("--database-url", metavar="URL",
                        help="Every store on this PostgreSQL database instead of SQLite, in "
                             "schemas under a soak<hex>_ prefix dropped afterwards; the role "
                             "must not be subject to row-level security (a superuser or "
                             "BYPASSRLS: the harness counts every tenant's rows).")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.workers < 1:
        parser.error("--kills and --workers must be at least 1")
    if (args.flaky or args.no_key) and not args.payments:
        parser.error("--flaky and --no-key need --payments")
    if args.database_url:
        try:  # one line now, not a traceback from deep in the first template
            with closing(open_backend(Path("."), args.database_url)) as backend:
                assert isinstance(backend, PostgresBackend)
                backend.pool  # noqa: B018 - opening it is the check
        except StoreUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
    rng = random.Random(args.seed)
    started = time.perf_counter()
    names = args.scenario or (API_SCENARIOS if args.payments else sorted(SCENARIOS))
    with tempfile.TemporaryDirectory(prefix="signoff-soak-", dir=scratch_root()) as tmp, \
            ExitStack() as stack:
        workdir = Path(tmp)
        if args.payments:
            stack.enter_context(payments_service(workdir, flaky=args.flaky,
                                                 forward_key=not args.no_key))
        prefix = f"soak{uuid.uuid4().hex[:8]}_"
        if args.database_url:
            stack.callback(_drop_schemas, args.database_url, prefix)
        templates = prepare_templates(workdir, names, database_url=args.database_url,
                                      schema_prefix=prefix)
        plans = single_kill_plans(templates)
        rng.shuffle(plans)
        reports = run_plans(templates, plans[:args.kills], workdir, args.workers)
        while (kills := sum(len(r.killed_at) for r in reports)) < args.kills:
            more = multi_kill_plans(templates, rng, max(1, (args.kills - kills) // 2))
            reports += run_plans(templates, more, workdir, args.workers)
    summary = summarize(reports)
    print(format_summary(summary, time.perf_counter() - started))
    for line in summary.failures[:20]:
        print("FAIL", line, file=sys.stderr)
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
