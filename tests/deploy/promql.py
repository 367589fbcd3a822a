"""The PromQL expressions of walletguard's rules and dashboard, and the "signals" of an expression.

An alert expression is normally empty: `lag > 50000 and deriv(lag[15m]) > 0` returns nothing on
a healthy service, so "returns a series" cannot be asked of it directly. What can be asked, and
what breaks when a metric is renamed, is that every *vector* it compares or combines returns
series. So an expression's signals are found by splitting it, outside parentheses, braces,
brackets and strings, at PromQL's lowest-precedence binary operators:

1. `or`, then `and` / `unless` (set operators): every operand is a signal source;
2. comparisons `== != > < >= <=`: every operand that is not a number literal is a signal;
   the vector-matching modifiers after the operator (`bool`, `on(...)`, `ignoring(...)`,
   `group_left(...)`, `group_right(...)`) are dropped;
3. anything else (arithmetic, functions, aggregations, selectors) is kept whole.

So `a > 0.002 and a > 3 * avg_over_time(a[1d])` has the signals `a`, `a` and
`3 * avg_over_time(a[1d])`: the thresholds go, the quantities they are compared with stay.
An expression with no top-level comparison or set operator (recording rules, dashboard
queries) is its own single signal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

_IDENT = re.compile(r"[A-Za-z0-9_:]")
_MODIFIER = re.compile(r"^\s*(bool\b|(on|ignoring|group_left|group_right)\s*\([^)]*\)|(group_left|group_right)\b)")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(Inf|NaN)$", re.IGNORECASE)

SET_OPS = [["or"], ["and", "unless"]]
COMPARISONS = ["==", "!=", ">=", "<=", ">", "<"]


def _top_level_positions(expr: str, ops: list[str]) -> list[tuple[int, str]]:
    """Positions of `ops` in `expr` outside (), {}, [] and string literals."""
    found = []
    depth = 0
    quote = None
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            for op in ops:
                if not expr.startswith(op, i):
                    continue
                if op[0].isalpha():
                    before = expr[i - 1] if i else " "
                    after = expr[i + len(op)] if i + len(op) < len(expr) else " "
                    if _IDENT.match(before) or _IDENT.match(after):
                        continue
                found.append((i, op))
                i += len(op) - 1
                break
        i += 1
    return found


def _split(expr: str, ops: list[str]) -> list[str]:
    parts, last = [], 0
    for pos, op in _top_level_positions(expr, ops):
        parts.append(expr[last:pos])
        last = pos + len(op)
    parts.append(expr[last:])
    return parts


def _strip_modifiers(s: str) -> str:
    while True:
        m = _MODIFIER.match(s)
        if not m:
            return s.strip()
        s = s[m.end():]


def _strip_parens(s: str) -> str:
    s = s.strip()
    while s.startswith("(") and s.endswith(")"):
        depth = 0
        for i, c in enumerate(s):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(s) - 1:
                return s  # "(a) + (b)": the parentheses do not wrap the whole
        s = s[1:-1].strip()
    return s


def signals(expr: str) -> list[str]:
    """The vector expressions inside `expr` that must each return series (see module doc)."""
    expr = _strip_parens(" ".join(expr.split()))
    for ops in SET_OPS:
        parts = _split(expr, ops)
        if len(parts) > 1:
            return [s for p in parts for s in signals(_strip_modifiers(p))]
    parts = _split(expr, COMPARISONS)
    if len(parts) > 1:
        out = []
        for p in parts:
            p = _strip_parens(_strip_modifiers(p))
            if not _NUMBER.match(p):
                out.extend(signals(p))
        return out
    return [expr]


def rule_expressions(rules_file: Path) -> list[tuple[str, str, str]]:
    """(kind, name, expr) of every rule: kind is "record" or "alert"."""
    doc = yaml.safe_load(rules_file.read_text())
    out = []
    for g in doc["groups"]:
        for r in g["rules"]:
            kind = "record" if "record" in r else "alert"
            out.append((kind, r[kind], r["expr"]))
    return out


def dashboard_panels(dashboard_file: Path) -> list[dict]:
    """Every panel of a Grafana dashboard, rows' nested panels included (rows themselves not)."""
    doc = json.loads(dashboard_file.read_text())
    out = []
    for p in doc["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


# Grafana's template variables, replaced as Grafana would with the dashboard's defaults: every
# instance selected (the variable's allValue), and a rate window of 4 scrapes at 15 s.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$instance": ".*"}


def grafana_to_promql(expr: str) -> str:
    for k in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARIABLES[k])
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def dashboard_expressions(dashboard_file: Path) -> list[tuple[str, str]]:
    """(panel title / refId, PromQL with Grafana variables replaced) of every target."""
    out = []
    for p in dashboard_panels(dashboard_file):
        for t in p.get("targets", []):
            out.append((f'{p["title"]} / {t["refId"]}', grafana_to_promql(t["expr"])))
    return out


METRIC_NAME = re.compile(r"\bwalletguard_[a-z0-9_]+")
RECORDED_NAME = re.compile(r"\bwalletguard:[a-z0-9_:]+")


def metric_family(name: str) -> str:
    """A histogram's series name → its family name."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
