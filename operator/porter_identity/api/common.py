"""Shapes shared by both custom resources: conditions and deletion policy."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

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

    type: str = Field(max_length=316, description="Ready, or while true Reconciling or Stalled (kstatus).")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(default=None, ge=0, description="metadata.generation it describes.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    reason: str = Field(max_length=1024, description="One CamelCase word, e.g. Bound, Throttled, RoleNotFound.")
    message: str = Field(default="", max_length=32768, description="What happened and what to do, for people.")


# status.kopf: kopf's own bookkeeping (last handled spec, retry progress), not part of our API.
KOPF_STATUS = "kopf"


class ObjectMeta(CamelModel):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore")

    name: str
    namespace: str | None = None
    uid: str = ""
    generation: int = 0
    deletion_timestamp: str | None = None


class KubeObject(CamelModel):
    """A custom resource as the API server returns it: subclasses declare spec and status."""

    model_config = ConfigDict(extra="ignore")

    metadata: ObjectMeta

    @classmethod
    def from_body(cls, body: Any) -> Self:
        status = {k: v for k, v in (body.get("status") or {}).items() if k != KOPF_STATUS}
        return cls.model_validate({"metadata": dict(body["metadata"]), "spec": dict(body["spec"]), "status": status})
