"""Policy files: `policy check` names every error with its line, and `policy explain` tells,
step by step, which rule decided each proposal of a run and why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from graph.runner import Runner
from graph.workflows import get_workflow
from tests.conftest import sample
from verifiers.explain import RunExplanation, explain_run
from verifiers.policy import PolicyError, key_lines, load_policy, parse_policy

SUPPORT = get_workflow("support")
TEXT = SUPPORT.policy_path.read_text()
LINES = TEXT.splitlines()


def line_of(fragment: str, start: int = 0) -> int:
    """1-based line of the first line at or after `start` containing `fragment`."""
    return next(i for i, line in enumerate(LINES, start=1) if i > start and fragment in line)


def variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in TEXT
    path = tmp_path / "policy.toml"
    path.write_text(TEXT.replace(old, new, 1))
    return path


def check(path: Path | str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    return result.exit_code, result.stderr.strip().splitlines(), result.stdout


# policy check -------------------------------------------------------------------------------

NEEDS_APPROVAL = line_of('id = "refund.needs_approval"')
CASES = [
    # name, old, new, expected line, message fragment
    ("toml syntax", "money_usd = 0.50", "money_usd = 0.50 dollars", line_of("money_usd ="),
     "invalid TOML"),
    ("missing version", 'version = "2026.12.3"', "", 1, "version: required key is missing"),
    ("bad tier", 'tier = "yellow"', 'tier = "amber"', line_of('tier = "yellow"'),
     "rules.4.tier: Input should be 'green', 'yellow' or 'red'"),
    ("negative budget", "retries = 4 ", "retries = -1 ", line_of("retries = 4"),
     "budgets.retries: Input should be greater than or equal to 0"),
    ("boolean budget", "tool_calls = 12", "tool_calls = true", line_of("tool_calls = 12"),
     "budgets.tool_calls: Input should be a valid integer"),
    ("missing budget", "tokens = 60000", "", line_of("[budgets]"),
     "budgets.tokens: required key is missing"),
    ("unknown key", "money_usd = 0.50", "money_usd = 0.50\nmoney_eur = 1",
     line_of("money_usd =") + 1, "budgets.money_eur: Extra inputs are not permitted"),
    ("unknown tool in a rule", 'tools = ["add_ticket_note"]', 'tools = ["add_ticket_nope"]',
     line_of('tools = ["add_ticket_note"]'),
     "rule 'note.green' names tool 'add_ticket_nope' that is not in allowed_tools"),
    ("allowed tool the workflow lacks", '"escalate_to_human",\n]',
     '"escalate_to_human", "wire_money",\n]', line_of("allowed_tools ="),
     "allowed_tools names tools the workflow does not have: wire_money"),
    ("bad condition syntax", 'when = "args.amount_cents > 5000"',
     'when = "args.amount_cents >> 5000"', line_of('when = "args.amount_cents > 5000"'),
     "RShift is not allowed"),
    ("condition calls a function", 'when = "args.amount_cents > 5000"',
     'when = "__import__(\'os\').system(\'true\')"', line_of('when = "args.amount_cents > 5000"'),
     "(use all, any, blank, len)"),
    ("condition unknown name", 'when = "customer.flagged"', 'when = "session.flagged"',
     line_of('when = "customer.flagged"'), "unknown name 'session'"),
    ("duplicate rule id", 'id = "note.green"', 'id = "read.green"',
     line_of('id = "note.green"') - 1, "duplicate rule id 'read.green' (first defined on line"),
    ("approver role not defined", 'approvers = ["support_lead"]', 'approvers = ["cfo"]',
     line_of('approvers = ["support_lead"]'), "names approver role 'cfo'"),
    ("fact key the workflow does not provide", 'when = "customer.flagged"',
     'when = "customer.vip"', line_of('when = "customer.flagged"'),
     "customer.vip is not a fact the workflow provides (customer has: customer_id, flagged)"),
    ("fact key in a scope", 'require = "order.customer_id == run.customer_id"',
     'require = "order.owner == run.customer_id"',
     line_of('require = "order.customer_id == run.customer_id"'),
     "order.owner is not a fact the workflow provides"),
    ("run key unknown", 'require = "order.customer_id == run.customer_id"',
     'require = "order.customer_id == run.user"',
     line_of('require = "order.customer_id == run.customer_id"'), "run.user is not known"),
    ("history of a tool not allowed", "c.tool == 'get_order' and", "history.ok.wire_money > 0 and",
     line_of("c.tool == 'get_order' and"), "history.ok.wire_money: 'wire_money' is not in "
     "allowed_tools"),
    ("history view unknown", "c.tool == 'get_order' and", "history.done > 0 and",
     line_of("c.tool == 'get_order' and"), "history.done is not known"),
    ("function not allowed", 'when = "customer.flagged"', 'when = "max(customer.flagged)"',
     line_of('when = "customer.flagged"'), "function 'max' is not allowed"),
    ("on_block on a yellow rule", 'approvers = ["support_lead"]  #',
     'on_block = "replan"\napprovers = ["support_lead"]  #',
     line_of('approvers = ["support_lead"]  #'), "on_block only applies to red rules"),
    ("customer listed as an approver role", "[approvers.finance]",
     '[approvers.customer]\nacme = ["x@example.com"]\n\n[approvers.finance]',
     line_of("[approvers.finance]"), "this role is the run's own customer"),
    ("approvers on a green rule", 'reason = "ticket notes are allowed"',
     'reason = "ticket notes are allowed"\napprovers = ["finance"]',
     line_of('reason = "ticket notes are allowed"') + 1, "approvers only apply to yellow"),
]


@pytest.mark.parametrize("name, old, new, line, fragment", CASES, ids=[c[0] for c in CASES])
def test_policy_check_reports_the_error_and_its_line(tmp_path: Path, name: str, old: str,
                                                     new: str, line: int,
                                                     fragment: str) -> None:
    path = variant(tmp_path, old, new)
    code, errors, _ = check(path)
    assert code == 1
    assert errors, "no error printed"
    matching = [e for e in errors if fragment in e]
    assert matching, errors
    assert matching[0].startswith(f"error: {path}:{line}: "), (matching[0], line)


def test_policy_check_reports_every_error(tmp_path: Path) -> None:
    text = (TEXT.replace('tier = "yellow"', 'tier = "amber"', 1)
            .replace("retries = 4 ", "retries = -1 "))
    path = tmp_path / "two.toml"
    path.write_text(text)
    code, errors, _ = check(path)
    assert code == 1
    assert [e.split(": ")[1].rsplit(":", 1)[1] for e in errors] == \
        [str(line_of("retries = 4")), str(line_of('tier = "yellow"'))]


def test_policy_check_accepts_the_shipped_policy() -> None:
    code, errors, out = check(SUPPORT.policy_path)
    assert code == 0 and errors == []
    assert "ok - workflow support, version 2026.12.3, 9 rules, 6 tools allowed" in out
    assert "tools checked against workflow support" in out


def test_policy_check_missing_file_is_one_line(tmp_path: Path) -> None:
    code, errors, _ = check(tmp_path / "nope.toml")
    assert code == 1 and len(errors) == 1
    assert errors[0] == f"error: {tmp_path / 'nope.toml'}: policy file not found"


def test_policy_error_lists_issues_and_the_first_is_the_message() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(TEXT.replace('tier = "yellow"', 'tier = "amber"'), source="p.toml")
    tier_line = line_of('tier = "yellow"')
    assert str(info.value).startswith(f"p.toml:{tier_line}: rules.4.tier")
    assert info.value.line == tier_line


def test_key_lines_map_pydantic_locations_to_lines() -> None:
    lines = key_lines(TEXT)
    assert lines[("version",)] == line_of("version =")
    assert lines[("budgets", "money_usd")] == line_of("money_usd =")
    assert lines[("rules", 4)] == NEEDS_APPROVAL - 1
    assert lines[("rules", 4, "when")] == line_of("when =", NEEDS_APPROVAL)
    assert lines[("approvers", "finance")] == line_of("[approvers.finance]")
    finance = line_of("[approvers.finance]")
    assert lines[("approvers", "finance", "globex")] == line_of("globex =", finance)


def test_rules_remember_their_line() -> None:
    policy = load_policy(SUPPORT.policy_path)
    rule = policy.rule("refund.needs_approval")
    assert rule is not None and rule.line == NEEDS_APPROVAL - 1
    assert rule.approver_roles == ("support_lead",)


# policy explain -----------------------------------------------------------------------------

def _explain(runner: Runner, run_id: str) -> RunExplanation:
    with runner.checkpointer() as saver:
        return explain_run(saver, run_id)


def explain(run_id: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["policy", "explain", run_id])
    return result.exit_code, result.stdout, result.stderr


def test_explain_an_approved_run(runner: Runner, home: Path) -> None:
    paused = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    runner.decide(paused.run_id, {"action": "approve", "by": "lead@acme.example",
                                  "reason": "receipt checked"})
    code, out, err = explain(paused.run_id)
    assert code == 0, err
    steps = re.findall(r"^step (\d+): (\w+) ", out, flags=re.M)
    assert steps == [("1", "lookup_customer"), ("2", "get_order"),
                     ("3", "create_refund_request"), ("4", "add_ticket_note")]
    refund_step = out.split("step 3:")[1].split("step 4:")[0]
    for expected in [
        "gate        yellow  rule refund.needs_approval [support.toml:",
        "when args.amount_cents > 5000] (policy 2026.12.3) -> verify",
        "invariant   pass    refund.order_of_customer:",
        "invariant   pass    refund.within_refundable_balance:",
        "invariant   pass    refund.status_allows:",
        "model check pass    model_check:scripted-support-checker:",
        "approval    approve by lead@acme.example (role support_lead, policy 2026.12.3): "
        "receipt checked",
        "execute     ok",
        "postcheck   pass",
        "=> executed (ok): allowed by gate rule refund.needs_approval, approved by "
        "lead@acme.example (support_lead, policy 2026.12.3)",
    ]:
        assert expected in refund_step, (expected, refund_step)
    assert out.strip().splitlines()[-1].startswith("outcome: resolved (ended by finish)")


def test_explain_a_blocked_and_a_waiting_run(runner: Runner) -> None:
    blocked = runner.start("support", sample("TKT-1003"), requester="ops@signoff.local")
    code, out, _ = explain(blocked.run_id)
    assert code == 0
    assert "gate        red     rule refund.over_ceiling" in out
    assert "=> blocked by gate rule refund.over_ceiling (policy 2026.12.3)" in out
    assert "outcome: blocked (ended by fallback) - gate refund.over_ceiling" in out

    waiting = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    explanation = _explain(runner, waiting.run_id)
    assert explanation.waiting and explanation.outcome is None
    assert explanation.steps[-1].decision.endswith("waiting for a human decision")
    _, out, _ = explain(waiting.run_id)
    assert out.strip().splitlines()[-1] == "outcome: waiting for a human decision"


def test_explain_a_rejected_and_an_edited_run(runner: Runner) -> None:
    rejected = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    runner.decide(rejected.run_id, {"action": "reject", "by": "lead@acme.example",
                                    "reason": "no receipt"})
    steps = _explain(runner, rejected.run_id).steps
    assert steps[-1].decision == "rejected by lead@acme.example (support_lead)"

    runner.ensure_domain_db(SUPPORT, reset=True)
    edited = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local")
    runner.decide(edited.run_id, {"action": "edit", "by": "lead@acme.example",
                                  "reason": "partial", "args": {"amount_cents": 4000}})
    step = _explain(runner, edited.run_id).steps[2]
    assert step.origin == "human_edit" and step.args and step.args["amount_cents"] == 4000
    gates = [(f.verdict, f.rule_id) for f in step.findings if f.kind == "gate"]
    assert gates == [("yellow", "refund.needs_approval"), ("green", "refund.small")]
    assert [f.verdict for f in step.findings if f.kind == "model_check"] == ["pass", "pass"]
    assert step.decision.startswith("executed (ok): allowed by gate rule refund.small")


def test_explain_unknown_run_is_one_line_error(home: Path) -> None:
    CliRunner().invoke(app, ["runs"])
    code, out, err = explain("run-doesnotexist")
    assert code == 1 and "Traceback" not in out
    assert err.strip().splitlines() == ["error: no run with id 'run-doesnotexist' (see "
                                        "`signoff runs`)"]
