"""Turn a PorterRoleSet spec into the roles it declares: presets filled in, custom roles, one role per bucket."""

from __future__ import annotations

from typing import Any

from porter_identity.api.roleset import Bucket, PolicyStatement, RoleSetSpec, RoleSpec
from porter_identity.iam.presets import PRESETS, S3_PRESET, Trust, s3_role_name, s3_statements, statements_for
from porter_identity.iam.presets import trust_document as render_trust
from porter_identity.reconcile.roleset import DesiredRole


def _custom_statement(stmt: PolicyStatement) -> dict[str, Any]:
    out: dict[str, Any] = {"Sid": stmt.sid, "Effect": stmt.effect, "Action": stmt.actions, "Resource": stmt.resources}
    if stmt.condition:
        out["Condition"] = stmt.condition
    return out


def _service_account(of: RoleSpec | Bucket) -> tuple[str, str] | None:
    return (of.service_account.namespace, of.service_account.name) if of.service_account else None


def desired_roles(spec: RoleSetSpec, external_id: str) -> list[DesiredRole]:
    """Every role of the spec, in spec order, with the ExternalId in the trust policies that need it."""

    def trust(of: Trust) -> dict[str, Any]:
        return render_trust(of, spec.account_id, spec.management_principal_arn, external_id, spec.ack_compatible_trust)

    out = []
    for role in spec.roles:
        if role.preset is not None:
            preset = PRESETS[role.preset]
            out.append(
                DesiredRole(
                    name=preset.name,
                    trust=trust(preset.trust),
                    statements=tuple(s.to_iam() for s in statements_for(preset, spec.account_id)),
                    description=preset.purpose,
                    service_account=_service_account(role),
                    take_over=role.take_over or spec.take_over,
                )
            )
            continue
        assert role.name is not None and role.trust is not None and role.statements is not None
        custom = Trust(
            management="required" if role.trust.management == "ExternalId" else None,
            services=tuple(role.trust.services),
            pod_identity=role.trust.pod_identity,
        )
        out.append(
            DesiredRole(
                name=role.name,
                trust=trust(custom),
                statements=tuple(_custom_statement(s) for s in role.statements),
                description=f"custom role of PorterRoleSet for account {spec.account_id}",
                service_account=_service_account(role),
                take_over=role.take_over or spec.take_over,
            )
        )
    s3 = PRESETS[S3_PRESET]
    for bucket in spec.buckets:
        out.append(
            DesiredRole(
                name=s3_role_name(bucket.name),
                trust=trust(s3.trust),
                statements=tuple(s.to_iam() for s in s3_statements(bucket.name)),
                description=f"objects of S3 bucket {bucket.name}",
                service_account=_service_account(bucket),
                take_over=spec.take_over,
            )
        )
    return out
