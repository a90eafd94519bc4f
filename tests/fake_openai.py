"""An OpenAI-compatible chat-completions server on loopback, for tests.

It answers /v1/chat/completions with the offline support planner's and checker's decisions,
in the OpenAI wire format (tool_calls with JSON-string arguments, and a usage block), so the
ChatOpenAI code path is exercised over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from graph.workflows.support_planner import SupportPlanner
from verifiers.support import SupportChecker

PROMPT_TOKENS, COMPLETION_TOKENS = 321, 17


@dataclass
class FakeOpenAI:
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_json_arguments: bool = False
    """Answer planner calls with arguments that are not JSON, as a broken model might."""

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        messages = [SystemMessage(m["content"]) if m["role"] == "system" else
                    HumanMessage(m["content"]) for m in body["messages"]]
        tools = body.get("tools") or []
        is_checker = any(t["function"]["name"] == "ArgumentVerdict" for t in tools)
        model = SupportChecker() if is_checker else SupportPlanner()
        reply: AIMessage = model.respond(messages, tools)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
        if reply.tool_calls:
            message["tool_calls"] = [{
                "id": call["id"], "type": "function",
                "function": {"name": call["name"],
                             "arguments": "{not json" if self.bad_json_arguments
                             and not is_checker else json.dumps(call["args"])}}
                for call in reply.tool_calls]
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": 1_700_000_000, "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            payload = json.dumps(fake.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
