from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from observability import Recorder, export_otel  # noqa: E402
from observability.db import StoreError  # noqa: E402
from observability.testing import FakeClock, ToolSpec, record_run  # noqa: E402


@pytest.fixture
def exported(tmp_path: Path) -> list:
    with Recorder(tmp_path, clock=FakeClock(now=1000.0)) as recorder:
        record_run(
            recorder,
            "r1",
            outcome="escalated",
            reason="over limit",
            model_calls=[("gpt-4o-mini", 1200, 80, 0.5)],
            tool_calls=[
                ToolSpec("lookup_order", latency_s=0.25),
                ToolSpec("refund", latency_s=0.5, ok=False, mutation=True),
            ],
            decisions=[("gate", "yellow", "R-LIMIT", "over 100")],
        )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert export_otel(tmp_path, "r1", provider) == 4
    return list(exporter.get_finished_spans())


def test_a_run_becomes_an_invoke_agent_span_with_chat_and_tool_children(exported: list) -> None:
    by_name = {span.name: span for span in exported}
    assert set(by_name) == {
        "invoke_agent support",
        "chat gpt-4o-mini",
        "execute_tool lookup_order",
        "execute_tool refund",
    }
    root = by_name["invoke_agent support"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "support"
    assert root.attributes["gen_ai.conversation.id"] == "r1"
    assert root.attributes["signoff.outcome"] == "escalated"
    assert [e.attributes["rule_id"] for e in root.events] == ["R-LIMIT"]
    for span in exported:
        if span is not root:
            assert span.parent.span_id == root.context.span_id
            assert span.context.trace_id == root.context.trace_id


def test_chat_span_carries_model_and_token_usage_and_recorded_timing(exported: list) -> None:
    chat = next(s for s in exported if s.name.startswith("chat"))
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 1200
    assert chat.attributes["gen_ai.usage.output_tokens"] == 80
    assert chat.end_time - chat.start_time == 500_000_000


def test_tool_spans_name_the_tool_and_mark_failures(exported: list) -> None:
    tools = {
        s.attributes["gen_ai.tool.name"]: s for s in exported if "gen_ai.tool.name" in s.attributes
    }
    assert set(tools) == {"lookup_order", "refund"}
    assert tools["lookup_order"].attributes["gen_ai.operation.name"] == "execute_tool"
    assert tools["lookup_order"].status.status_code is StatusCode.UNSET
    assert tools["refund"].status.status_code is StatusCode.ERROR
    assert tools["refund"].attributes["error.type"] == "tool_error"


def test_an_unknown_run_is_a_store_error(tmp_path: Path) -> None:
    Recorder(tmp_path).close()
    with pytest.raises(StoreError, match="no run"):
        export_otel(tmp_path, "nope", TracerProvider())
