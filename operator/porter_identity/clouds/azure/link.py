"""The Azure link: a federated identity credential on the identity, named per cluster, and the client id annotation."""

from __future__ import annotations

from collections.abc import Mapping

from porter_identity.api.connection import AzureStatus, Provider, ServiceIdentityConnection
from porter_identity.clouds.azure import drift as sweep
from porter_identity.clouds.azure import plan as decide
from porter_identity.clouds.azure.client import AzureProvider
from porter_identity.clouds.base import (
    Change,
    Result,
    RetainedLink,
    kept_for_another,
    mark_retained,
    retained_annotation,
)
from porter_identity.errors import AccessDenied, CloudError, Conflict, LimitExceeded, NotFound
from porter_identity.kube.serviceaccounts import ServiceAccountMissing, ServiceAccounts
from porter_identity.model import Credential, Identity
from porter_identity.reconcile import guard, outcome
from porter_identity.reconcile import privilege as least
from porter_identity.reconcile.drift import Findings, Group, Linked, Orphan
from porter_identity.reconcile.outcome import Outcome, Reason, State
from porter_identity.reconcile.privilege import Check


def _annotations(status: AzureStatus) -> dict[str, str]:
    return {
        decide.CLIENT_ID_ANNOTATION: status.client_id or "",
        decide.TENANT_ID_ANNOTATION: status.tenant_id or "",
    }


def _privilege(provider: AzureProvider, where: str, identity: Identity) -> Check:
    try:
        assignments = provider.role_assignments(identity.principal_id)
    except AccessDenied as err:
        return Check(where, unknown=err.message)
    return Check(where, tuple(least.azure_findings(assignments, provider.subscription_id)))


def split(identity: str) -> tuple[str, str]:
    """`<resource group>/<identity name>`, the spec form status records, into its two parts."""
    resource_group, _, name = identity.partition("/")
    return resource_group, name


def _where(resource_group: str, name: str) -> str:
    return f"managed identity {name} (resource group {resource_group})"


