"""The AWS link: an EKS Pod Identity association, found by the namespace/ServiceAccount and owned by uid tag."""

from __future__ import annotations

from collections.abc import Mapping

from porter_identity.api.connection import AwsStatus, Provider, ServiceIdentityConnection
from porter_identity.clouds.aws import drift as sweep
from porter_identity.clouds.aws import plan as decide
from porter_identity.clouds.aws.client import AwsProvider
from porter_identity.clouds.base import Change, Result, RetainedLink
from porter_identity.errors import AccessDenied, CloudError, Conflict, NotFound
from porter_identity.model import Association, Role, role_name
from porter_identity.reconcile import outcome
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.drift import Findings, Group, Linked, Orphan
from porter_identity.reconcile.outcome import Reason
from porter_identity.reconcile.privilege import Check


def _observe(provider: AwsProvider, conn: ServiceIdentityConnection) -> Association | None:
    """Our association: straight from the recorded id when there is one, else by listing."""
    known = conn.status.aws.association_id if conn.status.aws else None
    if known:
        found = provider.describe_association(known)
        if found is not None and decide.owned_by(found, conn.metadata.uid):
            return found
    return provider.find_association(conn.metadata.namespace or "", conn.spec.service_account_name)


def _privilege(provider: AwsProvider, role: Role) -> Check:
    try:
        policies = provider.role_policies(role.name)
    except AccessDenied as err:
        return Check(f"IAM role {role.arn}", unknown=err.message)
    findings = least.aws_findings(policies.attached, policies.managed, policies.inline)
    return Check(f"IAM role {role.arn}", tuple(findings))


