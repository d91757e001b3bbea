"""The PorterRoleSet service: read the ExternalId and the account, let reconcile/ decide, carry the steps out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import boto3

from porter_identity.api.common import DeletionPolicy
from porter_identity.api.roleset import PorterRoleSet, RoleStatus
from porter_identity.clouds.aws import plan as associations
from porter_identity.clouds.aws.client import AwsProvider
from porter_identity.clouds.base import Change
from porter_identity.errors import CloudError, Conflict
from porter_identity.iam.desired import desired_roles
from porter_identity.kube.secrets import SecretForbidden
from porter_identity.model import ObservedRole
from porter_identity.providers.iam import AssumedRoles, IamRoles
from porter_identity.reconcile import conditions, outcome
from porter_identity.reconcile.drift import DRIFT_CORRECTED
from porter_identity.reconcile.outcome import Action, Outcome, Reason, State
from porter_identity.reconcile.roleset import (
    MANAGED_TAG,
    OWNER_TAG,
    DesiredRole,
    Kind,
    Layout,
    RolePlan,
    Step,
    TooLarge,
    account_refusal,
    created_by,
    digest,
    layout,
    plan_role,
)
from porter_identity.redact import external_id_problem, scrub

ROLESET_UID_TAG = "porter.run/roleset-uid"


class AssociationTaken(Conflict):
    """Another owner's association holds the ServiceAccount: reported, never taken over."""


_T = TypeVar("_T")
ReadSecret = Callable[[str, str, str], "str | None"]


class SyncFailed(Exception):
    """An unexpected failure, its text scrubbed of the Secret's value before kopf logs it."""


@dataclass(frozen=True)
class RolePreview:
    """What reconciling would do to one role (for `diff` and for the apply that follows)."""

    role: DesiredRole
    placed: Layout
    observed: ObservedRole | None
    plan: RolePlan
    association: associations.Plan | None = None


@dataclass
class SyncResult:
    outcome: Outcome
    roles: list[RoleStatus] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    warnings: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Chain:
    """The open session to the account: IAM plus EKS for the in-cluster roles."""

    iam: IamRoles
    eks: AwsProvider


def scrubbed(result: SyncResult, secrets: list[str]) -> SyncResult:
    """Every text of the result with the Secret's value removed: AWS echoes some values in its errors."""
    if not secrets:
        return result
    o = result.outcome
    result.outcome = Outcome(o.state, o.reason, scrub(o.message, secrets))
    for role in result.roles:
        if role.ready is not None:
            role.ready.message = scrub(role.ready.message, secrets)
    result.changes = [Change(c.reason, scrub(c.message, secrets)) for c in result.changes]
    result.warnings = [Change(w.reason, scrub(w.message, secrets)) for w in result.warnings]
    return result


