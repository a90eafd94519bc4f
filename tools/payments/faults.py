"""Faults the payments service injects, by configuration: for drills and crash tests.

Configured by a JSON object (`--faults FILE`, or SIGNOFF_PAYMENTS_FAULTS holding the JSON or
a path to it). Rates are probabilities per `POST /v1/refunds`; `slow_s` delays every answer.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

Fault = Literal["error", "timeout", "commit_then_drop", "commit_then_hang"]


@dataclass(frozen=True)
class PaymentsFaults:
    error_rate: float = 0.0
    """A 503 before anything is written."""
    timeout_rate: float = 0.0
    """Hang `hang_s` before anything is written, then answer 503 (the client has gone)."""
    commit_then_drop_rate: float = 0.0
    """Commit the refund, then close the connection without an answer."""
    commit_then_hang_rate: float = 0.0
    """Commit the refund, then hang `hang_s` before answering: a client timeout after commit."""
    slow_s: float = 0.0
    """Seconds every answer waits before it is sent."""
    hang_s: float = 5.0
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> PaymentsFaults:
        """From JSON text, or the path of a file holding it; ValueError on a bad value."""
        source = text.strip()
        if source and not source.startswith(("{", "[")):
            try:
                source = Path(source).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read faults file {text}: {exc.strerror}") from None
        try:
            data = json.loads(source or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"faults are not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "seed":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("seed must be an integer")
            elif not isinstance(value, int | float) or isinstance(value, bool) or value < 0 \
                    or (name.endswith("_rate") and value > 1):
                raise ValueError(f"{name} must be a number"
                                 + (" from 0 to 1" if name.endswith("_rate") else " >= 0"))
            values[name] = value
        return cls(**values)


class FaultDice:
    """Draws which fault (if any) hits one request; thread-safe."""

    def __init__(self, faults: PaymentsFaults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()

    def draw(self) -> Fault | None:
        f = self.faults
        with self._lock:
            roll = self._rng.random()
        for fault, rate in (("error", f.error_rate), ("timeout", f.timeout_rate),
                            ("commit_then_drop", f.commit_then_drop_rate),
                            ("commit_then_hang", f.commit_then_hang_rate)):
            if roll < rate:
                return fault  # type: ignore[return-value]
            roll -= rate
        return None
