"""Export a finished run's trace as OpenTelemetry spans (GenAI semantic conventions).

Needs the optional `otel` extra (opentelemetry-sdk); nothing else in the package imports it.
"""

from __future__ import annotations

from typing import Any

from observability.db import StoreError, StoreSource
from observability.reader import open_traces


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def export_otel(source: StoreSource, run_id: str, tracer_provider: Any) -> int:
    """Emit one invoke_agent span with chat and execute_tool children; return the span count.

    Spans carry the recorded (redacted) data and timestamps, not the time of export.
    Decisions become span events named "signoff.decision" on the invoke_agent span.
    """
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    with open_traces(source) as store:
        conn = store.conn
        run = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if run is None:
            raise StoreError(f"no run {run_id!r} in the trace store")
        models = conn.execute(
            "SELECT * FROM model_calls WHERE run_id = ? ORDER BY at", (run_id,)
        ).fetchall()
        tools = conn.execute(
            "SELECT * FROM tool_calls WHERE run_id = ? ORDER BY at", (run_id,)
        ).fetchall()
        decisions = conn.execute(
            "SELECT * FROM decisions WHERE run_id = ? ORDER BY at", (run_id,)
        ).fetchall()

    tracer = tracer_provider.get_tracer("signoff.observability")
    last_event = max([run["started_at"], *(r["at"] for r in [*models, *tools, *decisions])])
    root = tracer.start_span(
        f"invoke_agent {run['workflow']}",
        kind=SpanKind.INTERNAL,
        start_time=_ns(run["started_at"]),
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": run["workflow"],
            "gen_ai.agent.version": run["workflow_version"],
            "gen_ai.conversation.id": run_id,
            "signoff.team": run["team"],
            "signoff.tenant_id": run["tenant_id"],
            "signoff.policy_version": run["policy_version"],
            "signoff.outcome": run["outcome"] or "unfinished",
            **({"signoff.reason": run["reason"]} if run["reason"] else {}),
        },
    )
    context = trace.set_span_in_context(root)
    for call in models:
        span = tracer.start_span(
            f"chat {call['model']}",
            context=context,
            kind=SpanKind.CLIENT,
            start_time=_ns(call["at"] - call["latency_s"]),
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": call["model"],
                "gen_ai.usage.input_tokens": call["tokens_in"],
                "gen_ai.usage.output_tokens": call["tokens_out"],
                "signoff.node": call["node"],
                **({"signoff.cost_usd": call["cost_usd"]} if call["cost_usd"] is not None else {}),
            },
        )
        span.end(end_time=_ns(call["at"]))
    for call in tools:
        span = tracer.start_span(
            f"execute_tool {call['tool']}",
            context=context,
            kind=SpanKind.INTERNAL,
            start_time=_ns(call["at"] - call["latency_s"]),
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call["tool"],
                "gen_ai.tool.call.id": call["event_key"],
                "gen_ai.tool.type": "function",
                "signoff.step": call["step"],
                "signoff.schema_valid": bool(call["schema_valid"]),
                "signoff.mutation": bool(call["mutation"]),
            },
        )
        if not call["ok"]:
            span.set_attribute("error.type", "tool_error" if call["error"] else "invalid_result")
            span.set_status(Status(StatusCode.ERROR, call["error"] or "unexpected result"))
        span.end(end_time=_ns(call["at"]))
    for decision in decisions:
        root.add_event(
            "signoff.decision",
            timestamp=_ns(decision["at"]),
            attributes={
                key: decision[key]
                for key in ("kind", "verdict", "rule_id", "step", "reason")
                if decision[key] is not None
            },
        )
    if run["outcome"] == "failed":
        root.set_status(Status(StatusCode.ERROR, run["reason"] or "failed"))
    root.end(end_time=_ns(run["finished_at"] or last_event))
    return 1 + len(models) + len(tools)
