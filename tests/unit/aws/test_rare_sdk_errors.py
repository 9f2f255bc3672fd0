"""Rare botocore errors are plain sentences naming what to check, never the SDK's
class name, and never what botocore quotes from a credential source (QA: the
fallback said e.g. "DescribeInstances at …: CredentialRetrievalError")."""

from __future__ import annotations

from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore import exceptions as boto
from botocore.exceptions import ClientError

from talprov.aws.errors import aws_errors, translate
from talprov.providers.errors import (
    EndpointUnreachable,
    InstanceUnavailable,
    InvalidRequest,
    ProviderError,
    Transient,
)

CANARY = "AKIAcanarySECRETtoken42"
ENDPOINT = "https://ec2.eu-west-1.amazonaws.com"

CASES = [
    (boto.CredentialRetrievalError(provider="custom-process", error_msg=CANARY),
     InstanceUnavailable, ["credentials", "custom-process"]),
    (boto.CredentialRetrievalError(provider="container-role", error_msg=CANARY),
     InstanceUnavailable, ["credentials", "container-role"]),
    (boto.MetadataRetrievalError(error_msg=CANARY), InstanceUnavailable,
     ["instance metadata", "instance profile"]),
    (boto.UnauthorizedSSOTokenError(), InstanceUnavailable, ["SSO", "aws sso login"]),
    (boto.SSOTokenLoadError(error_msg=CANARY), InstanceUnavailable, ["SSO", "aws sso login"]),
    (boto.TokenRetrievalError(provider="sso", error_msg=CANARY), InstanceUnavailable,
     ["token", "sso"]),
    (boto.LoginRefreshRequired(), InstanceUnavailable, ["aws login"]),
    (boto.RefreshWithMFAUnsupportedError(), InstanceUnavailable, ["MFA"]),
    (boto.ProfileNotFound(profile="talos-prod"), InstanceUnavailable,
     ["profile talos-prod", "profile"]),
    (boto.ConfigParseError(path="/home/u/.aws/config"), InstanceUnavailable,
     ["/home/u/.aws/config"]),
    (boto.InvalidConfigError(error_msg=CANARY), InstanceUnavailable, ["AWS config"]),
    (boto.NoRegionError(), InstanceUnavailable, ["region"]),
    (boto.EndpointConnectionError(endpoint_url=ENDPOINT), EndpointUnreachable, ["unreachable"]),
    (boto.ConnectTimeoutError(endpoint_url=ENDPOINT), EndpointUnreachable, ["timed out"]),
    (boto.ReadTimeoutError(endpoint_url=ENDPOINT), Transient, ["no answer"]),
    (boto.ConnectionClosedError(endpoint_url=ENDPOINT), Transient, ["closed the connection"]),
    (boto.ResponseStreamingError(error=CANARY), Transient, ["cut off"]),
    (boto.IncompleteReadError(actual_bytes=1, expected_bytes=2), Transient, ["cut off"]),
    (boto.HTTPClientError(error=CANARY), Transient, ["unreachable"]),
    (boto.WaiterError(name="x", reason=CANARY, last_response={}), Transient,
     ["region", "endpoint_url"]),
]


@pytest.mark.parametrize(("exc", "kind", "words"), CASES,
                         ids=[type(case[0]).__name__ for case in CASES])
def test_a_rare_sdk_error_is_a_sentence(exc: Exception, kind: type[ProviderError],
                                        words: list[str]) -> None:
    translated = translate(exc, "DescribeInstances", endpoint=ENDPOINT)
    text = str(translated)
    assert type(translated) is kind, text
    assert text.startswith("DescribeInstances at https://ec2.eu-west-1.amazonaws.com:443: ")
    for word in words:
        assert word in text
    assert type(exc).__name__ not in text
    assert "Error" not in text
    assert CANARY not in text



def _upload_as_boto3_does(refused: ClientError) -> None:
    """Raise as boto3's upload_file does: S3UploadFailedError inside its except, so
    the ClientError is only its context."""
    with aws_errors("PutObject"):
        try:
            raise refused
        except ClientError as e:
            raise S3UploadFailedError(  # noqa: B904 -- boto3's own shape
                f"Failed to upload /tmp/cache/{CANARY}.raw to b/k: {e}")


def test_an_s3_upload_to_a_missing_bucket_names_image_bucket_and_is_not_retried() -> None:
    # QA: "resolve-image: S3UploadFailedError: Failed to upload /tmp/.../x.raw to
    # b/k: ... (NoSuchBucket)", retried for ever, for a bucket that does not exist.
    reply: Any = {"Error": {"Code": "NoSuchBucket",
                            "Message": "The specified bucket does not exist"},
                  "ResponseMetadata": {"HTTPStatusCode": 404}}
    refused = ClientError(reply, "PutObject")
    with pytest.raises(InvalidRequest) as caught:
        _upload_as_boto3_does(refused)
    assert caught.value.field == "image_bucket"
    assert caught.value.permanent
    assert "S3UploadFailedError" not in str(caught.value)
    assert CANARY not in str(caught.value)
