"""Section 7: how long the `signoff` command takes to answer before it does any work.

Each sample starts a fresh Python process, as a user's shell does: `signoff --help`, and
`signoff runs` on an empty data directory (which opens the run registry but no graph). The
CLI imports LangGraph, LangChain, the evals and the stores only when a command needs them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS = {"signoff --help": ["--help"], "signoff runs (empty data directory)": ["runs"]}


def run(work: Path, *, samples: int) -> dict[str, Any]:
    env = {**os.environ, "SIGNOFF_HOME": str(work / "home")}
    timings: dict[str, dict[str, float]] = {}
    for label, args in COMMANDS.items():
        seconds = []
        for i in range(samples + 1):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cli", *args], env=env, check=True,
                           capture_output=True, timeout=120)
            if i:  # the first sample warms the disk cache
                seconds.append(time.perf_counter() - t0)
        timings[label] = {"median_s": statistics.median(seconds), "max_s": max(seconds)}
    return {"samples": samples, "commands": timings}
