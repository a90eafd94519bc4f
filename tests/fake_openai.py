"""An OpenAI-compatible chat-completions server on loopback, for tests.

It answers /v1/chat/completions in the OpenAI wire format (tool_calls with JSON-string
arguments, and a usage block), so the ChatOpenAI code path is exercised over real HTTP. What
answers is chosen per role:

- "offline": the support workflow's offline planner and checker decide (the default);
- "replay": recorded answers of a real server (llama.cpp serving Gemma 3 270M, see
  ../shared/fixtures/README.md), picked by what the request asks for: the planner's
  `tool_choice` (none, "required", or a named tool), whether its schemas still carry regex
  `pattern`s, and for the checker the verdict tool. A recorded dropped connection is replayed
  as a dropped connection; "required" as the HTTP 500 that server gave;
- "boilerplate" (checker): "pass" to everything, with a boilerplate reason and no reads;
- "copycat" (checker): "pass" to everything, its reads copied from the proposed call.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from graph.models import PROPOSAL_MARK, TICKET_MARK, ScriptedChatModel, extract_block
from graph.workflows.support_planner import SupportPlanner
from verifiers.support import SupportChecker

PROMPT_TOKENS, COMPLETION_TOKENS = 321, 17
REPO_ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = REPO_ROOT.parent / "shared" / "fixtures" / "llamacpp-gemma3-270m.jsonl"
"""Where CI finds the recordings: the shared fixtures cloned beside the repository."""
DROP = "drop"
"""An answer that is no answer: the connection is closed without a response."""


def load_recordings(path: Path = RECORDINGS) -> list[dict[str, Any]]:
    """The recorded exchanges, one dict per request (see the fixture's README)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _has_pattern(node: Any) -> bool:
    if isinstance(node, dict):
        return "pattern" in node or any(_has_pattern(v) for v in node.values())
    return isinstance(node, list) and any(_has_pattern(v) for v in node)


def _choice_key(tool_choice: Any) -> str:
    if isinstance(tool_choice, dict):
        return "tool:" + tool_choice.get("function", {}).get("name", "")
    return str(tool_choice or "auto")


def copied_reads(messages: list[Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The reads a verdict tool asks for, copied from the proposed call (or the ticket): what
    a checker that only agrees would answer."""
    ticket = extract_block(messages, TICKET_MARK) or {}
    args = (extract_block(messages, PROPOSAL_MARK) or {}).get("args") or {}
    wanted = tools[0]["function"]["parameters"]["properties"].get("read", {})
    return {f: args.get(f, ticket.get(f)) for f in wanted.get("properties", {})}


@dataclass
class Replay:
    """Recorded responses by the kind of request that got them, each served in turn."""

    by_kind: dict[tuple[str, bool], Iterator[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> Replay:
        kinds: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for row in rows:
            request = row["request"]
            key = (_choice_key(request["tool_choice"]),
                   not request["regex_patterns_removed_from_schemas"])
            kinds.setdefault(key, []).append(row["response"])
        return cls({k: itertools.cycle(v) for k, v in kinds.items()})

    def answer(self, tool_choice: Any, with_patterns: bool) -> dict[str, Any] | str:
        kind = _choice_key(tool_choice)
        if kind in {"required", "any"}:
            return "500"  # that server answers both with HTTP 500 (the fixture's README)
        candidates = [(kind, with_patterns)]
        if with_patterns and kind.startswith("tool:"):
            # A named tool with a regex pattern anywhere dropped the connection, whichever.
            candidates.append(("tool:lookup_customer", True))
        candidates.append((kind, not with_patterns))
        responses = next((self.by_kind[c] for c in candidates if c in self.by_kind), None)
        if responses is None:
            return "500"  # nothing recorded answers this: a server error, never a guess
        return next(responses)


@dataclass
class FakeOpenAI:
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_json_arguments: bool = False
    """Answer planner calls with arguments that are not JSON, as a broken model might."""
    planner: str = "offline"
    """"offline" or "replay"."""
    checker: str = "offline"
    """"offline", "replay", "boilerplate" or "copycat"."""
    calls_in_content: bool = False
    """Offline planner: write the tool call as JSON in the message text, not as tool_calls."""
    delay_s: float = 0.0
    """Wait this long before answering (to make the client time out)."""
    replay: Replay | None = None
    models: tuple[ScriptedChatModel, ScriptedChatModel] | None = None
    """"offline" answers from these (planner, checker) instead of the support workflow's."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> dict[str, Any] | str:
        with self.lock:
            self.requests.append(body)
        if self.delay_s:
            time.sleep(self.delay_s)
        tools = body.get("tools") or []
        is_checker = any(t["function"]["name"] == "ArgumentVerdict" for t in tools)
        mode = self.checker if is_checker else self.planner
        if mode == "replay":
            assert self.replay is not None
            with self.lock:
                recorded = self.replay.answer(body.get("tool_choice"), _has_pattern(tools))
            if isinstance(recorded, str):
                return recorded
            if recorded["status"] != 200:
                return DROP
            return self._completion(body, recorded["content"] or None, [
                (call["name"], call["arguments"]) for call in recorded["tool_calls"]],
                recorded["usage"], recorded["model"])
        messages = [SystemMessage(m["content"]) if m["role"] == "system" else
                    HumanMessage(m["content"] or "") for m in body["messages"]]
        if mode in {"boilerplate", "copycat"}:
            return self._completion(body, None, [("ArgumentVerdict", json.dumps(
                self.adversarial_verdict(mode, messages, tools)))])
        planner, checker = self.models or (SupportPlanner(), SupportChecker())
        model = checker if is_checker else planner
        reply: AIMessage = model.respond(messages, tools)
        calls = [(c["name"], "{not json" if self.bad_json_arguments and not is_checker
                  else json.dumps(c["args"])) for c in reply.tool_calls]
        if self.calls_in_content and not is_checker and calls:
            name, arguments = calls[0]
            return self._completion(body, json.dumps(
                {"name": name, "arguments": json.loads(arguments)}), [])
        return self._completion(body, reply.content or None, calls)

    @staticmethod
    def adversarial_verdict(mode: str, messages: list[Any],
                            tools: list[dict[str, Any]]) -> dict[str, Any]:
        if mode == "boilerplate":
            return {"verdict": "pass", "reason": "The arguments are justified."}
        read = copied_reads(messages, tools)
        return {"verdict": "pass", "read": read,
                "reason": "Checked " + ", ".join(map(str, read.values())) + ": all match."}

    def _completion(self, body: dict[str, Any], content: str | None,
                    calls: list[tuple[str, str]], usage: dict[str, int] | None = None,
                    model: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{len(self.requests)}_{i}", "type": "function",
                 "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(calls)]
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
            "created": 1_700_000_000, "model": model or body.get("model", "fake"),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": usage or {"prompt_tokens": PROMPT_TOKENS,
                               "completion_tokens": COMPLETION_TOKENS,
                               "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }


@contextmanager
def fake_openai_server(port: int = 0, **options: Any) -> Iterator[FakeOpenAI]:
    """A server on 127.0.0.1 (port 0: a free one); `options` set FakeOpenAI's fields. A role
    in "replay" mode loads the recordings."""
    fake = FakeOpenAI(**options)
    if "replay" in (fake.planner, fake.checker) and fake.replay is None:
        fake.replay = Replay.of(load_recordings())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            if not self.path.endswith("/chat/completions"):
                self.send_error(404)
                return
            answer = fake.answer(body)
            if answer == DROP:
                self.close_connection = True  # no response at all, as the real server did
                return
            status = 500 if answer == "500" else 200
            payload = json.dumps(answer if status == 200 else {"error": {
                "message": "tool_choice 'required' is not supported", "type": "server_error",
                "code": 500}}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, for trying signoff against the recordings by hand:
    `python -m tests.fake_openai --planner replay` (see docs/models.md)."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_openai",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--planner", choices=["offline", "replay"], default="offline")
    parser.add_argument("--checker", choices=["offline", "replay", "boilerplate", "copycat"],
                        default="offline")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    with fake_openai_server(port=options.port, planner=options.planner,
                            checker=options.checker) as fake:
        print(fake.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
