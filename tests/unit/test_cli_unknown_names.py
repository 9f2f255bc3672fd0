"""One rule for a name on the command line that names nothing (QA: `scale demo
nosuch` exited 2, `status nosuch` 1): exit 1, as `--help` documents "Exit 1 when
unknown", with one line naming what was looked for; 2 stays for invalid input."""

from __future__ import annotations

import pytest

from tests.helpers import Home
from tests.unit.test_cli_retry_sets_watch import record_request_set
from tests.unit.test_cluster_apply import write_spec

EXIT_UNKNOWN = 1

#: Every command that takes the name of something recorded or configured.
UNKNOWN_NAMES = [
    ("status", "nosuch"),
    ("destroy", "nosuch", "--yes"),
    ("scale", "nosuch", "workers", "1"),
    ("scale", "demo", "nosuch", "1"),
    ("machine", "get", "nosuch"),
    ("machine", "list", "--provider", "nosuch"),
    ("machine", "delete", "nosuch"),
    ("machine", "mark-delete", "nosuch"),
    ("machine", "forget", "nosuch", "--reason", "test"),
    ("machine", "retry", "nosuch"),
    ("set", "get", "nosuch"),
    ("set", "scale", "nosuch", "1"),
    ("baremetal", "--provider", "nosuch", "list"),
    ("baremetal", "set", "nosuch", "--bmc-user", "root"),
    ("baremetal", "accept", "nosuch"),
    ("baremetal", "cordon", "nosuch"),
    ("baremetal", "remove", "nosuch"),
]


@pytest.fixture
def populated(home: Home) -> Home:
    """A cluster ``demo``, a request set ``pool`` and a bare-metal instance ``rack``:
    each command below has something of its kind, only not with that name."""
    home.providers["rack"] = {"type": "baremetal", "inventory": str(home.root / "inv.sqlite"),
                              "boot_url": "http://10.0.0.5:8081"}
    home.write_config()
    assert home.invoke("apply", "-f", str(write_spec(home.root, workers=1,
                                                     control_planes=1))).exit_code == 0
    record_request_set(home, "pool", 1)
    return home


@pytest.mark.parametrize("args", UNKNOWN_NAMES, ids=" ".join)
def test_an_unknown_name_exits_1_naming_it(populated: Home, args: tuple[str, ...]) -> None:
    result = populated.invoke(*args)
    assert result.exit_code == EXIT_UNKNOWN, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("talprov: error:")]
    assert "nosuch" in line
    assert "Traceback" not in result.output


def test_a_provider_instance_of_another_type_is_invalid_input(populated: Home) -> None:
    result = populated.invoke("baremetal", "--provider", "fake", "list")
    assert result.exit_code == 2, result.output
    assert "fake" in result.output
    assert "baremetal" in result.output



def test_machine_list_names_an_instance_only_the_store_knows(populated: Home) -> None:
    # Requests of an instance removed from the config are still listed (they wait
    # for a worker that has it); the name is known from the store.
    assert populated.invoke("machine", "create", "-f",
                            str(populated.write_request("kept-1"))).exit_code == 0
    del populated.providers["fake"]
    populated.write_config()
    result = populated.invoke("machine", "list", "--provider", "fake")
    assert result.exit_code == 0, result.output
    assert "kept-1" in result.output
