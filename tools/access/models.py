"""Argument and result schemas of the access tools. Inputs forbid unknown fields."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

EmployeeId = Annotated[str, Field(pattern=r"^EMP-\d{4}$", description="e.g. EMP-0004")]
SystemId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$",
                                description="e.g. analytics-staging")]
RequestId = Annotated[str, Field(pattern=r"^REQ-\d{4}$", description="e.g. REQ-3002")]
Level = Literal["read", "write", "admin"]
Email = Annotated[str, Field(min_length=3, max_length=254,
                             pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Reason = Annotated[str, Field(min_length=3, max_length=500)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LookupEmployeeInput(_Input):
    email: Email


class LookupEmployeeOutput(BaseModel):
    employee_id: str
    name: str
    email: str
    role: str
    team: str
    manager_id: str | None
    active: bool


class ListGrantsInput(_Input):
    employee_id: EmployeeId


class Grant(BaseModel):
    grant_id: str
    system_id: str
    level: str
    granted_at: str


class ListGrantsOutput(BaseModel):
    employee_id: str
    grants: list[Grant]


class GetSystemInput(_Input):
    system_id: SystemId


class GetSystemOutput(BaseModel):
    system_id: str
    name: str
    production: bool
    owner_team: str


class GrantAccessInput(_Input):
    employee_id: EmployeeId
    system_id: SystemId
    level: Level
    reason: Reason


class GrantAccessOutput(BaseModel):
    grant_id: str
    employee_id: str
    system_id: str
    level: str


class RevokeAccessInput(_Input):
    employee_id: EmployeeId
    system_id: SystemId
    level: Level
    reason: Reason


class RevokeAccessOutput(BaseModel):
    grant_id: str
    revoked_at: str


class AddRequestNoteInput(_Input):
    request_id: RequestId
    body: str = Field(min_length=1, max_length=4000)


class AddRequestNoteOutput(BaseModel):
    note_id: str
    request_id: str


class EscalateToHumanInput(_Input):
    request_id: RequestId
    reason: str = Field(min_length=3, max_length=1000)


class EscalateToHumanOutput(BaseModel):
    escalation_id: str
    request_id: str
