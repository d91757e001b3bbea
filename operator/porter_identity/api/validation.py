"""String rules that the CRD (as CEL) and the operator (as pydantic validators) enforce identically."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, cast

from pydantic import AfterValidator, Field

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
IAM_ROLE = (
    r"^(arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/([A-Za-z0-9+=,.@_-]+/)*)?"
    r"[A-Za-z0-9+=,.@_-]{1,64}$"
)
AZURE_IDENTITY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$"
AZURE_RESOURCE_GROUP = r"^[A-Za-z0-9._()-]{0,89}[A-Za-z0-9_()-]$"
GCP_SERVICE_ACCOUNT_EMAIL = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9][a-z0-9.:-]*\.iam\.gserviceaccount\.com$"


def matching(regex: str, message: str, max_length: int, *extra_rules: dict[str, str]) -> Any:
    """A string type checked against `regex`, emitted into the CRD as a CEL rule with `message`."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    cel = {"rule": f"self.matches(r'{regex}')", "message": message}
    return Annotated[
        str,
        Field(
            min_length=1,
            max_length=max_length,
            json_schema_extra={"x-kubernetes-validations": cast(Any, [cel, *extra_rules])},
        ),
        AfterValidator(check),
    ]


if TYPE_CHECKING:
    ServiceAccountName: TypeAlias = str
    RoleRef: TypeAlias = str
    AzureIdentityName: TypeAlias = str
    AzureResourceGroup: TypeAlias = str
    GcpServiceAccountEmail: TypeAlias = str
else:
    ServiceAccountName = matching(
        DNS1123_SUBDOMAIN,
        "serviceAccountName must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
        "starting and ending with a letter or digit",
        253,
        {"rule": "self == oldSelf", "message": "serviceAccountName is immutable; create a new connection instead"},
    )
    RoleRef = matching(
        IAM_ROLE,
        "role must be an IAM role name (1-64 of letters, digits and +=,.@_-) "
        "or a role ARN such as arn:aws:iam::123456789012:role/my-role",
        2048,
    )
    AzureIdentityName = matching(
        AZURE_IDENTITY_NAME,
        "identityName must be 3-128 letters, digits, '-' or '_', starting with a letter or digit",
        128,
    )
    AzureResourceGroup = matching(
        AZURE_RESOURCE_GROUP,
        "resourceGroup must be 1-90 letters, digits, '.', '_', '-', '(' or ')', not ending with '.'",
        90,
    )
    GcpServiceAccountEmail = matching(
        GCP_SERVICE_ACCOUNT_EMAIL,
        "serviceAccountEmail must be an IAM service account email such as name@project-id.iam.gserviceaccount.com",
        254,
    )


def spec_change_while_deleting(kind: str, old: Any, new: Any) -> str | None:
    """Why an update is refused when it changes the spec of an object being deleted, else None.

    CEL cannot see metadata.deletionTimestamp, so only the webhook applies this. Once deletion has begun the
    operator removes the link the old spec made: a new spec would be shown as the state of a link never made.
    deletionPolicy may still change: switching to Retain is the documented way out of a delete that cannot finish
    (an ExternalId Secret gone, a cloud the operator is no longer configured for)."""
    if not (new or {}).get("metadata", {}).get("deletionTimestamp"):
        return None
    before = {k: v for k, v in ((old or {}).get("spec") or {}).items() if k != "deletionPolicy"}
    after = {k: v for k, v in (new.get("spec") or {}).items() if k != "deletionPolicy"}
    if before == after:
        return None
    return (
        f"spec cannot change while the {kind} is being deleted (metadata.deletionTimestamp is set): "
        "wait until it is gone, then create it again"
    )
