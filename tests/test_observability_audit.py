from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph.runner import Home
from observability import AuditLog, Head, audit_head, purge, verify_audit
from observability.audit import GENESIS_HASH, entry_hash
from observability.chain import text_entry_hash
from observability.db import StoreError, canonical_json
from observability.testing import FakeClock
from tests.stores import execute

ENTRIES = 6


@pytest.fixture
def home(backend_home: Home) -> Home:
    """Six chained entries, on each backend of the grid."""
    log = AuditLog(backend_home, clock=FakeClock())
    for n in range(1, ENTRIES + 1):
        log.append("gate", "r1", {"step": n, "verdict": "green"}, dedupe_key=f"k{n}")
    log.close()
    return backend_home


def tamper(home: Home, *statements: str) -> None:
    for statement in statements:
        execute(home, "audit", statement)


def test_an_untouched_log_verifies(home: Home) -> None:
    result = verify_audit(home)
    assert (result.ok, result.entries_checked, result.first_bad_seq) == (True, ENTRIES, None)


def test_entries_link_by_sha256_over_canonical_json(home: Home) -> None:
    (first,) = execute(home, "audit", "SELECT seq, prev_hash, entry_hash, at FROM audit"
                       " WHERE seq = 1")
    assert first[:2] == (1, GENESIS_HASH)
    assert first[2] == entry_hash(
        1, GENESIS_HASH, "gate", "r1", {"step": 1, "verdict": "green"}, first[3]
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(payload=JSON, seq=st.integers(min_value=1), kind=st.text(),
       run_id=st.none() | st.text(), at=st.floats(allow_nan=False, allow_infinity=False))
def test_hashing_the_stored_text_gives_the_hash_of_the_value(payload: object, seq: int,
                                                              kind: str, run_id: str | None,
                                                              at: float) -> None:
    # append hashes the canonical text it stores; verify hashes that text without parsing
    # it. Both must be the documented sha256 over the canonical JSON of the whole entry.
    assert text_entry_hash(seq, GENESIS_HASH, kind, run_id, canonical_json(payload), at) \
        == entry_hash(seq, GENESIS_HASH, kind, run_id, payload, at)


def test_a_duplicate_dedupe_key_is_not_appended(home: Home) -> None:
    log = AuditLog(home, clock=FakeClock())
    assert log.append("gate", "r1", {}, dedupe_key="k1") is None  # the fixture logged it
    assert log.append("gate", "r1", {}, dedupe_key="same") == ENTRIES + 1
    assert log.append("gate", "r1", {}, dedupe_key="same") is None
    assert log.head()[0] == ENTRIES + 1
    log.close()


def test_a_batch_skips_keys_already_logged_and_repeated_within_it(home: Home) -> None:
    from observability.audit import AuditEntry

    log = AuditLog(home, clock=FakeClock(now=1_800_000_000.0))
    log.append("gate", "r1", {"n": 0}, dedupe_key="a")
    seqs = log.append_many([AuditEntry("gate", "r1", {"n": 1}, "a", None),
                            AuditEntry("gate", "r1", {"n": 2}, "b", None),
                            AuditEntry("gate", "r1", {"n": 3}, "b", None),
                            AuditEntry("gate", "r1", {"n": 4}, None, None)])
    assert seqs == [None, ENTRIES + 2, None, ENTRIES + 3]
    assert log.verify().ok and log.verify().entries_checked == ENTRIES + 3
    log.close()


def copy_of_row(seq: int) -> str:
    return (
        f"SELECT {{seq}}, prev_hash, entry_hash, kind, run_id, payload, at, NULL"
        f" FROM audit WHERE seq = {seq}"
    )


TAMPERING: dict[str, tuple[list[str], int, str]] = {
    "payload modified": (
        ['UPDATE audit SET payload = \'{"step":3,"verdict":"red"}\' WHERE seq = 3'],
        3,
        "modified",
    ),
    "payload re-spaced, same JSON value": (
        ['UPDATE audit SET payload = \'{"step": 3, "verdict": "green"}\' WHERE seq = 3'],
        3,
        "modified",
    ),
    "time modified": (["UPDATE audit SET at = at + 1 WHERE seq = 5"], 5, "modified"),
    "row deleted": (["DELETE FROM audit WHERE seq = 3"], 3, "missing"),
    "row deleted and the rest renumbered": (
        ["DELETE FROM audit WHERE seq = 3", "UPDATE audit SET seq = seq - 1 WHERE seq > 3"],
        3,
        "deleted",
    ),
    "row inserted with a forged hash": (
        [
            "UPDATE audit SET seq = seq + 100 WHERE seq >= 4",
            "UPDATE audit SET seq = seq - 99 WHERE seq >= 104",
            "INSERT INTO audit (seq, prev_hash, entry_hash, kind, run_id, payload, at)"
            " SELECT 4, entry_hash, 'f00d', 'approval', 'r1', '{}', at FROM audit WHERE seq = 3",
        ],
        4,
        "modified",
    ),
    "row appended with a wrong prev_hash": (
        [
            "INSERT INTO audit (seq, prev_hash, entry_hash, kind, run_id, payload, at)"
            " VALUES (7, 'beef', 'f00d', 'approval', 'r1', '{}', 1)"
        ],
        7,
        "modified",
    ),
    "two rows swapped": (
        [
            "UPDATE audit SET seq = 100 WHERE seq = 2",
            "UPDATE audit SET seq = 2 WHERE seq = 3",
            "UPDATE audit SET seq = 3 WHERE seq = 100",
        ],
        2,
        "swapped",
    ),
}


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
def test_tampering_is_detected_at_the_first_bad_entry(home: Home, case: str) -> None:
    statements, bad_seq, word = TAMPERING[case]
    tamper(home, *statements)
    result = verify_audit(home)
    assert result.ok is False
    assert result.first_bad_seq == bad_seq, result.reason
    assert word in (result.reason or "")


def test_an_insert_with_a_correctly_computed_hash_is_named(home: Home) -> None:
    """A forger who can hash still renumbers the entries after it, which gives it away."""
    ((prev,),) = execute(home, "audit", "SELECT entry_hash FROM audit WHERE seq = 3")
    tamper(home, "UPDATE audit SET seq = seq + 100 WHERE seq >= 4",
           "UPDATE audit SET seq = seq - 99 WHERE seq >= 104")
    forged = entry_hash(4, prev, "approval", "r1", {"approver": "mallory"}, 1.0)
    execute(home, "audit",
            "INSERT INTO audit (seq, prev_hash, entry_hash, kind, run_id, payload, at)"
            " VALUES (4, ?, ?, 'approval', 'r1', '{\"approver\":\"mallory\"}', 1.0)",
            (prev, forged))
    result = verify_audit(home)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "inserted" in (result.reason or "")


def make_traces(home: Home) -> None:
    from observability import Recorder

    Recorder(home).close()


def test_the_chain_stays_verifiable_across_a_purge(home: Home) -> None:
    make_traces(home)
    # The fixture logged entries at T+0 .. T+5; a cutoff of T+3.5 purges entries 1-4.
    result = purge(home, 1, clock=lambda: 1_700_000_000.0 + 3.5 + 86_400)
    assert result.audit_entries_deleted == 4
    verification = verify_audit(home)
    # entries 5, 6 and the purge record (7) remain, chained to the anchor of entry 4
    assert (verification.ok, verification.entries_checked) == (True, 3)
    log = AuditLog(home, clock=FakeClock(now=1_800_000_000.0))
    log.append("gate", "r2", {"after": "purge"})
    log.close()
    assert verify_audit(home).ok


def test_after_a_purge_deleting_a_kept_entry_or_forging_the_anchor_is_detected(
    home: Home,
) -> None:
    make_traces(home)
    purge(home, 1, clock=lambda: 1_700_000_000.0 + 3.5 + 86_400)
    tamper(home, "DELETE FROM audit WHERE seq = 5")
    result = verify_audit(home)
    assert (result.ok, result.first_bad_seq) == (False, 5)

    tamper(
        home,
        "DELETE FROM audit WHERE seq = 6",
        "UPDATE audit_anchor SET through_seq = 6, through_hash = (SELECT prev_hash FROM"
        " audit WHERE seq = 7)",
    )
    result = verify_audit(home)
    assert result.ok is False
    assert "anchor" in (result.reason or "")


def test_missing_or_foreign_audit_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        verify_audit(tmp_path)
    (tmp_path / "audit.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot read"):
        verify_audit(tmp_path)


# -- a head written down elsewhere -----------------------------------------------------------


def rewrite_from(home: Home, seq: int) -> None:
    """Change entry `seq` and recompute every hash after it: what someone who can write the
    file can do, and what the chain alone cannot show."""
    ((prev,),) = execute(home, "audit", "SELECT prev_hash FROM audit WHERE seq = ?", (seq,))
    rows = execute(home, "audit", "SELECT seq, kind, run_id, payload, at FROM audit"
                   " WHERE seq >= ? ORDER BY seq", (seq,))
    for n, kind, run_id, payload, at in rows:
        if n == seq:
            payload = canonical_json({"step": n, "verdict": "red"})
        digest = text_entry_hash(n, prev, kind, run_id, payload, at)
        execute(home, "audit", "UPDATE audit SET prev_hash = ?, entry_hash = ?, payload = ?"
                " WHERE seq = ?", (prev, digest, payload, n))
        prev = digest


def test_a_head_catches_a_log_rewritten_with_every_hash_recomputed(home: Home) -> None:
    head = audit_head(home)
    assert head.seq == ENTRIES
    rewrite_from(home, 3)
    assert verify_audit(home).ok  # the chain alone cannot tell
    result = verify_audit(home, head)
    assert (result.ok, result.first_bad_seq) == (False, ENTRIES)
    assert "rewritten" in (result.reason or "")


def test_a_head_catches_the_newest_entries_dropped(home: Home) -> None:
    head = audit_head(home)
    tamper(home, "DELETE FROM audit WHERE seq >= 5")
    assert verify_audit(home).ok
    result = verify_audit(home, head)
    assert (result.ok, result.first_bad_seq) == (False, ENTRIES)
    assert "the log ends at 4" in (result.reason or "")


def test_an_older_head_still_holds_after_more_entries(home: Home) -> None:
    head = audit_head(home)
    log = AuditLog(home, clock=FakeClock(now=1_800_000_000.0))
    log.append("gate", "r2", {"later": True})
    log.close()
    assert audit_head(home).seq == ENTRIES + 1
    assert verify_audit(home, head).ok


def test_heads_of_an_empty_log_and_across_a_purge(tmp_path: Path, home: Home) -> None:
    AuditLog(tmp_path / "empty", clock=FakeClock()).close()
    empty = audit_head(tmp_path / "empty")
    assert empty == Head(0, GENESIS_HASH)
    assert verify_audit(tmp_path / "empty", empty).ok

    fourth = Head(4, execute(home, "audit", "SELECT entry_hash FROM audit WHERE seq = 4")[0][0])
    second = Head(2, execute(home, "audit", "SELECT entry_hash FROM audit WHERE seq = 2")[0][0])
    newest = audit_head(home)
    make_traces(home)
    purge(home, 1, clock=lambda: 1_700_000_000.0 + 3.5 + 86_400)  # entries 1-4 go
    assert verify_audit(home, newest).ok
    assert verify_audit(home, fourth).ok  # the anchor keeps the last purged entry's hash
    with pytest.raises(ValueError, match="entry 2 was purged"):
        verify_audit(home, second)


@pytest.mark.parametrize("text", ["", "6", "6:", "-1:" + "0" * 64, "x:" + "0" * 64,
                                  "\u00b2:" + "0" * 64, "6:" + "0" * 63, "6:" + "g" * 64,
                                  "6:" + "0" * 65])
def test_a_malformed_head_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SEQ:HASH"):
        Head.parse(text)


def test_a_head_reads_back_as_it_is_printed(home: Home) -> None:
    head = audit_head(home)
    assert Head.parse(f"  {head}\n") == head
    assert Head.parse(str(head).upper()) == head
