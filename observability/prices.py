"""Model price table: USD per million tokens, a default in code, overridable from TOML."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class ModelPrice(NamedTuple):
    input_per_mtok: float
    """USD per one million input (prompt) tokens."""
    output_per_mtok: float
    """USD per one million output (completion) tokens."""


# List prices (USD / 1M tokens) at the time of writing; override with a TOML file for yours.
DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "gpt-5": ModelPrice(1.25, 10.00),
    "gpt-5-mini": ModelPrice(0.25, 2.00),
    "gpt-5-nano": ModelPrice(0.05, 0.40),
    "o3": ModelPrice(2.00, 8.00),
    "o3-mini": ModelPrice(1.10, 4.40),
    "o4-mini": ModelPrice(1.10, 4.40),
    # The offline scripted models used by tests and the sample workflow cost nothing.
    "scripted": ModelPrice(0.0, 0.0),
    "scripted-*": ModelPrice(0.0, 0.0),
}

_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class PriceTable:
    """Looks up a model's price: exact name, then its undated name, then glob patterns."""

    prices: Mapping[str, ModelPrice]
    """Model name or fnmatch pattern (e.g. "scripted-*") -> price."""

    @classmethod
    def default(cls) -> PriceTable:
        return cls(dict(DEFAULT_PRICES))

    @classmethod
    def from_toml(
        cls, path: Path, *, base: Mapping[str, ModelPrice] = DEFAULT_PRICES
    ) -> PriceTable:
        """Load `[models."name"] input_per_mtok = .. output_per_mtok = ..` over `base`."""
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
        prices = dict(base)
        for name, entry in document.get("models", {}).items():
            try:
                prices[name] = ModelPrice(
                    float(entry["input_per_mtok"]), float(entry["output_per_mtok"])
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: bad price for model {name!r}: {exc}") from exc
        return cls(prices)

    def price(self, model: str) -> ModelPrice | None:
        """The price of `model`, or None when the table does not know it."""
        for name in (model, _SNAPSHOT_SUFFIX.sub("", model)):
            if name in self.prices:
                return self.prices[name]
        patterns = [
            p for p in self.prices if any(c in p for c in "*?[") and fnmatch.fnmatch(model, p)
        ]
        return self.prices[max(patterns, key=len)] if patterns else None

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """USD cost of one call, or None for a model with no known price."""
        price = self.price(model)
        if price is None:
            return None
        return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1_000_000
