"""talprov.yaml mistakes seen through the CLI: file and field named, exit 2, no secret."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import Home


def test_unset_reference_in_config_names_file_and_field(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TP_QA_UNSET", raising=False)
    body = yaml.safe_load(home.config_path.read_text())
    body["providers"]["fake"]["api_secret"] = "${env:TP_QA_UNSET}"
    home.config_path.write_text(yaml.safe_dump(body))
    # Resolved when a command uses the instance (issue 14: not for `machine list`);
    # --health reports it in the instance's row and exits 1, like any unhealthy one.
    result = home.invoke("providers", "--health")
    assert result.exit_code == 1, result.output
    expected = (f"{home.config_path}: providers.fake.api_secret: "
                "environment variable TP_QA_UNSET is not set")
    assert expected in result.output
    assert "Traceback" not in result.output
