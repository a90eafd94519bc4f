"""Section 8: the service with 10,000 pending holds: p95 of "list my pending holds" (API and
inbox page) and of "decide" (approve, which drives the run to its end).

    .venv/bin/python -m bench.service            # 10,000 pending, writes section 8 of the doc
    .venv/bin/python -m bench.service --quick    # 1,000 pending, prints only

Calls go through the ASGI app in process (Starlette's TestClient): the app, auth, the runner
and the stores are timed; a network hop is not. The pending runs are one real held run of
TKT-1002 cloned in the run registry (a clone is a registry row like any other; listing reads
only rows), plus the real held runs that are decided.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bench.common import OUT, fmt_ms, percentile, table, write_section
from checkpoints.accounts import AccountStore
from checkpoints.backend import SqliteBackend
from graph.observe import price_fn, recorder_factory
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from service.app import create_app
from service.core import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## 8. The service with pending holds"


def _runner(home: Home) -> Runner:
    runner = Runner(home, recorder_factory=recorder_factory(), price=price_fn())
    runner.ensure_domain_db(get_workflow("support"))
    return runner


def _clone_pending(control_db: Path, run_id: str, copies: int) -> None:
    """`copies` more waiting runs like `run_id` in the registry, older than it."""
    with sqlite3.connect(control_db) as conn:
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        names = [d[0] for d in conn.execute("SELECT * FROM runs LIMIT 0").description]
        base = dict(zip(names, row, strict=True))
        rows = []
        for i in range(copies):
            clone = {**base, "run_id": f"run-c{i:09d}", "created_at": base["created_at"] - i - 1,
                     "updated_at": base["updated_at"] - i - 1}
            rows.append(tuple(clone[n] for n in names))
        conn.executemany(f"INSERT INTO runs ({', '.join(names)}) VALUES "
                         f"({', '.join('?' * len(names))})", rows)


def measure(pending: int, decisions: int, lists: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        home = Home(Path(scratch))
        _runner(home).close()
        accounts = AccountStore.open(SqliteBackend(home.root))
        accounts.add_user("agent@acme.example", role="agent", tenant_id="acme")
        accounts.add_user("lead@acme.example", role="support_lead", tenant_id="acme")
        agent = {"Authorization": f"Bearer {accounts.create_token('agent@acme.example')[1]}"}
        lead_secret = accounts.create_token("lead@acme.example")[1]
        lead = {"Authorization": f"Bearer {lead_secret}"}
        accounts.close()
        app = create_app(ServiceSettings(home=home, make_runner=_runner))
        with TestClient(app) as client:
            first = client.post("/api/v1/runs", json={"ticket_id": "TKT-1002"}, headers=agent)
            _clone_pending(home.runs_db, first.json()["run_id"], pending - decisions - 1)
            held = [client.post("/api/v1/runs", json={"ticket_id": "TKT-1002"},
                                headers=agent).json() for _ in range(decisions)]
            with sqlite3.connect(home.runs_db) as conn:
                waiting = conn.execute("SELECT COUNT(*) FROM runs WHERE status ="
                                       " 'waiting_approval'").fetchone()[0]

            def timed(call: Any) -> float:
                start = time.perf_counter()
                response = call()
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                return elapsed

            api_list = [timed(lambda: client.get("/api/v1/runs?pending_for_me=true&limit=50",
                                                 headers=lead)) for _ in range(lists)]
            page = client.get("/inbox/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            client.post("/inbox/login", data={"token": lead_secret, "csrf": csrf})
            inbox = [timed(lambda: client.get("/inbox")) for _ in range(lists)]
            decide = [timed(lambda run=run: client.post(
                f"/api/v1/runs/{run['run_id']}/decision",
                json={"action": "approve", "held_digest": run["held"]["digest"]},
                headers=lead)) for run in held]
    return {"pending": waiting, "lists": lists, "decisions": decisions,
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": os.getloadavg()[0], "nproc": os.cpu_count(),
            "api_list": api_list, "inbox": inbox, "decide": decide}


def section(r: dict[str, Any]) -> list[str]:
    rows = [(name, fmt_ms(percentile(r[key], 50)), fmt_ms(percentile(r[key], 95)), len(r[key]))
            for name, key in (("list my pending holds (API, 50 per page)", "api_list"),
                              ("the inbox page (200 holds)", "inbox"),
                              ("decide: approve, the run commits and ends", "decide"))]
    return [SECTION, "",
            f"`python -m bench.service` (`bench/service.py`): {r['pending']:,} runs waiting for "
            "approval in the run registry, one support lead of their tenant. Requests go "
            "through the ASGI app in process (token check, tenant filter, the role check per "
            "hold, the runner); no network hop. A decision resumes a real held run of TKT-1002 "
            "and drives it to its end (execute with the ledger, postcheck, finish, traces and "
            f"audit). Run at {r.get('started', '?')} on {r.get('nproc', '?')} CPUs shared with "
            f"other work (load average {r.get('load', 0):.1f}).", "",
            table(("request", "p50 ms", "p95 ms", "samples"), rows), ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 pending, print only")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    result = measure(pending=1_000 if args.quick else 10_000, decisions=10 if args.quick else 40,
                     lists=10 if args.quick else 60)
    lines = section(result)
    print("\n".join(lines))
    if not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "service.json").write_text(json.dumps(result), encoding="utf-8")
        write_section(args.doc, SECTION, lines)
        print(f"[bench] wrote section 8 of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
