"""Traces, PII redaction, a hash-chained audit log, cost accounting and reports for signoff.

The graph records through `Recorder`; the CLI wraps the library functions below.
"""

from observability.audit import AuditLog, AuditVerification, Head, audit_head, verify_audit
from observability.db import StoreError
from observability.otel import export_otel
from observability.prices import DEFAULT_PRICES, ModelPrice, PriceTable
from observability.recorder import Recorder
from observability.redact import Redactor, scrub_text
from observability.render import render_report
from observability.report import Report, compute_report
from observability.retention import PurgeResult, purge
from observability.search import search_traces

__all__ = [
    "DEFAULT_PRICES",
    "AuditLog",
    "AuditVerification",
    "Head",
    "ModelPrice",
    "PriceTable",
    "PurgeResult",
    "Recorder",
    "Redactor",
    "Report",
    "StoreError",
    "audit_head",
    "compute_report",
    "export_otel",
    "purge",
    "render_report",
    "scrub_text",
    "search_traces",
    "verify_audit",
]
