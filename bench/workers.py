"""Section 9: queue throughput with 1, 2 and 4 `signoff worker` processes, on both backends.

    .venv/bin/python -m bench.workers            # writes section 9 of docs/benchmarks.md
    .venv/bin/python -m bench.workers --quick    # a small pass, printed only

Each cell gets fresh stores: PostgreSQL under a schema prefix of its own (SIGNOFF_DATABASE_URL,
the queue in `<prefix>queue`), or a SQLite home with the queue on PostgreSQL
(SIGNOFF_QUEUE_URL); everything is dropped afterwards. The planner and checker are
`SIGNOFF_*_PROVIDER=openai` pointed at tests/fake_openai.py on loopback, which answers after
a fixed delay, so a worker waits on the model as it would in production. N runs are
registered, the workers are started and wait, then the clock starts and the N jobs are
enqueued; it stops when every run ended or waits for a human. A ticket's latency is from its
job being enqueued to its run's last registry update (ended or waiting).

PostgreSQL is SIGNOFF_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test);
the role needs CREATE on the database. `--cells 1x1,4x1 --tickets 80 --doc other.md` measures
other cells into another file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import OUT, REQUESTER, percentile, table, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## 9. Queue workers on PostgreSQL and SQLite"
URL_ENV = "SIGNOFF_BENCH_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SIGNOFF = str(Path(sys.executable).with_name("signoff"))
FULL_CELLS = ((1, 1), (2, 1), (4, 1), (1, 4), (4, 2))
"""(worker processes, --concurrency of each)."""
QUICK_CELLS = ((1, 1), (2, 1))
DOC = ROOT / "docs" / "benchmarks.md"


def _cells(text: str) -> tuple[tuple[int, int], ...]:
    """"1x1,4x2" -> ((1, 1), (4, 2))."""
    try:
        found = tuple((int(w), int(c)) for w, c in (part.split("x") for part in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cells are WORKERSxCONCURRENCY, e.g. 1x1,4x1; not "
                                         f"{text!r}") from None
    if not found or min(min(cell) for cell in found) < 1:
        raise argparse.ArgumentTypeError(f"cells need 1 or more of each, not {text!r}")
    return found


@dataclass(frozen=True)
class Stores:
    """One cell's stores: the worker environment and how to reach the run registry."""

    env: dict[str, str]
    """SIGNOFF_* variables the workers and the bench's own runner use."""
    home_root: Path
    database_url: str | None
    prefix: str


def _with_params(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@contextmanager
def stores(backend: str, base_url: str, work: Path) -> Iterator[Stores]:
    """Fresh stores for one cell; its Postgres schemas are dropped on exit."""
    import psycopg

    from worker.queue import upgrade_schema

    prefix = f"bench{uuid.uuid4().hex[:8]}_"
    tag = prefix.rstrip("_")
    queue = _with_params(base_url, application_name=tag,
                         options=f"-csearch_path%3D{prefix}queue")
    root = work / prefix
    env = {"SIGNOFF_HOME": str(root), "SIGNOFF_QUEUE_URL": queue}
    database_url = None
    if backend == "postgres":
        database_url = _with_params(base_url, application_name=tag)
        env |= {"SIGNOFF_DATABASE_URL": database_url, "SIGNOFF_DB_SCHEMA_PREFIX": prefix}
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{prefix}queue"')
    try:
        upgrade_schema(queue)
        yield Stores(env=env, home_root=root, database_url=database_url, prefix=prefix)
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname"
                                        " LIKE %s", (prefix + "%",)).fetchall():
                conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def _home(s: Stores) -> Any:
    from graph.runner import Home

    if s.database_url is None:
        return Home(s.home_root)
    return Home(s.home_root, database_url=s.database_url, schema_prefix=s.prefix)


def _register(s: Stores, tickets: int) -> list[str]:
    """Install fresh sample data and register `tickets` runs, the samples round-robin."""
    from graph.runner import Runner
    from graph.workflows import get_workflow

    home = _home(s)
    if s.database_url is not None:
        backend = home.open_backend()
        try:
            backend.upgrade()
        finally:
            backend.close()
    runner = Runner(home)
    try:
        workflow = get_workflow("support")
        runner.ensure_domain_db(workflow, reset=True)
        samples = workflow.sample_tickets()
        return [runner.register("support", samples[i % len(samples)],
                                requester=REQUESTER).run_id for i in range(tickets)]
    finally:
        runner.close()


