"""Property tests of generated cloud names: valid for the cloud, unique per ServiceAccount, whatever the input."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from porter_identity.api.connection import ConnectionSpec
from porter_identity.clouds.azure.plan import credential_name
from porter_identity.clouds.gcp.plan import member

# Azure: federated identity credential names are 3-120 characters, start with a letter or digit and contain
# only letters, digits, '-' and '_' (learn.microsoft.com, "Federated identity credential considerations").
ISSUER = "https://oidc.example/cluster"
AZURE_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
GCP_MEMBER = re.compile(
    r"^serviceAccount:(?P<pool>[a-z][a-z0-9-]{4,28}[a-z0-9]\.svc\.id\.goog)\[(?P<ns>[a-z0-9-]+)/(?P<sa>[a-z0-9.-]+)\]$"
)

LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
SUBDOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda s: len(s) <= 253)
PROJECT = st.from_regex(r"\A[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")


@given(LABEL, SUBDOMAIN)
def test_azure_credential_names_are_always_valid(namespace: str, service_account: str) -> None:
    ConnectionSpec.model_validate({"serviceAccountName": service_account, "aws": {"role": "r"}})  # admissible
    assert AZURE_CREDENTIAL_NAME.fullmatch(credential_name(ISSUER, namespace, service_account))


@given(LABEL, SUBDOMAIN, LABEL, SUBDOMAIN)
def test_azure_credential_names_are_unique_per_service_account(ns1: str, sa1: str, ns2: str, sa2: str) -> None:
    same = (ns1, sa1) == (ns2, sa2)
    assert (credential_name(ISSUER, ns1, sa1) == credential_name(ISSUER, ns2, sa2)) == same


@given(st.lists(st.tuples(LABEL, SUBDOMAIN), min_size=2, max_size=30, unique=True))
def test_no_two_service_accounts_share_a_credential_name(pairs: list[tuple[str, str]]) -> None:
    assert len({credential_name(ISSUER, ns, sa) for ns, sa in pairs}) == len(pairs)


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_azure_credential_names_are_valid_even_for_inputs_admission_refuses(namespace: str, sa: str) -> None:
    """Defence in depth: quotes, '../', newlines, RTL overrides or zero-width characters never leak into a name."""
    assert AZURE_CREDENTIAL_NAME.fullmatch(credential_name(ISSUER, namespace, sa))


@given(PROJECT, LABEL, SUBDOMAIN)
def test_gcp_members_are_well_formed(project: str, namespace: str, service_account: str) -> None:
    pool = f"{project}.svc.id.goog"
    found = GCP_MEMBER.fullmatch(member(pool, namespace, service_account))
    assert found is not None
    assert (found["pool"], found["ns"], found["sa"]) == (pool, namespace, service_account)


@given(PROJECT, LABEL, SUBDOMAIN, LABEL, SUBDOMAIN)
def test_gcp_members_are_unique_per_service_account(project: str, ns1: str, sa1: str, ns2: str, sa2: str) -> None:
    pool = f"{project}.svc.id.goog"
    assert (member(pool, ns1, sa1) == member(pool, ns2, sa2)) == ((ns1, sa1) == (ns2, sa2))


@given(SUBDOMAIN, SUBDOMAIN)
def test_two_clusters_get_two_credentials_for_one_service_account(namespace: str, sa: str) -> None:
    other = credential_name("https://oidc.example/another-cluster", namespace, sa)
    assert credential_name(ISSUER, namespace, sa) != other
    assert AZURE_CREDENTIAL_NAME.fullmatch(other)
