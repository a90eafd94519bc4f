"""The sample customer-support domain: its SQLite database, sample tickets and tools."""

from tools.support.faults import FaultPlan
from tools.support.seed import build_support_db, open_support_db
from tools.support.tickets import SampleTicket, get_sample_ticket, load_sample_tickets
from tools.support.tools import support_registry

__all__ = [
    "FaultPlan",
    "SampleTicket",
    "build_support_db",
    "get_sample_ticket",
    "load_sample_tickets",
    "open_support_db",
    "support_registry",
]
