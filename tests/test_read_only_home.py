"""Read-only commands work on a read-only copy of a data directory (issue 14 item 7): an
auditor's mount, a backup. The directory is bind-mounted read-only, so not even root can
write to it; commands that write are refused with exit 3 and one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SIGNOFF = str(Path(sys.executable).with_name("signoff"))


def signoff(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIGNOFF_HOME": str(home)}
    return subprocess.run([SIGNOFF, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(a writable data directory after `signoff demo`, the same mounted read-only, the id of
    its waiting run)."""
    base = tmp_path_factory.mktemp("readonly")
    source, mounted = base / "home", base / "mnt"
    demo = signoff(source, "demo")
    assert demo.returncode == 0, demo.stderr
    run_id = demo.stdout.split("approve ")[-1].split()[0]
    mounted.mkdir()
    bind = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True,
                          text=True, check=False)
    if bind.returncode != 0:
        pytest.skip(f"read-only bind mounts need mount(8) as root here: {bind.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(mounted)],
                            capture_output=True, text=True, check=False)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.strip()}")
        probe = mounted / f"probe-{uuid.uuid4().hex}"
        with pytest.raises(OSError):
            probe.write_text("x")
        yield source, mounted, run_id
    finally:
        subprocess.run(["umount", str(mounted)], check=False)


@pytest.mark.parametrize("command", [["runs"], ["status", "RUN"], ["report"], ["audit", "verify"],
                                     ["audit", "head"], ["traces"], ["policy", "explain", "RUN"]])
def test_read_only_commands_read_a_read_only_directory(homes: tuple[Path, Path, str],
                                                       command: list[str]) -> None:
    source, mounted, run_id = homes
    args = [run_id if a == "RUN" else a for a in command]
    here, there = signoff(source, *args), signoff(mounted, *args)
    assert there.returncode == 0, there.stderr
    assert there.stdout == here.stdout
    assert there.stderr.strip() == \
        f"note: SIGNOFF_HOME {mounted} is read-only; reading a copy of it"


@pytest.mark.parametrize("command", [["run", "TKT-1001"], ["approve", "RUN", "--as",
                                                           "lead@acme.example"],
                                     ["kill", "--workflow", "support", "--reason", "x"],
                                     ["prune", "--older-than", "1d"]])
def test_commands_that_write_are_refused_in_one_line(homes: tuple[Path, Path, str],
                                                     command: list[str]) -> None:
    _, mounted, run_id = homes
    result = signoff(mounted, *[run_id if a == "RUN" else a for a in command])
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [
        f"error: SIGNOFF_HOME {mounted} is read-only and this command writes to it (runs, "
        "status, report, traces, audit verify, audit head and policy explain read a read-only "
        "directory)"]


def test_the_snapshot_is_removed(homes: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, mounted, _ = homes
    env = {**os.environ, "SIGNOFF_HOME": str(mounted), "TMPDIR": str(tmp_path)}
    subprocess.run([SIGNOFF, "runs"], capture_output=True, env=env, timeout=120, check=True)
    assert list(tmp_path.iterdir()) == []
    assert shutil.which("mount")
