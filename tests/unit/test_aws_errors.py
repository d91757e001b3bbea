"""botocore failures -> typed cloud errors, and role names from role references."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from porter_identity.clouds.aws.client import translate, translated
from porter_identity.errors import (
    AccessDenied,
    CloudError,
    Conflict,
    Invalid,
    LimitExceeded,
    NotFound,
    Throttled,
    Transient,
)
from porter_identity.model import role_name


def client_error(code: str, message: str = "the message", status: int | None = 400) -> ClientError:
    response: dict[str, object] = {"Error": {"Code": code, "Message": message}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "Op")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("Throttling", 400, Throttled),
        ("ThrottlingException", 400, Throttled),
        ("TooManyRequestsException", 429, Throttled),
        ("RequestLimitExceeded", 503, Throttled),
        ("RequestThrottled", 400, Throttled),
        ("SlowDown", 429, Throttled),
        ("", 429, Throttled),
        ("NoSuchEntity", 404, NotFound),
        ("ResourceNotFoundException", 404, NotFound),
        ("ResourceInUseException", 409, Conflict),
        ("EntityAlreadyExists", 409, Conflict),
        ("InvalidParameterException", 400, Invalid),
        ("InvalidRequestException", 400, Invalid),
        ("ValidationError", 400, Invalid),
        ("MalformedPolicyDocument", 400, Invalid),
        ("LimitExceeded", 409, LimitExceeded),
        ("ResourceLimitExceededException", 400, LimitExceeded),
        ("AccessDenied", 403, AccessDenied),
        ("AccessDeniedException", 403, AccessDenied),
        ("UnauthorizedOperation", 403, AccessDenied),
        ("InvalidClientTokenId", 403, AccessDenied),
        ("ServerException", 500, Transient),
        ("ServiceFailure", 500, Transient),
        ("ServiceUnavailable", 503, Transient),
        ("InternalFailure", 502, Transient),
        ("SomethingNew", 500, Transient),
        ("SomethingNew", 400, Invalid),
        ("SomethingNew", 409, Invalid),
    ],
)
def test_translate_client_errors(code: str, status: int, expected: type[CloudError]) -> None:
    err = translate(client_error(code, "AWS says so", status))
    assert type(err) is expected
    assert err.code == code
    assert err.message == "AWS says so"


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        # the code decides before the status does
        ("NoSuchEntity", 500, NotFound),
        ("AccessDenied", 500, AccessDenied),
        ("InvalidParameterException", 503, Invalid),
        ("ResourceNotFoundException", 429, Throttled),  # but 429 always means slow down
    ],
)
def test_code_vs_status_precedence(code: str, status: int, expected: type[CloudError]) -> None:
    assert type(translate(client_error(code, status=status))) is expected


def test_missing_status_is_transient() -> None:
    err = translate(client_error("Weird", status=None))
    assert isinstance(err, Transient)
    assert err.retryable


def test_missing_error_block_is_transient_and_keeps_str() -> None:
    err = translate(ClientError({"ResponseMetadata": {"HTTPStatusCode": 503}}, "GetRole"))  # type: ignore[typeddict-item]
    assert isinstance(err, Transient)
    assert err.code == ""
    assert "GetRole" in err.message


def test_empty_message_falls_back_to_the_botocore_text() -> None:
    err = translate(client_error("NoSuchEntity", "", 404))
    assert isinstance(err, NotFound)
    assert "NoSuchEntity" in err.message
    assert "Op" in err.message


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, Transient), (503, Transient), (429, Throttled)],
)
def test_status_alone_with_unknown_code(status: int, expected: type[CloudError]) -> None:
    assert type(translate(client_error("Unknown", status=status))) is expected


def test_retryable_only_for_throttled_and_transient() -> None:
    assert translate(client_error("Throttling")).retryable
    assert translate(client_error("X", status=503)).retryable
    assert not translate(client_error("AccessDenied", status=403)).retryable
    assert not translate(client_error("NoSuchEntity", status=404)).retryable
    assert not translate(client_error("ResourceInUseException", status=409)).retryable
    assert not translate(client_error("InvalidParameterException")).retryable


def test_endpoint_connection_error_is_transient() -> None:
    err = translate(EndpointConnectionError(endpoint_url="x"))
    assert isinstance(err, Transient)
    assert err.retryable
    assert err.code == "EndpointConnectionError"
    assert err.message.startswith("AWS unreachable: ")
    assert '"x"' in err.message


def test_read_timeout_is_transient() -> None:
    err = translate(ReadTimeoutError(endpoint_url="https://eks"))
    assert isinstance(err, Transient)
    assert err.code == "ReadTimeoutError"


def test_translated_raises_the_typed_error_with_cause() -> None:
    original = client_error("NoSuchEntity", "role gone", 404)
    with pytest.raises(NotFound, match="role gone") as info, translated():
        raise original
    assert info.value.__cause__ is original
    assert info.value.code == "NoSuchEntity"


def test_translated_lets_other_errors_through() -> None:
    with pytest.raises(KeyError), translated():
        raise KeyError("not botocore")


def test_translated_passes_success_through() -> None:
    with translated():
        value = 1 + 1
    assert value == 2


# --- role_name -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "name"),
    [
        ("my-role", "my-role"),
        ("a", "a"),
        ("Role+=,.@_-", "Role+=,.@_-"),
        ("arn:aws:iam::123456789012:role/my-role", "my-role"),
        ("arn:aws:iam::123456789012:role/service-role/my-role", "my-role"),
        ("arn:aws:iam::123456789012:role/a/b/c/my-role", "my-role"),
        ("arn:aws-cn:iam::123456789012:role/my-role", "my-role"),
        ("arn:aws-us-gov:iam::123456789012:role/team/my-role", "my-role"),
    ],
)
def test_role_name(role: str, name: str) -> None:
    assert role_name(role) == name
