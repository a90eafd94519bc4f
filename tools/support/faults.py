"""Fault injection for the support tools: transient failures and slow answers, per tool name."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from tools.base import ExternalCall, ToolContext, ToolSpec, TransientToolError


@dataclass(frozen=True)
class FaultPlan:
    """Faults to inject into named tools, for tests and drills. The empty plan injects none."""

    fail_first: Mapping[str, int] = field(default_factory=dict)
    """Tool name -> how many of its first calls raise TransientToolError (before the tool runs,
    so a failed call has no effect)."""
    slow_seconds: Mapping[str, float] = field(default_factory=dict)
    """Tool name -> seconds to wait before each call runs."""
    sleep: Callable[[float], None] = time.sleep
    """How to wait; tests pass a fake that records the delay instead of sleeping."""

    def apply(self, spec: ToolSpec) -> ToolSpec:
        """The spec with this plan's faults wrapped around its `run`; unchanged if none apply.

        Call counts live in the returned spec, so each registry counts its own calls.
        """
        failures = self.fail_first.get(spec.name, 0)
        delay = self.slow_seconds.get(spec.name, 0.0)
        if failures <= 0 and delay <= 0:
            return spec
        calls = itertools.count(1)
        inner = spec.run

        def before_effect() -> None:
            call = next(calls)
            if call <= failures:
                raise TransientToolError(
                    f"{spec.name} unavailable (injected fault, call {call} of {failures})"
                )
            if delay > 0:
                self.sleep(delay)

        def run(ctx: ToolContext, args: Any) -> BaseModel:
            before_effect()
            return inner(ctx, args)

        external = spec.external
        if external is None:
            return replace(spec, run=run)

        def faulty_external(ctx: ToolContext, args: Any) -> ExternalCall | None:
            # An external effect skips `run`: the fault goes before its call instead.
            call = external(ctx, args)
            return None if call is None else _FaultyCall(call, before_effect)

        return replace(spec, run=run, external=faulty_external)


@dataclass
class _FaultyCall:
    """An external call whose `perform` meets the plan's faults first (nothing is sent)."""

    inner: ExternalCall
    before: Callable[[], None]
    system: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.system, self.request = self.inner.system, self.inner.request

    def perform(self, point: Callable[[str], None]) -> dict[str, Any]:
        self.before()
        return self.inner.perform(point)

    def lookup(self) -> dict[str, Any] | None:
        return self.inner.lookup()

    def apply(self, record: dict[str, Any]) -> BaseModel:
        return self.inner.apply(record)
