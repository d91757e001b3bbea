"""Shapes shared by both custom resources: conditions and deletion policy."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CamelModel(BaseModel):
    """Base for CRD models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        alias_generator=lambda name: name.split("_")[0] + "".join(part.title() for part in name.split("_")[1:]),
    )


class DeletionPolicy(StrEnum):
    """What happens to the cloud object when the custom resource is deleted."""

    DELETE = "Delete"
    RETAIN = "Retain"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    """metav1.Condition, as kstatus and `kubectl wait --for=condition=Ready` expect it."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: str
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
