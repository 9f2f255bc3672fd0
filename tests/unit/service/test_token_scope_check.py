"""A token scoped to a provider instance that is not configured gets the same
warning from `config check` as from `serve` at start, with a did-you-mean.

QA: ``tokens: [{..., providers: [aws-dmeo]}]`` passed `config check` (exit 0,
warning null) while `serve` warned "no provider instance named 'aws-dmeo' here".
"""

from __future__ import annotations

import json

from tests.helpers import Home
from tests.unit.service.conftest import TOKENS

SAID = ("service.tokens[0].providers: no provider instance named 'fkae' here "
        "(configured: fake); did you mean 'fake'?")


def test_config_check_warns_as_serve_does(home: Home) -> None:
    tokens = [{**TOKENS[0], "providers": ["fkae"]}, {**TOKENS[1], "providers": ["fake"]}]
    home.write_config(service={"tokens": tokens, "workers": False})
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 0, checked.output
    [row] = [r for r in json.loads(checked.stdout) if r["part"] == "service"]
    assert row["result"] == "ok"
    assert row["warning"] == SAID
    # On stderr, as serve says it (naming the file).
    said = f"warning: {home.config_path}: {SAID}"
    assert said in checked.stderr
    # Refused later for plain HTTP on a routable address: the warning comes first.
    served = home.invoke("serve", "--listen", "10.255.255.1:0")
    assert said in served.stderr


def test_each_unknown_name_is_named_and_a_wildcard_is_none(home: Home) -> None:
    tokens = [{**TOKENS[0], "providers": ["*"]},
              {**TOKENS[1], "providers": ["fake", "zzz", "fkae"]}]
    home.write_config(service={"tokens": tokens, "workers": False})
    checked = home.invoke("config", "check", "-o", "json")
    assert checked.exit_code == 0, checked.output
    [row] = [r for r in json.loads(checked.stdout) if r["part"] == "service"]
    assert row["warning"].splitlines() == [
        "service.tokens[1].providers: no provider instance named 'zzz' here "
        "(configured: fake)",
        "service.tokens[1].providers: no provider instance named 'fkae' here "
        "(configured: fake); did you mean 'fake'?"]


def test_scopes_that_name_configured_instances_are_not_warned_about(home: Home) -> None:
    home.write_config(service={"tokens": TOKENS[:2], "workers": False})
    checked = home.invoke("config", "check", "-o", "json")
    [row] = [r for r in json.loads(checked.stdout) if r["part"] == "service"]
    assert row["warning"] is None
    assert "no provider instance named" not in checked.stderr
