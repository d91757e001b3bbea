"""Decide whether a namespace may link a cloud identity: reserved names, foreign accounts, then allow rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from porter_identity.api.connection import ConnectionSpec, Provider
from porter_identity.api.policy import DEFAULT_KEEP, AwsAllow, AzureAllow, GcpAllow, Keep, Policy, Rule
from porter_identity.clouds.aws.plan import foreign_account
from porter_identity.model import project_of, role_name

ANNOTATION = "identity.porter.run/allowed-identities"
RESERVED_PREFIX = "porter-"
_ENTRY = re.compile(r"^(aws|azure|gcp|keep):(\S+)$")


@dataclass(frozen=True)
class Target:
    """The identity a spec names, in the form allow rules match: role name, <rg>/<identity>, or email."""

    provider: Provider
    key: str
    name: str  # the identity's own name, checked against the reserved prefix

    @property
    def shown(self) -> str:
        noun = {Provider.AWS: "IAM role", Provider.AZURE: "managed identity", Provider.GCP: "service account"}
        return f"{self.provider.value} {noun[self.provider]} {self.key}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that allowed or the check that refused
    message: str
    keep: frozenset[Keep] = frozenset(DEFAULT_KEEP)  # what the allowing rule lets the connection keep

    def refuses_keeping(self, wanted: Keep) -> str | None:
        """The refusal of `wanted` by the rule that allowed the link, None when it may keep it that way."""
        if not self.allowed or wanted in self.keep:
            return None
        granted = ", ".join(sorted(self.keep)) or "nothing"
        where = self.rule if self.rule.startswith("namespace annotation") else f"rule {self.rule}"
        return f"not allowed by policy: {wanted} is not granted by {where} (it grants {granted}); ask a cluster admin"


def target_of(spec: ConnectionSpec) -> Target:
    if spec.aws is not None:
        name = role_name(spec.aws.role)
        return Target(Provider.AWS, name, name)
    if spec.azure is not None:
        return Target(
            Provider.AZURE, f"{spec.azure.resource_group}/{spec.azure.identity_name}", spec.azure.identity_name
        )
    assert spec.gcp is not None
    email = spec.gcp.service_account_email
    return Target(Provider.GCP, email, email.split("@", 1)[0])


def parse_annotation(value: str) -> tuple[Rule, list[str]]:
    """`aws:<glob>, azure:<rg>/<glob>, gcp:<glob>` and `keep:<Retain|DetachOnDelete|Skip>` separated by commas or
    spaces; returns the rule and bad entries. Without a `keep:` entry the rule grants Retain only."""
    aws: list[str] = []
    azure: list[str] = []
    gcp: list[str] = []
    keep: list[str] = []
    bad: list[str] = []
    lists = {"aws": aws, "azure": azure, "gcp": gcp, "keep": keep}
    for entry in re.split(r"[\s,]+", value.strip()):
        if not entry:
            continue
        found = _ENTRY.match(entry)
        if found is None or (found.group(1) == "keep" and found.group(2) not in set(Keep)):
            bad.append(entry)
            continue
        lists[found.group(1)].append(found.group(2))
    rule = Rule(
        namespaces=["*"],
        aws=AwsAllow(roles=aws),
        azure=AzureAllow(identities=azure),
        gcp=GcpAllow(service_accounts=gcp),
        keep=[Keep(k) for k in keep] if keep else list(DEFAULT_KEEP),
    )
    return rule, bad


def _patterns(rule: Rule, provider: Provider) -> list[str]:
    if provider is Provider.AWS:
        return rule.aws.roles
    if provider is Provider.AZURE:
        return rule.azure.identities
    return rule.gcp.service_accounts


def _allows(rule: Rule, target: Target) -> bool:
    return any(fnmatchcase(target.key, pattern) for pattern in _patterns(rule, target.provider))


def _refused(rule: str, message: str) -> Decision:
    return Decision(False, rule, f"not allowed by policy: {message}")


def decide(
    spec: ConnectionSpec,
    namespace: str,
    policy: Policy | None,
    annotation: str | None,
    account_id: str | None = None,
    gcp_project: str | None = None,
) -> Decision:
    """Refusals that no rule can lift come first; then the first rule (file order, then annotation) that allows."""
    target = target_of(spec)
    if target.name.lower().startswith(RESERVED_PREFIX):
        return _refused(
            "reserved",
            f"{target.shown} is one of Porter's own identities ({RESERVED_PREFIX}*), which connections may never use",
        )
    if spec.aws is not None:
        elsewhere = foreign_account(spec.aws.role, account_id)
        if elsewhere is not None:
            return _refused("account", f"{spec.aws.role} is in account {elsewhere}, not the configured {account_id}")
    if spec.gcp is not None and gcp_project is not None:
        owner = project_of(spec.gcp.service_account_email)
        if owner != gcp_project:
            return _refused("project", f"{target.shown} is in project {owner}, not the configured {gcp_project}")
    covering: list[str] = []
    for name, rule in policy.named() if policy is not None else []:
        if any(fnmatchcase(namespace, pattern) for pattern in rule.namespaces):
            if _allows(rule, target):
                allowed = f"{target.shown} allowed for namespace {namespace} by rule {name}"
                return Decision(True, name, allowed, frozenset(rule.keep))
            covering.append(name)
    bad: list[str] = []
    if annotation is not None:
        rule, bad = parse_annotation(annotation)
        where = f"namespace annotation {ANNOTATION}"
        if _allows(rule, target):
            allowed = f"{target.shown} allowed for namespace {namespace} by {where}"
            return Decision(True, where, allowed, frozenset(rule.keep))
        covering.append(where)
    if covering:
        why = f"{', '.join(covering)} cover namespace {namespace} but do not allow {target.shown}"
    elif policy is None:
        why = f"no policy file is configured and namespace {namespace} has no {ANNOTATION} annotation"
    else:
        why = f"no rule covers namespace {namespace} (and it has no {ANNOTATION} annotation)"
    if bad:
        why += f"; ignored malformed annotation entries: {', '.join(bad)} (expected provider:pattern or keep:setting)"
    return _refused("no-rule", why)
