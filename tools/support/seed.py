"""Build and open the sample customer-support database.

The data is generated from a seed and a fixed base date (never the wall clock), so two builds
with the same seed are identical. The customers and orders the sample tickets talk about sit at
fixed positions, so their ids (CUS-0001, ORD-10001, ...) do not depend on the seed.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from tools.common import install_built_db, open_domain_db
from tools.support.schema import NULLABLE, TABLE_NAMES, TABLES
from tools.support.tickets import load_sample_tickets

BASE_DATE = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
""""Now" for the generated data: every timestamp lies before it."""

TENANTS = [("acme", "Acme Outfitters", 40), ("globex", "Globex Supply", 20)]
"""(tenant_id, name, number of customers); customer ids are numbered across tenants."""

Item = tuple[str, str, int, int]  # sku, name, qty, unit_price_cents


@dataclass(frozen=True)
class _FixedCustomer:
    """A customer a sample ticket depends on, with the one order the ticket is about."""

    name: str
    email: str
    status: str
    days_ago: int
    items: tuple[Item, ...]
    captures: int = 1
    """Captured payments of the full total; 2 models a duplicate charge."""
    flagged: bool = False


# Listed in id order: acme's become CUS-0001.., globex's CUS-0041..; their orders ORD-10001..12.
_FIXED: dict[str, list[_FixedCustomer]] = {
    "acme": [
        _FixedCustomer("Dana Whitfield", "dana.whitfield@example.com", "delivered", 6,
                       (("HOME-MUG4", "Ceramic mug set", 1, 1800),
                        ("HOME-KTL1", "Pour-over kettle", 1, 3900))),
        _FixedCustomer("Marcus Oyelaran", "marcus.oyelaran@example.com", "delivered", 12,
                       (("AUD-HP200", "Noise-cancelling headphones", 1, 14900),)),
        _FixedCustomer("Priya Raman", "priya.raman@example.com", "delivered", 20,
                       (("KIT-ESP9", "Espresso machine", 1, 74000),
                        ("KIT-PIT1", "Milk frothing pitcher", 1, 2400))),
        _FixedCustomer("Tomas Ferreira", "tomas.ferreira@example.com", "delivered", 9,
                       (("PHN-CASE", "Phone case", 1, 3499),), captures=2),
        _FixedCustomer("Aiko Tanaka", "aiko.tanaka@example.com", "shipped", 4,
                       (("OUT-BP40", "Hiking backpack 40L", 1, 8900),)),
        _FixedCustomer("Liam Brennan", "liam.brennan@example.com", "delivered", 15,
                       (("HOME-LMP", "Desk lamp", 1, 4200),)),
        _FixedCustomer("Sofia Marchetti", "sofia.marchetti@example.com", "delivered", 11,
                       (("HOME-THR", "Wool throw blanket", 1, 6500),)),
        _FixedCustomer("Grant Holloway", "grant.holloway@example.com", "delivered", 8,
                       (("AUD-SPK1", "Bluetooth speaker", 1, 4500),)),
        _FixedCustomer("Nadia Petrov", "nadia.petrov@example.com", "delivered", 18,
                       (("FIT-MAT", "Yoga mat", 1, 3200),)),
        _FixedCustomer("Victor Lang", "victor.lang@example.com", "delivered", 7,
                       (("FIT-RUN", "Running shoes", 1, 9800),), flagged=True),
    ],
    "globex": [
        _FixedCustomer("Elena Kovacs", "elena.kovacs@example.com", "delivered", 5,
                       (("STN-NB3", "Notebook set", 1, 1250),
                        ("STN-PEN", "Fountain pen", 1, 3400))),
        _FixedCustomer("Henrik Olsen", "henrik.olsen@example.com", "delivered", 10,
                       (("STN-DESK", "Desk organiser", 1, 2600),)),
    ],
}

_CATALOG: list[tuple[str, str, int]] = [
    ("HOME-CAN2", "Soy candle pair", 2400), ("HOME-TWL", "Cotton towel set", 3900),
    ("KIT-KNF8", "Chef's knife", 8900), ("KIT-BRD", "Cutting board", 2900),
    ("AUD-EAR1", "Wireless earbuds", 7900), ("PHN-CHG", "USB-C charger", 1999),
    ("OUT-BTL", "Insulated bottle", 2500), ("OUT-TNT2", "Two-person tent", 18900),
    ("FIT-BND", "Resistance bands", 1599), ("FIT-DMB", "Dumbbell pair", 5400),
    ("STN-PLN", "Weekly planner", 1800), ("STN-MRK", "Marker set", 1250),
]
_FIRST = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan", "Jade",
          "Kofi", "Lena", "Mateo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara"]
_LAST = ["Adams", "Brooks", "Chen", "Duarte", "Evans", "Fischer", "Garcia", "Hughes", "Ito",
         "Jensen", "Khan", "Lopez", "Moreau", "Novak", "Okafor", "Park", "Reyes", "Silva"]
_STATUSES = ["delivered", "shipped", "pending", "cancelled"]
_STATUS_WEIGHTS = [55, 15, 12, 18]


@dataclass
class _Rows:
    """Rows per table, filled in id order."""

    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {t.name: [] for t in TABLES}
    )

    def add(self, table: str, **row: Any) -> None:
        self.tables[table].append(row)

    def next_id(self, table: str, prefix: str, width: int, start: int = 1) -> str:
        return f"{prefix}{start + len(self.tables[table]):0{width}d}"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_order(
    rows: _Rows, tenant_id: str, customer_id: str, status: str, placed: datetime,
    items: tuple[Item, ...], captures: int = 1, shipped_after: timedelta = timedelta(days=1),
) -> None:
    order_id = rows.next_id("orders", "ORD-", 5, start=10001)
    total = sum(qty * price for _, _, qty, price in items)
    shipped = _ts(placed + shipped_after) if status in ("shipped", "delivered") else None
    rows.add("orders", order_id=order_id, tenant_id=tenant_id, customer_id=customer_id,
             status=status, placed_at=_ts(placed), shipped_at=shipped, total_cents=total,
             currency="USD")
    for sku, name, qty, price in items:
        rows.add("order_items", item_id=len(rows.tables["order_items"]) + 1,
                 tenant_id=tenant_id, order_id=order_id, sku=sku, name=name, qty=qty,
                 unit_price_cents=price)
    for _ in range(captures):
        rows.add("payments", payment_id=rows.next_id("payments", "PAY-", 5), tenant_id=tenant_id,
                 order_id=order_id, amount_cents=total, status="captured",
                 captured_at=_ts(placed + timedelta(minutes=2)))
    if status == "cancelled" and captures:
        # A cancelled order that had been paid was refunded in full when it was cancelled.
        rows.add("refunds", refund_id=rows.next_id("refunds", "RF-", 5), tenant_id=tenant_id,
                 order_id=order_id, amount_cents=total, reason="order cancelled",
                 status="completed", created_at=_ts(placed + timedelta(hours=5)), run_id=None)


def _generate(rng: random.Random) -> _Rows:
    rows = _Rows()
    customers: list[tuple[str, str, int]] = []  # (customer_id, tenant_id, index in tenant)
    number = 0
    for tenant_id, tenant_name, count in TENANTS:
        rows.add("tenants", tenant_id=tenant_id, name=tenant_name, currency="USD")
        for index in range(count):
            number += 1
            customer_id = f"CUS-{number:04d}"
            fixed = _FIXED[tenant_id]
            if index < len(fixed):
                name, email, flagged = fixed[index].name, fixed[index].email, fixed[index].flagged
            else:
                first, last = rng.choice(_FIRST), rng.choice(_LAST)
                name = f"{first} {last}"
                email = f"{first}.{last}.{number}@example.com".lower()
                flagged = rng.random() < 0.06
            rows.add("customers", customer_id=customer_id, tenant_id=tenant_id, name=name,
                     email=email, phone=f"+1-555-{number:04d}", flagged=int(flagged))
            customers.append((customer_id, tenant_id, index))

    # Fixed orders first, so ORD-10001.. belong to the sample tickets whatever the seed.
    for customer_id, tenant_id, index in customers:
        if index < len(_FIXED[tenant_id]):
            spec = _FIXED[tenant_id][index]
            placed = BASE_DATE - timedelta(days=spec.days_ago, hours=3)
            _add_order(rows, tenant_id, customer_id, spec.status, placed, spec.items,
                       captures=spec.captures)
    for customer_id, tenant_id, index in customers:
        if index < len(_FIXED[tenant_id]):
            continue
        for _ in range(rng.randint(1, 5)):
            status = rng.choices(_STATUSES, _STATUS_WEIGHTS)[0]
            placed = BASE_DATE - timedelta(days=rng.randint(2, 120), minutes=rng.randint(0, 1439))
            picks = rng.sample(_CATALOG, rng.randint(1, 3))
            items = tuple((sku, name, rng.randint(1, 2), price) for sku, name, price in picks)
            paid = status != "cancelled" or rng.random() < 0.5
            _add_order(rows, tenant_id, customer_id, status, placed, items,
                       captures=1 if paid else 0,
                       shipped_after=timedelta(days=rng.randint(1, 3)))

    tickets = load_sample_tickets()
    for position, ticket in enumerate(tickets):
        created = BASE_DATE - timedelta(minutes=37 * (len(tickets) - position))
        rows.add("tickets", ticket_id=ticket.id, tenant_id=ticket.tenant_id,
                 customer_id=ticket.customer_id, subject=ticket.subject, body=ticket.body,
                 status="open", created_at=_ts(created))
    return rows


def _write(db: sqlite_utils.Database, rows: _Rows) -> None:
    for table in TABLES:
        nullable = NULLABLE.get(table.name, set())
        db.table(table.name).create(
            table.columns, pk=table.pk, foreign_keys=table.foreign_keys,
            not_null=[c for c in table.columns if c not in nullable],
        )
        scoped = "tenant_id" in table.columns and table.name != "tenants"
        for column in table.lookups:
            db.table(table.name).create_index(
                ["tenant_id", column] if scoped else [column],
                unique=(table.name, column) == ("customers", "email"),
            )
        if scoped and not table.lookups:
            db.table(table.name).create_index(["tenant_id"])
        db.table(table.name).insert_all(rows.tables[table.name])


def build_support_db(path: str | Path, seed: int = 7, *, overwrite: bool = False) -> None:
    """Write the sample support database to `path`; the same seed gives the same data.

    Refuses to replace an existing non-empty file unless `overwrite` is true. The database is
    built next to `path` and moved into place, so a failed build leaves no half-written file.
    """
    target = Path(path)
    if target.exists() and target.stat().st_size > 0 and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    rows = _generate(random.Random(seed))
    building = target.with_name(target.name + ".building")
    building.unlink(missing_ok=True)
    db = sqlite_utils.Database(building)
    try:
        _write(db, rows)
    finally:
        db.close()
    install_built_db(building, target)


def open_support_db(path: str | Path) -> sqlite3.Connection:
    """Open an existing support database for tools (see tools.common.open_domain_db)."""
    return open_domain_db(path, kind="support", tables=TABLE_NAMES)
