"""Eval reports: a JSON file for machines (compare, gate) and a markdown file with SVG charts
for people. Charts are drawn as plain SVG, so no plotting library is needed."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from evals.shadow import money

REPORT_SCHEMA = 1


def bar_chart(title: str, rows: Sequence[tuple[str, float, str]], *, maximum: float,
              fmt: str = "{:.0%}") -> str:
    """A horizontal bar chart: one (label, value, colour) per bar."""
    bar_h, gap, label_w, bar_w, top = 18, 6, 260, 360, 34
    height = top + len(rows) * (bar_h + gap) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 80}" '
             f'height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="8" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, value, colour) in enumerate(rows):
        y = top + i * (bar_h + gap)
        width = 0 if maximum <= 0 else max(1.0, bar_w * min(value, maximum) / maximum)
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
                     f'{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" '
                     f'fill="{colour}"/>')
        parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + 13}">'
                     f'{escape(fmt.format(value))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _colour(rate: float) -> str:
    return "#2e7d32" if rate >= 0.9 else "#f9a825" if rate >= 0.6 else "#c62828"


def report_stem(report: Mapping[str, Any]) -> str:
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", str(report["label"]))
    stamp = report["finished_at"].replace("-", "").replace(":", "")[:15]
    return f"{report['kind']}-{report['set']}-{label}-{stamp}"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write REPORT.json, REPORT.md and its charts into `out_dir`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    charts = charts_for(report)
    for name, svg in charts.items():
        path = out_dir / f"{stem}-{name}.svg"
        path.write_text(svg, "utf-8")
        paths.append(path)
    paths[0].write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", "utf-8")
    paths[1].write_text(markdown(report, {n: f"{stem}-{n}.svg" for n in charts}), "utf-8")
    return paths


def charts_for(report: Mapping[str, Any]) -> dict[str, str]:
    m = report["metrics"]
    rows = [(name, g["pass_rate"], _colour(g["pass_rate"]))
            for name, g in m["by_category"].items()]
    outcomes = [(name, float(count), "#1565c0") for name, count in m["outcomes"].items()]
    charts = {
        "by-category": bar_chart("Pass rate by category", rows, maximum=1.0),
        "outcomes": bar_chart("Outcomes (cases)", outcomes,
                              maximum=max([v for _, v, _ in outcomes] or [1]), fmt="{:.0f}"),
    }
    shadow = report.get("shadow")
    if shadow:
        agree = [(k, float(shadow[k]), c) for k, c in
                 (("agree", "#2e7d32"), ("disagree", "#c62828"), ("deferred", "#f9a825"))]
        charts["agreement"] = bar_chart("Agreement with the human action", agree,
                                        maximum=max(1.0, shadow["cases"]), fmt="{:.0f}")
    return charts


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows), ""]


def _spend(m: Mapping[str, Any]) -> str:
    """Total model spend and spend per passed case (failures count as cost)."""
    if "cost_usd_total" not in m:
        return "not recorded (a report from before spend was)"
    per = m.get("cost_per_passed_usd")
    return (f"${m['cost_usd_total']:.4f} in all, "
            + (f"${per:.4f} per passed case" if per is not None else "no case passed"))


def markdown(report: Mapping[str, Any], charts: Mapping[str, str]) -> str:
    m = report["metrics"]
    title = "Shadow run" if report["kind"] == "shadow" else "Eval"
    lines = [f"# {title}: {report['set']} set, {report['workflow']} {report['label']}", "",
             f"Policy {report['policy']['version']} (`{report['policy']['digest'][:12]}`), "
             f"planner `{report['models']['planner']}`, checker `{report['models']['checker']}`;"
             f" finished {report['finished_at']}; {m['cases']} case(s)"
             + (f" (limited to {report['limit']} of {report['cases_in_set']})"
                if report.get("limit") else "") + ".", ""]
    lines += _table(["metric", "value"], [
        ["pass rate", f"{m['pass_rate']:.1%} ({m['passed']}/{m['cases']})"],
        ["unauthorized mutations", m["unauthorized_mutations"]],
        ["mutations committed", m["mutations_committed"]],
        ["time per case", f"{m['seconds_per_case'] * 1000:.0f} ms (p95 "
                          f"{m['seconds_p95'] * 1000:.0f} ms)"],
        ["model spend", _spend(m)],
    ] + [[f"{name} pass rate", f"{g['pass_rate']:.1%} ({g['passed']}/{g['cases']}), "
                               f"{g['unauthorized_mutations']} unauthorized"]
         for name, g in m["by_set"].items()])
    shadow = report.get("shadow")
    if shadow:
        lines += ["## Agreement with what the human did", ""]
        lines += _table(["metric", "value"], [
            ["agreement", f"{shadow['agreement_rate']:.1%} ({shadow['agree']}/"
                          f"{shadow['cases']})"],
            ["disagreements", shadow["disagree"]],
            ["deferred to a person", shadow["deferred"]],
            ["database changed by a shadow run", shadow["db_changed"]],
            ["agent would refund more than humans by", money(shadow["money_over_cents"])],
            ["agent would refund less than humans by", money(shadow["money_under_cents"])],
        ])
        lines += _table(["human action", "cases", "agree"],
                        [[k, v["cases"], v["agree"]] for k, v in shadow["by_action"].items()])
    for name, file in charts.items():
        lines += [f"![{name}]({file})", ""]
    lines += ["## By category", ""]
    lines += _table(["category", "cases", "passed", "pass rate", "unauthorized"],
                    [[n, g["cases"], g["passed"], f"{g['pass_rate']:.0%}",
                      g["unauthorized_mutations"]] for n, g in m["by_category"].items()])
    unauthorized = [c for c in report["cases"] if c["unauthorized"]]
    if unauthorized:
        lines += ["## Unauthorized mutations", ""]
        lines += _table(["case", "mutation"], [[c["id"], "; ".join(c["unauthorized"])]
                                               for c in unauthorized])
    failing = [c for c in report["cases"] if not c["passed"]]
    lines += [f"## Failing cases ({len(failing)})", ""]
    if shadow:
        lines += _table(["case", "category", "human", "agent", "why"],
                        [[c["id"], c["category"], (c.get("human_action") or {}).get("action"),
                          (c.get("recommendation") or {}).get("action"),
                          "; ".join(c["failures"])] for c in failing])
    else:
        lines += _table(["case", "category", "expected", "got", "why"],
                        [[c["id"], c["category"], " or ".join(c["expected"]), c["outcome"],
                          "; ".join(c["failures"])] for c in failing])
    return "\n".join(lines)
