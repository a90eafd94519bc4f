"""The queue-workers benchmark (bench/workers.py) runs end to end with tiny N: the figures it
writes come from runs that really settled, and its section names every cell. It measures
nothing here; `make bench` does."""

from __future__ import annotations

from pathlib import Path

from bench import workers
from tests import pg
from tests.fake_openai import fake_openai_server


def test_one_sqlite_cell_drains_its_tickets_and_renders(tmp_path: Path) -> None:
    url = pg.test_database_url()
    with fake_openai_server() as fake:
        model_env = {"OPENAI_API_KEY": "local"}
        for role in ("PLANNER", "CHECKER"):
            model_env |= {f"SIGNOFF_{role}_PROVIDER": "openai",
                          f"SIGNOFF_{role}_BASE_URL": fake.base_url}
        row = workers.cell("sqlite", url, tmp_path, workers=1, concurrency=1, tickets=2,
                           model_env=model_env)
        row["model_calls"] = len(fake.requests)
    assert row["tickets"] == 2 and sum(row["statuses"].values()) == 2
    assert row["model_calls"] > 0  # the worker asked the loopback model, not the scripted one
    assert row["shares"] and row["seconds"] > 0 and row["p95_s"] >= row["p50_s"]
    lines = workers.section({"started": "s", "finished": "f", "load": (1.0, 1.0, 1.0),
                             "load_after": (1.0, 1.0, 1.0), "nproc": 2, "delay_s": 0.0,
                             "tickets": 2, "rows": [row]}, "python -m bench.workers")
    assert lines[0] == workers.SECTION
    assert "| sqlite | 1 | 1 | 2 |" in "\n".join(lines)
