"""langgraph.json names a graph `langgraph dev` can load: the file and the factory it names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from graph.factory import CORE_NODES

ROOT = Path(__file__).resolve().parents[1]


def test_langgraph_json_builds_the_support_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    file, _, attr = config["graphs"]["support"].partition(":")
    spec = importlib.util.spec_from_file_location("studio_entry", ROOT / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = getattr(module, attr)()
    assert set(CORE_NODES) <= set(graph.get_graph().nodes)
    assert graph.checkpointer is None  # the server brings its own
