"""The docs' reference tables (settings, condition reasons, Event reasons, metrics), rendered from the code."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from porter_identity import metrics
from porter_identity.config import Bucket, LeaderElection, RateLimits, Settings
from porter_identity.reconcile.outcome import OUTSIDE_THE_SPEC, STATE, UNLINKED, Action, Reason, State

# Settings the chart sets from something other than `config.<camelCase>`; None: only through `extraEnv`.
CHART: dict[str, str | None] = {
    "azure_ca_file": None,
    "azure_credential": None,
    "gcp_iam_endpoint": None,
    "azure_authority": None,
    "gcp_sts_endpoint": None,
    "gcp_iam_credentials_endpoint": None,
    "gcp_identity_provider": None,
    "metrics_port": "`metrics.port` (0 unless `metrics.enabled`)",
    "rate_limits": "`rateLimits`",
    "policy_file": "`policy` (mounted at /etc/porter/policy/policy.yaml)",
    "webhook_port": "`webhook.port` (0 unless `webhook.enabled`)",
    "webhook_cert_dir": "`webhook.*` (the certificate Secret, mounted at /etc/porter/webhook)",
    "operator_namespace": "the release namespace",
    "operator_aws_role_arn": "`serviceAccount.awsRoleArn` or `serviceAccount.podIdentityRoleArn`",
    "operator_azure_client_id": "`serviceAccount.azureClientId`",
    "operator_gcp_service_account": "`serviceAccount.gcpServiceAccount`",
    "health_port": "`health.port`",
    "leader_election": "`leaderElection.*` (lease named after the release, in its namespace)",
}
# What each leader election field means (its model holds only the rules that order them).
LEADER_ELECTION = {
    "enabled": "whether a Lease decides the one replica that reconciles",
    "lease_name": "the Lease's name",
    "lease_namespace": "the Lease's namespace; defaults to PORTER_OPERATOR_NAMESPACE",
    "lease_duration_seconds": "a standby takes over this long after it last saw the Lease change",
    "renew_deadline_seconds": "a leader that has not renewed for this long stops all cloud writes and exits",
    "retry_period_seconds": "how often the Lease is renewed or tried",
}

# What each reason means and what to do about it: prose the code cannot hold; the state comes from the code.
REASONS: dict[Reason, tuple[str, str]] = {
    Reason.BOUND: ("the cloud link exists and matches the spec", "nothing"),
    Reason.SYNCED: ("(PorterRoleSet) every role matches the declared documents", "nothing"),
    Reason.LEAST_PRIVILEGE: (
        "reason of the `LeastPrivilege` condition when True: the permission read found nothing broad",
        "nothing",
    ),
    Reason.PROGRESSING: (
        "a write waits for another write to the same Azure identity or GCP service account "
        "(`PORTER_LOCK_WAIT_SECONDS`) and gave its worker thread back",
        "nothing; retried shortly",
    ),
    Reason.THROTTLED: (
        "the cloud answered 429 / throttling; retried with jittered backoff",
        "nothing; if constant, lower the rate limits or ask for a quota raise",
    ),
    Reason.CLOUD_UNAVAILABLE: (
        "5xx, timeout or network error from the cloud; retried with jittered backoff",
        "check the cloud's status page and the operator's egress",
    ),
    Reason.SERVICE_ACCOUNT_NOT_FOUND: (
        "(Azure, GCP) the link exists but the Kubernetes ServiceAccount to annotate does not",
        "create it; the operator watches ServiceAccounts and runs the connection as soon as it appears",
    ),
    Reason.ROLE_NOT_FOUND: (
        "the IAM role in `spec.aws.role` does not exist",
        "create it (docs/aws.md) or fix the name",
    ),
    Reason.TRUST_POLICY_INVALID: (
        "the role does not trust `pods.eks.amazonaws.com` with `sts:AssumeRole` and `sts:TagSession` (read from "
        "the GetRole the operator makes anyway); the message names what is missing; no association is made",
        "fix the role's trust policy (docs/aws.md)",
    ),
    Reason.NOT_YET_PROPAGATED: (
        "(AWS, GCP) the cloud's own IAM API has the identity (or its fixed trust policy) and the service that links "
        "it does not see it yet: IAM is eventually consistent; a link recorded before stays until the new one is made",
        "nothing: looked at again every 1-2 s in the first minute, then less often; if it lasts, check the region or "
        "project (docs/troubleshooting.md)",
    ),
    Reason.IDENTITY_NOT_FOUND: (
        "the Azure managed identity or GCP service account does not exist",
        "create it, or fix the name / resource group / email",
    ),
    Reason.IDENTITY_OUTSIDE_PROJECT: (
        "the GCP service account lives in another project than `PORTER_GCP_PROJECT_ID`",
        "use a service account of the cluster's project",
    ),
    Reason.LIMIT_EXCEEDED: (
        "a cloud quota was hit (20 federated credentials per Azure identity, IAM policy sizes of a PorterRoleSet "
        "role, …); the message says which",
        "free capacity (another identity, fewer credentials, shorter statements)",
    ),
    Reason.CLUSTER_NOT_FOUND: (
        "the EKS cluster `PORTER_EKS_CLUSTER_NAME` does not exist in that account and region",
        "fix the operator's settings",
    ),
    Reason.CONFLICT: (
        "another connection owns this ServiceAccount for this cloud (the one holding the link, else the oldest that "
        "can link), or a link not made by porter-identity exists; for a PorterRoleSet, a role of another owner or "
        "one awaiting `takeOver`",
        "delete the duplicate or remove the foreign link (the next claimant runs at once when the owner goes); "
        "for a role, set `takeOver`",
    ),
    Reason.INVALID_SPEC: ("the spec failed a check the CRD could not express", "fix the field named in the message"),
    Reason.ACCESS_DENIED: (
        "the cloud refused the operator's own credentials (for a PorterRoleSet also: AssumeRole refused, wrong "
        "ExternalId or trust)",
        "grant the operator's identity the permissions in docs/aws.md, docs/azure.md or docs/gcp.md; check the "
        "ExternalId Secret",
    ),
    Reason.CLOUD_REJECTED: (
        "the cloud refused the request for a reason outside the error table (docs/connections.md#errors); the "
        "message carries the cloud's code",
        "fix what the message names",
    ),
    Reason.NOT_CONFIGURED: (
        "the operator has no settings for that cloud (or, for a PorterRoleSet, no `PORTER_AWS_ACCOUNT_ID`)",
        "set the settings named in the message (docs/configuration.md)",
    ),
    Reason.NOT_ALLOWED: (
        "no allow rule (Helm `policy`, or the namespace annotation `identity.porter.run/allowed-identities`) lets "
        "this namespace use this identity, or the identity is Porter's own (`porter-*`), the operator's, or outside "
        "the configured account / project; a PorterRoleSet whose `accountId` is not `PORTER_AWS_ACCOUNT_ID`",
        "ask a cluster admin to allow it (docs/security.md), or use an allowed identity",
    ),
    Reason.BROAD_PERMISSIONS: (
        "the identity has admin-like permissions (`*` on `*`, AdministratorAccess, Owner/Contributor on the "
        "subscription, roles/owner or roles/editor) and `PORTER_BLOCK_BROAD_PERMISSIONS=true`; without that setting "
        "only a Warning Event and `LeastPrivilege=False`",
        "scope the identity's permissions down to what the workload calls",
    ),
    Reason.SECRET_NOT_FOUND: (
        "(PorterRoleSet) the ExternalId Secret or its key is missing",
        "create the Secret named in `spec.access.externalIdSecretRef`",
    ),
    Reason.INVALID_SECRET: (
        "(PorterRoleSet) the Secret's value is not an ExternalId AWS accepts (2-1224 characters of letters, digits "
        "and `+=,.@:/-_`); nothing was sent to AWS and the value is never shown",
        "put the ExternalId of the access role's trust policy in the Secret, without spaces or line breaks",
    ),
}

# Events that say what was done; Warning Events carry the condition reasons above.
ACTIONS: dict[Action, tuple[str, str, str]] = {
    Action.CREATED: ("Normal", "both", "the link (association, federated credential, IAM member) or a role was made"),
    Action.UPDATED: ("Normal", "both", "an existing link or role was changed to match the spec"),
    Action.ADOPTED: (
        "Normal",
        "connection",
        "a link that already matched was taken over (an association found by namespace + ServiceAccount, a "
        "credential or member already present, a `Retain`ed link)",
    ),
    Action.MOVED: (
        "Normal",
        "connection",
        "the identity changed: the new link is Ready and the old one was removed (make-before-break)",
    ),
    Action.DELETED: (
        "Normal",
        "both",
        "the link was removed (delete, identity change, refusal), or a role left the spec under `Delete`",
    ),
    Action.SKIPPED: ("Normal", "connection", "on delete: an association that is not this connection's was left"),
    Action.RETAINED: ("Normal", "both", "on delete with `deletionPolicy: Retain`: the link or roles were kept"),
    Action.PAUSED: (
        "Normal",
        "connection",
        "`identity.porter.run/reconcile-policy: skip`: a reconcile, drift repair or delete left the link untouched",
    ),
    Action.DETACHED: (
        "Normal",
        "connection",
        "on delete with `identity.porter.run/reconcile-policy: detach-on-delete`: the link was kept (as Retain)",
    ),
    Action.RELEASED: (
        "Normal",
        "PorterRoleSet",
        "a role left the spec and stays in the account, without this set's owner tag (Retain, or not created here)",
    ),
    Action.DRIFT_CORRECTED: (
        "Warning",
        "both",
        "something changed or deleted outside the operator was put back (the message says what the sweep saw)",
    ),
    Action.ORPHANED_LINK: (
        "Warning",
        "ServiceAccount",
        "a link tagged or named as ours that no connection claims (reported once; `porter_identity_orphaned_links`)",
    ),
    Action.ORPHAN_DELETED: ("Normal", "ServiceAccount", "that orphan was deleted (`PORTER_DELETE_ORPHANS=true`)"),
}

MARK = "<!-- generated by `porter-identity crds` from {source}: {name} -->"
END = "<!-- end of generated {name} -->"
# docs file -> the tables it carries
FILES: dict[str, list[str]] = {
    "configuration.md": ["settings"],
    "connections.md": ["reasons", "events"],
    "metrics.md": ["metrics"],
}


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _default(info: FieldInfo) -> str:
    value: Any = info.get_default(call_default_factory=True)
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def chart_value(name: str) -> str:
    if name in CHART:
        return CHART[name] or "`extraEnv` only"
    return f"`config.{_camel(name)}`"


def settings() -> str:
    rows = []
    for name, info in Settings.model_fields.items():
        env = f"PORTER_{name.upper()}"
        if name == "leader_election":
            for field, finfo in LeaderElection.model_fields.items():
                rows.append([f"`{env}__{field.upper()}`", _default(finfo), LEADER_ELECTION[field], chart_value(name)])
            continue
        if isinstance(info.get_default(call_default_factory=True), BaseModel):
            for bucket, binfo in RateLimits.model_fields.items():
                limits: Bucket | None = binfo.get_default(call_default_factory=True)
                # Unset means no fixed bucket: the cloud's SDK paces adaptively (docs/performance.md).
                default = "unset (adaptive)" if limits is None else f"`{limits.per_second:g}` / `{limits.burst}`"
                rows.append(
                    [
                        f"`{env}__{bucket.upper()}__PER_SECOND` / `__BURST`",
                        default,
                        "client-side token bucket for {} {} calls (docs/operations.md#pacing-and-retries)".format(
                            *bucket.upper().split("_")
                        ),
                        f"`rateLimits.{bucket}.per_second` / `.burst`",
                    ]
                )
            continue
        rows.append([f"`{env}`", _default(info), info.description or "", chart_value(name)])
    return _table(["setting", "default", "meaning", "Helm value"], rows)


def reasons() -> str:
    rows = []
    for reason in Reason:
        meaning, action = REASONS[reason]
        state = STATE[reason]
        if state is State.STALLED:
            recheck = "rechecked every `PORTER_STALLED_RECHECK_SECONDS`" if reason in OUTSIDE_THE_SPEC else "on change"
            state_text = f"Stalled, {recheck}" + ("; its link is removed" if reason in UNLINKED else "")
        elif state is State.RECONCILING:
            state_text = "Reconciling, retried with backoff"
        else:
            state_text = "Ready"
        rows.append([f"`{reason.value}`", state_text, meaning, action])
    return _table(["reason", "state", "meaning", "what to do"], rows)


def events() -> str:
    rows = [[f"`{a.value}`", kind, on, what] for a, (kind, on, what) in ACTIONS.items()]
    rows.append(
        [
            "every condition reason above",
            "Warning (Normal when Ready)",
            "both",
            "the Ready condition changed: its reason and message; repeats are counted up on the same Event",
        ]
    )
    return _table(["reason", "type", "on", "posted when"], rows)


def _metric_rows() -> list[list[str]]:
    rows = []
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        family = next(iter(value.describe()))
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        labels = ", ".join(f"`{label}`" for label in value._labelnames) or "—"
        if family.type == "info":
            labels = "`version`"
        rows.append([f"`{family.name}{suffix}`", family.type, labels, family.documentation])
    rows.append(
        [
            "`process_*`",
            "gauge, counter",
            "—",
            "CPU seconds, resident and virtual memory, open and maximum file descriptors, start time "
            "(Prometheus' process collector)",
        ]
    )
    return rows


def metric_list() -> str:
    return _table(["metric", "type", "labels", "what"], _metric_rows())


RENDER = {"settings": settings, "reasons": reasons, "events": events, "metrics": metric_list}
SOURCE = {
    "settings": "config.py",
    "reasons": "reconcile/outcome.py",
    "events": "reconcile/outcome.py",
    "metrics": "metrics.py",
}


def block(name: str) -> str:
    return f"{MARK.format(source=SOURCE[name], name=name)}\n{RENDER[name]()}\n{END.format(name=name)}"


def update(text: str, name: str) -> str:
    """Replace the generated block `name` in a docs file (appended when the file has none yet)."""
    pattern = re.compile(
        re.escape(MARK.format(source=SOURCE[name], name=name)) + r".*?" + re.escape(END.format(name=name)), re.S
    )
    if pattern.search(text):
        return pattern.sub(lambda _: block(name), text)
    return text.rstrip("\n") + "\n\n" + block(name) + "\n"


def render_file(name: str, text: str) -> str:
    for table in FILES[name]:
        text = update(text, table)
    return text