class AzureLink:
    provider = Provider.AZURE
    moves_in_place = False  # credentials live on the identity they federate

    def __init__(
        self, cloud: AzureProvider, accounts: ServiceAccounts, issuer: str, own: guard.OwnIdentities | None = None
    ) -> None:
        self.cloud = cloud
        self.accounts = accounts
        self.issuer = issuer
        self.own = own or guard.OwnIdentities()

    def _recorded_name(self, conn: ServiceIdentityConnection) -> str | None:
        """The credential name status records for the spec's identity (a legacy name keeps being used)."""
        status = conn.status.azure
        if status is None or status.credential_name is None or conn.status.identity is None:
            return None
        return status.credential_name if _key_of(conn.status.identity) == _key_of(conn.spec.identity) else None

    def _legacy(self, resource_group: str, name: str, ns: str, sa: str) -> Credential | None:
        """The credential an earlier release made for this ServiceAccount under the name without the cluster."""
        legacy = decide.legacy_credential_name(ns, sa)
        for found in self.cloud.list_credentials(resource_group, name):
            if found.name.lower() == legacy.lower() and found.issuer == self.issuer:
                return found
        return None

    def _write(self, conn: ServiceIdentityConnection, wanted: Credential, where: str) -> tuple[Credential, Change]:
        """PUT the credential; what ARM answers (201 or 200) tells a create from taking over one by our name."""
        spec = conn.spec.azure
        assert spec is not None
        try:
            created = self.cloud.put_credential(spec.resource_group, spec.identity_name, wanted)
        except Conflict:
            ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
            legacy = self._legacy(spec.resource_group, spec.identity_name, ns, sa)
            if legacy is None:
                raise
            # Upgrade without a gap: Azure allows one credential per issuer and subject, so the one an earlier
            # release named is kept under its name instead of being replaced.
            kept = decide.desired(self.issuer, ns, sa, legacy.name)
            return kept, Change(
                outcome.Action.ADOPTED, f"adopted federated identity credential {legacy.name} on {where}"
            )
        if created:
            verb = outcome.Action.CREATED
        elif conn.status.azure is None:
            verb = outcome.Action.ADOPTED  # one by this cluster's name was there: a lost status, or an earlier run
        else:
            verb = outcome.Action.UPDATED
        return wanted, Change(verb, f"{verb.lower()} federated identity credential {wanted.name} on {where}")

    def same_identity(self, a: str, b: str) -> bool:
        return _key_of(a) == _key_of(b)

    def apply(self, conn: ServiceIdentityConnection, block_broad: bool) -> Result:
        spec = conn.spec.azure
        assert spec is not None
        ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
        where = _where(spec.resource_group, spec.identity_name)
        recorded = self._recorded_name(conn)
        wanted = decide.desired(self.issuer, ns, sa, recorded)
        step = f"reading {where}"
        change: Change | None = None
        privilege: Check | None = None
        try:
            try:
                # As for AWS roles: a first create shares the identity read with the connections created with it.
                read = self.cloud.get_identity if recorded else self.cloud.shared_identity
                identity = read(spec.resource_group, spec.identity_name)
            except NotFound:
                return Result(
                    outcome.stalled(
                        Reason.IDENTITY_NOT_FOUND,
                        f"{where} does not exist in the operator's subscription; create it or fix spec.azure",
                    ),
                    None,
                )
            # Azure names an identity by resource group and name, the operator knows its own by client id.
            own = guard.own_identity(conn.spec, self.own, identity.client_id)
            if own is not None:
                return Result(outcome.stalled(Reason.NOT_ALLOWED, own.message), None)
            step = f"reading the role assignments of {where}"
            privilege = _privilege(self.cloud, where, identity)
            refusal = least.blocked(privilege, block_broad)
            if refusal is not None:
                return Result(refusal, None, privilege=privilege)
            if recorded is None:
                action = decide.Action.CREATE  # the name is this cluster's for this ServiceAccount: no read first
            else:
                step = f"reading federated identity credential {wanted.name} on {where}"
                observed = self.cloud.get_credential(spec.resource_group, spec.identity_name, wanted.name)
                action = decide.plan_apply(wanted, observed)
            if action is not decide.Action.KEEP:
                step = f"writing federated identity credential {wanted.name} on {where}"
                wanted, change = self._write(conn, wanted, where)
        except LimitExceeded as err:
            return Result(
                outcome.stalled(
                    Reason.LIMIT_EXCEEDED,
                    f"{where} already has the 20 federated identity credentials Azure allows ({err.message}); "
                    "delete unused credentials on it or give this workload its own identity",
                ),
                None,
                privilege=privilege,
            )
        except Conflict as err:
            return Result(
                outcome.stalled(
                    Reason.CONFLICT,
                    f"another federated identity credential on {where} already trusts {wanted.subject} "
                    f"({err.message}); delete it or let this connection own the link",
                ),
                None,
            )
        except CloudError as err:
            return Result(_failed(err, step), conn.status.azure)
        status = AzureStatus(
            credential_name=wanted.name,
            client_id=identity.client_id,
            principal_id=identity.principal_id,
            tenant_id=identity.tenant_id,
        )
        try:
            # A retained link taken over by this connection is no longer marked retained.
            self.accounts.annotate(ns, sa, {**_annotations(status), retained_annotation(self.provider): None})
        except ServiceAccountMissing as err:
            return Result(
                Outcome(
                    State.RECONCILING,
                    Reason.SERVICE_ACCOUNT_NOT_FOUND,
                    f"{err}: the federated credential exists; waiting to annotate it with the client id",
                ),
                status,
                change,
                privilege,
            )
        return Result(
            outcome.ready(f"service account {ns}/{sa} is federated with {where} (client id {identity.client_id})"),
            status,
            change,
            privilege,
        )

    def remove(self, conn: ServiceIdentityConnection, identity: str) -> Result:
        ns, sa = conn.metadata.namespace or "", conn.spec.service_account_name
        found = self.accounts.annotations(ns, sa)  # one read: the Retain mark now, our annotations after
        if kept_for_another(found or {}, conn, self.provider, identity, self.same_identity):
            return Result(outcome.ready(f"the link to {identity} is retained: left in place"), None)
        resource_group, name = split(identity)
        recorded = conn.status.azure.credential_name if conn.status.azure is not None else None
        same = conn.status.identity is not None and _key_of(conn.status.identity) == _key_of(identity)
        credential = recorded if recorded and same else decide.credential_name(self.issuer, ns, sa)
        try:
            existed = self.cloud.delete_credential(resource_group, name, credential)
        except NotFound:
            existed = False  # the identity itself is gone, and its credentials with it
        except CloudError as err:
            return Result(
                _failed(err, f"deleting federated identity credential {credential}"),
                conn.status.azure,
            )
        if same and conn.status.azure is not None and found is not None:
            self.accounts.unannotate(ns, sa, _annotations(conn.status.azure), found)
        where = _where(resource_group, name)
        if not existed:
            return Result(outcome.ready(f"federated identity credential {credential} on {where} already gone"), None)
        message = f"deleted federated identity credential {credential} on {where}"
        return Result(outcome.ready(message), None, Change(outcome.Action.DELETED, message))

    def retain(self, conn: ServiceIdentityConnection) -> Result:
        return mark_retained(self.accounts, conn, "federated identity credential")

    def survey(self, group: Group, linked: list[Linked]) -> Findings:
        _, resource_group, identity = group
        try:
            credentials: list[Credential] | None = self.cloud.list_credentials(resource_group, identity)
        except NotFound:
            credentials = None  # the identity is gone, and every link on it
        return sweep.findings(f"{resource_group}/{identity}", self.issuer, linked, credentials)

    def retained_orphan(self, orphan: Orphan) -> bool:
        # Credentials carry no tags: a Retain delete marks their ServiceAccount instead.
        found = self.accounts.annotations(orphan.namespace, orphan.service_account) or {}
        marked = found.get(retained_annotation(self.provider))
        return marked is not None and self.same_identity(marked, orphan.where)

    def retained_links(self, namespace: str | None, marks: Mapping[tuple[str, str], str]) -> list[RetainedLink]:
        return [RetainedLink(self.provider, ns, sa, identity) for (ns, sa), identity in marks.items()]

    def remove_retained(self, retained: RetainedLink) -> str:
        resource_group, name = split(retained.identity)
        ns, sa = retained.namespace, retained.service_account
        try:
            listed = self.cloud.list_credentials(resource_group, name)
        except NotFound:
            listed = []  # the identity is gone, and its credentials with it
        gone = [c.name for c in listed if decide.ours(c, self.issuer) == (ns, sa)]
        for credential in gone:
            self.cloud.delete_credential(resource_group, name, credential)
        marks: dict[str, str | None] = {
            decide.CLIENT_ID_ANNOTATION: None,
            decide.TENANT_ID_ANNOTATION: None,
            retained_annotation(self.provider): None,
        }
        self.accounts.annotate_if_present(ns, sa, marks)
        what = f"federated identity credential {', '.join(gone)}" if gone else "no federated identity credential left"
        return f"removed the retained {what} of {ns}/{sa} on {_where(resource_group, name)}"

    def delete_orphan(self, orphan: Orphan) -> None:
        resource_group, identity = split(orphan.where)
        self.cloud.delete_credential(resource_group, identity, orphan.link)


def _key_of(identity: str) -> tuple[str, str]:
    """ARM compares resource group and resource names case-insensitively."""
    resource_group, name = split(identity)
    return resource_group.lower(), name.lower()


def _failed(err: CloudError, step: str) -> Outcome:
    """Every call here addresses the identity: a NotFound means it is gone."""
    return outcome.from_error(err, what=step, missing=Reason.IDENTITY_NOT_FOUND)
