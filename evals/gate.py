"""The go/no-go release checklist as code (`signoff gate`).

Each item is checked, not assumed: redaction is proven by writing a probe through the
configured recorder and searching the stored bytes; the kill switch and the fallback are
exercised on a scratch copy of the sample data; the evaluation items read the latest reports
`signoff eval` wrote and insist they ran the full sets under the policy in force now.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph.context import Workflow
from graph.errors import SignoffError
from graph.models import ModelSettings, model_name_of
from graph.observe import price_table, recorder_factory
from graph.runner import Home, Runner
from observability import StoreError, search_traces
from tools.payments.client import key_rotation_check
from tools.support.faults import FaultPlan
from verifiers.policy import Policy, PolicyError, load_policy

THRESHOLDS_FILE = Path(__file__).resolve().parent / "thresholds.toml"
RETENTION_ENV = "SIGNOFF_TRACE_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30.0
"""How long traces are kept when SIGNOFF_TRACE_RETENTION_DAYS is not set."""
MAX_RETENTION_DAYS = 3650.0
GATE_REQUESTER = "release-gate@signoff.local"
PROBE_EMAIL = "gate.probe.7f3a@example.com"


@dataclass(frozen=True)
class Item:
    """One checklist item."""

    area: str
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Thresholds:
    regression_min_pass_rate: float
    regression_max_unauthorized: int
    redteam_max_unauthorized: int
    redteam_min_pass_rate: float
    shadow_min_agreement: float


def load_thresholds(path: Path = THRESHOLDS_FILE) -> Thresholds:
    """Read the CI and release thresholds; raises SignoffError with a one-line reason."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        return Thresholds(
            regression_min_pass_rate=float(data["regression"]["min_pass_rate"]),
            regression_max_unauthorized=int(data["regression"]["max_unauthorized"]),
            redteam_max_unauthorized=int(data["redteam"]["max_unauthorized"]),
            redteam_min_pass_rate=float(data["redteam"]["min_pass_rate"]),
            shadow_min_agreement=float(data["shadow"]["min_agreement"]),
        )
    except OSError as exc:
        raise SignoffError(f"cannot read thresholds {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SignoffError(f"bad thresholds file {path}: {exc}") from None


def retention_days(env: Mapping[str, str]) -> float:
    """SIGNOFF_TRACE_RETENTION_DAYS, or the default; raises ValueError when it is not a
    number of days between 1 and 3650."""
    raw = env.get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    days = float(raw)
    if not 1 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"{RETENTION_ENV}={raw} is outside 1..{MAX_RETENTION_DAYS:.0f} days")
    return days


# Observability ---------------------------------------------------------------------------

def check_observability(env: Mapping[str, str], workflow: Workflow,
                        home: Home | Path) -> list[Item]:
    items = []
    traces = env.get("SIGNOFF_TRACES", "on").lower() not in {"off", "0", "false"}
    items.append(Item("observability", "traces on", traces,
                      "SIGNOFF_TRACES is on" if traces else "SIGNOFF_TRACES is off"))
    items.append(_redaction(workflow) if traces else
                 Item("observability", "PII redaction on", False,
                      "traces are off, so redaction cannot be checked"))
    try:
        days = retention_days(env)
    except ValueError as exc:
        items.append(Item("observability", "retention set", False, str(exc)))
        return items
    source = RETENTION_ENV if env.get(RETENTION_ENV, "").strip() else "default"
    try:
        stale = search_traces(home, until=time.time() - days * 86_400, limit=1)
    except StoreError:
        stale = []  # no trace store yet: nothing is older than the retention
    items.append(Item("observability", "retention set", not stale,
                      f"{days:g} days ({source}); " + (
                          f"traces older than that remain: run `signoff traces-purge "
                          f"--older-than-days {days:g}`" if stale else
                          "no stored trace is older")))
    return items


def _redaction(workflow: Workflow) -> Item:
    """Write a run whose input holds an email through the configured recorder, then look for
    the email in the stored bytes."""
    if not workflow.pii_fields:
        return Item("observability", "PII redaction on", False,
                    f"workflow {workflow.name} declares no PII fields")
    factory = recorder_factory()
    if factory is None:
        return Item("observability", "PII redaction on", False, "no recorder is configured")
    with tempfile.TemporaryDirectory(prefix="signoff-gate-") as tmp:
        recorder = factory(Home(Path(tmp)), workflow)
        try:
            recorder.start_run("run-gateprobe", workflow=workflow.name, workflow_version="probe",
                               policy_version="probe", tenant_id="probe", team="probe",
                               requester=GATE_REQUESTER, customer_id=None, ticket_id=None,
                               inputs={"body": f"write to me at {PROBE_EMAIL}",
                                       "customer_email": PROBE_EMAIL})
        finally:
            recorder.close()
        leaked = [p.name for p in Path(tmp).iterdir() if p.is_file()
                  and PROBE_EMAIL.encode() in p.read_bytes()]
    return Item("observability", "PII redaction on", not leaked,
                f"probe email found in {', '.join(leaked)}" if leaked else
                "a probe email written through the recorder is stored masked")


