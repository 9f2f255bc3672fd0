"""An AWS call that gets no answer (timed out, connection lost) is a translated
Transient naming the endpoint, never the SDK's class name (QA: a stalled
RunInstances logged "raised ReadTimeoutError" once per request of the batch)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from talprov.aws import instances
from talprov.providers.errors import Transient


class Silent:
    """An EC2 client whose every call times out."""

    def __getattr__(self, name: str) -> Any:
        def call(**_kwargs: Any) -> Any:
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1:9/")
        return call


@pytest.mark.parametrize(("operation", "call"), [
    ("DescribeInstances", lambda ec2: instances.describe_one(ec2, "i-1")),
    ("TerminateInstances", lambda ec2: instances.terminate(ec2, ["i-1"])),
])
def test_a_call_without_answer_is_transient(operation: str, call: Any) -> None:
    with pytest.raises(Transient) as raised:
        call(Silent())
    text = str(raised.value)
    assert text.startswith(operation)
    assert "ReadTimeoutError" not in text
    assert "127.0.0.1:9" in text
