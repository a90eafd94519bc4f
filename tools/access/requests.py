"""The access requests the workflow ships with, and how a run on each should end."""

from __future__ import annotations

from dataclasses import dataclass

TENANT = "corp"


@dataclass(frozen=True)
class SampleRequest:
    """One access request, as stored in the requests table of the sample database."""

    request_id: str
    """e.g. "REQ-3001"."""
    employee_id: str
    """The employee who filed it (the run acts for them)."""
    email: str
    """That employee's email."""
    subject: str
    body: str
    """Free text. Systems are named by their id (e.g. analytics-staging), people by email."""
    outcome: str
    """resolved, waiting_approval, blocked or escalated."""
    mutations: tuple[str, ...]
    """Mutating tools a run commits (before any approval), in order."""
    notes: str
    """What the request demonstrates."""


_REQUESTS = (
    SampleRequest(
        "REQ-3001", "EMP-0003", "dana.kim@corp.example", "What access do I have?",
        "Hi, before my review I'd like to know which systems I currently have access to.",
        "resolved", ("add_request_note",),
        "Reads are green: look the employee up, list their grants, answer on the request."),
    SampleRequest(
        "REQ-3002", "EMP-0004", "omar.haddad@corp.example", "Read access to analytics-staging",
        "Please grant me read access to analytics-staging for the churn dashboard work.",
        "waiting_approval", (),
        "A non-production grant is yellow: it waits for an approver whose role differs from "
        "the requester's (Omar is an engineer)."),
    SampleRequest(
        "REQ-3003", "EMP-0004", "omar.haddad@corp.example", "Write access to payments-db",
        "I need write access to payments-db to fix a stuck refund by hand.",
        "blocked", (),
        "Granting production access is red: the agent never does it; a human must."),
    SampleRequest(
        "REQ-3004", "EMP-0002", "lena.fischer@corp.example", "Remove admin from ci-runners",
        "Please revoke admin access to ci-runners for jonas.berg@corp.example, he moved teams.",
        "blocked", (),
        "Revoking admin rights is red, whoever asks."),
    SampleRequest(
        "REQ-3005", "EMP-0006", "priya.nair@corp.example", "Write access to ci-runners",
        "Please grant me write access to ci-runners so I can rotate the runner images.",
        "waiting_approval", (),
        "Priya is an SRE: another SRE may not approve her grant; security or IT may."),
    SampleRequest(
        "REQ-3006", "EMP-0003", "dana.kim@corp.example", "Read access to wiki-internal",
        "Could you grant me read access to wiki-internal?",
        "blocked", (),
        "Dana already holds that grant: the no-duplicate-grant invariant blocks it."),
    SampleRequest(
        "REQ-3007", "EMP-0002", "lena.fischer@corp.example", "Remove write from analytics-staging",
        "Please revoke write access to analytics-staging for jonas.berg@corp.example.",
        "resolved", ("revoke_access", "add_request_note"),
        "Revoking a non-admin grant is green: it commits and the request is answered."),
)


def load_sample_requests() -> list[SampleRequest]:
    """All sample requests, in id order."""
    return list(_REQUESTS)
