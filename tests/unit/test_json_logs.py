"""``--log-format json``: one JSON object per line, carrying the request it is about."""

from __future__ import annotations

import json
import logging

import pytest

from talprov.errors import ConfigError
from talprov.logs import JsonFormatter, log_context
from talprov.secrets import MASK, register_secret
from talprov.service.config import parse_service_config
from tests.helpers import Home

REQUIRED = {"time", "level", "logger", "message"}


def test_every_line_of_a_create_delete_cycle_is_json_and_names_its_request(home: Home) -> None:
    request = home.write_request("json-1")
    runs = [
        home.run("--log-format", "json", "-vv", "machine", "create", "-f", str(request),
                 "--wait", check=True),
        home.run("--log-format", "json", "-vv", "machine", "delete", "json-1", "--wait",
                 check=True),
    ]
    lines = [line for run in runs for line in run.stderr.splitlines()]
    records = [json.loads(line) for line in lines]  # every line parses
    assert all(set(record) >= REQUIRED for record in records)
    about = [record for record in records if "json-1" in record["message"]]
    messages = " ".join(record["message"] for record in about)
    assert "provisioned" in messages
    assert "deprovisioned" in messages
    assert all(record.get("request_id") == "json-1" for record in about), about
    from_runner = [r for r in about if r["logger"].startswith("talprov.reconcile")]
    assert from_runner
    assert all(record.get("provider") == "fake" for record in from_runner)
    steps = {r["step"] for r in from_runner if r["message"].endswith(" done")}
    assert steps, from_runner  # "step X done" lines name the step


def test_the_environment_variable_chooses_json_too(home: Home,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALPROV_LOG_FORMAT", "json")
    request = home.write_request("json-2")
    run = home.run("-v", "machine", "create", "-f", str(request), "--wait", check=True)
    assert run.stderr.strip()
    assert all(json.loads(line)["level"] for line in run.stderr.splitlines())


def test_context_fields_and_redaction_in_one_record() -> None:
    register_secret("json-canary-secret-0815")
    record = logging.LogRecord("talprov.test", logging.WARNING, __file__, 1,
                               "token %s leaked", ("json-canary-secret-0815",), None)
    with log_context(request_id="r-1", provider="aws"), log_context(step="ensure-machine"):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == f"token {MASK} leaked"
    assert (line["request_id"], line["provider"], line["step"]) == ("r-1", "aws", "ensure-machine")
    assert line["time"].endswith("Z")  # RFC 3339 with Z, as the CLI and the API write times
    outside = json.loads(JsonFormatter().format(record))
    assert "request_id" not in outside
    with pytest.raises(ValueError, match="unknown log context"), log_context(token="x"):
        pass


def test_service_log_format_is_checked_and_named() -> None:
    assert parse_service_config({"log_format": "json"}).log_format == "json"
    assert parse_service_config(None).log_format == "plain"
    with pytest.raises(ConfigError, match="log_format"):
        parse_service_config({"log_format": "xml"})


def test_plain_lines_carry_the_same_rfc3339_time_as_json_lines() -> None:
    from talprov.logs import make_handler

    record = logging.LogRecord("talprov.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1767323045.5  # 2026-01-02T03:04:05.500Z
    plain = make_handler("plain", "t-plain").format(record)
    as_json = json.loads(make_handler("json", "t-json").format(record))
    assert plain == "2026-01-02T03:04:05.500Z INFO talprov.test: hello"
    assert as_json["time"] == "2026-01-02T03:04:05.500Z"


def test_native_lines_keep_their_level_and_source() -> None:
    from talprov.logs import native_line_record

    info = native_line_record("grpc", "I1206 06:07:00.514485   26486 server.cc:12] started")
    assert (info.levelno, info.getMessage()) == (logging.INFO, "started (server.cc:12)")
    refused = native_line_record(
        "grpc", "I1206 06:07:00.514485   26486 ssl_transport_security.cc:2563] "
        "Handshake failed with error SSL_ERROR_SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE")
    assert refused.levelno == logging.WARNING  # an operator sees it without -v
    other = native_line_record("grpc", "something without a prefix")
    assert (other.levelno, other.getMessage()) == (logging.WARNING,
                                                   "something without a prefix")


def test_keystoneauth_warnings_show_only_with_verbose() -> None:
    # QA: "Failed to discover available identity versions ..." from keystoneauth on
    # stderr of `providers --health`, beside talprov's own row for the same problem.
    from talprov.cli.app import setup_logging

    setup_logging(0)
    assert not logging.getLogger("keystoneauth.session").isEnabledFor(logging.WARNING)
    setup_logging(1)
    assert logging.getLogger("keystoneauth.session").isEnabledFor(logging.WARNING)
    setup_logging(0)
