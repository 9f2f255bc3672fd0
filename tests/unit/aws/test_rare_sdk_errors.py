"""Rare botocore errors are plain sentences naming what to check, never the SDK's
class name, and never what botocore quotes from a credential source (QA: the
fallback said e.g. "DescribeInstances at …: CredentialRetrievalError")."""

from __future__ import annotations

import pytest
from botocore import exceptions as boto

from talprov.aws.errors import translate
from talprov.providers.errors import InstanceUnavailable, ProviderError, Transient

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
    (boto.EndpointConnectionError(endpoint_url=ENDPOINT), Transient, ["unreachable"]),
    (boto.ConnectTimeoutError(endpoint_url=ENDPOINT), Transient, ["timed out"]),
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