# Evaluation -------------------------------------------------------------------------------

def latest_report(reports: Path, set_name: str) -> tuple[dict[str, Any] | None, str]:
    """The newest full (not --limit) eval report that covers `set_name`, and its file name."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for path in sorted(reports.glob("eval-*.json")) if reports.is_dir() else []:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("kind") != "eval" or data.get("limit"):
            continue
        if set_name in data.get("metrics", {}).get("by_set", {}):
            found.append((str(data.get("finished_at", "")), path.name, data))
    if not found:
        return None, ""
    _, name, data = max(found, key=lambda f: (f[0], f[1]))
    return data, name


def check_evaluation(reports: Path, thresholds: Thresholds, policy: Policy) -> list[Item]:
    items = []
    wanted = [("regression", thresholds.regression_min_pass_rate,
               thresholds.regression_max_unauthorized),
              ("redteam", thresholds.redteam_min_pass_rate, thresholds.redteam_max_unauthorized)]
    for set_name, min_rate, max_unauthorized in wanted:
        report, name = latest_report(reports, set_name)
        if report is None:
            items.append(Item("evaluation", f"{set_name} set", False,
                              f"no full {set_name} report in {reports}: run `signoff eval "
                              f"--set {set_name}`"))
            continue
        group = report["metrics"]["by_set"][set_name]
        digest = report.get("policy", {}).get("digest", "")
        if digest != policy.digest:
            items.append(Item("evaluation", f"{set_name} set", False,
                              f"{name} was run under policy {report['policy'].get('version')} "
                              f"({digest[:12]}), not the policy in force ({policy.version}, "
                              f"{policy.digest[:12]}): run `signoff eval` again"))
            continue
        items.append(Item("evaluation", f"{set_name} pass rate", group["pass_rate"] >= min_rate,
                          f"{group['pass_rate']:.1%} (threshold {min_rate:.0%}) in {name}"))
        items.append(Item("evaluation", f"{set_name} unauthorized mutations",
                          group["unauthorized_mutations"] <= max_unauthorized,
                          f"{group['unauthorized_mutations']} (allowed {max_unauthorized}) in "
                          f"{name}"))
    return items


# Safety -----------------------------------------------------------------------------------

def check_safety(policy: Policy, workflow: Workflow) -> list[Item]:
    registry = workflow.tools()
    known = set(registry.names())
    unknown = sorted(policy.allowed_tools - known)
    items = [Item("safety", "tool allowlist", bool(policy.allowed_tools) and not unknown,
                  f"unknown tools allowed: {', '.join(unknown)}" if unknown else
                  f"{len(policy.allowed_tools)} of {len(known)} tools allowed")]
    weak = []
    for name in sorted(policy.allowed_tools & known):
        spec = registry.get(name)
        assert spec is not None
        schema = spec.input_model.model_json_schema()
        if schema.get("additionalProperties") is not False or spec.output_model is None:
            weak.append(name)
    items.append(Item("safety", "schemas on every tool", not weak,
                      f"no strict input schema: {', '.join(weak)}" if weak else
                      "every allowed tool has a strict input schema and an output schema"))
    uncovered = sorted(t for t in policy.allowed_tools if not any(r.applies_to(t)
                                                                for r in policy.rules))
    mutating = [t for t in policy.allowed_tools
                if (s := registry.get(t)) is not None and s.mutates]
    tiered = [t for t in mutating if any(r.applies_to(t) and r.tier != "green"
                                         for r in policy.rules)]
    items.append(Item("safety", "risk tiers", not uncovered and bool(tiered),
                      f"no rule covers: {', '.join(uncovered)}" if uncovered else
                      "no mutating tool has a yellow or red rule" if not tiered else
                      f"{len(policy.rules)} rules; tiered mutating tools: {', '.join(tiered)}"))
    needs = any(r.tier == "yellow" for r in policy.rules)
    people = {m for m in policy.members() if "@" in m}
    empty = sorted(role for role in policy.approvers if not policy.members(role))
    ok = (not needs or bool(people)) and not empty
    items.append(Item("safety", "approvers configured", ok,
                      f"roles without approvers: {', '.join(empty)}" if empty else
                      f"{len(people)} approver(s) in {len(policy.approvers)} role(s)" if people
                      else "yellow rules exist but nobody may approve"))
    return items


# Reliability ------------------------------------------------------------------------------

def _scratch_runner(workflow: Workflow, policy_path: Path | None, root: Path,
                    **kwargs: Any) -> Runner:
    runner = Runner(Home(root), policy_override=policy_path, sleep=lambda _s: None, **kwargs)
    runner.ensure_domain_db(workflow, reset=True)
    return runner


def _ledger_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM mutation_ledger").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def check_reliability(workflow: Workflow, policy_path: Path | None) -> list[Item]:
    mutating = [t for t in workflow.sample_tickets()
                if t.expect.get("outcome") == "resolved" and t.expect.get("mutations")]
    if not mutating:
        return [Item("reliability", "kill switch exercised", False,
                     f"workflow {workflow.name} has no sample ticket that mutates"),
                Item("reliability", "fallback exercised", False, "no sample ticket to use")]
    ticket = mutating[0]
    items = []
    root = Path(tempfile.mkdtemp(prefix="signoff-gate-"))
    try:
        runner = _scratch_runner(workflow, policy_path, root / "kill")
        try:
            runner.runs.set_kill(workflow.name, by=GATE_REQUESTER, reason="release gate drill")
            result = runner.start(workflow.name, ticket, requester=GATE_REQUESTER)
            committed = _ledger_count(runner.home.domain_db(workflow))
        finally:
            runner.close()
        ok = result.status == "blocked" and committed == 0 and "kill switch" in (
            result.reason or "")
        items.append(Item("reliability", "kill switch exercised", ok,
                          f"{ticket.ticket_id} under a kill switch: {result.status}, "
                          f"{committed} mutation(s) - {result.reason}"))

        first_tool = ticket.expect["mutations"][0]
        faults = FaultPlan(fail_first={first_tool: 1000})
        runner = _scratch_runner(workflow, policy_path, root / "fallback", tool_faults=faults)
        try:
            result = runner.start(workflow.name, ticket, requester=GATE_REQUESTER)
            committed = _ledger_count(runner.home.domain_db(workflow))
        finally:
            runner.close()
        ok = result.status in {"failed", "blocked", "escalated"} and committed == 0 \
            and bool(result.reason)
        items.append(Item("reliability", "fallback exercised", ok,
                          f"{first_tool} always failing: {result.status}, {committed} "
                          f"mutation(s) - {result.reason}"))
    except SignoffError as exc:
        items.append(Item("reliability", "drills ran", False, str(exc)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return items


# Economics --------------------------------------------------------------------------------

def check_economics(env: Mapping[str, str], policy: Policy, workflow: Workflow) -> list[Item]:
    items = []
    traces = env.get("SIGNOFF_TRACES", "on").lower() not in {"off", "0", "false"}
    try:
        prices = price_table()
        names = []
        for role, scripted in (("planner", workflow.planner), ("checker", workflow.checker)):
            settings = ModelSettings.from_env(role, dict(env))
            names.append(settings.model if settings.provider != "scripted"
                         else model_name_of(scripted()))
        unpriced = [n for n in names if prices.price(n) is None]
        ok, detail = traces and not unpriced, (
            "traces are off, so model spend is not recorded" if not traces else
            f"no price for model(s): {', '.join(unpriced)}" if unpriced else
            f"priced models: {', '.join(names)}")
    except (SignoffError, ValueError) as exc:
        ok, detail = False, str(exc)
    items.append(Item("economics", "cost tracking on", ok, detail))
    b = policy.budgets
    unset = [name for name, value in (("money_usd", b.money_usd), ("tokens", b.tokens),
                                      ("model_calls", b.model_calls),
                                      ("tool_calls", b.tool_calls),
                                      ("wall_seconds", b.wall_seconds)) if value <= 0]
    items.append(Item("economics", "budgets set", not unset,
                      f"zero budgets: {', '.join(unset)}" if unset else
                      f"${b.money_usd:.2f}, {b.tokens} tokens, {b.model_calls} model calls, "
                      f"{b.tool_calls} tool calls per run"))
    return items


def run_gate(workflow: Workflow, *, policy_path: Path | None, reports: Path, home: Home | Path,
             thresholds: Thresholds, env: Mapping[str, str] | None = None,
             progress: Callable[[str], None] | None = None) -> list[Item]:
    """Every checklist item, in order."""
    env = dict(os.environ) if env is None else env
    path = policy_path or workflow.policy_path
    try:
        policy = load_policy(path, **workflow.policy_checks())
    except PolicyError as exc:
        return [Item("safety", "policy loads", False, str(exc))]
    items: list[Item] = []
    for area, check in (
            ("observability", lambda: check_observability(env, workflow, home)),
            ("evaluation", lambda: check_evaluation(reports, thresholds, policy)),
            ("safety", lambda: check_safety(policy, workflow)),
            ("reliability", lambda: check_reliability(workflow, policy_path)),
            ("economics", lambda: check_economics(env, policy, workflow)),
            ("credentials", lambda: [Item("credentials", "key rotation practiced",
                                          *key_rotation_check(env, time.time()))])):
        if progress is not None:
            progress(area)
        items.extend(check())
    return items
