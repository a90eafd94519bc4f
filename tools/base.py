"""Typed tool contracts: what every tool an agent may call must declare.

A tool is one pydantic input model, one pydantic output model, a flag saying whether it
mutates, a risk class, and a function. The tenant (and the ticket's customer) come from the
run's `ToolContext`, never from arguments a model wrote.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from graph.text import unreadable_text

Risk = Literal["read", "write", "handoff"]


class ToolError(Exception):
    """A tool refused the call for a business reason (not found, not allowed); one-line message."""


class TransientToolError(ToolError):
    """A tool failed in a way that may succeed on retry (timeout, back-end unavailable)."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool knows about the run calling it; never taken from model-written arguments."""

    conn: sqlite3.Connection
    """Connection to the workflow's domain database. Tools never commit: the caller owns the
    transaction, so a mutation and its idempotency record commit together."""
    tenant_id: str
    """The tenant the run belongs to; every query a tool makes is filtered by it."""
    run_id: str
    """The run (and LangGraph thread) id."""
    customer_id: str | None = None
    """The customer the ticket belongs to, when the workflow has one."""
    ticket_id: str | None = None
    """The ticket the run works on, when the workflow has one."""


ToolFn = Callable[[ToolContext, Any], BaseModel]
ScopeFn = Callable[[ToolContext, Any], "str | None"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool's contract."""

    name: str
    """The name a model calls the tool by."""
    description: str
    """What the tool does, shown to the model."""
    input_model: type[BaseModel]
    """Arguments schema; a call whose arguments fail it never reaches `run`."""
    output_model: type[BaseModel]
    """Result schema; a result that fails it counts as a failed tool call."""
    mutates: bool
    """True when the tool changes the domain database; only the execute node runs these."""
    risk: Risk
    """Coarse risk class: read, write (money or records change) or handoff (to a human)."""
    run: ToolFn
    """The implementation: (context, validated input) -> output model instance."""
    scope: ScopeFn | None = None
    """Returns a one-line reason when the arguments reference data outside the run's tenant or
    the ticket's customer, else None. Used by the policy gate before anything runs."""

    def parse_args(self, args: dict[str, Any]) -> BaseModel:
        """Validate raw arguments strictly; raises pydantic.ValidationError.

        Arguments are JSON whoever wrote them (a model or an approver's edit), so they are
        validated as JSON in strict mode: `true` or `"9000"` is not an integer amount. Text
        holding NUL or another control character (newline, tab and carriage return aside) or
        invalid UTF-8 is refused before the schema is consulted.
        """
        unreadable = [
            InitErrorDetails(type=PydanticCustomError("unreadable_text", "Text {problem}",
                                                      {"problem": problem}),
                             loc=loc, input=value)
            for loc, value in _strings(args)
            if (problem := unreadable_text(value)) is not None
        ]
        if unreadable:
            raise ValidationError.from_exception_data(self.input_model.__name__, unreadable)
        return self.input_model.model_validate_json(json.dumps(args), strict=True)

    def openai_schema(self) -> dict[str, Any]:
        """The function-calling schema a chat model is bound with."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": _json_schema(self.input_model),
            },
        }


@functools.cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Generating a pydantic schema costs milliseconds and the planner binds every tool on
    # every step; a model class's schema never changes, so build it once per class.
    return model.model_json_schema()


def _strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[
        tuple[tuple[str | int, ...], str]]:
    """Every string inside JSON arguments (object keys included), with where it is."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, str(key)), str(key)
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, i))


def validation_summary(err: ValidationError) -> str:
    """One line naming each failing field, for gate reasons and CLI errors."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


class ToolRegistry:
    """The tools one workflow exposes, by name."""

    def __init__(self, specs: list[ToolSpec] | None = None) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: ToolSpec) -> ToolSpec:
        if spec.name in self._specs:
            raise ValueError(f"tool {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def argument_names(self) -> dict[str, frozenset[str]]:
        """Each tool's argument names, for checking a policy that refers to them."""
        return {name: frozenset(spec.input_model.model_fields)
                for name, spec in self._specs.items()}

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs
