"""The world around a connection: an identity made after it, a ServiceAccount recreated or stripped, a delete of a
link already gone, and an admin's withdrawal that no tenant setting outlives. Against the real API server and the
emulators, with the chart's RBAC; the long recheck is the default 300 s, so only the runner's own looks count."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from porter_dev.aws import AwsEmulator
from porter_dev.azure import AzureEmulator
from porter_dev.gcp import GcpEmulator, workload_identity_member
from porter_dev.processes import Operator, pod_identity_trust_policy
from porter_identity import GROUP, VERSION
from porter_identity.api.connection import PLURAL
from tests.conftest import AZURE_SUBSCRIPTION, GCP_PROJECT, sa_annotations, wait_for
from tests.e2e.helpers import Connections, connection, webhook_bypassed

pytestmark = pytest.mark.e2e
RG = "door-rg"
CLIENT_ID = "azure.workload.identity/client-id"
GKE = "iam.gke.io/gcp-service-account"
ALLOW = "identity.porter.run/allowed-identities"
PAUSE = "identity.porter.run/reconcile-policy"


@pytest.fixture
def conns(api: client.ApiClient, namespace: str, operator: Operator) -> Connections:
    return Connections(api, namespace)


def associations(aws: AwsEmulator, cluster: str, namespace: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = aws.client("eks").list_pod_identity_associations(
        clusterName=cluster, namespace=namespace
    )["associations"]
    return found


def credentials(azure: AzureEmulator, name: str) -> list[Any]:
    return list(azure.client(AZURE_SUBSCRIPTION).federated_identity_credentials.list(RG, name))


def members(gcp: GcpEmulator, email: str) -> set[str]:
    policy = gcp.client().get_iam_policy(request={"resource": f"projects/-/serviceAccounts/{email}"})
    return {m for b in policy.bindings if b.role == "roles/iam.workloadIdentityUser" for m in b.members}


def later(seconds: float, make: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), make()))
    thread.start()
    return thread


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_an_identity_made_3_s_after_its_connection_is_linked_within_2_s_of_appearing(
    provider: str,
    conns: Connections,
    aws: AwsEmulator,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    service_account: Any,
) -> None:
    service_account(conns.namespace, "app")
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, float] = {}
    if provider == "aws":
        name = f"late-{suffix}"
        spec: dict[str, Any] = {"aws": {"role": name}}

        def make() -> None:
            aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=pod_identity_trust_policy())
            made["at"] = time.monotonic()

        missing = "RoleNotFound"
    elif provider == "azure":
        name = f"late-{suffix}"
        spec = {"azure": {"identityName": name, "resourceGroup": RG}}

        def make() -> None:
            azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
            made["at"] = time.monotonic()

        missing = "IdentityNotFound"
    else:
        email = f"late-{suffix}@{GCP_PROJECT}.iam.gserviceaccount.com"
        spec = {"gcp": {"serviceAccountEmail": email}}

        def make() -> None:
            gcp.seed_service_account(GCP_PROJECT, f"late-{suffix}")
            made["at"] = time.monotonic()

        missing = "IdentityNotFound"
    conns.create("app", "app", **spec)
    maker = later(3, make)
    cond = conns.wait_reason("app", missing, timeout=10)
    assert "waiting for it to appear" in cond["message"]
    maker.join()
    conns.wait_ready("app", timeout=15)
    linked_after = time.monotonic() - made["at"]
    # Polled every 0.2 s: the link itself was made within 2 s of the identity appearing.
    assert linked_after < 2.5, f"linked {linked_after:.1f} s after the identity appeared"
    conns.delete("app")
    conns.wait_gone("app")


@pytest.mark.parametrize("provider", ["azure", "gcp"])
def test_a_service_account_recreated_or_stripped_is_annotated_again_and_status_says_so_meanwhile(
    provider: str,
    conns: Connections,
    api: client.ApiClient,
    azure: AzureEmulator,
    gcp: GcpEmulator,
    service_account: Any,
) -> None:
    core = client.CoreV1Api(api)
    service_account(conns.namespace, "web")
    if provider == "azure":
        name = f"uami-{uuid.uuid4().hex[:8]}"
        azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
        spec: dict[str, Any] = {"azure": {"identityName": name, "resourceGroup": RG}}
        key = CLIENT_ID
    else:
        email = gcp.seed_service_account(GCP_PROJECT, f"sa-{uuid.uuid4().hex[:8]}")
        spec = {"gcp": {"serviceAccountEmail": email}}
        key = GKE
    conns.create("web", "web", **spec)
    conns.wait_ready("web")
    wanted = sa_annotations(api, conns.namespace, "web")[key]

    # Stripped by hand (kubectl annotate ...-): put back within seconds.
    core.patch_namespaced_service_account("web", conns.namespace, {"metadata": {"annotations": {key: None}}})
    wait_for(lambda: sa_annotations(api, conns.namespace, "web").get(key) == wanted, 10, what="annotation back")

    # Deleted (helm upgrade --force, kubectl replace): status stops saying Ready until it is back.
    core.delete_namespaced_service_account("web", conns.namespace)
    conns.wait_reason("web", "ServiceAccountNotFound", timeout=10)
    service_account(conns.namespace, "web")
    wait_for(lambda: sa_annotations(api, conns.namespace, "web").get(key) == wanted, 10, what="annotation on new SA")
    conns.wait_ready("web", timeout=10)
    conns.delete("web")
    conns.wait_gone("web")


def test_deleting_a_connection_whose_credential_is_already_gone_reports_no_delete(
    conns: Connections, azure: AzureEmulator, service_account: Any
) -> None:
    name = f"uami-{uuid.uuid4().hex[:8]}"
    azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)
    service_account(conns.namespace, "gone")
    conns.create("gone", "gone", azure={"identityName": name, "resourceGroup": RG})
    status = conns.wait_ready("gone")["status"]["azure"]
    msi = azure.client(AZURE_SUBSCRIPTION)
    msi.federated_identity_credentials.delete(RG, name, status["credentialName"])
    assert credentials(azure, name) == []
    conns.delete("gone")
    conns.wait_gone("gone")
    messages = [e.message for e in conns.events("gone")]
    assert not any(m.startswith("deleted federated identity credential") for m in messages), messages


@dataclass
class Identity:
    """One cloud identity made for a test: the allow-annotation entry, the spec block, and which ServiceAccounts of
    a namespace are linked to it in the cloud."""

    allowed: str
    spec: dict[str, Any]
    linked: Callable[[str], set[str]]


@pytest.fixture
def make_identity(
    aws: AwsEmulator, azure: AzureEmulator, gcp: GcpEmulator, eks_cluster: str, make_role: Any
) -> Callable[[str], Identity]:
    def make(provider: str) -> Identity:
        name = f"id-{uuid.uuid4().hex[:8]}"
        if provider == "aws":
            make_role(name)
            return Identity(
                f"aws:{name}",
                {"aws": {"role": name}},
                lambda ns: {a["serviceAccount"] for a in associations(aws, eks_cluster, ns)},
            )
        if provider == "azure":
            azure.seed_identity(AZURE_SUBSCRIPTION, RG, name)

            def subjects(ns: str) -> set[str]:
                prefix = f"system:serviceaccount:{ns}:"
                return {
                    c.subject.removeprefix(prefix) for c in credentials(azure, name) if c.subject.startswith(prefix)
                }

            return Identity(f"azure:{RG}/{name}", {"azure": {"identityName": name, "resourceGroup": RG}}, subjects)
        email = gcp.seed_service_account(GCP_PROJECT, name)

        def bound(ns: str) -> set[str]:
            prefix = f"serviceAccount:{GCP_PROJECT}.svc.id.goog[{ns}/"
            return {m.removeprefix(prefix).rstrip("]") for m in members(gcp, email) if m.startswith(prefix)}

        return Identity(f"gcp:{email}", {"gcp": {"serviceAccountEmail": email}}, bound)

    return make


@pytest.fixture
def annotated_namespace(api: client.ApiClient) -> Any:
    """A namespace no policy-file rule covers: what it may use is its allow annotation alone."""
    core = client.CoreV1Api(api)
    name = f"rv-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_an_admins_withdrawal_removes_paused_retained_and_detached_links_within_5_s(
    provider: str,
    api: client.ApiClient,
    annotated_namespace: str,
    operator: Operator,
    make_identity: Callable[[str], Identity],
    service_account: Any,
) -> None:
    """The trial of the revocation issue: a tenant pauses one link, detaches another and retains a third, then the
    admin withdraws the cloud from the namespace while the tenant deletes the detached and retained ones."""
    ns = annotated_namespace
    core = client.CoreV1Api(api)
    identity = make_identity(provider)
    allowed, spec = identity.allowed, identity.spec

    def linked() -> set[str]:
        return identity.linked(ns)

    core.patch_namespace(
        ns, {"metadata": {"annotations": {ALLOW: f"{allowed} keep:Retain keep:DetachOnDelete keep:Skip"}}}
    )
    conns = Connections(api, ns)
    for sa in ("paused", "retained", "detached"):
        service_account(ns, sa)
    conns.create("paused", "paused", **spec)
    conns.create("retained", "retained", deletionPolicy="Retain", **spec)
    conns.create("detached", "detached", **spec)
    for name_ in ("paused", "retained", "detached"):
        conns.wait_ready(name_)
    assert linked() == {"paused", "retained", "detached"}
    for name_, value in (("paused", "skip"), ("detached", "detach-on-delete")):
        conns.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name_, {"metadata": {"annotations": {PAUSE: value}}}
        )
    # the pause is seen (its Event) before the withdrawal
    wait_for(lambda: any(e.reason == "Paused" for e in conns.events("paused")), 10, what="the Paused Event")
    core.patch_namespace(ns, {"metadata": {"annotations": {ALLOW: "aws:nothing-here"}}})
    conns.delete("retained")
    conns.delete("detached")
    wait_for(lambda: linked() == set(), 5, what="every link removed")
    conns.wait_reason("paused", "NotAllowed", timeout=5)
    conns.wait_gone("retained")
    conns.wait_gone("detached")
    conns.delete("paused")
    conns.wait_gone("paused")


def test_a_gcp_member_bound_by_hand_is_taken_only_when_asked_and_released_not_deleted(
    conns: Connections, gcp: GcpEmulator, service_account: Any
) -> None:
    email = gcp.seed_service_account(GCP_PROJECT, f"hand-{uuid.uuid4().hex[:8]}")
    who = workload_identity_member(GCP_PROJECT, conns.namespace, "tf")
    iam = gcp.client()
    resource = f"projects/-/serviceAccounts/{email}"
    policy = iam.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role="roles/iam.workloadIdentityUser", members=[who])
    iam.set_iam_policy(request={"resource": resource, "policy": policy})
    service_account(conns.namespace, "tf")

    conns.create("tf", "tf", gcp={"serviceAccountEmail": email})
    cond = conns.wait_reason("tf", "Conflict")
    assert "bound outside porter-identity" in cond["message"] and "takeOver: Adopt" in cond["message"]
    assert who in members(gcp, email)

    conns.patch_spec("tf", {"takeOver": "Adopt"})
    obj = conns.wait_ready("tf")
    assert obj["status"]["gcp"] == {"member": who, "adopted": True}

    conns.delete("tf")
    conns.wait_gone("tf")
    assert who in members(gcp, email), "an adopted member is released, not deleted"
    assert any(e.reason == "Released" for e in conns.events("tf"))


def test_keeping_that_no_rule_grants_is_refused_at_admission_and_ignored_in_reconcile(
    api: client.ApiClient,
    annotated_namespace: str,
    operator: Operator,
    aws: AwsEmulator,
    eks_cluster: str,
    make_role: Any,
    service_account: Any,
    kubectl: Any,
) -> None:
    ns = annotated_namespace
    role = f"keep-{uuid.uuid4().hex[:8]}"
    make_role(role)
    client.CoreV1Api(api).patch_namespace(ns, {"metadata": {"annotations": {ALLOW: f"aws:{role}"}}})  # Retain only
    conns = Connections(api, ns)
    for sa in ("skipped", "detached"):
        service_account(ns, sa)
    paused = connection("skipped", "skipped", aws={"role": role})
    paused["metadata"]["annotations"] = {PAUSE: "skip"}
    with pytest.raises(client.ApiException) as refused:
        conns.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, paused)
    assert refused.value.status == 403
    assert f"Skip is not granted by namespace annotation {ALLOW} (it grants Retain)" in str(refused.value.body)

    conns.create("detached", "detached", aws={"role": role})
    conns.wait_ready("detached")
    with pytest.raises(client.ApiException, match="DetachOnDelete is not granted"):
        conns.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "detached", {"metadata": {"annotations": {PAUSE: "detach-on-delete"}}}
        )

    with webhook_bypassed(kubectl):
        conns.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, paused)
        conns.wait_ready("skipped")  # the skip is ignored: the connection is run, with a Warning that says why
        conns.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "detached", {"metadata": {"annotations": {PAUSE: "detach-on-delete"}}}
        )
        conns.delete("detached")  # the delete reads the annotation from the object it deletes
        conns.wait_gone("detached")
    warnings = [e.message for e in conns.events("skipped") if e.type == "Warning"]
    assert any("skip is ignored" in m and "Skip is not granted" in m for m in warnings), warnings
    left = {a["serviceAccount"] for a in associations(aws, eks_cluster, ns)}
    assert left == {"skipped"}, "the detached link was removed on delete: detach-on-delete is not granted"
    conns.delete("skipped")
    conns.wait_gone("skipped")


@pytest.mark.parametrize("provider", ["aws", "azure", "gcp"])
def test_a_retained_link_is_removed_within_5_s_of_its_rule_being_withdrawn(
    provider: str,
    api: client.ApiClient,
    annotated_namespace: str,
    operator: Operator,
    make_identity: Callable[[str], Identity],
    service_account: Any,
) -> None:
    ns = annotated_namespace
    core = client.CoreV1Api(api)
    identity = make_identity(provider)
    allowed, spec = identity.allowed, identity.spec

    def linked() -> bool:
        return "kept" in identity.linked(ns)

    core.patch_namespace(ns, {"metadata": {"annotations": {ALLOW: allowed}}})  # Retain is granted by default
    service_account(ns, "kept")
    conns = Connections(api, ns)
    conns.create("kept", "kept", deletionPolicy="Retain", **spec)
    conns.wait_ready("kept")
    conns.delete("kept")
    conns.wait_gone("kept")
    assert linked(), "Retain keeps the link while the policy allows it"

    core.patch_namespace(ns, {"metadata": {"annotations": {ALLOW: "gcp:nothing-here"}}})
    wait_for(lambda: not linked(), 5, what="the retained link removed")

    def warned() -> bool:  # posted just after the cloud call that removed the link
        events = core.list_namespaced_event(
            ns, field_selector="involvedObject.name=kept,involvedObject.kind=ServiceAccount"
        )
        messages = [e.message for e in events.items if e.reason == "NotAllowed" and e.type == "Warning"]
        return any("retained" in m and "not allowed by policy" in m for m in messages)

    wait_for(warned, 10, what="a NotAllowed Warning on the ServiceAccount saying the retained link was removed")
    marks = sa_annotations(api, ns, "kept")
    assert not [k for k in marks if k.startswith("identity.porter.run/retained-")], marks


def test_retain_that_no_rule_grants_is_refused_at_admission_and_the_link_removed_on_delete_without_the_webhook(
    api: client.ApiClient, operator: Operator, aws: AwsEmulator, eks_cluster: str, make_role: Any, kubectl: Any
) -> None:
    core = client.CoreV1Api(api)
    ns = f"strict-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        role = make_role()
        core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))
        conns = Connections(api, ns)
        with pytest.raises(client.ApiException) as refused:
            conns.create("app", "app", aws={"role": role}, deletionPolicy="Retain")
        assert refused.value.status == 403
        assert "Retain is not granted by rule strict (it grants nothing)" in str(refused.value.body)
        with webhook_bypassed(kubectl):
            conns.create("app", "app", aws={"role": role}, deletionPolicy="Retain")
            conns.wait_ready("app")
            conns.delete("app")
            conns.wait_gone("app")
        assert associations(aws, eks_cluster, ns) == [], "Retain is not granted here: the delete removed the link"
        warnings = [e.message for e in conns.events("app") if e.type == "Warning"]
        assert any("Retain is not granted" in m for m in warnings), warnings
    finally:
        core.delete_namespace(ns)