def apply(
    provider: AwsProvider, conn: ServiceIdentityConnection, account_id: str | None = None, block_broad: bool = False
) -> Result:
    """The association for the spec's role, made, moved in place (UpdatePodIdentityAssociation), adopted or kept."""
    assert conn.spec.aws is not None
    ns, sa, uid = conn.metadata.namespace or "", conn.spec.service_account_name, conn.metadata.uid
    elsewhere = decide.foreign_account(conn.spec.aws.role, account_id)
    if elsewhere is not None:
        return Result(
            outcome.stalled(
                Reason.ROLE_NOT_FOUND,
                f"IAM role {conn.spec.aws.role} is in account {elsewhere}, not the configured account {account_id}",
            ),
            None,
        )
    step = "looking up the IAM role"
    recorded = conn.status.aws.association_id if conn.status.aws else None
    try:
        try:
            # A first create shares the role read with the connections created with it; a connection that
            # already links (a move, a drift repair, a resume) reads the role afresh.
            role = provider.get_role(conn.spec.aws.role) if recorded else provider.shared_role(conn.spec.aws.role)
        except NotFound:
            provider.forget_role(conn.spec.aws.role)  # gone for the connections created after this one too
            return Result(
                outcome.stalled(
                    Reason.ROLE_NOT_FOUND,
                    f"IAM role {conn.spec.aws.role} does not exist in the operator's account; "
                    "create it (trusting pods.eks.amazonaws.com) or fix spec.aws.role",
                ),
                None,
            )
        if conn.spec.aws.role.startswith("arn:") and role.arn != conn.spec.aws.role:
            return Result(
                outcome.stalled(
                    Reason.ROLE_NOT_FOUND,
                    f"IAM role {conn.spec.aws.role} does not exist; the account has {role.arn} by that name",
                ),
                None,
            )
        problem = decide.trust_problem(role.trust_policy)
        if problem is not None:
            provider.forget_role(role.name)
            return Result(
                outcome.stalled(
                    Reason.TRUST_POLICY_INVALID,
                    f"IAM role {role.arn} cannot be used by EKS Pod Identity: {problem}; add a statement allowing "
                    f"{decide.POD_IDENTITY_PRINCIPAL} the actions {', '.join(decide.POD_IDENTITY_ACTIONS)}",
                ),
                None,
            )
        step = "reading the IAM role's policies"
        privilege = _privilege(provider, role)
        refusal = least.blocked(privilege, block_broad)
        if refusal is not None:
            return Result(refusal, None, privilege=privilege)
        tags = decide.ownership_tags(uid, ns, conn.metadata.name, provider.cluster_name)
        if not recorded:
            # Create first: EKS allows one association per ServiceAccount and refuses a second one
            # (ResourceInUseException), so the common case costs one call and only a refusal reads what is there.
            step = "creating the EKS Pod Identity association"
            try:
                current = provider.create_association(ns, sa, role.arn, tags)
            except Conflict:
                pass
            else:
                return _ready(
                    ns,
                    sa,
                    role,
                    current,
                    Change(outcome.Action.CREATED, f"created EKS Pod Identity association {current.association_id}"),
                    privilege,
                )
        step = "reading the EKS Pod Identity association"
        observed = _observe(provider, conn)
        plan = decide.plan_apply(uid, role.arn, observed)
        change: Change | None = None
        if plan.action is decide.Action.CONFLICT:
            return Result(outcome.stalled(Reason.CONFLICT, plan.message), None, privilege=privilege)
        if plan.action is decide.Action.CREATE:  # none recorded, or refused as a duplicate and gone since
            step = "creating the EKS Pod Identity association"
            current = provider.create_association(ns, sa, role.arn, tags)
            change = Change(outcome.Action.CREATED, f"created EKS Pod Identity association {current.association_id}")
        elif plan.action is decide.Action.ADOPT:
            assert plan.association is not None
            step = "adopting the retained EKS Pod Identity association"
            current = plan.association
            provider.tag_association(current, tags)
            provider.untag_association(current, [decide.RETAINED_TAG])
            if current.role_arn != role.arn:
                current = provider.update_association(current.association_id, role.arn)
            change = Change(
                outcome.Action.ADOPTED,
                f"adopted EKS Pod Identity association {current.association_id}, retained by connection "
                f"{plan.association.tags.get(decide.NAME_TAG, '?')}",
            )
        elif plan.action is decide.Action.UPDATE:
            assert plan.association is not None
            step = "updating the EKS Pod Identity association"
            current = provider.update_association(plan.association.association_id, role.arn)
            change = Change(
                outcome.Action.UPDATED,
                f"updated EKS Pod Identity association {current.association_id} "
                f"from {plan.association.role_arn} to {role.arn}",
            )
        else:
            assert plan.association is not None
            current = plan.association
            if recorded != current.association_id:
                change = Change(
                    outcome.Action.ADOPTED, f"adopted existing EKS Pod Identity association {current.association_id}"
                )
    except CloudError as err:
        refused = decide.eks_role_refusal(err.code, err.message)
        if refused is not None:
            provider.forget_role(conn.spec.aws.role)  # read afresh next time, by every connection naming it
        if refused is decide.RoleRefusal.NOT_VISIBLE:
            # GetRole already returns it: IAM is eventually consistent, and EKS does not see it yet.
            message = (
                f"EKS does not see IAM role {conn.spec.aws.role} yet ({err.message}); "
                "a role made a moment ago takes time"
            )
            return Result(outcome.propagating(message), conn.status.aws)
        if refused is decide.RoleRefusal.TRUST:
            # IAM's GetRole showed a trust that admits EKS Pod Identity (checked above): EKS judges an older one.
            message = (
                f"EKS refused IAM role {conn.spec.aws.role} ({err.message}) although IAM shows a trust policy that "
                f"allows {decide.POD_IDENTITY_PRINCIPAL}; a trust policy changed a moment ago takes time to reach EKS"
            )
            return Result(outcome.propagating(message), conn.status.aws)
        return Result(outcome.from_error(err, what=step), conn.status.aws)
    return _ready(ns, sa, role, current, change, privilege)


def _ready(ns: str, sa: str, role: Role, current: Association, change: Change | None, privilege: Check) -> Result:
    status = AwsStatus(
        association_id=current.association_id, association_arn=current.association_arn, role_arn=current.role_arn
    )
    return Result(
        outcome.ready(f"service account {ns}/{sa} is bound to {role.arn} by association {current.association_id}"),
        status,
        change,
        privilege,
    )


def delete(provider: AwsProvider, conn: ServiceIdentityConnection) -> Result:
    """Remove our association (found by uid tag, whatever status records); a missing one is success,
    someone else's is left alone."""
    step = "reading the EKS Pod Identity association"
    try:
        observed = _observe(provider, conn)
        action = decide.plan_delete(conn.metadata.uid, observed)
        if action is decide.DeleteAction.DELETE:
            assert observed is not None
            step = "deleting the EKS Pod Identity association"
            provider.delete_association(observed.association_id)
            change = Change(outcome.Action.DELETED, f"deleted EKS Pod Identity association {observed.association_id}")
        elif action is decide.DeleteAction.NOT_OURS:
            assert observed is not None
            change = Change(
                outcome.Action.SKIPPED, f"left association {observed.association_id}: it is not this connection's"
            )
        else:
            return Result(outcome.ready("EKS Pod Identity association already gone"), None)
    except CloudError as err:
        return Result(outcome.from_error(err, what=step), conn.status.aws)
    return Result(outcome.ready(change.message), None, change)


