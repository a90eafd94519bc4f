"""`signoff migrate`: a run interrupted under SQLite resumes under PostgreSQL."""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from checkpoints.migrate import copy_checkpoints
from checkpoints.saver import open_checkpointer
from graph.runner import Home
from tests.pg import pg_schemas


class _State(TypedDict):
    log: Annotated[list[str], operator.add]


def _ask(state: _State) -> dict[str, list[str]]:
    answer = interrupt("approve?")
    return {"log": [f"answer:{answer}"]}


def _graph() -> StateGraph[_State]:
    g = StateGraph(_State)
    g.add_node("first", lambda s: {"log": ["first"]})
    g.add_node("ask", _ask)
    g.add_edge(START, "first")
    g.add_edge("first", "ask")
    g.add_edge("ask", END)
    return g


def test_an_interrupted_thread_copied_to_postgres_resumes_there(tmp_path: Path) -> None:
    config = {"configurable": {"thread_id": "run-1"}}
    with open_checkpointer(tmp_path / "checkpoints.db") as sqlite_saver:
        app = _graph().compile(checkpointer=sqlite_saver)
        app.invoke({"log": []}, config, durability="sync")
        assert app.get_state(config).next == ("ask",)
        history = [s.config["configurable"]["checkpoint_id"] for s in app.get_state_history(config)]
        with pg_schemas() as (url, prefix):
            backend = Home(tmp_path, database_url=url, schema_prefix=prefix).open_backend()
            try:
                backend.upgrade()
                with backend.checkpointer() as pg_saver:
                    copied = copy_checkpoints(sqlite_saver, pg_saver)
                    assert copied.threads == 1 and copied.checkpoints == len(history)
                    assert copy_checkpoints(sqlite_saver, pg_saver).threads == 0  # no fork
                    pg_app = _graph().compile(checkpointer=pg_saver)
                    assert [s.config["configurable"]["checkpoint_id"]
                            for s in pg_app.get_state_history(config)] == history
                    state = pg_app.get_state(config)
                    assert state.next == ("ask",) and state.values["log"] == ["first"]
                    assert state.tasks[0].interrupts[0].value == "approve?"
                    result = pg_app.invoke(Command(resume="yes"), config, durability="sync")
                    assert result["log"] == ["first", "answer:yes"]
            finally:
                backend.close()
