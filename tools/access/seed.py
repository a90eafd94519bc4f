"""Build and open the sample access-request database (with sqlite-utils).

The data is fixed, not generated: a dozen employees with roles, teams and managers, internal
systems (some of them production), the grants they hold today, and the sample requests.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from tools.access.requests import TENANT, load_sample_requests
from tools.common import install_built_db, open_domain_db

GRANTED_AT = "2026-09-01T09:00:00Z"

# employee_id, name, email, role, team, manager_id, active
EMPLOYEES = [
    ("EMP-0001", "Ruth Okafor", "ruth.okafor@corp.example", "engineering_manager", "platform",
     None, 1),
    ("EMP-0002", "Lena Fischer", "lena.fischer@corp.example", "engineering_manager", "data",
     "EMP-0001", 1),
    ("EMP-0003", "Dana Kim", "dana.kim@corp.example", "analyst", "data", "EMP-0002", 1),
    ("EMP-0004", "Omar Haddad", "omar.haddad@corp.example", "engineer", "data", "EMP-0002", 1),
    ("EMP-0005", "Jonas Berg", "jonas.berg@corp.example", "engineer", "platform", "EMP-0001", 1),
    ("EMP-0006", "Priya Nair", "priya.nair@corp.example", "sre", "platform", "EMP-0001", 1),
    ("EMP-0007", "Sam Reyes", "sam.reyes@corp.example", "sre", "platform", "EMP-0001", 1),
    ("EMP-0008", "Mei Tan", "mei.tan@corp.example", "security", "security", "EMP-0001", 1),
    ("EMP-0009", "Alex Ward", "alex.ward@corp.example", "it_admin", "it", "EMP-0001", 1),
    ("EMP-0010", "Chris Doyle", "chris.doyle@corp.example", "contractor", "data", "EMP-0002",
     0),
]

# system_id, name, production, owner_team
SYSTEMS = [
    ("analytics-staging", "Analytics warehouse (staging)", 0, "data"),
    ("ci-runners", "CI runner fleet", 0, "platform"),
    ("wiki-internal", "Internal wiki", 0, "it"),
    ("payments-db", "Payments database", 1, "payments"),
    ("billing-api", "Billing API", 1, "payments"),
    ("crm-prod", "CRM", 1, "sales"),
]

# employee_id, system_id, level
GRANTS = [
    ("EMP-0001", "wiki-internal", "admin"),
    ("EMP-0002", "analytics-staging", "admin"),
    ("EMP-0003", "wiki-internal", "read"),
    ("EMP-0003", "analytics-staging", "read"),
    ("EMP-0004", "wiki-internal", "read"),
    ("EMP-0005", "ci-runners", "admin"),
    ("EMP-0005", "analytics-staging", "write"),
    ("EMP-0005", "wiki-internal", "read"),
    ("EMP-0006", "ci-runners", "read"),
    ("EMP-0006", "billing-api", "read"),
    ("EMP-0007", "ci-runners", "admin"),
    ("EMP-0008", "payments-db", "read"),
    ("EMP-0009", "wiki-internal", "admin"),
]

TABLES = ("employees", "systems", "grants", "requests", "request_notes", "escalations")


def _write(db: sqlite_utils.Database) -> None:
    db.table("employees").insert_all(
        ({"employee_id": e, "tenant_id": TENANT, "name": n, "email": m, "role": r, "team": t,
          "manager_id": mgr, "active": a} for e, n, m, r, t, mgr, a in EMPLOYEES),
        pk="employee_id", not_null={"tenant_id", "name", "email", "role", "team", "active"},
        foreign_keys=[("manager_id", "employees", "employee_id")])
    db.table("employees").create_index(["tenant_id", "email"], unique=True)
    db.table("systems").insert_all(
        ({"system_id": s, "tenant_id": TENANT, "name": n, "production": p, "owner_team": o}
         for s, n, p, o in SYSTEMS), pk="system_id",
        not_null={"tenant_id", "name", "production", "owner_team"})
    db.table("grants").create(
        {"grant_id": str, "tenant_id": str, "employee_id": str, "system_id": str, "level": str,
         "granted_at": str, "revoked_at": str, "run_id": str},
        pk="grant_id", not_null={"tenant_id", "employee_id", "system_id", "level", "granted_at"},
        foreign_keys=[("employee_id", "employees", "employee_id"),
                      ("system_id", "systems", "system_id")])
    db.table("grants").insert_all(
        {"grant_id": f"GR-{i:05d}", "tenant_id": TENANT, "employee_id": e, "system_id": s,
         "level": lvl, "granted_at": GRANTED_AT, "revoked_at": None, "run_id": None}
        for i, (e, s, lvl) in enumerate(GRANTS, start=1))
    # At most one live grant per employee, system and level: the database enforces what the
    # no-duplicate-grant invariant checks.
    db.execute("CREATE UNIQUE INDEX grants_live ON grants(employee_id, system_id, level)"
               " WHERE revoked_at IS NULL")
    db.table("requests").insert_all(
        ({"request_id": r.request_id, "tenant_id": TENANT, "employee_id": r.employee_id,
          "subject": r.subject, "body": r.body, "status": "open",
          "created_at": f"2026-10-01T08:{i:02d}:00Z"}
         for i, r in enumerate(load_sample_requests())),
        pk="request_id", not_null={"tenant_id", "employee_id", "subject", "body", "status"},
        foreign_keys=[("employee_id", "employees", "employee_id")])
    for table, prefix in (("request_notes", "note"), ("escalations", "escalation")):
        db.table(table).create(
            {f"{prefix}_id": str, "tenant_id": str, "request_id": str,
             "body" if prefix == "note" else "reason": str, "created_at": str, "run_id": str},
            pk=f"{prefix}_id", foreign_keys=[("request_id", "requests", "request_id")])


def build_access_db(path: str | Path, *, overwrite: bool = False) -> None:
    """Write the sample access database to `path` (built aside, then moved into place)."""
    target = Path(path)
    if target.exists() and target.stat().st_size > 0 and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    building = target.with_name(target.name + ".building")
    building.unlink(missing_ok=True)
    db = sqlite_utils.Database(building)
    try:
        _write(db)
    finally:
        db.close()
    install_built_db(building, target)


def open_access_db(path: str | Path) -> sqlite3.Connection:
    """Open an existing access database for tools (see tools.common.open_domain_db)."""
    return open_domain_db(path, kind="access", tables=TABLES)
