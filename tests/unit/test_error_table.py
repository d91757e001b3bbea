"""The one error table, per cloud, fed with each SDK's real exception types (docs/operations.md, "Errors")."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from google.api_core import exceptions as gexc

from porter_identity.clouds.aws import client as aws
from porter_identity.clouds.azure import client as azure
from porter_identity.clouds.gcp import client as gcp
from porter_identity.errors import CloudError
from porter_identity.reconcile.outcome import Reason, State, from_error


def _aws(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def _azure(status: int) -> HttpResponseError:
    """As azure-core raises it from an ARM answer: the status code on the error, ARM's message in it."""
    err = HttpResponseError(message="(C) m")
    err.status_code = status
    return err


def _reason(err: CloudError) -> tuple[State, Reason]:
    out = from_error(err, what="doing it")
    return out.state, out.reason


ACCESS = (State.STALLED, Reason.ACCESS_DENIED)
THROTTLED = (State.RECONCILING, Reason.THROTTLED)
UNAVAILABLE = (State.RECONCILING, Reason.CLOUD_UNAVAILABLE)
REJECTED = (State.STALLED, Reason.CLOUD_REJECTED)


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (_aws("AccessDeniedException", 403), ACCESS),
        (_aws("ExpiredTokenException", 403), ACCESS),
        (_aws("RequestExpired", 400), ACCESS),  # clock skew
        (_aws("SomethingNew", 401), ACCESS),
        (_aws("ThrottlingException", 400), THROTTLED),
        (_aws("InternalFailure", 500), UNAVAILABLE),
        (EndpointConnectionError(endpoint_url="https://eks"), UNAVAILABLE),
        (ReadTimeoutError(endpoint_url="https://eks"), UNAVAILABLE),
        (_aws("ResourceNotFoundException", 404), (State.STALLED, Reason.CLUSTER_NOT_FOUND)),
        (_aws("SomethingNew", 400), REJECTED),
    ],
)
def test_aws(err: Exception, expected: tuple[State, Reason]) -> None:
    assert _reason(aws.translate(err)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (_azure(401), ACCESS),
        (_azure(403), ACCESS),
        (_azure(429), THROTTLED),
        (_azure(503), UNAVAILABLE),
        (ServiceRequestError("connection refused"), UNAVAILABLE),
        (ServiceResponseError("connection reset"), UNAVAILABLE),
        (_azure(404), (State.STALLED, Reason.CLUSTER_NOT_FOUND)),
        (_azure(400), REJECTED),
    ],
)
def test_azure(err: Exception, expected: tuple[State, Reason]) -> None:
    assert _reason(azure.translate(err)) == expected  # type: ignore[arg-type]


def test_azure_service_response_errors_are_translated_not_raised() -> None:
    """A ServiceResponseError used to escape translation and abort a whole drift sweep."""
    with pytest.raises(CloudError), azure.translated():
        raise ServiceResponseError("connection reset by peer")


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (gexc.PermissionDenied("m"), ACCESS),
        (gexc.Unauthenticated("m"), ACCESS),
        (gexc.ResourceExhausted("m"), THROTTLED),
        (gexc.ServiceUnavailable("m"), UNAVAILABLE),
        (gexc.DeadlineExceeded("m"), UNAVAILABLE),
        (gexc.InternalServerError("m"), UNAVAILABLE),
        (gexc.Aborted("etag"), UNAVAILABLE),
        (gexc.NotFound("m"), (State.STALLED, Reason.CLUSTER_NOT_FOUND)),
        (gexc.OutOfRange("m"), REJECTED),  # used to be retried for ever
        (gexc.Cancelled("m"), REJECTED),
    ],
)
def test_gcp(err: Exception, expected: tuple[State, Reason]) -> None:
    assert _reason(gcp.translate(err)) == expected  # type: ignore[arg-type]


def test_not_found_names_what_the_step_addresses() -> None:
    out = from_error(gcp.translate(gexc.NotFound("m")), what="x", missing=Reason.IDENTITY_NOT_FOUND)
    assert out.reason is Reason.IDENTITY_NOT_FOUND


def test_every_rejection_is_rechecked() -> None:
    assert from_error(aws.translate(_aws("SomethingNew", 400)), what="x").recheck
