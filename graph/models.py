"""Chat models: the offline scripted base, and the factory that picks scripted or OpenAI.

The offline models are real LangChain chat models: they implement `bind_tools`, so the planner
node and the verifier call them exactly as they call `ChatOpenAI`, and `with_structured_output`
works through the same tool-calling path. Token usage is estimated with
`count_tokens_approximately`, which needs no download.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections.abc import Sequence
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


@dataclass(frozen=True)
class ModelSettings:
    """Which model one role (planner or checker) uses; read from the environment at the CLI."""

    provider: str = "scripted"
    """"scripted" (offline, deterministic) or "openai" (any OpenAI-compatible endpoint)."""
    model: str = ""
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, role: str, env: dict[str, str]) -> ModelSettings:
        prefix = f"SIGNOFF_{role.upper()}_"
        provider = env.get(prefix + "PROVIDER", "scripted").strip().lower()
        if provider not in {"scripted", "openai"}:
            raise ValueError(f"{prefix}PROVIDER must be 'scripted' or 'openai', not {provider!r}")
        return cls(
            provider=provider,
            model=env.get(prefix + "MODEL", "gpt-4o-mini" if provider == "openai" else ""),
            base_url=env.get(prefix + "BASE_URL") or env.get("OPENAI_BASE_URL"),
            api_key=env.get(prefix + "API_KEY") or env.get("OPENAI_API_KEY"),
            timeout_s=float(env.get(prefix + "TIMEOUT", "30")),
        )


def make_chat_model(settings: ModelSettings, scripted: BaseChatModel) -> BaseChatModel:
    """The configured model: `scripted` offline, else ChatOpenAI against the endpoint."""
    if settings.provider == "scripted":
        return scripted
    from langchain_openai import ChatOpenAI

    if not settings.api_key:
        raise ValueError("an API key is needed for provider 'openai' (set OPENAI_API_KEY or "
                         "SIGNOFF_<ROLE>_API_KEY; local servers accept any value)")
    return ChatOpenAI(model=settings.model, base_url=settings.base_url,
                      api_key=settings.api_key,  # type: ignore[arg-type]
                      temperature=0, timeout=settings.timeout_s, max_retries=1)


def model_name_of(model: BaseChatModel) -> str:
    for attr in ("model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__