class RoleSetService:
    """Every text it returns or raises is scrubbed of the ExternalId (redact.scrub)."""

    def __init__(self, assumed: AssumedRoles, read_secret: ReadSecret, account_id: str | None) -> None:
        self.assumed = assumed
        self.read_secret = read_secret
        self.account_id = account_id  # the configured account: the only one served, whatever admission let in
        # boto3 clients are costly to build (service models): one set per assumed session, not per sync.
        self._chains: dict[tuple[str, str, str], tuple[boto3.session.Session, Chain]] = {}

    def _chain(self, rs: PorterRoleSet, session: boto3.session.Session) -> Chain:
        key = (rs.spec.access.role_arn, rs.spec.account_id, rs.spec.cluster_name)
        cached = self._chains.get(key)
        if cached is not None and cached[0] is session:
            return cached[1]
        chain = Chain(
            iam=IamRoles(session, self.assumed.config(rs.spec.region), rs.spec.account_id),
            eks=AwsProvider(rs.spec.region, rs.spec.cluster_name, session=session),
        )
        self._chains[key] = (session, chain)
        return chain

    def _open(
        self, rs: PorterRoleSet, secrets: list[str]
    ) -> tuple[list[DesiredRole], dict[str, Layout], Chain] | Outcome:
        """Everything checked before any write: account, Secret, sizes, then the AssumeRole with the ExternalId."""
        spec, ref = rs.spec, rs.spec.access.external_id_secret_ref
        refused = account_refusal(self.account_id, spec.account_id)
        if refused is not None:
            return Outcome(refused.state, refused.reason, f"{refused.message}; nothing was sent to AWS")
        try:
            external_id = self.read_secret(ref.namespace, ref.name, ref.key)
        except SecretForbidden as err:
            return outcome.stalled(Reason.ACCESS_DENIED, f"cannot read Secret {ref.namespace}/{ref.name}: {err}")
        if not external_id:
            return outcome.stalled(
                Reason.SECRET_NOT_FOUND,
                f"Secret {ref.namespace}/{ref.name} does not exist or has no key {ref.key!r}; it must hold the "
                "ExternalId the access role's trust policy requires",
            )
        problem = external_id_problem(external_id)
        if problem is not None:
            # Never sent anywhere, so no message can echo it (and a 1-character value could not be scrubbed).
            return outcome.stalled(
                Reason.INVALID_SECRET,
                f"key {ref.key!r} of Secret {ref.namespace}/{ref.name} is not a valid ExternalId: {problem}; "
                "nothing was sent to AWS",
            )
        secrets.append(external_id)
        try:
            roles = desired_roles(spec, external_id)
            layouts = {r.name: layout(r) for r in roles}
        except TooLarge as err:
            return outcome.stalled(Reason.LIMIT_EXCEEDED, f"{err}; nothing was sent to AWS")
        except ValueError as err:
            return outcome.stalled(Reason.INVALID_SPEC, str(err))
        try:
            session = self.assumed.session(spec.access.role_arn, external_id, spec.region)
        except CloudError as err:
            return outcome.from_error(
                err,
                what=f"assuming {spec.access.role_arn} with the ExternalId of Secret {ref.namespace}/{ref.name}",
            )
        return roles, layouts, self._chain(rs, session)

    def _association_tags(self, rs: PorterRoleSet) -> dict[str, str]:
        return {MANAGED_TAG: "true", ROLESET_UID_TAG: rs.metadata.uid, OWNER_TAG: rs.metadata.name}

    def preview(self, rs: PorterRoleSet) -> tuple[list[RolePreview], Chain] | Outcome:
        """Read everything and decide; writes nothing."""
        secrets: list[str] = []
        previewed = self._guarded(secrets, lambda: self._preview(rs, secrets))
        if isinstance(previewed, Outcome):
            return scrubbed(SyncResult(previewed), secrets).outcome
        return previewed

    @staticmethod
    def _guarded(secrets: list[str], run: Callable[[], _T]) -> _T:
        try:
            return run()
        except Exception as err:
            # kopf logs what a handler raises: never with a value read from the Secret.
            raise SyncFailed(scrub(f"{type(err).__name__}: {err}", secrets)) from None

    def _preview(self, rs: PorterRoleSet, secrets: list[str]) -> tuple[list[RolePreview], Chain] | Outcome:
        opened = self._open(rs, secrets)
        if isinstance(opened, Outcome):
            return opened
        roles, layouts, chain = opened
        previews = []
        try:
            for role in roles:
                observed = chain.iam.read(role.name)
                plan = plan_role(role, layouts[role.name], observed, rs.metadata.name, rs.metadata.uid)
                assoc = None
                if role.service_account is not None and plan.conflict is None:
                    arn = observed.arn if observed else f"arn:aws:iam::{rs.spec.account_id}:role/{role.name}"
                    found = chain.eks.find_association(*role.service_account)
                    assoc = associations.plan_apply(rs.metadata.uid, arn, found, ROLESET_UID_TAG)
                previews.append(RolePreview(role, layouts[role.name], observed, plan, assoc))
        except CloudError as err:
            return outcome.from_error(err, what="reading the account's roles")
        return previews, chain

    def sync(self, rs: PorterRoleSet) -> SyncResult:
        """Make the account hold exactly the declared roles; one role's failure does not stop the others."""
        secrets: list[str] = []
        return scrubbed(self._guarded(secrets, lambda: self._sync(rs, secrets)), secrets)

    def _sync(self, rs: PorterRoleSet, secrets: list[str]) -> SyncResult:
        previewed = self._preview(rs, secrets)
        if isinstance(previewed, Outcome):
            return SyncResult(previewed, rs.status.roles)
        previews, chain = previewed
        before = {r.name: r for r in rs.status.roles}
        result = SyncResult(outcome.ready(""))
        worst: list[tuple[str, Outcome]] = []
        for p in previews:
            status, role_outcome = self._apply_role(rs, p, chain, before.get(p.role.name), result)
            result.roles.append(status)
            if role_outcome.state is not State.READY:
                worst.append((p.role.name, role_outcome))
        declared = {p.role.name for p in previews}
        for left in [r for r in rs.status.roles if r.name not in declared]:
            try:
                self._remove(rs, chain, left, result)
            except CloudError as err:
                left_outcome = outcome.from_error(err, what=f"removing role {left.name}, which left the spec")
                result.roles.append(left)  # kept in status, so the next sync tries again
                worst.append((left.name, left_outcome))
        ready = len(previews) - sum(1 for name, _ in worst if name in declared)
        summary = f"{ready}/{len(previews)}"
        if not worst:
            result.outcome = outcome.ready(
                f"{summary} roles of account {rs.spec.account_id} are as declared", Reason.SYNCED
            )
        else:
            pending = [w for w in worst if w[1].state is State.RECONCILING]
            name, first = (pending or worst)[0]
            result.outcome = Outcome(first.state, first.reason, f"{summary} roles ready; role {name}: {first.message}")
        return result

    def _remove(self, rs: PorterRoleSet, chain: Chain, left: RoleStatus, result: SyncResult) -> None:
        """A role that left the spec goes as the whole set would: deleted under Delete (if we created it), else
        released. Its Pod Identity association is deleted either way: the spec no longer grants the pod the role."""
        if left.pod_identity_association_id:
            self._drop_association(rs, chain, left.pod_identity_association_id, left.name, result)
        observed = chain.iam.read(left.name)
        if observed is None or observed.tags.get(OWNER_TAG) != rs.metadata.name:
            return  # gone, released, or another set's: not ours to touch
        if rs.spec.deletion_policy is DeletionPolicy.DELETE and created_by(observed, rs.metadata.uid):
            chain.iam.delete_role(observed)
            result.changes.append(
                Change(Action.DELETED, f"deleted role {left.name}: it left the spec (deletionPolicy Delete)")
            )
            return
        chain.iam.untag(left.name, [OWNER_TAG])
        why = (
            "deletionPolicy Retain"
            if rs.spec.deletion_policy is DeletionPolicy.RETAIN
            else "this set did not create it"
        )
        result.changes.append(
            Change(Action.RELEASED, f"released role {left.name}: it left the spec and stays in the account ({why})")
        )

    def _drop_association(
        self, rs: PorterRoleSet, chain: Chain, association_id: str, role: str, result: SyncResult
    ) -> None:
        found = chain.eks.describe_association(association_id)
        if associations.plan_delete(rs.metadata.uid, found, ROLESET_UID_TAG) is associations.DeleteAction.DELETE:
            chain.eks.delete_association(association_id)
            result.changes.append(
                Change(Action.DELETED, f"deleted EKS Pod Identity association {association_id} of role {role}")
            )

    def _apply_role(
        self, rs: PorterRoleSet, p: RolePreview, chain: Chain, before: RoleStatus | None, result: SyncResult
    ) -> tuple[RoleStatus, Outcome]:
        name = p.role.name
        want = digest(p.role, p.placed)
        if p.plan.conflict is not None:
            role_outcome = outcome.stalled(Reason.CONFLICT, p.plan.conflict)
            return self._role_status(rs, name, None, want, p, None, role_outcome, before), role_outcome
        arn = p.observed.arn if p.observed else None
        step = "reading the role"
        try:
            for s in p.plan.steps:
                step = s.describe(name)
                arn = self._do(chain, rs, name, p.role, s) or arn
            assoc_id = None
            if p.association is not None:
                step = f"EKS Pod Identity association for {p.role.service_account}"
                assoc_id = self._associate(rs, chain, p, arn or "", result)
            stale = before.pod_identity_association_id if before else None
            if stale and stale != assoc_id:
                step = f"deleting EKS Pod Identity association {stale}, which the spec no longer asks for"
                self._drop_association(rs, chain, stale, name, result)
        except CloudError as err:
            role_outcome = outcome.from_error(err, what=step)
            return self._role_status(rs, name, arn, None, p, None, role_outcome, before), role_outcome
        if p.plan.steps:
            done = ", ".join(s.describe(name) for s in p.plan.steps)
            if p.observed is None:
                result.changes.append(Change(Action.CREATED, f"created role {name}: {done}"))
            elif before is not None and before.policy_digest == want:
                result.warnings.append(Change(DRIFT_CORRECTED, f"role {name} was changed outside; restored: {done}"))
            else:
                result.changes.append(Change(Action.UPDATED, f"updated role {name}: {done}"))
        role_outcome = outcome.ready(f"role {name} is as declared", Reason.SYNCED)
        return self._role_status(rs, name, arn, want, p, assoc_id, role_outcome, before), role_outcome

    def _do(self, chain: Chain, rs: PorterRoleSet, name: str, role: DesiredRole, s: Step) -> str | None:
        iam = chain.iam
        if s.kind is Kind.CREATE_ROLE:
            assert s.document is not None and s.tags is not None
            return iam.create_role(name, s.document, s.tags, role.description)
        if s.kind is Kind.UPDATE_TRUST:
            assert s.document is not None
            iam.update_trust(name, s.document)
        elif s.kind is Kind.TAG_ROLE:
            assert s.tags is not None
            iam.tag(name, s.tags)
        elif s.kind is Kind.PUT_INLINE:
            assert s.document is not None
            iam.put_inline(name, s.target, s.document)
        elif s.kind is Kind.DELETE_INLINE:
            iam.delete_inline(name, s.target)
        elif s.kind is Kind.PUT_MANAGED:
            assert s.document is not None
            iam.put_managed(name, s.target, s.document, {MANAGED_TAG: "true", OWNER_TAG: rs.metadata.name})
        elif s.kind is Kind.DETACH_POLICY:
            iam.detach(name, s.target)
        return None

    def _associate(self, rs: PorterRoleSet, chain: Chain, p: RolePreview, arn: str, result: SyncResult) -> str | None:
        plan = p.association
        assert plan is not None and p.role.service_account is not None
        if plan.action is associations.Action.CONFLICT:
            raise AssociationTaken(plan.message)
        if plan.action is associations.Action.CREATE:
            made = chain.eks.create_association(*p.role.service_account, arn, self._association_tags(rs))
            result.changes.append(Change(Action.CREATED, f"created EKS Pod Identity association {made.association_id}"))
            return made.association_id
        assert plan.association is not None
        if plan.action is associations.Action.UPDATE:
            chain.eks.update_association(plan.association.association_id, arn)
        return plan.association.association_id

    def _role_status(
        self,
        rs: PorterRoleSet,
        name: str,
        arn: str | None,
        want: str | None,
        p: RolePreview,
        assoc_id: str | None,
        role_outcome: Outcome,
        before: RoleStatus | None,
    ) -> RoleStatus:
        previous = [before.ready] if before and before.ready else []
        built = conditions.build(role_outcome, rs.metadata.generation, previous, conditions.now_rfc3339())
        return RoleStatus(
            name=name,
            role_arn=arn,
            policy_digest=want if want else (before.policy_digest if before else None),
            policies=p.placed.names,
            pod_identity_association_id=assoc_id,
            ready=next(c for c in built if c.type == "Ready"),
        )

    def delete(self, rs: PorterRoleSet) -> SyncResult:
        """Delete removes the roles (and associations) this PorterRoleSet created; every other role is released."""
        secrets: list[str] = []
        return scrubbed(self._guarded(secrets, lambda: self._delete(rs, secrets)), secrets)

    def _delete(self, rs: PorterRoleSet, secrets: list[str]) -> SyncResult:
        retain = rs.spec.deletion_policy is DeletionPolicy.RETAIN
        previewed = self._preview(rs, secrets)
        if isinstance(previewed, Outcome):
            if retain:  # nothing to remove: an unreachable account must not hold the finalizer
                return SyncResult(outcome.ready("deletionPolicy is Retain: roles left in place", Reason.SYNCED))
            return SyncResult(blocked_delete(rs.metadata.name, previewed))
        previews, chain = previewed
        result = SyncResult(outcome.ready("", Reason.SYNCED))
        kept = []
        try:
            for p in previews:
                if p.observed is None or p.plan.conflict is not None:
                    continue
                if retain or not created_by(p.observed, rs.metadata.uid):
                    kept.append(p.role.name)
                    # Released, so another PorterRoleSet may adopt it later.
                    chain.iam.untag(p.role.name, [OWNER_TAG])
                    continue
                ours = (associations.Action.KEEP, associations.Action.UPDATE)
                if p.association is not None and p.association.action in ours and p.association.association:
                    chain.eks.delete_association(p.association.association.association_id)
                chain.iam.delete_role(p.observed)
                result.changes.append(Change(Action.DELETED, f"deleted role {p.role.name}"))
        except CloudError as err:
            if retain:
                return SyncResult(outcome.ready(f"roles left in place; releasing them failed: {err}", Reason.SYNCED))
            return SyncResult(blocked_delete(rs.metadata.name, outcome.from_error(err, what="deleting roles")))
        left = f"; left in place: {', '.join(kept)}" if kept else ""
        result.outcome = outcome.ready(f"deleted {len(result.changes)} roles{left}", Reason.SYNCED)
        return result


def blocked_delete(name: str, cause: Outcome) -> Outcome:
    """A Delete that cannot reach the account says what is missing and the two ways to finish."""
    patch = '{"spec":{"deletionPolicy":"Retain"}}'
    return Outcome(
        cause.state,
        cause.reason,
        f"deletionPolicy is Delete but the roles cannot be deleted: {cause.message}. To finish, fix that (for a "
        f"missing Secret: restore it), or leave every role in place with kubectl patch porterroleset {name} "
        f"--type merge -p '{patch}'",
    )