def retain(provider: AwsProvider, conn: ServiceIdentityConnection) -> Result:
    """Tag our association as retained: the orphan sweep skips it and the next connection adopts it."""
    step = "reading the EKS Pod Identity association"
    try:
        observed = _observe(provider, conn)
        if observed is None or not decide.owned_by(observed, conn.metadata.uid):
            change = Change(
                outcome.Action.RETAINED, "deletionPolicy is Retain: no EKS Pod Identity association of ours to keep"
            )
        else:
            step = "tagging the EKS Pod Identity association as retained"
            provider.tag_association(observed, {decide.RETAINED_TAG: "true"})
            change = Change(
                outcome.Action.RETAINED,
                f"deletionPolicy is Retain: EKS Pod Identity association {observed.association_id} kept",
            )
    except CloudError as err:
        return Result(outcome.from_error(err, what=step), conn.status.aws)
    return Result(outcome.ready(change.message), None, change)


class AwsLink:
    provider = Provider.AWS
    moves_in_place = True  # UpdatePodIdentityAssociation: one association per ServiceAccount, whatever the role

    def __init__(self, cloud: AwsProvider, account_id: str | None, role_checks_per_sweep: int = 100) -> None:
        self.cloud = cloud
        self.account_id = account_id
        self.role_checks_per_sweep = role_checks_per_sweep
        # Between sweeps: the role-check cursor, and the owners of associations no connection records.
        self.cursor = 0
        self.known: dict[str, Association] = {}

    def same_identity(self, a: str, b: str) -> bool:
        return role_name(a) == role_name(b)

    def apply(self, conn: ServiceIdentityConnection, block_broad: bool) -> Result:
        return apply(self.cloud, conn, self.account_id, block_broad)

    def remove(self, conn: ServiceIdentityConnection, identity: str) -> Result:
        # One association per ServiceAccount, whatever role it grants: the identity does not narrow the search.
        return delete(self.cloud, conn)

    def retain(self, conn: ServiceIdentityConnection) -> Result:
        return retain(self.cloud, conn)

    def survey(self, group: Group, linked: list[Linked]) -> Findings:
        listed = self.cloud.list_associations()
        self.known = sweep.prune(self.known, listed, linked)
        window, self.cursor = sweep.rotation(sweep.window_ids(linked), self.cursor, self.role_checks_per_sweep)
        described = dict(self.known)
        for association_id in sweep.to_describe(linked, listed, self.known, window):
            association = self.cloud.describe_association(association_id)
            if association is not None:
                described[association_id] = association
        recorded = {c.recorded for c in linked}
        self.known = {i: a for i, a in described.items() if i not in recorded}
        return sweep.findings(self.cloud.cluster_name, linked, listed, described)

    def retained_orphan(self, orphan: Orphan) -> bool:
        return False  # reconcile/drift.py never reports an association tagged retained

    def delete_orphan(self, orphan: Orphan) -> None:
        self.cloud.delete_association(orphan.link)

    def retained_links(self, namespace: str | None, marks: Mapping[tuple[str, str], str]) -> list[RetainedLink]:
        if namespace is None:
            found = list(self.known.values())  # described by the last sweep: no call of its own
        else:
            listed = self.cloud.list_associations(namespace)
            found = [
                a
                for s in listed
                if (a := self.known.get(s.association_id) or self.cloud.describe_association(s.association_id))
                is not None
            ]
        return [
            RetainedLink(self.provider, a.namespace, a.service_account, a.role_arn, a.association_id)
            for a in found
            if decide.retained(a)
        ]

    def remove_retained(self, retained: RetainedLink) -> str:
        self.cloud.delete_association(retained.link)
        self.known.pop(retained.link, None)
        return (
            f"deleted the retained EKS Pod Identity association {retained.link} of "
            f"{retained.namespace}/{retained.service_account} (role {retained.identity})"
        )
