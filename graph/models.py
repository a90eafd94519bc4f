"""Chat models: the offline scripted base, and the factory that picks scripted or OpenAI.

The offline models are real LangChain chat models: they implement `bind_tools`, so the planner
node and the verifier call them exactly as they call `ChatOpenAI`, and `with_structured_output`
works through the same tool-calling path. Token usage is estimated with
`count_tokens_approximately`, which needs no download.
"""

from __future__ import annotations

import json
import re
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

TICKET_MARK = "TICKET:"
EVIDENCE_MARK = "EVIDENCE:"
PROPOSAL_MARK = "PROPOSED CALL:"


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model; subclasses decide the reply from the messages and tools."""

    model_name: str = "scripted"

    @property
    def _llm_type(self) -> str:
        return "signoff-scripted"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None,
                   **kwargs: Any) -> Runnable[Any, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    @abstractmethod
    def respond(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        """The reply: an AIMessage with tool_calls, or with content only to end the turn."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        tools = kwargs.get("tools") or []
        reply = self.respond(messages, tools)
        tokens_in = count_tokens_approximately(messages)
        tokens_out = count_tokens_approximately([reply])
        reply.usage_metadata = {"input_tokens": tokens_in, "output_tokens": tokens_out,
                                "total_tokens": tokens_in + tokens_out}
        reply.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=reply)])


def extract_block(messages: Sequence[BaseMessage], mark: str) -> Any:
    """The JSON that follows `mark` in the last message containing it, or None."""
    for message in reversed(messages):
        content = message.content if isinstance(message.content, str) else ""
        index = content.find(mark)
        if index >= 0:
            try:
                return json.loads(content[index + len(mark):])
            except json.JSONDecodeError:
                return None
    return None


def find_evidence(evidence: Sequence[dict[str, Any]], tool: str,
                  **match: Any) -> dict[str, Any] | None:
    """The latest evidence entry from `tool` whose arguments include `match`, or None."""
    for entry in reversed(evidence):
        if entry["tool"] == tool and all(entry["args"].get(k) == v for k, v in match.items()):
            return entry
    return None


MONEY = re.compile(r"\$(\d{1,3}(?:,\d{3})+|\d{1,9})(?:\.(\d{1,2}))?(?![\d.,]*\d)")


def cents_in(text: str) -> list[int]:
    """Dollar amounts in text ($18, $18.5, $18.00, $1,200.00), in cents, in order."""
    return [int(whole.replace(",", "")) * 100 + int(frac.ljust(2, "0") if frac else 0)
            for whole, frac in MONEY.findall(text)]


DUPLICATE_CHARGE = re.compile(r"charged twice|double[- ]charged|duplicate (?:charge|payment)",
                              re.I)
"""How a support ticket says it was charged twice."""
MONEY_BACK = re.compile(r"refund|reimburs|money back|credit\b[^\n]{0,40}?\bback\b|compensat|"
                        + DUPLICATE_CHARGE.pattern, re.I)