class Worker:
    """One `signoff worker` process; its log in a file."""

    def __init__(self, env: dict[str, str], concurrency: int, name: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [SIGNOFF, "worker", "--concurrency", str(concurrency), "--name", name],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"a worker exited before it started:\n{self.output()}")
        return "Starting worker" in self.output()

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output()


def _settled(s: Stores, run_ids: set[str]) -> dict[str, tuple[str, float]]:
    """Runs that ended or wait for a human: run id -> (status, time of the last update)."""
    from graph.runner import DRIVABLE

    backend = _home(s).open_backend()
    try:
        conn = backend.connect("control")
        try:
            rows = conn.execute("SELECT run_id, status, updated_at FROM runs").fetchall()
        finally:
            conn.close()
    finally:
        backend.close()
    return {r[0]: (r[1], float(r[2])) for r in rows if r[0] in run_ids and r[1] not in DRIVABLE}


def _pg_waits(base_url: str, tag: str) -> dict[str, int]:
    """The cell's server backends right now, by what they do: active (on CPU or I/O), waiting
    on a lock, idle in a transaction."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        rows = conn.execute("SELECT state, wait_event_type FROM pg_stat_activity"
                            " WHERE application_name = %s", (tag,)).fetchall()
    counts = {"active": 0, "lock": 0, "idle_in_tx": 0, "connections": len(rows)}
    for state, wait in rows:
        if wait == "Lock":
            counts["lock"] += 1
        elif state == "active":
            counts["active"] += 1
        elif state and state.startswith("idle in transaction"):
            counts["idle_in_tx"] += 1
    return counts


def _job_times(queue_url: str, t0: float) -> list[tuple[float, float]]:
    """(started, finished) of each drive job's attempts, in seconds after `t0`, from
    Procrastinate's own event log (a job retried after RunBusy counts each attempt)."""
    import psycopg

    from worker.queue import DRIVE_TASK

    with psycopg.connect(queue_url) as conn:
        rows = conn.execute(
            "SELECT e.job_id, e.type::text, extract(epoch FROM e.at) FROM procrastinate_events e"
            " JOIN procrastinate_jobs j ON j.id = e.job_id WHERE j.task_name = %s"
            " ORDER BY e.job_id, e.id", (DRIVE_TASK,)).fetchall()
    spans, open_at = [], {}
    for job_id, kind, at in rows:
        if kind == "started":
            open_at[job_id] = float(at) - t0
        elif job_id in open_at and kind in ("succeeded", "failed", "to_retry", "cancelled",
                                            "aborted"):
            spans.append((open_at.pop(job_id), float(at) - t0))
    return spans


def cell(backend: str, base_url: str, work: Path, *, workers: int, concurrency: int,
         tickets: int, model_env: dict[str, str], timeout_s: float = 600) -> dict[str, Any]:
    """One measurement: `workers` processes of `--concurrency concurrency` drain `tickets`."""
    from worker.app import QueueSettings, create_app
    from worker.queue import enqueue_run

    with stores(backend, base_url, work) as s:
        run_ids = _register(s, tickets)
        env = {**s.env, **model_env}
        procs = [Worker(env, concurrency, f"w{i}", work / f"{s.prefix}w{i}.log")
                 for i in range(workers)]
        try:
            deadline = time.monotonic() + 120
            while not all(p.ready() for p in procs):
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start within 120 s")
                time.sleep(0.1)
            cpu0 = [p.cpu_s() for p in procs]
            load = os.getloadavg()[0]
            queued: dict[str, float] = {}
            app = create_app(QueueSettings(url=s.env["SIGNOFF_QUEUE_URL"]))
            t0 = time.time()
            with app.open():
                for run_id in run_ids:
                    queued[run_id] = time.time()
                    if not enqueue_run(app, run_id):
                        raise RuntimeError(f"{run_id} was already enqueued")
            enqueued_s = time.time() - t0
            wanted, samples = set(run_ids), []
            deadline = time.monotonic() + timeout_s
            while True:
                done = _settled(s, wanted)
                if len(done) == tickets:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(done)} of {tickets} runs settled in {timeout_s} s")
                samples.append(_pg_waits(base_url, s.prefix.rstrip("_")))
                time.sleep(0.25)
            end = max(at for _, at in done.values())
            cpu = sum(p.cpu_s() - c for p, c in zip(procs, cpu0, strict=True))
        finally:
            logs = [p.stop() for p in procs]
        jobs = _job_times(s.env["SIGNOFF_QUEUE_URL"], t0)
    seconds = end - t0
    latencies = [done[r][1] - queued[r] for r in run_ids]
    statuses: dict[str, int] = {}
    for status, _ in done.values():
        statuses[status] = statuses.get(status, 0) + 1
    shares = [line.split("runs driven:", 1)[1].strip() for log in logs
              for line in log.splitlines() if "runs driven:" in line]
    n = max(1, len(samples))
    slots = workers * concurrency
    busy = sum(finish - start for start, finish in jobs)
    return {"backend": backend, "workers": workers, "concurrency": concurrency,
            "tickets": tickets, "seconds": seconds, "tickets_per_s": tickets / seconds,
            "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "enqueue_s": enqueued_s, "statuses": statuses, "load_before": load,
            "worker_cpu_s": cpu, "cpu_share": cpu / seconds / (os.cpu_count() or 1),
            "pg_mean": {k: sum(x[k] for x in samples) / n
                        for k in ("active", "lock", "idle_in_tx", "connections")},
            "shares": shares,
            "job_mean_s": busy / max(1, len(jobs)),
            "first_start_s": min((start for start, _ in jobs), default=0.0),
            "slot_busy": busy / (slots * seconds)}


