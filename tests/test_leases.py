"""One process at a time per run: real processes racing for a run, and leases of dead holders;
on each backend of the grid (the lease is a conditional UPDATE on both)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from checkpoints.faults import CrashFaults
from checkpoints.runs import RunStore, holder_is_dead, new_lease_owner
from checkpoints.soak import SCENARIOS, forked_action, mutation_rows
from graph.errors import NotWaiting, RunBusy
from graph.runner import Home, Runner
from graph.workflows import get_workflow
from tests.conftest import run_store

SIGNOFF = Path(sys.executable).with_name("signoff")
APPROVE = {"action": "approve", "by": "lead@acme.example", "reason": "receipt checked"}


class PausingFaults(CrashFaults):
    """Holds the process at its first kill point (lease taken, run under way) until told."""

    def __init__(self, ready_fd: int, go_fd: int) -> None:
        super().__init__()
        self.ready_fd, self.go_fd = ready_fd, go_fd

    def hit(self, label: str) -> None:
        first = not self.labels
        super().hit(label)
        if first:
            os.write(self.ready_fd, b"ready\n")
            os.read(self.go_fd, 1)


def fork_paused(action: Callable[[Runner], str], home: Home) -> tuple[int, int, int]:
    """Fork a child that runs `action` with a PausingFaults runner; returns (pid, fd to read its
    ready/result lines, fd to write "go")."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            runner = Runner(home, faults=PausingFaults(ready_w, go_r))
            os.write(ready_w, f"done {action(runner)}\n".encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(ready_w, f"error {type(exc).__name__}: {exc}\n".encode())
            code = 1
        os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    return pid, ready_r, go_w


def read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def in_child(action: Callable[[], str]) -> str:
    """Run `action` in a forked process; returns "done ..." or "error Type: message"."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_fd, f"done {action()}\n".encode())
        except BaseException as exc:  # noqa: BLE001
            os.write(write_fd, f"error {type(exc).__name__}: {exc}\n".encode())
        os._exit(0)
    os.close(write_fd)
    line = read_line(read_fd)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return line


def ticket(ticket_id: str):  # type: ignore[no-untyped-def]
    return {t.ticket_id: t for t in get_workflow("support").sample_tickets()}[ticket_id]


def test_two_processes_resume_one_run_exactly_one_proceeds(domain_home: Home) -> None:
    home = domain_home
    # A run whose process was killed in the middle of its refund step.
    result, label, _ = forked_action(home, SCENARIOS["refund"], "start", None, kill_at=30)
    assert result == "killed"
    with run_store(home) as store:
        run_id = store.list()[0].run_id

    pid, ready, go = fork_paused(lambda r: r.resume(run_id).status, home)
    assert read_line(ready) == "ready"  # the first process holds the lease, mid-run
    second = in_child(lambda: Runner(home).resume(run_id).status)
    os.write(go, b"g")
    first = read_line(ready)
    os.waitpid(pid, 0)

    assert second.startswith(f"error RunBusy: run {run_id} is busy")
    assert first == "done resolved"
    assert mutation_rows(home, run_id)["refunds"] == 1


def test_two_approvers_at_once_one_proceeds_the_other_is_told_busy(domain_home: Home) -> None:
    home = domain_home
    runner = Runner(home)
    run_id = runner.start("support", ticket("TKT-1002"), requester="agent@acme.example").run_id
    runner.close()

    pid, ready, go = fork_paused(lambda r: r.decide(run_id, APPROVE).status, home)
    assert read_line(ready) == "ready"
    env = {**os.environ, "SIGNOFF_HOME": str(home.root)}  # and the database backend_home set
    command = [str(SIGNOFF), "approve", run_id, "--as", "lead@acme.example", "--reason", "ok"]
    busy = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    os.write(go, b"g")
    first = read_line(ready)
    os.waitpid(pid, 0)

    assert first == "done resolved"
    assert busy.returncode == 1
    assert busy.stderr.startswith(f"error: run {run_id} is busy")
    assert len(busy.stderr.strip().splitlines()) == 1  # one line, no traceback
    second_approver = Runner(home)
    try:
        with pytest.raises(NotWaiting, match="is not waiting for a decision"):
            second_approver.decide(run_id, APPROVE)  # the second approver, after the first
    finally:
        second_approver.close()
    assert mutation_rows(home, run_id)["refunds"] == 1


@contextmanager
def registry_with_lease(home: Home, owner: str, clock: Callable[[], float]
                        ) -> Iterator[RunStore]:
    """The registry of `home` holding one run, run-1, leased to `owner`."""
    with closing(home.open_backend()) as backend, \
            closing(RunStore.open(backend, clock=clock)) as store:
        store.create(run_id="run-1", workflow="support", workflow_version="1",
                     tenant_id="acme", ticket_id="TKT-1001", customer_id="CUS-0001",
                     requester="a@acme.example", policy_version="1", inputs={},
                     lease_owner=owner, lease_ttl=120)
        yield store


def test_a_dead_holder_on_this_host_is_taken_over_at_once(backend_home: Home) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    dead = f"{socket.gethostname()}:{pid}:deadbeef"
    with registry_with_lease(backend_home, dead, clock=lambda: 1000.0) as store:
        # Not yet reaped: a zombie still answers to its pid, so it still counts as alive.
        with pytest.raises(RunBusy, match="is busy"):
            store.acquire_lease("run-1", "me", 120)
        os.waitpid(pid, 0)
        assert holder_is_dead(dead)
        store.acquire_lease("run-1", "me", 120)
        assert store.get("run-1").lease_owner == "me"


def test_a_holder_elsewhere_keeps_the_lease_until_it_expires(backend_home: Home) -> None:
    now = [1000.0]
    with registry_with_lease(backend_home, "build-box-7:4242:cafe0000",
                             clock=lambda: now[0]) as store:
        now[0] += 10
        with pytest.raises(RunBusy, match=r"lease expires in 110s"):
            store.acquire_lease("run-1", "me", 120)
        now[0] += 111
        store.acquire_lease("run-1", "me", 120)
        assert store.get("run-1").lease_owner == "me"


def test_a_live_holder_keeps_the_lease_and_only_one_taker_wins(backend_home: Home) -> None:
    alive = new_lease_owner()  # this very process
    with registry_with_lease(backend_home, alive, clock=lambda: 1000.0) as store:
        with pytest.raises(RunBusy):
            store.acquire_lease("run-1", new_lease_owner(), 120)
        store.release_lease("run-1", alive)
        first, second = new_lease_owner(), new_lease_owner()
        store.acquire_lease("run-1", first, 120)
        with pytest.raises(RunBusy):
            store.acquire_lease("run-1", second, 120)


def test_takers_racing_on_their_own_connections_one_wins(backend_home: Home) -> None:
    """Eight takers at once for a lease that expired, each on its own connection: the
    conditional UPDATE lets exactly one through, on either database."""
    now = [1000.0]
    with registry_with_lease(backend_home, "build-box-7:4242:cafe0000",
                             clock=lambda: now[0]), closing(backend_home.open_backend()) as b:
        now[0] += 121
        stores = [RunStore.open(b, clock=lambda: now[0]) for _ in range(8)]
        start, won, busy = threading.Barrier(len(stores)), [], []

        def take(store: RunStore, owner: str) -> None:
            start.wait()
            try:
                store.acquire_lease("run-1", owner, 120)
                won.append(owner)
            except RunBusy:
                busy.append(owner)

        takers = [threading.Thread(target=take, args=(s, f"taker-{n}"))
                  for n, s in enumerate(stores)]
        for thread in takers:
            thread.start()
        for thread in takers:
            thread.join()
        assert len(won) == 1 and len(busy) == 7
        assert stores[0].get("run-1").lease_owner == won[0]
        for store in stores:
            store.close()


@pytest.mark.parametrize("owner", ["1234-abcdef12", "", "host:notapid:x", "a:b"])
def test_unrecognised_owners_count_as_alive(owner: str) -> None:
    assert not holder_is_dead(owner)


def test_runner_owner_names_this_host_and_pid(tmp_path: Path) -> None:
    runner = Runner(Home(tmp_path))
    host, pid, nonce = runner.owner.rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and nonce
    runner.close()