"""How a support ticket asks for money back (the offline planner and checker both read it)."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


def asked_cents(text: str) -> list[int]:
    """The amounts in the sentences that ask for money back, else every amount in the text:
    "The order came to $201.50 but only the set ($12.50) broke. Please refund $12.50." asks
    for $12.50."""
    asked = [cents for sentence in _SENTENCE.split(text) if MONEY_BACK.search(sentence)
             for cents in cents_in(sentence)]
    return asked or cents_in(text)


TOOL_CHOICES = ("auto", "required", "step")
"""The planner's `tool_choice`: let the model choose, require some tool call, or name the
tool the workflow's rules say this step needs (the only one a small server may honour)."""
SCHEMA_DIALECTS = ("full", "plain")
"""What the tool schemas sent to the model keep: everything, or no regex `pattern` and no
`format` keywords (the gate still validates the full contract)."""
SWITCH = {"on": True, "true": True, "1": True, "yes": True,
          "off": False, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class ModelSettings:
    """Which model one role (planner or checker) uses and how it is called; read from the
    environment once, at the CLI edge (`from_env`)."""

    provider: str = "scripted"
    """"scripted" (offline, deterministic) or "openai" (any OpenAI-compatible endpoint)."""
    model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 30.0
    """Seconds one HTTP request may take before it is abandoned (SIGNOFF_<ROLE>_TIMEOUT)."""
    retries: int = 0
    """How many times signoff sends a failed call again (SIGNOFF_<ROLE>_RETRIES). The HTTP
    client's own retries are off, so every attempt is recorded and counted as a call."""
    reasks: int = 1
    """Planner: how many times a reply with no action (no tool call, no well-formed DONE or
    ESCALATE) is asked again before the run goes to a human (SIGNOFF_PLANNER_REASKS)."""
    tool_choice: str = "auto"
    """Planner: one of TOOL_CHOICES (SIGNOFF_PLANNER_TOOL_CHOICE)."""
    schema_dialect: str = "full"
    """One of SCHEMA_DIALECTS (SIGNOFF_<ROLE>_SCHEMA)."""
    content_tool_calls: bool = True
    """Read a tool call written as JSON in the reply's text when the reply has none
    (SIGNOFF_<ROLE>_CONTENT_CALLS=on|off); such a call still passes the whole gate."""

    @classmethod
    def from_env(cls, role: str, env: Mapping[str, str]) -> ModelSettings:
        """Settings for `role` from SIGNOFF_<ROLE>_* variables; a bad value raises ValueError
        naming the variable."""
        prefix = f"SIGNOFF_{role.upper()}_"

        def choice(name: str, allowed: Sequence[str], default: str) -> str:
            value = env.get(prefix + name, default).strip().lower()
            if value not in allowed:
                raise ValueError(f"{prefix}{name} must be one of {', '.join(allowed)}, "
                                 f"not {value!r}")
            return value

        def number(name: str, default: str, kind: type[int] | type[float]) -> Any:
            raw = env.get(prefix + name, default).strip()
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or value < 0 or (kind is float and not 0 < value < 86_400):
                what = ("a number of seconds above 0" if kind is float
                        else "a whole number, 0 or more")
                raise ValueError(f"{prefix}{name} must be {what}, not {raw!r}")
            return value

        provider = choice("PROVIDER", ("scripted", "openai"), "scripted")
        return cls(
            provider=provider,
            model=env.get(prefix + "MODEL", "gpt-4o-mini" if provider == "openai" else ""),
            base_url=env.get(prefix + "BASE_URL") or env.get("OPENAI_BASE_URL"),
            api_key=env.get(prefix + "API_KEY") or env.get("OPENAI_API_KEY"),
            timeout_s=number("TIMEOUT", "30", float),
            retries=number("RETRIES", "0", int),
            reasks=number("REASKS", "1", int),
            tool_choice=choice("TOOL_CHOICE", TOOL_CHOICES, "auto"),
            schema_dialect=choice("SCHEMA", SCHEMA_DIALECTS, "full"),
            content_tool_calls=SWITCH[choice("CONTENT_CALLS", tuple(SWITCH), "on")],
        )


def make_chat_model(settings: ModelSettings, scripted: BaseChatModel) -> BaseChatModel:
    """The configured model: `scripted` offline, else ChatOpenAI against the endpoint, with
    the OpenAI client's silent retries off (signoff retries, and counts, on its own)."""
    if settings.provider == "scripted":
        return scripted
    from langchain_openai import ChatOpenAI

    if not settings.api_key:
        raise ValueError("an API key is needed for provider 'openai' (set OPENAI_API_KEY or "
                         "SIGNOFF_<ROLE>_API_KEY; local servers accept any value)")
    return ChatOpenAI(model=settings.model, base_url=settings.base_url,
                      api_key=settings.api_key,  # type: ignore[arg-type]
                      temperature=0, timeout=settings.timeout_s, max_retries=0)


def model_name_of(model: BaseChatModel) -> str:
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


# What small servers need ---------------------------------------------------------------------

_DROPPED_IN_PLAIN = frozenset({"pattern", "format"})
_NAME_MAPS = frozenset({"properties", "$defs", "definitions"})


def schema_for_model(schema: Any, dialect: str) -> Any:
    """A tool schema as the model is sent it: unchanged in the "full" dialect; in "plain",
    without `pattern` and `format` keywords (property names are kept whatever they are)."""
    if dialect == "full":
        return schema

    def strip(node: Any, names: bool = False) -> Any:
        if isinstance(node, dict):
            if names:  # keys are property or definition names, not keywords
                return {k: strip(v) for k, v in node.items()}
            return {k: strip(v, k in _NAME_MAPS) for k, v in node.items()
                    if k not in _DROPPED_IN_PLAIN}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(schema)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def content_tool_call(content: Any, tool_names: Sequence[str]) -> dict[str, Any] | None:
    """A tool call written as JSON in a reply's text ({"name": ..., "arguments": {...}}, in
    a ```json fence or <tool_call> tags, or the bare arguments when one tool was offered),
    as a LangChain tool call; args None when they are not a JSON object. None when the text
    holds no call to an offered tool."""
    if not isinstance(content, str) or "{" not in content:
        return None
    candidates = [m.group(1) for m in _TAGGED.finditer(content)]
    candidates += [m.group(1) for m in _FENCE.finditer(content)]
    candidates.append(content[content.find("{"):content.rfind("}") + 1])
    for text in candidates:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, list) and data:
            data = data[0]
        if not isinstance(data, dict):
            continue
        nested = data.get("function")
        function: dict[str, Any] = nested if isinstance(nested, dict) else data
        name = function.get("name") or function.get("tool")
        args: Any
        if name is None and len(tool_names) == 1:
            name, args = tool_names[0], data
        else:
            args = next((function[k] for k in ("arguments", "args", "parameters")
                         if k in function), None)
        if name not in tool_names:
            continue
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = None
        return {"name": name, "args": args if isinstance(args, dict) else None,
                "id": "content-call"}
    return None


@dataclass(frozen=True)
class Attempt:
    """One request to a chat model: its reply, or why it failed."""

    reply: AIMessage | None
    error: str | None
    latency_s: float
    tokens_in: int
    tokens_out: int


def invoke_counted(model: Runnable[Any, Any], messages: list[Any], retries: int,
                   clock: Callable[[], float] = time.perf_counter) -> list[Attempt]:
    """Send `messages`, again up to `retries` times while it fails; every attempt is returned
    (so each is recorded and counted), the last one is the answer."""
    attempts: list[Attempt] = []
    for _ in range(retries + 1):
        started = clock()
        try:
            reply = model.invoke(messages)
        except Exception as exc:  # noqa: BLE001 - the caller fails closed on the last one
            attempts.append(Attempt(None, (str(exc) or type(exc).__name__)[:300],
                                    clock() - started, 0, 0))
            continue
        meta = getattr(reply, "usage_metadata", None)
        attempts.append(Attempt(reply, None, clock() - started,
                                meta["input_tokens"] if meta else 0,
                                meta["output_tokens"] if meta else 0))
        break
    return attempts
