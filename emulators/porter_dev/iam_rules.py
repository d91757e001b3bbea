"""IAM size quotas and sts:AssumeRole trust-policy evaluation over plain values, as AWS documents them.

Sources: IAM and STS quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html),
the STS AssumeRole API reference (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html),
IAM JSON policy elements Principal, Action and Condition
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html), policy evaluation
logic (an explicit Deny wins) and "How to use an external ID"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_common-scenarios_third-party.html).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRUST_POLICY_MAX = 2048  # ACLSizePerRole (default; AWS can raise it to 4,096 on request)
ROLE_INLINE_MAX = 10240  # aggregate of all inline policies of one role
MANAGED_POLICY_MAX = 6144
ATTACHED_PER_ROLE_MAX = 10  # PoliciesPerRole (default)
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]*", re.ASCII)  # STS's pattern; Java's \w is ASCII-only
ASSUME_ROLE = "sts:AssumeRole"


class IamRuleError(Exception):
    """A refusal rendered as the service's query-protocol error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def policy_size(document: str) -> int:
    """IAM does not count white space against the size quotas."""
    return sum(1 for ch in document if not ch.isspace())


def check_json(document: str) -> None:
    try:
        json.loads(document)
    except ValueError:
        raise IamRuleError(400, "MalformedPolicyDocument", "Syntax errors in policy.") from None


def check_trust_policy_size(document: str) -> None:
    if policy_size(document) > TRUST_POLICY_MAX:
        raise IamRuleError(409, "LimitExceeded", f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_MAX}")


def check_managed_policy_size(document: str) -> None:
    if policy_size(document) > MANAGED_POLICY_MAX:
        raise IamRuleError(409, "LimitExceeded", f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_MAX}")


def check_inline_policies(role_name: str, existing: Mapping[str, str], name: str, document: str) -> None:
    """A put replaces the policy of the same name, so only the new document counts for that name."""
    total = policy_size(document) + sum(policy_size(doc) for other, doc in existing.items() if other != name)
    if total > ROLE_INLINE_MAX:
        raise IamRuleError(
            409, "LimitExceeded", f"Maximum policy size of {ROLE_INLINE_MAX} bytes exceeded for role {role_name}"
        )


def check_attach(attached: Iterable[str], policy_arn: str) -> None:
    """Re-attaching an attached policy is a no-op in IAM, so it never hits the quota."""
    arns = set(attached)
    if policy_arn not in arns and len(arns) >= ATTACHED_PER_ROLE_MAX:
        raise IamRuleError(409, "LimitExceeded", f"Cannot exceed quota for PoliciesPerRole: {ATTACHED_PER_ROLE_MAX}")


def _refused(external_id: str) -> str:
    return f"1 validation error detected: Value '{external_id}' at 'externalId' failed to satisfy constraint"


def refuse_external_id(external_id: str) -> IamRuleError:
    """STS's answer to a value it refuses, whatever the reason (the `invalid` fault: STS tightening its check)."""
    return IamRuleError(
        400,
        "ValidationError",
        rf"{_refused(external_id)}: Member must satisfy regular expression pattern: [\w+=,.@:\/-]*",
    )


def check_external_id(external_id: str | None) -> None:
    """As STS answers (aws/aws-cli#4745, aws-toolkit-azure-devops#42): the value is echoed, never copy it on."""
    if external_id is None:
        return
    prefix = f"{_refused(external_id)}: Member must"
    if not 2 <= len(external_id) <= 1224:
        bound = "greater than or equal to 2" if len(external_id) < 2 else "less than or equal to 1224"
        raise IamRuleError(400, "ValidationError", f"{prefix} have length {bound}")
    if not EXTERNAL_ID.fullmatch(external_id):
        raise refuse_external_id(external_id)


@dataclass(frozen=True)
class Caller:
    """Who signed the request: `role_arn` is set for an assumed-role session (whose `arn` is the session ARN)."""

    arn: str
    account: str
    role_arn: str | None = None

    def principals(self) -> set[str]:
        """The values of a Principal {"AWS": ...} entry that name this caller."""
        partition = self.arn.split(":")[1]
        names = {self.arn, self.account, f"arn:{partition}:iam::{self.account}:root", "*"}
        return names | ({self.role_arn} if self.role_arn else set())


def trust_allows(policy: Mapping[str, Any], caller: Caller, external_id: str | None) -> bool:
    """True when some Allow statement matches and no Deny statement does."""
    context = {
        "sts:externalid": external_id,
        "aws:sourceaccount": caller.account,
        "aws:principalaccount": caller.account,
    }
    matching = [s for s in _statements(policy) if _matches(s, caller, context)]
    return any(s.get("Effect") == "Allow" for s in matching) and not any(s.get("Effect") == "Deny" for s in matching)


def service_allows(policy: Mapping[str, Any], service: str, action: str, account: str) -> bool:
    """True when the trust policy lets the AWS service principal `service` (e.g. pods.eks.amazonaws.com) do `action`.

    aws:SourceAccount is the account of the resource the service acts for (the association's cluster).
    """
    context = {"aws:sourceaccount": account, "aws:principalaccount": None, "sts:externalid": None}
    matching = [
        s
        for s in _statements(policy)
        if any(_glob(str(a), action, case_sensitive=False) for a in _as_list(s.get("Action")))
        and isinstance(s.get("Principal"), Mapping)
        and service in {str(p) for p in _as_list(s["Principal"].get("Service"))}
        and _conditions_met(s.get("Condition", {}), context)
    ]
    return any(s.get("Effect") == "Allow" for s in matching) and not any(s.get("Effect") == "Deny" for s in matching)


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = policy.get("Statement", [])
    return [s for s in _as_list(found) if isinstance(s, Mapping)]


def _matches(statement: Mapping[str, Any], caller: Caller, context: Mapping[str, str | None]) -> bool:
    actions = _as_list(statement.get("Action"))
    return (
        any(_glob(str(a), ASSUME_ROLE, case_sensitive=False) for a in actions)
        and _principal_matches(statement.get("Principal"), caller)
        and _conditions_met(statement.get("Condition", {}), context)
    )


def _principal_matches(principal: Any, caller: Caller) -> bool:
    """Only the "AWS" kind names IAM identities; Service, Federated and CanonicalUser never match them."""
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    return bool(caller.principals() & {str(p) for p in _as_list(principal.get("AWS"))})


def _conditions_met(conditions: Any, context: Mapping[str, str | None]) -> bool:
    """StringEquals and StringLike on known keys are evaluated; anything else is treated as met.

    The emulator has no request context for other keys or operators, so treating them as met lets trust
    policies written for real AWS keep working here (and keeps a Deny that uses them in force).
    """
    if not isinstance(conditions, Mapping):
        return False
    for operator, clauses in conditions.items():
        if operator not in ("StringEquals", "StringLike") or not isinstance(clauses, Mapping):
            continue
        for key, expected in clauses.items():
            if str(key).lower() not in context:
                continue
            actual = context[str(key).lower()]
            if actual is None or not any(_string_matches(operator, str(e), actual) for e in _as_list(expected)):
                return False
    return True


def _string_matches(operator: str, expected: str, actual: str) -> bool:
    if operator == "StringLike":
        return _glob(expected, actual, case_sensitive=True)
    return expected == actual


def _glob(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    """IAM wildcards: * is any run of characters, ? is one character; nothing else is special."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
