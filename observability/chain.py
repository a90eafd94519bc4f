"""The audit log's hash chain: how an entry is hashed and how a chain is verified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from observability.db import canonical_json

GENESIS_HASH = "0" * 64


def entry_hash(
    seq: int, prev_hash: str, kind: str, run_id: str | None, payload: Any, at: float
) -> str:
    """sha256 over the canonical JSON of the entry's fields (payload as a JSON value)."""
    return text_entry_hash(seq, prev_hash, kind, run_id, canonical_json(payload), at)


def text_entry_hash(
    seq: int, prev_hash: str, kind: str, run_id: str | None, payload_text: str, at: float
) -> str:
    """`entry_hash` from the payload's stored canonical JSON text, without parsing it.

    The body is spelled out as canonical_json would write the whole entry (keys sorted, no
    spaces), so both give the same hash; the log stores payloads as canonical JSON.
    """
    body = (
        f'{{"at":{canonical_json(at)},"kind":{canonical_json(kind)},"payload":{payload_text},'
        f'"prev_hash":{canonical_json(prev_hash)},"run_id":{canonical_json(run_id)},'
        f'"seq":{canonical_json(seq)}}}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of walking the chain."""

    ok: bool
    """True when every entry links to the one before and matches its own hash."""
    entries_checked: int
    """How many entries were read."""
    first_bad_seq: int | None = None
    """The seq of the first entry that is modified, missing, inserted or out of order."""
    reason: str | None = None
    """Why that entry is bad, in one line."""


class Anchor(NamedTuple):
    through_seq: int
    """The last purged seq; the chain resumes at through_seq + 1."""
    through_hash: str
    """That entry's hash, which the next entry's prev_hash must equal."""


class Head(NamedTuple):
    """A newest entry someone wrote down: `signoff audit head` prints it as SEQ:HASH."""

    seq: int
    entry_hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.entry_hash}"

    @classmethod
    def parse(cls, text: str) -> Head:
        """SEQ:HASH as `str()` writes it; ValueError (one line) for anything else."""
        seq, sep, digest = text.strip().partition(":")
        digest = digest.lower()
        if not (sep and seq.isascii() and seq.isdigit() and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise ValueError(f"a head is SEQ:HASH as `signoff audit head` prints it (a number, "
                             f"a colon and 64 hex digits), got {text.strip()[:80]!r}")
        return cls(int(seq), digest)


class Row(NamedTuple):
    seq: int
    prev_hash: str
    entry_hash: str
    kind: str
    run_id: str | None
    payload: str
    at: float

    def recomputed(self, *, seq: int | None = None, prev_hash: str | None = None) -> str:
        # The stored text is hashed as it is: any change to its bytes is a modification.
        return text_entry_hash(
            self.seq if seq is None else seq,
            self.prev_hash if prev_hash is None else prev_hash,
            self.kind,
            self.run_id,
            self.payload,
            self.at,
        )


def json_or_text(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload  # a tampered payload still hashes, to a different value


def verify_chain(rows: Iterable[Row], anchor: Anchor | None) -> AuditVerification:
    """Walk entries in seq order and name the first one that breaks the chain.

    Rows are read one ahead (a swap is told apart from a deletion by the entry after it),
    so the chain is never held in memory.
    """
    expected_seq, prev_hash = (
        (anchor.through_seq + 1, anchor.through_hash) if anchor else (1, GENESIS_HASH)
    )
    anchor_confirmed = anchor is None
    checked = 0
    stream = iter(rows)
    row = next(stream, None)
    while row is not None:
        following = next(stream, None)
        checked += 1
        problem = _diagnose(row, following, expected_seq, prev_hash)
        if problem is not None:
            return AuditVerification(False, checked, problem[0], problem[1])
        if anchor is not None and row.kind == "purge":
            payload = json_or_text(row.payload)
            anchor_confirmed = anchor_confirmed or (
                isinstance(payload, dict)
                and payload.get("through_seq") == anchor.through_seq
                and payload.get("through_hash") == anchor.through_hash
            )
        prev_hash, expected_seq = row.entry_hash, row.seq + 1
        row = following
    if anchor is not None and not anchor_confirmed:
        return AuditVerification(
            False,
            checked,
            anchor.through_seq + 1,
            "purge anchor has no matching purge entry in the log",
        )
    return AuditVerification(True, checked)


def _diagnose(
    row: Row, following: Row | None, expected_seq: int, prev_hash: str
) -> tuple[int, str] | None:
    if row.seq != expected_seq:
        return expected_seq, f"entry missing (deleted); the next entry is {row.seq}"
    if row.recomputed() != row.entry_hash:
        # A moved entry still hashes correctly under the seq it was written with.
        if row.recomputed(seq=row.seq - 1) == row.entry_hash:
            return row.seq - 1, "entry inserted (the entries after it were renumbered)"
        if row.recomputed(seq=row.seq + 1) == row.entry_hash:
            if (
                following is not None
                and following.prev_hash == prev_hash
                and (following.recomputed(seq=row.seq) == following.entry_hash)
            ):
                return row.seq, f"entries {row.seq} and {following.seq} swapped (reordered)"
            return row.seq, "entry deleted (the entries after it were renumbered)"
        return row.seq, "entry_hash does not match the entry's contents (modified)"
    if row.prev_hash != prev_hash:
        return row.seq, "prev_hash does not match the previous entry's hash (inserted or reordered)"
    return None
