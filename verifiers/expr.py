"""A tiny, safe condition language for policy rules.

Conditions are Python-looking expressions over a few named dicts, for example
`args.amount_cents > 5000 and not customer.flagged`. Only comparisons, boolean logic,
arithmetic on numbers, attribute lookup on the given names, literals and `in` are allowed;
anything else is rejected when the policy is loaded, never evaluated.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from typing import Any


class ExprError(ValueError):
    """A condition is not in the allowed language, or cannot be evaluated on these facts."""


_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_BINOP = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_CONSTANTS = {"true": True, "false": False, "null": None}


class Condition:
    """A parsed condition; `evaluate(names)` returns a bool or raises ExprError."""

    def __init__(self, source: str, allowed_names: frozenset[str]) -> None:
        self.source = source
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"syntax error in condition {source!r}: {exc.msg}") from None
        self._check(tree.body, allowed_names)
        self._tree = tree.body

    def _check(self, node: ast.AST, allowed: frozenset[str]) -> None:
        ok = (
            ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
            ast.BinOp, ast.Attribute, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Load,
            *_COMPARE, *_BINOP,
        )
        if not isinstance(node, ok):
            raise ExprError(f"{type(node).__name__} is not allowed in condition {self.source!r}")
        if isinstance(node, ast.Name) and node.id not in allowed and node.id not in _CONSTANTS:
            names = ", ".join(sorted(allowed))
            raise ExprError(f"unknown name {node.id!r} in condition {self.source!r} (use {names})")
        for child in ast.iter_child_nodes(node):
            self._check(child, allowed)

    def evaluate(self, names: Mapping[str, Any]) -> bool:
        return bool(self._eval(self._tree, names))

    def _eval(self, node: ast.AST, names: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            if node.id not in names:
                raise ExprError(f"{node.id!r} is not known for this action")
            return names[node.id]
        if isinstance(node, ast.Attribute):
            base = self._eval(node.value, names)
            if not isinstance(base, Mapping) or node.attr not in base:
                raise ExprError(f"{ast.unparse(node)!r} is not known for this action")
            return base[node.attr]
        if isinstance(node, ast.BoolOp):
            values = (self._eval(v, names) for v in node.values)
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, names)
            return (not value) if isinstance(node.op, ast.Not) else -value
        if isinstance(node, ast.BinOp):
            return self._apply(_BINOP[type(node.op)], node, names, node.left, node.right)
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if not self._apply(_COMPARE[type(op)], node, names, left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.List | ast.Tuple):
            return [self._eval(e, names) for e in node.elts]
        raise ExprError(f"cannot evaluate {ast.unparse(node)!r}")  # unreachable after _check

    def _apply(self, fn: Any, node: ast.AST, names: Mapping[str, Any], a: ast.AST,
               b: ast.AST) -> Any:
        try:
            return fn(self._eval(a, names), self._eval(b, names))
        except TypeError as exc:
            raise ExprError(f"cannot evaluate {ast.unparse(node)!r}: {exc}") from None