def measure(*, tickets: int, cells: tuple[tuple[int, int], ...], delay_s: float,
            base_url: str) -> dict[str, Any]:
    """Every cell on both backends, interleaved (Postgres then SQLite for each cell)."""
    from tests.fake_openai import fake_openai_server

    OUT.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    rows = []
    with fake_openai_server(delay_s=delay_s) as fake, \
            tempfile.TemporaryDirectory(prefix="workers-", dir=OUT) as tmp:
        answered: list[float] = []
        answer = fake.answer

        def timed(body: dict[str, Any]) -> Any:
            # How long the model server takes per call, its delay included: a server slowed
            # by the machine shows here, apart from the workers.
            t = time.perf_counter()
            try:
                return answer(body)
            finally:
                answered.append(time.perf_counter() - t)

        fake.answer = timed  # type: ignore[method-assign]
        model_env = {"OPENAI_API_KEY": "local"}
        for role in ("PLANNER", "CHECKER"):
            model_env |= {f"SIGNOFF_{role}_PROVIDER": "openai",
                          f"SIGNOFF_{role}_BASE_URL": fake.base_url}
        for workers, concurrency in cells:
            for backend in ("postgres", "sqlite"):
                before, timed_before = len(fake.requests), len(answered)
                print(f"[bench] workers: {backend} {workers}x{concurrency}, {tickets} tickets"
                      " ...", file=sys.stderr, flush=True)
                row = cell(backend, base_url, Path(tmp), workers=workers,
                           concurrency=concurrency, tickets=tickets, model_env=model_env)
                row["model_calls"] = len(fake.requests) - before
                calls = answered[timed_before:]
                row["model_call_mean_s"] = sum(calls) / max(1, len(calls))
                print(f"[bench]   {row['seconds']:.1f} s, {row['tickets_per_s']:.2f} tickets/s",
                      file=sys.stderr, flush=True)
                rows.append(row)
    return {"started": started, "load": load, "nproc": os.cpu_count(), "delay_s": delay_s,
            "tickets": tickets, "rows": rows, "finished": time.strftime(
                "%Y-%m-%d %H:%M UTC", time.gmtime()), "load_after": os.getloadavg()}


