"""The sample tickets the support workflow ships with, and what each run should end in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

Outcome = Literal["resolved", "waiting_approval", "blocked", "escalated"]


@dataclass(frozen=True)
class Expectation:
    """How a run on a sample ticket should end."""

    outcome: Outcome
    """The run's final outcome."""
    mutations: tuple[str, ...]
    """Names of the mutating tools committed by the run, in order."""
    notes: str
    """What the ticket demonstrates, for humans."""


@dataclass(frozen=True)
class SampleTicket:
    """One sample support ticket, as stored in the tickets table of the sample database."""

    id: str
    """Ticket id, e.g. "TKT-1001"."""
    tenant_id: str
    """Tenant the ticket was filed in."""
    customer_id: str
    """The customer who filed it."""
    customer_email: str
    """That customer's email address."""
    subject: str
    """One-line subject."""
    body: str
    """Free text. Order ids are written as ORD-10023 and amounts as $18.00."""
    expect: Expectation
    """What a run on this ticket should end in."""


@cache
def _load() -> tuple[SampleTicket, ...]:
    raw = resources.files("tools.support").joinpath("sample_tickets.json").read_text("utf-8")
    tickets = []
    for item in json.loads(raw):
        exp = item.pop("expect")
        expect = Expectation(exp["outcome"], tuple(exp["mutations"]), exp["notes"])
        tickets.append(SampleTicket(**item, expect=expect))
    return tuple(tickets)


def load_sample_tickets() -> list[SampleTicket]:
    """All sample tickets, in file order."""
    return list(_load())


def get_sample_ticket(ticket_id: str) -> SampleTicket:
    """The sample ticket with this id; raises KeyError for an unknown id."""
    for ticket in _load():
        if ticket.id == ticket_id:
            return ticket
    raise KeyError(f"no sample ticket {ticket_id!r}")
