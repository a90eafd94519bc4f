"""Run every benchmark and write docs/benchmarks.md.

    .venv/bin/python -m bench            # the full pass (under ~10 minutes once the
                                         # 1,000,000-run trace store is cached in bench/out/)
    .venv/bin/python -m bench --quick    # a ~1 minute pass with smaller samples
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import (
    breakdown,
    cli,
    compare,
    controls,
    growth,
    profile,
    resume,
    throughput,
    tracestore,
)
from bench.common import OUT, fmt_ms, table

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("langgraph", "langgraph-checkpoint", "langgraph-checkpoint-sqlite", "langchain",
            "langchain-core", "pydantic", "sqlite-utils")

FULL = {"rounds": 15, "lengths": (10, 50, 200), "resume": 50, "tickets": 60,
        "store_runs": 1_000_000, "queries": 40, "profile_rounds": 3,
        "breakdown_rounds": 10, "controls_rounds": 20, "cli_samples": 10}
QUICK = {"rounds": 2, "lengths": (10, 50, 200), "resume": 12, "tickets": 20,
         "store_runs": 100_000, "queries": 15, "profile_rounds": 1,
         "breakdown_rounds": 3, "controls_rounds": 2, "cli_samples": 3}


def machine() -> dict[str, Any]:
    import sqlite3

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"nproc": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "packages": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1 minute pass")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="where to write the report (default: docs/benchmarks.md)")
    parser.add_argument("--render", action="store_true",
                        help="write the doc again from the last full run's bench/out/"
                             "results.json, measuring nothing")
    parser.add_argument("--only", choices=["compare", "growth", "resume", "throughput",
                                           "tracestore", "profile", "breakdown", "controls",
                                           "fixes", "commits", "cli"],
                        action="append",
                        help="run only these sections (repeatable); the doc is not written")
    args = parser.parse_args(argv)
    try:
        import langchain  # noqa: F401
    except ImportError:
        print("error: the benchmarks need langchain>=1: .venv/bin/pip install -e '.[bench]'",
              file=sys.stderr)
        return 2
    if args.render:
        saved = OUT / ("results-quick.json" if args.quick else "results.json")
        if not saved.is_file():
            print(f"error: no {saved} to render; run the benchmarks first", file=sys.stderr)
            return 2
        args.doc.write_text(render(json.loads(saved.read_text())), encoding="utf-8")
        print(f"[bench] wrote {args.doc} from {saved}", file=sys.stderr)
        return 0
    cfg = QUICK if args.quick else FULL
    command = "python -m bench" + (" --quick" if args.quick else "")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT))
    sections = set(args.only or ["compare", "growth", "resume", "throughput", "tracestore",
                                 "profile", "breakdown", "controls", "fixes", "commits", "cli"])
    results: dict[str, Any] = {"machine": machine(), "command": command, "config": cfg,
                               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    t0 = time.perf_counter()

    def step(name: str, fn: Any) -> None:
        if name not in sections:
            return
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results[name] = fn()
        results.setdefault("seconds", {})[name] = time.perf_counter() - started
        print(f"[bench] {name} done in {results['seconds'][name]:.1f}s", file=sys.stderr,
              flush=True)

    try:
        step("compare", lambda: compare.run(work / "compare", rounds=cfg["rounds"]))
        if "compare" in results:
            results["bytes_per_ticket"] = growth.per_ticket(work / "compare" / "a",
                                                            results["compare"]["threads_a"])
        step("growth", lambda: growth.run(work / "growth", lengths=cfg["lengths"]))
        step("resume", lambda: resume.run(work / "resume", samples=cfg["resume"]))
        step("throughput", lambda: throughput.run(work / "throughput", tickets=cfg["tickets"]))
        step("tracestore", lambda: tracestore.run(OUT, n=cfg["store_runs"],
                                                  queries=cfg["queries"]))
        step("profile", lambda: profile.run(work / "profile", rounds=cfg["profile_rounds"]))
        step("breakdown", lambda: breakdown.run(work / "breakdown",
                                                rounds=cfg["breakdown_rounds"]))
        step("controls", lambda: controls.run(work / "controls",
                                              rounds=cfg["controls_rounds"]))
        step("fixes", lambda: profile.fix_costs(work / "fixes"))
        step("commits", lambda: profile.commit_costs(work / "commits"))
        step("cli", lambda: cli.run(work / "cli", samples=cfg.get("cli_samples", 3)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t0
    if args.only:  # a partial run leaves the last full run's results alone
        print(json.dumps(results, indent=1, default=str))
        return 0
    name = "results-quick.json" if args.quick else "results.json"
    (OUT / name).write_text(json.dumps(results, indent=1, default=str))
    args.doc.write_text(render(results), encoding="utf-8")
    print(f"[bench] wrote {args.doc} in {results['total_s']:.0f}s", file=sys.stderr)
    return 0


def _kb(n: float) -> str:
    return f"{n / 1024:.1f}"


def _spread(c: dict[str, Any], key: str) -> list[str]:
    """The per-round same-work ratio's quartiles and median ("-" for older results)."""
    rounds = c.get(f"same_work_ratio_{key}_rounds")
    if not rounds or "median" not in rounds:
        return ["-", "-", "-"]
    return [f"{rounds[k]:.2f}" for k in ("p25", "median", "p75")]