def section(r: dict[str, Any], command: str) -> list[str]:
    base = {(x["backend"]): x["tickets_per_s"] for x in r["rows"]
            if x["workers"] == 1 and x["concurrency"] == 1}
    rows = []
    for x in r["rows"]:
        pg = x["pg_mean"]
        rows.append([x["backend"], x["workers"], x["concurrency"], x["tickets"],
                     f"{x['seconds']:.1f}", f"{x['tickets_per_s']:.2f}",
                     f"{x['tickets_per_s'] / base[x['backend']]:.2f}x"
                     if x["backend"] in base else "-",
                     f"{x['p50_s']:.1f}", f"{x['p95_s']:.1f}",
                     f"{x['model_calls'] / x['tickets']:.1f}",
                     f"{1000 * x.get('model_call_mean_s', float('nan')):.0f}",
                     f"{100 * x['cpu_share']:.0f}%",
                     f"{x['job_mean_s']:.2f}", f"{100 * x['slot_busy']:.0f}%",
                     f"{pg['active']:.1f} / {pg['lock']:.1f} / {pg['idle_in_tx']:.1f}"
                     f" of {pg['connections']:.0f}",
                     ", ".join(f"{k} {v}" for k, v in sorted(x["statuses"].items()))])
    la, lb = r["load"], r["load_after"]
    return [SECTION, "",
            f"`{command}` (`bench/workers.py`), run {r['started']} to {r['finished']} on "
            f"{r['nproc']} CPUs shared with other work (load average {la[0]:.1f} / {la[1]:.1f} / "
            f"{la[2]:.1f} before, {lb[0]:.1f} after). Each cell: fresh stores, "
            f"{r['tickets']} sample tickets round-robin registered, the `signoff worker` "
            "processes started and idle, then the clock starts and the jobs are enqueued; it "
            "stops when every run ended or waits for approval. **postgres**: every store and "
            "the queue on PostgreSQL (its own schema prefix, dropped after); **sqlite**: the "
            "SQLite home, the queue on PostgreSQL. Planner and checker: "
            "`SIGNOFF_*_PROVIDER=openai` against tests/fake_openai.py on loopback, each call "
            f"answered after {r['delay_s'] * 1000:.0f} ms. Latency: job enqueued -> run ended "
            "or waiting (every job is enqueued at the start, so it includes the time in the "
            "queue). Ms per model call: the model server's time per answer, its delay included. "
            "Worker CPU: the workers' CPU seconds over wall time and all CPUs. "
            "S per job: a drive job's mean time from taken to done (Procrastinate's events); "
            "slots busy: those times summed over (workers x concurrency x wall time). "
            "Postgres backends: the cell's server connections sampled every 0.25 s, mean "
            "active / waiting on a lock / idle in a transaction, of the mean open "
            "connections (queue and stores).", "",
            table(("stores", "workers", "concurrency", "tickets", "seconds", "tickets/s",
                   "vs 1 worker", "p50 s", "p95 s", "model calls/ticket", "ms per model call",
                   "worker CPU", "s per job", "slots busy",
                   "pg active / lock / idle-in-tx of conns",
                   "outcomes"), rows), ""] + _reading()


def _reading() -> list[str]:
    """The hand-written reading of the last measured figures (bench/WORKERS-FINDINGS.md)."""
    notes = Path(__file__).resolve().parent / "WORKERS-FINDINGS.md"
    return [notes.read_text(encoding="utf-8").rstrip(), ""] if notes.is_file() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer tickets and cells, print "
                                                              "only")
    parser.add_argument("--tickets", type=int, help="tickets per cell (default 20; quick 8)")
    parser.add_argument("--delay-ms", type=float, default=200,
                        help="the fake model's answer delay (default 200)")
    parser.add_argument("--cells", type=_cells,
                        help="workers x concurrency to measure, e.g. 1x1,4x1 (default "
                             + ",".join(f"{w}x{c}" for w, c in FULL_CELLS) + ")")
    parser.add_argument("--doc", type=Path, default=DOC,
                        help="where to write the section (default docs/benchmarks.md; "
                             "another file is created, its figures saved beside it as .json)")
    parser.add_argument("--render", action="store_true",
                        help="write the section again from the last run's bench/out/"
                             "workers.json (after editing bench/WORKERS-FINDINGS.md), "
                             "measuring nothing")
    args = parser.parse_args(argv)
    if args.render:
        saved = OUT / "workers.json"
        if not saved.is_file():
            print(f"error: no {saved} to render; run the benchmark first", file=sys.stderr)
            return 2
        last = json.loads(saved.read_text(encoding="utf-8"))
        write_section(args.doc, SECTION, section(last, last["command"]))
        print(f"[bench] wrote section 9 of {args.doc} from {saved}", file=sys.stderr)
        return 0
    base_url = os.environ.get(URL_ENV, DEFAULT_URL)
    tickets = args.tickets or (8 if args.quick else 20)
    cells = args.cells or (QUICK_CELLS if args.quick else FULL_CELLS)
    result = measure(tickets=tickets, cells=cells,
                     delay_s=args.delay_ms / 1000, base_url=base_url)
    command = "python -m bench.workers" + (" --quick" if args.quick else "") + (
        f" --tickets {args.tickets}" if args.tickets else "") + (
        f" --delay-ms {args.delay_ms:g}" if args.delay_ms != 200 else "") + (
        f" --cells {','.join(f'{w}x{c}' for w, c in cells)}" if args.cells else "")
    lines = section(result, command)
    print("\n".join(lines))
    if not args.quick:
        saved = OUT / "workers.json" if args.doc == DOC else args.doc.with_suffix(".json")
        saved.write_text(json.dumps({**result, "command": command}),
                                          encoding="utf-8")
        write_section(args.doc, SECTION, lines)
        print(f"[bench] wrote section 9 of {args.doc} and {saved}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
