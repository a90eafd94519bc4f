import pytest

from graph.identity import BadIdentity, normalize_identity, same_identity


@pytest.mark.parametrize("variant", [
    "lead@acme.example", " Lead@ACME.example ", "lead\u200b@acme.example",
    "\ufeffl\u200dead@acme.example", "ｌｅａｄ＠ａｃｍｅ．ｅｘａｍｐｌｅ",
    "LEAD@acme.example\u2060",
])
def test_variants_of_one_address_are_the_same_person(variant: str) -> None:
    assert normalize_identity(variant) == "lead@acme.example"
    assert same_identity(variant, "lead@acme.example")


@pytest.mark.parametrize("bad", ["", "   ", "\u200b\u200c", "lead@acme\x00.example",
                                 "lead\n@acme.example", "lead\u2028@acme.example"])
def test_empty_or_control_identities_are_refused(bad: str) -> None:
    with pytest.raises(BadIdentity):
        normalize_identity(bad)


def test_different_people_stay_different() -> None:
    assert not same_identity("lead@acme.example", "lead@globex.example")


# Identities in decisions: the requester, the approver and the per-tenant approver lists ------

import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from typer.testing import CliRunner  # noqa: E402

from cli.main import app  # noqa: E402
from graph.errors import BadDecision, SignoffError  # noqa: E402
from graph.runner import Runner  # noqa: E402
from graph.workflows import get_workflow  # noqa: E402
from tests.conftest import sample  # noqa: E402
from verifiers.policy import PolicyError, load_policy, parse_policy  # noqa: E402

SUPPORT_POLICY = get_workflow("support").policy_path


def refunds(home: Path) -> list[Any]:
    """Refunds signoff's runs made (the seeded history has none with a run id)."""
    with sqlite3.connect(home / "support.db") as conn:
        return conn.execute("SELECT order_id, amount_cents FROM refunds "
                            "WHERE run_id IS NOT NULL").fetchall()


@pytest.mark.parametrize("disguise", ["lead\u200b@acme.example", "ＬＥＡＤ@acme.example",
                                      " Lead@Acme.Example\u2060"])
def test_a_requester_disguised_as_the_lead_cannot_approve_their_own_run(
        runner: Runner, home: Path, disguise: str) -> None:
    result = runner.start("support", sample("TKT-1002"), requester=disguise)
    assert result.status == "waiting_approval"
    assert runner.runs.get(result.run_id).requester == "lead@acme.example"
    with pytest.raises(BadDecision, match="started this run and cannot decide"):
        runner.decide(result.run_id, {"action": "approve", "by": "lead@acme.example"})
    assert runner.runs.get(result.run_id).status == "waiting_approval"
    assert refunds(home) == []


def test_an_approver_spelled_differently_is_recorded_as_one_person(runner: Runner,
                                                                   home: Path) -> None:
    run_id = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local").run_id
    result = runner.decide(run_id, {"action": "approve", "by": "ＬＥＡＤ\u200b@ACME.example",
                                    "reason": "checked"})
    assert result.status == "resolved"
    with sqlite3.connect(home / "traces.db") as conn:
        actors = {row[0] for row in conn.execute(
            "SELECT actor FROM decisions WHERE run_id = ? AND kind = 'approval'", (run_id,))}
    assert actors == {"lead@acme.example"}


def test_a_lead_of_another_tenant_cannot_decide(runner: Runner, home: Path) -> None:
    ticket = sample("TKT-1002")
    assert ticket.tenant_id == "acme"
    run_id = runner.start("support", ticket, requester="ops@signoff.local").run_id
    for outsider in ("lead@globex.example", "finance@globex.example"):
        with pytest.raises(BadDecision, match="not an approver in policy .* for tenant acme"):
            runner.decide(run_id, {"action": "approve", "by": outsider})
    assert runner.runs.get(run_id).status == "waiting_approval" and refunds(home) == []


@pytest.mark.parametrize("who", ["\u200b", "lead@acme\x00.example", "lead\n@acme.example"])
def test_an_identity_that_cannot_be_compared_is_refused(runner: Runner, home: Path,
                                                        who: str) -> None:
    run_id = runner.start("support", sample("TKT-1002"), requester="ops@signoff.local").run_id
    with pytest.raises(BadDecision, match="invalid approver"):
        runner.decide(run_id, {"action": "approve", "by": who})
    with pytest.raises(SignoffError, match="invalid requester"):
        runner.start("support", sample("TKT-1002"), requester=who)
    assert refunds(home) == []


def test_the_cli_refuses_a_blank_requester_in_one_line(home: Path) -> None:
    result = CliRunner().invoke(app, ["run", "TKT-1001", "--as", "\u200b\u200b"])
    assert result.exit_code != 0
    assert result.output.strip().startswith("error: invalid requester")
    assert len(result.output.strip().splitlines()) == 1


def test_approver_lists_are_per_tenant_and_normalised_at_load() -> None:
    policy = load_policy(SUPPORT_POLICY)
    assert policy.roles_of("lead@acme.example", "acme") == ["support_lead"]
    assert policy.roles_of("lead@acme.example", "globex") == []
    assert policy.roles_of("Lead\u200b@ACME.example", "acme") == ["support_lead"]
    text = SUPPORT_POLICY.read_text().replace(
        '[approvers.finance]\nacme = ["finance@acme.example"]',
        '[approvers.finance]\n"*" = ["ＣＦＯ@corp.example"]\nacme = ["finance@acme.example"]')
    widened = parse_policy(text)
    assert widened.roles_of("cfo@corp.example", "globex") == ["finance"]
    assert widened.roles_of("cfo@corp.example", "acme") == ["finance"]
    # The list form still works: it applies to every tenant.
    listed = parse_policy(text.replace('[approvers.support_lead]\nacme = ["lead@acme.example"]\n'
                                       'globex = ["lead@globex.example"]',
                                       '[approvers]\nsupport_lead = ["lead@acme.example"]'))
    assert listed.roles_of("lead@acme.example", "globex") == ["support_lead"]


@pytest.mark.parametrize("members, message", [
    ('["lead@acme\\u0000.example"]', "control or unassigned characters"),
    ('["\\u200b"]', "empty once invisible characters are removed"),
    ("[]", "the list for tenant 'acme' is empty"),
])
def test_policy_check_refuses_an_approver_list_it_cannot_compare(members: str,
                                                                 message: str) -> None:
    text = SUPPORT_POLICY.read_text().replace('acme = ["lead@acme.example"]',
                                              f"acme = {members}")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.toml")
    line = next(i for i, text_line in enumerate(text.splitlines(), start=1)
                if text_line.startswith("acme = " + members[:3]))
    assert message in str(info.value) and str(info.value).startswith("p.toml:")
    assert info.value.line in (line, line - 1)