def render(r: dict[str, Any]) -> str:
    m, cmd = r["machine"], r["command"]
    out = ["# Benchmarks: the cost of the controls", "",
           "Every figure below was measured by one run of the command shown, on the machine "
           "described, and written here by `bench/run.py` (do not edit the numbers by hand; "
           "re-run `make bench`). Nothing is timed inside the test suite.", "",
           f"- command: `{cmd}` (from the repository root, `.venv/bin/python -m bench`)",
           f"- run at: {r['started']}, total {r['total_s']:.0f} s",
           f"- machine: {m['nproc']} CPUs, {m['platform']}, Python {m['python']}, "
           f"SQLite {m['sqlite']}",
           "- packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
           "- models: the scripted offline planner and checker (no network, no API key)", ""]
    c = r.get("compare")
    if c:
        a, b, ag = c["variants"]
        out += ["## 1. Per-ticket wall time and supersteps, side by side", "",
                "One process, the three variants interleaved ticket by ticket (their order "
                f"rotates every round), {c['rounds']} measured rounds after one warm-up round; "
                "each figure is the median over rounds. All three use the same SqliteSaver "
                "(`checkpoints.saver.open_checkpointer`), durability \"sync\", the same "
                "support tools and the same scripted planner.", "",
                "- **a: signoff**: the real `Runner` with every control on: policy gate, "
                "verifier (rule invariants + checker model), approval, idempotency ledger, "
                "recorder (traces + hash-chained audit), leases.",
                "- **b: bare LangGraph**: the same graph shape with the controls removed: "
                "plan, gate, verify, execute, postcheck and finish as nodes, the control nodes "
                "passing everything through (no policy, verifier model, approval, ledger, kill "
                "switch, trace or lease).",
                "- **c: create_agent**: LangChain `create_agent` with HumanInTheLoopMiddleware "
                "(refunds over $50, as the policy), ToolCallLimitMiddleware and "
                "ModelCallLimitMiddleware (12 each, the policy's budgets) on the same tools "
                "wrapped as LangChain tools; the planner sees the same ticket + evidence view "
                "through an adapter that rebuilds it from the agent's transcript.", "",
                "A held refund is approved by the bench and counted in the ticket's time. "
                "(b) and (c) have no gate, so they carry out tickets signoff blocks (over "
                "the ceiling, another customer's order, a flagged account): compare the "
                "tool calls column too.", ""]
        headers = ["ticket"] + [f"{v} ms" for v in (a, b, ag)] + \
            [f"{v[0]} steps" for v in (a, b, ag)] + [f"{v[0]} tools" for v in (a, b, ag)] + \
            ["a outcome"]
        rows = []
        for row in c["rows"]:
            rows.append([row["ticket"]] + [fmt_ms(row[v]["median_s"]) for v in (a, b, ag)]
                        + [row[v]["supersteps"] for v in (a, b, ag)]
                        + [row[v]["tool_calls"] for v in (a, b, ag)] + [row[a]["outcome"]])
        rows.append(["**all**"] + [f"**{fmt_ms(c['totals'][v])}**" for v in (a, b, ag)]
                    + [c["supersteps"][v] for v in (a, b, ag)]
                    + [c["tool_calls"][v] for v in (a, b, ag)] + [""])
        out += [table(headers, rows), ""]
        per_step = {v: c["totals"][v] / c["supersteps"][v] for v in (a, b, ag)}
        per_call = {v: c["totals"][v] / c["tool_calls"][v] for v in (a, b, ag)}
        out += [table(["ratio, all tickets", "wall time", "per superstep", "per tool call"], [
            ["(a)/(b)", f"{c['ratio_ab']:.2f}", f"{per_step[a] / per_step[b]:.2f}",
             f"{per_call[a] / per_call[b]:.2f}"],
            ["(a)/(c)", f"{c['ratio_ac']:.2f}", f"{per_step[a] / per_step[ag]:.2f}",
             f"{per_call[a] / per_call[ag]:.2f}"]]), "",
                "Over all tickets the variants do different work, so the targets are judged "
                "on the next table only.", ""]
        if c.get("same_work_tickets"):
            same = ", ".join(c["same_work_tickets"])
            out += ["On the tickets signoff carries out (" + same + "), all three variants do "
                    "the same tool calls, so this is the like-for-like figure; on the others "
                    "(b) and (c) go on to carry out what signoff blocks:", "",
                    table(["ratio, same work", "wall time", "per round p25", "per round median",
                           "per round p75",
                           "target", "met"], [
                        ["(a)/(b)", f"{c['same_work_ratio_ab']:.2f}", *_spread(c, "ab"),
                         "<= 1.15", "yes" if c["same_work_ratio_ab"] <= 1.15 else "**no**"],
                        ["(a)/(c)", f"{c['same_work_ratio_ac']:.2f}", *_spread(c, "ac"),
                         "<= 1.5", "yes" if c["same_work_ratio_ac"] <= 1.5 else "**no**"]]),
                    "", "The wall-time ratio is of the sums of per-ticket medians. The per-round "
                    "columns take the ratio within each round instead (that round's tickets "
                    "summed) and show its spread over the rounds: a disk stall during a round "
                    "counts there, while the per-ticket medians drop it.", ""]
        out += ["Mean time per superstep: " + ", ".join(
            f"{v} {fmt_ms(per_step[v])} ms" for v in (a, b, ag)) + ".", ""]
    if r.get("bytes_per_ticket") or r.get("growth"):
        out += ["## 2. Checkpoint and trace bytes", ""]
    if r.get("bytes_per_ticket"):
        out += ["Bytes signoff stored per sample ticket (section 1's last round): checkpoint "
                "blobs + metadata + pending writes in checkpoints.db; the run's trace rows "
                "(sum of column lengths, without the FTS index) and audit entries.", "",
                table(["ticket", "checkpoint KiB", "trace KiB", "audit KiB"],
                      [[x["ticket"], _kb(x["checkpoint_bytes"]), _kb(x["trace_bytes"]),
                        _kb(x["audit_bytes"])] for x in r["bytes_per_ticket"]]), ""]
    g = r.get("growth")
    if g:
        base = g[0]
        out += ["Growth with run length: a scripted planner makes N read calls (lookup, then "
                "list_orders with a varying limit) and stops, through the real Runner with "
                "every control on and a policy override with large budgets "
                "(`bench/longrun.py`). Linear growth shows as a flat bytes-per-read column; "
                "quadratic growth would multiply it by the length ratio.", "",
                table(["reads", "supersteps", "checkpoint KiB", "per read", "trace KiB",
                       "per read", "audit KiB", "per read", "checkpoint x vs N=" +
                       str(base["reads"])],
                      [[x["reads"], x["supersteps"], _kb(x["checkpoint_bytes"]),
                        f"{x['checkpoint_per_read']:.0f} B", _kb(x["trace_bytes"]),
                        f"{x['trace_per_read']:.0f} B", _kb(x["audit_bytes"]),
                        f"{x['audit_per_read']:.0f} B",
                        f"{x['checkpoint_bytes'] / base['checkpoint_bytes']:.1f}x for "
                        f"{x['reads'] / base['reads']:.0f}x reads"] for x in g]), ""]
    rs = r.get("resume")
    if rs:
        out += ["## 3. Resume latency", "",
                f"{rs['samples']} approvals of TKT-1002 (a $120 refund held for a support "
                "lead), one fresh run each; the clock starts when `Runner.decide(approve)` "
                "is called. \"Next checkpoint\" is the timestamp of the first checkpoint "
                "written after that; \"run end\" is the decide call returning after the "
                f"refund, postcheck, note and finish (outcomes: {', '.join(rs['statuses'])}).",
                "", table(["measure", "p50 ms", "p95 ms"], [
                    ["approval -> next checkpoint written", fmt_ms(rs["checkpoint_p50_s"]),
                     fmt_ms(rs["checkpoint_p95_s"])],
                    ["approval -> run ended", fmt_ms(rs["end_p50_s"]), fmt_ms(rs["end_p95_s"])],
                ]), ""]
    tp = r.get("throughput")
    if tp:
        out += ["## 4. Throughput on the SQLite default", "",
                "Worker processes (spawned), each with its own Runner on one shared "
                "SIGNOFF_HOME; the sample tickets round-robin; a ticket counts when its run "
                "ends or waits for approval.", "",
                table(["workers", "tickets", "seconds", "tickets/s", "outcomes"],
                      [[x["workers"], x["tickets"], f"{x['seconds']:.2f}",
                        f"{x['tickets_per_s']:.2f}",
                        ", ".join(f"{k} {v}" for k, v in sorted(x["statuses"].items()))]
                       for x in tp]), ""]
        if len(tp) >= 2:
            scale = tp[1]["tickets_per_s"] / tp[0]["tickets_per_s"]
            out += [f"Scaling from 1 to 2 workers: {scale:.2f}x.", ""]
    ts = r.get("tracestore")
    if ts:
        load = ("loaded from the cache in bench/out/" if ts.get("cached") else
                f"built in {ts['traces_load_s']:.0f} s (traces) + {ts['audit_load_s']:.0f} s "
                "(audit) and cached in bench/out/")
        out += ["## 5. Trace store at scale", "",
                f"A synthetic trace store of {ts['runs']:,} runs ({ts['customers']:,} "
                "customers; one model call, one tool call and one gate decision per run, "
                "FTS5 indexes rebuilt after the load) in the Recorder's schema, " + load +
                ". Each search calls `observability.search_traces` as the CLI does (opening "
                f"the store each time), {ts['searches'][0]['queries']} times with random "
                "arguments, limit 50.", "",
                table(["search", "p50 ms", "p95 ms", "mean hits"],
                      [[s["search"], fmt_ms(s["p50_s"]), fmt_ms(s["p95_s"]),
                        f"{s['mean_hits']:.1f}"] for s in ts["searches"]]), "",
                f"Audit chain: `observability.verify_audit` over {ts['verified_entries']:,} "
                f"entries took **{ts['verify_s']:.1f} s** (chain valid). File sizes: " +
                ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in ts["file_bytes"].items()) +
                ".", ""]
    p = r.get("profile")
    if p:
        out += ["## 6. Profile of the hot path", "",
                f"cProfile over {p['runs']} signoff runs of the sample tickets "
                f"(`bench/profile.py`); milliseconds per run, with profiler overhead.", "",
                "Signoff's own functions and LangGraph's loop, by cumulative time:", "",
                table(["function", "calls", "cum ms/run"],
                      [[f"`{x['function']}`", x["calls"], f"{x['cum_ms_per_run']:.1f}"]
                       for x in p["cumulative"]]), "",
                "The leaves, by own time (lock waits are the main thread waiting for the "
                "checkpoint writer thread, which spends its time in SQLite commits):", "",
                table(["function", "calls", "own ms/run"],
                      [[f"`{x['function']}`", x["calls"], f"{x['own_ms_per_run']:.1f}"]
                       for x in p["own"]]), ""]
    bd = r.get("breakdown")
    if bd:
        a, b = bd["variants"]
        out += ["### Where (a)'s extra time goes", "",
                f"Wall clock per part over the same-work tickets ({', '.join(bd['tickets'])}), "
                f"(a) and (b) alternating, {bd['rounds']} rounds, milliseconds per round "
                "(`bench/breakdown.py`). Timing wrappers add a little to every part; the "
                "checkpointer saves on LangGraph's worker thread, but durability \"sync\" "
                "makes the loop wait for it.", "",
                table(["part", f"{a} ms", f"{b} ms", "difference ms"],
                      [[x["part"], f"{x[a]:.1f}", f"{x[b]:.1f}", f"{x[a] - x[b]:+.1f}"]
                       for x in bd["rows"]]
                      + [["**round**", f"**{bd['totals_ms'][a]:.1f}**",
                          f"**{bd['totals_ms'][b]:.1f}**",
                          f"**{bd['totals_ms'][a] - bd['totals_ms'][b]:+.1f}**"]]), ""]
    ct = r.get("controls")
    if ct:
        out += ["### What each control costs, one off at a time", "",
                f"(a) next to copies of it that each lack one control, and (b), interleaved "
                f"ticket by ticket on the same-work tickets, {ct['rounds']} rounds; each "
                "figure is the sum over the tickets of the median ticket time "
                "(`bench/controls.py`). A control's price is its copy's difference from (a): "
                "everything it adds, including its share of LangGraph's writes. The second "
                "copy of (a), with nothing off, shows how far two identical variants drift "
                "apart in this run. The checker and the registry's sync are turned off inside "
                "the bench only (signoff has no switch for them); the recorder's copy runs as "
                "SIGNOFF_TRACES=off would, which the release gate refuses.", "",
                "CPU is the process's CPU time (all threads) over the same tickets, a mean "
                "per round rather than a median.", "",
                table(["variant", "what is off", "ms per round", "vs (a) ms", "x (b)",
                       "CPU ms per round"],
                      [[x["variant"], x["what"], f"{x['ms']:.1f}", f"{x['vs_full_ms']:+.1f}",
                        f"{x['ratio_to_b']:.2f}",
                        f"{x['cpu_ms']:.1f}" if "cpu_ms" in x else "-"]
                       for x in ct["rows"]]), ""]
    fx = r.get("fixes")
    if fx:
        out += ["### Fixes, before and after", "",
                "The old and the new way of each step that changed, timed side by side "
                "in this run (median of 30):", "",
                table(["fix", "before ms", "after ms", "per"],
                      [[x["fix"], f"{x['before_ms']:.2f}", f"{x['after_ms']:.2f}", x["per"]]
                       for x in fx]), ""]
    cm = r.get("commits")
    if cm:
        out += ["### What a committed write costs here", "",
                "One-row INSERT in autocommit, 200 times, per journal setting (this is the "
                "floor under every superstep, which durability \"sync\" commits):", "",
                table(["journal", "synchronous", "ms per commit", "signoff files"],
                      [[x["journal"], x["synchronous"], f"{x['ms_per_commit']:.3f}",
                        x["used_by"]] for x in cm]), ""]
    notes = Path(__file__).resolve().parent / "FINDINGS.md"
    if notes.is_file():
        out += [notes.read_text(encoding="utf-8").rstrip(), ""]
    c = r.get("cli")
    if c:
        out += ["## 7. CLI start-up", "",
                f"A fresh process per sample, {c['samples']} samples after one warm-up: the "
                "time until the command has answered (`bench/cli.py`). The CLI loads the "
                "graph, its models and the stores only when a command needs them.", "",
                table(["command", "median", "slowest"],
                      [[label, f"{t['median_s']:.2f} s", f"{t['max_s']:.2f} s"]
                       for label, t in c["commands"].items()]), ""]
    served = OUT / "service.json"  # section 8 is measured by `python -m bench.service`
    if served.is_file():
        from bench.service import section

        out += section(json.loads(served.read_text(encoding="utf-8")))
    queued = OUT / "workers.json"  # section 9 is measured by `python -m bench.workers`
    if queued.is_file():
        from bench import workers

        saved = json.loads(queued.read_text(encoding="utf-8"))
        out += workers.section(saved, saved.get("command", "python -m bench.workers"))
    return "\n".join(out)
