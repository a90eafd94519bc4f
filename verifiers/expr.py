"""A tiny, safe condition language for policy rules.

Conditions are Python-looking expressions over a few named dicts, for example
`args.amount_cents > 5000 and not customer.flagged`. Only comparisons, boolean logic,
arithmetic on numbers, attribute lookup and indexing on the given names, literals, `in`, and
four functions are allowed:

- `len(x)`: the length of a list, string or mapping;
- `blank(s)`: true for a missing (null) string or one of only whitespace;
- `all(COND for NAME in LIST)` and `any(COND for NAME in LIST)`, optionally with `if COND`.

Anything else is rejected when the policy is loaded, never evaluated. Evaluation is total:
every list is finite and every step either returns a value or raises ExprError (a key or
index that is not there, a type that does not fit), which the gate turns into a block.
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
FUNCTIONS = frozenset({"len", "blank", "all", "any"})
"""The functions a condition may call."""
_QUANTIFIERS = frozenset({"all", "any"})


def _arithmetic(fn: Any) -> Any:
    """`fn` on numbers only: `"a" * 10**9` would not be total in memory."""
    def apply(a: Any, b: Any) -> Any:
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b)):
            raise TypeError(f"arithmetic needs numbers, not {type(a).__name__} and "
                            f"{type(b).__name__}")
        return fn(a, b)
    return apply


class Condition:
    """A parsed condition; `evaluate(names)` returns a bool or raises ExprError."""

    def __init__(self, source: str, allowed_names: frozenset[str] | None) -> None:
        """`allowed_names` None: any name (a policy read without its workflow, whose fact
        namespaces are unknown; the runner always passes them)."""
        self.source = source
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"syntax error in condition {source!r}: {exc.msg}") from None
        self._check(tree.body, allowed_names)
        self._tree = tree.body

    def _check(self, node: ast.AST, allowed: frozenset[str] | None) -> None:
        ok = (
            ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
            ast.BinOp, ast.Attribute, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Load,
            ast.Subscript, ast.Call, *_COMPARE, *_BINOP,
        )
        if not isinstance(node, ok):
            raise ExprError(f"{type(node).__name__} is not allowed in condition {self.source!r}")
        if isinstance(node, ast.Call):
            self._check_call(node, allowed)
            return
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            raise ExprError(f"slices are not allowed in condition {self.source!r}")
        if isinstance(node, ast.Name) and allowed is not None and node.id not in allowed \
                and node.id not in _CONSTANTS:
            names = ", ".join(sorted(allowed))
            raise ExprError(f"unknown name {node.id!r} in condition {self.source!r} (use {names})")
        for child in ast.iter_child_nodes(node):
            self._check(child, allowed)

    def _check_call(self, node: ast.Call, allowed: frozenset[str] | None) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in FUNCTIONS:
            raise ExprError(f"function {name!r} is not allowed in condition {self.source!r} "
                            f"(use {', '.join(sorted(FUNCTIONS))})")
        if len(node.args) != 1 or node.keywords:
            raise ExprError(f"{name}() takes exactly one argument in condition {self.source!r}")
        arg = node.args[0]
        if name not in _QUANTIFIERS:
            self._check(arg, allowed)
            return
        if not isinstance(arg, ast.GeneratorExp) or len(arg.generators) != 1:
            raise ExprError(f"{name}() takes one 'COND for NAME in LIST' in condition "
                            f"{self.source!r}")
        loop = arg.generators[0]
        if not isinstance(loop.target, ast.Name) or loop.is_async:
            raise ExprError(f"{name}(): the loop variable must be one name in condition "
                            f"{self.source!r}")
        if loop.target.id in (allowed or ()) or loop.target.id in _CONSTANTS:
            raise ExprError(f"{name}(): the loop variable {loop.target.id!r} hides a name in "
                            f"condition {self.source!r}")
        self._check(loop.iter, allowed)
        inner = None if allowed is None else allowed | {loop.target.id}
        for part in (arg.elt, *loop.ifs):
            self._check(part, inner)

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
            return self._apply(_arithmetic(_BINOP[type(node.op)]), node, names, node.left,
                               node.right)
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if not self._apply(_COMPARE[type(op)], node, names, left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.List | ast.Tuple):
            return [self._eval(e, names) for e in node.elts]
        if isinstance(node, ast.Subscript):
            return self._index(node, self._eval(node.value, names), self._eval(node.slice, names))
        if isinstance(node, ast.Call):
            return self._call(node, names)
        raise ExprError(f"cannot evaluate {ast.unparse(node)!r}")  # unreachable after _check

    def _apply(self, fn: Any, node: ast.AST, names: Mapping[str, Any], a: ast.AST,
               b: ast.AST) -> Any:
        try:
            return fn(self._eval(a, names), self._eval(b, names))
        except TypeError as exc:
            raise ExprError(f"cannot evaluate {ast.unparse(node)!r}: {exc}") from None

    def _index(self, node: ast.AST, base: Any, key: Any) -> Any:
        if isinstance(base, Mapping) and isinstance(key, str) and key in base:
            return base[key]
        if isinstance(base, list | tuple | str) and isinstance(key, int) \
                and not isinstance(key, bool) and -len(base) <= key < len(base):
            return base[key]
        raise ExprError(f"{ast.unparse(node)!r} is not known for this action")

    def _call(self, node: ast.Call, names: Mapping[str, Any]) -> Any:
        assert isinstance(node.func, ast.Name)  # _check_call
        name, arg = node.func.id, node.args[0]
        if name == "len":
            value = self._eval(arg, names)
            if not isinstance(value, list | tuple | str | Mapping):
                raise ExprError(f"cannot evaluate {ast.unparse(node)!r}: "
                                f"{type(value).__name__} has no length")
            return len(value)
        if name == "blank":
            value = self._eval(arg, names)
            if value is not None and not isinstance(value, str):
                raise ExprError(f"cannot evaluate {ast.unparse(node)!r}: "
                                f"{type(value).__name__} is not text")
            return value is None or not value.strip()
        assert isinstance(arg, ast.GeneratorExp)
        loop = arg.generators[0]
        assert isinstance(loop.target, ast.Name)
        items = self._eval(loop.iter, names)
        if not isinstance(items, list | tuple):
            raise ExprError(f"cannot evaluate {ast.unparse(node)!r}: "
                            f"{ast.unparse(loop.iter)!r} is not a list")
        results = []
        for item in items:
            scope = {**names, loop.target.id: item}
            if all(self._eval(cond, scope) for cond in loop.ifs):
                results.append(bool(self._eval(arg.elt, scope)))
        return all(results) if name == "all" else any(results)
