"""porter.yaml import and export without a cluster: every connection type, every input error with its line, and
output that is the same bytes on every run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from porter_identity import cli
from porter_identity.api.connection import Provider, ServiceIdentityConnection
from porter_identity.porteryaml.command import dump
from porter_identity.porteryaml.convert import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    MANAGER,
    SERVICE_LABEL,
    SOURCE_ANNOTATION,
    SOURCE_LABEL,
    Options,
    connection_name,
    source_label,
    to_connections,
    to_porter_yaml,
)
from porter_identity.porteryaml.parse import PorterYamlError, parse

FIXTURES = Path(__file__).parent / "porteryaml"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def imported(name: str, **options: Any) -> list[dict[str, Any]]:
    path = FIXTURES / name
    return to_connections(parse(path.read_text(), name), Options(namespace="shop", **options)).connections


def problems(name: str) -> list[str]:
    path = FIXTURES / name
    with pytest.raises(PorterYamlError) as caught:
        to_connections(parse(path.read_text(), name), Options(namespace="shop"))
    return str(caught.value).splitlines()


# -- every connection type -------------------------------------------------------------------------------------------


def test_each_of_our_types_becomes_one_connection_named_after_app_service_and_provider() -> None:
    conns = imported("shop.yaml")
    report, worker_role = (
        "shop-report@shop-prod.iam.gserviceaccount.com",
        "arn:aws:iam::123456789012:role/workloads/shop-worker",
    )
    assert [(c["metadata"]["name"], c["spec"]) for c in conns] == [
        ("shop-api-aws", {"serviceAccountName": "api", "aws": {"role": "shop-api"}}),
        ("shop-report-gcp", {"serviceAccountName": "report", "gcp": {"serviceAccountEmail": report}}),
        ("shop-worker-aws", {"serviceAccountName": "worker", "aws": {"role": worker_role}}),
        (
            "shop-worker-azure",
            {"serviceAccountName": "worker", "azure": {"identityName": "shop-worker", "resourceGroup": "shop-rg"}},
        ),
    ]
    for conn in conns:
        assert conn["apiVersion"] == "identity.porter.run/v1alpha1"
        assert conn["kind"] == "ServiceIdentityConnection"
        assert conn["metadata"]["namespace"] == "shop"
        ServiceIdentityConnection.model_validate(conn)  # the operator's own model accepts every one


def test_labels_record_app_service_and_source_file() -> None:
    by_name = {c["metadata"]["name"]: c["metadata"] for c in imported("shop.yaml")}
    assert by_name["shop-worker-azure"]["labels"] == {
        MANAGED_BY_LABEL: MANAGER,
        APP_LABEL: "shop",
        SERVICE_LABEL: "worker",
        SOURCE_LABEL: "shop.yaml",
    }
    assert by_name["shop-worker-azure"]["annotations"] == {SOURCE_ANNOTATION: "shop.yaml"}


def test_a_source_path_that_is_no_label_value_is_hashed_to_one() -> None:
    long = "deploy/" + "x" * 80 + "/porter.yaml"
    label = source_label(long)
    assert label != long and len(label) <= 63 and label.startswith("sha256-")
    assert source_label(long) == label
    assert source_label("apps/shop/porter.yaml") != source_label("apps/shop2/porter.yaml")
    assert source_label("porter.yaml") == "porter.yaml"


def test_types_that_are_not_ours_are_skipped_on_stderr_with_their_service(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--source", "apps/shop/porter.yaml")
    assert code == 0
    assert err.splitlines() == [
        f"{FIXTURES}/shop.yaml:24: service api: connection type disk skipped: not served here",
        f"{FIXTURES}/shop.yaml:47: service report: connection type cloudSql skipped: not served here",
    ]
    documents = list(yaml.safe_load_all(out))
    assert [d["metadata"]["name"] for d in documents] == [
        "shop-api-aws",
        "shop-report-gcp",
        "shop-worker-aws",
        "shop-worker-azure",
    ]
    # Messages name the file as read; labels record --source.
    assert {d["metadata"]["annotations"][SOURCE_ANNOTATION] for d in documents} == {"apps/shop/porter.yaml"}
    assert {d["metadata"]["labels"][SOURCE_LABEL] for d in documents} == {source_label("apps/shop/porter.yaml")}


def test_service_account_template_and_per_service_override() -> None:
    conns = imported("shop.yaml", service_account_template="{app}-{service}", service_accounts={"worker": "bg"})
    assert {c["metadata"]["name"]: c["spec"]["serviceAccountName"] for c in conns} == {
        "shop-api-aws": "shop-api",
        "shop-report-gcp": "shop-report",
        "shop-worker-aws": "bg",
        "shop-worker-azure": "bg",
    }


def test_deletion_policy_is_written_only_when_given() -> None:
    assert all("deletionPolicy" not in c["spec"] for c in imported("shop.yaml"))
    from porter_identity.api.common import DeletionPolicy

    assert {c["spec"]["deletionPolicy"] for c in imported("shop.yaml", deletion_policy=DeletionPolicy.RETAIN)} == {
        "Retain"
    }


def test_the_earlier_map_shape_of_services_is_read_like_the_list() -> None:
    [conn] = imported("map-shape.yaml")
    assert conn["metadata"]["name"] == "legacy-web-aws"
    assert conn["spec"] == {"serviceAccountName": "web", "aws": {"role": "legacy-web"}}


def test_app_name_from_the_flag_when_the_file_has_none(tmp_path: Path) -> None:
    text = (FIXTURES / "shop.yaml").read_text().replace("name: shop\n", "", 1)
    parsed = parse(text, "porter.yaml")
    assert to_connections(parsed, Options(namespace="shop", app="store")).connections[0]["metadata"]["name"] == (
        "store-api-aws"
    )
    with pytest.raises(PorterYamlError, match=r"porter.yaml:1: the app has no name"):
        to_connections(parsed, Options(namespace="shop"))


def test_a_flag_that_contradicts_the_files_name_is_refused() -> None:
    parsed = parse((FIXTURES / "shop.yaml").read_text(), "shop.yaml")
    with pytest.raises(PorterYamlError, match=r"^shop.yaml:2: name shop does not match --app store$"):
        to_connections(parsed, Options(namespace="shop", app="store"))


# -- idempotent output -----------------------------------------------------------------------------------------------


def test_output_is_byte_identical_across_runs_and_service_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [str(FIXTURES / "shop.yaml"), "-n", "shop", "--source", "porter.yaml"]
    first = run(capsys, *args)
    second = run(capsys, *args)
    assert first == second and first[1]
    reordered = yaml.safe_load((FIXTURES / "shop.yaml").read_text())
    reordered["services"].reverse()
    (tmp_path / "porter.yaml").write_text(yaml.safe_dump(reordered))
    assert run(capsys, str(tmp_path / "porter.yaml"), "-n", "shop", "--source", "porter.yaml")[1] == first[1]


# -- errors: file, line, service; nothing on stdout ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "malformed.yaml",
            ["malformed.yaml:7: not valid YAML: expected <block end>, but found '<block mapping start>'"],
        ),
        ("unknown-service-field.yaml", ["unknown-service-field.yaml:7: service api: unknown field conections"]),
        (
            "unknown-connection-field.yaml",
            ["unknown-connection-field.yaml:9: service api: unknown field connections[0].project"],
        ),
        (
            "missing-field.yaml",
            ["missing-field.yaml:11: service worker: missing required field connections[1].resourceGroup"],
        ),
        ("two-of-a-type.yaml", ["two-of-a-type.yaml:12: service api: a second awsRole connection; Porter allows one"]),
        ("duplicate-key.yaml", ["duplicate-key.yaml:8: service api: duplicate key connections"]),
        ("no-version.yaml", ["no-version.yaml:1: missing required field version"]),
        (
            "bad-role.yaml",
            [
                "bad-role.yaml:7: service api: connections[0].role: role must be an IAM role name (1-64 of letters, "
                "digits and +=,.@_-) or a role ARN such as arn:aws:iam::123456789012:role/my-role"
            ],
        ),
    ],
)
def test_input_errors_name_file_line_and_service(
    capsys: pytest.CaptureFixture[str], fixture: str, expected: list[str]
) -> None:
    assert problems(fixture) == expected
    code, out, err = run(capsys, str(FIXTURES / fixture), "-n", "shop", "--source", fixture)
    assert (code, out, err.splitlines()) == (1, "", [f"{FIXTURES}/{line}" for line in expected])


def test_a_wrong_version_is_named() -> None:
    with pytest.raises(PorterYamlError, match=r"^v1.yaml:1: version: Input should be 'v2'$"):
        parse("version: v1\nname: shop\nservices: []\n", "v1.yaml")


def test_two_services_on_one_service_account_and_provider_are_refused() -> None:
    parsed = parse((FIXTURES / "shop.yaml").read_text(), "shop.yaml")
    with pytest.raises(PorterYamlError) as caught:
        to_connections(parsed, Options(namespace="shop", service_account_template="{app}"))
    assert (
        str(caught.value)
        == "shop.yaml:36: service worker: ServiceAccount shop already has its awsRole connection from service api"
    )


def test_a_template_that_makes_no_service_account_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--service-account-template", "{app}_{service}"
    )
    assert (code, out) == (1, "")
    assert "service api: serviceAccountName must be a DNS-1123 subdomain" in err
    code, out, err = run(capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--service-account-template", "{team}")
    assert (code, out) == (1, "")
    assert "only {app} and {service} may appear" in err


def test_an_override_for_a_service_not_in_the_file_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--service-account", "cron=x")
    assert (code, out) == (1, "")
    assert "services that are not in" in err and "cron" in err


def test_prune_and_dry_run_need_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--prune")[:2] == (2, "")
    assert run(capsys, str(FIXTURES / "shop.yaml"), "-n", "shop", "--dry-run")[:2] == (2, "")


# -- export ----------------------------------------------------------------------------------------------------------


def test_export_of_the_imported_connections_gives_back_their_connections_blocks() -> None:
    conns = imported("shop.yaml")
    [document] = to_porter_yaml(conns, "shop")
    assert document == {
        "version": "v2",
        "name": "shop",
        "services": [
            {"name": "api", "connections": [{"type": "awsRole", "role": "shop-api"}]},
            {
                "name": "report",
                "connections": [
                    {
                        "type": "gcpServiceAccount",
                        "serviceAccountEmail": "shop-report@shop-prod.iam.gserviceaccount.com",
                    }
                ],
            },
            {
                "name": "worker",
                "connections": [
                    {"type": "awsRole", "role": "arn:aws:iam::123456789012:role/workloads/shop-worker"},
                    {"type": "azureManagedIdentity", "identityName": "shop-worker", "resourceGroup": "shop-rg"},
                ],
            },
        ],
    }
    again = to_connections(parse(yaml.safe_dump(document), "shop.yaml"), Options(namespace="shop")).connections
    assert again == conns


def test_export_lists_connections_not_imported_under_their_service_account() -> None:
    handmade = {"metadata": {"name": "x"}, "spec": {"serviceAccountName": "billing", "aws": {"role": "billing"}}}
    other_app = imported("map-shape.yaml")
    documents = to_porter_yaml([handmade, *imported("shop.yaml"), *other_app])
    assert [d.get("name") for d in documents] == ["legacy", "shop", None]
    assert documents[2]["services"] == [{"name": "billing", "connections": [{"type": "awsRole", "role": "billing"}]}]
    assert to_porter_yaml([handmade, *other_app], "shop") == []


# -- the worked example in docs/porter-yaml.md is what the code does ------------------------------------------------


def test_the_docs_worked_example_is_the_real_output() -> None:
    from porter_dev import REPO_ROOT

    text = (REPO_ROOT / "docs" / "porter-yaml.md").read_text()
    example = text[text.index("## Worked example") :]
    source, imported_text, exported_text = re.findall(r"```yaml\n(.*?)```", example, flags=re.DOTALL)
    assert source in (REPO_ROOT / "sandbox" / "porter.yaml").read_text()
    result = to_connections(parse(source, "porter.yaml"), Options(namespace="shop"))
    assert [p.render("porter.yaml") for p in result.skipped] == [
        "porter.yaml:17: service api: connection type disk skipped: not served here"
    ]
    assert f"`{result.skipped[0].render('porter.yaml')}`" in example
    assert imported_text == dump(result.connections)
    assert exported_text == dump(to_porter_yaml(result.connections, "shop"))


def test_a_map_shaped_service_that_is_not_a_mapping_is_an_error_at_its_line() -> None:
    with pytest.raises(PorterYamlError, match=r"^m.yaml:4: services\[1\] must be a mapping$"):
        parse("version: v2\nservices:\n  web: {}\n  api: [awsRole]\n", "m.yaml")


def test_a_file_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(PorterYamlError, match=r"^l.yaml:1: the file must be a mapping$"):
        parse("- version: v2\n", "l.yaml")
    with pytest.raises(PorterYamlError, match=r"^e.yaml:1: the file is empty"):
        parse("# nothing\n", "e.yaml")


# -- generated names and labels are always valid ---------------------------------------------------------------------

PORTER_NAMES = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,29}[a-z0-9])?\Z")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@given(PORTER_NAMES, PORTER_NAMES, st.sampled_from(list(Provider)))
def test_connection_names_are_always_dns_1123_names(app: str, service: str, provider: Provider) -> None:
    name = connection_name(app, service, provider)
    assert DNS1123_SUBDOMAIN.fullmatch(name) and len(name) <= 253


@given(st.text(min_size=1, max_size=300))
def test_source_labels_are_always_label_values(source: str) -> None:
    label = source_label(source)
    assert LABEL_VALUE.fullmatch(label) and len(label) <= 63
